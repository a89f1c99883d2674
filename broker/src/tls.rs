//! The broker's own server certificates, served through a resolver that
//! the HTTPS API and the QUIC endpoint share, so a new certificate takes
//! effect at the next handshake without dropping a connection.
//!
//! The certificate the broker's CA issues (QUIC always; the API too unless
//! `--tls-cert` is given) is re-issued at half its life
//! (`[tls] server_cert_ttl`) by [`renew_at_half_life`]. The `--tls-cert` /
//! `--tls-key` files are re-read on SIGHUP; a file that cannot be read or
//! whose key does not match leaves the old certificate in place.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::auth::ca::{Ca, CaError};
use crate::clock::{now_ms, Millis};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("cannot read {flag} {path}: {reason}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("the issued server certificate: {0}")]
    Issued(String),
}

/// One certificate and key being served, and when it runs out.
#[derive(Debug)]
struct Served {
    key: Arc<CertifiedKey>,
    issued_at: Millis,
    /// The leaf's notAfter, Unix seconds.
    not_after: i64,
}

/// A certificate that can be swapped while serving.
#[derive(Debug)]
pub struct CertSlot {
    current: RwLock<Arc<Served>>,
}

impl CertSlot {
    fn new(served: Served) -> Self {
        Self {
            current: RwLock::new(Arc::new(served)),
        }
    }

    fn get(&self) -> Arc<Served> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, served: Served) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(served);
    }

    /// The served leaf's notAfter, Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.get().not_after
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get().key.clone())
    }
}

/// The broker's server certificates.
#[derive(Debug)]
pub struct ServerCerts {
    provider: Arc<CryptoProvider>,
    names: Vec<String>,
    /// Issued by the broker's CA: QUIC, and the API unless `files`.
    issued: Arc<CertSlot>,
    /// `--tls-cert`, `--tls-key` and what was read from them, for the API.
    files: Option<(PathBuf, PathBuf, Arc<CertSlot>)>,
    renewals: AtomicU64,
}

impl ServerCerts {
    /// Issues the first certificate for `names` (valid `ttl`) and reads
    /// the `--tls-cert` files if given.
    pub fn new(
        ca: &Ca,
        names: Vec<String>,
        ttl: Duration,
        files: Option<(PathBuf, PathBuf)>,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let issued = Arc::new(CertSlot::new(issue(ca, &names, ttl, &provider)?));
        let files = match files {
            Some((cert, key)) => {
                let served = read_files(&cert, &key, &provider)?;
                Some((cert, key, Arc::new(CertSlot::new(served))))
            }
            None => None,
        };
        Ok(Self {
            provider,
            names,
            issued,
            files,
            renewals: AtomicU64::new(0),
        })
    }

    /// What the HTTPS API serves.
    pub fn api(&self) -> Arc<CertSlot> {
        match &self.files {
            Some((_, _, slot)) => slot.clone(),
            None => self.issued.clone(),
        }
    }

    /// What the QUIC endpoint serves (always the CA's: agents pin it).
    pub fn quic(&self) -> Arc<CertSlot> {
        self.issued.clone()
    }

    /// Issues a fresh certificate valid for `ttl` and serves it from the
    /// next handshake on; its notAfter.
    pub fn renew(&self, ca: &Ca, ttl: Duration) -> Result<i64, TlsError> {
        let served = issue(ca, &self.names, ttl, &self.provider)?;
        let not_after = served.not_after;
        self.issued.set(served);
        self.renewals.fetch_add(1, Relaxed);
        Ok(not_after)
    }

    /// Re-reads the `--tls-cert` files; `Ok(None)` when none were given.
    /// On an error the certificate being served stays.
    pub fn reload_files(&self) -> Result<Option<i64>, TlsError> {
        let Some((cert, key, slot)) = &self.files else {
            return Ok(None);
        };
        let served = read_files(cert, key, &self.provider)?;
        let not_after = served.not_after;
        slot.set(served);
        Ok(Some(not_after))
    }

    /// Renewals of the issued certificate since start.
    pub fn renewals(&self) -> u64 {
        self.renewals.load(Relaxed)
    }

    /// Each served certificate's label and notAfter (Unix seconds):
    /// `server` (the issued one) and `api` (the `--tls-cert` one, if any).
    pub fn expiries(&self) -> Vec<(&'static str, i64)> {
        let mut out = vec![("server", self.issued.not_after())];
        if let Some((_, _, slot)) = &self.files {
            out.push(("api", slot.not_after()));
        }
        out
    }

