//! UDP apps: each local peer's datagrams are one flow, carried in QUIC
//! datagrams as `flow id (u64, big-endian) | payload`. A flow is opened
//! and decided like a tunnel stream (`StreamOpen` for a UDP app); its flow
//! id is that stream's QUIC stream id, and the flow lasts as long as the
//! stream. A datagram too large for the connection is dropped and
//! counted, never split.

/// Bytes of header before each payload.
pub const HEADER_LEN: usize = 8;

/// One datagram of flow `flow` carrying `payload`.
pub fn encode(flow: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&flow.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The flow and payload of a datagram; `None` if it is too short.
pub fn decode(datagram: &[u8]) -> Option<(u64, &[u8])> {
    let (head, payload) = datagram.split_at_checked(HEADER_LEN)?;
    let mut id = [0u8; HEADER_LEN];
    id.copy_from_slice(head);
    Some((u64::from_be_bytes(id), payload))
}

/// Whether a payload fits a connection whose largest datagram is `max`
/// (`None`: the peer takes no datagrams).
pub fn fits(payload_len: usize, max: Option<usize>) -> bool {
    max.is_some_and(|m| payload_len + HEADER_LEN <= m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_carries_its_flow_and_payload() {
        let d = encode(4, b"INVITE sip:hr");
        assert_eq!(d.len(), HEADER_LEN + 13);
        assert_eq!(decode(&d), Some((4, &b"INVITE sip:hr"[..])));
        assert_eq!(decode(&encode(u64::MAX, b"")), Some((u64::MAX, &b""[..])));
        assert_eq!(decode(&[0; 7]), None);
        assert!(fits(1192, Some(1200)));
        assert!(!fits(1193, Some(1200)));
        assert!(!fits(1, None));
    }
}
