//! A UDP relay on 127.0.0.1 that stands between agents and the broker and
//! makes the path between them bad on purpose: delay, jitter, loss,
//! reordering, duplication, a black hole for a while, and a change of the
//! agent's source address as the broker sees it (a new upstream socket, as
//! when a laptop's NAT binding or network changes).
//!
//! Agents are enrolled with the relay's address (`--public-addr`); each
//! client address the relay hears from gets an upstream socket of its own,
//! so the broker sees one address per agent endpoint, as through a NAT.
//! Faults are changed at run time through the [`Relay`] handle; every
//! random choice comes from a seeded generator, so a run is repeatable
//! packet for packet (given the same packets).
//!
//! It runs on a runtime of its own, so the blocking tests can drive it.

#![allow(clippy::unwrap_used)] // a test tool: a failed unwrap is a failed test

use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// How the path behaves; each direction is impaired the same way.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Added to every packet, each way (the round trip gains twice this).
    pub delay: Duration,
    /// A further delay, uniform in `[0, jitter]`, drawn per packet.
    pub jitter: Duration,
    /// Chance that a packet is dropped, in `[0, 1]`.
    pub loss: f64,
    /// Chance that a packet is held back by `reorder_by`, so that later
    /// ones overtake it.
    pub reorder: f64,
    pub reorder_by: Duration,
    /// Chance that a packet is delivered twice.
    pub duplicate: f64,
}

/// A tiny xorshift64* generator: repeatable, and enough for coin flips.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // Zero is the one state xorshift never leaves.
        Self(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What the relay counts.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Datagrams that arrived, either way.
    pub received: u64,
    /// Datagrams dropped by `loss`.
    pub lost: u64,
    /// Datagrams dropped by a black hole.
    pub swallowed: u64,
    /// Extra copies sent by `duplicate`.
    pub duplicated: u64,
    /// Datagrams held back by `reorder`.
    pub reordered: u64,
}

struct State {
    faults: Faults,
    hole_until: Option<Instant>,
    rng: XorShift,
    upstream: Option<SocketAddr>,
    /// Bumped by [`Relay::rebind`]: paths made before it are replaced.
    generation: u64,
    counts: Counts,
    /// Connection attempts: a client address first heard sending a QUIC
    /// Initial packet, and when.
    attempts: Vec<(Instant, SocketAddr)>,
}

/// What becomes of one datagram.
enum Fate {
    Drop,
    Send { after: Vec<Duration> },
}

impl State {
    fn fate(&mut self, now: Instant) -> Fate {
        self.counts.received += 1;
        if self.hole_until.is_some_and(|until| now < until) {
            self.counts.swallowed += 1;
            return Fate::Drop;
        }
        let f = self.faults;
        if f.loss > 0.0 && self.rng.unit() < f.loss {
            self.counts.lost += 1;
            return Fate::Drop;
        }
        let mut delay = f.delay + f.jitter.mul_f64(self.rng.unit());
        if f.reorder > 0.0 && self.rng.unit() < f.reorder {
            self.counts.reordered += 1;
            delay += f.reorder_by;
        }
        let mut after = vec![delay];
        if f.duplicate > 0.0 && self.rng.unit() < f.duplicate {
            self.counts.duplicated += 1;
            after.push(delay + f.jitter.mul_f64(self.rng.unit()));
        }
        Fate::Send { after }
    }
}

/// Whether `packet` is a QUIC version 1 Initial (long header, type 0).
fn is_initial(packet: &[u8]) -> bool {
    packet
        .first()
        .is_some_and(|b| b & 0x80 != 0 && (b >> 4) & 0x03 == 0)
}

/// Datagrams on their way out of one socket, each at its own time; equal
/// times leave in the order they came.
#[derive(Clone)]
struct Pipe {
    tx: mpsc::UnboundedSender<(Instant, SocketAddr, Vec<u8>)>,
}

