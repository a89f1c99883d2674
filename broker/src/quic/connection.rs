//! One agent connection: the handshake, then every stream it opens, each
//! dispatched by its first frame.
//!
//! Without a client certificate only enrolment is possible. With one (the
//! device certificate, already checked by rustls against the CA), the
//! device must be enrolled and not revoked; then it may sign in, refresh,
//! renew its certificate, open one session (the control stream) and, in
//! that session, tunnel streams.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};

use lanyard_proto::{close, ErrorCode, Message};
use lanyard_relay::{code, read_frame, write_frame};
use rustls_pki_types::CertificateDer;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::device::{
    refuse_stream, stream_room, DeviceConn, FIRST_FRAME_TIMEOUT, HANDSHAKE_TIMEOUT,
    INITIAL_STREAMS, STORE_UNAVAILABLE,
};
use super::{control, enrol, signin};
use crate::auth::device::{cert_thumbprint, device_id};
use crate::policy::{laptop_usable, Deny, DeviceKind};
use crate::state::AppState;
use crate::tunnel::stream::{self, Opened, Services};

/// The task of one connection, from its first packet until it closes.
///
/// The handshake's wait is boxed and the `Incoming` goes into it at once:
/// both are bigger than what an idle connection's task holds for the rest
/// of its life.
pub(super) fn handle(
    incoming: quinn::Incoming,
    state: AppState,
    shutdown: watch::Receiver<bool>,
    handshake: tokio::sync::OwnedSemaphorePermit,
    slots: super::Slots,
) -> impl std::future::Future<Output = ()> {
    let remote = incoming.remote_address();
    let started = std::time::Instant::now();
    let handshake_done = Box::pin(tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        std::future::IntoFuture::into_future(incoming),
    ));
    async move {
        let conn = match handshake_done.await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                state.metrics.quic_handshake_failures.fetch_add(1, Relaxed);
                tracing::debug!(%remote, error = %e, "agent handshake failed");
                return;
            }
            Err(_) => {
                state.metrics.quic_handshake_failures.fetch_add(1, Relaxed);
                tracing::debug!(%remote, "agent handshake timed out");
                return;
            }
        };
        drop(handshake);
        state.metrics.quic_handshakes.fetch_add(1, Relaxed);
        state.metrics.connect_latency.observe(started.elapsed());
        let cert = conn
            .peer_identity()
            .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
            .and_then(|chain| chain.into_iter().next());
        // Each kind of connection in a pool of its own: enrolments never take
        // an agent's place, and one address never takes every enrolment's.
        let (pool, _of_address) = if cert.is_some() {
            (&slots.agents, None)
        } else {
            let Some(mine) = slots.enrolments_per_address.take(remote.ip()) else {
                state.metrics.quic_refused_capacity.fetch_add(1, Relaxed);
                conn.close(
                    close::AT_CAPACITY.into(),
                    b"too many enrolments from this address at once; try again shortly",
                );
                return;
            };
            (&slots.enrolments, Some(mine))
        };
        let Ok(_place) = pool.clone().try_acquire_owned() else {
            state.metrics.quic_refused_capacity.fetch_add(1, Relaxed);
            conn.close(
                close::AT_CAPACITY.into(),
                b"the broker is at capacity; try again shortly",
            );
            return;
        };
        match cert {
            // Boxed: the connection task lives as long as the agent is
            // connected, and should not be the size of an enrolment. An
            // enrolment needs one stream and little room.
            None => {
                conn.set_max_concurrent_bi_streams(1u32.into());
                conn.set_receive_window(ENROLMENT_WINDOW.into());
                Box::pin(enrol::serve(conn, state)).await
            }
            Some(cert) => serve_device(conn, cert, state, shutdown).await,
        }
    }
}

/// Receive window of a connection without a device certificate: room for
/// one enrolment request, not for a tunnel.
const ENROLMENT_WINDOW: u32 = 64 * 1024;

