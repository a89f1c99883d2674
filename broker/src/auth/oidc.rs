//! The broker as an OpenID Connect relying party (`[oidc]`).
//!
//! Authorization code + PKCE (S256) with a loopback redirect on the
//! laptop: [`Oidc::begin`] makes `state`, `nonce` and the PKCE verifier and
//! keeps them, bound to the device that asked, for [`PENDING_FOR_MS`];
//! [`Oidc::finish`] takes the code and `state` back (once), redeems the
//! code at the provider and validates the ID token with the `openidconnect`
//! crate: issuer, audience, expiry (with [`LEEWAY_SECS`] of leeway), nonce,
//! and the signature by a key from the provider's JWKS with one of the
//! algorithms it advertises, asymmetric ones only (`none` and the HMAC
//! algorithms are refused whatever the provider says). Discovery and the
//! JWKS are cached; a token signed with an unknown `kid` fetches the JWKS
//! again (at most every [`JWKS_REFETCH_MS`]) and is checked once more.
//!
//! The device authorization grant (RFC 8628, `lanyard-agent login
//! --device-code`): [`Oidc::device_begin`] asks the provider's
//! `device_authorization_endpoint` (from discovery) for a user code, kept
//! with its device code (which never leaves the broker) under a handle
//! bound to the device that asked; [`Oidc::device_finish`] polls the token
//! endpoint (the crate's loop: `interval`, `slow_down`, bounded by the
//! code's expiry) and validates the ID token as a code sign-in does (there
//! is no nonce in this grant: the device code is the broker's secret).
//!
//! The provider's tokens never reach a log or an error message: errors name
//! what was wrong, never a token.
//!
//! HTTP: the crate's own client features are off; [`http_call`] is a
//! small hyper client over rustls (the system's roots), https only, plain
//! http only to a loopback issuer, no redirects followed, bodies bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
    CoreDeviceAuthorizationResponse, CoreGrantType, CoreIdToken, CoreIdTokenVerifier,
    CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType, CoreTokenResponse,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret,
    CsrfToken, DeviceAuthorizationUrl, DeviceCodeErrorResponseType, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl,
    RefreshToken, Scope, TokenResponse,
};
use serde_json::Value;

use crate::clock::{now_ms, Millis};
use crate::config::OidcSettings;

/// How long a started sign-in waits for its code.
pub const PENDING_FOR_MS: Millis = 5 * 60_000;
/// Started sign-ins kept at most (the oldest go first).
pub const MAX_PENDING: usize = 10_000;
/// Started sign-ins kept per device at most.
pub const MAX_PENDING_PER_DEVICE: usize = 4;
/// Clock difference allowed on the ID token's expiry.
pub const LEEWAY_SECS: i64 = 60;
/// The JWKS is fetched again for an unknown `kid` at most this often.
pub const JWKS_REFETCH_MS: Millis = 10_000;
/// Discovery is read again after this long.
pub const DISCOVERY_FOR_MS: Millis = 3_600_000;
/// Longest answer read from the provider.
const MAX_BODY: usize = 1024 * 1024;
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds on what the agent hands over.
pub const MAX_CODE: usize = 4096;
pub const MAX_STATE: usize = 256;
/// Groups read from the claim at most.
pub const MAX_GROUPS: usize = 1000;
/// A device sign-in waits for the person at most this long, whatever the
/// provider's `expires_in`.
pub const DEVICE_WAIT_MAX_MS: Millis = 15 * 60_000;
/// Longest user code and verification address passed on to the agent.
pub const MAX_USER_CODE: usize = 64;
pub const MAX_VERIFICATION_URI: usize = 2048;

/// The discovery document's `device_authorization_endpoint`, when the
/// provider offers the device code flow.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct DeviceEndpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_authorization_endpoint: Option<DeviceAuthorizationUrl>,
}
impl AdditionalProviderMetadata for DeviceEndpoint {}

/// Discovery, with the device endpoint.
type Metadata = ProviderMetadata<
    DeviceEndpoint,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// Why an SSO sign-in was refused. The messages are for the person and the
