//! The Lanyard broker as a library: `lanyard-broker` is a thin main over it,
//! and the end-to-end tests run it in-process on 127.0.0.1 port 0.

#![forbid(unsafe_code)]
// A service logs through tracing; a stray print would go to every
// operator's journal (tests may still say what they skipped).
#![cfg_attr(
    not(test),
    deny(clippy::print_stderr, clippy::print_stdout, clippy::dbg_macro)
)]

pub mod api;
pub mod auth;
pub mod backup;
pub mod broker;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod console;
pub mod csv_import;
pub mod datadir;
pub mod histogram;
pub mod load;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod per_address;
pub mod policy;
pub mod process;
pub mod quic;
pub mod reload;
pub mod secrets;
pub mod state;
pub mod store;
pub mod systemd;
// The test kit tells the test's output what it skipped.
#[cfg(any(test, feature = "testkit"))]
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub mod testkit;
#[cfg(any(test, feature = "testkit"))]
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub mod testkit_oidc;
pub mod tls;
pub mod tunnel;

pub use broker::{Broker, StartError};
pub use config::Settings;