async fn serve_device(
    conn: quinn::Connection,
    cert: CertificateDer<'static>,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(id) = device_id(&cert) else {
        conn.close(close::PROTOCOL.into(), b"unreadable device certificate");
        return;
    };
    // The task lasts as long as the connection: what it needs of the
    // certificate is kept, the certificate itself is not.
    let thumbprint = cert_thumbprint(&cert);
    drop(cert);
    let device = match crate::store::within(state.store.device_get(&id)).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            conn.close(
                close::DEVICE_REVOKED.into(),
                b"this device is not enrolled with this broker; enrol it again",
            );
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot look up a device");
            conn.close(close::STALE_STATE.into(), STORE_UNAVAILABLE.as_bytes());
            return;
        }
    };
    if device.revoked_at.is_some() {
        let reason = format!(
            "this device has been revoked ({}); contact ICT",
            device.revoke_reason.as_deref().unwrap_or("no reason given")
        );
        state.metrics.deny("device_revoked");
        conn.close(close::DEVICE_REVOKED.into(), reason.as_bytes());
        return;
    }
    let Some(kind) = DeviceKind::parse(&device.kind) else {
        conn.close(close::PROTOCOL.into(), b"unknown device kind");
        return;
    };
    let ctx = Arc::new(DeviceConn {
        state: state.clone(),
        conn: conn.clone(),
        thumbprint,
        device,
        kind,
        session: OnceLock::new(),
        refused_hellos: Default::default(),
        shutdown: shutdown.clone(),
    });
    let mut streams = JoinSet::new();
    let most = state.settings.streams_per_agent;
    let mut limit = most.min(INITIAL_STREAMS);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            accepted = conn.accept_bi() => {
                let Ok((send, recv)) = accepted else { break };
                streams.spawn(dispatch(ctx.clone(), send, recv));
                if let Some(more) = stream_room(streams.len(), limit, most) {
                    limit = more;
                    conn.set_max_concurrent_bi_streams(limit.into());
                }
            }
        }
    }
    // Let the streams finish: when draining, the broker bounds the wait;
    // when the connection has closed, they end at once (and a closing
    // session still writes its audit row). While draining, a new stream is
    // refused at once rather than left unanswered.
    let mut refusing = *shutdown.borrow();
    loop {
        tokio::select! {
            joined = streams.join_next() => if joined.is_none() { break },
            accepted = conn.accept_bi(), if refusing => match accepted {
                Ok((mut send, mut recv)) => {
                    streams.spawn(async move {
                        let _ = recv.stop(code(ErrorCode::Unavailable));
                        let why = "the broker is stopping; try again shortly";
                        refuse_stream(&mut send, ErrorCode::Unavailable, why.into()).await;
                    });
                }
                Err(_) => refusing = false,
            },
        }
    }
    if *shutdown.borrow() {
        conn.close(close::SHUTDOWN.into(), b"the broker is stopping");
    }
    if let Some(s) = ctx.session.get() {
        state.sessions.remove(&s.id);
    }
}

async fn dispatch(ctx: Arc<DeviceConn>, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let first = match Box::pin(read_frame(&mut recv, FIRST_FRAME_TIMEOUT)).await {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, "bad first frame on a stream");
            let _ = send.reset(code(ErrorCode::BadRequest));
            let _ = recv.stop(code(ErrorCode::BadRequest));
            return;
        }
    };
    // A session lives as long as the agent is connected, so its task is
    // the session and nothing bigger; the rest is boxed.
    match first {
        hello @ Message::Hello { .. } => control::serve(ctx, send, recv, hello).await,
        Message::StreamOpen { app, request_id } => {
            let Some(session) = ctx.session.get().cloned() else {
                let why = "open a session (the control stream) before a tunnel stream";
                return refuse_stream(&mut send, ErrorCode::Unauthorized, why.into()).await;
            };
            let state = &ctx.state;
            let services = Services {
                policy: &state.policy,
                metrics: &state.metrics,
                store: &state.store,
            };
            let opened = Opened {
                app,
                request_id,
                send,
                recv,
            };
            Box::pin(stream::serve(services, &session, opened)).await
        }
        other => Box::pin(request(ctx, send, other)).await,
    }
}

