//! `lanyard-agent up`: keep a session with the broker and forward local
//! ports through it ([`crate::forward`]), reconnecting by itself.
//!
//! The session's timing (refresh the sign-in at two thirds of the token's
//! life, renew the certificate at half its life, give up on an unanswered
//! hello) is the `AgentControl` machine's; what to do when a connection
//! ends is `lanyard_proto::reconnect`'s. This file only drives them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use lanyard_proto::close;
use lanyard_proto::reconnect::{Addresses, Ending, Next, Redial, Stop};
use lanyard_proto::session::{AgentControl, AgentEvent, Lifetimes, Millis};
use lanyard_proto::{AppProtocol, ErrorCode};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::account::{self, agent_version, os_name, AccountError};
use crate::backoff::Backoff;
use crate::client::ClientError;
pub use crate::forward::{Forward, PORTS_FILE};
use crate::forward::{Forwards, ListenError};
use crate::identity::{now_secs, Device, IdentityError, Tokens, TOKENS_FILE};
pub use crate::proxy::{pac_url, ProxyAt};
use crate::proxy::{Catalog, Proxy};
use crate::state::StateDir;

pub const STATUS_FILE: &str = "up.json";
/// Why the sign-in on this device was ended at the broker, when it was.
pub const ENDED_FILE: &str = "sign-in-ended.json";
/// How long a stopping agent waits for its close to reach the broker.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct UpConfig {
    /// Explicit forwards; empty means one for every allowed app.
    pub forwards: Vec<Forward>,
    /// The local proxy (off unless asked for).
    pub proxy: ProxyAt,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Default for UpConfig {
    fn default() -> Self {
        Self {
            forwards: Vec::new(),
            proxy: ProxyAt::Off,
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
        /// Where the local proxy listens (its PAC file is [`pac_url`]).
        proxy: Option<SocketAddr>,
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
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("{0}; ask ICT for a new enrolment code")]
    Revoked(Stop),
    /// The person must sign in again on this device.
    #[error("{0}")]
    SignedOut(Stop),
    #[error("{0}")]
    Refused(Stop),
}

impl From<Stop> for UpError {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::DeviceRevoked(_) | Stop::CertificateExpired(_) => UpError::Revoked(stop),
            Stop::SignInEnded(_) => UpError::SignedOut(stop),
            Stop::Refused(_) => UpError::Refused(stop),
        }
    }
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
    /// The local proxy's address and its PAC file's URL.
    #[serde(default)]
    pub proxy: Option<String>,
    #[serde(default)]
    pub pac: Option<String>,
}

/// Why the sign-in on this device was ended (kept for `status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignInEnded {
    pub username: String,
    pub reason: String,
    pub at: u64,
}

fn now_ms() -> Millis {
    now_secs().saturating_mul(1000)
}

/// How one connection ended: something the reconnect decision judges, or
/// a local failure that ends `up`.
enum Ended {
    Judge { ending: Ending, had_session: bool },
    Fatal(UpError),
}

fn lost(e: impl std::fmt::Display) -> Ended {
    Ended::Judge {
        ending: Ending::Lost {
            reason: e.to_string(),
        },
        had_session: false,
    }
}

/// How the broker closed `conn`, as the reconnect decision reads it.
fn closing(conn: &quinn::Connection) -> Ending {
    match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(c)) => Ending::Closed {
            code: u32::try_from(c.error_code.into_inner()).unwrap_or(u32::MAX),
            reason: String::from_utf8_lossy(&c.reason).into_owned(),
        },
        // Nothing heard for the idle timeout: the network or the broker is
        // gone, and `status` says so.
        Some(quinn::ConnectionError::TimedOut) => Ending::Lost {
            reason: "cannot reach the broker: nothing heard from it within the idle timeout".into(),
        },
        Some(e) => Ending::Lost {
            reason: e.to_string(),
        },
        None => Ending::Lost {
            reason: "the session ended".into(),
        },
    }
}

/// An account exchange (refresh, renewal) that failed on an open
/// connection.
fn refresh_failure(e: AccountError) -> Result<Ending, UpError> {
    match e {
        AccountError::Client(ClientError::Refused { code, message }) => {
            Ok(Ending::RefreshRefused { code, message })
        }
        AccountError::Identity(e) => Err(e.into()),
        other => Ok(Ending::Lost {
            reason: other.to_string(),
        }),
    }
}

