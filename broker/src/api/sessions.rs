//! `/api/v1/sessions`: the live agent sessions on this broker node, and
//! ending one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use crate::clock::now_ms;
use crate::state::AppState;
use crate::tunnel::SessionView;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sessions", get(list))
        .route("/sessions/{id}", delete(kill))
}

async fn list(State(state): State<AppState>, _admin: Admin) -> ApiResult<Json<Vec<SessionView>>> {
    Ok(Json(
        state.sessions.list().iter().map(|s| s.view()).collect(),
    ))
}

/// Ends the session and the sign-in behind it: its tunnels close at once
/// and its agent must sign in again.
async fn kill(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let session = state.sessions.get(&id).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no live session {id} on this broker; see `lanyard sessions list`"
        ))
    })?;
    state
        .store
        .session_kill(
            &caller.name,
            &session.id,
            &session.username,
            session.sign_in.as_deref(),
            now_ms(),
        )
        .await?;
    session.close(
        lanyard_proto::close::SIGN_IN_ENDED,
        "the session was ended by ICT; sign in again",
    );
    state.sessions.remove(&session.id);
    Ok(StatusCode::NO_CONTENT)
}
