//! Every message decoder, through the frame decoder, fed arbitrary bytes in arbitrary chunks.
//! The body is in `../src/bodies.rs`, which `proto/tests/fuzz_corpus.rs`
//! also runs over the seeds in `seeds/frame_decoder/` on stable.
#![no_main]

#[path = "../src/bodies.rs"]
mod bodies;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bodies::frame_decoder(data);
});
