//! `/api/v1/load`: this node's live load and today's peak.

use axum::extract::State;
use axum::Json;

use super::auth::Viewer;
use super::error::ApiResult;
use super::router::Routes;
use crate::load::LoadReport;
use crate::state::AppState;

/// This module's routes under `/api/v1`.
pub fn routes(r: Routes) -> Routes {
    r.get("/load", load)
}

async fn load(State(state): State<AppState>, _viewer: Viewer) -> ApiResult<Json<LoadReport>> {
    Ok(Json(crate::load::report(state.load_sources()).await?))
}
