//! The device's identity on disk: its key pair (made here, never sent),
//! its certificate, the broker's CA, what it was enrolled as, and the
//! person's tokens. Everything lives in the state dir, mode 0600.

use std::time::{SystemTime, UNIX_EPOCH};

use data_encoding::BASE64;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};

use crate::state::{StateDir, StateError};

pub const KEY_FILE: &str = "device-key.pem";
pub const CERT_FILE: &str = "device.pem";
pub const CA_FILE: &str = "ca.pem";
pub const ENROLMENT_FILE: &str = "enrolment.json";
pub const TOKENS_FILE: &str = "tokens.json";
/// The broker nodes' addresses and the last that worked ([`Brokers`]).
pub const BROKERS_FILE: &str = "brokers.json";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("this device is not enrolled: run `lanyard-agent enroll CODE` with the code from ICT")]
    NotEnrolled,
    #[error("not signed in: run `lanyard-agent login USERNAME`")]
    NotSignedIn,
    #[error("{file} in the state dir is damaged ({reason}); enrol again")]
    Damaged { file: &'static str, reason: String },
    #[error("cannot make a device key: {0}")]
    KeyGen(String),
}

fn damaged(file: &'static str, reason: impl ToString) -> IdentityError {
    IdentityError::Damaged {
        file,
        reason: reason.to_string(),
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A new device key pair: (PKCS#8 document, raw public key).
pub fn generate_key() -> Result<(Vec<u8>, Vec<u8>), IdentityError> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|e| IdentityError::KeyGen(e.to_string()))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|e| IdentityError::KeyGen(e.to_string()))?;
    Ok((pkcs8.as_ref().to_vec(), pair.public_key().as_ref().to_vec()))
}

/// Signs `secret || public_key` with the device key: the proof that this
/// device holds the key it asks a certificate for.
pub fn prove(pkcs8: &[u8], secret: &[u8], public_key: &[u8]) -> Result<Vec<u8>, IdentityError> {
    let rng = SystemRandom::new();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng)
        .map_err(|e| IdentityError::KeyGen(e.to_string()))?;
    let mut msg = secret.to_vec();
    msg.extend_from_slice(public_key);
    pair.sign(&rng, &msg)
        .map(|s| s.as_ref().to_vec())
        .map_err(|e| IdentityError::KeyGen(e.to_string()))
}

/// What the device was enrolled as, and where its broker is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolment {
    /// `host:port` of the broker's QUIC listener.
    pub broker: String,
    /// hex SHA-256 of the broker's CA certificate.
    pub ca_fingerprint: String,
    pub enrolled_at: u64,
    /// When the current certificate was issued and ends (seconds).
    pub cert_issued_at: u64,
    pub cert_expires_at: u64,
}

/// The broker nodes this device may connect to, as the enrolment code and
/// then each session's welcome listed them, and the last one that worked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Brokers {
    pub addrs: Vec<String>,
    pub last_good: Option<String>,
}

impl Brokers {
    pub fn from_addresses(a: &lanyard_proto::reconnect::Addresses) -> Self {
        Self {
            addrs: a.known().to_vec(),
            last_good: a.last_good().map(str::to_owned),
        }
    }
}

/// The person signed in on this device.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub username: String,
    pub access_token: String,
    pub refresh_token: String,
    pub issued_at: u64,
    pub expires_at: u64,
    /// hex SHA-256 of the certificate the access token is bound to.
    pub cert_thumbprint: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// True when two thirds of the access token's life have passed (or it
    /// was issued for another certificate): time to refresh.
    pub fn needs_refresh(&self, now: u64, cert_thumbprint: &str) -> bool {
        let life = self.expires_at.saturating_sub(self.issued_at);
        self.cert_thumbprint != cert_thumbprint || now >= self.issued_at + life * 2 / 3
    }
}

/// Everything needed to connect as this device.
pub struct Device {
    pub enrolment: Enrolment,
    pub key: PrivatePkcs8KeyDer<'static>,
    pub cert: CertificateDer<'static>,
    pub ca: CertificateDer<'static>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("enrolment", &self.enrolment)
            .finish_non_exhaustive()
    }
}

impl Clone for Device {
    fn clone(&self) -> Self {
        Self {
            enrolment: self.enrolment.clone(),
            key: self.key.clone_key(),
            cert: self.cert.clone(),
            ca: self.ca.clone(),
        }
    }
}

impl Device {
    pub fn thumbprint_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&sha256(&self.cert))
    }

    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// True when half the certificate's life has passed: time to renew.
    pub fn needs_renewal(&self, now: u64) -> bool {
        let e = &self.enrolment;
        let life = e.cert_expires_at.saturating_sub(e.cert_issued_at);
        now >= e.cert_issued_at + life / 2
    }
}

