//! A session's control stream, and its tunnel streams.
//!
//! The control stream opens the session (the access token is checked
//! against the certificate of this very connection) and then stays open:
//! whenever the rules change, or the token or certificate runs out, the
//! session is checked again and, if it may no longer go on, told why and
//! closed. Each tunnel stream is decided afresh when it opens and checked
//! again on every rule change while it relays.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use lanyard_agent::wire::{code, relay, write_frame, Meters};
use lanyard_proto::frame::to_frame;
use lanyard_proto::session::{BrokerControl, BrokerEvent};
use lanyard_proto::{close, AppGrant, ErrorCode, Message};
use tokio::net::TcpStream;

use super::connection::{refuse_stream, DeviceConn};
use crate::auth::tokens::LEEWAY_SECS;
use crate::clock::now_ms;
use crate::policy::{admit, allowed_apps, decide_session, decide_stream, Deny, Policy};
use crate::state::Shared;
use crate::store::AuditEntry;
use crate::tunnel::LiveSession;

/// Time allowed to connect to an app.
const APP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Denied streams audited per session; more are counted, not audited, so
/// that a misbehaving agent cannot flood the audit log.
const AUDITED_DENIALS_PER_SESSION: u64 = 20;

/// The close code that tells the agent what to do about a denial.
fn close_code(d: &Deny) -> u32 {
    match d {
        Deny::DeviceRevoked => close::DEVICE_REVOKED,
        Deny::CertificateExpired => close::CERT_EXPIRED,
        Deny::StaleRules => close::STALE_STATE,
        _ => close::SIGNED_OUT,
    }
}

fn grants(policy: &Policy, session: &LiveSession) -> Vec<AppGrant> {
    allowed_apps(policy, &session.subject(), now_ms())
        .into_iter()
        .map(|a| AppGrant {
            name: a.name.clone(),
            port_hint: 0,
        })
        .collect()
}

async fn audit_denial(state: &Shared, actor: &str, action: &'static str, target: &str, why: &str) {
    let entry = AuditEntry::denied(actor, action, target, why);
    if let Err(e) = state.store.audit_only(now_ms(), entry).await {
        tracing::warn!(error = %e, "could not audit a denial");
    }
}

async fn flush(ctl: &mut BrokerControl, send: &mut quinn::SendStream) -> bool {
    match ctl.poll_transmit() {
        Some(bytes) => send.write_all(&bytes).await.is_ok(),
        None => true,
    }
}

struct Refusal {
    code: ErrorCode,
    message: String,
    label: &'static str,
    username: String,
}

/// Checks the hello's token and the rules; the new session on success.
async fn open(ctx: &DeviceConn, access_token: &str) -> Result<Arc<LiveSession>, Refusal> {
    let state = &ctx.state;
    let now = now_ms();
    let claims = state
        .token_keys
        .verify(access_token, &ctx.thumbprint, now / 1000)
        .map_err(|e| Refusal {
            code: ErrorCode::Unauthorized,
            message: e.to_string(),
            label: "bad_token",
            username: "anonymous".into(),
        })?;
    let refuse = |code, message: String, label| Refusal {
        code,
        message,
        label,
        username: claims.sub.clone(),
    };
    if ctx.device.asset_tag.is_none() && ctx.device.owner.as_deref() != Some(claims.sub.as_str()) {
        return Err(refuse(
            ErrorCode::Forbidden,
            "this personal device belongs to someone else".into(),
            "wrong_owner",
        ));
    }
    let session = Arc::new(LiveSession {
        id: crate::secrets::new_id(),
        username: claims.sub.clone(),
        device_id: ctx.device.fingerprint.clone(),
        device_label: ctx.device.label(),
        device_kind: ctx.kind,
        sign_in: claims.sid.clone(),
        remote: ctx.conn.remote_address(),
        since: now,
        cert_expires_at: ctx.device.cert_expires_at,
        token_expires_at: ((claims.exp + LEEWAY_SECS) * 1000).into(),
        open_streams: AtomicU64::new(0),
        streams_total: AtomicU64::new(0),
        denied_streams: AtomicU64::new(0),
        bytes_up: AtomicU64::new(0),
        bytes_down: AtomicU64::new(0),
        conn: ctx.conn.clone(),
    });
    let policy = state.policy.current();
    if let Err(d) = decide_session(&policy, &session.subject(), now) {
        return Err(refuse(d.code(), d.to_string(), d.label()));
    }
    // decide_session found the person.
    let priority = policy.staff[session.username.as_str()].priority;
    if let Err(d) = admit(&state.settings.admission, priority, state.sessions.len()) {
        return Err(refuse(d.code(), d.to_string(), d.label()));
    }
    // Checked after the rules, so that a disabled person hears that.
    if let Some(sid) = &claims.sid {
        match state.store.refresh_family_revoked(sid).await {
            Ok(false) => {}
            Ok(true) => {
                return Err(refuse(
                    ErrorCode::Unauthorized,
                    "this sign-in was ended; sign in again".into(),
                    "signed_out",
                ))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a sign-in");
                return Err(refuse(
                    ErrorCode::Unavailable,
                    super::connection::STORE_UNAVAILABLE.into(),
                    "store_unavailable",
                ));
            }
        }
    }
    Ok(session)
}

