//! The agent's side of a tunnel stream: open it, send the client's bytes
//! at once (the broker holds them in flow control while it decides), and
//! carry bytes back once the broker's answer says the stream is accepted.
//! The answer is judged by `lanyard_proto::stream::StreamOpener`.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lanyard_proto::session::Millis;
use lanyard_proto::stream::{StreamOpenError, StreamOpener};
use lanyard_proto::ErrorCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::framed::{code, read_frame, FramedError};
use crate::relay::{pump_in, pump_out, reset_tcp, Meters, Relayed};

/// Why a tunnel stream opened by the agent did not carry through.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(transparent)]
    Open(#[from] StreamOpenError),
    #[error("cannot open a stream: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error(transparent)]
    Framed(#[from] FramedError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl TunnelError {
    /// The broker's refusal, when that is what ended the stream.
    pub fn refusal(&self) -> Option<(ErrorCode, &str)> {
        match self {
            TunnelError::Open(StreamOpenError::Refused { code, message }) => {
                Some((*code, message.as_str()))
            }
            _ => None,
        }
    }
}

fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// What to tell a client whose stream failed before the broker accepted it.
pub type NotAccepted<'a> = &'a (dyn Fn(&TunnelError) -> Vec<u8> + Sync);

/// What a local proxy puts around a tunnel stream (nothing, for a forward).
#[derive(Default, Clone, Copy)]
pub struct Greeting<'a> {
    /// Sent to the app ahead of the client's bytes (a request head the
    /// proxy has already read and rewritten).
    pub to_app: &'a [u8],
    /// Written to the client once the broker accepts the stream (e.g.
    /// `HTTP/1.1 200 Connection established`).
    pub accepted: &'a [u8],
    /// When the stream fails before the broker accepted it: what to tell
    /// the client (e.g. a 403 with the broker's reason) before the
    /// connection is closed in order, instead of reset.
    pub not_accepted: Option<NotAccepted<'a>>,
}

/// Tells the client why its stream was not accepted, if the greeting
/// says how, and closes its connection in order.
async fn answer_not_accepted(
    tcp_write: &mut tokio::net::tcp::OwnedWriteHalf,
    greeting: &Greeting<'_>,
    error: &TunnelError,
) -> bool {
    let Some(answer) = greeting.not_accepted else {
        return false;
    };
    let bytes = answer(error);
    let _ = tcp_write.write_all(&bytes).await;
    let _ = tcp_write.shutdown().await;
    true
}

/// Opens a stream to `app` on `conn` and waits for the broker to accept
/// it: a UDP flow's stream, which carries no bytes (its datagrams travel
/// beside it) and lasts as long as the flow.
pub async fn open_flow_stream(
    conn: &quinn::Connection,
    app: &str,
    request_id: u64,
    answer_within: Duration,
) -> Result<(quinn::SendStream, quinn::RecvStream), TunnelError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut opener = StreamOpener::new(
        app,
        request_id,
        now_ms(),
        answer_within.as_millis() as Millis,
    );
    send.write_all(opener.frame())
        .await
        .map_err(FramedError::from)?;
    let deadline = opener.poll_timeout().unwrap_or_else(now_ms);
    let left = Duration::from_millis(deadline.saturating_sub(now_ms()));
    match read_frame(&mut recv, left).await {
        Ok(answer) => opener.handle_answer(answer)?,
        Err(FramedError::Timeout(_)) => opener.handle_timeout(deadline)?,
        Err(e) => return Err(e.into()),
    }
    Ok((send, recv))
}

/// Opens a tunnel stream to `app` on `conn` for `tcp` and relays it until
/// both directions end. The broker must answer within `answer_within`.
pub async fn open_tunnel(
    conn: &quinn::Connection,
    app: &str,
    request_id: u64,
    tcp: TcpStream,
    answer_within: Duration,
    meters: Meters<'_>,
) -> Result<Relayed, TunnelError> {
    open_tunnel_with(
        conn,
        app,
        request_id,
        tcp,
        answer_within,
        meters,
        Greeting::default(),
    )
    .await
}

/// [`open_tunnel`], with what a local proxy puts around the stream.
pub async fn open_tunnel_with(
    conn: &quinn::Connection,
    app: &str,
    request_id: u64,
    tcp: TcpStream,
    answer_within: Duration,
    meters: Meters<'_>,
    greeting: Greeting<'_>,
) -> Result<Relayed, TunnelError> {
    let _ = tcp.set_nodelay(true);
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let (mut send, mut recv) = match conn.open_bi().await {
        Ok(s) => s,
        Err(e) => {
            let e = TunnelError::from(e);
            answer_not_accepted(&mut tcp_write, &greeting, &e).await;
            return Err(e);
        }
    };
    let mut opener = StreamOpener::new(
        app,
        request_id,
        now_ms(),
        answer_within.as_millis() as Millis,
    );
    let mut first = Vec::with_capacity(opener.frame().len() + greeting.to_app.len());
    first.extend_from_slice(opener.frame());
    first.extend_from_slice(greeting.to_app);
    if let Err(e) = send.write_all(&first).await {
        let e = TunnelError::from(FramedError::from(e));
        answer_not_accepted(&mut tcp_write, &greeting, &e).await;
        return Err(e);
    }
    let accepted = AtomicBool::new(false);
    let result = {
        let inbound = async {
            let deadline = opener.poll_timeout().unwrap_or_else(now_ms);
            let left = Duration::from_millis(deadline.saturating_sub(now_ms()));
            match read_frame(&mut recv, left).await {
                Ok(answer) => opener.handle_answer(answer)?,
                Err(FramedError::Timeout(_)) => opener.handle_timeout(deadline)?,
                Err(e) => return Err(e.into()),
            }
            accepted.store(true, Relaxed);
            if !greeting.accepted.is_empty() {
                tcp_write.write_all(greeting.accepted).await?;
            }
            Ok::<_, TunnelError>(pump_in(&mut recv, &mut tcp_write, meters.inbound).await?)
        };
        let outbound = pump_out(&mut tcp_read, &mut send, meters.outbound);
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
                        break out.map(|o| Relayed { inbound: n, outbound: o }).map_err(TunnelError::from);
                    }
                    Err(e) => break Err(e),
                },
                // Even if sending failed (the broker stops reading a stream it
                // refuses), the answer decides how the stream ended.
                out = &mut outbound, if sent.is_none() => sent = Some(out),
            }
        }
    };
    if let Err(e) = &result {
        let _ = send.reset(code(ErrorCode::Unavailable));
        let _ = recv.stop(code(ErrorCode::Unavailable));
        let answered =
            !accepted.load(Relaxed) && answer_not_accepted(&mut tcp_write, &greeting, e).await;
        if !answered {
            reset_tcp(tcp_read, tcp_write);
        }
    }
    result
}
