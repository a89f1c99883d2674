//! Lanyard's wire protocol.
//!
//! Everything here is pure: no sockets, no tasks, no clock. The broker, the
//! agent and the stress tester all speak through these types, and a test can
//! drive both ends of a conversation in memory.

#![forbid(unsafe_code)]

pub mod enrol;
pub mod frame;
pub mod messages;
pub mod wire;

pub use enrol::{EnrolmentCode, EnrolmentCodeError};
pub use frame::{FrameDecoder, FrameError, MAX_FRAME};
pub use messages::{AppGrant, ErrorCode, KeyAlg, Message};

/// The ALPN protocol name an agent and the broker agree on over QUIC.
pub const ALPN: &[u8] = b"lanyard/1";

/// The protocol version carried in the first message of every connection.
pub const PROTOCOL_VERSION: u16 = 1;
