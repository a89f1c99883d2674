//! The control stream as two sans-IO state machines, one per side.
//!
//! Each side is fed the bytes that arrived ([`AgentControl::handle_bytes`],
//! [`BrokerControl::handle_bytes`]), hands out the bytes to send
//! (`poll_transmit`) and the events to act on (`poll_event`). Neither knows
//! about sockets, tasks or time: the broker and the agent drive them over a
//! QUIC stream, and the tests drive them against each other in memory.
//!
//! The conversation: the agent sends `Hello`; the broker answers `Welcome`
//! (or `Refused`, which ends the stream). While open, either may `Ping` and
//! the other answers `Pong`; the broker may push `AppsChanged` and, last,
//! `Revoked`.
//!
//! Time is passed in as `now` (milliseconds on the caller's clock, the Unix
//! epoch for both ends here, since token and certificate lifetimes are wall
//! times). Each machine says when it next wants [`AgentControl::handle_timeout`]
//! or [`BrokerControl::handle_timeout`] through `poll_timeout`, the way
//! quinn-proto does: the agent's schedules the refresh of its sign-in at two
//! thirds of the token's life and the renewal of its certificate at half
//! its life, and gives up on a hello that gets no answer; the broker's ends
//! a session whose token or certificate ran out and finishes a drain.

use std::collections::VecDeque;

use crate::frame::{encode, FrameDecoder, FrameError};
use crate::messages::{AppGrant, ErrorCode, Message};
use crate::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

/// Milliseconds on the caller's clock (the Unix epoch, at both ends).
pub type Millis = u64;

/// How long an agent waits for the answer to its hello.
pub const HELLO_ANSWER_MS: Millis = 15_000;
/// A failed refresh of the sign-in is tried again after this.
pub const REFRESH_RETRY_MS: Millis = 5_000;
/// A failed certificate renewal is tried again after this.
pub const RENEWAL_RETRY_MS: Millis = 600_000;
/// While draining, the broker looks at a session's open streams this often.
pub const DRAIN_CHECK_MS: Millis = 50;
/// The first agent protocol version that reads the addresses in a `Welcome`.
pub const ADDRESSES_SINCE: u16 = 2;
/// The first agent protocol version that reads the apps' details (target,
/// host names, protocol) in a `Welcome` or `AppsChanged`.
pub const APP_DETAILS_SINCE: u16 = 3;

/// A lifetime `[issued, expires)`: the instant `num/den` of it has passed.
fn share_of_life(issued: Millis, expires: Millis, num: u64, den: u64) -> Millis {
    let life = expires.saturating_sub(issued);
    issued.saturating_add(life / den * num + life % den * num / den)
}

/// Why a control stream cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("unexpected {got} on the control stream while {state}")]
    Unexpected {
        got: &'static str,
        state: &'static str,
    },
    #[error("the control stream is closed")]
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Agent: `Hello` sent, no answer yet. Broker: waiting for `Hello`.
    Opening,
    /// Broker: `Hello` received and handed out, no decision yet.
    Deciding,
    Open,
    Closed,
}

impl Phase {
    fn describe(self) -> &'static str {
        match self {
            Phase::Opening => "opening",
            Phase::Deciding => "deciding",
            Phase::Open => "open",
            Phase::Closed => "closed",
        }
    }
}

/// Shared plumbing: the decoder, the outgoing bytes, the phase.
#[derive(Debug)]
struct Core {
    decoder: FrameDecoder,
    out: Vec<u8>,
    phase: Phase,
}

impl Core {
    fn new(phase: Phase) -> Self {
        Self {
            decoder: FrameDecoder::new(),
            out: Vec::new(),
            phase,
        }
    }

    fn send(&mut self, msg: &Message) {
        encode(msg, &mut self.out);
    }

