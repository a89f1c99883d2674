//! UDP flows: one local peer's datagrams to a UDP app.
//!
//! A flow opens as a tunnel stream does (`StreamOpen` for a UDP app,
//! decided by the same rules) and its stream stays open as the flow's
//! life: the flow id is the stream's id, and its datagrams travel as QUIC
//! datagrams (`lanyard_proto::datagram`). The broker relays them to the
//! app's UDP target from a socket of the flow's own and sends the app's
//! answers back on the same flow. A flow ends when the agent ends its
//! stream, after the app's idle timeout without a datagram either way, or
//! when a rule change no longer allows it (its stream is then reset with
//! the reason's code, as a stream's is).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lanyard_proto::{datagram, ErrorCode, Message};
use lanyard_relay::{code, write_frame};
use tokio::net::UdpSocket;

use super::stream::{deny, refuse, OpenStream, Services, APP_CONNECT_TIMEOUT};
use super::LiveSession;
use crate::clock::now_ms;
use crate::policy::decide_stream;

/// The largest datagram read from an app.
const MAX_DATAGRAM: usize = 64 * 1024;

/// One flow's app side, as the connection's datagram reader finds it.
struct FlowSocket {
    socket: Arc<UdpSocket>,
    /// When a datagram last went either way.
    last: Mutex<Instant>,
    /// Bytes sent to the app not yet added to the session's count.
    up: AtomicU64,
}

/// A session's UDP flows, by flow id.
#[derive(Default)]
pub struct Flows {
    by_id: Mutex<HashMap<u64, Arc<FlowSocket>>>,
    reading: AtomicBool,
}

impl Flows {
    fn get(&self, id: u64) -> Option<Arc<FlowSocket>> {
        self.by_id.lock().ok()?.get(&id).cloned()
    }

    fn insert(&self, id: u64, flow: Arc<FlowSocket>) {
        if let Ok(mut m) = self.by_id.lock() {
            m.insert(id, flow);
        }
    }

