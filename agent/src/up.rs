//! `lanyard-agent up`: keep a session with the broker and forward local
//! ports through it, reconnecting by itself.
//!
//! Local listeners outlive connections: a port stays the same across
//! reconnects, and a TCP connection that arrives while the agent is
//! reconnecting waits a little for the session to return. Each TCP
//! connection becomes one QUIC stream, decided by the broker afresh.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use lanyard_proto::session::{AgentControl, AgentEvent};
use lanyard_proto::{close, ErrorCode, Message};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::account::{self, agent_version, os_name, AccountError};
use crate::backoff::Backoff;
use crate::client::ClientError;
use crate::identity::{now_secs, Device, IdentityError, Tokens};
use crate::state::StateDir;
use crate::wire::{relay_after_answer, write_frame, Meters, StreamError};

pub const STATUS_FILE: &str = "up.json";
pub const PORTS_FILE: &str = "forwards.json";
/// How long a new local connection waits for the session to come back.
const WAIT_FOR_SESSION: Duration = Duration::from_secs(10);
/// How long to wait for the broker's answer to a stream.
const STREAM_ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a live session checks whether the certificate needs renewing.
const RENEWAL_CHECK: Duration = Duration::from_secs(3600);

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

#[derive(Debug, Clone)]
pub struct UpConfig {
    /// Explicit forwards; empty means one for every allowed app.
    pub forwards: Vec<Forward>,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Default for UpConfig {
    fn default() -> Self {
        Self {
            forwards: Vec::new(),
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(30),
        }
    }
}

/// What `up` reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpEvent {
    /// The session is open and these forwards are ready.
    Ready {
        session_id: String,
        forwards: Vec<(String, SocketAddr)>,
        not_allowed: Vec<String>,
    },
    /// The connection ended; another attempt follows after `retry_in`.
    Disconnected { reason: String, retry_in: Duration },
    /// A tunnel stream was refused or failed.
    StreamFailed { app: String, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("cannot listen on {addr} for {app}: {source}")]
    Listen {
        app: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("this device has been revoked: {0}")]
    Revoked(String),
    #[error("the sign-in can no longer be used: {0}; run `lanyard-agent login USERNAME`")]
    SignedOut(String),
    #[error("the broker refused this agent: {0}")]
    Refused(String),
}

/// What `lanyard-agent status` reads about a running `up`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpStatus {
    pub pid: u32,
    pub connected: bool,
    pub session_id: Option<String>,
    pub since: Option<u64>,
    pub forwards: BTreeMap<String, String>,
    pub last_error: Option<String>,
    pub reconnects: u64,
}

/// The session the listeners use, when there is one.
#[derive(Debug)]
struct Link {
    conn: quinn::Connection,
}

type LinkTx = watch::Sender<Option<Arc<Link>>>;

/// Counters shared by all forwards (the stress tester reads them too).
#[derive(Debug, Default)]
pub struct Counters {
    pub streams_opened: AtomicU64,
    pub streams_refused: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
}

/// Opens one tunnel stream for `tcp` to `app` over `conn` and relays it.
pub async fn tunnel(
    conn: &quinn::Connection,
    app: &str,
    request_id: u64,
    tcp: TcpStream,
    counters: &Counters,
) -> Result<(), StreamError> {
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| StreamError::Io(std::io::Error::other(e)))?;
    write_frame(
        &mut send,
        &Message::StreamOpen {
            app: app.to_owned(),
            request_id,
        },
    )
    .await?;
    counters.streams_opened.fetch_add(1, Relaxed);
    let result = relay_after_answer(
        tcp,
        &mut send,
        &mut recv,
        STREAM_ANSWER_TIMEOUT,
        Meters {
            inbound: &[&counters.bytes_received],
            outbound: &[&counters.bytes_sent],
        },
    )
    .await;
    if let Err(StreamError::Refused { .. }) = &result {
        counters.streams_refused.fetch_add(1, Relaxed);
    }
    result.map(|_| ())
}

