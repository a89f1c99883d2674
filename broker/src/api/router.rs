//! Every route of the admin API, and the layers around them.

use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;

use super::error::ApiError;
use super::{
    apps, audit, auth, enrol, groups, health, laptops, load,
    middleware::{guard, note_route},
    report, requests, sessions, staff, staff_removal, tokens,
};
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/login", post(auth::login))
        .route("/login/sso/start", post(auth::sso_start))
        .route("/login/sso/finish", post(auth::sso_finish))
        .route("/me", get(auth::me))
        .merge(groups::router())
        .merge(staff::router())
        .merge(staff_removal::router())
        .merge(apps::router())
        .merge(enrol::router())
        .merge(laptops::router())
        .merge(requests::router())
        .merge(report::router())
        .merge(sessions::router())
        .merge(tokens::router())
        .merge(load::router())
        .merge(audit::router());
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .nest("/api/v1", v1)
        .route_layer(middleware::from_fn(note_route))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.settings.http_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.uri().path()
    ))
}
