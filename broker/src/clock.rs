//! Time as the broker sees it: milliseconds since the Unix epoch.
//!
//! Logic that depends on time takes `now` as an argument so that tests can
//! place it anywhere; only the edges of the broker call [`now_ms`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn duration_ms(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The last millisecond of year 9999, the most RFC 3339 can write.
const MAX_RFC3339_MS: Millis = 253_402_300_799_999;

/// RFC 3339 (UTC, seconds) for a millisecond timestamp, for JSON output.
/// Times outside years 1970-9999 are clamped, never a panic.
pub fn rfc3339(ms: Millis) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.clamp(0, MAX_RFC3339_MS) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Parses "2026-11-01T09:00:00Z" (or a date alone) to milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    let s = s.trim();
    let t = humantime::parse_rfc3339_weak(s)
        .or_else(|_| humantime::parse_rfc3339_weak(&format!("{s} 00:00:00")))
        .ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(duration_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(parse_rfc3339("1970-01-01T00:00:10Z"), Some(10_000));
        assert_eq!(parse_rfc3339("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
