//! A session's control stream.
//!
//! The control stream opens the session (the access token is checked
//! against the certificate of this very connection) and then stays open:
//! whenever the rules change, or the token or certificate runs out (the
//! `BrokerControl` machine keeps that time), the session is checked again
//! and, if it may no longer go on, told why and closed. Its tunnel streams
//! are `crate::tunnel::stream`'s.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use lanyard_proto::frame::to_frame;
use lanyard_proto::session::{BrokerControl, BrokerEvent};
use lanyard_proto::{close, AppGrant, ErrorCode, Message};

use super::device::{DeviceConn, STORE_UNAVAILABLE};
use crate::auth::tokens::LEEWAY_SECS;
use crate::clock::now_ms;
use crate::policy::{admit, allowed_apps, decide_session, Deny, Policy};
use crate::tunnel::LiveSession;

fn grants(policy: &Policy, session: &LiveSession) -> Vec<AppGrant> {
    allowed_apps(policy, &session.subject(), now_ms())
        .into_iter()
        .map(|a| AppGrant {
            target: a.target.clone(),
            hosts: a.hosts.clone(),
            protocol: a.protocol,
            ..AppGrant::named(a.name.clone())
        })
        .collect()
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
        .token_keys()
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
    let session = Arc::new(LiveSession {
        id: crate::secrets::new_id(),
        username: claims.sub.clone(),
        device_id: ctx.device.fingerprint.clone(),
        device_label: ctx.device.label(),
        device_kind: ctx.kind,
        owner: ctx.device.owner.clone(),
        asset_tag: ctx.device.asset_tag.clone(),
        sign_in: claims.sid.clone(),
        remote: ctx.conn.remote_address(),
        since: now,
        cert_expires_at: ctx.device.cert_expires_at.into(),
        token_expires_at: ((claims.exp + LEEWAY_SECS) * 1000).into(),
        open_streams: AtomicU64::new(0),
        streams_total: AtomicU64::new(0),
        denied_streams: AtomicU64::new(0),
        bytes_up: AtomicU64::new(0),
        bytes_down: AtomicU64::new(0),
        apps_used: Default::default(),
        conn: ctx.conn.clone(),
        flows: Default::default(),
    });
    let policy = state.policy.current();
    if let Err(d) = decide_session(&policy, &session.subject(), now) {
        return Err(refuse(d.code(), d.to_string(), d.label()));
    }
    // decide_session found the person.
    let priority = policy.staff[session.username.as_str()].priority;
    if let Err(d) = admit(&state.live().admission, priority, state.sessions.len()) {
        return Err(refuse(d.code(), d.to_string(), d.label()));
    }
    // Checked after the rules, so that a disabled person hears that.
    if let Some(sid) = &claims.sid {
        match crate::store::within(state.store.sign_in_ended(sid)).await {
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
                    STORE_UNAVAILABLE.into(),
                    "store_unavailable",
                ));
            }
        }
    }
    Ok(session)
}

/// The longest a session waits on the store to record its start or end:
/// the rules in memory decide access, not the record.
const RECORD_TIMEOUT: Duration = Duration::from_secs(2);

/// Refused hellos audited per connection; more are counted, not audited.
pub const AUDITED_REFUSED_HELLOS: u32 = 5;
/// Refused hellos after which the connection is closed.
pub const MAX_REFUSED_HELLOS: u32 = 10;