/// audit log; none carries a token.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("this broker has no [oidc] provider configured")]
    NotConfigured,
    #[error("redirect port {0} is not one of the broker's [oidc] redirect_ports ({1})")]
    PortNotConfigured(u16, String),
    #[error("unknown or expired sign-in (state); start `lanyard-agent login --sso` again")]
    BadState,
    #[error("the identity provider cannot be reached or answered badly: {0}")]
    Provider(String),
    #[error(
        "the identity provider refused the code (used already, expired, or for another sign-in)"
    )]
    CodeRefused,
    #[error("the identity provider's ID token was refused: {0}")]
    IdToken(String),
    #[error("the identity provider no longer lets this person sign in: {0}")]
    RefreshRefused(String),
    #[error("the ID token has no usable {claim:?} claim to name the person")]
    NoUsername { claim: String },
    #[error(
        "the identity provider sent a groups overage pointer (_claim_names) instead of the {claim:?} \
         claim: the person is in too many groups. Fix: assign the groups to the application \
         (Entra ID: Token configuration, \"Groups assigned to the application\") or use app \
         roles (groups_claim = \"roles\")"
    )]
    Overage { claim: String },
    #[error("the {claim:?} claim is not a list of strings")]
    BadGroups { claim: String },
    #[error("the provider does not offer the device code flow; use --sso")]
    NoDeviceFlow,
    #[error("unknown or expired device sign-in; start `lanyard-agent login --device-code` again")]
    DeviceUnknown,
    #[error("the sign-in was refused at the identity provider (access_denied)")]
    DeviceDenied,
    #[error(
        "nobody entered the code in time (expired_token); run `lanyard-agent login --device-code` again"
    )]
    DeviceExpired,
}

impl OidcError {
    /// A short name for metrics and audit details.
    pub fn kind(&self) -> &'static str {
        match self {
            OidcError::NotConfigured => "not_configured",
            OidcError::PortNotConfigured(..) => "port_not_configured",
            OidcError::BadState => "bad_state",
            OidcError::Provider(_) => "provider",
            OidcError::CodeRefused => "code_refused",
            OidcError::IdToken(_) => "id_token",
            OidcError::RefreshRefused(_) => "refresh_refused",
            OidcError::NoUsername { .. } => "no_username",
            OidcError::Overage { .. } => "groups_overage",
            OidcError::BadGroups { .. } => "bad_groups",
            OidcError::NoDeviceFlow => "no_device_flow",
            OidcError::DeviceUnknown => "device_unknown",
            OidcError::DeviceDenied => "device_denied",
            OidcError::DeviceExpired => "device_expired",
        }
    }
}

/// Who the provider says signed in.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The provider's `sub`.
    pub subject: String,
    /// From the configured username claim, lowercased; an e-mail-like
    /// value gives its local part (`j.smith@council.example` → `j.smith`).
    pub username: String,
    /// From the configured groups claim, as the provider sends them.
    pub groups: Vec<String>,
    /// The provider's refresh token, when it gave one.
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.subject)
            .field("username", &self.username)
            .field("groups", &self.groups)
            .field("refresh_token", &self.refresh_token.is_some())
            .finish()
    }
}

struct Pending {
    device: String,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
    redirect: RedirectUrl,
    expires_at: Millis,
}

/// Makes room in a map of started sign-ins for one more of `device`:
/// expired ones go; past the device's share its oldest goes, and past the
/// map's bound the oldest of all, so neither grows without bound.
fn make_room<V>(
    map: &mut HashMap<String, V>,
    device: &str,
    now: Millis,
    of: impl Fn(&V) -> (&String, Millis),
) {
    map.retain(|_, v| of(v).1 > now);
    let mine: Vec<(String, Millis)> = map
        .iter()
        .filter(|(_, v)| of(v).0 == device)
        .map(|(k, v)| (k.clone(), of(v).1))
        .collect();
    if mine.len() >= MAX_PENDING_PER_DEVICE {
        if let Some((oldest, _)) = mine.iter().min_by_key(|(_, e)| *e) {
            map.remove(oldest);
        }
    }
    if map.len() >= MAX_PENDING {
        if let Some(oldest) = map
            .iter()
            .min_by_key(|(_, v)| of(v).1)
            .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
}

/// A started device sign-in, waiting for the person.
struct PendingDevice {
    device: String,
    details: CoreDeviceAuthorizationResponse,
    expires_at: Millis,
}

/// What the person is shown to sign in on another screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStarted {
    /// The broker's name for this sign-in (the device code stays here).
    pub handle: String,
    pub user_code: String,
    pub verification_uri: String,
    /// The address with the code in it, when the provider gives one.
    pub verification_uri_complete: Option<String>,
    pub expires_in_secs: u32,
    pub interval_secs: u32,
}

