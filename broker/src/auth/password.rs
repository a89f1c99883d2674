//! Local passwords, hashed with argon2id (OWASP's parameters: 19 MiB, t=2, p=1).
//!
//! Hashing is deliberately slow; callers on the async runtime run it on the
//! blocking pool.
//!
//! Verification reuses its 19 MiB of work memory from a small pool. A fresh
//! allocation per sign-in made the allocator raise its mmap threshold and
//! keep the freed memory: a burst of 1,000 sign-ins left about 300 MiB
//! resident for good. At most [`max_concurrent`] verifications run at once;
//! more wait for a buffer.

use std::sync::{Condvar, Mutex, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

pub const MIN_LEN: usize = 10;
pub const MAX_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password is too short: use at least {MIN_LEN} characters")]
    TooShort,
    #[error("password is too long: use at most {MAX_LEN} characters")]
    TooLong,
}

fn argon2() -> Argon2<'static> {
    // These parameters are constants that argon2 accepts.
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks the policy and returns the PHC string to store.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_LEN {
        return Err(PasswordError::TooLong);
    }
    let salt_bytes = crate::secrets::random_bytes::<16>();
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes is a valid salt");
    Ok(argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing with valid parameters")
        .to_string())
}

/// How many verifications may hold work memory at once.
pub fn max_concurrent() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8)
}

#[derive(Default)]
struct Pool {
    free: Vec<Vec<Block>>,
    made: usize,
}

fn pool() -> &'static (Mutex<Pool>, Condvar) {
    static POOL: OnceLock<(Mutex<Pool>, Condvar)> = OnceLock::new();
    POOL.get_or_init(Default::default)
}

/// Runs `f` with `blocks` blocks of work memory from the pool (waiting
/// for a buffer when all are in use).
fn with_memory<R>(blocks: usize, f: impl FnOnce(&mut [Block]) -> R) -> R {
    let (lock, ready) = pool();
    let mut buf = {
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(b) = p.free.pop() {
                break b;
            }
            if p.made < max_concurrent() {
                p.made += 1;
                break Vec::new();
            }
            p = ready.wait(p).unwrap_or_else(|e| e.into_inner());
        }
    };
    if buf.len() < blocks {
        buf.resize(blocks, Block::default());
    }
    let result = f(&mut buf[..blocks]);
    lock.lock()
        .unwrap_or_else(|e| e.into_inner())
        .free
        .push(buf);
    ready.notify_one();
    result
}

/// True when `password` matches the stored PHC string.
pub fn verify(password: &str, stored: &str) -> bool {
    if password.len() > MAX_LEN {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let blocks = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    let computed = with_memory(blocks, |memory| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, memory)
            .is_ok()
    });
    computed && crate::secrets::constant_time_eq(&out, expected.as_bytes())
}

/// A hash of a random password, verified against when the person does not
/// exist, so that a wrong username takes as long as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash(&crate::secrets::new_token("decoy-")).expect("decoy password fits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash("correct horse battery").unwrap();
        let b = hash("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterz", &a));
        assert!(!verify("anything", "not a phc string"));
        // Another valid PHC string with other parameters still verifies.
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(
            b"older password",
            &SaltString::encode_b64(&[7; 16]).unwrap(),
        )
        .unwrap()
        .to_string();
        assert!(verify("older password", &other));
        assert!(!verify("older passwort", &other));
    }

    #[test]
    fn many_verifications_at_once_share_a_few_buffers() {
        let stored = hash("correct horse battery").unwrap();
        let threads: Vec<_> = (0..12)
            .map(|i| {
                let stored = stored.clone();
                std::thread::spawn(move || {
                    let pw = if i % 2 == 0 {
                        "correct horse battery"
                    } else {
                        "wrong horse battery"
                    };
                    verify(pw, &stored) == (i % 2 == 0)
                })
            })
            .collect();
        assert!(threads.into_iter().all(|t| t.join().unwrap()));
        let made = pool().0.lock().unwrap().made;
        assert!(made >= 1 && made <= max_concurrent(), "{made}");
    }

    #[test]
    fn policy() {
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
        assert_eq!(hash(&"x".repeat(MAX_LEN + 1)), Err(PasswordError::TooLong));
    }
}
