//! `/api/v1/load`: this node's live load and today's peak.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::auth::Admin;
use super::error::ApiResult;
use crate::load::LoadReport;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/load", get(load))
}

async fn load(State(state): State<AppState>, _admin: Admin) -> ApiResult<Json<LoadReport>> {
    Ok(Json(crate::load::report(state.load_sources()).await?))
}