struct Discovered {
    metadata: Metadata,
    jwks: CoreJsonWebKeySet,
    /// The provider's signing algorithms, asymmetric ones only.
    algs: Vec<CoreJwsSigningAlgorithm>,
    fetched_at: Millis,
    /// When the JWKS was last fetched again for an unknown key (0: never).
    jwks_refetched_at: Millis,
}

/// The relying party: one per broker.
pub struct Oidc {
    settings: OidcSettings,
    tls: Arc<rustls::ClientConfig>,
    discovered: tokio::sync::Mutex<Option<Arc<Discovered>>>,
    pending: Mutex<HashMap<String, Pending>>,
    devices: Mutex<HashMap<String, PendingDevice>>,
    /// Seconds added to the clock when checking a token's times (tests).
    skew_secs: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn asymmetric(alg: &CoreJwsSigningAlgorithm) -> bool {
    use CoreJwsSigningAlgorithm as A;
    matches!(
        alg,
        A::RsaSsaPkcs1V15Sha256
            | A::RsaSsaPkcs1V15Sha384
            | A::RsaSsaPkcs1V15Sha512
            | A::RsaSsaPssSha256
            | A::RsaSsaPssSha384
            | A::RsaSsaPssSha512
            | A::EcdsaP256Sha256
            | A::EcdsaP384Sha384
            | A::EdDsa
    )
}

/// Lowercased; the local part of an e-mail-like value.
pub fn username_from_claim(value: &str) -> Option<String> {
    let v = value.trim().to_lowercase();
    let local = v.split('@').next().unwrap_or_default();
    crate::model::Username::parse(local)
        .ok()
        .map(|u| u.to_string())
}

/// The groups claim from the ID token's payload (already verified).
fn groups_from(payload: &Value, claim: &str) -> Result<Vec<String>, OidcError> {
    let overage = payload
        .get("_claim_names")
        .and_then(|n| n.get(claim))
        .is_some();
    match payload.get(claim) {
        None if overage => Err(OidcError::Overage {
            claim: claim.to_owned(),
        }),
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            if items.len() > MAX_GROUPS {
                return Err(OidcError::BadGroups {
                    claim: claim.to_owned(),
                });
            }
            items
                .iter()
                .map(|g| match g {
                    Value::String(s) if !s.is_empty() && s.len() <= 256 => Ok(s.clone()),
                    _ => Err(OidcError::BadGroups {
                        claim: claim.to_owned(),
                    }),
                })
                .collect()
        }
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => Ok(vec![s.clone()]),
        Some(_) => Err(OidcError::BadGroups {
            claim: claim.to_owned(),
        }),
    }
}

