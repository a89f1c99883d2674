//! Live sessions and the streams they carry: the registry that
//! `lanyard sessions list` reads and revocation acts on, the relay itself is
//! `lanyard_agent::wire::relay`, shared with the agent.

pub mod sessions;

pub use sessions::{LiveSession, SessionView, Sessions};