pub(super) async fn control(
    ctx: Arc<DeviceConn>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    hello: Message,
) {
    let state = ctx.state.clone();
    let mut ctl = BrokerControl::new();
    if ctl.handle_bytes(&to_frame(&hello)).is_err() {
        return;
    }
    let Some(BrokerEvent::Hello {
        access_token,
        agent_version,
        os,
    }) = ctl.poll_event()
    else {
        // Refused by the protocol itself (another version).
        flush(&mut ctl, &mut send).await;
        let _ = send.finish();
        return;
    };
    // Boxed, as are the other one-off steps below: the session task lives
    // as long as the agent is connected, and its size is that of its
    // largest state.
    let session = match Box::pin(open(&ctx, &access_token)).await {
        Ok(s) => s,
        Err(r) => {
            state.metrics.sessions_refused.fetch_add(1, Relaxed);
            state.metrics.deny(r.label);
            Box::pin(audit_denial(
                &state,
                &r.username,
                "session.open",
                &ctx.device.label(),
                &r.message,
            ))
            .await;
            ctl.refuse(r.code, r.message);
            flush(&mut ctl, &mut send).await;
            let _ = send.finish();
            return;
        }
    };
    if ctx.session.set(session.clone()).is_err() {
        ctl.refuse(
            ErrorCode::BadRequest,
            "a session is already open on this connection".into(),
        );
        flush(&mut ctl, &mut send).await;
        let _ = send.finish();
        return;
    }
    state.sessions.insert(session.clone());
    state.metrics.sessions_opened.fetch_add(1, Relaxed);
    let mut apps = grants(&state.policy.current(), &session);
    ctl.welcome(session.id.clone(), apps.clone());
    tracing::info!(session = %session.id, username = %session.username, device = %session.device_label, "session opened");
    {
        let state = state.clone();
        let device = ctx.device.fingerprint.clone();
        tokio::spawn(async move {
            let seen = state
                .store
                .device_seen(&device, &agent_version, &os, now_ms())
                .await;
            if let Err(e) = seen {
                tracing::debug!(error = %e, "cannot note a device as seen");
            }
        });
    }

    let mut generation = state.policy.subscribe();
    let mut stopping = ctx.shutdown.clone();
    let mut draining = false;
    let ended = loop {
        if !flush(&mut ctl, &mut send).await {
            break End::Agent;
        }
        if draining && session.open_streams.load(Relaxed) == 0 {
            break End::Drained;
        }
        let deadline = session
            .token_expires_at
            .load(Relaxed)
            .min(session.cert_expires_at);
        let wait = if draining {
            Duration::from_millis(50)
        } else {
            Duration::from_millis((deadline - now_ms()).clamp(0, 3_600_000) as u64 + 10)
        };
        tokio::select! {
            chunk = recv.read_chunk(4096, true) => match chunk {
                Ok(Some(c)) => {
                    if let Err(e) = ctl.handle_bytes(&c.bytes) {
                        tracing::debug!(error = %e, "control stream protocol error");
                        ctx.conn.close(close::PROTOCOL.into(), e.to_string().as_bytes());
                        break End::Agent;
                    }
                }
                // The agent ended its session.
                Ok(None) | Err(_) => break End::Agent,
            },
            changed = generation.changed() => {
                if changed.is_err() {
                    break End::Agent;
                }
            }
            _ = stopping.wait_for(|s| *s), if !draining => draining = true,
            _ = tokio::time::sleep(wait) => {}
        }
        let policy = state.policy.current();
        match decide_session(&policy, &session.subject(), now_ms()) {
            Err(d) => break End::Denied(d),
            Ok(()) => {
                let now_apps = grants(&policy, &session);
                if now_apps != apps {
                    apps = now_apps;
                    ctl.apps_changed(apps.clone());
                }
            }
        }
    };
    match ended {
        End::Agent => {}
        End::Drained => session.close(close::SHUTDOWN, "the broker is restarting"),
        End::Denied(d) => {
            let reason = d.to_string();
            state.metrics.deny(d.label());
            tracing::info!(session = %session.id, username = %session.username, reason = %reason, "session closed by the rules");
            ctl.revoke(reason.clone());
            flush(&mut ctl, &mut send).await;
            session.close(close_code(&d), &reason);
            audit_denial(
                &state,
                &session.username,
                "session.close",
                &session.device_label,
                &reason,
            )
            .await;
        }
    }
    state.sessions.remove(&session.id);
}

