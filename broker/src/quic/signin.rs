//! Sign-in and token refresh over a device's connection.
//!
//! The access token is bound to the certificate this connection presented
//! (`cnf`), and names the sign-in (refresh family) it came from. The refresh
//! token is bound to the device key, so it survives a certificate renewal.

use std::sync::atomic::Ordering::Relaxed;

use lanyard_proto::{ErrorCode, Message};

use super::device::{DeviceConn, STORE_UNAVAILABLE};
use crate::auth::signin::check_credentials;
use crate::auth::tokens::LEEWAY_SECS;
use crate::clock::now_ms;
use crate::store::refresh::RefreshError;
use crate::store::AuditEntry;

fn tokens(ctx: &DeviceConn, username: &str, family: &str, refresh_token: String) -> Message {
    let ttl = ctx.state.settings.access_ttl.as_secs() as i64;
    let now = now_ms() / 1000;
    let access =
        ctx.state
            .token_keys()
            .issue_for_sign_in(username, &ctx.thumbprint, Some(family), now, ttl);
    if let Some(session) = ctx.session.get() {
        if session.username == username {
            session
                .token_expires_at
                .store((now + ttl + LEEWAY_SECS) * 1000, Relaxed);
        }
    }
    Message::Tokens {
        access_token: access,
        refresh_token,
        expires_in: ttl as u32,
    }
}

/// Answers a `SignIn`, timed into `lanyard_signin_seconds` whatever the
/// answer.
pub(super) async fn sign_in(
    ctx: &DeviceConn,
    username: &str,
    password: &str,
    totp: Option<&str>,
) -> Message {
    let started = std::time::Instant::now();
    let answer = answer_sign_in(ctx, username, password, totp).await;
    ctx.state.metrics.signin_latency.observe(started.elapsed());
    answer
}

async fn answer_sign_in(
    ctx: &DeviceConn,
    username: &str,
    password: &str,
    totp: Option<&str>,
) -> Message {
    let state = &ctx.state;
    let now = now_ms();
    let person = match check_credentials(
        &state.store,
        &state.throttle,
        &state.seal,
        &state.failures,
        username,
        password,
        totp,
        Some(ctx.conn.remote_address().ip()),
        now,
    )
    .await
    {
        Ok(p) => p,
        Err(crate::auth::signin::SignInError::Store(e)) => {
            tracing::warn!(error = %e, "sign-in failed in the store");
            state.metrics.agent_signin_failures.fetch_add(1, Relaxed);
            return Message::refused(ErrorCode::Unavailable, STORE_UNAVAILABLE);
        }
        Err(e) => {
            state.metrics.agent_signin_failures.fetch_add(1, Relaxed);
            return Message::refused(ErrorCode::Unauthorized, e.to_string());
        }
    };
    let laptop = ctx.device.asset_tag.as_deref();
    if let Err(d) = crate::policy::may_use_laptop(&state.policy.current(), laptop, &person.username)
    {
        state.metrics.agent_signin_failures.fetch_add(1, Relaxed);
        state
            .store
            .audit_denial(
                &person.username,
                "agent.signin",
                &ctx.device.label(),
                &d.to_string(),
            )
            .await;
        return Message::refused(d.code(), d.to_string());
    }
    let owner = ctx.device.owner.as_deref();
    if crate::policy::may_use_device(ctx.kind, owner, &person.username).is_err() {
        state.metrics.agent_signin_failures.fetch_add(1, Relaxed);
        let reason = format!(
            "this personal device belongs to {}",
            owner.unwrap_or("someone else")
        );
        let entry = AuditEntry::denied(
            &person.username,
            "agent.signin",
            &ctx.device.label(),
            &reason,
        );
        if let Err(e) = state.store.audit_only(now, entry).await {
            tracing::warn!(error = %e, "could not audit a refused sign-in");
        }
        return Message::refused(ErrorCode::Forbidden, reason);
    }
    let refresh = crate::secrets::new_token("lyr_");
    let family = match state
        .store
        .refresh_issue(
            &person.username,
            &ctx.device.fingerprint,
            &crate::secrets::hash_secret(refresh.as_bytes()),
            crate::clock::duration_ms(state.live().refresh_ttl),
            now,
        )
        .await
    {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "cannot store a refresh token");
            return Message::refused(ErrorCode::Unavailable, STORE_UNAVAILABLE);
        }
    };
    let entry = AuditEntry::ok(&person.username, "agent.signin", &ctx.device.label())
        .with_detail(serde_json::json!({ "sign_in": family, "device": ctx.device.fingerprint }));
    if let Err(e) = state.store.audit_only(now, entry).await {
        tracing::warn!(error = %e, "could not audit a sign-in");
    }
    state.metrics.agent_signins.fetch_add(1, Relaxed);
    tokens(ctx, &person.username, &family, refresh)
}

pub(super) async fn refresh(ctx: &DeviceConn, refresh_token: &str) -> Message {
    let state = &ctx.state;
    let next = crate::secrets::new_token("lyr_");
    let rotated = state
        .store
        .refresh_rotate(
            &crate::secrets::hash_secret(refresh_token.as_bytes()),
            &crate::secrets::hash_secret(next.as_bytes()),
            &ctx.device.fingerprint,
            crate::clock::duration_ms(state.live().refresh_ttl),
            now_ms(),
        )
        .await;
    match rotated {
        Ok(r) => tokens(ctx, &r.username, &r.family_id, next),
        Err(RefreshError::Store(e)) => {
            tracing::warn!(error = %e, "refresh failed in the store");
            Message::refused(ErrorCode::Unavailable, STORE_UNAVAILABLE)
        }
        Err(e) => Message::refused(ErrorCode::Unauthorized, e.to_string()),
    }
}

/// `lanyard-agent logout`: ends the sign-in behind `refresh_token` (made on
/// this device), so its live session closes and it cannot refresh again.
pub(super) async fn sign_out(ctx: &DeviceConn, refresh_token: &str) -> Message {
    let ended = ctx
        .state
        .store
        .sign_out(
            &crate::secrets::hash_secret(refresh_token.as_bytes()),
            &ctx.device.fingerprint,
            &ctx.device.label(),
            now_ms(),
        )
        .await;
    match ended {
        Ok(username) => {
            tracing::info!(username = %username, device = %ctx.device.label(), "signed out");
            Message::SignedOut
        }
        Err(RefreshError::Store(e)) => {
            tracing::warn!(error = %e, "sign-out failed in the store");
            Message::refused(ErrorCode::Unavailable, STORE_UNAVAILABLE)
        }
        Err(e) => Message::refused(ErrorCode::Unauthorized, e.to_string()),
    }
}
