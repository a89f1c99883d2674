//! `GET /login`, `POST /login`, `POST /logout`: signing in to the console
//! with a password (and TOTP), under the same throttle and failure counts
//! as the API's sign-in.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::html::{esc, Field, FieldError, Page};
use super::session::{
    self, clear_cookie, cookie, csrf_for, csrf_matches, set_cookie, Session, LOGIN_COOKIE,
    SESSION_COOKIE,
};
use super::{respond, FormData};
use crate::api::extract::ClientAddr;
use crate::clock::{duration_ms, now_ms};
use crate::state::AppState;

#[derive(Debug, serde::Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
}

/// Where to go after signing in: one of our own paths, else the start.
fn next_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.len() < 200
                && !p.starts_with("/login") =>
        {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// Whether the console offers the organisation's provider.
fn sso_offered(state: &AppState) -> bool {
    state
        .oidc
        .as_ref()
        .is_some_and(|o| o.settings().console_redirect_url.is_some())
}

#[allow(clippy::too_many_arguments)]
fn login_page(
    csrf: &str,
    next: &str,
    username: &str,
    errors: &[FieldError],
    status: StatusCode,
    login_secret: Option<&str>,
    sso: bool,
) -> Response {
    let sso = if sso {
        "<h2>Or</h2><p><a class=\"button secondary\" href=\"/login/sso\">Sign in with your \
         organisation account</a></p>"
    } else {
        ""
    };
    let body = format!(
        "<p>Sign in with your Lanyard username and password. If your account has a second \
         factor, enter the 6-digit code from your authenticator app.</p>\
         <form method=\"post\" action=\"/login\" novalidate>\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">{}{}{}\
         <button type=\"submit\" class=\"button\">Sign in</button></form>{sso}",
        esc(csrf),
        esc(next),
        Field::text("username", "Username", username)
            .autocomplete("username")
            .required()
            .render(errors),
        Field::text("password", "Password", "")
            .kind("password")
            .autocomplete("current-password")
            .required()
            .render(errors),
        Field::text("totp", "Authenticator code (if you have one)", "")
            .hint("6 digits; leave empty if your account has no second factor")
            .autocomplete("one-time-code")
            .render(errors),
    );
    let mut r = respond(
        status,
        Page {
            title: "Sign in",
            viewer: None,
            current: "/login",
            notice: None,
            errors,
            live: false,
            body,
        },
    );
    if let Some(secret) = login_secret {
        r.headers_mut()
            .append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, secret, 3600));
    }
    r
}

/// The sign-in form, with a fresh CSRF secret in its own cookie.
pub async fn form(State(state): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    let secret = crate::secrets::new_token("lyl_");
    login_page(
        &csrf_for(&secret),
        &next_path(q.next.as_deref()),
        "",
        &[],
        StatusCode::OK,
        Some(&secret),
        sso_offered(&state),
    )
}

pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Option<axum::Extension<ClientAddr>>,
    form: FormData,
) -> Response {
    let Some(secret) = cookie(&headers, LOGIN_COOKIE) else {
        return session::csrf_refused();
    };
    if !csrf_matches(&csrf_for(secret), form.get("csrf")) {
        return session::csrf_refused();
    }
    let next = next_path(Some(form.get("next")));
    let username = form.get("username").trim();
    let password = form.get("password");
    let totp = form.get("totp").trim();
    let mut errors = Vec::new();
    if username.is_empty() {
        errors.push(FieldError {
            field: "username".into(),
            message: "Enter your username".into(),
        });
    }
    if password.is_empty() {
        errors.push(FieldError {
            field: "password".into(),
            message: "Enter your password".into(),
        });
    }
    let csrf = csrf_for(secret);
    let shown_name: String = username.chars().take(64).collect();
    if !errors.is_empty() {
        return login_page(
            &csrf,
            &next,
            &shown_name,
            &errors,
            StatusCode::BAD_REQUEST,
            None,
            sso_offered(&state),
        );
    }
    // A refusal after the form was whole: shown against the username.
    let refuse = |status: StatusCode, message: String| {
        let errors = [FieldError {
            field: "username".into(),
            message,
        }];
        login_page(
            &csrf,
            &next,
            &shown_name,
            &errors,
            status,
            None,
            sso_offered(&state),
        )
    };
    let now = now_ms();
    let person = match crate::auth::signin::check_credentials(
        &state.store,
        &state.throttle,
        &state.seal,
        &state.failures,
        username,
        password,
        (!totp.is_empty()).then_some(totp),
        client.map(|axum::Extension(ClientAddr(a))| a.ip()),
        now,
    )
    .await
    {
        Ok(p) => p,
        Err(crate::auth::signin::SignInError::Store(e)) => {
            let (status, text) = super::store_problem(e);
            return refuse(status, text);
        }
        Err(e) => {
            state
                .metrics
                .api_logins_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return refuse(StatusCode::UNAUTHORIZED, e.to_string());
        }
    };
    let (token, ttl) = match start_session(&state, &person.username, person.role, now).await {
        Ok(t) => t,
        Err((status, text)) => return refuse(status, text),
    };
    let mut r = Redirect::to(&landing(person.role, next)).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &token, ttl / 1000),
    );
    r.headers_mut()
        .append(header::SET_COOKIE, clear_cookie(LOGIN_COOKIE));
    r
}

/// A console session for a person who has just signed in: its token
/// (stored hashed, audited as a sign-in) and its life in milliseconds.
async fn start_session(
    state: &AppState,
    username: &str,
    role: crate::model::Role,
    now: crate::clock::Millis,
) -> Result<(String, i64), (StatusCode, String)> {
    let token = crate::secrets::new_token("lyt_");
    let ttl = duration_ms(state.live().api_token_ttl);
    state
        .store
        .api_token_create(
            username,
            role.is_admin(),
            &crate::secrets::hash_secret(token.as_bytes()),
            ttl,
            now,
        )
        .await
        .map_err(super::store_problem)?;
    state
        .metrics
        .api_logins_ok
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok((token, ttl))
}

