//! Opening a tunnel stream, as a sans-IO machine for the agent's side.
//!
//! The agent sends `StreamOpen { app, request_id }` and may send the
//! client's first bytes straight after it (the broker holds them in flow
//! control while it decides). The broker's first frame on the stream is the
//! answer: `StreamAccepted` with the same request id, or `Refused` with a
//! reason. Anything else, or no answer by the deadline, ends the stream.
//! The agent, the stress tester and the tests all open streams through this.

use crate::frame::to_frame;
use crate::messages::{ErrorCode, Message};
use crate::session::Millis;

/// Why a tunnel stream did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamOpenError {
    /// The broker decided against it, and says why.
    #[error("refused: {message}")]
    Refused { code: ErrorCode, message: String },
    /// The broker answered with a message that is no answer to an open.
    #[error("the broker answered a stream open with {got}")]
    Unexpected { got: &'static str },
    /// The answer is for another stream.
    #[error("the broker answered request {got}, not {expected}")]
    OtherRequest { expected: u64, got: u64 },
    /// No answer by the deadline.
    #[error("the broker did not answer within {0} ms")]
    TimedOut(Millis),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Accepted,
    Failed,
}

/// The agent's side of one tunnel stream's opening.
#[derive(Debug)]
pub struct StreamOpener {
    request_id: u64,
    frame: Vec<u8>,
    answer_by: Millis,
    answer_within: Millis,
    state: State,
}

impl StreamOpener {
    /// Opens a stream to `app` at `now`; the answer must come within
    /// `answer_within` ms.
    pub fn new(app: &str, request_id: u64, now: Millis, answer_within: Millis) -> Self {
        Self {
            request_id,
            frame: to_frame(&Message::StreamOpen {
                app: app.to_owned(),
                request_id,
            }),
            answer_by: now.saturating_add(answer_within),
            answer_within,
            state: State::Waiting,
        }
    }

    /// The `StreamOpen` frame, to send first on the stream.
    pub fn frame(&self) -> &[u8] {
        &self.frame
    }

    /// Takes the broker's first frame on the stream.
    pub fn handle_answer(&mut self, answer: Message) -> Result<(), StreamOpenError> {
        if self.state != State::Waiting {
            return Err(StreamOpenError::Unexpected { got: answer.name() });
        }
        let result = match answer {
            Message::StreamAccepted { request_id } if request_id == self.request_id => Ok(()),
            Message::StreamAccepted { request_id } => Err(StreamOpenError::OtherRequest {
                expected: self.request_id,
                got: request_id,
            }),
            Message::Refused { code, message } => Err(StreamOpenError::Refused { code, message }),
            other => Err(StreamOpenError::Unexpected { got: other.name() }),
        };
        self.state = if result.is_ok() {
            State::Accepted
        } else {
            State::Failed
        };
        result
    }

    /// When the answer is due, while it is awaited.
    pub fn poll_timeout(&self) -> Option<Millis> {
        (self.state == State::Waiting).then_some(self.answer_by)
    }

    /// Gives up once the deadline has passed with no answer.
    pub fn handle_timeout(&mut self, now: Millis) -> Result<(), StreamOpenError> {
        if self.state == State::Waiting && now >= self.answer_by {
            self.state = State::Failed;
            return Err(StreamOpenError::TimedOut(self.answer_within));
        }
        Ok(())
    }

    pub fn is_accepted(&self) -> bool {
        self.state == State::Accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameDecoder;

    #[test]
    fn the_open_frame_names_the_app_and_the_request() {
        let opener = StreamOpener::new("hr-system", 7, 0, 1_000);
        let mut decoder = FrameDecoder::new();
        assert_eq!(
            decoder.push(opener.frame()).unwrap(),
            Some(Message::StreamOpen {
                app: "hr-system".into(),
                request_id: 7
            })
        );
    }

    #[test]
    fn an_accepted_stream_opens() {
        let mut opener = StreamOpener::new("hr", 7, 0, 1_000);
        assert_eq!(opener.poll_timeout(), Some(1_000));
        opener
            .handle_answer(Message::StreamAccepted { request_id: 7 })
            .unwrap();
        assert!(opener.is_accepted());
        assert_eq!(opener.poll_timeout(), None);
        assert_eq!(opener.handle_timeout(5_000), Ok(()));
    }

    #[test]
    fn a_refused_stream_carries_the_reason() {
        let mut opener = StreamOpener::new("hr", 7, 0, 1_000);
        let err = opener
            .handle_answer(Message::refused(
                ErrorCode::Forbidden,
                "hr may only be reached from managed devices",
            ))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "refused: hr may only be reached from managed devices"
        );
        assert!(matches!(
            err,
            StreamOpenError::Refused {
                code: ErrorCode::Forbidden,
                ..
            }
        ));
        assert!(!opener.is_accepted());
    }

    #[test]
    fn another_request_or_message_is_not_an_answer() {
        let mut opener = StreamOpener::new("hr", 7, 0, 1_000);
        assert_eq!(
            opener.handle_answer(Message::StreamAccepted { request_id: 8 }),
            Err(StreamOpenError::OtherRequest {
                expected: 7,
                got: 8
            })
        );
        let mut opener = StreamOpener::new("hr", 7, 0, 1_000);
        assert_eq!(
            opener.handle_answer(Message::Ping { nonce: 1 }),
            Err(StreamOpenError::Unexpected { got: "Ping" })
        );
        // Once decided, a second answer is an error too.
        let mut opener = StreamOpener::new("hr", 7, 0, 1_000);
        opener
            .handle_answer(Message::StreamAccepted { request_id: 7 })
            .unwrap();
        assert!(opener
            .handle_answer(Message::StreamAccepted { request_id: 7 })
            .is_err());
    }

    #[test]
    fn no_answer_by_the_deadline_times_out_once() {
        let mut opener = StreamOpener::new("hr", 7, 100, 1_000);
        assert_eq!(opener.handle_timeout(1_099), Ok(()));
        assert_eq!(
            opener.handle_timeout(1_100),
            Err(StreamOpenError::TimedOut(1_000))
        );
        assert_eq!(opener.poll_timeout(), None);
        assert!(opener
            .handle_answer(Message::StreamAccepted { request_id: 7 })
            .is_err());
    }
}
