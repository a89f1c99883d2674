//! `/api/v1/tokens`: the API tokens (the bootstrap token and those made by
//! `lanyard login`), and revoking one.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;

use super::auth::Admin;
use super::error::ApiResult;
use super::router::Routes;
use super::QueryParams;
use crate::clock::now_ms;
use crate::model::Username;
use crate::state::AppState;
use crate::store::api_tokens::TokenView;

/// This module's routes under `/api/v1`.
pub fn routes(r: Routes) -> Routes {
    r.get("/tokens", list).post("/tokens/{id}/revoke", revoke)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only this person's tokens.
    #[serde(default)]
    user: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<Vec<TokenView>>> {
    let user = q
        .user
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(Username::parse)
        .transpose()?;
    Ok(Json(
        state
            .store
            .api_token_list(user.as_ref().map(Username::as_str), now_ms())
            .await?,
    ))
}

/// Revokes a token: the next request that carries it is refused.
async fn revoke(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenView>> {
    Ok(Json(
        state
            .store
            .api_token_revoke(&caller.name, id.trim(), now_ms())
            .await?,
    ))
}