    fn take_out(&mut self) -> Option<Vec<u8>> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// Feeds bytes and calls `on` for every whole message.
    fn feed(
        &mut self,
        bytes: &[u8],
        mut on: impl FnMut(&mut Self, Message) -> Result<(), SessionError>,
    ) -> Result<(), SessionError> {
        if self.phase == Phase::Closed {
            return Err(SessionError::Closed);
        }
        let mut next = self.decoder.push(bytes);
        loop {
            match next {
                Ok(Some(msg)) => {
                    if let Err(e) = on(self, msg) {
                        self.phase = Phase::Closed;
                        return Err(e);
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.phase = Phase::Closed;
                    return Err(e.into());
                }
            }
            next = self.decoder.next_message();
        }
    }

    fn unexpected(&self, msg: &Message) -> SessionError {
        SessionError::Unexpected {
            got: msg.name(),
            state: self.phase.describe(),
        }
    }
}

/// What the agent learns from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// The session is open with these apps; `addrs` are the broker nodes'
    /// addresses (empty if the broker did not send them).
    Welcome {
        session_id: String,
        apps: Vec<AppGrant>,
        addrs: Vec<String>,
    },
    AppsChanged {
        apps: Vec<AppGrant>,
    },
    Pong {
        nonce: u64,
    },
    /// The session ends and must not be redialled as it is.
    Revoked {
        reason: String,
    },
    /// The hello was refused.
    Refused {
        code: ErrorCode,
        message: String,
    },
    /// No answer to the hello in [`HELLO_ANSWER_MS`]: the session is closed.
    TimedOut,
    /// Two thirds of the access token's life have passed: refresh it, then
    /// call [`AgentControl::refreshed`] (or [`AgentControl::refresh_failed`]).
    RefreshDue,
    /// Half the certificate's life has passed: renew it, then call
    /// [`AgentControl::renewed`] (or [`AgentControl::renewal_failed`]).
    RenewalDue,
}

/// The agent's side of a control stream.
#[derive(Debug)]
pub struct AgentControl {
    core: Core,
    events: VecDeque<AgentEvent>,
    /// While opening: when the hello is given up on.
    answer_by: Millis,
    /// When to refresh the sign-in (none while a refresh is under way).
    refresh_at: Option<Millis>,
    /// When to renew the certificate (none while a renewal is under way).
    renew_at: Option<Millis>,
}

/// Lifetimes an agent's session runs on, from its tokens and certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub token_issued_at: Millis,
    pub token_expires_at: Millis,
    pub cert_issued_at: Millis,
    pub cert_expires_at: Millis,
}

impl AgentControl {
    /// Starts a session at `now`: the `Hello` is ready to send at once.
    pub fn new(
        access_token: String,
        agent_version: String,
        os: String,
        life: Lifetimes,
        now: Millis,
    ) -> Self {
        let mut core = Core::new(Phase::Opening);
        core.send(&Message::Hello {
            version: PROTOCOL_VERSION,
            access_token,
            agent_version,
            os,
        });
        Self {
            core,
            events: VecDeque::new(),
            answer_by: now.saturating_add(HELLO_ANSWER_MS),
            refresh_at: Some(share_of_life(
                life.token_issued_at,
                life.token_expires_at,
                2,
                3,
            )),
            renew_at: Some(share_of_life(
                life.cert_issued_at,
                life.cert_expires_at,
                1,
                2,
            )),
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has something to
    /// do; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match self.core.phase {
            Phase::Opening | Phase::Deciding => Some(self.answer_by),
            Phase::Open => [self.refresh_at, self.renew_at].into_iter().flatten().min(),
            Phase::Closed => None,
        }
    }

    /// Acts on the time: gives up on an unanswered hello, or says a refresh
    /// or a renewal is due (once each, until it is reported done or failed).
    pub fn handle_timeout(&mut self, now: Millis) {
        match self.core.phase {
            Phase::Opening | Phase::Deciding if now >= self.answer_by => {
                self.core.phase = Phase::Closed;
                self.events.push_back(AgentEvent::TimedOut);
            }
            Phase::Open => {
                if self.refresh_at.is_some_and(|at| now >= at) {
                    self.refresh_at = None;
                    self.events.push_back(AgentEvent::RefreshDue);
                }
                if self.renew_at.is_some_and(|at| now >= at) {
                    self.renew_at = None;
                    self.events.push_back(AgentEvent::RenewalDue);
                }
            }
            _ => {}
        }
    }

