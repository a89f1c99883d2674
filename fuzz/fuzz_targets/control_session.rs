//! Both ends of the control stream fed arbitrary bytes (the broker's side
//! after a valid hello, so the open state is reached too): each must hand
//! out events or an error, never panic, and stay closed after an error.
#![no_main]

use lanyard_proto::session::{AgentControl, BrokerControl};
use lanyard_proto::{frame::to_frame, Message, PROTOCOL_VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let chunk = usize::from(split).max(1);

    let mut agent = AgentControl::new("t".into(), "0".into(), "x".into());
    let mut broker = BrokerControl::new();
    let hello = to_frame(&Message::Hello {
        version: PROTOCOL_VERSION,
        access_token: "t".into(),
        agent_version: "0".into(),
        os: "x".into(),
    });
    broker.handle_bytes(&hello).expect("a valid hello");
    while broker.poll_event().is_some() {}
    broker.welcome("s".into(), vec![]);
    if let Some(welcome) = broker.poll_transmit() {
        agent.handle_bytes(&welcome).expect("a valid welcome");
    }
    for part in rest.chunks(chunk) {
        let a = agent.handle_bytes(part);
        let b = broker.handle_bytes(part);
        while agent.poll_event().is_some() {}
        while broker.poll_event().is_some() {}
        let _ = agent.poll_transmit();
        let _ = broker.poll_transmit();
        if a.is_err() {
            assert!(agent.is_closed());
        }
        if b.is_err() {
            assert!(broker.is_closed());
        }
    }
});
