//! One tunnel stream: decided when it opens, connected to its app, relayed,
//! and decided again on every rule change while it relays.
//!
//! The stream subscribes to rule changes before it decides, and decides
//! again once the app has answered, so a revocation made while the app was
//! connecting is not missed.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use lanyard_proto::{AppProtocol, ErrorCode, Message};
use lanyard_relay::{code, relay, write_frame, Meters};
use tokio::net::TcpStream;

use super::LiveSession;
use crate::clock::now_ms;
use crate::metrics::Metrics;
use crate::policy::snapshot::PolicyCache;
use crate::policy::{decide_stream, Deny};
use crate::store::Store;

/// Time allowed to connect to an app.
pub const APP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Denied streams audited per session; more are counted, not audited, so
/// that a misbehaving agent cannot flood the audit log.
pub const AUDITED_DENIALS_PER_SESSION: u64 = 20;

/// What a tunnel stream reads and reports to.
#[derive(Clone, Copy)]
pub struct Services<'a> {
    pub policy: &'a PolicyCache,
    pub metrics: &'a Metrics,
    pub store: &'a Store,
}

/// A tunnel stream as it arrived: its `StreamOpen` and its two halves.
pub struct Opened {
    pub app: String,
    pub request_id: u64,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
}

/// Answers a stream with a refusal, then ends it (best effort).
pub(super) async fn refuse(send: &mut quinn::SendStream, code: ErrorCode, message: String) {
    let _ = write_frame(send, &Message::refused(code, message)).await;
    let _ = send.finish();
}

/// Serves one tunnel stream of `session` to its end.
pub async fn serve(svc: Services<'_>, session: &LiveSession, opened: Opened) {
    let Opened {
        app,
        request_id,
        mut send,
        mut recv,
    } = opened;
    let started = Instant::now();
    let mut generation = svc.policy.subscribe();
    let decided = decide_stream(&svc.policy.current(), &session.subject(), &app, now_ms())
        .map(|rule| (rule.target.clone(), rule.protocol, rule.flow_idle));
    let (target, protocol, flow_idle) = match decided {
        Ok(t) => t,
        Err(d) => return deny(svc, session, &mut send, &app, d).await,
    };
    if protocol == AppProtocol::Udp {
        let flow = super::flow::Flow {
            app,
            request_id,
            target,
            idle: flow_idle,
            send,
            recv,
            started,
        };
        return super::flow::serve(svc, session, flow, generation).await;
    }
    let tcp = match tokio::time::timeout(APP_CONNECT_TIMEOUT, TcpStream::connect(&target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(app = %app, target = %target, error = %e, "app unreachable");
            svc.metrics.deny("app_unreachable");
            let why = format!("{app} is not answering at the broker; try again or tell ICT");
            return refuse(&mut send, ErrorCode::Unavailable, why).await;
        }
        Err(_) => {
            svc.metrics.deny("app_unreachable");
            let why = format!("{app} did not answer within {APP_CONNECT_TIMEOUT:?}");
            return refuse(&mut send, ErrorCode::Unavailable, why).await;
        }
    };
    // The rules may have changed while the app was connecting.
    if let Err(d) = decide_stream(&svc.policy.current(), &session.subject(), &app, now_ms()) {
        return deny(svc, session, &mut send, &app, d).await;
    }
    if write_frame(&mut send, &Message::StreamAccepted { request_id })
        .await
        .is_err()
    {
        return;
    }
    svc.metrics.stream_open_latency.observe(started.elapsed());
    svc.metrics.streams_allowed.fetch_add(1, Relaxed);
    session.streams_total.fetch_add(1, Relaxed);
    session.open_streams.fetch_add(1, Relaxed);
    session.used(&app);
    let _open = OpenStream(session);
    let revoked = {
        let per_app = svc.metrics.app(&app);
        let inbound = [&session.bytes_up, &svc.metrics.bytes_up, &per_app.up];
        let outbound = [&session.bytes_down, &svc.metrics.bytes_down, &per_app.down];
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
                    let policy = svc.policy.current();
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
            svc.store
                .audit_denial(&session.username, "stream.close", &app, &reason)
                .await;
        }
    }
}

/// Refuses a stream the rules deny; a denial that ends the session ends
/// its connection too.
pub(super) async fn deny(
    svc: Services<'_>,
    session: &LiveSession,
    send: &mut quinn::SendStream,
    app: &str,
    d: Deny,
) {
    let reason = d.to_string();
    svc.metrics.deny(d.label());
    refuse(send, d.code(), reason.clone()).await;
    if d.ends_session() {
        session.close(d.close_code(), &reason);
    }
    let denials = session.denied_streams.fetch_add(1, Relaxed) + 1;
    if denials <= AUDITED_DENIALS_PER_SESSION {
        svc.store
            .audit_denial(&session.username, "stream.open", app, &reason)
            .await;
    }
}

/// Decrements a session's open-stream count however the stream ends.
pub(super) struct OpenStream<'a>(pub(super) &'a LiveSession);

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Relaxed);
    }
}