/// The JWT's payload as JSON. Only called on a token whose signature has
/// been verified.
fn payload_of(token: &CoreIdToken) -> Result<Value, OidcError> {
    let text = token.to_string();
    let part = text
        .split('.')
        .nth(1)
        .ok_or_else(|| OidcError::IdToken("not a signed JWT".into()))?;
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(part.trim_end_matches('=').as_bytes())
        .map_err(|_| OidcError::IdToken("payload is not base64url".into()))?;
    serde_json::from_slice(&bytes).map_err(|_| OidcError::IdToken("payload is not JSON".into()))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

fn loopback_host(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1")
}

/// One HTTP request to the provider: https (or http to loopback), no
/// redirects, a bounded answer, within [`HTTP_TIMEOUT`].
pub async fn http_call(
    tls: Arc<rustls::ClientConfig>,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    tokio::time::timeout(HTTP_TIMEOUT, http_call_inner(tls, request))
        .await
        .map_err(|_| HttpError("no answer within 10 s".into()))?
}

async fn http_call_inner(
    tls: Arc<rustls::ClientConfig>,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let uri = parts.uri.clone();
    let host = uri
        .host()
        .ok_or_else(|| HttpError("URL without a host".into()))?
        .to_owned();
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") if loopback_host(&host) => false,
        _ => {
            return Err(HttpError(format!(
                "refusing {}://{host}: https only (plain http only on loopback)",
                uri.scheme_str().unwrap_or("?")
            )))
        }
    };
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tcp = tokio::net::TcpStream::connect((bare.as_str(), port))
        .await
        .map_err(|e| HttpError(format!("cannot connect to {host}:{port}: {e}")))?;
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_else(|| host.clone());
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let mut req = http::Request::builder()
        .method(parts.method)
        .uri(path)
        .header(http::header::HOST, authority);
    for (k, v) in parts.headers.iter() {
        req = req.header(k, v);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| HttpError(format!("bad request: {e}")))?;
    let response = if https {
        let name = rustls_pki_types::ServerName::try_from(bare.clone())
            .map_err(|_| HttpError(format!("{host} is not a server name")))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| HttpError(format!("TLS with {host}: {e}")))?;
        send(stream, req).await?
    } else {
        send(tcp, req).await?
    };
    Ok(response)
}

