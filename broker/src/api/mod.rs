//! The admin API: JSON over HTTPS under `/api/v1`, bearer-token auth, one
//! module per resource. Served by a small accept loop of our own so that
//! every connection has a TLS handshake timeout, a header-read timeout, a
//! cap on buffered bytes and a place in a bounded connection pool.

pub mod apps;
pub mod audit;
pub mod auth;
pub mod devices;
pub mod enrol;
pub mod error;
pub mod groups;
pub mod health;
pub mod load;
pub mod report;
pub mod requests;
pub mod sessions;
pub mod staff;
pub mod staff_removal;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use self::error::ApiError;
use crate::state::AppState;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEADER_BUFFER: usize = 64 * 1024;

/// A JSON body whose rejections (bad JSON, unknown fields) are API errors.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// Query parameters whose rejections are API errors.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<T, S> FromRequestParts<S> for QueryParams<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(QueryParams(v)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/login", post(auth::login))
        .route("/me", get(auth::me))
        .merge(groups::router())
        .merge(staff::router())
        .merge(staff_removal::router())
        .merge(apps::router())
        .merge(enrol::router())
        .merge(devices::router())
        .merge(requests::router())
        .merge(report::router())
        .merge(sessions::router())
        .merge(load::router())
        .merge(audit::router());
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .nest("/api/v1", v1)
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

/// Whether a successful request to `path` with `method` may change who can
/// reach what (people, groups, apps, device revocations).
fn changes_access(method: &axum::http::Method, path: &str) -> bool {
    if method == axum::http::Method::GET {
        return false;
    }
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return false;
    };
    rest.starts_with("staff")
        || rest.starts_with("groups")
        || rest.starts_with("apps")
        || (rest.starts_with("devices/") && (rest.ends_with("/revoke") || rest.ends_with("/mark")))
}

/// Bounds each request's time and counts responses. After a change to who
/// can reach what, the rules are reloaded before the answer goes out, so
/// the change holds for every tunnel stream from then on, and live
/// sessions re-check themselves at once.
async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let reload = changes_access(req.method(), req.uri().path());
    let response =
        match tokio::time::timeout(state.settings.http_request_timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => {
                state.metrics.http_timeouts.fetch_add(1, Relaxed);
                ApiError::Timeout.into_response()
            }
        };
    if reload && response.status().is_success() {
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

/// Accepts HTTPS connections until `shutdown` turns true, then lets open
/// connections finish their requests for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    tls: TlsAcceptor,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let app = router(state.clone());
    let slots = Arc::new(Semaphore::new(state.settings.http_connections));
    let mut connections = JoinSet::new();
    let for_connections = shutdown.clone();
    loop {
        let accepted = tokio::select! {
            stop = shutdown.wait_for(|stop| *stop) => {
                if stop.is_ok() { break } else { continue }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            state.metrics.http_connections_refused.fetch_add(1, Relaxed);
            tracing::debug!(%peer, "connection cap reached; refusing");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (tls, app, state, shutdown) = (
            tls.clone(),
            app.clone(),
            state.clone(),
            for_connections.clone(),
        );
        connections.spawn(serve_connection(
            tcp, peer, tls, app, state, shutdown, permit,
        ));
    }
    drop(listener);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "grace period over; closing API connections"
        );
        connections.abort_all();
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    tls: TlsAcceptor,
    app: Router,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    state.metrics.http_connections_open.fetch_add(1, Relaxed);
    let Ok(Ok(stream)) = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(tcp)).await else {
        tracing::debug!(%peer, "TLS handshake failed or timed out");
        state.metrics.http_connections_open.fetch_sub(1, Relaxed);
        return;
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BUFFER)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let stopping = tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            false
        }
        stop = shutdown.wait_for(|stop| *stop) => stop.is_ok(),
    };
    if stopping {
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
    state.metrics.http_connections_open.fetch_sub(1, Relaxed);
}