/// Why a control stream ended.
enum End {
    /// The agent ended it, or the connection is gone.
    Agent,
    /// The broker is stopping and the session has no open stream.
    Drained,
    /// The rules no longer allow it.
    Denied(Deny),
}

/// Decrements a session's open-stream count however the stream ends.
struct OpenStream<'a>(&'a LiveSession);

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Relaxed);
    }
}

pub(super) async fn tunnel(
    ctx: Arc<DeviceConn>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    app: String,
    request_id: u64,
) {
    let state = &ctx.state;
    let started = std::time::Instant::now();
    let Some(session) = ctx.session.get().cloned() else {
        refuse_stream(
            &mut send,
            ErrorCode::Unauthorized,
            "open a session (the control stream) before a tunnel stream".into(),
        )
        .await;
        return;
    };
    let decided = decide_stream(&state.policy.current(), &session.subject(), &app, now_ms())
        .map(|rule| rule.target.clone());
    let target = match decided {
        Ok(t) => t,
        Err(d) => {
            let reason = d.to_string();
            state.metrics.deny(d.label());
            refuse_stream(&mut send, d.code(), reason.clone()).await;
            if d.ends_session() {
                session.close(close_code(&d), &reason);
            }
            if session_denials(&session) <= AUDITED_DENIALS_PER_SESSION {
                audit_denial(state, &session.username, "stream.open", &app, &reason).await;
            }
            return;
        }
    };
    let tcp = match tokio::time::timeout(APP_CONNECT_TIMEOUT, TcpStream::connect(&target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(app = %app, target = %target, error = %e, "app unreachable");
            state.metrics.deny("app_unreachable");
            refuse_stream(
                &mut send,
                ErrorCode::Unavailable,
                format!("{app} is not answering at the broker; try again or tell ICT"),
            )
            .await;
            return;
        }
        Err(_) => {
            state.metrics.deny("app_unreachable");
            refuse_stream(
                &mut send,
                ErrorCode::Unavailable,
                format!("{app} did not answer within {APP_CONNECT_TIMEOUT:?}"),
            )
            .await;
            return;
        }
    };
    if write_frame(&mut send, &Message::StreamAccepted { request_id })
        .await
        .is_err()
    {
        return;
    }
    state.metrics.stream_open_latency.observe(started.elapsed());
    state.metrics.streams_allowed.fetch_add(1, Relaxed);
    session.streams_total.fetch_add(1, Relaxed);
    session.open_streams.fetch_add(1, Relaxed);
    let _open = OpenStream(&session);
    let mut generation = state.policy.subscribe();
    let revoked = {
        let per_app = state.metrics.app(&app);
        let inbound = [&session.bytes_up, &state.metrics.bytes_up, &per_app.up];
        let outbound = [
            &session.bytes_down,
            &state.metrics.bytes_down,
            &per_app.down,
        ];
        let relayed = relay(
            tcp,
            &mut send,
            &mut recv,
            Meters {
                inbound: &inbound,
                outbound: &outbound,
            },
        );
        tokio::pin!(relayed);
        loop {
            tokio::select! {
                _ = &mut relayed => break None,
                changed = generation.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    let policy = state.policy.current();
                    if let Err(d) = decide_stream(&policy, &session.subject(), &app, now_ms()) {
                        break Some(d);
                    }
                }
            }
        }
    };
    if let Some(d) = revoked {
        let _ = send.reset(code(d.code()));
        let _ = recv.stop(code(d.code()));
        if !d.ends_session() {
            let reason = d.to_string();
            tracing::info!(session = %session.id, app = %app, reason = %reason, "tunnel stream closed by the rules");
            audit_denial(state, &session.username, "stream.close", &app, &reason).await;
        }
    }
}

/// Counts a denied stream on its session; the running count.
fn session_denials(session: &LiveSession) -> u64 {
    session.denied_streams.fetch_add(1, Relaxed) + 1
}
