//! Random secrets, hashes of secrets and constant-time comparison.
//!
//! Secrets are generated here and handed out once; the store keeps only
//! their SHA-256. None of these values may reach a log line.

use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use ring::rand::{SecureRandom, SystemRandom};

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // SystemRandom only fails if the OS has no entropy source at all, in
    // which case no secret can be made safely: stopping is the right thing.
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the operating system's random source failed");
    buf
}

/// A fresh opaque token: `prefix` then 256 random bits in base64url.
pub fn new_token(prefix: &str) -> String {
    format!("{prefix}{}", BASE64URL_NOPAD.encode(&random_bytes::<32>()))
}

/// A fresh random identifier (128 bits, lowercase hex).
pub fn new_id() -> String {
    HEXLOWER.encode(&random_bytes::<16>())
}

/// SHA-256 of a secret, lowercase hex: how the store keeps tokens and codes.
pub fn hash_secret(secret: &[u8]) -> String {
    sha256_hex(secret)
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    HEXLOWER.encode(&sha256(data))
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_prefixed() {
        let a = new_token("lyt_");
        let b = new_token("lyt_");
        assert!(a.starts_with("lyt_"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 43);
    }

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
