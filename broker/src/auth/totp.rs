//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits).
//!
//! The secret is shown to the person once, as an `otpauth://` URI for their
//! authenticator app; the store keeps it sealed (see [`crate::auth::sealed`]).

use data_encoding::BASE32_NOPAD;
use ring::hmac;

pub const STEP_SECS: i64 = 30;
pub const DIGITS: u32 = 6;
/// Codes from one step either side are accepted (clock drift on phones).
pub const WINDOW: i64 = 1;

/// A fresh 160-bit secret.
pub fn new_secret() -> [u8; 20] {
    crate::secrets::random_bytes()
}

/// The code for `secret` at step counter `counter` (RFC 4226 truncation).
pub fn code_at(secret: &[u8], counter: u64, digits: u32) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    let offset = (mac[mac.len() - 1] & 0x0f) as usize;
    let binary = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    binary % 10u32.pow(digits)
}

/// Checks a 6-digit code at time `now` (seconds), within ±[`WINDOW`] steps.
/// Returns the matching step so that a caller can refuse its reuse.
pub fn verify(secret: &[u8], code: &str, now: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let wanted: u32 = code.parse().ok()?;
    let step = now.div_euclid(STEP_SECS);
    let mut matched = None;
    for s in (step - WINDOW)..=(step + WINDOW) {
        if s >= 0
            && crate::secrets::constant_time_eq(
                &code_at(secret, s as u64, DIGITS).to_be_bytes(),
                &wanted.to_be_bytes(),
            )
        {
            matched = Some(s);
        }
    }
    matched
}

/// The provisioning URI an authenticator app reads (usually as a QR code).
pub fn otpauth_uri(secret: &[u8], username: &str) -> String {
    format!(
        "otpauth://totp/Lanyard:{username}?secret={}&issuer=Lanyard&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        BASE32_NOPAD.encode(secret)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows (8 digits).
    #[test]
    fn rfc6238_vectors() {
        let secret = b"12345678901234567890";
        for (t, want) in [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(code_at(secret, t / 30, 8), want, "t={t}");
        }
    }

    #[test]
    fn verify_accepts_one_step_of_drift_only() {
        let secret = new_secret();
        let now = 1_800_000_000;
        let code = format!("{:06}", code_at(&secret, (now / 30) as u64, 6));
        assert!(verify(&secret, &code, now).is_some());
        assert!(verify(&secret, &code, now + 30).is_some());
        assert!(verify(&secret, &code, now + 90).is_none());
        assert!(verify(&secret, "12345", now).is_none());
        assert!(verify(&secret, "abcdef", now).is_none());
    }

    #[test]
    fn uri_names_the_person() {
        let uri = otpauth_uri(b"12345678901234567890", "j.smith");
        assert!(uri
            .starts_with("otpauth://totp/Lanyard:j.smith?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"));
    }
}
