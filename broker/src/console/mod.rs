//! The web console, on the API's HTTPS listener: pages rendered here, for
//! ICT, operators and staff, with no build step and no inline script.
//! Every action is a plain form POST (with the session's CSRF token) that
//! redirects back; JavaScript only refreshes the dashboard's figures.
//!
//! Roles hold here as in the API: `viewer` reads, `ict` runs laptops,
//! requests, codes and sessions, `admin` changes people and access, and
//! `staff` see only `/me`.

pub mod dashboard;
pub mod html;
pub mod laptops;
pub mod login;
pub mod me;
pub mod ops;
pub mod people;
pub mod requests;
pub mod session;

use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;
use html::{FieldError, Notice, Page, Viewer};

/// Every console page's security headers: a strict Content-Security-Policy
/// (scripts and styles from this origin only, none inline; no framing; forms
/// post only here), no caching of pages that show people's data, no
/// referrer leaving the console.
pub fn page_headers() -> [(HeaderName, HeaderValue); 6] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                 connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ),
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ),
    ]
}

/// A rendered page with its status.
pub fn respond(status: StatusCode, page: Page<'_>) -> Response {
    (status, page_headers(), page.render()).into_response()
}

/// A page for a signed-in person: the usual frame around `body`.
pub fn page(
    viewer: &Viewer,
    title: &str,
    current: &str,
    notice: Option<Notice>,
    errors: &[FieldError],
    body: String,
) -> Response {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    respond(
        status,
        Page {
            title,
            viewer: Some(viewer),
            current,
            notice,
            errors,
            live: false,
            body,
        },
    )
}

/// After a change: back to `to` (303, so a reload does not post again),
/// with `done` naming what happened for the page's notice.
pub fn done(to: &str, done: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}done={}", html::url(done))).into_response()
}

/// A page the store cannot produce (not found, refused, unavailable): a
/// notice with the store's clear message (never a database's own words).
pub fn problem(
    viewer: &Viewer,
    title: &str,
    current: &str,
    e: crate::store::StoreError,
) -> Response {
    let (status, text) = store_problem(e);
    let mut r = page(
        viewer,
        title,
        current,
        Some(Notice::Problem(text)),
        &[],
        String::new(),
    );
    *r.status_mut() = status;
    r
}

/// A store error as a status and words a person can act on.
pub fn store_problem(e: crate::store::StoreError) -> (StatusCode, String) {
    use crate::store::StoreError as E;
    match e {
        E::NotFound(m) => (StatusCode::NOT_FOUND, m),
        E::Conflict(m) => (StatusCode::CONFLICT, m),
        E::Invalid(m) => (StatusCode::BAD_REQUEST, m),
        E::Unavailable(cause) => {
            tracing::warn!(error = %cause, "store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "The store is unavailable; try again in a moment.".into(),
            )
        }
        other => {
            tracing::error!(error = %other, "store error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on the broker; it has been logged.".into(),
            )
        }
    }
}

/// A posted form: its fields in order, repeated names kept (checkboxes).
#[derive(Debug, Default)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for FormData {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(session::csrf_refused());
        }
        let axum::Form(fields) = axum::Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map_err(|_| session::csrf_refused())?;
        Ok(FormData(fields))
    }
}

/// A page for a path the console does not have.
pub fn not_found_page() -> Response {
    respond(
        StatusCode::NOT_FOUND,
        Page {
            title: "Page not found",
            viewer: None,
            current: "",
            notice: None,
            errors: &[],
            live: false,
            body: "<p>If you typed the address, check it is correct.</p>\
                   <p><a href=\"/\">Go to the start</a></p>"
                .into(),
        },
    )
}

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

/// Every console route (the API's are under `/api/v1`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::show))
        .route("/live.json", get(dashboard::live))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/login/sso", get(login::sso_start))
        .route("/login/sso/callback", get(login::sso_callback))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .merge(laptops::routes())
        .merge(requests::routes())
        .merge(people::routes())
        .merge(ops::routes())
        .merge(me::routes())
}