    /// New tokens: the next refresh is at two thirds of their life.
    pub fn refreshed(&mut self, issued_at: Millis, expires_at: Millis) {
        self.refresh_at = Some(share_of_life(issued_at, expires_at, 2, 3));
    }

    /// The refresh did not go through (and may be tried again).
    pub fn refresh_failed(&mut self, now: Millis) {
        self.refresh_at = Some(now.saturating_add(REFRESH_RETRY_MS));
    }

    /// A renewed certificate (used from the next connection on): the next
    /// renewal is at half its life.
    pub fn renewed(&mut self, issued_at: Millis, expires_at: Millis) {
        self.renew_at = Some(share_of_life(issued_at, expires_at, 1, 2));
    }

    /// The renewal did not go through (and may be tried again).
    pub fn renewal_failed(&mut self, now: Millis) {
        self.renew_at = Some(now.saturating_add(RENEWAL_RETRY_MS));
    }

    pub fn is_open(&self) -> bool {
        self.core.phase == Phase::Open
    }

    pub fn is_closed(&self) -> bool {
        self.core.phase == Phase::Closed
    }

    /// Asks the broker for a `Pong` (a liveness check above QUIC's own).
    pub fn ping(&mut self, nonce: u64) {
        if self.core.phase == Phase::Open {
            self.core.send(&Message::Ping { nonce });
        }
    }

    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        let events = &mut self.events;
        self.core.feed(bytes, |core, msg| {
            match (core.phase, msg) {
                (
                    Phase::Opening,
                    Message::Welcome {
                        session_id,
                        apps,
                        addrs,
                    },
                ) => {
                    core.phase = Phase::Open;
                    events.push_back(AgentEvent::Welcome {
                        session_id,
                        apps,
                        addrs,
                    });
                }
                (Phase::Opening | Phase::Open, Message::Refused { code, message }) => {
                    core.phase = Phase::Closed;
                    events.push_back(AgentEvent::Refused { code, message });
                }
                (Phase::Open, Message::AppsChanged { apps }) => {
                    events.push_back(AgentEvent::AppsChanged { apps })
                }
                (Phase::Open, Message::Ping { nonce }) => core.send(&Message::Pong { nonce }),
                (Phase::Open, Message::Pong { nonce }) => {
                    events.push_back(AgentEvent::Pong { nonce })
                }
                (Phase::Open, Message::Revoked { reason }) => {
                    core.phase = Phase::Closed;
                    events.push_back(AgentEvent::Revoked { reason });
                }
                (_, other) => return Err(core.unexpected(&other)),
            }
            Ok(())
        })
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.core.take_out()
    }

    pub fn poll_event(&mut self) -> Option<AgentEvent> {
        self.events.pop_front()
    }
}

/// What the broker must decide on or has learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerEvent {
    /// The agent asks for a session: check the token, then call
    /// [`BrokerControl::welcome`] or [`BrokerControl::refuse`].
    Hello {
        access_token: String,
        agent_version: String,
        os: String,
    },
    Pong {
        nonce: u64,
    },
    /// The session's token or certificate has run out: decide again (the
    /// rules give the reason) and [`BrokerControl::revoke`], or
    /// [`BrokerControl::extend`] if a refresh moved it on meanwhile.
    Expired,
    /// Draining, and the session has no stream open: end it.
    Drained,
}

/// The broker's side of a control stream.
#[derive(Debug)]
pub struct BrokerControl {
    core: Core,
    events: VecDeque<BrokerEvent>,
    /// When the session's token or certificate runs out, whichever first.
    expires_at: Millis,
    /// Whether the expiry was already reported (until it is extended).
    expiry_told: bool,
    /// Draining: the session ends once its last stream has.
    draining: bool,
    open_streams: u64,
    now: Millis,
    /// The protocol version the agent's hello gave.
    agent_protocol: u16,
}

