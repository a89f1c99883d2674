//! Framing: `length (u32, big-endian) | type (u8) | payload`, where length
//! counts the type byte and the payload and is at most [`MAX_FRAME`].
//!
//! [`FrameDecoder`] is sans-IO: feed it whatever bytes arrived, take whole
//! messages out. It never buffers more than one maximal frame, and a bad
//! length is refused as soon as its four bytes are seen.

use crate::codec::{DecodeError, Writer};
use crate::messages::Message;

/// The largest frame, type byte included.
pub const MAX_FRAME: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} is outside 1..={MAX_FRAME}")]
    Length(u64),
    #[error("bad frame: {0}")]
    Decode(#[from] DecodeError),
    #[error("the stream ended inside a frame ({0} bytes buffered)")]
    Incomplete(usize),
}

/// Encodes one message as a frame, appending to `out`.
pub fn encode(msg: &Message, out: &mut Vec<u8>) {
    let mut w = Writer::default();
    w.u8(msg.tag());
    msg.write_payload(&mut w);
    out.extend_from_slice(&(w.buf.len() as u32).to_be_bytes());
    out.extend_from_slice(&w.buf);
}

/// Encodes one message as a new frame.
pub fn to_frame(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode(msg, &mut out);
    out
}

/// Reads a frame's 4-byte length prefix: the number of bytes that follow
/// (type byte and payload), checked against [`MAX_FRAME`]. For readers that
/// take one frame at a time off a stream and then switch to raw bytes.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(FrameError::Length(len as u64));
    }
    Ok(len)
}

/// Decodes the body of one frame (what follows its length prefix).
pub fn decode_body(body: &[u8]) -> Result<Message, FrameError> {
    match body.split_first() {
        Some((tag, payload)) => Ok(Message::decode(*tag, payload)?),
        None => Err(FrameError::Length(0)),
    }
}

