//! Revocations, published as they are committed, for whatever holds live
//! sessions (the tunnel layer) to act on at once.

use serde::Serialize;
use tokio::sync::broadcast;

/// Something that was revoked, and so must not keep a live tunnel open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Revocation {
    /// Device certificates, by fingerprint.
    Devices {
        fingerprints: Vec<String>,
        reason: String,
    },
    /// A person was disabled.
    Staff { username: String },
    /// An app was removed.
    App { name: String },
}

#[derive(Debug)]
pub struct RevocationHub {
    tx: broadcast::Sender<Revocation>,
}

impl Default for RevocationHub {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(1024).0,
        }
    }
}

impl RevocationHub {
    /// Publishes a committed revocation; no subscriber is fine.
    pub fn publish(&self, r: Revocation) {
        let _ = self.tx.send(r);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Revocation> {
        self.tx.subscribe()
    }
}
