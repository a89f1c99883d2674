//! `/api/v1/requests`: the laptop request queue.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::auth::{Ict, Viewer};
use super::error::{ApiError, ApiResult};
use super::router::Routes;
use super::{JsonBody, QueryParams};
use crate::clock::now_ms;
use crate::model::{parse_text, Username};
use crate::state::AppState;
use crate::store::requests::{FulfilReport, RequestView};

/// This module's routes under `/api/v1`.
pub fn routes(r: Routes) -> Routes {
    r.get("/requests", list)
        .post("/requests", add)
        .post("/requests/fulfil", fulfil)
        .post("/requests/{username}/cancel", cancel)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    open: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRequest {
    username: String,
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FulfilRequest {
    #[serde(default)]
    limit: Option<usize>,
}

async fn list(
    State(state): State<AppState>,
    _viewer: Viewer,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<Vec<RequestView>>> {
    Ok(Json(state.store.request_list(q.open).await?))
}

async fn add(
    State(state): State<AppState>,
    Ict(caller): Ict,
    JsonBody(req): JsonBody<NewRequest>,
) -> ApiResult<(StatusCode, Json<RequestView>)> {
    let username = Username::parse(&req.username)?;
    let reason = parse_text("reason", &req.reason, 500, false)?;
    Ok((
        StatusCode::CREATED,
        Json(
            state
                .store
                .request_add(&caller.name, &username, &reason, now_ms())
                .await?,
        ),
    ))
}

async fn fulfil(
    State(state): State<AppState>,
    Ict(caller): Ict,
    JsonBody(req): JsonBody<FulfilRequest>,
) -> ApiResult<Json<FulfilReport>> {
    if req.limit == Some(0) {
        return Err(ApiError::bad("--limit must be at least 1"));
    }
    Ok(Json(
        state
            .store
            .requests_fulfil(&caller.name, req.limit, now_ms())
            .await?,
    ))
}

async fn cancel(
    State(state): State<AppState>,
    Ict(caller): Ict,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .store
        .request_cancel(&caller.name, &username, now_ms())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
