//! Protocol frames and raw bytes over QUIC streams, shared by the agent, the
//! broker and the stress tester: read or write one typed frame, then relay a
//! TCP socket and a QUIC stream both ways with half-close.
//!
//! The relay moves `Bytes` chunks: what quinn hands over is written to the
//! socket as it is, and what the socket gives is handed to quinn without a
//! further copy.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use lanyard_proto::frame::{decode_body, frame_len, to_frame};
use lanyard_proto::{ErrorCode, FrameError, Message};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// How much one socket read asks for.
const READ_CHUNK: usize = 64 * 1024;
/// How many received QUIC chunks one socket write takes at most.
const READ_BATCH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
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
) -> Result<Message, WireError> {
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
        .map_err(|_| WireError::Timeout(limit))?
}

fn truncated(e: quinn::ReadExactError) -> WireError {
    match e {
        quinn::ReadExactError::FinishedEarly(_) => WireError::Truncated,
        other => WireError::Read(other),
    }
}

/// Writes one frame.
pub async fn write_frame(send: &mut quinn::SendStream, msg: &Message) -> Result<(), WireError> {
    Ok(send.write_all(&to_frame(msg)).await?)
}

/// A QUIC reset or stop code from a protocol error code.
pub fn code(c: ErrorCode) -> quinn::VarInt {
    quinn::VarInt::from_u32(c as u32)
}

/// Byte counters a relay adds to as it goes.
#[derive(Debug, Clone, Copy)]
pub struct Meters<'a> {
    /// QUIC to TCP.
    pub inbound: &'a [&'a AtomicU64],
    /// TCP to QUIC.
    pub outbound: &'a [&'a AtomicU64],
}

fn add(counters: &[&AtomicU64], n: u64) {
    for c in counters {
        c.fetch_add(n, Relaxed);
    }
}

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    pub inbound: u64,
    pub outbound: u64,
}

/// QUIC to TCP until the QUIC side finishes (then a TCP write shutdown).
/// Every chunk quinn has ready is taken at once and written with one
/// vectored write: far fewer syscalls (and wake-ups of the reader) than a
/// write per QUIC frame.
async fn pump_in(
    recv: &mut quinn::RecvStream,
    tcp: &mut OwnedWriteHalf,
    meters: &[&AtomicU64],
) -> std::io::Result<u64> {
    let mut total = 0u64;
    let mut chunks: [Bytes; READ_BATCH] = Default::default();
    loop {
        let n = match recv.read_chunks(&mut chunks).await {
            Ok(Some(n)) => n,
            Ok(None) => {
                let _ = tcp.shutdown().await;
                return Ok(total);
            }
            Err(e) => return Err(std::io::Error::other(e)),
        };
        let len: u64 = chunks[..n].iter().map(|c| c.len() as u64).sum();
        if let Err(e) = write_all_vectored(tcp, &mut chunks[..n]).await {
            let _ = recv.stop(code(ErrorCode::Unavailable));
            return Err(e);
        }
        total += len;
        add(meters, len);
    }
}

/// Writes every byte of `chunks` (consuming them) with vectored writes.
async fn write_all_vectored(tcp: &mut OwnedWriteHalf, chunks: &mut [Bytes]) -> std::io::Result<()> {
    let mut first = 0;
    while first < chunks.len() {
        let slices: Vec<std::io::IoSlice<'_>> = chunks[first..]
            .iter()
            .map(|c| std::io::IoSlice::new(c))
            .collect();
        let mut written = tcp.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while first < chunks.len() && written >= chunks[first].len() {
            written -= chunks[first].len();
            chunks[first] = Bytes::new();
            first += 1;
        }
        if written > 0 {
            let _ = chunks[first].split_to(written);
        }
    }
    Ok(())
}

