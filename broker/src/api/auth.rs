//! Who is calling: bearer tokens, the `Admin` extractor and sign-in.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::ClientAddr;
use super::JsonBody;
use crate::clock::{duration_ms, now_ms, rfc3339};
use crate::model::Role;
use crate::state::AppState;
use crate::store::api_tokens::{Caller, TokenLookup};
use crate::store::AuditEntry;

/// Any caller with a valid token.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

/// A caller with admin rights; anyone else gets 403 and an audit row.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

/// A caller with the role `ict` or `admin` (laptops, requests, enrolment
/// codes, sessions).
#[derive(Debug, Clone)]
pub struct Ict(pub Caller);

/// A caller who may read the dashboard and the lists: `viewer`, `ict` or
/// `admin`.
#[derive(Debug, Clone)]
pub struct Viewer(pub Caller);

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// `METHOD /path` as the caller sent it (before any router nesting).
fn what(parts: &Parts) -> String {
    let path = parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.0.path().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    format!("{} {}", parts.method, path)
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let now = now_ms();
        let lookup = match bearer(parts) {
            None => None,
            Some(token) if token.len() > 256 => Some(TokenLookup::Unknown),
            Some(token) => Some(
                state
                    .store
                    .api_token_lookup(&crate::secrets::hash_secret(token.as_bytes()), now)
                    .await?,
            ),
        };
        let reason = match lookup {
            Some(TokenLookup::Valid(caller)) => {
                super::middleware::AccessNote::note_actor(&parts.extensions, &caller.name);
                return Ok(Authenticated(caller));
            }
            None => "no bearer token; pass --token or set LANYARD_TOKEN",
            Some(TokenLookup::Unknown) => "the token is not valid",
            Some(TokenLookup::Expired) => {
                "the token has expired; sign in again with `lanyard login`"
            }
            Some(TokenLookup::Revoked) => "the token has been revoked",
            Some(TokenLookup::Disabled) => "the token's owner is disabled",
        };
        state
            .metrics
            .api_auth_denied
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Counted, and audited in aggregate: an unauthenticated caller
        // never writes a row of its own or waits on the audit chain.
        let from = parts.extensions.get::<ClientAddr>().map(|a| a.0.ip());
        state
            .failures
            .note(from, "api.unauthorized", reason, &what(parts), now);
        Err(ApiError::Unauthorized(reason.into()))
    }
}

/// Lets `caller` through when their role is at least `needed`; anyone
/// else gets 403 and an audit row.
pub async fn require_role(
    state: &AppState,
    caller: Caller,
    needed: Role,
    what: &str,
) -> Result<Caller, ApiError> {
    if caller.role >= needed {
        return Ok(caller);
    }
    state
        .metrics
        .api_forbidden
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let why = needs_text(needed);
    let entry = AuditEntry::denied(&caller.name, "api.forbidden", what, why);
    state.store.audit_only(now_ms(), entry).await?;
    Err(ApiError::Forbidden(format!(
        "{} has the role {}; this needs {why}",
        caller.name, caller.role
    )))
}

/// What a role's routes need, in words.
pub fn needs_text(needed: Role) -> &'static str {
    match needed {
        Role::Admin => "admin rights",
        Role::Ict => "the role ict or admin",
        Role::Viewer => "the role viewer, ict or admin",
        Role::Staff => "a signed-in person",
    }
}

macro_rules! role_extractor {
    ($name:ident, $role:expr) => {
        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, Self::Rejection> {
                let Authenticated(caller) = Authenticated::from_request_parts(parts, state).await?;
                require_role(state, caller, $role, &what(parts))
                    .await
                    .map($name)
            }
        }
    };
}

role_extractor!(Admin, Role::Admin);
role_extractor!(Ict, Role::Ict);
role_extractor!(Viewer, Role::Viewer);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub totp: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LoginResponse {
    pub token: String,
    pub username: String,
    pub admin: bool,
    pub role: Role,
    pub expires_at: String,
}

/// `POST /api/v1/login`: a person's password (and TOTP) for an API token.
pub async fn login(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientAddr>>,
    note: Option<axum::Extension<std::sync::Arc<super::middleware::AccessNote>>>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let now = now_ms();
    let person = match crate::auth::signin::check_credentials(
        &state.store,
        &state.throttle,
        &state.seal,
        &state.failures,
        &req.username,
        &req.password,
        req.totp.as_deref(),
        client.map(|axum::Extension(ClientAddr(a))| a.ip()),
        now,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            state
                .metrics
                .api_logins_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(e.into());
        }
    };
    issue_api_token(&state, note.as_ref(), person.username, person.role, now).await
}

#[derive(Debug, Serialize)]
pub struct Me {
    pub name: String,
    pub admin: bool,
    pub role: Role,
}

/// `GET /api/v1/me`: who this token is.
pub async fn me(Authenticated(caller): Authenticated) -> Json<Me> {
    Json(Me {
        name: caller.name,
        admin: caller.admin,
        role: caller.role,
    })
}

/// `POST /api/v1/login/sso/start`: the identity provider's URL for an
/// admin CLI sign-in whose redirect comes back to 127.0.0.1:`port` (port
/// 0: only the redirect ports), and the handle that `finish` must bring.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoStartRequest {
    port: u16,
}

