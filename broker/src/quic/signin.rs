//! Sign-in and token refresh over a device's connection.
//!
//! The access token is bound to the certificate this connection presented
//! (`cnf`), and names the sign-in (refresh family) it came from. The refresh
//! token is bound to the device key, so it survives a certificate renewal.

use std::sync::atomic::Ordering::Relaxed;

use lanyard_proto::{ErrorCode, Message};

use super::device::{DeviceConn, STORE_UNAVAILABLE};
use crate::auth::oidc::OidcError;
use crate::auth::signin::check_credentials;
use crate::auth::tokens::LEEWAY_SECS;
use crate::clock::now_ms;
use crate::store::oidc::Admission;
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
    match issue(ctx, &person.username, now, serde_json::Value::Null).await {
        Ok((_, tokens)) => tokens,
        Err(refused) => refused,
    }
}

/// Lets `username` (whose identity was checked) sign in on this device:
/// the device rules (a council laptop's holder, a personal device's
/// owner), then a refresh-token family and tokens, audited. The family
/// and the `Tokens` answer; or the refusal to send.
async fn issue(
    ctx: &DeviceConn,
    username: &str,
    now: crate::clock::Millis,
    how: serde_json::Value,
) -> Result<(String, Message), Message> {
    let state = &ctx.state;
    let laptop = ctx.device.asset_tag.as_deref();
    if let Err(d) = crate::policy::may_use_laptop(&state.policy.current(), laptop, username) {
        state.metrics.agent_signin_failures.fetch_add(1, Relaxed);
        state
            .store
            .audit_denial(
                username,
                "agent.signin",
                &ctx.device.label(),
                &d.to_string(),
            )
            .await;
        return Err(Message::refused(d.code(), d.to_string()));
    }
    let owner = ctx.device.owner.as_deref();
    if crate::policy::may_use_device(ctx.kind, owner, username).is_err() {
        state.metrics.agent_signin_failures.fetch_add(1, Relaxed);
        let reason = format!(
            "this personal device belongs to {}",
            owner.unwrap_or("someone else")
        );
        let entry = AuditEntry::denied(username, "agent.signin", &ctx.device.label(), &reason);
        if let Err(e) = state.store.audit_only(now, entry).await {
            tracing::warn!(error = %e, "could not audit a refused sign-in");
        }
        return Err(Message::refused(ErrorCode::Forbidden, reason));
    }
    let refresh = crate::secrets::new_token("lyr_");
    let family = match state
        .store
        .refresh_issue(
            username,
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
            return Err(Message::refused(ErrorCode::Unavailable, STORE_UNAVAILABLE));
        }
    };
    let mut detail = serde_json::json!({ "sign_in": family, "device": ctx.device.fingerprint });
    if !how.is_null() {
        detail["sso"] = how;
    }
    let entry = AuditEntry::ok(username, "agent.signin", &ctx.device.label()).with_detail(detail);
    if let Err(e) = state.store.audit_only(now, entry).await {
        tracing::warn!(error = %e, "could not audit a sign-in");
    }
    state.metrics.agent_signins.fetch_add(1, Relaxed);
    let tokens = tokens(ctx, username, &family, refresh);
    Ok((family, tokens))
}

/// A refused SSO step: counted, audited against the device, answered.
async fn sso_refused(ctx: &DeviceConn, who: &str, e: &OidcError) -> Message {
    ctx.state
        .metrics
        .agent_signin_failures
        .fetch_add(1, Relaxed);
    let reason = format!("sso: {e}");
    let entry = AuditEntry::denied(who, "agent.signin", &ctx.device.label(), &reason)
        .with_detail(serde_json::json!({ "reason": reason, "sso": e.kind() }));
    if let Err(err) = ctx.state.store.audit_only(now_ms(), entry).await {
        tracing::warn!(error = %err, "could not audit a refused SSO sign-in");
    }
    tracing::info!(device = %ctx.device.label(), refusal = e.kind(), "SSO sign-in refused");
    let code = match e {
        OidcError::NotConfigured => ErrorCode::NotFound,
        OidcError::PortNotConfigured(..) => ErrorCode::BadRequest,
        OidcError::Provider(_) => ErrorCode::Unavailable,
        _ => ErrorCode::Unauthorized,
    };
    Message::refused(code, truncate(e.to_string()))
}