    /// When the issued certificate is due for renewal: half its life.
    fn renew_at(&self) -> Millis {
        let s = self.issued.get();
        let life = s.not_after * 1000 - s.issued_at;
        s.issued_at + life.max(0) / 2
    }
}

fn issue(
    ca: &Ca,
    names: &[String],
    ttl: Duration,
    provider: &Arc<CryptoProvider>,
) -> Result<Served, TlsError> {
    let issued_at = now_ms();
    let (chain, key) = ca.issue_server_cert(names, ttl)?;
    let not_after = certificate_facts(&chain[0])
        .ok_or_else(|| TlsError::Issued("no validity in it".into()))?
        .not_after;
    let key = CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| TlsError::Issued(e.to_string()))?;
    Ok(Served {
        key: Arc::new(key),
        issued_at,
        not_after,
    })
}

fn read_files(cert: &Path, key: &Path, provider: &Arc<CryptoProvider>) -> Result<Served, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Read {
            flag: "--tls-cert",
            path: cert.to_owned(),
            reason: pem_reason(e),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Invalid {
            path: cert.to_owned(),
            reason: "no certificate in it".into(),
        });
    };
    let not_after = certificate_facts(leaf)
        .ok_or_else(|| TlsError::Invalid {
            path: cert.to_owned(),
            reason: "the first certificate is not a readable X.509 certificate".into(),
        })?
        .not_after;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Read {
        flag: "--tls-key",
        path: key.to_owned(),
        reason: pem_reason(e),
    })?;
    let key = CertifiedKey::from_der(chain, key_der, provider).map_err(|e| TlsError::Invalid {
        path: key.to_owned(),
        reason: format!("not the key of {} ({e})", cert.display()),
    })?;
    Ok(Served {
        key: Arc::new(key),
        issued_at: now_ms(),
        not_after,
    })
}

fn pem_reason(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) => e.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM section of that kind in it".into(),
        other => format!("not valid PEM ({other:?})"),
    }
}

/// Re-issues the broker's certificate at half its life until `shutdown`.
/// A failed issue is logged and tried again in a minute (or sooner, for a
/// short-lived certificate); the old one is served meanwhile.
pub async fn renew_at_half_life(state: &crate::state::Shared, mut shutdown: watch::Receiver<bool>) {
    loop {
        let wait =
            Duration::from_millis(u64::try_from(state.certs.renew_at() - now_ms()).unwrap_or(0));
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let ttl = state.live().server_cert_ttl;
        match state.certs.renew(&state.ca, ttl) {
            Ok(not_after) => tracing::info!(
                not_after,
                renewals = state.certs.renewals(),
                "renewed the broker's server certificate"
            ),
            Err(e) => {
                tracing::error!(error = %e, "cannot renew the broker's server certificate; serving the old one");
                let retry = (ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(retry) => {}
                }
            }
        }
    }
}

/// What the broker reads from a certificate: its serial and notAfter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    pub serial: Vec<u8>,
    /// Unix seconds.
    pub not_after: i64,
}

/// Reads the serial number and notAfter of a DER X.509 certificate;
/// `None` if it is not one.
pub fn certificate_facts(der: &[u8]) -> Option<CertificateFacts> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const VERSION: u8 = 0xa0;
    let (cert, _) = der_take(der, SEQUENCE)?;
    let (tbs, _) = der_take(cert, SEQUENCE)?;
    let tbs = match der_take(tbs, VERSION) {
        Some((_, rest)) => rest,
        None => tbs,
    };
    let (serial, rest) = der_take(tbs, INTEGER)?;
    let (_algorithm, rest) = der_take(rest, SEQUENCE)?;
    let (_issuer, rest) = der_take(rest, SEQUENCE)?;
    let (validity, _) = der_take(rest, SEQUENCE)?;
    let (_, _not_before, rest) = der_any(validity)?;
    let (tag, not_after, _) = der_any(rest)?;
    Some(CertificateFacts {
        serial: serial.to_vec(),
        not_after: der_time(tag, not_after)?,
    })
}

/// One DER element: its tag, contents and what follows.
fn der_any(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn der_take(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, body, rest) = der_any(input)?;
    (tag == want).then_some((body, rest))
}

/// UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ) as Unix
/// seconds.
fn der_time(tag: u8, body: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(body).ok()?.strip_suffix('Z')?;
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, text.len()) {
        (0x17, 12) => {
            let yy: i32 = text[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        (0x18, 14) => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| rest[i..i + 2].parse::<u8>().ok();
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(field(0)?).ok()?, field(2)?)
            .ok()?;
    let at = time::Time::from_hms(field(4)?, field(6)?, field(8)?).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, at)
            .assume_utc()
            .unix_timestamp(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datadir::DataDir;

    fn ca() -> (tempfile::TempDir, Ca) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let ca = Ca::load_or_create(&dir).unwrap();
        (tmp, ca)
    }

    #[test]
    fn reads_the_not_after_and_serial_rcgen_wrote() {
        let (_tmp, ca) = ca();
        let before = crate::clock::now_ms() / 1000;
        let (chain, _) = ca
            .issue_server_cert(&[], Duration::from_secs(3600))
            .unwrap();
        let facts = certificate_facts(&chain[0]).unwrap();
        assert!(
            (before + 3600..=before + 3602).contains(&facts.not_after),
            "{} vs {before}",
            facts.not_after
        );
        assert!(!facts.serial.is_empty());
        let ca_facts = certificate_facts(ca.cert_der()).unwrap();
        assert!(ca_facts.not_after > before + 9 * 365 * 24 * 3600);
        assert!(certificate_facts(b"not a certificate").is_none());
        assert!(certificate_facts(&chain[0][..chain[0].len() / 2]).is_none());
    }

    #[test]
    fn both_time_forms_are_read() {
        assert_eq!(der_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(der_time(0x17, b"491231235959Z"), Some(2524607999));
        assert_eq!(der_time(0x18, b"20500101000000Z"), Some(2524608000));
        assert_eq!(der_time(0x18, b"2050010100000Z"), None);
        assert_eq!(der_time(0x17, b"701301000000Z"), None);
    }

    #[test]
    fn a_renewal_serves_a_new_certificate_from_the_next_handshake() {
        let (_tmp, ca) = ca();
        let certs = ServerCerts::new(&ca, vec![], Duration::from_secs(10), None).unwrap();
        let first = certs.issued.get().key.cert[0].clone();
        let due = certs.renew_at() - certs.issued.get().issued_at;
        // notAfter is in whole seconds: up to a second early.
        assert!((4_000..=5_000).contains(&due), "half of 10 s: {due}");
        certs.renew(&ca, Duration::from_secs(20)).unwrap();
        let second = certs.quic().get().key.cert[0].clone();
        assert_ne!(first, second);
        assert_eq!(certs.renewals(), 1);
        assert!(
            Arc::ptr_eq(&certs.api(), &certs.quic()),
            "no files: one slot"
        );
    }

    #[test]
    fn a_bad_file_keeps_the_served_certificate() {
        let (tmp, ca) = ca();
        let (chain, key) = ca
            .issue_server_cert(&[], Duration::from_secs(3600))
            .unwrap();
        let cert_file = tmp.path().join("api.pem");
        let key_file = tmp.path().join("api-key.pem");
        std::fs::write(&cert_file, crate::datadir::to_pem("CERTIFICATE", &chain[0])).unwrap();
        std::fs::write(
            &key_file,
            crate::datadir::to_pem("PRIVATE KEY", key.secret_der()),
        )
        .unwrap();
        let certs = ServerCerts::new(
            &ca,
            vec![],
            Duration::from_secs(3600),
            Some((cert_file.clone(), key_file.clone())),
        )
        .unwrap();
        let served = certs.api().get().key.cert[0].clone();
        assert_eq!(served, chain[0]);
        // Another certificate whose key is not the one in the key file.
        let (other, _) = ca
            .issue_server_cert(&[], Duration::from_secs(3600))
            .unwrap();
        std::fs::write(&cert_file, crate::datadir::to_pem("CERTIFICATE", &other[0])).unwrap();
        let err = certs.reload_files().unwrap_err().to_string();
        assert!(err.contains("not the key of"), "{err}");
        std::fs::write(&cert_file, "garbage").unwrap();
        let err = certs.reload_files().unwrap_err().to_string();
        assert!(err.contains("no certificate in it"), "{err}");
        std::fs::remove_file(&cert_file).unwrap();
        let err = certs.reload_files().unwrap_err().to_string();
        assert!(err.contains("cannot read --tls-cert"), "{err}");
        assert_eq!(certs.api().get().key.cert[0], chain[0]);
    }
}
