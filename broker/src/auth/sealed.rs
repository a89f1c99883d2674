//! Secrets the broker must read back (TOTP seeds) are sealed with
//! AES-256-GCM under a key kept in the data dir, so a copy of the database
//! alone does not give them away.

use data_encoding::BASE64URL_NOPAD;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

use crate::datadir::{DataDir, DataDirError};

pub const SEAL_KEY_FILE: &str = "seal.key";

pub struct SealKey(LessSafeKey);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a sealed secret could not be opened (wrong seal.key, or the value was altered)")]
pub struct OpenError;

impl SealKey {
    pub fn load_or_create(dir: &DataDir) -> Result<Self, DataDirError> {
        let (bytes, _) = dir.read_or_create(SEAL_KEY_FILE, || {
            Ok::<_, DataDirError>(crate::secrets::random_bytes::<32>().to_vec())
        })?;
        Self::from_bytes(&bytes).ok_or(DataDirError::Damaged {
            path: dir.file(SEAL_KEY_FILE),
            reason: "it should hold exactly 32 bytes".into(),
        })
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        UnboundKey::new(&AES_256_GCM, bytes)
            .ok()
            .map(|k| Self(LessSafeKey::new(k)))
    }

    /// Seals `plain`; `context` (e.g. the username) is bound in as AAD so a
    /// sealed value cannot be moved to another row.
    pub fn seal(&self, plain: &[u8], context: &str) -> String {
        let nonce_bytes = crate::secrets::random_bytes::<NONCE_LEN>();
        let mut buf = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .expect("AES-GCM sealing of a short secret");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        BASE64URL_NOPAD.encode(&out)
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, OpenError> {
        let raw = BASE64URL_NOPAD
            .decode(sealed.as_bytes())
            .map_err(|_| OpenError)?;
        if raw.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError)?;
        let mut body = body.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut body)
            .map_err(|_| OpenError)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_in_context() {
        let key = SealKey::from_bytes(&[7; 32]).unwrap();
        let sealed = key.seal(b"seed", "j.smith");
        assert_eq!(key.open(&sealed, "j.smith").unwrap(), b"seed");
        assert!(key.open(&sealed, "a.jones").is_err());
        let other = SealKey::from_bytes(&[8; 32]).unwrap();
        assert!(other.open(&sealed, "j.smith").is_err());
    }
}
