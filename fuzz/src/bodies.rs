//! The fuzz targets' bodies, shared by the fuzz targets (`fuzz_targets/`,
//! built by cargo-fuzz) and by `proto/tests/fuzz_corpus.rs`,
//! which runs them over the committed seeds (`fuzz/seeds/<target>/`) on
//! stable, so these code paths run in every `cargo test`. (`corpus/` is
//! left to libFuzzer and ignored by git.) Each body returns a count the
//! corpus test checks; the fuzz targets ignore it.
//! Only `lanyard_proto` is used here, so both can include this file.
#![allow(dead_code)] // each fuzz target uses one body

use lanyard_proto::session::{AgentControl, BrokerControl, Lifetimes};
use lanyard_proto::{
    frame::to_frame, EnrolmentCode, FrameDecoder, Message, MAX_FRAME, PROTOCOL_VERSION,
};

/// Every message decoder, through the frame decoder, fed arbitrary bytes in
/// arbitrary chunks (the first byte is the chunk size): it must return
/// messages or errors, never panic, and never hold more than one maximal
/// frame. Returns how many messages decoded.
pub fn frame_decoder(data: &[u8]) -> usize {
    let Some((&split, rest)) = data.split_first() else {
        return 0;
    };
    let chunk = usize::from(split).max(1);
    let mut decoder = FrameDecoder::new();
    let mut decoded = 0;
    for part in rest.chunks(chunk) {
        let mut result = decoder.push(part);
        while let Ok(Some(msg)) = result {
            decoded += 1;
            // What decodes must encode back to something that decodes equal.
            let frame = to_frame(&msg);
            let mut again = FrameDecoder::new();
            assert_eq!(again.push(&frame).ok().flatten().as_ref(), Some(&msg));
            result = decoder.next_message();
        }
        assert!(decoder.buffered() <= 4 + MAX_FRAME + chunk);
        if result.is_err() {
            return decoded;
        }
    }
    decoded
}

/// The enrolment code parser on arbitrary text: a code or an error, no
/// panic, and a parsed code encodes back to the same code. Returns whether
/// it parsed.
pub fn enrolment_code(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(code) = EnrolmentCode::decode(text) else {
        return false;
    };
    assert_eq!(EnrolmentCode::decode(&code.encode()).as_ref(), Ok(&code));
    true
}

/// Both ends of the control stream fed arbitrary bytes (the first byte is
/// the chunk size; the broker's side after a valid hello, so the open state
/// is reached too): each must hand out events or an error, never panic, and
/// stay closed after an error. Returns how many events and answers (frames
/// to send) the bytes gave.
pub fn control_session(data: &[u8]) -> usize {
    let Some((&split, rest)) = data.split_first() else {
        return 0;
    };
    let chunk = usize::from(split).max(1);
    const HOUR: u64 = 3_600_000;
    let life = Lifetimes {
        token_issued_at: 0,
        token_expires_at: HOUR,
        cert_issued_at: 0,
        cert_expires_at: 24 * HOUR,
    };
    let mut agent = AgentControl::new("t".into(), "0".into(), "x".into(), life, 0);
    let mut broker = BrokerControl::new();
    let hello = to_frame(&Message::Hello {
        version: PROTOCOL_VERSION,
        access_token: "t".into(),
        agent_version: "0".into(),
        os: "x".into(),
    });
    broker.handle_bytes(&hello).expect("a valid hello");
    while broker.poll_event().is_some() {}
    broker.welcome("s".into(), vec![], vec!["b:4433".into()], HOUR);
    while agent.poll_transmit().is_some() {}
    if let Some(welcome) = broker.poll_transmit() {
        agent.handle_bytes(&welcome).expect("a valid welcome");
    }
    while agent.poll_event().is_some() {}
    assert!(agent.is_open() && broker.is_open(), "the session opened");
    let mut events = 0;
    for part in rest.chunks(chunk) {
        let a = agent.handle_bytes(part);
        let b = broker.handle_bytes(part);
        while agent.poll_event().is_some() {
            events += 1;
        }
        while broker.poll_event().is_some() {
            events += 1;
        }
        while agent.poll_transmit().is_some() {
            events += 1;
        }
        while broker.poll_transmit().is_some() {
            events += 1;
        }
        if a.is_err() {
            assert!(agent.is_closed());
        }
        if b.is_err() {
            assert!(broker.is_closed());
        }
    }
    events
}
