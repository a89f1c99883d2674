//! The agent's side of a tunnel stream: open it, send the client's bytes
//! at once (the broker holds them in flow control while it decides), and
//! carry bytes back once the broker's answer says the stream is accepted.
//! The answer is judged by `lanyard_proto::stream::StreamOpener`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lanyard_proto::session::Millis;
use lanyard_proto::stream::{StreamOpenError, StreamOpener};
use lanyard_proto::ErrorCode;
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
    let _ = tcp.set_nodelay(true);
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let result = {
        let inbound = async {
            let deadline = opener.poll_timeout().unwrap_or_else(now_ms);
            let left = Duration::from_millis(deadline.saturating_sub(now_ms()));
            match read_frame(&mut recv, left).await {
                Ok(answer) => opener.handle_answer(answer)?,
                Err(FramedError::Timeout(_)) => opener.handle_timeout(deadline)?,
                Err(e) => return Err(e.into()),
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
    if result.is_err() {
        let _ = send.reset(code(ErrorCode::Unavailable));
        let _ = recv.stop(code(ErrorCode::Unavailable));
        reset_tcp(tcp_read, tcp_write);
    }
    result
}
