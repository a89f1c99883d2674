//! What runs around every request.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::ClientAddr;
use crate::state::AppState;

/// Failed requests (no or bad token, wrong password) an address may make
/// in a minute before each further failure is answered only after
/// [`SLOW_ANSWER`].
pub const FAILURES_BEFORE_SLOWING: u64 = 60;
/// How long a failure is held back once its address has failed too often:
/// a flood over one connection slows to one request a second, over all of
/// an address's connections to `http_connections_per_address` a second,
/// and a sleeping request costs the broker nothing.
pub const SLOW_ANSWER: Duration = Duration::from_secs(1);

/// A request still running after this has the store checked.
const STORE_CHECK_AFTER: Duration = Duration::from_secs(2);
/// How long the store has to answer that check.
const STORE_CHECK_WITHIN: Duration = Duration::from_secs(3);

/// What the access log line of one request learns while it is handled:
/// the route it matched and who the caller is. Never the token, the
/// password or the raw path (which may carry ids or junk).
#[derive(Debug, Default)]
pub struct AccessNote {
    route: std::sync::OnceLock<String>,
    actor: std::sync::OnceLock<String>,
}

impl AccessNote {
    /// Records the caller (a valid token's owner, or who just signed in).
    pub fn set_actor(&self, username: &str) {
        let _ = self.actor.set(username.to_owned());
    }

    /// As [`set_actor`](Self::set_actor), on the note in a request's
    /// extensions.
    pub fn note_actor(extensions: &axum::http::Extensions, username: &str) {
        if let Some(note) = extensions.get::<std::sync::Arc<AccessNote>>() {
            note.set_actor(username);
        }
    }
}

/// Notes the matched route's template (`/api/v1/staff/{username}`); runs
/// inside the router, after routing.
pub async fn note_route(req: Request, next: Next) -> Response {
    if let (Some(note), Some(path)) = (
        req.extensions().get::<std::sync::Arc<AccessNote>>(),
        req.extensions().get::<axum::extract::MatchedPath>(),
    ) {
        let _ = note.route.set(path.as_str().to_owned());
    }
    next.run(req).await
}

/// Bounds each request's time and counts responses. A request still
/// running after [`STORE_CHECK_AFTER`] has the store checked (every
/// interval while it runs): if the store does not answer within
/// [`STORE_CHECK_WITHIN`] (a database link gone silent, a pool that
/// cannot get a connection) the request is dropped and answered 503, so an
/// admin hears "unavailable" within seconds rather than waiting out the
/// request timeout. After a change to who can reach what, the rules are
/// reloaded before the answer goes out, so the change holds for every
/// tunnel stream from then on, and live sessions re-check themselves at
/// once.
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let note = std::sync::Arc::new(AccessNote::default());
    req.extensions_mut().insert(note.clone());
    let method = req.method().clone();
    let access_before = state.store.access_generation();
    let from = req.extensions().get::<ClientAddr>().map(|a| a.0.ip());
    let store_gone = async {
        loop {
            tokio::time::sleep(STORE_CHECK_AFTER).await;
            match tokio::time::timeout(STORE_CHECK_WITHIN, state.store.ping()).await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the store fails its check during a request")
                }
                Err(_) => tracing::warn!("the store did not answer its check during a request"),
            }
            return;
        }
    };
    let bounded = tokio::time::timeout(state.live().http_request_timeout, next.run(req));
    let response = tokio::select! {
        done = bounded => match done {
            Ok(r) => r,
            Err(_) => {
                state.metrics.http_timeouts.fetch_add(1, Relaxed);
                ApiError::Timeout.into_response()
            }
        },
        () = store_gone => {
            state.metrics.http_timeouts.fetch_add(1, Relaxed);
            ApiError::store_unavailable().into_response()
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
    tracing::info!(
        target: "lanyard_broker::access",
        method = %method,
        route = note.route.get().map_or("-", String::as_str),
        status = response.status().as_u16(),
        duration_ms = %format_args!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
        actor = note.actor.get().map_or("-", String::as_str),
        "api request"
    );
    let failed = matches!(response.status().as_u16(), 401 | 429);
    if let Some(ip) = from.filter(|_| failed) {
        if state.failures.recent(ip) >= FAILURES_BEFORE_SLOWING {
            state.metrics.http_slowed.fetch_add(1, Relaxed);
            tokio::time::sleep(SLOW_ANSWER).await;
        }
    }
    response
}
