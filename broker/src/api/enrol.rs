//! `/api/v1/enrolment-codes`: single-use codes that enrol one device.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use lanyard_proto::enrol::{EnrolmentCode, SECRET_LEN};
use serde::{Deserialize, Serialize};

use super::auth::{Ict, Viewer};
use super::error::{ApiError, ApiResult};
use super::router::Routes;
use super::{JsonBody, QueryParams};
use crate::clock::{duration_ms, now_ms};
use crate::model::{AssetTag, Username};
use crate::state::AppState;
use crate::store::enrol::{CodeView, EnrolFor};

/// This module's routes under `/api/v1`.
pub fn routes(r: Routes) -> Routes {
    r.get("/enrolment-codes", list)
        .post("/enrolment-codes", create)
        .post("/enrolment-codes/{id}/cancel", cancel)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only codes that could still enrol something.
    #[serde(default)]
    open: bool,
}

async fn list(
    State(state): State<AppState>,
    _viewer: Viewer,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<Vec<CodeView>>> {
    Ok(Json(state.store.enrol_code_list(q.open, now_ms()).await?))
}

/// Cancels an open code: it enrols nothing from then on.
async fn cancel(
    State(state): State<AppState>,
    Ict(caller): Ict,
    Path(id): Path<String>,
) -> ApiResult<Json<CodeView>> {
    Ok(Json(
        state
            .store
            .enrol_code_cancel(&caller.name, id.trim(), now_ms())
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeRequest {
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    personal: Option<String>,
    /// A duration such as `24h` or `30m`.
    #[serde(default)]
    ttl: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CodeResponse {
    /// The one string to hand to the laptop's user. Shown once.
    pub code: String,
    pub id: String,
    pub kind: &'static str,
    #[serde(rename = "for")]
    pub for_: String,
    pub broker: String,
    pub expires_at: String,
}

async fn create(
    State(state): State<AppState>,
    Ict(caller): Ict,
    JsonBody(req): JsonBody<CodeRequest>,
) -> ApiResult<(StatusCode, Json<CodeResponse>)> {
    let what = match (req.device.as_deref(), req.personal.as_deref()) {
        (Some(tag), None) => EnrolFor::Laptop(AssetTag::parse(tag)?),
        (None, Some(user)) => EnrolFor::Personal(Username::parse(user)?),
        _ => {
            return Err(ApiError::bad(
                "give exactly one of --device ASSET_TAG or --personal USERNAME",
            ))
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(issue(&state, &caller.name, what, req.ttl.as_deref()).await?),
    ))
}

/// Makes an enrolment code for `what`, valid for `ttl` (the configured
/// default when `None`), made by `actor`; the code itself is in the answer
/// and nowhere else.
pub async fn issue(
    state: &AppState,
    actor: &str,
    what: EnrolFor,
    ttl: Option<&str>,
) -> ApiResult<CodeResponse> {
    let ttl = match ttl {
        None => state.live().code_ttl,
        Some(s) => humantime::parse_duration(s.trim())
            .map_err(|_| ApiError::bad(format!("bad ttl {s:?}: use a duration like 30m or 24h")))?,
    };
    if ttl.as_secs() < 60 || ttl > state.live().max_code_ttl {
        return Err(ApiError::bad(format!(
            "ttl must be between 1m and {}",
            humantime::format_duration(state.live().max_code_ttl)
        )));
    }
    let secret: [u8; SECRET_LEN] = crate::secrets::random_bytes();
    // The nodes as the store knows them now, not as of the last heartbeat.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.refresh_agent_addrs(now_ms()),
    )
    .await;
    let code = EnrolmentCode {
        broker_addrs: state.agent_addrs(),
        ca_fingerprint: state.ca.fingerprint(),
        secret,
    };
    let issued = state
        .store
        .enrol_code_create(
            actor,
            &what,
            &crate::secrets::hash_secret(&secret),
            duration_ms(ttl),
            now_ms(),
        )
        .await?;
    state
        .metrics
        .enrol_codes_created
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let for_ = match &what {
        EnrolFor::Laptop(t) => format!("laptop {t}"),
        EnrolFor::Personal(u) => format!("personal device of {u}"),
    };
    Ok(CodeResponse {
        code: code.encode(),
        id: issued.id,
        kind: issued.kind,
        for_,
        broker: state.public_quic_addr.clone(),
        expires_at: issued.expires_at,
    })
}
