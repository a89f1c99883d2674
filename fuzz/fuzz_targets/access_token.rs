//! The broker's access token (JWT) verification on arbitrary text.
//! The body is in `../src/broker_bodies.rs`, which
//! `broker/tests/fuzz_corpus.rs` also runs over the seeds in
//! `seeds/access_token/` on stable.
#![no_main]

#[path = "../src/broker_bodies.rs"]
mod broker_bodies;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    broker_bodies::access_token(data);
});