    fn remove(&self, id: u64) {
        if let Ok(mut m) = self.by_id.lock() {
            m.remove(&id);
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for Flows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flows").field("live", &self.len()).finish()
    }
}

/// A flow's stream as it arrived, with its app's rule.
pub struct Flow {
    pub app: String,
    pub request_id: u64,
    pub target: String,
    pub idle: Duration,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    pub started: Instant,
}

/// Reads the connection's datagrams and hands each to its flow's app
/// socket, until the connection ends. One per session, started with its
/// first flow.
async fn read_datagrams(conn: quinn::Connection, flows: Arc<Flows>, dropped: Arc<AtomicU64>) {
    while let Ok(d) = conn.read_datagram().await {
        let flow = datagram::decode(&d).and_then(|(id, payload)| Some((flows.get(id)?, payload)));
        let Some((flow, payload)) = flow else {
            dropped.fetch_add(1, Relaxed);
            continue;
        };
        match flow.socket.try_send(payload) {
            Ok(n) => {
                flow.up.fetch_add(n as u64, Relaxed);
                if let Ok(mut last) = flow.last.lock() {
                    *last = Instant::now();
                }
            }
            Err(_) => {
                dropped.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Binds a socket for the app at `target` and connects it there.
async fn app_socket(target: &str) -> std::io::Result<UdpSocket> {
    let addr = tokio::net::lookup_host(target)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("the name has no address"))?;
    let local: std::net::SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(addr).await?;
    Ok(socket)
}

/// Serves one flow of `session` to its end.
pub async fn serve(
    svc: Services<'_>,
    session: &LiveSession,
    flow: Flow,
    mut generation: tokio::sync::watch::Receiver<u64>,
) {
    let Flow {
        app,
        request_id,
        target,
        idle,
        mut send,
        mut recv,
        started,
    } = flow;
    let socket = match tokio::time::timeout(APP_CONNECT_TIMEOUT, app_socket(&target)).await {
        Ok(Ok(s)) => Arc::new(s),
        Ok(Err(e)) => {
            tracing::warn!(app = %app, target = %target, error = %e, "app unreachable");
            svc.metrics.deny("app_unreachable");
            let why = format!("{app} is not answering at the broker; try again or tell ICT");
            return refuse(&mut send, ErrorCode::Unavailable, why).await;
        }
        Err(_) => {
            svc.metrics.deny("app_unreachable");
            let why = format!("{app}'s address was not found within {APP_CONNECT_TIMEOUT:?}");
            return refuse(&mut send, ErrorCode::Unavailable, why).await;
        }
    };
    if let Err(d) = decide_stream(&svc.policy.current(), &session.subject(), &app, now_ms()) {
        return deny(svc, session, &mut send, &app, d).await;
    }
    let id = quinn::VarInt::from(send.id()).into_inner();
    let entry = Arc::new(FlowSocket {
        socket: socket.clone(),
        last: Mutex::new(Instant::now()),
        up: AtomicU64::new(0),
    });
    session.flows.insert(id, entry.clone());
    if !session.flows.reading.swap(true, Relaxed) {
        tokio::spawn(read_datagrams(
            session.conn.clone(),
            session.flows.clone(),
            svc.metrics.datagrams_dropped.clone(),
        ));
    }
    if write_frame(&mut send, &Message::StreamAccepted { request_id })
        .await
        .is_err()
    {
        session.flows.remove(id);
        return;
    }
    svc.metrics.stream_open_latency.observe(started.elapsed());
    svc.metrics.streams_allowed.fetch_add(1, Relaxed);
    svc.metrics.flows_opened.fetch_add(1, Relaxed);
    session.streams_total.fetch_add(1, Relaxed);
    session.open_streams.fetch_add(1, Relaxed);
    session.used(&app);
    let _open = OpenStream(session);
    let per_app = svc.metrics.app(&app);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let count_up = || {
        let n = entry.up.swap(0, Relaxed);
        session.bytes_up.fetch_add(n, Relaxed);
        svc.metrics.bytes_up.fetch_add(n, Relaxed);
        per_app.up.fetch_add(n, Relaxed);
    };
    let revoked = loop {
        count_up();
        let last = entry
            .last
            .lock()
            .map(|l| *l)
            .unwrap_or_else(|_| Instant::now());
        let idle_at = tokio::time::Instant::from_std(last + idle);
        tokio::select! {
            got = socket.recv(&mut buf) => {
                let Ok(n) = got else { break None };
                if let Ok(mut l) = entry.last.lock() {
                    *l = Instant::now();
                }
                let max = session.conn.max_datagram_size();
                if !datagram::fits(n, max) {
                    svc.metrics.datagrams_dropped.fetch_add(1, Relaxed);
                    tracing::debug!(app = %app, len = n, ?max, "datagram too large for the connection; dropped");
                    continue;
                }
                let out = datagram::encode(id, &buf[..n]);
                match session.conn.send_datagram(out.into()) {
                    Ok(()) => {
                        session.bytes_down.fetch_add(n as u64, Relaxed);
                        svc.metrics.bytes_down.fetch_add(n as u64, Relaxed);
                        per_app.down.fetch_add(n as u64, Relaxed);
                    }
                    Err(_) => {
                        svc.metrics.datagrams_dropped.fetch_add(1, Relaxed);
                    }
                }
            }
            // The agent ends the flow by ending its stream; it sends
            // nothing on it.
            chunk = recv.read_chunk(64, true) => match chunk {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break None,
            },
            _ = tokio::time::sleep_until(idle_at) => {
                let quiet = entry.last.lock().map(|l| l.elapsed()).unwrap_or(idle);
                if quiet >= idle {
                    tracing::debug!(app = %app, flow = id, "flow idle; ended");
                    let _ = send.finish();
                    break None;
                }
            }
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
    };
    session.flows.remove(id);
    count_up();
    if let Some(d) = revoked {
        let _ = send.reset(code(d.code()));
        let _ = recv.stop(code(d.code()));
        if !d.ends_session() {
            let reason = d.to_string();
            tracing::info!(session = %session.id, app = %app, reason = %reason, "UDP flow closed by the rules");
            svc.store
                .audit_denial(&session.username, "stream.close", &app, &reason)
                .await;
        }
    }
}