impl Default for BrokerControl {
    fn default() -> Self {
        Self::new()
    }
}

impl BrokerControl {
    pub fn new() -> Self {
        Self {
            core: Core::new(Phase::Opening),
            events: VecDeque::new(),
            expires_at: Millis::MAX,
            expiry_told: false,
            draining: false,
            open_streams: 0,
            now: 0,
            agent_protocol: 0,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has something to
    /// do; `None` unless a session is open.
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.core.phase != Phase::Open {
            return None;
        }
        let drain = self
            .draining
            .then(|| self.now.saturating_add(DRAIN_CHECK_MS));
        let expiry = (!self.expiry_told).then_some(self.expires_at);
        [drain, expiry].into_iter().flatten().min()
    }

    /// Acts on the time: says when the session has expired, or is drained.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.now = now;
        if self.core.phase != Phase::Open {
            return;
        }
        if !self.expiry_told && now >= self.expires_at {
            self.expiry_told = true;
            self.events.push_back(BrokerEvent::Expired);
        }
        if self.draining && self.open_streams == 0 {
            self.draining = false;
            self.events.push_back(BrokerEvent::Drained);
        }
    }

    /// The session may now run until `expires_at` (a refresh moved the
    /// token's expiry on).
    pub fn extend(&mut self, expires_at: Millis) {
        if expires_at != self.expires_at {
            self.expires_at = expires_at;
            self.expiry_told = false;
        }
    }

    /// The broker is stopping: the session ends once it carries no stream.
    pub fn drain(&mut self, now: Millis) {
        self.now = now;
        self.draining = true;
    }

    /// How many tunnel streams the session carries now.
    pub fn set_open_streams(&mut self, open: u64) {
        self.open_streams = open;
    }

    pub fn is_open(&self) -> bool {
        self.core.phase == Phase::Open
    }

