//! UDP forwards: a UDP app's local port on 127.0.0.1. Each local peer
//! address (a softphone's socket) is one flow: a tunnel stream opened and
//! decided like a TCP connection's, beside which the peer's datagrams go
//! as QUIC datagrams (`lanyard_proto::datagram`), and the app's answers
//! come back to the peer. The flow ends when the broker ends its stream
//! (the app's idle timeout, or a rule change), or the connection does; the
//! peer's next datagram opens a new one. A datagram larger than the
//! connection carries is dropped and counted, never split.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lanyard_proto::datagram;
use lanyard_relay::open_flow_stream;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::forward::{failure_reason, Streams, NOT_CONNECTED, STREAM_ANSWER_TIMEOUT};

/// Datagrams queued for a flow while it opens; more are dropped.
const QUEUE: usize = 64;
/// Flows (local peers) per forward at once.
const MAX_FLOWS: usize = 1024;
/// After a flow is refused, its peer's datagrams are dropped this long
/// before another is tried.
const HOLD_OFF: Duration = Duration::from_secs(5);

/// Where an app's answer on a flow goes: the forward's socket and the
/// local peer.
#[derive(Clone)]
struct Back {
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
}

/// Every live flow's way back, by connection and flow id.
#[derive(Default)]
pub struct Returns {
    by_flow: Mutex<HashMap<(usize, u64), Back>>,
}

impl Returns {
    fn get(&self, key: (usize, u64)) -> Option<Back> {
        self.by_flow.lock().ok()?.get(&key).cloned()
    }

    fn insert(&self, key: (usize, u64), back: Back) {
        if let Ok(mut m) = self.by_flow.lock() {
            m.insert(key, back);
        }
    }

    fn remove(&self, key: (usize, u64)) {
        if let Ok(mut m) = self.by_flow.lock() {
            m.remove(&key);
        }
    }
}

/// Reads `conn`'s datagrams and sends each to its flow's local peer, until
/// the connection ends.
pub async fn read_datagrams(conn: quinn::Connection, returns: Arc<Returns>, streams: Streams) {
    let key = conn.stable_id();
    while let Ok(d) = conn.read_datagram().await {
        let back = datagram::decode(&d).and_then(|(id, p)| Some((returns.get((key, id))?, p)));
        let sent = back.is_some_and(|(back, payload)| {
            let ok = back.socket.try_send_to(payload, back.peer).is_ok();
            if ok {
                let n = payload.len() as u64;
                streams.counters().bytes_received.fetch_add(n, Relaxed);
            }
            ok
        });
        if !sent {
            // Of no flow (ended meanwhile), or the local socket is full.
            streams.counters().datagrams_dropped.fetch_add(1, Relaxed);
        }
    }
}

/// Receives local datagrams for `app` and carries each peer's as a flow.
pub async fn serve(app: String, socket: Arc<UdpSocket>, streams: Streams, returns: Arc<Returns>) {
    let mut peers: HashMap<SocketAddr, mpsc::Sender<Bytes>> = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            // An ICMP error from an earlier send, or similar: go on.
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let mut payload = Bytes::copy_from_slice(&buf[..n]);
        if let Some(tx) = peers.get(&peer) {
            match tx.try_send(payload) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    streams.counters().datagrams_dropped.fetch_add(1, Relaxed);
                    continue;
                }
                // Its flow ended: a new one.
                Err(mpsc::error::TrySendError::Closed(p)) => {
                    peers.remove(&peer);
                    payload = p;
                }
            }
        }
        if peers.len() >= MAX_FLOWS {
            peers.retain(|_, tx| !tx.is_closed());
            if peers.len() >= MAX_FLOWS {
                streams.counters().datagrams_dropped.fetch_add(1, Relaxed);
                continue;
            }
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let _ = tx.try_send(payload);
        peers.insert(peer, tx);
        tokio::spawn(flow(
            app.clone(),
            Back {
                socket: socket.clone(),
                peer,
            },
            rx,
            streams.clone(),
            returns.clone(),
        ));
    }
}

/// Drops a refused peer's datagrams for a while.
async fn hold_off(rx: &mut mpsc::Receiver<Bytes>) {
    let _ = tokio::time::timeout(HOLD_OFF, async { while rx.recv().await.is_some() {} }).await;
}

/// One peer's flow: open it, then send its datagrams until it ends.
async fn flow(
    app: String,
    back: Back,
    mut rx: mpsc::Receiver<Bytes>,
    streams: Streams,
    returns: Arc<Returns>,
) {
    let Some(conn) = streams.connection().await else {
        streams.failed(&app, NOT_CONNECTED.into());
        return hold_off(&mut rx).await;
    };
    let counters = streams.counters();
    counters.streams_opened.fetch_add(1, Relaxed);
    let opened = open_flow_stream(&conn, &app, streams.next_id(), STREAM_ANSWER_TIMEOUT).await;
    let (mut send, mut recv) = match opened {
        Ok(s) => s,
        Err(e) => {
            if e.refusal().is_some() {
                counters.streams_refused.fetch_add(1, Relaxed);
            }
            streams.failed(&app, failure_reason(&conn, &e));
            return hold_off(&mut rx).await;
        }
    };
    let id = quinn::VarInt::from(send.id()).into_inner();
    let key = (conn.stable_id(), id);
    tracing::debug!(app = %app, peer = %back.peer, flow = id, "UDP flow opened");
    returns.insert(key, back);
    loop {
        tokio::select! {
            payload = rx.recv() => {
                let Some(payload) = payload else { break };
                let max = conn.max_datagram_size();
                if !datagram::fits(payload.len(), max) {
                    counters.datagrams_dropped.fetch_add(1, Relaxed);
                    tracing::debug!(app = %app, len = payload.len(), ?max, "datagram too large for the connection; dropped");
                    continue;
                }
                let len = payload.len() as u64;
                match conn.send_datagram(datagram::encode(id, &payload).into()) {
                    Ok(()) => {
                        counters.bytes_sent.fetch_add(len, Relaxed);
                    }
                    Err(_) => {
                        counters.datagrams_dropped.fetch_add(1, Relaxed);
                    }
                }
            }
            // The broker ends the flow by ending its stream.
            end = recv.read_chunk(64, true) => match end {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            },
        }
    }
    tracing::debug!(app = %app, flow = id, "UDP flow ended");
    returns.remove(key);
    let _ = send.finish();
}
