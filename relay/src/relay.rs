//! Raw bytes between a TCP socket and a QUIC stream, both ways, with
//! half-close.
//!
//! The relay moves `Bytes` chunks: what quinn hands over is written to the
//! socket as it is, and what the socket gives is handed to quinn without a
//! further copy.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::{Bytes, BytesMut};
use lanyard_proto::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::framed::code;

/// How much one socket read asks for.
const READ_CHUNK: usize = 64 * 1024;
/// How many received QUIC chunks one socket write takes at most.
const READ_BATCH: usize = 32;

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
pub(crate) async fn pump_in(
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
pub(crate) async fn pump_out(
    tcp: &mut OwnedReadHalf,
    send: &mut quinn::SendStream,
    meters: &[&AtomicU64],
) -> std::io::Result<u64> {
    let mut total = 0u64;
    // No buffer until the socket has something: a quiet stream holds none.
    // The read itself goes through `AsyncRead`, which takes a read that did
    // not fill the buffer as the socket drained: no further read just to
    // hear that it would block.
    let mut buf = BytesMut::new();
    loop {
        let read = match tcp.readable().await {
            Ok(()) => {
                buf.reserve(READ_CHUNK);
                tcp.read_buf(&mut buf).await
            }
            Err(e) => Err(e),
        };
        let n = match read {
            Ok(0) => {
                let _ = send.finish();
                return Ok(total);
            }
            Ok(n) => n,
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
            reset_tcp(tcp_read, tcp_write);
            Err(e)
        }
    }
}

/// Ends a relayed TCP connection with a reset (RST) instead of a clean
/// close: after a failed stream the other end must see an error, never an
/// end of stream that would pass for a complete transfer.
pub(crate) fn reset_tcp(read: OwnedReadHalf, write: OwnedWriteHalf) {
    if let Ok(tcp) = read.reunite(write) {
        let _ = tcp.set_zero_linger();
    }
}
