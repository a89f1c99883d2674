//! The async plumbing over QUIC streams that the broker, the agent and the
//! stress tester share: one typed frame read or written at a time
//! ([`framed`]), the relay of raw bytes between a TCP socket and a QUIC
//! stream ([`relay`]), the agent's side of opening a tunnel stream
//! ([`open`]), driven by `lanyard_proto::stream::StreamOpener`, and the UDP
//! socket quinn runs on ([`udp`]).
//!
//! The protocol itself (messages, framing, the state machines) is in
//! `lanyard-proto`, which has no I/O; this crate is its thin async layer.

#![forbid(unsafe_code)]
// A service logs through tracing; a stray print would go to every
// operator's journal (tests may still say what they skipped).
#![cfg_attr(
    not(test),
    deny(clippy::print_stderr, clippy::print_stdout, clippy::dbg_macro)
)]

pub mod framed;
pub mod open;
pub mod relay;
pub mod udp;

pub use framed::{code, read_frame, write_frame, FramedError};
pub use open::{open_flow_stream, open_tunnel, open_tunnel_with, Greeting, TunnelError};
pub use relay::{relay, Meters, Relayed};
