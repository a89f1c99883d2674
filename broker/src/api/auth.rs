//! Who is calling: bearer tokens, the `Admin` extractor and sign-in.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::ClientAddr;
use super::JsonBody;
use crate::clock::{duration_ms, now_ms, rfc3339};
use crate::state::AppState;
use crate::store::api_tokens::{Caller, TokenLookup};
use crate::store::AuditEntry;

/// Any caller with a valid token.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

/// A caller with admin rights; anyone else gets 403 and an audit row.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

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

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Authenticated(caller) = Authenticated::from_request_parts(parts, state).await?;
        if caller.admin {
            return Ok(Admin(caller));
        }
        state
            .metrics
            .api_forbidden
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let entry = AuditEntry::denied(
            &caller.name,
            "api.forbidden",
            &what(parts),
            "admin rights required",
        );
        state.store.audit_only(now_ms(), entry).await?;
        Err(ApiError::Forbidden(format!(
            "{} is not an admin; this needs admin rights",
            caller.name
        )))
    }
}

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
    if let Some(axum::Extension(note)) = &note {
        note.set_actor(&person.username);
    }
    let token = crate::secrets::new_token("lyt_");
    let ttl = duration_ms(state.live().api_token_ttl);
    state
        .store
        .api_token_create(
            &person.username,
            person.admin,
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
        username: person.username,
        admin: person.admin,
        expires_at: rfc3339(now + ttl),
    }))
}

#[derive(Debug, Serialize)]
pub struct Me {
    pub name: String,
    pub admin: bool,
}

/// `GET /api/v1/me`: who this token is.
pub async fn me(Authenticated(caller): Authenticated) -> Json<Me> {
    Json(Me {
        name: caller.name,
        admin: caller.admin,
    })
}
