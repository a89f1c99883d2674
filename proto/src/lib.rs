//! Lanyard's wire protocol.
//!
//! Everything here is pure: no sockets, no tasks, no clock. The broker, the
//! agent and the stress tester all speak through these types, and a test can
//! drive both ends of a conversation in memory.

#![forbid(unsafe_code)]
// A service logs through tracing; a stray print would go to every
// operator's journal (tests may still say what they skipped).
#![cfg_attr(
    not(test),
    deny(clippy::print_stderr, clippy::print_stdout, clippy::dbg_macro)
)]

pub mod codec;
pub mod datagram;
pub mod enrol;
pub mod frame;
pub mod host;
pub mod messages;
pub mod reconnect;
pub mod session;
pub mod stream;

pub use enrol::{EnrolmentCode, EnrolmentCodeError};
pub use frame::{FrameDecoder, FrameError, MAX_FRAME};
pub use messages::{AppGrant, AppProtocol, ErrorCode, KeyAlg, Message};

/// The ALPN protocol name an agent and the broker agree on over QUIC.
pub const ALPN: &[u8] = b"lanyard/1";

/// The protocol version carried in the first message of every connection.
/// Version 2 agents read the broker addresses a `Welcome` carries; version
/// 3 agents read the apps' details (target, host names, protocol) that
/// `Welcome` and `AppsChanged` carry.
pub const PROTOCOL_VERSION: u16 = 3;
/// The oldest agent protocol version the broker still serves.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// QUIC application close codes: why the broker ended a connection. The
/// agent decides from the code whether to redial, and shows the reason text.
pub mod close {
    /// An orderly end (the agent stops, or the broker drains).
    pub const NORMAL: u32 = 0;
    /// The peer broke the protocol.
    pub const PROTOCOL: u32 = 1;
    /// The device's certificate was revoked: do not redial; re-enrol.
    pub const DEVICE_REVOKED: u32 = 2;
    /// The session's access token is no longer valid: refresh the sign-in,
    /// then redial.
    pub const SIGNED_OUT: u32 = 3;
    /// The broker is stopping: redial with backoff.
    pub const SHUTDOWN: u32 = 4;
    /// The device certificate expired: renew or re-enrol.
    pub const CERT_EXPIRED: u32 = 5;
    /// The broker could not confirm revocation state and failed closed:
    /// redial with backoff.
    pub const STALE_STATE: u32 = 6;
    /// The broker is at capacity: redial with backoff.
    pub const AT_CAPACITY: u32 = 7;
    /// The sign-in was ended at the broker (the session was killed, the
    /// person disabled): a refresh cannot help; the person signs in again.
    pub const SIGN_IN_ENDED: u32 = 8;
}