/// Serves a control stream whose first frame was `hello`, for as long as
/// the session lasts.
pub(super) async fn serve(
    ctx: Arc<DeviceConn>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    hello: Message,
) {
    let state = ctx.state.clone();
    let mut ctl = BrokerControl::new();
    let fed = ctl.handle_bytes(&to_frame(&hello));
    // What the task holds, it holds for as long as the agent is connected:
    // the hello (and its token, below) is let go once read.
    drop(hello);
    if fed.is_err() {
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
    let opened = Box::pin(open(&ctx, &access_token)).await;
    drop(access_token);
    let session = match opened {
        Ok(s) => s,
        Err(r) => {
            state.metrics.sessions_refused.fetch_add(1, Relaxed);
            state.metrics.deny(r.label);
            // A device repeating refused hellos is audited a few times,
            // then only counted, then disconnected.
            let refused = ctx.refused_hellos.fetch_add(1, Relaxed) + 1;
            if refused <= AUDITED_REFUSED_HELLOS {
                Box::pin(state.store.audit_denial(
                    &r.username,
                    "session.open",
                    &ctx.device.label(),
                    &r.message,
                ))
                .await;
            }
            ctl.refuse(r.code, r.message);
            flush(&mut ctl, &mut send).await;
            let _ = send.finish();
            if refused >= MAX_REFUSED_HELLOS {
                ctx.conn.close(
                    close::PROTOCOL.into(),
                    b"too many refused sessions on this connection",
                );
            }
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
    // Recorded for every node to see; the session does not wait on it
    // being possible (the rules in memory decide access).
    let recorded = async {
        let row = session.row(&state.node);
        tokio::time::timeout(RECORD_TIMEOUT, state.store.session_open(&row)).await
    };
    match Box::pin(recorded).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(session = %session.id, error = %e, "cannot record a session as open")
        }
        Err(_) => {
            tracing::warn!(session = %session.id, "the store did not record a session in time")
        }
    }
    let mut apps = grants(&state.policy.current(), &session);
    ctl.welcome(
        session.id.clone(),
        apps.clone(),
        state.agent_addrs(),
        expiry(&session),
    );
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
    let ended = loop {
        if !flush(&mut ctl, &mut send).await {
            break End::Agent;
        }
        // A refresh over this connection may have moved the token on.
        ctl.extend(expiry(&session));
        let wake = ctl.poll_timeout().map(|at| {
            let left = at.saturating_sub(now_ms() as u64).min(3_600_000);
            tokio::time::Instant::now() + Duration::from_millis(left)
        });
        let mut recheck = false;
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
                recheck = true;
            }
            _ = stopping.wait_for(|s| *s), if !*stopping.borrow() => {
                ctl.drain(now_ms() as u64);
            }
            _ = sleep_until(wake) => {}
        }
        // Counted now, not when the wait began: streams opened meanwhile
        // (before a drain began, say) must hold the session open.
        ctl.set_open_streams(session.open_streams.load(Relaxed));
        ctl.handle_timeout(now_ms() as u64);
        let mut drained = false;
        while let Some(event) = ctl.poll_event() {
            match event {
                BrokerEvent::Expired => recheck = true,
                BrokerEvent::Drained => drained = true,
                BrokerEvent::Hello { .. } | BrokerEvent::Pong { .. } => {}
            }
        }
        if drained {
            break End::Drained;
        }
        if recheck {
            let policy = state.policy.current();
            if policy.ended_sessions.contains(&session.id) {
                break End::Denied(Deny::SignInEnded);
            }
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
        }
    };
    let reason = match &ended {
        End::Agent => "the agent disconnected".to_owned(),
        End::Drained => "the broker stopped".to_owned(),
        End::Denied(d) => d.to_string(),
    };
    match ended {
        End::Agent => {}
        End::Drained => session.close(close::SHUTDOWN, "the broker is stopping"),
        End::Denied(d) => {
            let reason = d.to_string();
            state.metrics.deny(d.label());
            tracing::info!(session = %session.id, username = %session.username, reason = %reason, "session closed by the rules");
            ctl.revoke(reason.clone());
            flush(&mut ctl, &mut send).await;
            session.close(d.close_code(), &reason);
            Box::pin(state.store.audit_denial(
                &session.username,
                "session.close",
                &session.device_label,
                &reason,
            ))
            .await;
        }
    }
    state.sessions.remove(&session.id);
    let end = session.end(&reason);
    let recorded = async {
        let row = session.row(&state.node);
        let closing = state.store.session_close(&row, &end, now_ms());
        tokio::time::timeout(RECORD_TIMEOUT, closing).await
    };
    match Box::pin(recorded).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(session = %session.id, error = %e, "cannot record a session's end")
        }
        Err(_) => {
            tracing::warn!(session = %session.id, "the store did not record a session's end in time")
        }
    }
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

/// When the session's token or certificate runs out, whichever first.
fn expiry(session: &LiveSession) -> u64 {
    let at = session
        .token_expires_at
        .load(Relaxed)
        .min(session.cert_expires_at.load(Relaxed));
    u64::try_from(at).unwrap_or(0)
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
