//! What every stream of one device's connection shares, and the small
//! helpers the connection's streams use to answer: refusals, timeouts, the
//! store-unavailable message.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lanyard_proto::{ErrorCode, Message};
use lanyard_relay::write_frame;
use tokio::sync::watch;

use crate::policy::DeviceKind;
use crate::state::AppState;
use crate::store::devices::Device;
use crate::tunnel::LiveSession;

/// What an agent is told when the store cannot answer.
pub const STORE_UNAVAILABLE: &str = "the broker's store is unavailable; try again shortly";

/// The TLS handshake must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first frame of a stream must arrive within this.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// Streams an agent may have open at first. quinn keeps per-stream state
/// for every stream the peer may open, so a connection starts with room for
/// this many and grows towards `[limits] streams_per_agent` as it uses them
/// (see [`stream_room`]): two hash-map entries per stream,
/// which at 256 streams come to about 20 KiB by their layout. Sixteen (the
/// session, a browser's six connections to a host, room to spare) keep an
/// idle agent's maps near 1 KiB; at twelve open the room doubles.
pub const INITIAL_STREAMS: u32 = 16;

/// What every stream of a device connection shares.
pub struct DeviceConn {
    pub state: AppState,
    pub conn: quinn::Connection,
    pub device: Device,
    pub kind: DeviceKind,
    /// SHA-256 of the certificate presented (tokens are bound to it).
    pub thumbprint: [u8; 32],
    /// The session, once the control stream has opened one.
    pub session: OnceLock<Arc<LiveSession>>,
    /// Hellos refused on this connection so far.
    pub refused_hellos: std::sync::atomic::AtomicU32,
    /// Turns true when the broker starts draining.
    pub shutdown: watch::Receiver<bool>,
}

/// Answers a stream with a refusal, then ends it (best effort).
pub async fn refuse_stream(send: &mut quinn::SendStream, code: ErrorCode, message: String) {
    let _ = write_frame(send, &Message::refused(code, message)).await;
    let _ = send.finish();
}

/// A connection using three quarters of its stream limit gets twice the
/// room, up to `most`; `None` while it has room enough.
pub fn stream_room(open: usize, limit: u32, most: u32) -> Option<u32> {
    let open = u32::try_from(open).unwrap_or(u32::MAX);
    (limit < most && open.saturating_mul(4) >= limit.saturating_mul(3))
        .then(|| limit.saturating_mul(2).min(most))
}

#[cfg(test)]
mod tests {
    use super::stream_room;

    #[test]
    fn the_stream_limit_doubles_at_three_quarters_up_to_the_most() {
        assert_eq!(stream_room(23, 32, 256), None);
        assert_eq!(stream_room(24, 32, 256), Some(64));
        assert_eq!(stream_room(48, 64, 256), Some(128));
        assert_eq!(stream_room(96, 128, 256), Some(256));
        assert_eq!(stream_room(255, 256, 256), None);
        // A configured limit below the start is never raised.
        assert_eq!(stream_room(8, 8, 8), None);
        assert_eq!(stream_room(90, 64, 100), Some(100));
    }
}
