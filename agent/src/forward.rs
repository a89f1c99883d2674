//! Local forwards: one TCP listener per app on 127.0.0.1, each connection
//! to it one tunnel stream to the broker.
//!
//! Listeners outlive connections: a port stays the same across reconnects
//! (and across runs, where it is free), and a TCP connection that arrives
//! while the agent is reconnecting waits a little for the session to come
//! back. Each stream is decided by the broker afresh.

use std::collections::BTreeMap;

use lanyard_proto::AppProtocol;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use lanyard_relay::{open_tunnel_with, Greeting, Meters, TunnelError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::state::StateDir;

/// Where the chosen ports are remembered between runs.
pub const PORTS_FILE: &str = "forwards.json";
/// How long a new local connection waits for the session to come back.
const WAIT_FOR_SESSION: Duration = Duration::from_secs(10);
/// How long to wait for the broker's answer to a stream.
pub const STREAM_ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// A local forward asked for on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub app: String,
    pub listen: SocketAddr,
}

impl std::str::FromStr for Forward {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (app, addr) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not APP=ADDRESS, e.g. hr-system=127.0.0.1:8080"))?;
        let listen = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an address like 127.0.0.1:8080"))?;
        if app.is_empty() {
            return Err(format!("{s:?} names no app"));
        }
        Ok(Self {
            app: app.to_owned(),
            listen,
        })
    }
}

/// Counters shared by all forwards (the stress tester reads them too).
#[derive(Debug, Default)]
pub struct Counters {
    pub streams_opened: AtomicU64,
    pub streams_refused: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    /// UDP datagrams dropped: too large for the connection, queued past a
    /// flow's room, or of no flow.
    pub datagrams_dropped: AtomicU64,
}

/// Opens one tunnel stream for `tcp` to `app` over `conn` and relays it;
/// `greeting` is what a local proxy puts around it (nothing for a forward).
pub async fn tunnel(
    conn: &quinn::Connection,
    app: &str,
    request_id: u64,
    tcp: TcpStream,
    counters: &Counters,
    greeting: Greeting<'_>,
) -> Result<(), TunnelError> {
    counters.streams_opened.fetch_add(1, Relaxed);
    let meters = Meters {
        inbound: &[&counters.bytes_received],
        outbound: &[&counters.bytes_sent],
    };
    let result = open_tunnel_with(
        conn,
        app,
        request_id,
        tcp,
        STREAM_ANSWER_TIMEOUT,
        meters,
        greeting,
    )
    .await;
    if result.as_ref().is_err_and(|e| e.refusal().is_some()) {
        counters.streams_refused.fetch_add(1, Relaxed);
    }
    result.map(|_| ())
}

/// What carrying a local connection in a tunnel stream needs: the
/// session's connection (while there is one), the counters, request ids
/// and where failures are reported. The forwards and the local proxy
/// share one.
#[derive(Clone)]
pub struct Streams {
    link: watch::Receiver<Link>,
    counters: Arc<Counters>,
    next_request: Arc<AtomicU64>,
    failures: mpsc::UnboundedSender<StreamFailed>,
}

/// Why a stream could not be carried: there is no session right now.
pub const NOT_CONNECTED: &str = "not connected to the broker right now; try again shortly";

impl Streams {
    /// The session's connection, waiting a little for one while the agent
    /// reconnects.
    pub async fn connection(&self) -> Option<quinn::Connection> {
        let mut link = self.link.clone();
        let waited = tokio::time::timeout(WAIT_FOR_SESSION, link.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(l)) => l.clone(),
            _ => None,
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// A new stream's request id.
    pub fn next_id(&self) -> u64 {
        self.next_request.fetch_add(1, Relaxed)
    }

    /// Reports a stream that could not be carried.
    pub fn failed(&self, app: &str, reason: String) {
        let _ = self.failures.send(StreamFailed {
            app: app.to_owned(),
            reason,
        });
    }

    /// Carries `tcp` to `app` in one tunnel stream over `conn`; a failure
    /// is reported (and returned, with the reason the person sees).
    pub async fn carry(
        &self,
        conn: &quinn::Connection,
        app: &str,
        tcp: TcpStream,
        greeting: Greeting<'_>,
    ) -> Result<(), TunnelError> {
        let result = tunnel(conn, app, self.next_id(), tcp, &self.counters, greeting).await;
        if let Err(e) = &result {
            self.failed(app, failure_reason(conn, e));
        }
        result
    }
}

/// Why a stream failed, as the person is told: the broker's reason when
/// it closed the connection, else the stream's own.
pub fn failure_reason(conn: &quinn::Connection, e: &TunnelError) -> String {
    match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(c)) => {
            format!(
                "closed by the broker: {}",
                String::from_utf8_lossy(&c.reason)
            )
        }
        _ => e.to_string(),
    }
}

/// A stream that could not be carried, for the person to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFailed {
    pub app: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for {app}: {source}")]
