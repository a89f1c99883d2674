//! What runs around every request.

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::state::AppState;

/// Bounds each request's time and counts responses. After a change to who
/// can reach what, the rules are reloaded before the answer goes out, so
/// the change holds for every tunnel stream from then on, and live
/// sessions re-check themselves at once.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let access_before = state.store.access_generation();
    let response =
        match tokio::time::timeout(state.settings.http_request_timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => {
                state.metrics.http_timeouts.fetch_add(1, Relaxed);
                ApiError::Timeout.into_response()
            }
        };
    if state.store.access_generation() != access_before {
        if let Err(e) = state
            .policy
            .reload(&state.store, crate::clock::now_ms())
            .await
        {
            tracing::warn!(error = %e, "cannot reload access rules after a change; the periodic reload will");
            state.policy.trigger();
        }
    }
    state.metrics.count_response(response.status().as_u16());
    response
}