/// Reassembles frames from arbitrary chunks.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    failed: bool,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Adds bytes and returns the next whole message, if any; call
    /// [`next_message`](Self::next_message) again for further messages from the same bytes.
    /// After an error the decoder refuses everything: the stream is bad.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<Message>, FrameError> {
        if !self.failed {
            self.buf.extend_from_slice(bytes);
        }
        self.next_message()
    }

    /// The next whole message already buffered, if any.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        if self.failed {
            return Err(FrameError::Decode(DecodeError::BadValue(
                "stream already failed",
            )));
        }
        let result = self.take();
        if result.is_err() {
            self.failed = true;
            self.buf = Vec::new();
        }
        result
    }

    fn take(&mut self) -> Result<Option<Message>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = frame_len([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])?;
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let msg = Message::decode(self.buf[4], &self.buf[5..4 + len])?;
        if self.buf.len() == 4 + len {
            // Nothing left over: a session's decoder waits most of its life
            // between messages, and holds no buffer while it does.
            self.buf = Vec::new();
        } else {
            self.buf.drain(..4 + len);
        }
        Ok(Some(msg))
    }

    /// Call when the stream ends: an error if half a frame is left.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Incomplete(self.buf.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{AppGrant, ErrorCode, KeyAlg};

    fn samples() -> Vec<Message> {
        vec![
            Message::EnrolRequest {
                secret: [3; 20],
                key_alg: KeyAlg::EcdsaP256,
                public_key: vec![4; 65],
                proof: vec![9; 70],
                agent_version: "0.1.0".into(),
                os: "linux".into(),
            },
            Message::Certificate {
                certificate: vec![0x30; 600],
                expires_at: 1_800_000_000,
            },
            Message::Renew,
            Message::SignIn {
                username: "j.smith".into(),
                password: "pw".into(),
                totp: Some("123456".into()),
            },
            Message::SignIn {
                username: "j.smith".into(),
                password: "pw".into(),
                totp: None,
            },
            Message::Tokens {
                access_token: "a.b.c".into(),
                refresh_token: "lyr_x".into(),
                expires_in: 900,
            },
            Message::Refresh {
                refresh_token: "lyr_x".into(),
            },
            Message::SignOut {
                refresh_token: "lyr_x".into(),
            },
            Message::SignedOut,
            Message::Hello {
                version: 1,
                access_token: "a.b.c".into(),
                agent_version: "0.1.0".into(),
                os: "macos".into(),
            },
            Message::Welcome {
                session_id: "s1".into(),
                apps: vec![
                    AppGrant {
                        port_hint: 8080,
                        ..AppGrant::named("hr")
                    },
                    AppGrant::named("pbx"),
                ],
                addrs: vec!["a.council.example:4433".into(), "10.0.0.2:4433".into()],
            },
            Message::Welcome {
                session_id: "s3".into(),
                apps: vec![
                    AppGrant {
                        target: "10.0.0.5:443".into(),
                        hosts: vec!["hr.council.internal".into(), "hr".into()],
                        ..AppGrant::named("hr")
                    },
                    AppGrant {
                        target: "pbx.internal:5060".into(),
                        protocol: crate::AppProtocol::Udp,
                        ..AppGrant::named("pbx")
                    },
                ],
                addrs: vec![],
            },
            Message::AppsChanged {
                apps: vec![AppGrant {
                    target: "10.0.0.5:443".into(),
                    hosts: vec!["hr.council.internal".into()],
                    ..AppGrant::named("hr")
                }],
            },
            Message::Welcome {
                session_id: "s2".into(),
                apps: vec![],
                addrs: vec![],
            },
            Message::AppsChanged { apps: vec![] },
            Message::Ping { nonce: 42 },
            Message::Pong { nonce: 42 },
            Message::Revoked {
                reason: "laptop marked lost".into(),
            },
            Message::Refused {
                code: ErrorCode::AtCapacity,
                message: "at capacity, try again later".into(),
            },
            Message::StreamOpen {
                app: "hr".into(),
                request_id: 7,
            },
            Message::StreamAccepted { request_id: 7 },
        ]
    }

    #[test]
    fn the_apps_details_stay_within_one_frame() {
        // 200 apps with 16 long names each would be 800 KiB of details.
        let long = |i: usize, j: usize| format!("{}.{i}.{j}", "n".repeat(60));
        let apps: Vec<AppGrant> = (0..200)
            .map(|i| AppGrant {
                target: format!("10.0.{i}.1:443"),
                hosts: (0..16).map(|j| long(i, j)).collect(),
                ..AppGrant::named(format!("app{i}"))
            })
            .collect();
        let frame = to_frame(&Message::AppsChanged { apps: apps.clone() });
        assert!(frame.len() - 4 <= MAX_FRAME, "{}", frame.len());
        let Some(Message::AppsChanged { apps: got }) = FrameDecoder::new().push(&frame).unwrap()
        else {
            panic!("not decoded");
        };
        // Every app is there; the first ones with their details, the rest
        // without (reached by their local port only).
        assert_eq!(got.len(), 200);
        let with = got.iter().take_while(|a| !a.hosts.is_empty()).count();
        assert!(with > 10 && with < 200, "{with}");
        assert_eq!(got[..with], apps[..with]);
        assert!(got[with..].iter().all(|a| a.target.is_empty()));
    }

    #[test]
    fn details_naming_more_apps_than_the_list_are_refused() {
        let mut frame = to_frame(&Message::AppsChanged {
            apps: vec![AppGrant {
                target: "a:1".into(),
                ..AppGrant::named("a")
            }],
        });
        // The details' count (after the one app's name and port) says 2.
        let at = 4 + 1 + 2 + 2 + 1 + 2;
        assert_eq!(&frame[at..at + 2], &[0, 1]);
        frame[at + 1] = 2;
        assert!(FrameDecoder::new().push(&frame).is_err());
    }

    #[test]
    fn every_message_round_trips_through_a_frame() {
        for msg in samples() {
            let frame = to_frame(&msg);
            let mut d = FrameDecoder::new();
            assert_eq!(d.push(&frame).unwrap(), Some(msg.clone()), "{msg:?}");
            d.finish().unwrap();
        }
    }

    #[test]
    fn a_decoder_between_messages_holds_no_buffer() {
        let hello = to_frame(&samples()[9]);
        let mut d = FrameDecoder::new();
        // Half a message is kept; the whole one leaves nothing allocated.
        assert_eq!(d.push(&hello[..10]).unwrap(), None);
        assert!(d.buf.capacity() >= 10);
        assert!(d.push(&hello[10..]).unwrap().is_some());
        assert_eq!(d.buf.capacity(), 0);
        // A message and a part of the next: the part stays.
        let mut two = hello.clone();
        two.extend_from_slice(&hello[..5]);
        assert!(d.push(&two).unwrap().is_some());
        assert_eq!(d.buffered(), 5);
        assert!(d.push(&hello[5..]).unwrap().is_some());
        assert_eq!((d.buffered(), d.buf.capacity()), (0, 0));
    }

    #[test]
    fn frames_split_anywhere_and_joined_together_decode() {
        let mut stream = Vec::new();
        for msg in samples() {
            encode(&msg, &mut stream);
        }
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            for part in stream.chunks(chunk) {
                if let Some(m) = d.push(part).unwrap() {
                    got.push(m);
                }
                while let Some(m) = d.next_message().unwrap() {
                    got.push(m);
                }
            }
            d.finish().unwrap();
            assert_eq!(got, samples(), "chunk {chunk}");
        }
    }

    #[test]
    fn oversized_zero_and_truncated_frames_are_refused() {
        let mut d = FrameDecoder::new();
        assert_eq!(
            d.push(&[0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::Length(u32::MAX as u64))
        );
        assert!(
            d.push(&to_frame(&Message::Renew)).is_err(),
            "a failed stream stays failed"
        );
        assert_eq!(d.buffered(), 0);

        let mut d = FrameDecoder::new();
        assert_eq!(d.push(&[0, 0, 0, 0]), Err(FrameError::Length(0)));

        let mut d = FrameDecoder::new();
        let frame = to_frame(&Message::Ping { nonce: 1 });
        assert_eq!(d.push(&frame[..frame.len() - 1]), Ok(None));
        assert_eq!(d.finish(), Err(FrameError::Incomplete(frame.len() - 1)));

        // A "negative" length read as u32 is simply too long.
        let mut d = FrameDecoder::new();
        assert_eq!(
            d.push(&(-1i32).to_be_bytes()),
            Err(FrameError::Length(u32::MAX as u64))
        );
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let mut d = FrameDecoder::new();
        assert_eq!(
            d.push(&[0, 0, 0, 1, 0x7f]),
            Err(FrameError::Decode(DecodeError::UnknownType(0x7f)))
        );
        // A Ping with trailing bytes.
        let mut d = FrameDecoder::new();
        assert_eq!(
            d.push(&[0, 0, 0, 10, 0x23, 0, 0, 0, 0, 0, 0, 0, 1, 9]),
            Err(FrameError::Decode(DecodeError::Trailing(1)))
        );
        // An app list claiming more entries than allowed.
        let mut d = FrameDecoder::new();
        assert!(matches!(
            d.push(&[0, 0, 0, 3, 0x22, 0xff, 0xff]),
            Err(FrameError::Decode(DecodeError::TooLong { .. }))
        ));
        // An SSO URL answer claiming more redirect ports than allowed
        // (empty URL, then 17 ports).
        let mut d = FrameDecoder::new();
        assert!(matches!(
            d.push(&[0, 0, 0, 5, 0x16, 0, 0, 0, 17]),
            Err(FrameError::Decode(DecodeError::TooLong {
                len: 17,
                max: 16
            }))
        ));
        // An SSO code longer than its limit.
        let mut long = vec![0, 0, 0x10, 0x06, 0x17, 0x10, 0x01];
        long.extend(std::iter::repeat_n(b'a', 0x1001));
        long.extend([0, 0]);
        let mut d = FrameDecoder::new();
        assert!(matches!(
            d.push(&long),
            Err(FrameError::Decode(DecodeError::TooLong { .. }))
        ));
        // A refusal with an unknown code.
        let mut d = FrameDecoder::new();
        assert!(matches!(
            d.push(&[0, 0, 0, 5, 0x26, 0, 99, 0, 0]),
            Err(FrameError::Decode(DecodeError::BadValue(_)))
        ));
    }

    #[test]
    fn debug_output_hides_secrets() {
        for msg in samples() {
            let shown = format!("{msg:?}");
            for secret in ["pw", "a.b.c", "lyr_x", "123456"] {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
    }

    /// Every prefix of a valid frame shorter than the whole is "need more"
    /// (`Ok(None)`, nothing lost), and the rest, arriving byte by byte,
    /// gives back the message at its last byte and not before.
    #[test]
    fn a_truncated_frame_waits_for_the_rest() {
        for msg in samples() {
            let frame = to_frame(&msg);
            for cut in 0..frame.len() {
                let mut d = FrameDecoder::new();
                assert_eq!(d.push(&frame[..cut]), Ok(None), "{msg:?} cut at {cut}");
                assert_eq!(d.buffered(), cut, "{msg:?} cut at {cut}");
                if cut > 0 {
                    assert_eq!(d.finish(), Err(FrameError::Incomplete(cut)));
                }
                for (at, byte) in frame.iter().enumerate().skip(cut) {
                    let got = d.push(&[*byte]);
                    if at + 1 < frame.len() {
                        assert_eq!(got, Ok(None), "{msg:?} cut at {cut}, byte {at}");
                    } else {
                        assert_eq!(got, Ok(Some(msg.clone())), "{msg:?} cut at {cut}");
                    }
                }
                assert_eq!(d.buffered(), 0);
                assert_eq!(d.finish(), Ok(()));
            }
        }
    }

    /// Corrupting a length prefix: past [`MAX_FRAME`] (or zero) it is the
    /// length error, at once and for good; a longer length in range waits
    /// for more; a shorter one is an error or some other message.
    #[test]
    fn a_corrupted_length_is_refused_as_too_long() {
        for msg in samples() {
            let frame = to_frame(&msg);
            let real = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
            for i in 0..4 {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut bad = frame.clone();
                    bad[i] ^= flip;
                    let len = u32::from_be_bytes([bad[0], bad[1], bad[2], bad[3]]);
                    let mut d = FrameDecoder::new();
                    let got = d.push(&bad);
                    let what = format!("{msg:?}: byte {i} ^ {flip:#04x}, length {len}");
                    if len == 0 || len as usize > MAX_FRAME {
                        assert_eq!(got, Err(FrameError::Length(len.into())), "{what}");
                        assert_eq!(d.buffered(), 0, "{what}");
                        assert!(
                            d.push(&frame).is_err(),
                            "{what}: a failed stream stays failed"
                        );
                    } else if len > real {
                        assert_eq!(got, Ok(None), "{what}");
                        assert_eq!(d.buffered(), bad.len(), "{what}");
                    } else {
                        match got {
                            Err(FrameError::Decode(_)) => {}
                            Ok(Some(other)) => assert_ne!(to_frame(&other), frame, "{what}"),
                            other => panic!("{what}: {other:?}"),
                        }
                    }
                }
            }
            // The high byte alone makes any length too long.
            let mut bad = frame.clone();
            bad[0] = 0x01;
            assert_eq!(
                FrameDecoder::new().push(&bad),
                Err(FrameError::Length((1 << 24) + u64::from(real)))
            );
        }
    }

    /// Corrupting one byte of a frame's body (type or payload) gives a
    /// decode error or a different message, which re-encodes to exactly the
    /// corrupted frame: never the original message, never "need more",
    /// never a panic.
    #[test]
    fn a_corrupted_body_is_an_error_or_another_message() {
        for msg in samples() {
            let frame = to_frame(&msg);
            for i in 4..frame.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut bad = frame.clone();
                    bad[i] ^= flip;
                    let mut d = FrameDecoder::new();
                    let what = format!("{msg:?}: byte {i} ^ {flip:#04x}");
                    match d.push(&bad) {
                        Err(FrameError::Decode(_)) => {
                            assert_eq!(d.buffered(), 0, "{what}");
                        }
                        Ok(Some(other)) => {
                            assert_ne!(other, msg, "{what}");
                            assert_eq!(to_frame(&other), bad, "{what}: decoded {other:?}");
                            assert_eq!(d.finish(), Ok(()), "{what}");
                        }
                        other => panic!("{what}: {other:?}"),
                    }
                }
            }
        }
    }
}