async fn send<S>(
    stream: S,
    req: http::Request<Full<Bytes>>,
) -> Result<openidconnect::HttpResponse, HttpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| HttpError(format!("HTTP: {e}")))?;
    let conn = tokio::spawn(conn);
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| HttpError(format!("HTTP: {e}")))?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| HttpError(format!("reading the answer: {e}")))?
        .to_bytes();
    conn.abort();
    Ok(http::Response::from_parts(parts, body.to_vec()))
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> Self {
        Oidc {
            settings,
            tls: tls_config(),
            discovered: tokio::sync::Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            devices: Mutex::new(HashMap::new()),
            skew_secs: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// Tests: check token times as if the clock were `secs` ahead.
    #[cfg(any(test, feature = "testkit"))]
    pub fn set_clock_skew(&self, secs: i64) {
        self.skew_secs
            .store(secs, std::sync::atomic::Ordering::Relaxed);
    }

    /// Tests: replace the nonce a started sign-in expects.
    #[cfg(any(test, feature = "testkit"))]
    pub fn replace_nonce(&self, state: &str, nonce: &str) -> bool {
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(state) {
            Some(p) => {
                p.nonce = Nonce::new(nonce.to_owned());
                true
            }
            None => false,
        }
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    fn http(
        &self,
    ) -> impl Fn(
        openidconnect::HttpRequest,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<openidconnect::HttpResponse, HttpError>> + Send,
        >,
    > {
        let tls = self.tls.clone();
        move |req| Box::pin(http_call(tls.clone(), req))
    }

    /// Discovery and the JWKS, from the cache or the provider.
    async fn discovered(&self, refetch_jwks: bool) -> Result<Arc<Discovered>, OidcError> {
        let mut slot = self.discovered.lock().await;
        let now = now_ms();
        if let Some(d) = slot.as_ref() {
            let fresh = now - d.fetched_at < DISCOVERY_FOR_MS;
            if fresh && !refetch_jwks {
                return Ok(d.clone());
            }
            if fresh && now - d.jwks_refetched_at < JWKS_REFETCH_MS {
                return Ok(d.clone());
            }
            if fresh {
                let http = self.http();
                let jwks = CoreJsonWebKeySet::fetch_async(d.metadata.jwks_uri(), &http)
                    .await
                    .map_err(|e| OidcError::Provider(format!("JWKS: {e}")))?;
                let next = Arc::new(Discovered {
                    metadata: d.metadata.clone(),
                    jwks,
                    algs: d.algs.clone(),
                    fetched_at: d.fetched_at,
                    jwks_refetched_at: now,
                });
                *slot = Some(next.clone());
                return Ok(next);
            }
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone())
            .map_err(|e| OidcError::Provider(format!("issuer URL: {e}")))?;
        let http = self.http();
        let metadata = Metadata::discover_async(issuer, &http)
            .await
            .map_err(|e| OidcError::Provider(format!("discovery: {e}")))?;
        let algs: Vec<_> = metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|a| asymmetric(a))
            .cloned()
            .collect();
        if algs.is_empty() {
            return Err(OidcError::Provider(
                "the provider advertises no asymmetric ID token signing algorithm".into(),
            ));
        }
        let jwks = metadata.jwks().clone();
        let d = Arc::new(Discovered {
            metadata,
            jwks,
            algs,
            fetched_at: now,
            jwks_refetched_at: 0,
        });
        *slot = Some(d.clone());
        Ok(d)
    }

    fn client(
        &self,
        d: &Discovered,
    ) -> CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        CoreClient::from_provider_metadata(
            d.metadata.clone(),
            ClientId::new(self.settings.client_id.clone()),
            self.settings.client_secret.clone().map(ClientSecret::new),
        )
    }

    fn verifier<'a>(&self, d: &'a Discovered) -> CoreIdTokenVerifier<'a> {
        let skew = self.skew_secs.load(std::sync::atomic::Ordering::Relaxed);
        // A public-client verifier: no client secret, so no HMAC key, and
        // only the provider's asymmetric algorithms.
        CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.settings.client_id.clone()),
            d.metadata.issuer().clone(),
            d.jwks.clone(),
        )
        .set_allowed_algs(d.algs.clone())
        .set_time_fn(move || chrono::Utc::now() + chrono::Duration::seconds(skew - LEEWAY_SECS))
    }

    /// Starts a sign-in for `device` whose agent listens on `port`: the
    /// URL to open in the browser.
    pub async fn begin(&self, device: &str, port: u16) -> Result<String, OidcError> {
        if !self.settings.redirect_ports.contains(&port) {
            return Err(OidcError::PortNotConfigured(port, self.ports_text()));
        }
        self.begin_at(device, &format!("http://127.0.0.1:{port}/callback"))
            .await
    }

    /// Starts a sign-in bound to `device` (an agent, the CLI's handle, or
    /// a console sign-in's cookie) whose redirect comes back to `redirect`,
    /// one of the configured ones.
    pub async fn begin_at(&self, device: &str, redirect: &str) -> Result<String, OidcError> {
        let d = self.discovered(false).await?;
        let redirect = RedirectUrl::new(redirect.to_owned())
            .map_err(|e| OidcError::Provider(format!("redirect URL: {e}")))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.client(&d).set_redirect_uri(redirect.clone());
        let mut request = client.authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for s in &self.settings.scopes {
            request = request.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let now = now_ms();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        make_room(&mut pending, device, now, |p| (&p.device, p.expires_at));
        pending.insert(
            state.secret().clone(),
            Pending {
                device: device.to_owned(),
                nonce,
                verifier,
                redirect,
                expires_at: now + PENDING_FOR_MS,
            },
        );
        Ok(url.to_string())
    }

    pub fn ports_text(&self) -> String {
        self.settings
            .redirect_ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Started sign-ins waiting for their code.
    pub fn pending_count(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Ends a sign-in that `device` started: redeems `code` and validates
    /// the ID token. A `state` is good once, for the device that began it.
    pub async fn finish(
        &self,
        device: &str,
        code: &str,
        state: &str,
    ) -> Result<Identity, OidcError> {
        if code.is_empty() || code.len() > MAX_CODE || state.is_empty() || state.len() > MAX_STATE {
            return Err(OidcError::BadState);
        }
        let pending = {
            let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(state) {
                Some(p) if p.device == device => map.remove(state),
                _ => None,
            }
        };
        let pending = match pending {
            Some(p) if p.expires_at > now_ms() => p,
            _ => return Err(OidcError::BadState),
        };
        let d = self.discovered(false).await?;
        let client = self.client(&d).set_redirect_uri(pending.redirect.clone());
        let http = self.http();
        let response: CoreTokenResponse = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Provider(format!("token endpoint: {e}")))?
            .set_pkce_verifier(pending.verifier)
            .request_async(&http)
            .await
            .map_err(token_error)?;
        let nonce = pending.nonce;
        self.identity(&response, |v: &CoreIdTokenVerifier<'_>, t: &CoreIdToken| {
            t.claims(v, &nonce).map(|c| c.subject().to_string())
        })
        .await
    }

    /// Starts a device sign-in for `device`: the user code and where to
    /// enter it, from the provider's device authorization endpoint.
    pub async fn device_begin(&self, device: &str) -> Result<DeviceStarted, OidcError> {
        let d = self.discovered(false).await?;
        let endpoint = d
            .metadata
            .additional_metadata()
            .device_authorization_endpoint
            .clone()
            .ok_or(OidcError::NoDeviceFlow)?;
        let client = self.client(&d).set_device_authorization_url(endpoint);
        let mut request = client.exchange_device_code();
        for s in &self.settings.scopes {
            request = request.add_scope(Scope::new(s.clone()));
        }
        let http = self.http();
        let details: CoreDeviceAuthorizationResponse =
            request.request_async(&http).await.map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r) => OidcError::Provider(format!(
                    "the device authorization endpoint said {} (is the device code flow allowed for client {}?)",
                    r.error().as_ref(),
                    self.settings.client_id
                )),
                openidconnect::RequestTokenError::Request(e) => {
                    OidcError::Provider(format!("device authorization endpoint: {e}"))
                }
                _ => OidcError::Provider(
                    "device authorization endpoint: an answer that is not a device authorization"
                        .into(),
                ),
            })?;
        let user_code = details.user_code().secret().clone();
        let verification_uri = details.verification_uri().to_string();
        let complete = details
            .verification_uri_complete()
            .map(|u| u.secret().clone());
        if user_code.is_empty()
            || user_code.len() > MAX_USER_CODE
            || verification_uri.len() > MAX_VERIFICATION_URI
            || complete
                .as_ref()
                .is_some_and(|c| c.len() > MAX_VERIFICATION_URI)
        {
            return Err(OidcError::Provider(
                "the device authorization's user code or address is too long".into(),
            ));
        }
        let wait_ms = (details.expires_in().as_millis() as Millis).clamp(1000, DEVICE_WAIT_MAX_MS);
        let started = DeviceStarted {
            handle: crate::secrets::new_token("lyd_"),
            user_code,
            verification_uri,
            verification_uri_complete: complete,
            expires_in_secs: (wait_ms / 1000) as u32,
            interval_secs: details.interval().as_secs().min(u64::from(u32::MAX)) as u32,
        };
        let now = now_ms();
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        make_room(&mut devices, device, now, |p| (&p.device, p.expires_at));
        devices.insert(
            started.handle.clone(),
            PendingDevice {
                device: device.to_owned(),
                details,
                expires_at: now + wait_ms,
            },
        );
        Ok(started)
    }

    /// Started device sign-ins waiting for the person.
    pub fn device_pending_count(&self) -> usize {
        self.devices.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Waits for the person to sign in at the provider for the device
    /// sign-in `handle` that `device` started (once): polls the token
    /// endpoint at the provider's `interval` (longer after `slow_down`)
    /// until the code expires, then validates the ID token.
    pub async fn device_finish(&self, device: &str, handle: &str) -> Result<Identity, OidcError> {
        if handle.is_empty() || handle.len() > MAX_STATE {
            return Err(OidcError::DeviceUnknown);
        }
        let pending = {
            let mut map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(handle) {
                Some(p) if p.device == device => map.remove(handle),
                _ => None,
            }
        };
        let Some(pending) = pending else {
            return Err(OidcError::DeviceUnknown);
        };
        let left = pending.expires_at - now_ms();
        if left <= 0 {
            return Err(OidcError::DeviceExpired);
        }
        let d = self.discovered(false).await?;
        let client = self.client(&d);
        let http = self.http();
        let response: CoreTokenResponse = client
            .exchange_device_access_token(&pending.details)
            .map_err(|e| OidcError::Provider(format!("token endpoint: {e}")))?
            .request_async(
                &http,
                tokio::time::sleep,
                Some(Duration::from_millis(left as u64)),
            )
            .await
            .map_err(device_error)?;
        self.identity(&response, |v: &CoreIdTokenVerifier<'_>, t: &CoreIdToken| {
            // No nonce in this grant: the device code never left the broker.
            t.claims(v, |_: Option<&Nonce>| Ok(()))
                .map(|c| c.subject().to_string())
        })
        .await
    }

    /// Asks the provider again, with its refresh token, whether the person
    /// may still sign in: their identity now (and the next refresh token).
    pub async fn recheck(&self, refresh_token: &str) -> Result<Identity, OidcError> {
        let d = self.discovered(false).await?;
        let client = self.client(&d);
        let http = self.http();
        let token = RefreshToken::new(refresh_token.to_owned());
        let response: CoreTokenResponse = client
            .exchange_refresh_token(&token)
            .map_err(|e| OidcError::Provider(format!("token endpoint: {e}")))?
            .request_async(&http)
            .await
            .map_err(|e| match token_error(e) {
                OidcError::CodeRefused => {
                    OidcError::RefreshRefused("the provider refused the refresh token".into())
                }
                other => other,
            })?;
        let mut id = self
            .identity(&response, |v: &CoreIdTokenVerifier<'_>, t: &CoreIdToken| {
                // A refreshed ID token carries no new nonce.
                t.claims(v, |_: Option<&Nonce>| Ok(()))
                    .map(|c| c.subject().to_string())
            })
            .await?;
        if id.refresh_token.is_none() {
            id.refresh_token = Some(refresh_token.to_owned());
        }
        Ok(id)
    }

    /// Validates the ID token in `response` (fetching the JWKS again once
    /// for an unknown key) and reads the person from it.
    async fn identity<F>(
        &self,
        response: &CoreTokenResponse,
        check: F,
    ) -> Result<Identity, OidcError>
    where
        F: Fn(
            &CoreIdTokenVerifier<'_>,
            &CoreIdToken,
        ) -> Result<String, openidconnect::ClaimsVerificationError>,
    {
        let token = response
            .id_token()
            .ok_or_else(|| OidcError::IdToken("the provider sent no ID token".into()))?;
        let d = self.discovered(false).await?;
        let subject = match check(&self.verifier(&d), token) {
            Ok(s) => s,
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(
                openidconnect::SignatureVerificationError::NoMatchingKey,
            )) => {
                let d = self.discovered(true).await?;
                let verifier = self.verifier(&d);
                check(&verifier, token).map_err(claims_error)?
            }
            Err(e) => return Err(claims_error(e)),
        };
        let payload = payload_of(token)?;
        let claim = &self.settings.username_claim;
        let username = payload
            .get(claim.as_str())
            .and_then(Value::as_str)
            .and_then(username_from_claim)
            .ok_or_else(|| OidcError::NoUsername {
                claim: claim.clone(),
            })?;
        let groups = groups_from(&payload, &self.settings.groups_claim)?;
        Ok(Identity {
            subject,
            username,
            groups,
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
        })
    }
}