pub struct ListenError {
    pub app: String,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// The connection new streams go over, while there is one.
pub type Link = Option<quinn::Connection>;

/// The agent's listeners, and the connection they tunnel over.
pub struct Forwards {
    state: StateDir,
    explicit: bool,
    bound: BTreeMap<String, SocketAddr>,
    saved_ports: BTreeMap<String, u16>,
    link: watch::Sender<Link>,
    counters: Arc<Counters>,
    next_request: Arc<AtomicU64>,
    failures: mpsc::UnboundedSender<StreamFailed>,
    /// UDP flows' way back, and the connection whose datagrams are read.
    returns: Arc<crate::udp::Returns>,
    reading: std::sync::Mutex<Option<usize>>,
}

impl Forwards {
    /// Listeners for `explicit` forwards now, or (when none are given) one
    /// per allowed app as sessions name them. Failed streams go to
    /// `failures`.
    pub async fn new(
        state: StateDir,
        explicit: &[Forward],
        failures: mpsc::UnboundedSender<StreamFailed>,
    ) -> Result<Self, ListenError> {
        let saved_ports = state
            .read(PORTS_FILE)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut forwards = Self {
            state,
            explicit: !explicit.is_empty(),
            bound: BTreeMap::new(),
            saved_ports,
            link: watch::channel(None).0,
            counters: Arc::new(Counters::default()),
            next_request: Arc::new(AtomicU64::new(1)),
            failures,
            returns: Default::default(),
            reading: Default::default(),
        };
        // Explicit forwards are TCP; UDP apps get their ports by themselves.
        for f in explicit {
            forwards.bind(&f.app, f.listen, AppProtocol::Tcp).await?;
        }
        Ok(forwards)
    }

    /// New streams go over `conn` (or wait, with `None`); a new
    /// connection's datagrams are read for the UDP flows.
    pub fn set_link(&self, conn: Link) {
        if let Some(c) = &conn {
            if let Ok(mut reading) = self.reading.lock() {
                if *reading != Some(c.stable_id()) {
                    *reading = Some(c.stable_id());
                    tokio::spawn(crate::udp::read_datagrams(
                        c.clone(),
                        self.returns.clone(),
                        self.streams(),
                    ));
                }
            }
        }
        self.link.send_replace(conn);
    }

    /// A handle to open tunnel streams with, for the local proxy.
    pub fn streams(&self) -> Streams {
        Streams {
            link: self.link.subscribe(),
            counters: self.counters.clone(),
            next_request: self.next_request.clone(),
            failures: self.failures.clone(),
        }
    }

    /// Binds a listener (a UDP socket for a UDP app) for `app` at `addr`
    /// and serves it.
    async fn bind(
        &mut self,
        app: &str,
        addr: SocketAddr,
        protocol: AppProtocol,
    ) -> Result<SocketAddr, ListenError> {
        let listen_err = |source| ListenError {
            app: app.to_owned(),
            addr,
            source,
        };
        let local = match protocol {
            AppProtocol::Tcp => {
                let listener = TcpListener::bind(addr).await.map_err(listen_err)?;
                let local = listener.local_addr().map_err(listen_err)?;
                tokio::spawn(serve(app.to_owned(), listener, self.streams()));
                local
            }
            AppProtocol::Udp => {
                let socket = tokio::net::UdpSocket::bind(addr)
                    .await
                    .map_err(listen_err)?;
                let local = socket.local_addr().map_err(listen_err)?;
                tokio::spawn(crate::udp::serve(
                    app.to_owned(),
                    Arc::new(socket),
                    self.streams(),
                    self.returns.clone(),
                ));
                local
            }
        };
        self.bound.insert(app.to_owned(), local);
        self.saved_ports.insert(app.to_owned(), local.port());
        if let Ok(bytes) = serde_json::to_vec_pretty(&self.saved_ports) {
            let _ = self.state.write(PORTS_FILE, &bytes);
        }
        Ok(local)
    }

    /// Makes sure every allowed app has a listener (when forwards are not
    /// explicit); the ready forwards and the asked-for apps not allowed.
    pub async fn sync(
        &mut self,
        apps: &BTreeMap<String, AppProtocol>,
    ) -> Result<(Vec<(String, SocketAddr)>, Vec<String>), ListenError> {
        if !self.explicit {
            for (app, protocol) in apps {
                let protocol = *protocol;
                if self.bound.contains_key(app) {
                    continue;
                }
                let port = self.saved_ports.get(app).copied().unwrap_or(0);
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                match self.bind(app, addr, protocol).await {
                    Ok(_) => {}
                    // The remembered port is taken: any port will do.
                    Err(_) if port != 0 => {
                        self.bind(app, SocketAddr::from(([127, 0, 0, 1], 0)), protocol)
                            .await?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let ready = self
            .bound
            .iter()
            .filter(|(app, _)| apps.contains_key(*app))
            .map(|(app, addr)| (app.clone(), *addr))
            .collect();
        let not_allowed = self
            .bound
            .keys()
            .filter(|app| !apps.contains_key(*app))
            .cloned()
            .collect();
        Ok((ready, not_allowed))
    }
}

/// Accepts local connections for `app` and tunnels each one.
async fn serve(app: String, listener: TcpListener, streams: Streams) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of file descriptors or similar: do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let app = app.clone();
        let streams = streams.clone();
        tokio::spawn(async move {
            // Any open session will do: the broker decides every stream
            // and says why when it refuses one.
            let Some(conn) = streams.connection().await else {
                streams.failed(&app, NOT_CONNECTED.into());
                return;
            };
            let _ = streams.carry(&conn, &app, tcp, Greeting::default()).await;
        });
    }
}
