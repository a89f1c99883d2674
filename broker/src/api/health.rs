//! `/healthz`, `/readyz` and `/metrics`: unauthenticated, for probes.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;

use crate::state::AppState;

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n"),
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let up = matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await,
        Ok(Ok(()))
    );
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(crate::metrics::Live {
            connections: state.quic.open_connections() as u64,
            sessions: state.sessions.len() as u64,
            streams: state.sessions.open_streams(),
            store_up: up,
            started_at_secs: state.started_at_secs,
            admission: state.settings.admission,
            agents_limit: state.settings.max_agents,
        }),
    )
}