struct Forwards {
    explicit: bool,
    bound: BTreeMap<String, SocketAddr>,
    saved_ports: BTreeMap<String, u16>,
}

type Failures = tokio::sync::mpsc::UnboundedSender<UpEvent>;

struct Runner {
    state: StateDir,
    config: UpConfig,
    link: LinkTx,
    forwards: Forwards,
    failures: Failures,
    counters: Arc<Counters>,
    next_request: Arc<AtomicU64>,
    status: UpStatus,
}

/// How one connection ended.
enum Ended {
    /// Try again after a backoff; `opened` if a session had been open.
    Retry {
        reason: String,
        opened: bool,
    },
    /// Try again at once, after refreshing the tokens.
    RefreshFirst {
        reason: String,
    },
    /// Try again at once (a renewed certificate is to be used).
    Again,
    Fatal(UpError),
}

fn ended_by_refusal(code: ErrorCode, message: String) -> Ended {
    match code {
        ErrorCode::Revoked => Ended::Fatal(UpError::Revoked(message)),
        ErrorCode::Unauthorized => Ended::RefreshFirst { reason: message },
        ErrorCode::AtCapacity | ErrorCode::Unavailable | ErrorCode::Internal => Ended::Retry {
            reason: message,
            opened: false,
        },
        _ => Ended::Fatal(UpError::Refused(message)),
    }
}

fn ended_by_close(conn: &quinn::Connection, opened: bool) -> Ended {
    match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(c)) => {
            let reason = String::from_utf8_lossy(&c.reason).into_owned();
            match u32::try_from(c.error_code.into_inner()).unwrap_or(u32::MAX) {
                close::DEVICE_REVOKED => Ended::Fatal(UpError::Revoked(reason)),
                // A renewed certificate may be waiting in the state dir:
                // the next attempt uses it, or stops if it too has expired.
                close::CERT_EXPIRED => Ended::Again,
                close::SIGNED_OUT => Ended::RefreshFirst { reason },
                _ => Ended::Retry { reason, opened },
            }
        }
        Some(e) => Ended::Retry {
            reason: e.to_string(),
            opened,
        },
        None => Ended::Retry {
            reason: "the session ended".into(),
            opened,
        },
    }
}

fn retry(e: impl std::fmt::Display) -> Ended {
    Ended::Retry {
        reason: e.to_string(),
        opened: false,
    }
}

/// An account error on an open connection: a refusal decides, anything
/// else is retried.
fn ended_by_account(e: AccountError) -> Ended {
    match e {
        AccountError::Client(ClientError::Refused { code, message }) => match code {
            ErrorCode::Unauthorized | ErrorCode::Forbidden => {
                Ended::Fatal(UpError::SignedOut(message))
            }
            other => ended_by_refusal(other, message),
        },
        AccountError::Identity(e) => Ended::Fatal(e.into()),
        other => retry(other),
    }
}

impl Runner {
    fn save_status(&self) {
        if let Ok(bytes) = serde_json::to_vec_pretty(&self.status) {
            let _ = self.state.write(STATUS_FILE, &bytes);
        }
    }