/// TCP to QUIC until the TCP side ends (then a QUIC FIN).
async fn pump_out(
    tcp: &mut OwnedReadHalf,
    send: &mut quinn::SendStream,
    meters: &[&AtomicU64],
) -> std::io::Result<u64> {
    let mut total = 0u64;
    // No buffer until the socket has something: a quiet stream holds none.
    let mut buf = BytesMut::new();
    loop {
        let read = match tcp.readable().await {
            Ok(()) => {
                buf.reserve(READ_CHUNK);
                tcp.try_read_buf(&mut buf)
            }
            Err(e) => Err(e),
        };
        let n = match read {
            Ok(0) => {
                let _ = send.finish();
                return Ok(total);
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                let _ = send.reset(code(ErrorCode::Unavailable));
                return Err(e);
            }
        };
        send.write_chunk(buf.split().freeze())
            .await
            .map_err(std::io::Error::other)?;
        total += n as u64;
        add(meters, n as u64);
    }
}

/// Relays `tcp` and a QUIC stream both ways until both directions end.
///
/// A direction ends cleanly when its sender finishes: a QUIC FIN becomes a
/// TCP write shutdown, a TCP end of file becomes a QUIC FIN. An error on
/// either side resets (or stops) the QUIC stream, so the far end sees an
/// error and never a clean end after missing bytes.
///
/// The caller keeps the QUIC halves: if it abandons the relay (a revocation),
/// it must reset them, since a dropped `SendStream` finishes cleanly.
pub async fn relay(
    tcp: TcpStream,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    meters: Meters<'_>,
) -> std::io::Result<Relayed> {
    let _ = tcp.set_nodelay(true);
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let (inbound, outbound) = tokio::join!(
        pump_in(recv, &mut tcp_write, meters.inbound),
        pump_out(&mut tcp_read, send, meters.outbound)
    );
    match (inbound, outbound) {
        (Ok(inbound), Ok(outbound)) => Ok(Relayed { inbound, outbound }),
        (Err(e), _) | (_, Err(e)) => {
            let _ = send.reset(code(ErrorCode::Unavailable));
            let _ = recv.stop(code(ErrorCode::Unavailable));
            Err(e)
        }
    }
}

/// Why a tunnel stream opened by the agent did not carry through.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("refused: {message}")]
    Refused { code: ErrorCode, message: String },
    #[error("the broker answered with an unexpected message")]
    Unexpected,
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The agent's side of a tunnel stream whose `StreamOpen` has been sent:
/// bytes from `tcp` flow at once (the broker holds them until it has
/// decided), and bytes back flow once the broker's answer says
/// `StreamAccepted`. A refusal ends the relay with its reason.
pub async fn relay_after_answer(
    tcp: TcpStream,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    answer_timeout: Duration,
    meters: Meters<'_>,
) -> Result<Relayed, StreamError> {
    let _ = tcp.set_nodelay(true);
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let result = {
        let inbound = async {
            match read_frame(&mut *recv, answer_timeout).await? {
                Message::StreamAccepted { .. } => {}
                Message::Refused { code, message } => {
                    return Err(StreamError::Refused { code, message })
                }
                _ => return Err(StreamError::Unexpected),
            }
            Ok(pump_in(&mut *recv, &mut tcp_write, meters.inbound).await?)
        };
        let outbound = pump_out(&mut tcp_read, &mut *send, meters.outbound);
        tokio::pin!(inbound, outbound);
        let mut sent = None;
        loop {
            tokio::select! {
                got = &mut inbound => match got {
                    Ok(n) => {
                        let out = match sent.take() {
                            Some(out) => out,
                            None => (&mut outbound).await,
                        };
                        break out.map(|o| Relayed { inbound: n, outbound: o }).map_err(StreamError::from);
                    }
                    Err(e) => break Err(e),
                },
                // Even if sending failed (the broker stops reading a stream it
                // refuses), the answer decides how the stream ended.
                out = &mut outbound, if sent.is_none() => sent = Some(out),
            }
        }
    };
    if result.is_err() {
        let _ = send.reset(code(ErrorCode::Unavailable));
        let _ = recv.stop(code(ErrorCode::Unavailable));
    }
    result
}
