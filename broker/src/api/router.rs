//! Every route of the admin API, and the layers around them. The routes
//! under `/api/v1` are added through [`Routes`], which keeps their list
//! (method and path) beside the router, so the API's description can be
//! checked against what is served.

use axum::extract::{DefaultBodyLimit, Request};
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware;
use axum::routing::{get, on, MethodFilter};
use axum::Router;

use super::error::ApiError;
use super::{
    apps, audit, auth, enrol, groups, health, laptops, load,
    middleware::{guard, note_route},
    openapi, report, requests, sessions, staff, staff_removal, tokens,
};
use crate::state::AppState;

/// Routes under `/api/v1`: the router and the list of what it serves.
pub struct Routes {
    router: Router<AppState>,
    served: Vec<(Method, &'static str)>,
}

impl Routes {
    fn new() -> Self {
        Self {
            router: Router::new(),
            served: Vec::new(),
        }
    }

    fn add<H, T>(mut self, method: Method, filter: MethodFilter, path: &'static str, h: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        // Methods added to one path one by one are merged by axum.
        self.router = self.router.route(path, on(filter, h));
        self.served.push((method, path));
        self
    }

    pub fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::GET, MethodFilter::GET, path, h)
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::POST, MethodFilter::POST, path, h)
    }

    pub fn patch<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::PATCH, MethodFilter::PATCH, path, h)
    }

    pub fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::DELETE, MethodFilter::DELETE, path, h)
    }
}

/// Every route under `/api/v1`.
fn v1() -> Routes {
    let r = Routes::new()
        .post("/login", auth::login)
        .post("/login/sso/start", auth::sso_start)
        .post("/login/sso/finish", auth::sso_finish)
        .get("/me", auth::me)
        .get("/openapi.json", openapi::document);
    [
        groups::routes,
        staff::routes,
        staff_removal::routes,
        apps::routes,
        enrol::routes,
        laptops::routes,
        requests::routes,
        report::routes,
        sessions::routes,
        tokens::routes,
        load::routes,
        audit::routes,
    ]
    .into_iter()
    .fold(r, |r, module| module(r))
}

/// What `/api/v1` serves: each method and path (axum's `{param}` syntax,
/// as OpenAPI writes it), in the order added.
pub fn v1_routes() -> Vec<(Method, &'static str)> {
    v1().served
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .nest("/api/v1", v1().router)
        .merge(crate::console::router())
        .route_layer(middleware::from_fn(note_route))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.settings.http_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// No such route: the API's JSON error, or for a browser asking for a
/// page outside the API, a page that says so.
async fn not_found(req: Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let wants_page = !req.uri().path().starts_with("/api/")
        && req
            .headers()
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
    if wants_page {
        return crate::console::not_found_page();
    }
    ApiError::NotFound(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.uri().path()
    ))
    .into_response()
}
