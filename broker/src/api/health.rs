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
    let mut body = state.metrics.render(crate::metrics::Live {
        connections: state.quic.open_connections() as u64,
        sessions: state.sessions.len() as u64,
        streams: state.sessions.open_streams(),
        store_up: up,
        started_at_secs: state.started_at_secs,
        admission: state.live().admission,
        agents_limit: state.settings.max_agents,
    });
    let mut certs = state.certs.expiries();
    certs.extend(crate::tls::certificate_facts(state.ca.cert_der()).map(|f| ("ca", f.not_after)));
    crate::metrics::render_certificate_expiry(&mut body, &certs, crate::clock::now_ms() / 1000);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