#[derive(Debug, Serialize)]
pub struct SsoStartResponse {
    url: String,
    ports: Vec<u16>,
    handle: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoFinishRequest {
    handle: String,
    code: String,
    state: String,
}

fn oidc_of(state: &AppState) -> Result<&crate::auth::oidc::Oidc, ApiError> {
    state
        .oidc
        .as_ref()
        .ok_or_else(|| ApiError::NotFound(crate::auth::oidc::OidcError::NotConfigured.to_string()))
}

/// The binding of a CLI sign-in: never the handle itself.
fn cli_binding(handle: &str) -> String {
    format!("cli:{}", crate::secrets::hash_secret(handle.as_bytes()))
}

/// A refused step before anyone is known: counted and audited in
/// aggregate per source address, as other unauthenticated failures are.
fn sso_refused(
    state: &AppState,
    from: Option<std::net::IpAddr>,
    e: &crate::auth::oidc::OidcError,
) -> ApiError {
    use crate::auth::oidc::OidcError;
    state
        .metrics
        .api_logins_failed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    state.failures.note(from, "sso", e.kind(), "", now_ms());
    match e {
        OidcError::NotConfigured => ApiError::NotFound(e.to_string()),
        OidcError::PortNotConfigured(..) => ApiError::BadRequest(e.to_string()),
        OidcError::Provider(_) => ApiError::Unavailable(e.to_string()),
        _ => ApiError::Unauthorized(e.to_string()),
    }
}

pub async fn sso_start(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientAddr>>,
    JsonBody(req): JsonBody<SsoStartRequest>,
) -> ApiResult<Json<SsoStartResponse>> {
    let oidc = oidc_of(&state)?;
    let ports = oidc.settings().redirect_ports.clone();
    if req.port == 0 {
        return Ok(Json(SsoStartResponse {
            url: String::new(),
            ports,
            handle: String::new(),
        }));
    }
    let handle = crate::secrets::new_token("lys_");
    match oidc.begin(&cli_binding(&handle), req.port).await {
        Ok(url) => Ok(Json(SsoStartResponse { url, ports, handle })),
        Err(e) => Err(sso_refused(
            &state,
            client.map(|axum::Extension(ClientAddr(a))| a.ip()),
            &e,
        )),
    }
}

/// `POST /api/v1/login/sso/finish`: the code and state the provider
/// redirected with, for an API token as `POST /api/v1/login` gives.
pub async fn sso_finish(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientAddr>>,
    note: Option<axum::Extension<std::sync::Arc<super::middleware::AccessNote>>>,
    JsonBody(req): JsonBody<SsoFinishRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let oidc = oidc_of(&state)?;
    if req.handle.is_empty() || req.handle.len() > 128 {
        return Err(ApiError::bad(
            "bad handle: start with /api/v1/login/sso/start",
        ));
    }
    let id = match oidc
        .finish(&cli_binding(&req.handle), &req.code, &req.state)
        .await
    {
        Ok(id) => id,
        Err(e) => {
            return Err(sso_refused(
                &state,
                client.map(|axum::Extension(ClientAddr(a))| a.ip()),
                &e,
            ))
        }
    };
    let now = now_ms();
    let person = sso_admit_person(&state, oidc, &id, now).await?;
    issue_api_token(&state, note.as_ref(), person.username, person.role, now).await
}

/// Whether the person the provider vouched for may sign in (mapped groups
/// taken from the claim, provisioned when configured): the person, or a
/// refusal that says why (audited).
pub async fn sso_admit_person(
    state: &AppState,
    oidc: &crate::auth::oidc::Oidc,
    id: &crate::auth::oidc::Identity,
    now: crate::clock::Millis,
) -> ApiResult<crate::store::staff::Staff> {
    use crate::store::oidc::Admission;
    let why = match state
        .store
        .sso_admit(&id.username, &id.groups, oidc.settings().provision, now)
        .await?
    {
        Admission::Admitted { .. } => None,
        Admission::NoMappedGroup => Some(format!(
            "{} is in no group mapped to Lanyard (lanyard groups add NAME --idp-group VALUE)",
            id.username
        )),
        Admission::Unknown => Some(format!(
            "{} is not a Lanyard user (and [oidc] provision is off)",
            id.username
        )),
        Admission::Disabled => Some("this account is disabled; contact ICT".to_owned()),
    };
    if let Some(why) = why {
        state
            .metrics
            .api_logins_failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        state
            .store
            .audit_denial(&id.username, "api.login", "sso", &why)
            .await;
        return Err(ApiError::Forbidden(why));
    }
    Ok(state.store.staff_get(&id.username).await?)
}

/// The API token a sign-in (password or SSO) ends with: stored hashed,
/// counted, and the person named as the request's actor.
async fn issue_api_token(
    state: &AppState,
    note: Option<&axum::Extension<std::sync::Arc<super::middleware::AccessNote>>>,
    username: String,
    role: Role,
    now: crate::clock::Millis,
) -> ApiResult<Json<LoginResponse>> {
    let admin = role.is_admin();
    if let Some(axum::Extension(note)) = note {
        note.set_actor(&username);
    }
    let token = crate::secrets::new_token("lyt_");
    let ttl = duration_ms(state.live().api_token_ttl);
    state
        .store
        .api_token_create(
            &username,
            admin,
            &crate::secrets::hash_secret(token.as_bytes()),
            ttl,
            now,
        )
        .await?;
    state
        .metrics
        .api_logins_ok
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(Json(LoginResponse {
        token,
        username,
        admin,
        role,
        expires_at: rfc3339(now + ttl),
    }))
}
