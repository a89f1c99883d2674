//! The tunnel: each stream's admission, its relay to the app's socket
//! ([`stream`]), and the registry of live sessions that
//! `lanyard sessions list/kill` reads and revocation acts on ([`sessions`]).
//! The bytes themselves move in `lanyard_relay`, shared with the agent.

pub mod flow;
pub mod sessions;
pub mod stream;

pub use sessions::{LiveSession, SessionView, Sessions};
