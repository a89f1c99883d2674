//! One typed protocol frame at a time over a quinn stream.

use std::time::Duration;

use lanyard_proto::frame::{decode_body, frame_len, to_frame};
use lanyard_proto::{ErrorCode, FrameError, Message};

#[derive(Debug, thiserror::Error)]
pub enum FramedError {
    #[error("the stream ended before a whole frame")]
    Truncated,
    #[error("no frame within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("stream: {0}")]
    Read(#[from] quinn::ReadExactError),
    #[error("stream: {0}")]
    Write(#[from] quinn::WriteError),
}

/// Reads exactly one frame from `recv`, within `limit`. What follows the
/// frame stays in the stream.
pub async fn read_frame(
    recv: &mut quinn::RecvStream,
    limit: Duration,
) -> Result<Message, FramedError> {
    let read = async {
        let mut prefix = [0u8; 4];
        recv.read_exact(&mut prefix).await.map_err(truncated)?;
        let len = frame_len(prefix)?;
        let mut body = vec![0u8; len];
        recv.read_exact(&mut body).await.map_err(truncated)?;
        Ok(decode_body(&body)?)
    };
    tokio::time::timeout(limit, read)
        .await
        .map_err(|_| FramedError::Timeout(limit))?
}

fn truncated(e: quinn::ReadExactError) -> FramedError {
    match e {
        quinn::ReadExactError::FinishedEarly(_) => FramedError::Truncated,
        other => FramedError::Read(other),
    }
}

/// Writes one frame.
pub async fn write_frame(send: &mut quinn::SendStream, msg: &Message) -> Result<(), FramedError> {
    Ok(send.write_all(&to_frame(msg)).await?)
}

/// A QUIC reset or stop code from a protocol error code.
pub fn code(c: ErrorCode) -> quinn::VarInt {
    quinn::VarInt::from_u32(c as u32)
}
