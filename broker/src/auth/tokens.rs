//! Access tokens: short-lived EdDSA JWTs bound to a device certificate.
//!
//! Verification is strict and in this order: size, header (the algorithm
//! must be exactly `EdDSA` and the `kid` one of ours; keys offered in the
//! header are never used), signature, then the claims: `iss`, `aud`, `sub`,
//! `exp`, `nbf` and `jti` must all be present; `exp` and `nbf` are checked
//! here against the `now` we are given, with at most [`LEEWAY_SECS`] of
//! clock skew; and the `cnf` claim must name the certificate the caller
//! presented (RFC 8705 style `x5t#S256`).

use std::collections::HashMap;

use data_encoding::BASE64URL_NOPAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde::{Deserialize, Serialize};

use crate::datadir::{to_pem, DataDir, DataDirError};

pub const TOKEN_KEY_FILE: &str = "token-signing-key.pem";
pub const ISSUER: &str = "lanyard-broker";
pub const AUDIENCE: &str = "lanyard-tunnel";
/// The most clock skew between broker nodes (and agents) that is forgiven.
pub const LEEWAY_SECS: i64 = 60;
/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The staff member's username.
    pub sub: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    pub cnf: Confirmation,
    /// The sign-in (refresh-token family) this token came from, so that
    /// ending that sign-in ends the sessions opened with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// Binds a token to one device certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// base64url(SHA-256(certificate DER)).
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

impl Confirmation {
    pub fn for_fingerprint(fingerprint: &[u8; 32]) -> Self {
        Self {
            x5t_s256: BASE64URL_NOPAD.encode(fingerprint),
        }
    }
}

/// Why a token was refused. Each message is safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("access token is malformed")]
    Malformed,
    #[error("access token uses algorithm {0:?}; only EdDSA is accepted")]
    Algorithm(String),
    #[error("access token names no signing key (kid)")]
    MissingKeyId,
    #[error("access token was signed by an unknown key")]
    UnknownKey,
    #[error("access token signature is invalid")]
    Signature,
    #[error("access token lacks the {0} claim")]
    MissingClaim(String),
    #[error("access token was issued for another audience")]
    Audience,
    #[error("access token was issued by someone else")]
    Issuer,
    #[error("access token has expired; sign in again")]
    Expired,
    #[error("access token is not valid yet (nbf is {0} s ahead; check the clock)")]
    NotYetValid(i64),
    #[error("access token was issued in the future ({0} s ahead; check the clock)")]
    IssuedInFuture(i64),
    #[error("access token is bound to another device")]
    WrongDevice,
}

/// The broker's signing key and every key it accepts, by `kid`.
///
/// The data dir holds `token-signing-key.pem` (the first key) and one
/// `token-signing-key-N.pem` per rotation (`lanyard-broker rotate-keys`);
/// the highest N signs, and every key present verifies, so tokens signed
/// before a rotation stay good until they expire.
pub struct TokenKeys {
    kid: String,
    public_key: Vec<u8>,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys").field("kid", &self.kid).finish()
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
}

/// The file of key generation `n` (1 is the first key).
pub fn key_file(n: u32) -> String {
    if n <= 1 {
        TOKEN_KEY_FILE.to_owned()
    } else {
        format!("token-signing-key-{n}.pem")
    }
}

/// The generation a file name holds, if it is a token-signing key's.
fn generation(name: &str) -> Option<u32> {
    if name == TOKEN_KEY_FILE {
        return Some(1);
    }
    let n: u32 = name
        .strip_prefix("token-signing-key-")?
        .strip_suffix(".pem")?
        .parse()
        .ok()?;
    (n >= 2).then_some(n)
}

