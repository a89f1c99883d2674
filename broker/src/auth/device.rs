//! Device certificates: issued by the CA for a key made on the laptop.
//!
//! The agent proves it holds the private key by signing the enrolment
//! secret and its public key; the broker never sees the private key. The
//! certificate is short-lived (days) and renewed by the agent over its
//! mutual-TLS connection. A device is known by the SHA-256 of its public key
//! (SubjectPublicKeyInfo), which renewals keep.

use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose,
    PublicKeyData, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256,
};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::ca::{Ca, CaError};
use lanyard_proto::KeyAlg;

/// Why a device key or certificate was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceKeyError {
    #[error("only ECDSA P-256 device keys are accepted")]
    Algorithm,
    #[error("the device public key is not an uncompressed P-256 point")]
    BadKey,
    #[error("the proof of key possession does not verify")]
    BadProof,
    #[error("the device certificate cannot be parsed")]
    BadCertificate,
}

/// A device's public key, as rcgen needs it to sign a certificate for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePublicKey {
    raw: Vec<u8>,
}

impl PublicKeyData for DevicePublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }

    fn algorithm(&self) -> &SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl DevicePublicKey {
    /// Checks the key's shape (an uncompressed P-256 point).
    pub fn parse(alg: KeyAlg, raw: &[u8]) -> Result<Self, DeviceKeyError> {
        if alg != KeyAlg::EcdsaP256 {
            return Err(DeviceKeyError::Algorithm);
        }
        if raw.len() != 65 || raw[0] != 0x04 {
            return Err(DeviceKeyError::BadKey);
        }
        Ok(Self { raw: raw.to_vec() })
    }

    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The key as a DER SubjectPublicKeyInfo (id-ecPublicKey, prime256v1),
    /// exactly as it appears in the certificates issued for it.
    pub fn spki_der(&self) -> Vec<u8> {
        const P256_SPKI_PREFIX: [u8; 26] = [
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.raw);
        der
    }

    /// Verifies the agent's signature over `secret || public_key`.
    pub fn verify_proof(&self, secret: &[u8], proof: &[u8]) -> Result<(), DeviceKeyError> {
        let mut signed = Vec::with_capacity(secret.len() + self.raw.len());
        signed.extend_from_slice(secret);
        signed.extend_from_slice(&self.raw);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.raw)
            .verify(&signed, proof)
            .map_err(|_| DeviceKeyError::BadProof)
    }
}

/// The device's identity: SHA-256 of the certificate's public key, hex.
pub fn device_id(cert: &CertificateDer<'_>) -> Result<String, DeviceKeyError> {
    let parsed =
        webpki::EndEntityCert::try_from(cert).map_err(|_| DeviceKeyError::BadCertificate)?;
    Ok(crate::secrets::sha256_hex(
        parsed.subject_public_key_info().as_ref(),
    ))
}

/// SHA-256 of the certificate itself (what access tokens are bound to).
pub fn cert_thumbprint(cert: &CertificateDer<'_>) -> [u8; 32] {
    crate::secrets::sha256(cert)
}

impl Ca {
    /// Issues a client certificate for a device key, valid for `validity`
    /// from now (backdated five minutes for clock skew). `label` names the
    /// device to people (an asset tag or `personal:username`).
    pub fn issue_device_cert(
        &self,
        key: &DevicePublicKey,
        label: &str,
        validity: Duration,
    ) -> Result<(CertificateDer<'static>, i64), CaError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Lanyard");
        dn.push(DnType::CommonName, format!("Lanyard device {label}"));
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::from_secs(300);
        let not_after = now + validity;
        params.not_after = not_after;
        let serial: [u8; 16] = crate::secrets::random_bytes();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial[..15]));
        let cert = self.sign_for(params, key)?;
        Ok((cert, not_after.unix_timestamp() * 1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datadir::DataDir;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    fn device_key() -> (EcdsaKeyPair, DevicePublicKey) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let public = DevicePublicKey::parse(KeyAlg::EcdsaP256, pair.public_key().as_ref()).unwrap();
        (pair, public)
    }

    #[test]
    fn proof_of_possession_verifies_only_for_the_signed_secret() {
        let (pair, public) = device_key();
        let rng = SystemRandom::new();
        let secret = [7u8; 20];
        let mut msg = secret.to_vec();
        msg.extend_from_slice(public.raw());
        let proof = pair.sign(&rng, &msg).unwrap();
        public.verify_proof(&secret, proof.as_ref()).unwrap();
        assert_eq!(
            public.verify_proof(&[8u8; 20], proof.as_ref()),
            Err(DeviceKeyError::BadProof)
        );
        let (_, other) = device_key();
        assert_eq!(
            other.verify_proof(&secret, proof.as_ref()),
            Err(DeviceKeyError::BadProof)
        );
        assert_eq!(
            DevicePublicKey::parse(KeyAlg::Ed25519, public.raw()),
            Err(DeviceKeyError::Algorithm)
        );
        assert_eq!(
            DevicePublicKey::parse(KeyAlg::EcdsaP256, &[4; 33]),
            Err(DeviceKeyError::BadKey)
        );
    }

    #[test]
    fn device_certificates_keep_their_identity_across_renewals() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(&DataDir::open(tmp.path()).unwrap()).unwrap();
        let (_, public) = device_key();
        let week = Duration::from_secs(7 * 86400);
        let (first, expires) = ca.issue_device_cert(&public, "LT-00421", week).unwrap();
        let (second, _) = ca.issue_device_cert(&public, "LT-00421", week).unwrap();
        assert_ne!(cert_thumbprint(&first), cert_thumbprint(&second));
        assert_eq!(device_id(&first).unwrap(), device_id(&second).unwrap());
        assert_eq!(
            device_id(&first).unwrap(),
            crate::secrets::sha256_hex(&public.spki_der()),
            "the id computed from the key matches the one read from its certificate"
        );
        let (_, other) = device_key();
        let (third, _) = ca.issue_device_cert(&other, "LT-00421", week).unwrap();
        assert_ne!(device_id(&first).unwrap(), device_id(&third).unwrap());
        let now_ms = crate::clock::now_ms();
        assert!(
            (expires - now_ms - 7 * 86_400_000).abs() < 5_000,
            "{expires}"
        );

        // The certificate chains to the CA as a client certificate.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        verifier
            .verify_client_cert(&first, &[], rustls_pki_types::UnixTime::now())
            .unwrap();
        assert!(device_id(&CertificateDer::from(vec![1, 2, 3])).is_err());
    }
}
