//! Reconnection delays: capped exponential backoff with full jitter, so that
//! a broker restart does not bring every agent back at the same moment.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    /// After a connection that worked: start again from the base.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The ceiling for the current attempt: `min(cap, base * 2^attempt)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay: uniform in `[0, ceiling]`; `unit` is a random number
    /// in `[0, 1)`.
    pub fn next_with(&mut self, unit: f64) -> Duration {
        let delay = self.ceiling().mul_f64(unit.clamp(0.0, 1.0));
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// The next delay, with a random draw.
    pub fn next_delay(&mut self) -> Duration {
        let mut b = [0u8; 8];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
        let unit = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
        self.next_with(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubling_to_the_cap_with_full_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(3));
        let ceilings: Vec<u64> = (0..8)
            .map(|_| {
                let c = b.ceiling().as_millis() as u64;
                b.next_with(0.5);
                c
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3000, 3000, 3000]);
        assert_eq!(b.next_with(0.0), Duration::ZERO);
        assert_eq!(
            b.next_with(0.999_999),
            Duration::from_secs(3).mul_f64(0.999_999)
        );
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
        // Random draws stay inside [0, ceiling].
        for _ in 0..100 {
            let ceiling = b.ceiling();
            assert!(b.next_delay() <= ceiling);
        }
        // Many attempts never overflow.
        for _ in 0..100 {
            b.next_with(1.0);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(3));
    }
}