/// The token-signing keys' generations in the data dir, oldest first.
fn generations(dir: &DataDir) -> Result<Vec<u32>, DataDirError> {
    let read_err = |source| DataDirError::Read {
        path: dir.path().to_owned(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir.path()).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        if let Some(n) = entry.file_name().to_str().and_then(generation) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn new_key_pem() -> Vec<u8> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("random source failed");
    to_pem("PRIVATE KEY", pkcs8.as_ref()).into_bytes()
}

/// What [`TokenKeys::rotate`] did.
#[derive(Debug)]
pub struct Rotated {
    /// The new signing key's kid and file.
    pub kid: String,
    pub file: String,
    /// The kids that still verify (the new one included).
    pub verifying: Vec<String>,
    /// Files of keys retired long enough ago that no token they signed can
    /// still be valid, removed.
    pub removed: Vec<String>,
}

impl TokenKeys {
    /// Loads every signing key from the data dir, making the first one on
    /// first start.
    pub fn load_or_create(dir: &DataDir) -> Result<Self, DataDirError> {
        if generations(dir)?.is_empty() {
            dir.read_or_create(TOKEN_KEY_FILE, || Ok::<_, DataDirError>(new_key_pem()))?;
        }
        Self::load(dir)
    }

    /// Loads every signing key in the data dir: the newest signs, all
    /// verify.
    pub fn load(dir: &DataDir) -> Result<Self, DataDirError> {
        let mut keys: Option<Self> = None;
        for n in generations(dir)? {
            let name = key_file(n);
            let damaged = |reason: String| DataDirError::Damaged {
                path: dir.file(&name),
                reason,
            };
            let Some(pem) = dir.read(&name)? else {
                continue; // removed meanwhile by a rotation
            };
            let der =
                PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|e| damaged(format!("{e:?}")))?;
            let key = Self::from_pkcs8(der.secret_pkcs8_der()).map_err(damaged)?;
            keys = Some(match keys {
                None => key,
                Some(older) => key.trusting(older),
            });
        }
        keys.ok_or_else(|| DataDirError::Damaged {
            path: dir.file(TOKEN_KEY_FILE),
            reason: "no token-signing key in the data dir".into(),
        })
    }

    /// This key set also verifying what `older` verifies.
    fn trusting(mut self, older: Self) -> Self {
        for (kid, key) in older.verifying {
            self.verifying.entry(kid).or_insert(key);
        }
        self
    }

    /// Adds a new signing key to the data dir (the next generation) and
    /// removes the keys retired more than `token_life` ago: a key is
    /// retired when the one after it is made, and no token it signed
    /// outlives that by more than the longest access-token life.
    pub fn rotate(dir: &DataDir, token_life: std::time::Duration) -> Result<Rotated, DataDirError> {
        let mut next = generations(dir)?.last().copied().unwrap_or(0) + 1;
        let file = loop {
            let name = key_file(next);
            let (_, created) =
                dir.read_or_create(&name, || Ok::<_, DataDirError>(new_key_pem()))?;
            if created {
                break name;
            }
            next += 1; // another rotation took this one
        };
        let all = generations(dir)?;
        let mut removed = Vec::new();
        for pair in all.windows(2) {
            let (old, successor) = (key_file(pair[0]), key_file(pair[1]));
            let retired_for = std::fs::metadata(dir.file(&successor))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok());
            if retired_for.is_some_and(|age| age > token_life) {
                std::fs::remove_file(dir.file(&old)).map_err(|source| {
                    DataDirError::NotWritable {
                        path: dir.file(&old),
                        source,
                    }
                })?;
                removed.push(old);
            }
        }
        let keys = Self::load(dir)?;
        let mut verifying: Vec<String> = keys.verifying.keys().cloned().collect();
        verifying.sort();
        Ok(Rotated {
            kid: keys.kid.clone(),
            file,
            verifying,
            removed,
        })
    }

    /// Whether the data dir holds a token-signing key.
    pub fn any_in(dir: &DataDir) -> Result<bool, DataDirError> {
        Ok(!generations(dir)?.is_empty())
    }

    /// The kids whose tokens verify.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.verifying.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    /// Builds the key set from an Ed25519 PKCS#8 document.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, String> {
        let pair =
            Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| format!("not an Ed25519 key: {e}"))?;
        let public = pair.public_key().as_ref().to_vec();
        let kid = crate::secrets::sha256_hex(&public)[..16].to_owned();
        let mut verifying = HashMap::new();
        verifying.insert(kid.clone(), DecodingKey::from_ed_der(&public));
        Ok(Self {
            kid,
            public_key: public,
            signing: EncodingKey::from_ed_der(pkcs8),
            verifying,
        })
    }

    /// A new random key set, for tests and tools.
    pub fn generate() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("random source failed");
        Self::from_pkcs8(pkcs8.as_ref()).expect("a fresh key parses")
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw Ed25519 public key that verifies this broker's tokens.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// Signs an access token for `username` on the device whose certificate
    /// has `fingerprint`, valid from `now` for `ttl_secs`.
    pub fn issue(&self, username: &str, fingerprint: &[u8; 32], now: i64, ttl_secs: i64) -> String {
        self.issue_for_sign_in(username, fingerprint, None, now, ttl_secs)
    }

    /// As [`issue`](Self::issue), naming the sign-in (refresh family) too.
    pub fn issue_for_sign_in(
        &self,
        username: &str,
        fingerprint: &[u8; 32],
        sign_in: Option<&str>,
        now: i64,
        ttl_secs: i64,
    ) -> String {
        let claims = AccessClaims {
            sid: sign_in.map(str::to_owned),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: username.into(),
            exp: now + ttl_secs,
            nbf: now,
            iat: now,
            jti: crate::secrets::new_id(),
            cnf: Confirmation::for_fingerprint(fingerprint),
        };
        self.sign(&claims)
    }

    /// Signs arbitrary claims with the current key (tests use it to forge
    /// tokens with bad claims but a good signature).
    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        // Signing with a well-formed key of the right family cannot fail.
        jsonwebtoken::encode(&header, claims, &self.signing).expect("EdDSA signing failed")
    }

    /// Verifies a token presented on a connection whose client certificate
    /// has `fingerprint`, at time `now` (seconds since the epoch).
    pub fn verify(
        &self,
        token: &str,
        fingerprint: &[u8; 32],
        now: i64,
    ) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        // The header alone decides which key and algorithm; nothing from the
        // payload is looked at before the signature holds.
        let header_b64 = token.split('.').next().ok_or(TokenError::Malformed)?;
        let header_json = BASE64URL_NOPAD
            .decode(header_b64.as_bytes())
            .map_err(|_| TokenError::Malformed)?;
        let header: RawHeader =
            serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;
        match header.alg.as_deref() {
            Some("EdDSA") => {}
            Some(other) => return Err(TokenError::Algorithm(other.chars().take(16).collect())),
            None => return Err(TokenError::Algorithm(String::new())),
        }
        let kid = header.kid.ok_or(TokenError::MissingKeyId)?;
        let key = self.verifying.get(&kid).ok_or(TokenError::UnknownKey)?;

        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        let data =
            jsonwebtoken::decode::<serde_json::Value>(token, key, &validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidSignature => TokenError::Signature,
                    K::InvalidAlgorithm | K::InvalidAlgorithmName => {
                        TokenError::Algorithm("EdDSA?".into())
                    }
                    K::MissingRequiredClaim(c) => TokenError::MissingClaim(c.clone()),
                    K::InvalidAudience => TokenError::Audience,
                    K::InvalidIssuer => TokenError::Issuer,
                    _ => TokenError::Malformed,
                }
            })?;
        let claims = claims_from(data.claims)?;

        if claims.nbf > now + LEEWAY_SECS {
            return Err(TokenError::NotYetValid(claims.nbf - now));
        }
        if claims.iat > now + LEEWAY_SECS {
            return Err(TokenError::IssuedInFuture(claims.iat - now));
        }
        if claims.exp + LEEWAY_SECS <= now {
            return Err(TokenError::Expired);
        }
        let want = Confirmation::for_fingerprint(fingerprint);
        if !crate::secrets::constant_time_eq(
            want.x5t_s256.as_bytes(),
            claims.cnf.x5t_s256.as_bytes(),
        ) {
            return Err(TokenError::WrongDevice);
        }
        Ok(claims)
    }
}