/// Where a sign-in lands: staff on their own page.
fn landing(role: crate::model::Role, next: String) -> String {
    if role == crate::model::Role::Staff && next == "/" {
        "/me".to_owned()
    } else {
        next
    }
}

/// The cookie binding a console SSO sign-in to this browser. `Lax`, not
/// `Strict`: the provider's redirect back is a navigation from its site.
const SSO_COOKIE: &str = "__Host-lanyard-sso";

fn sso_binding(handle: &str) -> String {
    format!("console:{}", crate::secrets::hash_secret(handle.as_bytes()))
}

/// A sign-in page that says why the provider's sign-in did not work.
fn sso_problem(state: &AppState, status: StatusCode, message: String) -> Response {
    let secret = crate::secrets::new_token("lyl_");
    let errors = [FieldError {
        field: "username".into(),
        message,
    }];
    login_page(
        &csrf_for(&secret),
        "/",
        "",
        &errors,
        status,
        Some(&secret),
        sso_offered(state),
    )
}

/// `GET /login/sso`: off to the provider, with this browser bound to the
/// sign-in by a cookie.
pub async fn sso_start(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientAddr>>,
) -> Response {
    let (Some(oidc), true) = (state.oidc.as_ref(), sso_offered(&state)) else {
        return super::not_found_page();
    };
    let redirect = oidc
        .settings()
        .console_redirect_url
        .clone()
        .unwrap_or_default();
    let handle = crate::secrets::new_token("lyc_");
    match oidc.begin_at(&sso_binding(&handle), &redirect).await {
        Ok(url) => {
            let mut r = Redirect::to(&url).into_response();
            let cookie = format!(
                "{SSO_COOKIE}={handle}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600"
            );
            if let Ok(v) = axum::http::HeaderValue::from_str(&cookie) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => {
            let from = client.map(|axum::Extension(ClientAddr(a))| a.ip());
            state
                .failures
                .note(from, "sso", e.kind(), "console", now_ms());
            sso_problem(&state, StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct SsoCallback {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: Option<String>,
}

/// `GET /login/sso/callback`: the provider's answer. The code is redeemed
/// and the ID token checked as for the agent; the person admitted by the
/// same rules; then a console session. The session cookie is `Strict`,
/// and this request came from the provider's site, so the page sends the
/// browser on with a same-site link of its own.
pub async fn sso_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Option<axum::Extension<ClientAddr>>,
    Query(q): Query<SsoCallback>,
) -> Response {
    let Some(oidc) = state.oidc.as_ref() else {
        return super::not_found_page();
    };
    let from = client.map(|axum::Extension(ClientAddr(a))| a.ip());
    if let Some(error) = q.error {
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect();
        state
            .failures
            .note(from, "sso", "provider_error", "console", now_ms());
        return sso_problem(
            &state,
            StatusCode::UNAUTHORIZED,
            format!("The organisation's sign-in did not complete ({error}); try again"),
        );
    }
    let Some(handle) = cookie(&headers, SSO_COOKIE) else {
        return sso_problem(
            &state,
            StatusCode::BAD_REQUEST,
            "This sign-in was not started in this browser (or took longer than 10 minutes); try again".into(),
        );
    };
    let id = match oidc.finish(&sso_binding(handle), &q.code, &q.state).await {
        Ok(id) => id,
        Err(e) => {
            state
                .failures
                .note(from, "sso", e.kind(), "console", now_ms());
            state
                .metrics
                .api_logins_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return sso_problem(&state, StatusCode::UNAUTHORIZED, e.to_string());
        }
    };
    let now = now_ms();
    let person = match crate::api::auth::sso_admit_person(&state, oidc, &id, now).await {
        Ok(p) => p,
        Err(e) => return sso_problem(&state, StatusCode::FORBIDDEN, e.message().to_owned()),
    };
    let (token, ttl) = match start_session(&state, &person.username, person.role, now).await {
        Ok(t) => t,
        Err((status, text)) => return sso_problem(&state, status, text),
    };
    let to = landing(person.role, "/".into());
    let mut r = respond(
        StatusCode::OK,
        Page {
            title: "Signed in",
            viewer: None,
            current: "",
            notice: None,
            errors: &[],
            live: false,
            body: format!(
                "<p>You are signed in as {}.</p><p><a class=\"button\" id=\"continue\" href=\"{}\">Continue</a></p>",
                esc(&person.username),
                esc(&to)
            ),
        },
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &token, ttl / 1000),
    );
    r.headers_mut()
        .append(header::SET_COOKIE, clear_cookie(SSO_COOKIE));
    r
}

/// Ends the session (its token is revoked) and clears the cookie.
pub async fn logout(State(state): State<AppState>, session: Session, form: FormData) -> Response {
    if let Err(r) = session.check_csrf(form.get("csrf")) {
        return r;
    }
    if let Err(e) = state
        .store
        .api_token_revoke(&session.caller.name, &session.caller.token_id, now_ms())
        .await
    {
        tracing::warn!(error = %e, "cannot end a console session");
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE));
    r
}

#[cfg(test)]
mod tests {
    use super::next_path;

    #[test]
    fn only_our_own_paths_come_back_after_sign_in() {
        assert_eq!(next_path(Some("/laptops/LT-1")), "/laptops/LT-1");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "/login",
            "",
        ] {
            assert_eq!(next_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(next_path(None), "/");
    }
}
