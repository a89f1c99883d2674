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

use std::collections::VecDeque;

use crate::frame::{encode, FrameDecoder, FrameError};
use crate::messages::{AppGrant, ErrorCode, Message};
use crate::PROTOCOL_VERSION;

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
    /// The session is open with these apps.
    Welcome {
        session_id: String,
        apps: Vec<AppGrant>,
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
}

/// The agent's side of a control stream.
#[derive(Debug)]
pub struct AgentControl {
    core: Core,
    events: VecDeque<AgentEvent>,
}

impl AgentControl {
    /// Starts a session: the `Hello` is ready to send at once.
    pub fn new(access_token: String, agent_version: String, os: String) -> Self {
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
        }
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
                (Phase::Opening, Message::Welcome { session_id, apps }) => {
                    core.phase = Phase::Open;
                    events.push_back(AgentEvent::Welcome { session_id, apps });
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
}

/// The broker's side of a control stream.
#[derive(Debug)]
pub struct BrokerControl {
    core: Core,
    events: VecDeque<BrokerEvent>,
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
        }
    }

    pub fn is_open(&self) -> bool {
        self.core.phase == Phase::Open
    }

    pub fn is_closed(&self) -> bool {
        self.core.phase == Phase::Closed
    }

    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        let events = &mut self.events;
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
                    if version != PROTOCOL_VERSION {
                        core.send(&Message::Refused {
                            code: ErrorCode::VersionMismatch,
                            message: format!(
                                "this broker speaks protocol version {PROTOCOL_VERSION}, the agent {version}; update the agent"
                            ),
                        });
                        core.phase = Phase::Closed;
                    } else {
                        core.phase = Phase::Deciding;
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

    /// Opens the session after a `Hello` was accepted.
    pub fn welcome(&mut self, session_id: String, apps: Vec<AppGrant>) {
        if self.core.phase == Phase::Deciding {
            self.core.phase = Phase::Open;
            self.core.send(&Message::Welcome { session_id, apps });
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
            self.core.send(&Message::AppsChanged { apps });
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
        AppGrant {
            name: name.into(),
            port_hint: 0,
        }
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
            let mut agent = AgentControl::new("tok".into(), "0.1.0".into(), "linux".into());
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
            broker.welcome("s-1".into(), vec![grant("hr")]);
            pump(&mut agent, &mut broker, chunk);
            assert!(agent.is_open() && broker.is_open());
            assert_eq!(
                agent.poll_event(),
                Some(AgentEvent::Welcome {
                    session_id: "s-1".into(),
                    apps: vec![grant("hr")]
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
        let mut agent = AgentControl::new("tok".into(), "0.1.0".into(), "linux".into());
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
        let mut agent = AgentControl::new("t".into(), "0".into(), "x".into());
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
        let mut agent = AgentControl::new("t".into(), "0".into(), "x".into());
        assert!(agent
            .handle_bytes(&to_frame(&Message::AppsChanged { apps: vec![] }))
            .is_err());

        // Bad framing.
        let mut agent = AgentControl::new("t".into(), "0".into(), "x".into());
        assert!(matches!(
            agent.handle_bytes(&[0xff, 0xff, 0xff, 0xff]),
            Err(SessionError::Frame(_))
        ));
    }
}