/// Reads the claims, naming the first one missing or of the wrong type.
fn claims_from(value: serde_json::Value) -> Result<AccessClaims, TokenError> {
    for field in ["iss", "aud", "sub", "exp", "nbf", "iat", "jti", "cnf"] {
        if value.get(field).is_none() {
            return Err(TokenError::MissingClaim(field.into()));
        }
    }
    serde_json::from_value(value).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    //! One test per case 7-11 of reliability.md, and the good path.
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const DEVICE: [u8; 32] = [1; 32];
    const OTHER_DEVICE: [u8; 32] = [2; 32];

    fn good_claims(keys: &TokenKeys) -> serde_json::Value {
        let token = keys.issue("j.smith", &DEVICE, NOW, 300);
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&BASE64URL_NOPAD.decode(payload.as_bytes()).unwrap()).unwrap()
    }

    fn with(keys: &TokenKeys, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut claims = good_claims(keys);
        edit(&mut claims);
        keys.sign(&claims)
    }

    fn b64(v: &serde_json::Value) -> String {
        BASE64URL_NOPAD.encode(v.to_string().as_bytes())
    }

    #[test]
    fn a_good_token_verifies() {
        let keys = TokenKeys::generate();
        let token = keys.issue("j.smith", &DEVICE, NOW, 300);
        let claims = keys.verify(&token, &DEVICE, NOW + 10).unwrap();
        assert_eq!(claims.sub, "j.smith");
        assert_eq!(claims.aud, AUDIENCE);
    }

    // Case 7: expired, nbf in the future.
    #[test]
    fn case7_expired_and_not_yet_valid_are_refused() {
        let keys = TokenKeys::generate();
        let token = keys.issue("j.smith", &DEVICE, NOW, 300);
        assert_eq!(
            keys.verify(&token, &DEVICE, NOW + 300 + LEEWAY_SECS),
            Err(TokenError::Expired)
        );
        let future = with(&keys, |c| c["nbf"] = json!(NOW + 600));
        assert_eq!(
            keys.verify(&future, &DEVICE, NOW),
            Err(TokenError::NotYetValid(600))
        );
        let no_nbf = with(&keys, |c| {
            c.as_object_mut().unwrap().remove("nbf");
        });
        assert_eq!(
            keys.verify(&no_nbf, &DEVICE, NOW),
            Err(TokenError::MissingClaim("nbf".into()))
        );
        let no_exp = with(&keys, |c| {
            c.as_object_mut().unwrap().remove("exp");
        });
        assert_eq!(
            keys.verify(&no_exp, &DEVICE, NOW),
            Err(TokenError::MissingClaim("exp".into()))
        );
    }

    // Case 8: alg none, HS256 keyed with the public key, unknown alg.
    #[test]
    fn case8_forged_algorithms_are_refused_before_claims() {
        let keys = TokenKeys::generate();
        let good = keys.issue("j.smith", &DEVICE, NOW, 300);
        let payload = good.split('.').nth(1).unwrap();

        let none = format!(
            "{}.{payload}.",
            b64(&json!({"alg": "none", "kid": keys.kid()}))
        );
        assert_eq!(
            keys.verify(&none, &DEVICE, NOW),
            Err(TokenError::Algorithm("none".into()))
        );

        // HS256 with the broker's public key as the HMAC secret.
        let public = keys.public_key.clone();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(keys.kid().into());
        let hs = jsonwebtoken::encode(
            &header,
            &good_claims(&keys),
            &EncodingKey::from_secret(&public),
        )
        .unwrap();
        assert_eq!(
            keys.verify(&hs, &DEVICE, NOW),
            Err(TokenError::Algorithm("HS256".into()))
        );

        let weird = format!(
            "{}.{payload}.AAAA",
            b64(&json!({"alg": "XYZ999", "kid": keys.kid()}))
        );
        assert_eq!(
            keys.verify(&weird, &DEVICE, NOW),
            Err(TokenError::Algorithm("XYZ999".into()))
        );

        // Claims that are not even JSON are never reached when the alg is bad.
        let garbage_claims = format!("{}.!!!notbase64.AAAA", b64(&json!({"alg": "none"})));
        assert_eq!(
            keys.verify(&garbage_claims, &DEVICE, NOW),
            Err(TokenError::Algorithm("none".into()))
        );
    }

    // Case 9: bad signature, unknown kid, header-supplied keys.
    #[test]
    fn case9_bad_signatures_and_foreign_keys_are_refused() {
        let keys = TokenKeys::generate();
        let good = keys.issue("j.smith", &DEVICE, NOW, 300);
        let (head, sig) = good.rsplit_once('.').unwrap();
        let mut sig_bytes = BASE64URL_NOPAD.decode(sig.as_bytes()).unwrap();
        sig_bytes[0] ^= 1;
        let bad_sig = format!("{head}.{}", BASE64URL_NOPAD.encode(&sig_bytes));
        assert_eq!(
            keys.verify(&bad_sig, &DEVICE, NOW),
            Err(TokenError::Signature)
        );

        // Signed by another key that reuses our kid.
        let attacker = TokenKeys::generate();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(keys.kid().into());
        // Key locations offered in the header must be ignored.
        header.jku = Some("https://attacker.invalid/keys".into());
        header.x5u = Some("https://attacker.invalid/cert".into());
        let forged = jsonwebtoken::encode(&header, &good_claims(&keys), &attacker.signing).unwrap();
        assert_eq!(
            keys.verify(&forged, &DEVICE, NOW),
            Err(TokenError::Signature)
        );

        // An embedded jwk (raw JSON, since it names the attacker's key).
        let attacker_payload = attacker.sign(&good_claims(&keys));
        let (_, rest) = attacker_payload.split_once('.').unwrap();
        let jwk_header = json!({"alg": "EdDSA", "kid": keys.kid(),
            "jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}});
        let with_jwk = format!("{}.{rest}", b64(&jwk_header));
        assert_eq!(
            keys.verify(&with_jwk, &DEVICE, NOW),
            Err(TokenError::Signature)
        );

        let unknown = attacker.issue("j.smith", &DEVICE, NOW, 300);
        assert_eq!(
            keys.verify(&unknown, &DEVICE, NOW),
            Err(TokenError::UnknownKey)
        );

        let no_kid = format!("{}.{rest}", b64(&json!({"alg": "EdDSA"})));
        assert_eq!(
            keys.verify(&no_kid, &DEVICE, NOW),
            Err(TokenError::MissingKeyId)
        );
    }

    // Case 10: missing or wrong aud, wrong iss, bound to another device.
    #[test]
    fn case10_audience_issuer_and_device_binding() {
        let keys = TokenKeys::generate();
        let no_aud = with(&keys, |c| {
            c.as_object_mut().unwrap().remove("aud");
        });
        assert_eq!(
            keys.verify(&no_aud, &DEVICE, NOW),
            Err(TokenError::MissingClaim("aud".into()))
        );
        let wrong_aud = with(&keys, |c| c["aud"] = json!("lanyard-admin"));
        assert_eq!(
            keys.verify(&wrong_aud, &DEVICE, NOW),
            Err(TokenError::Audience)
        );
        let wrong_iss = with(&keys, |c| c["iss"] = json!("someone-else"));
        assert_eq!(
            keys.verify(&wrong_iss, &DEVICE, NOW),
            Err(TokenError::Issuer)
        );
        let token = keys.issue("j.smith", &DEVICE, NOW, 300);
        assert_eq!(
            keys.verify(&token, &OTHER_DEVICE, NOW),
            Err(TokenError::WrongDevice)
        );
    }

    // Case 11: clock skew within 60 s accepted, beyond refused.
    #[test]
    fn case11_clock_skew_has_a_bounded_leeway() {
        let keys = TokenKeys::generate();
        // Issued by a node whose clock runs 59 s ahead.
        let ahead = keys.issue("j.smith", &DEVICE, NOW + 59, 300);
        assert!(keys.verify(&ahead, &DEVICE, NOW).is_ok());
        let far_ahead = keys.issue("j.smith", &DEVICE, NOW + 61, 300);
        let err = keys.verify(&far_ahead, &DEVICE, NOW).unwrap_err();
        assert_eq!(err, TokenError::NotYetValid(61));
        assert!(err.to_string().contains("check the clock"));
        // Expired 59 s ago by our clock: still inside the leeway.
        let recent = keys.issue("j.smith", &DEVICE, NOW - 300 - 59, 300);
        assert!(keys.verify(&recent, &DEVICE, NOW).is_ok());
        let old = keys.issue("j.smith", &DEVICE, NOW - 300 - 61, 300);
        assert_eq!(keys.verify(&old, &DEVICE, NOW), Err(TokenError::Expired));
    }

    #[test]
    fn oversized_tokens_are_refused_unread() {
        let keys = TokenKeys::generate();
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(keys.verify(&huge, &DEVICE, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn a_rotation_signs_with_the_new_key_and_the_old_tokens_still_verify() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let first = TokenKeys::load_or_create(&dir).unwrap();
        let old_token = first.issue("j.smith", &DEVICE, NOW, 300);
        let day = std::time::Duration::from_secs(86_400);
        let rotated = TokenKeys::rotate(&dir, day).unwrap();
        assert_eq!(rotated.file, "token-signing-key-2.pem");
        assert_ne!(rotated.kid, first.kid());
        assert!(rotated.removed.is_empty());
        let keys = TokenKeys::load(&dir).unwrap();
        assert_eq!(keys.kid(), rotated.kid);
        assert_eq!(keys.kids().len(), 2);
        assert!(keys.verify(&old_token, &DEVICE, NOW).is_ok());
        let new_token = keys.issue("j.smith", &DEVICE, NOW, 300);
        assert_eq!(
            first.verify(&new_token, &DEVICE, NOW),
            Err(TokenError::UnknownKey),
            "signed with the new key"
        );
        assert!(keys.verify(&new_token, &DEVICE, NOW).is_ok());
        // Again with no token life left: every retired key goes, the
        // newest stays and nothing is made again in the first key's place.
        let third = TokenKeys::rotate(&dir, std::time::Duration::ZERO).unwrap();
        assert_eq!(third.file, "token-signing-key-3.pem");
        assert_eq!(
            third.removed,
            vec!["token-signing-key.pem", "token-signing-key-2.pem"]
        );
        let keys = TokenKeys::load_or_create(&dir).unwrap();
        assert_eq!(keys.kids(), vec![third.kid.as_str()]);
        assert_eq!(
            keys.verify(&old_token, &DEVICE, NOW),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(generations(&dir).unwrap(), vec![3]);
    }
}