/// A one-off request on its own stream: one answer, then the end. A
/// device revoked (or a laptop put out of use) since its connection opened
/// can do nothing more on it but close.
async fn request(ctx: Arc<DeviceConn>, mut send: quinn::SendStream, first: Message) {
    let policy = ctx.state.policy.current();
    let revoked = if policy.revoked_devices.contains(&ctx.device.fingerprint) {
        Some(Deny::DeviceRevoked)
    } else {
        laptop_usable(&policy, ctx.device.asset_tag.as_deref()).err()
    };
    if let Some(d) = revoked {
        ctx.state.metrics.deny(d.label());
        let _ = write_frame(&mut send, &Message::refused(d.code(), d.to_string())).await;
        let _ = send.finish();
        ctx.conn
            .close(d.close_code().into(), d.to_string().as_bytes());
        return;
    }
    // A device code sign-in waits for the person, not the store.
    let within = match first {
        Message::DevicePoll { .. } => signin::DEVICE_POLL_WITHIN,
        _ => crate::store::ANSWER_WITHIN,
    };
    let answer = async {
        match first {
            Message::SignIn {
                username,
                password,
                totp,
            } => signin::sign_in(&ctx, &username, &password, totp.as_deref()).await,
            Message::Refresh { refresh_token } => signin::refresh(&ctx, &refresh_token).await,
            Message::SsoStart { port } => signin::sso_start(&ctx, port).await,
            Message::SsoFinish { code, state } => signin::sso_finish(&ctx, &code, &state).await,
            Message::DeviceStart => signin::device_start(&ctx).await,
            Message::DevicePoll { handle } => signin::device_poll(&ctx, &handle).await,
            Message::SignOut { refresh_token } => signin::sign_out(&ctx, &refresh_token).await,
            Message::Renew => enrol::renew(&ctx).await,
            other => {
                tracing::debug!(message = ?other, "unexpected first frame");
                Message::refused(ErrorCode::BadRequest, "unexpected message to open a stream")
            }
        }
    };
    // Each of these waits on the store, whose link may have gone silent.
    let reply = match tokio::time::timeout(within, answer).await {
        Ok(reply) => reply,
        Err(_) => {
            tracing::warn!("a request waited too long on the store");
            Message::refused(ErrorCode::Unavailable, STORE_UNAVAILABLE)
        }
    };
    let _ = write_frame(&mut send, &reply).await;
    let _ = send.finish();
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    /// The size of the future `f` returns, learnt without calling it.
    fn future_size3<A, B, C, F>(_: impl FnOnce(A, B, C) -> F) -> usize {
        size_of::<F>()
    }
    fn future_size5<A, B, C, D, E, F>(_: impl FnOnce(A, B, C, D, E) -> F) -> usize {
        size_of::<F>()
    }

    /// An idle agent keeps two tasks on the broker for as long as it is
    /// connected: its connection's and its session's. What they hold is
    /// memory per agent (the scale bench's figure), so the waits they do
    /// once (the handshake, the store) are boxed and these stay small: an
    /// unboxed store call would add about 3 KiB to every agent.
    #[test]
    fn an_idle_agents_tasks_stay_small() {
        let connection = future_size5(super::handle);
        let session = future_size3(super::dispatch);
        println!("connection task {connection} bytes, session task {session} bytes");
        assert!(
            connection <= CONNECTION_MOST,
            "connection task: {connection} bytes"
        );
        assert!(session <= SESSION_MOST, "session task: {session} bytes");
    }
    /// 928 and 1,752 bytes when written, with some room.
    const CONNECTION_MOST: usize = 1024;
    const SESSION_MOST: usize = 2048;
}
