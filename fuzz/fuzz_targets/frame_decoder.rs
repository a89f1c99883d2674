//! Every message decoder, through the frame decoder, fed arbitrary bytes in
//! arbitrary chunks: it must return messages or errors, never panic, and
//! never hold more than one maximal frame.
#![no_main]

use lanyard_proto::{FrameDecoder, MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let chunk = usize::from(split).max(1);
    let mut decoder = FrameDecoder::new();
    for part in rest.chunks(chunk) {
        let mut result = decoder.push(part);
        while let Ok(Some(msg)) = result {
            // What decodes must encode back to something that decodes equal.
            let frame = lanyard_proto::frame::to_frame(&msg);
            let mut again = FrameDecoder::new();
            assert_eq!(again.push(&frame).ok().flatten().as_ref(), Some(&msg));
            result = decoder.next_message();
        }
        assert!(decoder.buffered() <= 4 + MAX_FRAME + chunk);
        if result.is_err() {
            return;
        }
    }
});