fn token_error<E: std::error::Error>(
    e: openidconnect::RequestTokenError<
        E,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> OidcError {
    use openidconnect::core::CoreErrorResponseType as T;
    match e {
        openidconnect::RequestTokenError::ServerResponse(r) => match r.error() {
            T::InvalidGrant => OidcError::CodeRefused,
            other => OidcError::Provider(format!("token endpoint said {}", other.as_ref())),
        },
        openidconnect::RequestTokenError::Request(e) => {
            OidcError::Provider(format!("token endpoint: {e}"))
        }
        openidconnect::RequestTokenError::Parse(_, _) => {
            OidcError::Provider("token endpoint: an answer that is not a token response".into())
        }
        openidconnect::RequestTokenError::Other(s) => {
            OidcError::Provider(format!("token endpoint: {s}"))
        }
    }
}

/// The device grant's polling error, named for the person.
fn device_error<E: std::error::Error>(
    e: openidconnect::RequestTokenError<E, openidconnect::DeviceCodeErrorResponse>,
) -> OidcError {
    match e {
        openidconnect::RequestTokenError::ServerResponse(r) => match r.error() {
            DeviceCodeErrorResponseType::AccessDenied => OidcError::DeviceDenied,
            DeviceCodeErrorResponseType::ExpiredToken => OidcError::DeviceExpired,
            DeviceCodeErrorResponseType::Basic(
                openidconnect::core::CoreErrorResponseType::InvalidGrant,
            ) => OidcError::DeviceUnknown,
            other => OidcError::Provider(format!("token endpoint said {}", other.as_ref())),
        },
        openidconnect::RequestTokenError::Request(e) => {
            OidcError::Provider(format!("token endpoint: {e}"))
        }
        openidconnect::RequestTokenError::Parse(_, _) => {
            OidcError::Provider("token endpoint: an answer that is not a token response".into())
        }
        openidconnect::RequestTokenError::Other(s) => {
            OidcError::Provider(format!("token endpoint: {s}"))
        }
    }
}

/// The verification error, without the token.
fn claims_error(e: openidconnect::ClaimsVerificationError) -> OidcError {
    use openidconnect::ClaimsVerificationError as C;
    use openidconnect::SignatureVerificationError as S;
    let why = match e {
        C::Expired(_) => "it has expired".to_owned(),
        C::InvalidAudience(_) => "it is for another audience (client_id)".to_owned(),
        C::InvalidIssuer(_) => "it is from another issuer".to_owned(),
        C::InvalidNonce(_) => "its nonce is not this sign-in's".to_owned(),
        C::SignatureVerification(S::NoMatchingKey) => {
            "it is signed with a key (kid) the provider does not publish".to_owned()
        }
        C::SignatureVerification(S::DisallowedAlg(a))
        | C::SignatureVerification(S::UnsupportedAlg(a)) => {
            format!("its algorithm {a} is not allowed")
        }
        C::SignatureVerification(S::NoSignature) => "it is not signed".to_owned(),
        C::SignatureVerification(_) => "its signature does not verify".to_owned(),
        C::InvalidSubject(_) => "its subject is invalid".to_owned(),
        C::Unsupported(s) => format!("unsupported: {s}"),
        other => format!("{other}"),
    };
    OidcError::IdToken(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_come_from_the_claim() {
        assert_eq!(
            username_from_claim("J.Smith@Council.example").as_deref(),
            Some("j.smith")
        );
        assert_eq!(username_from_claim("alice").as_deref(), Some("alice"));
        assert_eq!(username_from_claim(""), None);
        assert_eq!(username_from_claim("bad name"), None);
    }

    #[test]
    fn the_overage_pointer_is_refused_not_read_as_no_groups() {
        let v =
            serde_json::json!({"_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {}}});
        let e = groups_from(&v, "groups").unwrap_err();
        assert_eq!(e.kind(), "groups_overage");
        assert!(e
            .to_string()
            .contains("assign the groups to the application"));
        let v = serde_json::json!({"groups": ["a", "b"]});
        assert_eq!(groups_from(&v, "groups").unwrap(), vec!["a", "b"]);
        let v = serde_json::json!({"groups": [1]});
        assert_eq!(groups_from(&v, "groups").unwrap_err().kind(), "bad_groups");
        let v = serde_json::json!({});
        assert!(groups_from(&v, "groups").unwrap().is_empty());
    }

    #[test]
    fn only_asymmetric_algorithms_are_allowed() {
        assert!(!asymmetric(&CoreJwsSigningAlgorithm::HmacSha256));
        assert!(!asymmetric(&CoreJwsSigningAlgorithm::None));
        assert!(asymmetric(&CoreJwsSigningAlgorithm::EcdsaP256Sha256));
        assert!(asymmetric(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256));
    }
}
