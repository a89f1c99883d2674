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
    /// Turns true when the broker starts draining.
    pub shutdown: watch::Receiver<bool>,
}

/// Answers a stream with a refusal, then ends it (best effort).
pub async fn refuse_stream(send: &mut quinn::SendStream, code: ErrorCode, message: String) {
    let _ = write_frame(send, &Message::refused(code, message)).await;
    let _ = send.finish();
}