impl StateDir {
    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        file: &'static str,
    ) -> Result<Option<T>, IdentityError> {
        match self.read(file)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| damaged(file, e)),
        }
    }

    fn write_json<T: Serialize>(&self, file: &str, value: &T) -> Result<(), IdentityError> {
        let bytes =
            serde_json::to_vec_pretty(value).map_err(|e| IdentityError::KeyGen(e.to_string()))?;
        Ok(self.write(file, &bytes)?)
    }

    pub fn enrolment(&self) -> Result<Option<Enrolment>, IdentityError> {
        self.read_json(ENROLMENT_FILE)
    }

    pub fn save_enrolment(&self, e: &Enrolment) -> Result<(), IdentityError> {
        self.write_json(ENROLMENT_FILE, e)
    }

    pub fn tokens(&self) -> Result<Option<Tokens>, IdentityError> {
        self.read_json(TOKENS_FILE)
    }

    /// The broker addresses to try, the last good one first: from
    /// [`BROKERS_FILE`], or the enrolment's one address (a device enrolled
    /// before the list was kept).
    pub fn addresses(
        &self,
        enrolment: &Enrolment,
    ) -> Result<lanyard_proto::reconnect::Addresses, IdentityError> {
        let brokers: Option<Brokers> = self.read_json(BROKERS_FILE)?;
        let b = brokers.unwrap_or_default();
        let mut a = lanyard_proto::reconnect::Addresses::new(b.addrs, b.last_good);
        if a.known().is_empty() {
            a.update(vec![enrolment.broker.clone()]);
        }
        Ok(a)
    }

    pub fn save_addresses(
        &self,
        a: &lanyard_proto::reconnect::Addresses,
    ) -> Result<(), IdentityError> {
        self.write_json(BROKERS_FILE, &Brokers::from_addresses(a))
    }

    pub fn save_tokens(&self, t: &Tokens) -> Result<(), IdentityError> {
        self.write_json(TOKENS_FILE, t)
    }

    pub fn save_key(&self, pkcs8: &[u8]) -> Result<(), IdentityError> {
        Ok(self.write(KEY_FILE, to_pem("PRIVATE KEY", pkcs8).as_bytes())?)
    }

    pub fn save_cert(&self, file: &str, der: &[u8]) -> Result<(), IdentityError> {
        Ok(self.write(file, to_pem("CERTIFICATE", der).as_bytes())?)
    }

    fn read_cert(&self, file: &'static str) -> Result<CertificateDer<'static>, IdentityError> {
        let pem = self.read(file)?.ok_or(IdentityError::NotEnrolled)?;
        CertificateDer::from_pem_slice(&pem)
            .map(|c| c.into_owned())
            .map_err(|e| damaged(file, format!("{e:?}")))
    }

    /// The enrolled device, or why there is none.
    pub fn device(&self) -> Result<Device, IdentityError> {
        let enrolment = self.enrolment()?.ok_or(IdentityError::NotEnrolled)?;
        let key_pem = self.read(KEY_FILE)?.ok_or(IdentityError::NotEnrolled)?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(&key_pem)
            .map_err(|e| damaged(KEY_FILE, format!("{e:?}")))?;
        Ok(Device {
            enrolment,
            key,
            cert: self.read_cert(CERT_FILE)?,
            ca: self.read_cert(CA_FILE)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_proof_and_files_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        let (pkcs8, public) = generate_key().unwrap();
        assert_eq!(public.len(), 65);
        let proof = prove(&pkcs8, b"secret", &public).unwrap();
        let mut msg = b"secret".to_vec();
        msg.extend_from_slice(&public);
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &public)
            .verify(&msg, &proof)
            .unwrap();
        dir.save_key(&pkcs8).unwrap();
        assert!(matches!(dir.device(), Err(IdentityError::NotEnrolled)));
        let t = Tokens {
            username: "a.patel".into(),
            access_token: "secret-access".into(),
            refresh_token: "secret-refresh".into(),
            issued_at: 1000,
            expires_at: 1900,
            cert_thumbprint: "aa".into(),
        };
        dir.save_tokens(&t).unwrap();
        assert_eq!(dir.tokens().unwrap().unwrap(), t);
        assert!(!format!("{t:?}").contains("secret"));
        assert!(!t.needs_refresh(1500, "aa"));
        assert!(t.needs_refresh(1600, "aa"));
        assert!(t.needs_refresh(1001, "bb"));
        dir.write(TOKENS_FILE, b"{not json").unwrap();
        assert!(matches!(dir.tokens(), Err(IdentityError::Damaged { .. })));
    }
}
