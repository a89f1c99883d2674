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

fn login_page(
    csrf: &str,
    next: &str,
    username: &str,
    errors: &[FieldError],
    status: StatusCode,
    login_secret: Option<&str>,
) -> Response {
    let body = format!(
        "<p>Sign in with your Lanyard username and password. If your account has a second \
         factor, enter the 6-digit code from your authenticator app.</p>\
         <form method=\"post\" action=\"/login\" novalidate>\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">{}{}{}\
         <button type=\"submit\" class=\"button\">Sign in</button></form>",
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
pub async fn form(Query(q): Query<LoginQuery>) -> Response {
    let secret = crate::secrets::new_token("lyl_");
    login_page(
        &csrf_for(&secret),
        &next_path(q.next.as_deref()),
        "",
        &[],
        StatusCode::OK,
        Some(&secret),
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
        );
    }
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
            let errors = [FieldError {
                field: "username".into(),
                message: text,
            }];
            return login_page(&csrf, &next, &shown_name, &errors, status, None);
        }
        Err(e) => {
            state
                .metrics
                .api_logins_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let errors = [FieldError {
                field: "username".into(),
                message: e.to_string(),
            }];
            return login_page(
                &csrf,
                &next,
                &shown_name,
                &errors,
                StatusCode::UNAUTHORIZED,
                None,
            );
        }
    };
    let token = crate::secrets::new_token("lyt_");
    let ttl = duration_ms(state.live().api_token_ttl);
    if let Err(e) = state
        .store
        .api_token_create(
            &person.username,
            person.role.is_admin(),
            &crate::secrets::hash_secret(token.as_bytes()),
            ttl,
            now,
        )
        .await
    {
        let (status, text) = super::store_problem(e);
        let errors = [FieldError {
            field: "username".into(),
            message: text,
        }];
        return login_page(&csrf, &next, &shown_name, &errors, status, None);
    }
    state
        .metrics
        .api_logins_ok
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Staff land on their own page.
    let to = if person.role == crate::model::Role::Staff && next == "/" {
        "/me".to_owned()
    } else {
        next
    };
    let mut r = Redirect::to(&to).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &token, ttl / 1000),
    );
    r.headers_mut()
        .append(header::SET_COOKIE, clear_cookie(LOGIN_COOKIE));
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
