//! The Lanyard broker as a library: `lanyard-broker` is a thin main over it,
//! and the end-to-end tests run it in-process on 127.0.0.1 port 0.

#![forbid(unsafe_code)]

pub mod auth;
pub mod clock;
pub mod datadir;
pub mod model;
pub mod secrets;
pub mod store;
pub mod testkit;
