//! The Lanyard agent as a library: the laptop side of enrolment, sign-in
//! and tunnels. `lanyard-agent` and the stress tester both use it.

#![forbid(unsafe_code)]

pub mod account;
pub mod backoff;
pub mod client;
pub mod forward;
pub mod identity;
pub mod logging;
pub mod pac;
pub mod proxy;
pub mod sso;
pub mod state;
pub mod udp;
pub mod up;
