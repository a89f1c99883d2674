//! The enrolment code parser on arbitrary text: a code or an error, no panic,
//! and a parsed code encodes back to the same code.
#![no_main]

use lanyard_proto::EnrolmentCode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(code) = EnrolmentCode::decode(text) {
            assert_eq!(EnrolmentCode::decode(&code.encode()).as_ref(), Ok(&code));
        }
    }
});
