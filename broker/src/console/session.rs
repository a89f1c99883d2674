//! Console sign-in sessions: an API token (the same kind `lanyard login`
//! gets, so disabling the person, a password reset or `tokens revoke` end
//! it too) kept in a `__Host-` cookie that is `Secure; HttpOnly;
//! SameSite=Strict`. Every form carries a CSRF token derived from the
//! session's token; a POST without it, or with another session's, is
//! refused before anything is read or changed.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::html::{self, esc, Page, Viewer};
use crate::api::extract::ClientAddr;
use crate::clock::now_ms;
use crate::model::Role;
use crate::state::AppState;
use crate::store::api_tokens::{Caller, TokenLookup};
use crate::store::AuditEntry;

/// The session cookie. `__Host-` makes the browser refuse it unless it is
/// Secure, for path `/` and for this host only.
pub const SESSION_COOKIE: &str = "__Host-lanyard";
/// The sign-in form's own CSRF cookie (there is no session yet).
pub const LOGIN_COOKIE: &str = "__Host-lanyard-login";
/// Longest cookie value read; longer ones are ignored.
const MAX_COOKIE: usize = 256;

/// A cookie's value from the request, bounded.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty() && v.len() <= MAX_COOKIE)
}

/// The CSRF token of a session (or of a sign-in form): derived from the
/// secret the cookie holds, so a page on another site, which can neither
/// read the cookie nor the page, cannot make it.
pub fn csrf_for(secret: &str) -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("lanyard console csrf\0{secret}").as_bytes(),
    );
    data_encoding::HEXLOWER.encode(&d.as_ref()[..16])
}

/// Compares two CSRF tokens in time that does not depend on where they
/// differ.
pub fn csrf_matches(expected: &str, given: &str) -> bool {
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

pub fn set_cookie(name: &str, value: &str, max_age_secs: i64) -> HeaderValue {
    let v = format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        max_age_secs.max(0)
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
}

pub fn clear_cookie(name: &str) -> HeaderValue {
    set_cookie(name, "", 0)
}

/// A signed-in person looking at the console, whatever their role.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    /// The session's token (the cookie's value), to end it at sign-out.
    pub token: String,
    pub csrf: String,
}

impl Session {
    pub fn viewer(&self) -> Viewer {
        Viewer {
            name: self.caller.name.clone(),
            role: self.caller.role,
            csrf: self.csrf.clone(),
        }
    }

    /// Lets the person through when their role is at least `needed`;
    /// otherwise a 403 page and an audit row.
    pub async fn require(
        &self,
        state: &AppState,
        needed: Role,
        what: &str,
    ) -> Result<(), Response> {
        if self.caller.role >= needed {
            return Ok(());
        }
        state
            .metrics
            .api_forbidden
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let why = crate::api::auth::needs_text(needed);
        let entry = AuditEntry::denied(&self.caller.name, "console.forbidden", what, why);
        if let Err(e) = state.store.audit_only(now_ms(), entry).await {
            tracing::warn!(error = %e, "cannot audit a refused console request");
        }
        let viewer = self.viewer();
        let body = format!(
            "<p>You are signed in as {} with the role {}. This page or action needs {}.</p>\
             <p><a href=\"/me\">Go to your own page</a></p>",
            esc(&self.caller.name),
            self.caller.role,
            esc(why)
        );
        Err((
            StatusCode::FORBIDDEN,
            super::page_headers(),
            Page {
                title: "You cannot do this",
                viewer: Some(&viewer),
                current: "",
                notice: None,
                errors: &[],
                live: false,
                body,
            }
            .render(),
        )
            .into_response())
    }

    /// What every console POST checks first: the form's CSRF token (a
    /// forged post is refused before anything else, and not audited), then
    /// the role.
    pub async fn post(
        &self,
        state: &AppState,
        form: &super::FormData,
        needed: Role,
        what: &str,
    ) -> Result<(), Response> {
        self.check_csrf(form.get("csrf"))?;
        self.require(state, needed, what).await
    }

    /// Checks a form's CSRF token against this session's.
    #[allow(clippy::result_large_err)] // the refusal page is the answer itself
    pub fn check_csrf(&self, given: &str) -> Result<(), Response> {
        if csrf_matches(&self.csrf, given) {
            Ok(())
        } else {
            Err(csrf_refused())
        }
    }
}

/// What a POST without the right CSRF token gets: 403, nothing done.
pub fn csrf_refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        super::page_headers(),
        Page {
            title: "The form has expired",
            viewer: None,
            current: "",
            notice: None,
            errors: &[],
            live: false,
            body: "<p>Nothing was changed: the form was not one this console gave you, or it \
                   is from an earlier sign-in.</p><p><a href=\"/\">Go back and try again</a></p>"
                .into(),
        }
        .render(),
    )
        .into_response()
}

/// Where a request without a session goes: the sign-in page, then back.
fn to_login(parts: &Parts) -> Response {
    let path = parts.uri.path();
    // Only our own paths come back (never `//elsewhere`).
    let next = if path.starts_with('/') && !path.starts_with("//") && path.len() < 200 {
        path
    } else {
        "/"
    };
    Redirect::to(&format!("/login?next={}", html::url(next))).into_response()
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).map(str::to_owned) else {
            return Err(to_login(parts));
        };
        let now = now_ms();
        let lookup = state
            .store
            .api_token_lookup(&crate::secrets::hash_secret(token.as_bytes()), now)
            .await
            .map_err(|e| crate::api::error::ApiError::from(e).into_response())?;
        match lookup {
            TokenLookup::Valid(caller) => {
                crate::api::middleware::AccessNote::note_actor(&parts.extensions, &caller.name);
                Ok(Session {
                    csrf: csrf_for(&token),
                    caller,
                    token,
                })
            }
            other => {
                let from = parts.extensions.get::<ClientAddr>().map(|a| a.0.ip());
                let reason = match other {
                    TokenLookup::Expired => "the console session has expired",
                    TokenLookup::Revoked => "the console session was ended",
                    TokenLookup::Disabled => "the session's owner is disabled",
                    _ => "not a console session",
                };
                state.failures.note(
                    from,
                    "console.unauthorized",
                    reason,
                    &format!("{} {}", parts.method, parts.uri.path()),
                    now,
                );
                let mut r = to_login(parts);
                r.headers_mut()
                    .append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE));
                Err(r)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_token_is_the_sessions_own() {
        let a = csrf_for("lyt_one");
        assert_eq!(a, csrf_for("lyt_one"));
        assert_ne!(a, csrf_for("lyt_two"));
        assert!(csrf_matches(&a, &a.clone()));
        assert!(!csrf_matches(&a, &csrf_for("lyt_two")));
        assert!(!csrf_matches(&a, ""));
    }

    #[test]
    fn cookies_are_read_by_name_and_bounded() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-lanyard=lyt_x; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("lyt_x"));
        assert_eq!(cookie(&h, "c"), None);
        let long = format!("{SESSION_COOKIE}={}", "x".repeat(300));
        h.insert(header::COOKIE, HeaderValue::from_str(&long).unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), None);
        let v = set_cookie(SESSION_COOKIE, "lyt_x", 60);
        let v = v.to_str().unwrap();
        for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(v.contains(flag), "{v}");
        }
    }
}
