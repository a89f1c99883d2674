//! Both ends of the control stream fed arbitrary bytes.
//! The body is in `../src/bodies.rs`, which `proto/tests/fuzz_corpus.rs`
//! also runs over the seeds in `seeds/control_session/` on stable.
#![no_main]

#[path = "../src/bodies.rs"]
mod bodies;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bodies::control_session(data);
});