    pub fn is_closed(&self) -> bool {
        self.core.phase == Phase::Closed
    }

    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        let events = &mut self.events;
        let agent_protocol = &mut self.agent_protocol;
        self.core.feed(bytes, |core, msg| {
            match (core.phase, msg) {
                (
                    Phase::Opening,
                    Message::Hello {
                        version,
                        access_token,
                        agent_version,
                        os,
                    },
                ) => {
                    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
                        core.send(&Message::Refused {
                            code: ErrorCode::VersionMismatch,
                            message: format!(
                                "this broker speaks protocol version {PROTOCOL_VERSION}, the agent {version}; update the agent"
                            ),
                        });
                        core.phase = Phase::Closed;
                    } else {
                        core.phase = Phase::Deciding;
                        *agent_protocol = version;
                        events.push_back(BrokerEvent::Hello {
                            access_token,
                            agent_version,
                            os,
                        });
                    }
                }
                (Phase::Open, Message::Ping { nonce }) => core.send(&Message::Pong { nonce }),
                (Phase::Open, Message::Pong { nonce }) => {
                    events.push_back(BrokerEvent::Pong { nonce })
                }
                (_, other) => return Err(core.unexpected(&other)),
            }
            Ok(())
        })
    }

    /// Opens the session after a `Hello` was accepted; it may run until
    /// `expires_at` (its token's or certificate's end, whichever first).
    /// `addrs` (the broker nodes' addresses) go only to an agent whose
    /// protocol version reads them.
    pub fn welcome(
        &mut self,
        session_id: String,
        apps: Vec<AppGrant>,
        addrs: Vec<String>,
        expires_at: Millis,
    ) {
        if self.core.phase == Phase::Deciding {
            self.core.phase = Phase::Open;
            self.expires_at = expires_at;
            let addrs = if self.agent_protocol >= ADDRESSES_SINCE {
                addrs
            } else {
                Vec::new()
            };
            let apps = self.apps_for_agent(apps);
            self.core.send(&Message::Welcome {
                session_id,
                apps,
                addrs,
            });
        }
    }

    /// Refuses the `Hello` (or ends an open session with a refusal).
    pub fn refuse(&mut self, code: ErrorCode, message: String) {
        if self.core.phase != Phase::Closed {
            self.core.phase = Phase::Closed;
            self.core.send(&Message::Refused { code, message });
        }
    }

    pub fn apps_changed(&mut self, apps: Vec<AppGrant>) {
        if self.core.phase == Phase::Open {
            let apps = self.apps_for_agent(apps);
            self.core.send(&Message::AppsChanged { apps });
        }
    }

    /// The apps as this agent reads them: an agent older than
    /// [`APP_DETAILS_SINCE`] gets them without their details, and no UDP
    /// app (it would take one for TCP).
    fn apps_for_agent(&self, apps: Vec<AppGrant>) -> Vec<AppGrant> {
        if self.agent_protocol >= APP_DETAILS_SINCE {
            apps
        } else {
            apps.iter()
                .filter(|a| a.protocol == crate::AppProtocol::Tcp)
                .map(AppGrant::without_details)
                .collect()
        }
    }

    pub fn ping(&mut self, nonce: u64) {
        if self.core.phase == Phase::Open {
            self.core.send(&Message::Ping { nonce });
        }
    }

    /// Ends an open session for good.
    pub fn revoke(&mut self, reason: String) {
        if self.core.phase == Phase::Open {
            self.core.phase = Phase::Closed;
            self.core.send(&Message::Revoked { reason });
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.core.take_out()
    }

    pub fn poll_event(&mut self) -> Option<BrokerEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::to_frame;

    fn grant(name: &str) -> AppGrant {
        AppGrant::named(name)
    }

    const HOUR: Millis = 3_600_000;
    /// Tokens issued at 0 for 15 minutes; a certificate issued at 0 for 7 days.
    const LIFE: Lifetimes = Lifetimes {
        token_issued_at: 0,
        token_expires_at: 900_000,
        cert_issued_at: 0,
        cert_expires_at: 7 * 24 * HOUR,
    };

    fn agent_at(token: &str, version: &str, os: &str) -> AgentControl {
        AgentControl::new(token.into(), version.into(), os.into(), LIFE, 0)
    }

    /// An agent and a broker with a session open at time 0, until `expires`.
    fn open_pair(expires: Millis) -> (AgentControl, BrokerControl) {
        let mut agent = agent_at("tok", "1", "linux");
        let mut broker = BrokerControl::new();
        pump(&mut agent, &mut broker, 4096);
        assert!(matches!(
            broker.poll_event(),
            Some(BrokerEvent::Hello { .. })
        ));
        broker.welcome("s".into(), vec![grant("hr")], vec![], expires);
        pump(&mut agent, &mut broker, 4096);
        assert!(matches!(
            agent.poll_event(),
            Some(AgentEvent::Welcome { .. })
        ));
        (agent, broker)
    }

    /// Moves every pending byte between the two sides, in chunks of `chunk`
    /// bytes, until both are quiet.
    fn pump(agent: &mut AgentControl, broker: &mut BrokerControl, chunk: usize) {
        loop {
            let mut moved = false;
            if let Some(bytes) = agent.poll_transmit() {
                for part in bytes.chunks(chunk) {
                    broker.handle_bytes(part).unwrap();
                }
                moved = true;
            }
            if let Some(bytes) = broker.poll_transmit() {
                for part in bytes.chunks(chunk) {
                    agent.handle_bytes(part).unwrap();
                }
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    #[test]
    fn a_session_opens_changes_and_is_revoked_in_memory() {
        for chunk in [1, 3, 4096] {
            let mut agent = agent_at("tok", "0.1.0", "linux");
            let mut broker = BrokerControl::new();
            pump(&mut agent, &mut broker, chunk);
            assert_eq!(
                broker.poll_event(),
                Some(BrokerEvent::Hello {
                    access_token: "tok".into(),
                    agent_version: "0.1.0".into(),
                    os: "linux".into()
                })
            );
            assert!(!agent.is_open());
            broker.welcome("s-1".into(), vec![grant("hr")], vec!["b:4433".into()], HOUR);
            pump(&mut agent, &mut broker, chunk);
            assert!(agent.is_open() && broker.is_open());
            assert_eq!(
                agent.poll_event(),
                Some(AgentEvent::Welcome {
                    session_id: "s-1".into(),
                    apps: vec![grant("hr")],
                    addrs: vec!["b:4433".into()],
                })
            );

            agent.ping(7);
            broker.ping(9);
            broker.apps_changed(vec![grant("hr"), grant("pbx")]);
            pump(&mut agent, &mut broker, chunk);
            assert_eq!(
                agent.poll_event(),
                Some(AgentEvent::AppsChanged {
                    apps: vec![grant("hr"), grant("pbx")]
                })
            );
            assert_eq!(agent.poll_event(), Some(AgentEvent::Pong { nonce: 7 }));
            assert_eq!(broker.poll_event(), Some(BrokerEvent::Pong { nonce: 9 }));

            broker.revoke("laptop marked lost".into());
            pump(&mut agent, &mut broker, chunk);
            assert_eq!(
                agent.poll_event(),
                Some(AgentEvent::Revoked {
                    reason: "laptop marked lost".into()
                })
            );
            assert!(agent.is_closed() && broker.is_closed());
            assert_eq!(agent.handle_bytes(b"x"), Err(SessionError::Closed));
        }
    }

    #[test]
    fn a_refused_hello_closes_both_sides() {
        let mut agent = agent_at("tok", "0.1.0", "linux");
        let mut broker = BrokerControl::new();
        pump(&mut agent, &mut broker, 64);
        assert!(matches!(
            broker.poll_event(),
            Some(BrokerEvent::Hello { .. })
        ));
        broker.refuse(ErrorCode::Forbidden, "Jo Smith is disabled".into());
        pump(&mut agent, &mut broker, 64);
        assert_eq!(
            agent.poll_event(),
            Some(AgentEvent::Refused {
                code: ErrorCode::Forbidden,
                message: "Jo Smith is disabled".into()
            })
        );
        assert!(agent.is_closed() && broker.is_closed());
    }

    #[test]
    fn the_welcome_carries_the_addresses_to_agents_that_read_them() {
        let addrs = vec!["a:4433".to_owned(), "b:4433".to_owned()];
        let mut agent = agent_at("tok", "1", "linux");
        let mut broker = BrokerControl::new();
        pump(&mut agent, &mut broker, 4096);
        broker.poll_event();
        broker.welcome("s".into(), vec![], addrs.clone(), HOUR);
        pump(&mut agent, &mut broker, 4096);
        assert_eq!(
            agent.poll_event(),
            Some(AgentEvent::Welcome {
                session_id: "s".into(),
                apps: vec![],
                addrs: addrs.clone(),
            })
        );

        // A version 1 agent is still served, and gets the welcome it knows:
        // no trailing field its decoder would refuse.
        let mut broker = BrokerControl::new();
        broker
            .handle_bytes(&to_frame(&Message::Hello {
                version: 1,
                access_token: "t".into(),
                agent_version: "0.1".into(),
                os: "x".into(),
            }))
            .unwrap();
        assert!(matches!(
            broker.poll_event(),
            Some(BrokerEvent::Hello { .. })
        ));
        broker.welcome("s".into(), vec![], addrs, HOUR);
        let sent = broker.poll_transmit().unwrap();
        assert_eq!(
            sent,
            to_frame(&Message::Welcome {
                session_id: "s".into(),
                apps: vec![],
                addrs: vec![],
            })
        );
        // As version 1 wrote it: the session id, then the apps, nothing after.
        assert_eq!(&sent[4..], &[0x21, 0, 1, b's', 0, 0]);
    }

    #[test]
    fn the_apps_details_go_only_to_agents_that_read_them() {
        let hr = AppGrant {
            target: "10.0.0.5:443".into(),
            hosts: vec!["hr.council.internal".into()],
            ..AppGrant::named("hr")
        };
        for version in [2, 3] {
            let mut broker = BrokerControl::new();
            broker
                .handle_bytes(&to_frame(&Message::Hello {
                    version,
                    access_token: "t".into(),
                    agent_version: "0.1".into(),
                    os: "x".into(),
                }))
                .unwrap();
            broker.poll_event();
            let pbx = AppGrant {
                target: "10.0.0.9:5060".into(),
                protocol: crate::AppProtocol::Udp,
                ..AppGrant::named("pbx")
            };
            broker.welcome("s".into(), vec![hr.clone(), pbx.clone()], vec![], HOUR);
            broker.apps_changed(vec![hr.clone(), pbx.clone()]);
            // An older agent does not hear of the UDP app at all.
            let want = if version >= APP_DETAILS_SINCE {
                vec![hr.clone(), pbx]
            } else {
                vec![AppGrant::named("hr")]
            };
            let mut sent = to_frame(&Message::Welcome {
                session_id: "s".into(),
                apps: want.clone(),
                addrs: vec![],
            });
            sent.extend(to_frame(&Message::AppsChanged { apps: want }));
            assert_eq!(broker.poll_transmit().unwrap(), sent, "version {version}");
        }
        // What a version 2 agent gets is what version 2 wrote: the apps,
        // then nothing after.
        assert_eq!(
            &to_frame(&Message::AppsChanged {
                apps: vec![AppGrant::named("hr")]
            })[4..],
            &[0x22, 0, 1, 0, 2, b'h', b'r', 0, 0]
        );
    }

    #[test]
    fn another_protocol_version_is_refused_by_the_broker_itself() {
        let mut broker = BrokerControl::new();
        broker
            .handle_bytes(&to_frame(&Message::Hello {
                version: 99,
                access_token: "t".into(),
                agent_version: "9".into(),
                os: "x".into(),
            }))
            .unwrap();
        assert_eq!(broker.poll_event(), None);
        let mut agent = agent_at("t", "0", "x");
        agent
            .handle_bytes(&broker.poll_transmit().unwrap())
            .unwrap();
        assert!(matches!(
            agent.poll_event(),
            Some(AgentEvent::Refused {
                code: ErrorCode::VersionMismatch,
                ..
            })
        ));
    }

    #[test]
    fn out_of_order_messages_and_garbage_are_errors() {
        // Apps before a hello.
        let mut broker = BrokerControl::new();
        let err = broker
            .handle_bytes(&to_frame(&Message::Ping { nonce: 1 }))
            .unwrap_err();
        assert!(matches!(err, SessionError::Unexpected { got: "Ping", .. }));
        assert!(broker.is_closed());

        // A second hello while deciding.
        let mut broker = BrokerControl::new();
        let hello = to_frame(&Message::Hello {
            version: PROTOCOL_VERSION,
            access_token: "t".into(),
            agent_version: "1".into(),
            os: "x".into(),
        });
        broker.handle_bytes(&hello).unwrap();
        assert!(broker.handle_bytes(&hello).is_err());

        // The agent gets apps before its welcome.
        let mut agent = agent_at("t", "0", "x");
        assert!(agent
            .handle_bytes(&to_frame(&Message::AppsChanged { apps: vec![] }))
            .is_err());

        // Bad framing.
        let mut agent = agent_at("t", "0", "x");
        assert!(matches!(
            agent.handle_bytes(&[0xff, 0xff, 0xff, 0xff]),
            Err(SessionError::Frame(_))
        ));
    }

    #[test]
    fn the_agent_refreshes_at_two_thirds_of_the_token_life_and_retries_a_failure() {
        let (mut agent, _broker) = open_pair(HOUR);
        // 15 minute token: due at 10 minutes, not before.
        assert_eq!(agent.poll_timeout(), Some(600_000));
        agent.handle_timeout(599_999);
        assert_eq!(agent.poll_event(), None);
        agent.handle_timeout(600_000);
        assert_eq!(agent.poll_event(), Some(AgentEvent::RefreshDue));
        // Told once, while the refresh is under way.
        agent.handle_timeout(700_000);
        assert_eq!(agent.poll_event(), None);
        agent.refresh_failed(700_000);
        assert_eq!(agent.poll_timeout(), Some(700_000 + REFRESH_RETRY_MS));
        agent.handle_timeout(705_000);
        assert_eq!(agent.poll_event(), Some(AgentEvent::RefreshDue));
        // New tokens issued at 705 s for 15 minutes: next at 705 + 600 s.
        agent.refreshed(705_000, 705_000 + 900_000);
        assert_eq!(agent.poll_timeout(), Some(1_305_000));
    }

    #[test]
    fn the_agent_renews_its_certificate_at_half_life() {
        let (mut agent, _broker) = open_pair(HOUR);
        agent.refreshed(0, 30 * 24 * HOUR); // keep the refresh out of the way
        assert_eq!(agent.poll_timeout(), Some(84 * HOUR));
        agent.handle_timeout(84 * HOUR);
        assert_eq!(agent.poll_event(), Some(AgentEvent::RenewalDue));
        agent.renewal_failed(84 * HOUR);
        assert_eq!(agent.poll_timeout(), Some(84 * HOUR + RENEWAL_RETRY_MS));
        agent.renewed(85 * HOUR, 85 * HOUR + 7 * 24 * HOUR);
        assert_eq!(agent.poll_timeout(), Some(85 * HOUR + 84 * HOUR));
    }

    #[test]
    fn an_unanswered_hello_times_out() {
        let mut agent = agent_at("tok", "1", "linux");
        assert!(agent.poll_transmit().is_some());
        assert_eq!(agent.poll_timeout(), Some(HELLO_ANSWER_MS));
        agent.handle_timeout(HELLO_ANSWER_MS - 1);
        assert_eq!(agent.poll_event(), None);
        agent.handle_timeout(HELLO_ANSWER_MS);
        assert_eq!(agent.poll_event(), Some(AgentEvent::TimedOut));
        assert!(agent.is_closed());
        assert_eq!(agent.poll_timeout(), None);
    }

    #[test]
    fn the_broker_ends_an_expired_session_unless_a_refresh_moved_it_on() {
        let (mut agent, mut broker) = open_pair(900_000);
        assert_eq!(broker.poll_timeout(), Some(900_000));
        broker.handle_timeout(899_999);
        assert_eq!(broker.poll_event(), None);
        // A refresh moved the token on before it ran out.
        broker.extend(1_800_000);
        broker.handle_timeout(900_000);
        assert_eq!(broker.poll_event(), None);
        broker.handle_timeout(1_800_000);
        assert_eq!(broker.poll_event(), Some(BrokerEvent::Expired));
        // Reported once; the driver decides and revokes.
        broker.handle_timeout(1_900_000);
        assert_eq!(broker.poll_event(), None);
        assert_eq!(broker.poll_timeout(), None);
        broker.revoke("your sign-in has expired".into());
        pump(&mut agent, &mut broker, 7);
        assert_eq!(
            agent.poll_event(),
            Some(AgentEvent::Revoked {
                reason: "your sign-in has expired".into()
            })
        );
        assert!(agent.is_closed() && broker.is_closed());
    }

    #[test]
    fn a_draining_session_ends_when_its_last_stream_does() {
        let (_agent, mut broker) = open_pair(HOUR);
        broker.set_open_streams(2);
        broker.drain(1_000);
        assert_eq!(broker.poll_timeout(), Some(1_000 + DRAIN_CHECK_MS));
        broker.handle_timeout(1_050);
        assert_eq!(broker.poll_event(), None);
        broker.set_open_streams(0);
        broker.handle_timeout(1_100);
        assert_eq!(broker.poll_event(), Some(BrokerEvent::Drained));
    }
}