fn lifetimes(tokens: &Tokens, device: &Device) -> Lifetimes {
    Lifetimes {
        token_issued_at: tokens.issued_at.saturating_mul(1000),
        token_expires_at: tokens.expires_at.saturating_mul(1000),
        cert_issued_at: device.enrolment.cert_issued_at.saturating_mul(1000),
        cert_expires_at: device.enrolment.cert_expires_at.saturating_mul(1000),
    }
}

struct Runner {
    state: StateDir,
    forwards: Forwards,
    proxy: Option<Proxy>,
    status: UpStatus,
    /// The broker nodes to try, and where this agent starts among them.
    addrs: Addresses,
    spread: usize,
    /// The address of the last connection made.
    addr: Option<String>,
    /// The live connection and its endpoint, to close on the way out.
    current: Option<(quinn::Endpoint, quinn::Connection)>,
}

impl Runner {
    fn save_addresses(&self) {
        if let Err(e) = self.state.save_addresses(&self.addrs) {
            tracing::warn!(error = %e, "cannot save the broker addresses");
        }
    }

    fn save_status(&self) {
        if let Ok(bytes) = serde_json::to_vec_pretty(&self.status) {
            let _ = self.state.write(STATUS_FILE, &bytes);
        }
    }

    async fn ready(
        &mut self,
        session_id: &str,
        grants: Vec<lanyard_proto::AppGrant>,
        conn: &quinn::Connection,
    ) -> Result<UpEvent, UpError> {
        if let Some(proxy) = &self.proxy {
            proxy.set_apps(Catalog::new(&grants));
        }
        let apps: BTreeMap<String, AppProtocol> =
            grants.into_iter().map(|a| (a.name, a.protocol)).collect();
        let (forwards, not_allowed) = self.forwards.sync(&apps).await?;
        self.forwards.set_link(Some(conn.clone()));
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
            proxy: self.proxy.as_ref().map(|p| p.addr),
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
            let why = "it ran out before it could be renewed".to_owned();
            return Ended::Fatal(Stop::CertificateExpired(why).into());
        }
        let order = self.addrs.order(self.spread);
        let (endpoint, conn, addr) = match account::connect_any(&device, &order).await {
            Ok(c) => c,
            Err(e) => return lost(e),
        };
        if self.addrs.worked(&addr) {
            self.save_addresses();
        }
        self.addr = Some(addr);
        self.current = Some((endpoint, conn.clone()));
        if device.needs_renewal(now_secs()) {
            match account::renew(&self.state, &device, &conn).await {
                Ok(_) => {
                    conn.close(close::NORMAL.into(), b"renewed");
                    return Ended::Judge {
                        ending: Ending::Renewed,
                        had_session: false,
                    };
                }
                Err(e) => match refresh_failure(e) {
                    Err(fatal) => return Ended::Fatal(fatal),
                    Ok(Ending::RefreshRefused {
                        code: ErrorCode::Revoked,
                        message,
                    }) => return Ended::Fatal(Stop::DeviceRevoked(message).into()),
                    // Renewal is tried again within the session.
                    Ok(_) => {}
                },
            }
        }
        if refresh_first || tokens.needs_refresh(now_secs(), &device.thumbprint_hex()) {
            match account::refresh(&self.state, &device, &conn, &tokens).await {
                Ok(t) => tokens = t,
                Err(e) => {
                    return match refresh_failure(e) {
                        Ok(ending) => Ended::Judge {
                            ending,
                            had_session: false,
                        },
                        Err(fatal) => Ended::Fatal(fatal),
                    }
                }
            }
        }
        let ended = self.session(&mut device, &mut tokens, &conn, report).await;
        self.forwards.set_link(None);
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
            Err(e) => return lost(e),
        };
        let mut ctl = AgentControl::new(
            tokens.access_token.clone(),
            agent_version(),
            os_name(),
            lifetimes(tokens, device),
            now_ms(),
        );
        let mut opened = false;
        let mut revoked: Option<String> = None;
        loop {
            if let Some(bytes) = ctl.poll_transmit() {
                if let Err(e) = send.write_all(&bytes).await {
                    return if opened {
                        self.judge_close(conn, None, true).await
                    } else {
                        lost(e)
                    };
                }
            }
            while let Some(event) = ctl.poll_event() {
                match event {
                    AgentEvent::Welcome {
                        session_id,
                        apps,
                        addrs,
                    } => {
                        opened = true;
                        if self.addrs.update(addrs) {
                            self.save_addresses();
                        }
                        match self.ready(&session_id, apps, conn).await {
                            Ok(e) => report(e),
                            Err(e) => return Ended::Fatal(e),
                        }
                    }
                    AgentEvent::AppsChanged { apps } => {
                        let session_id = self.status.session_id.clone().unwrap_or_default();
                        match self.ready(&session_id, apps, conn).await {
                            Ok(e) => report(e),
                            Err(e) => return Ended::Fatal(e),
                        }
                    }
                    AgentEvent::Refused { code, message } => {
                        return Ended::Judge {
                            ending: Ending::Refused { code, message },
                            had_session: opened,
                        }
                    }
                    AgentEvent::Revoked { reason } => revoked = Some(reason),
                    AgentEvent::TimedOut => {
                        return lost("the broker did not answer the session's hello")
                    }
                    AgentEvent::RefreshDue => {
                        match account::refresh(&self.state, device, conn, tokens).await {
                            Ok(t) => {
                                *tokens = t;
                                ctl.refreshed(
                                    tokens.issued_at.saturating_mul(1000),
                                    tokens.expires_at.saturating_mul(1000),
                                );
                            }
                            Err(e) => match refresh_failure(e) {
                                Err(fatal) => return Ended::Fatal(fatal),
                                Ok(ending @ Ending::RefreshRefused { .. }) => {
                                    return Ended::Judge {
                                        ending,
                                        had_session: opened,
                                    }
                                }
                                Ok(_) => ctl.refresh_failed(now_ms()),
                            },
                        }
                    }
                    AgentEvent::RenewalDue => {
                        // Used from the next connection on.
                        match account::renew(&self.state, device, conn).await {
                            Ok(d) => {
                                *device = d;
                                tracing::info!(
                                    expires_at = device.enrolment.cert_expires_at,
                                    "renewed the device certificate"
                                );
                                ctl.renewed(
                                    device.enrolment.cert_issued_at.saturating_mul(1000),
                                    device.enrolment.cert_expires_at.saturating_mul(1000),
                                );
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "certificate renewal failed; will try again");
                                ctl.renewal_failed(now_ms());
                            }
                        }
                    }
                    AgentEvent::Pong { .. } => {}
                }
            }
            if revoked.is_some() || ctl.is_closed() {
                // The close code says what to do; the reason came first.
                return self.judge_close(conn, revoked, opened).await;
            }
            let wake = ctl.poll_timeout().map(|at| {
                tokio::time::Instant::now() + Duration::from_millis(at.saturating_sub(now_ms()))
            });
            tokio::select! {
                chunk = recv.read_chunk(4096, true) => match chunk {
                    Ok(Some(c)) => {
                        if let Err(e) = ctl.handle_bytes(&c.bytes) {
                            conn.close(close::PROTOCOL.into(), e.to_string().as_bytes());
                            return lost(e);
                        }
                    }
                    Ok(None) | Err(_) => return self.judge_close(conn, None, opened).await,
                },
                _ = sleep_until(wake) => ctl.handle_timeout(now_ms()),
            }
        }
    }

    /// Waits briefly for the broker's close (its code says what to do) and
    /// hands it to the decision; `revoked` is the reason the broker gave
    /// on the control stream first, if it did.
    async fn judge_close(
        &mut self,
        conn: &quinn::Connection,
        revoked: Option<String>,
        had_session: bool,
    ) -> Ended {
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
        let ending = match (closing(conn), revoked) {
            (Ending::Closed { code, .. }, Some(reason)) => Ending::Closed { code, reason },
            (other, _) => other,
        };
        Ended::Judge {
            ending,
            had_session,
        }
    }

    /// Notes for `status` that the sign-in was ended, and forgets it.
    fn forget_sign_in(&self, reason: &str) {
        let username = self
            .state
            .tokens()
            .ok()
            .flatten()
            .map(|t| t.username)
            .unwrap_or_default();
        let ended = SignInEnded {
            username,
            reason: reason.to_owned(),
            at: now_secs(),
        };
        if let Ok(bytes) = serde_json::to_vec_pretty(&ended) {
            let _ = self.state.write(ENDED_FILE, &bytes);
        }
        let _ = self.state.remove(TOKENS_FILE);
    }

    /// Closes the live connection so the broker ends the session at once.
    async fn close(&mut self) {
        self.forwards.set_link(None);
        if let Some((endpoint, conn)) = self.current.take() {
            conn.close(close::NORMAL.into(), b"agent stopping");
            let _ = tokio::time::timeout(CLOSE_GRACE, endpoint.wait_idle()).await;
        }
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Starts the local proxy, if asked for.
async fn start_proxy(at: ProxyAt, forwards: &Forwards) -> Result<Option<Proxy>, UpError> {
    let listen_err = |addr, source| ListenError {
        app: "the local proxy".into(),
        addr,
        source,
    };
    let asked = match at {
        ProxyAt::At(addr) => addr,
        _ => SocketAddr::from(([127, 0, 0, 1], crate::proxy::DEFAULT_PORT)),
    };
    let Some(listener) = crate::proxy::bind(at)
        .await
        .map_err(|e| listen_err(asked, e))?
    else {
        return Ok(None);
    };
    let proxy = Proxy::start(listener, forwards.streams()).map_err(|e| listen_err(asked, e))?;
    Ok(Some(proxy))
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
    let device = state.device()?;
    state.tokens()?.ok_or(IdentityError::NotSignedIn)?;
    let addrs = state.addresses(&device.enrolment)?;
    let (failures, mut failed) = mpsc::unbounded_channel();
    let forwards = Forwards::new(state.clone(), &config.forwards, failures).await?;
    let proxy = start_proxy(config.proxy, &forwards).await?;
    let mut runner = Runner {
        state,
        forwards,
        status: UpStatus {
            pid: std::process::id(),
            proxy: proxy.as_ref().map(|p| p.addr.to_string()),
            pac: proxy.as_ref().map(|p| pac_url(p.addr)),
            ..UpStatus::default()
        },
        proxy,
        addrs,
        spread: account::spread(),
        addr: None,
        current: None,
    };
    let report: std::sync::Arc<dyn Fn(UpEvent) + Send + Sync> = std::sync::Arc::new(report);
    {
        let report = report.clone();
        tokio::spawn(async move {
            while let Some(f) = failed.recv().await {
                report(UpEvent::StreamFailed {
                    app: f.app,
                    reason: f.reason,
                });
            }
        });
    }
    let mut backoff = Backoff::new(config.backoff_base, config.backoff_cap);
    let mut redial = Redial::new();
    let mut refresh_first = false;
    tokio::pin!(shutdown);
    let result = loop {
        let ended = tokio::select! {
            e = runner.connection(refresh_first, &*report) => e,
            _ = &mut shutdown => break Ok(()),
        };
        refresh_first = false;
        let (ending, had_session) = match ended {
            Ended::Fatal(e) => break Err(e),
            Ended::Judge {
                ending,
                had_session,
            } => (ending, had_session),
        };
        let (reason, delay) = match redial.after(ending, had_session) {
            Next::Stop(stop) => {
                if let Stop::SignInEnded(reason) = &stop {
                    runner.forget_sign_in(reason);
                }
                break Err(stop.into());
            }
            Next::Redial { at_once: true, .. } => continue,
            Next::RefreshFirst { reason } => {
                refresh_first = true;
                (reason, backoff.next_delay())
            }
            Next::Redial {
                reason,
                reset_backoff,
                ..
            } => {
                if reset_backoff {
                    backoff.reset();
                }
                // Lost, refused or closed there: the other nodes first.
                if let Some(addr) = runner.addr.take() {
                    runner.addrs.lost(&addr);
                }
                (reason, backoff.next_delay())
            }
        };
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
    runner.close().await;
    let _ = runner.state.remove(STATUS_FILE);
    result
}
