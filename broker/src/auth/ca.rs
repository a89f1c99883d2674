//! The broker's certificate authority.
//!
//! One ECDSA P-256 key made at first start. It signs the broker's own
//! server certificate (HTTPS API and QUIC) and the devices' certificates.
//! The certificate on disk (`ca.pem`) is what agents and the CLI pin; its
//! SHA-256 fingerprint travels in every enrolment code.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use crate::datadir::{DataDir, DataDirError};

pub const CA_KEY_FILE: &str = "ca-key.pem";
pub const CA_CERT_FILE: &str = "ca.pem";

const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

pub struct Ca {
    key: KeyPair,
    /// The issuer as rcgen needs it: rebuilt from the same name and key as
    /// the certificate on disk, so what it signs chains to `ca.pem`.
    issuer: rcgen::Certificate,
    cert_der: CertificateDer<'static>,
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("fingerprint", &self.fingerprint_hex())
            .finish()
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Lanyard");
    dn.push(DnType::CommonName, "Lanyard broker CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn damaged(dir: &DataDir, file: &str, reason: impl ToString) -> CaError {
    CaError::DataDir(DataDirError::Damaged {
        path: dir.file(file),
        reason: reason.to_string(),
    })
}

impl Ca {
    /// Loads the CA from the data dir, making it on first start.
    pub fn load_or_create(dir: &DataDir) -> Result<Self, CaError> {
        let key_exists = dir.read(CA_KEY_FILE)?.is_some();
        let cert_exists = dir.read(CA_CERT_FILE)?.is_some();
        if key_exists != cert_exists {
            let missing = if key_exists {
                CA_CERT_FILE
            } else {
                CA_KEY_FILE
            };
            return Err(damaged(dir, missing, "it is missing while its pair exists"));
        }
        let (key_pem, _) = dir.read_or_create(CA_KEY_FILE, || {
            Ok::<_, CaError>(
                KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?
                    .serialize_pem()
                    .into_bytes(),
            )
        })?;
        let key_pem = String::from_utf8(key_pem).map_err(|e| damaged(dir, CA_KEY_FILE, e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| damaged(dir, CA_KEY_FILE, e))?;

        let (cert_pem, _) = dir.read_or_create(CA_CERT_FILE, || {
            let mut params = ca_params();
            let now = OffsetDateTime::now_utc();
            params.not_before = now - Duration::from_secs(3600);
            params.not_after = now + CA_VALIDITY;
            Ok::<_, CaError>(params.self_signed(&key)?.pem().into_bytes())
        })?;
        let cert_der = CertificateDer::from_pem_slice(&cert_pem)
            .map_err(|e| damaged(dir, CA_CERT_FILE, format!("{e:?}")))?
            .into_owned();
        let issuer = ca_params().self_signed(&key)?;
        let fingerprint = crate::secrets::sha256(&cert_der);
        Ok(Self {
            key,
            issuer,
            cert_der,
            fingerprint,
        })
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// `HEX` of the CA certificate's SHA-256, as printed in the ready line.
    pub fn fingerprint_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.fingerprint)
    }

    /// Signs `params` for a public key held elsewhere (a device's).
    pub(crate) fn sign_for(
        &self,
        params: CertificateParams,
        key: &impl rcgen::PublicKeyData,
    ) -> Result<CertificateDer<'static>, CaError> {
        Ok(params
            .signed_by(key, &self.issuer, &self.key)?
            .der()
            .clone())
    }

    /// A fresh server certificate for the broker's own listeners, valid for
    /// `localhost`, the loopback addresses and `names`, until `validity`
    /// from now.
    pub fn issue_server_cert(
        &self,
        names: &[String],
        validity: Duration,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CaError> {
        let mut sans = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        for n in names {
            if !sans.contains(n) {
                sans.push(n.clone());
            }
        }
        let mut params = CertificateParams::new(sans)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "Lanyard broker");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::from_secs(3600);
        params.not_after = now + validity;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone(), self.cert_der.clone()], key_der))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_and_reloaded_with_the_same_fingerprint() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let first = Ca::load_or_create(&dir).unwrap();
        let again = Ca::load_or_create(&dir).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert_eq!(first.fingerprint_hex().len(), 64);
    }

    #[test]
    fn server_cert_chains_to_the_ca_on_disk_after_a_reload() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let _ = Ca::load_or_create(&dir).unwrap();
        let ca = Ca::load_or_create(&dir).unwrap();
        let (chain, _key) = ca
            .issue_server_cert(&["broker.example".into()], Duration::from_secs(3600))
            .unwrap();

        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            provider,
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        let now = rustls_pki_types::UnixTime::now();
        for name in ["localhost", "broker.example", "127.0.0.1"] {
            let server_name = rustls_pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], now)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = rustls_pki_types::ServerName::try_from("evil.example").unwrap();
        assert!(verifier
            .verify_server_cert(&chain[0], &chain[1..], &other, &[], now)
            .is_err());
    }

    #[test]
    fn half_a_ca_is_refused_not_regenerated() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let _ = Ca::load_or_create(&dir).unwrap();
        std::fs::remove_file(dir.file(CA_CERT_FILE)).unwrap();
        let err = Ca::load_or_create(&dir).unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
        assert!(dir.read(CA_CERT_FILE).unwrap().is_none());
    }
}
