//! The Lanyard agent as a library: the laptop side of enrolment, sign-in
//! and tunnels. `lanyard-agent` and the stress tester both use it.

#![forbid(unsafe_code)]

pub mod state;
pub mod wire;
