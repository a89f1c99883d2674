//! An uploaded inventory CSV file, as arbitrary bytes, through the import's
//! reading and field checks.
//! The body is in `../src/broker_bodies.rs`, which
//! `broker/tests/fuzz_corpus.rs` also runs over the seeds in
//! `seeds/csv_import/` on stable.
#![no_main]

#[path = "../src/broker_bodies.rs"]
mod broker_bodies;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    broker_bodies::csv_import(data);
});