struct Queued {
    at: tokio::time::Instant,
    seq: u64,
    to: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    // Reversed: the heap's top is the earliest.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl Pipe {
    fn new(socket: Arc<UdpSocket>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, SocketAddr, Vec<u8>)>();
        tokio::spawn(async move {
            let mut heap = BinaryHeap::<Queued>::new();
            let mut seq = 0u64;
            loop {
                let next = heap.peek().map(|q| q.at);
                tokio::select! {
                    got = rx.recv() => {
                        let Some((at, to, data)) = got else { return };
                        seq += 1;
                        heap.push(Queued { at: at.into(), seq, to, data });
                    }
                    _ = async { tokio::time::sleep_until(next.unwrap()).await }, if next.is_some() => {
                        let now = tokio::time::Instant::now();
                        while heap.peek().is_some_and(|q| q.at <= now) {
                            let q = heap.pop().unwrap();
                            let _ = socket.send_to(&q.data, q.to).await;
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    fn send(&self, at: Instant, to: SocketAddr, data: Vec<u8>) {
        let _ = self.tx.send((at, to, data));
    }
}

/// One client address's way to the broker.
struct Path {
    generation: u64,
    out: Pipe,
    reader: tokio::task::JoinHandle<()>,
}

/// The relay; dropping it stops it.
pub struct Relay {
    /// Where agents send: 127.0.0.1 and a port of the relay's own.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Relay {
    /// A relay listening on 127.0.0.1 (port 0), with no faults and no
    /// upstream yet: packets are dropped until [`set_upstream`](Self::set_upstream).
    pub fn start(seed: u64) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Mutex::new(State {
            faults: Faults::default(),
            hole_until: None,
            rng: XorShift::new(seed),
            upstream: None,
            generation: 0,
            counts: Counts::default(),
            attempts: Vec::new(),
        }));
        let down = runtime
            .block_on(UdpSocket::bind("127.0.0.1:0"))
            .map(Arc::new)
            .unwrap();
        let addr = down.local_addr().unwrap();
        runtime.spawn(serve(down, state.clone()));
        Relay {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Where packets from agents go (the broker's QUIC address).
    pub fn set_upstream(&self, addr: SocketAddr) {
        self.with(|s| s.upstream = Some(addr));
    }

    pub fn set_faults(&self, faults: Faults) {
        self.with(|s| s.faults = faults);
    }

    pub fn faults(&self) -> Faults {
        self.with(|s| s.faults)
    }

    /// Drops every packet, both ways, for `span` from now.
    pub fn black_hole(&self, span: Duration) {
        self.with(|s| s.hole_until = Some(Instant::now() + span));
    }

    /// Ends a black hole now.
    pub fn restore(&self) {
        self.with(|s| s.hole_until = None);
    }

    /// Moves every agent to a new source address as the broker sees it:
    /// their next packets go out of new upstream sockets, and the old ones
    /// are closed (whatever the broker sends there is lost).
    pub fn rebind(&self) {
        self.with(|s| s.generation += 1);
    }

    pub fn counts(&self) -> Counts {
        self.with(|s| s.counts.clone())
    }

    /// Every connection attempt seen so far: when, and from which address.
    pub fn attempts(&self) -> Vec<(Instant, SocketAddr)> {
        self.with(|s| s.attempts.clone())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Reads from agents and sends each datagram on (or not) through its
/// client's path; starts a path, and its reader of the broker's answers,
/// for each new client address and again after a rebind.
async fn serve(down: Arc<UdpSocket>, state: Arc<Mutex<State>>) {
    let back = Pipe::new(down.clone());
    let mut paths: HashMap<SocketAddr, Path> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, client)) = down.recv_from(&mut buf).await else {
            continue;
        };
        let data = &buf[..n];
        let now = Instant::now();
        let (fate, upstream, generation) = {
            let mut s = state.lock().unwrap();
            if is_initial(data) && !s.attempts.iter().any(|(_, a)| *a == client) {
                s.attempts.push((now, client));
            }
            (s.fate(now), s.upstream, s.generation)
        };
        let Some(upstream) = upstream else { continue };
        let stale = paths
            .get(&client)
            .is_none_or(|p| p.generation != generation);
        if stale {
            if let Some(old) = paths.remove(&client) {
                old.reader.abort();
            }
            let Ok(socket) = UdpSocket::bind("127.0.0.1:0").await else {
                continue;
            };
            let socket = Arc::new(socket);
            let reader = tokio::spawn(answers(socket.clone(), client, back.clone(), state.clone()));
            paths.insert(
                client,
                Path {
                    generation,
                    out: Pipe::new(socket),
                    reader,
                },
            );
        }
        if let Fate::Send { after } = fate {
            let out = &paths[&client].out;
            for delay in after {
                out.send(now + delay, upstream, data.to_vec());
            }
        }
    }
}

/// The broker's datagrams to one client path, sent back to the client.
async fn answers(socket: Arc<UdpSocket>, client: SocketAddr, back: Pipe, state: Arc<Mutex<State>>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, _)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let now = Instant::now();
        let fate = state.lock().unwrap().fate(now);
        if let Fate::Send { after } = fate {
            for delay in after {
                back.send(now + delay, client, buf[..n].to_vec());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_repeats_from_a_seed_and_stays_in_range() {
        let a: Vec<u64> = (0..5)
            .scan(XorShift::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..5)
            .scan(XorShift::new(7), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        let mut r = XorShift::new(0);
        let draws: Vec<f64> = (0..10_000).map(|_| r.unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((0.45..0.55).contains(&mean), "{mean}");
    }

    #[test]
    fn datagrams_are_delayed_dropped_and_duplicated_as_set() {
        let broker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        broker
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let relay = Relay::start(1);
        relay.set_upstream(broker.local_addr().unwrap());
        let agent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        agent
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 64];

        // A delay, both ways.
        relay.set_faults(Faults {
            delay: Duration::from_millis(50),
            ..Faults::default()
        });
        let sent = Instant::now();
        agent.send_to(b"hello", relay.addr).unwrap();
        let (n, from) = broker.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert!(sent.elapsed() >= Duration::from_millis(50));
        broker.send_to(b"back", from).unwrap();
        let (n, _) = agent.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"back");
        assert!(sent.elapsed() >= Duration::from_millis(100));

        // Everything lost, then everything twice.
        relay.set_faults(Faults {
            loss: 1.0,
            ..Faults::default()
        });
        agent.send_to(b"gone", relay.addr).unwrap();
        assert!(broker.recv_from(&mut buf).is_err());
        relay.set_faults(Faults {
            duplicate: 1.0,
            ..Faults::default()
        });
        agent.send_to(b"twice", relay.addr).unwrap();
        for _ in 0..2 {
            let (n, _) = broker.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"twice");
        }

        // A black hole, then a new source address after a rebind.
        relay.set_faults(Faults::default());
        relay.black_hole(Duration::from_secs(60));
        agent.send_to(b"hole", relay.addr).unwrap();
        assert!(broker.recv_from(&mut buf).is_err());
        relay.restore();
        relay.rebind();
        agent.send_to(b"moved", relay.addr).unwrap();
        let (n, moved) = broker.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"moved");
        assert_ne!(moved, from, "the broker sees a new address");
        let c = relay.counts();
        assert_eq!((c.lost, c.swallowed, c.duplicated), (1, 1, 1), "{c:?}");
    }
}