/// Messages fit the protocol's limit.
fn truncate(mut s: String) -> String {
    let max = lanyard_proto::messages::limits::MESSAGE;
    if s.len() > max {
        let mut cut = max - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// `SsoStart`: the provider's URL for a redirect to 127.0.0.1:`port`
/// (port 0: only the broker's redirect ports).
pub(super) async fn sso_start(ctx: &DeviceConn, port: u16) -> Message {
    let Some(oidc) = ctx.state.oidc.as_ref() else {
        return sso_refused(ctx, "-", &OidcError::NotConfigured).await;
    };
    let ports = oidc.settings().redirect_ports.clone();
    if port == 0 {
        return Message::SsoAuthorize {
            url: String::new(),
            ports,
        };
    }
    match oidc.begin(&ctx.device.fingerprint, port).await {
        Ok(url) if url.len() <= lanyard_proto::messages::limits::URL => {
            Message::SsoAuthorize { url, ports }
        }
        Ok(_) => {
            let e = OidcError::Provider("the sign-in URL is too long".into());
            sso_refused(ctx, "-", &e).await
        }
        Err(e) => sso_refused(ctx, "-", &e).await,
    }
}

/// `SsoFinish`: redeems the code, checks the person and their groups, and
/// signs them in on this device as a password sign-in would.
pub(super) async fn sso_finish(ctx: &DeviceConn, code: &str, state_param: &str) -> Message {
    let state = &ctx.state;
    let Some(oidc) = state.oidc.as_ref() else {
        return sso_refused(ctx, "-", &OidcError::NotConfigured).await;
    };
    let started = std::time::Instant::now();
    let id = match oidc
        .finish(&ctx.device.fingerprint, code, state_param)
        .await
    {
        Ok(id) => id,
        Err(e) => return sso_refused(ctx, "-", &e).await,
    };
    admit(ctx, oidc, id, started, "SSO sign-in").await
}

/// How long a `DevicePoll` may wait for the person, at most.
pub(super) const DEVICE_POLL_WITHIN: std::time::Duration = std::time::Duration::from_millis(
    crate::auth::oidc::DEVICE_WAIT_MAX_MS as u64
        + 2 * crate::store::ANSWER_WITHIN.as_millis() as u64,
);

/// `DeviceStart`: a device code sign-in at the provider; the code and
/// where to enter it.
pub(super) async fn device_start(ctx: &DeviceConn) -> Message {
    let Some(oidc) = ctx.state.oidc.as_ref() else {
        return sso_refused(ctx, "-", &OidcError::NotConfigured).await;
    };
    match oidc.device_begin(&ctx.device.fingerprint).await {
        Ok(d) => {
            tracing::info!(device = %ctx.device.label(), "device code sign-in started");
            Message::DeviceAuthorize {
                handle: d.handle,
                user_code: d.user_code,
                verification_uri: d.verification_uri,
                verification_uri_complete: d.verification_uri_complete.unwrap_or_default(),
                expires_in: d.expires_in_secs,
                interval: d.interval_secs,
            }
        }
        Err(e) => sso_refused(ctx, "-", &e).await,
    }
}

/// `DevicePoll`: waits (polling the provider) until the person has signed
/// in on another screen, then admits them as a code sign-in would. Given
/// up when the device's connection closes.
pub(super) async fn device_poll(ctx: &DeviceConn, handle: &str) -> Message {
    let Some(oidc) = ctx.state.oidc.as_ref() else {
        return sso_refused(ctx, "-", &OidcError::NotConfigured).await;
    };
    let waited = tokio::select! {
        r = oidc.device_finish(&ctx.device.fingerprint, handle) => r,
        _ = ctx.conn.closed() => {
            tracing::info!(device = %ctx.device.label(), "device code sign-in given up: the device went away");
            return Message::refused(ErrorCode::Unavailable, "the connection closed");
        }
    };
    let started = std::time::Instant::now();
    let id = match waited {
        Ok(id) => id,
        Err(e) => return sso_refused(ctx, "-", &e).await,
    };
    admit(ctx, oidc, id, started, "SSO device code sign-in").await
}

/// The person the provider signed in (checked): their groups and role
/// from the provider, then a sign-in on this device as a password one
/// would give, with the provider's state kept for re-checks.
async fn admit(
    ctx: &DeviceConn,
    oidc: &crate::auth::oidc::Oidc,
    id: crate::auth::oidc::Identity,
    started: std::time::Instant,
    what: &'static str,
) -> Message {
    let state = &ctx.state;
    let now = now_ms();
    let settings = oidc.settings();
    let admitted = state
        .store
        .sso_admit(&id.username, &id.groups, settings.provision, now)
        .await;
    let why = match admitted {
        Ok(Admission::Admitted { changed, .. }) => {
            // The device rules below read the person's groups (a pool
            // laptop's): read the rules again after a change.
            if changed {
                if let Err(e) = state.policy.reload(&state.store, now).await {
                    tracing::warn!(error = %e, "cannot reload the rules after an SSO sign-in");
                }
            }
            None
        }
        Ok(Admission::NoMappedGroup) => Some(format!(
            "{} is in no group mapped to Lanyard (lanyard groups add NAME --idp-group VALUE); ask ICT",
            id.username
        )),
        Ok(Admission::Unknown) => Some(format!(
            "{} is not a Lanyard user (and [oidc] provision is off); ask ICT",
            id.username
        )),
        Ok(Admission::Disabled) => Some("this account is disabled; contact ICT".to_owned()),
        Err(e) => {
            tracing::warn!(error = %e, "SSO sign-in failed in the store");
            return Message::refused(ErrorCode::Unavailable, STORE_UNAVAILABLE);
        }
    };
    if let Some(why) = why {
        state.metrics.agent_signin_failures.fetch_add(1, Relaxed);
        state
            .store
            .audit_denial(&id.username, "agent.signin", &ctx.device.label(), &why)
            .await;
        return Message::refused(ErrorCode::Forbidden, truncate(why));
    }
    let how = serde_json::json!({ "subject": id.subject, "groups": id.groups.len() });
    let (family, answer) = match issue(ctx, &id.username, now, how).await {
        Ok(issued) => issued,
        Err(refused) => return refused,
    };
    let sealed = id
        .refresh_token
        .as_deref()
        .map(|t| state.seal.seal(t.as_bytes(), &seal_context(&family)));
    if let Err(e) = state
        .store
        .oidc_sign_in_record(&family, &id.username, &id.subject, sealed.as_deref(), now)
        .await
    {
        tracing::warn!(error = %e, "cannot keep the provider's state for an SSO sign-in");
        return Message::refused(ErrorCode::Unavailable, STORE_UNAVAILABLE);
    }
    tracing::info!(
        username = %id.username,
        device = %ctx.device.label(),
        ms = started.elapsed().as_millis() as u64,
        "{what}"
    );
    match answer {
        Message::Tokens {
            access_token,
            refresh_token,
            expires_in,
        } => Message::SsoTokens {
            username: id.username,
            access_token,
            refresh_token,
            expires_in,
        },
        other => other,
    }
}

/// The AAD the provider's refresh token is sealed under: its sign-in.
fn seal_context(family: &str) -> String {
    format!("oidc-refresh:{family}")
}

/// On a Lanyard refresh of an SSO sign-in: at least every
/// `[oidc] recheck_every`, asks the provider again (with its refresh
/// token) whether the person may still sign in and which groups they are
/// in. `Err` with the reason when the sign-in must end. A provider that
/// cannot be reached lets the refresh go on; it is asked at the next one.
async fn sso_recheck(ctx: &DeviceConn, family: &str) -> Result<(), String> {
    let state = &ctx.state;
    let Some(oidc) = state.oidc.as_ref() else {
        return Ok(());
    };
    let row = match state.store.oidc_sign_in(family).await {
        Ok(Some(row)) => row,
        Ok(None) => return Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read an SSO sign-in");
            return Ok(());
        }
    };
    let now = now_ms();
    if now - row.checked_at < crate::clock::duration_ms(oidc.settings().recheck_every) {
        return Ok(());
    }
    let Some(sealed) = row.refresh_sealed.as_deref() else {
        return Err("the identity provider gave no refresh token to check the person with".into());
    };
    let Ok(refresh) = state.seal.open(sealed, &seal_context(family)) else {
        return Err("the provider's refresh token cannot be opened".into());
    };
    let refresh = String::from_utf8_lossy(&refresh).into_owned();
    let id = match oidc.recheck(&refresh).await {
        Ok(id) => id,
        Err(OidcError::Provider(e)) => {
            tracing::warn!(error = %e, "the identity provider cannot be asked now; the refresh goes on");
            return Ok(());
        }
        Err(e) => return Err(format!("sso: {e}")),
    };
    if id.subject != row.subject || id.username != row.username {
        return Err("sso: the provider names another person now".into());
    }
    match state
        .store
        .sso_admit(&id.username, &id.groups, false, now)
        .await
    {
        Ok(Admission::Admitted { .. }) => {}
        Ok(Admission::NoMappedGroup) => {
            return Err(format!(
                "sso: {} is no longer in a group mapped to Lanyard",
                id.username
            ))
        }
        Ok(Admission::Unknown) | Ok(Admission::Disabled) => {
            return Err("sso: this account is disabled or gone".into())
        }
        Err(e) => {
            tracing::warn!(error = %e, "SSO re-check failed in the store");
            return Ok(());
        }
    }
    let sealed = id
        .refresh_token
        .as_deref()
        .map(|t| state.seal.seal(t.as_bytes(), &seal_context(family)));
    if let Err(e) = state
        .store
        .oidc_sign_in_checked(family, sealed.as_deref(), now)
        .await
    {
        tracing::warn!(error = %e, "cannot keep the provider's next refresh token");
    }
    Ok(())
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
        Ok(r) => {
            if let Err(why) = sso_recheck(ctx, &r.family_id).await {
                let ended = state
                    .store
                    .oidc_sign_in_end(
                        &r.family_id,
                        &r.username,
                        &ctx.device.label(),
                        &why,
                        now_ms(),
                    )
                    .await;
                if let Err(e) = ended {
                    tracing::warn!(error = %e, "cannot end an SSO sign-in");
                    return Message::refused(ErrorCode::Unavailable, STORE_UNAVAILABLE);
                }
                tracing::info!(username = %r.username, device = %ctx.device.label(), "SSO sign-in ended by the provider");
                return Message::refused(ErrorCode::Unauthorized, truncate(why));
            }
            tokens(ctx, &r.username, &r.family_id, next)
        }
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