    /// Binds a listener for `app` at `addr` and serves it.
    async fn bind(&mut self, app: &str, addr: SocketAddr) -> Result<SocketAddr, UpError> {
        let listen_err = |source| UpError::Listen {
            app: app.to_owned(),
            addr,
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(listen_err)?;
        let local = listener.local_addr().map_err(listen_err)?;
        self.forwards.bound.insert(app.to_owned(), local);
        self.forwards
            .saved_ports
            .insert(app.to_owned(), local.port());
        if let Ok(bytes) = serde_json::to_vec_pretty(&self.forwards.saved_ports) {
            let _ = self.state.write(PORTS_FILE, &bytes);
        }
        tokio::spawn(serve_forward(
            app.to_owned(),
            listener,
            self.link.subscribe(),
            self.counters.clone(),
            self.next_request.clone(),
            self.failures.clone(),
        ));
        Ok(local)
    }

    /// Makes sure every allowed app has a listener (when forwards are not
    /// explicit); the ready forwards and the asked-for apps not allowed.
    async fn sync_forwards(
        &mut self,
        apps: &BTreeSet<String>,
    ) -> Result<(Vec<(String, SocketAddr)>, Vec<String>), UpError> {
        if !self.forwards.explicit {
            for app in apps {
                if self.forwards.bound.contains_key(app) {
                    continue;
                }
                let port = self.forwards.saved_ports.get(app).copied().unwrap_or(0);
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                match self.bind(app, addr).await {
                    Ok(_) => {}
                    // The remembered port is taken: any port will do.
                    Err(_) if port != 0 => {
                        self.bind(app, SocketAddr::from(([127, 0, 0, 1], 0)))
                            .await?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let ready = self
            .forwards
            .bound
            .iter()
            .filter(|(app, _)| apps.contains(*app))
            .map(|(app, addr)| (app.clone(), *addr))
            .collect();
        let not_allowed = self
            .forwards
            .bound
            .keys()
            .filter(|app| !apps.contains(*app))
            .cloned()
            .collect();
        Ok((ready, not_allowed))
    }

    async fn ready(
        &mut self,
        session_id: &str,
        apps: BTreeSet<String>,
        conn: &quinn::Connection,
    ) -> Result<UpEvent, UpError> {
        let (forwards, not_allowed) = self.sync_forwards(&apps).await?;
        self.link
            .send_replace(Some(Arc::new(Link { conn: conn.clone() })));
        self.status.connected = true;
        self.status.session_id = Some(session_id.to_owned());
        self.status.since.get_or_insert(now_secs());
        self.status.forwards = forwards
            .iter()
            .map(|(a, addr)| (a.clone(), addr.to_string()))
            .collect();
        self.save_status();
        Ok(UpEvent::Ready {
            session_id: session_id.to_owned(),
            forwards,
            not_allowed,
        })
    }

    /// One connection: connect, renew or refresh if due, open the session,
    /// serve it until it ends.
    async fn connection(
        &mut self,
        refresh_first: bool,
        report: &(dyn Fn(UpEvent) + Send + Sync),
    ) -> Ended {
        let mut device = match self.state.device() {
            Ok(d) => d,
            Err(e) => return Ended::Fatal(e.into()),
        };
        let mut tokens = match self.state.tokens() {
            Ok(Some(t)) => t,
            Ok(None) => return Ended::Fatal(IdentityError::NotSignedIn.into()),
            Err(e) => return Ended::Fatal(e.into()),
        };
        if now_secs() >= device.enrolment.cert_expires_at {
            return Ended::Fatal(UpError::Revoked(
                "the device certificate has expired; ask ICT for a new enrolment code".into(),
            ));
        }
        let (_endpoint, conn) = match account::connect(&device).await {
            Ok(c) => c,
            Err(e) => return retry(e),
        };
        if device.needs_renewal(now_secs()) {
            match account::renew(&self.state, &device, &conn).await {
                Ok(_) => {
                    conn.close(close::NORMAL.into(), b"renewed");
                    return Ended::Again;
                }
                Err(e) => {
                    if let Ended::Fatal(f) = ended_by_account(e) {
                        return Ended::Fatal(f);
                    }
                }
            }
        }
        if refresh_first || tokens.needs_refresh(now_secs(), &device.thumbprint_hex()) {
            match account::refresh(&self.state, &device, &conn, &tokens).await {
                Ok(t) => tokens = t,
                Err(e) => return ended_by_account(e),
            }
        }
        let ended = self.session(&mut device, &mut tokens, &conn, report).await;
        self.link.send_replace(None);
        self.status.connected = false;
        self.status.session_id = None;
        conn.close(close::NORMAL.into(), b"agent stopping");
        ended
    }

    async fn session(
        &mut self,
        device: &mut Device,
        tokens: &mut Tokens,
        conn: &quinn::Connection,
        report: &(dyn Fn(UpEvent) + Send + Sync),
    ) -> Ended {
        let (mut send, mut recv) = match conn.open_bi().await {
            Ok(s) => s,
            Err(e) => return retry(e),
        };
        let mut ctl = AgentControl::new(tokens.access_token.clone(), agent_version(), os_name());
        let mut opened = false;
        let mut revoked: Option<String> = None;
        let refresh_at = |t: &Tokens| {
            let life = t.expires_at.saturating_sub(t.issued_at);
            Duration::from_secs((t.issued_at + life * 2 / 3).saturating_sub(now_secs()))
        };
        let mut next_refresh = tokio::time::Instant::now() + refresh_at(tokens);
        let mut next_renewal_check = tokio::time::Instant::now() + RENEWAL_CHECK;
        loop {
            if let Some(bytes) = ctl.poll_transmit() {
                if let Err(e) = send.write_all(&bytes).await {
                    return if opened {
                        ended_by_close(conn, true)
                    } else {
                        retry(e)
                    };
                }
            }
            while let Some(event) = ctl.poll_event() {
                match event {
                    AgentEvent::Welcome { session_id, apps } => {
                        opened = true;
                        let apps = apps.into_iter().map(|a| a.name).collect();
                        match self.ready(&session_id, apps, conn).await {
                            Ok(e) => report(e),
                            Err(e) => return Ended::Fatal(e),
                        }
                    }
                    AgentEvent::AppsChanged { apps } => {
                        let apps = apps.into_iter().map(|a| a.name).collect();
                        let session_id = self.status.session_id.clone().unwrap_or_default();
                        match self.ready(&session_id, apps, conn).await {
                            Ok(e) => report(e),
                            Err(e) => return Ended::Fatal(e),
                        }
                    }
                    AgentEvent::Refused { code, message } => {
                        return ended_by_refusal(code, message)
                    }
                    AgentEvent::Revoked { reason } => revoked = Some(reason),
                    AgentEvent::Pong { .. } => {}
                }
            }
            if revoked.is_some() || ctl.is_closed() {
                // The close code says what to do; the reason came first.
                let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
                return match ended_by_close(conn, opened) {
                    Ended::Retry { reason, opened } => Ended::Retry {
                        reason: revoked.unwrap_or(reason),
                        opened,
                    },
                    other => other,
                };
            }
            tokio::select! {
                chunk = recv.read_chunk(4096, true) => match chunk {
                    Ok(Some(c)) => {
                        if let Err(e) = ctl.handle_bytes(&c.bytes) {
                            conn.close(close::PROTOCOL.into(), e.to_string().as_bytes());
                            return retry(e);
                        }
                    }
                    Ok(None) | Err(_) => {
                        let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
                        return ended_by_close(conn, opened);
                    }
                },
                _ = tokio::time::sleep_until(next_refresh), if opened => {
                    match account::refresh(&self.state, device, conn, tokens).await {
                        Ok(t) => {
                            *tokens = t;
                            next_refresh = tokio::time::Instant::now() + refresh_at(tokens);
                        }
                        Err(e) => match ended_by_account(e) {
                            Ended::Fatal(f) => return Ended::Fatal(f),
                            _ => next_refresh = tokio::time::Instant::now() + Duration::from_secs(5),
                        },
                    }
                }
                _ = tokio::time::sleep_until(next_renewal_check), if opened => {
                    next_renewal_check = tokio::time::Instant::now() + RENEWAL_CHECK;
                    if device.needs_renewal(now_secs()) {
                        // Used from the next connection on.
                        match account::renew(&self.state, device, conn).await {
                            Ok(d) => *device = d,
                            Err(e) => tracing::warn!(error = %e, "certificate renewal failed; will try again"),
                        }
                    }
                }
            }
        }
    }
}

/// Runs `up` until `shutdown` resolves (Ok) or the agent can go no further
/// (Err: revoked, signed out, refused). `report` hears every event.
pub async fn run(
    state: StateDir,
    config: UpConfig,
    report: impl Fn(UpEvent) + Send + Sync + 'static,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), UpError> {
    // Fail early, before any socket: the device and the sign-in exist.
    state.device()?;
    state.tokens()?.ok_or(IdentityError::NotSignedIn)?;
    let saved_ports = state
        .read(PORTS_FILE)
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let (failures, mut failed) = tokio::sync::mpsc::unbounded_channel();
    let mut runner = Runner {
        forwards: Forwards {
            explicit: !config.forwards.is_empty(),
            bound: BTreeMap::new(),
            saved_ports,
        },
        state,
        link: watch::channel(None).0,
        failures,
        counters: Arc::new(Counters::default()),
        next_request: Arc::new(AtomicU64::new(1)),
        status: UpStatus {
            pid: std::process::id(),
            ..UpStatus::default()
        },
        config,
    };
    for f in runner.config.forwards.clone() {
        runner.bind(&f.app, f.listen).await?;
    }
    let report: Arc<dyn Fn(UpEvent) + Send + Sync> = Arc::new(report);
    {
        let report = report.clone();
        tokio::spawn(async move {
            while let Some(e) = failed.recv().await {
                report(e);
            }
        });
    }
    let mut backoff = Backoff::new(runner.config.backoff_base, runner.config.backoff_cap);
    let mut refresh_first = false;
    let mut refreshes_in_a_row = 0;
    tokio::pin!(shutdown);
    let result = loop {
        let ended = tokio::select! {
            e = runner.connection(refresh_first, &*report) => e,
            _ = &mut shutdown => break Ok(()),
        };
        refresh_first = false;
        let reason = match ended {
            Ended::Fatal(e) => break Err(e),
            Ended::Again => continue,
            Ended::RefreshFirst { reason } => {
                refreshes_in_a_row += 1;
                if refreshes_in_a_row > 2 {
                    break Err(UpError::SignedOut(reason));
                }
                refresh_first = true;
                reason
            }
            Ended::Retry { reason, opened } => {
                refreshes_in_a_row = 0;
                if opened {
                    backoff.reset();
                }
                reason
            }
        };
        let delay = backoff.next_delay();
        runner.status.reconnects += 1;
        runner.status.last_error = Some(reason.clone());
        runner.save_status();
        report(UpEvent::Disconnected {
            reason,
            retry_in: delay,
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut shutdown => break Ok(()),
        }
    };
    let _ = runner.state.remove(STATUS_FILE);
    result
}

async fn serve_forward(
    app: String,
    listener: TcpListener,
    link: watch::Receiver<Option<Arc<Link>>>,
    counters: Arc<Counters>,
    next_request: Arc<AtomicU64>,
    failures: Failures,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of file descriptors or similar: do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let app = app.clone();
        let mut link = link.clone();
        let counters = counters.clone();
        let failures = failures.clone();
        let id = next_request.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            // Any open session will do: the broker decides every stream
            // and says why when it refuses one.
            let wanted = |l: &Option<Arc<Link>>| l.is_some();
            let current = match tokio::time::timeout(WAIT_FOR_SESSION, link.wait_for(wanted)).await
            {
                Ok(Ok(l)) => l.clone(),
                _ => None,
            };
            let Some(current) = current else {
                let _ = failures.send(UpEvent::StreamFailed {
                    app,
                    reason: "not connected to the broker right now; try again shortly".into(),
                });
                return;
            };
            if let Err(e) = tunnel(&current.conn, &app, id, tcp, &counters).await {
                let reason = match current.conn.close_reason() {
                    Some(quinn::ConnectionError::ApplicationClosed(c)) => {
                        format!(
                            "closed by the broker: {}",
                            String::from_utf8_lossy(&c.reason)
                        )
                    }
                    _ => e.to_string(),
                };
                let _ = failures.send(UpEvent::StreamFailed { app, reason });
            }
        });
    }
}
