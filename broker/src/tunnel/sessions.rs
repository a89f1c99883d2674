//! The live sessions on this broker node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::clock::{rfc3339, Millis};
use crate::policy::{DeviceKind, Subject};
use crate::store::nodes::{SessionEnd, SessionRow};

/// One agent's session: a person on a device, over one QUIC connection.
#[derive(Debug)]
pub struct LiveSession {
    pub id: String,
    pub username: String,
    pub device_id: String,
    pub device_label: String,
    pub device_kind: DeviceKind,
    /// A personal device's owner.
    pub owner: Option<String>,
    /// A council laptop's asset tag.
    pub asset_tag: Option<String>,
    /// The sign-in (refresh-token family) behind the session.
    pub sign_in: Option<String>,
    pub remote: SocketAddr,
    pub since: Millis,
    /// When the device certificate runs out; moved on by a renewal over
    /// the same connection (the same key, proven at the handshake).
    pub cert_expires_at: AtomicI64,
    /// When the session's access token runs out (with leeway); moved on by
    /// each refresh over the same connection.
    pub token_expires_at: AtomicI64,
    pub open_streams: AtomicU64,
    pub streams_total: AtomicU64,
    pub denied_streams: AtomicU64,
    /// Agent to app.
    pub bytes_up: AtomicU64,
    /// App to agent.
    pub bytes_down: AtomicU64,
    /// The apps this session has opened streams to.
    pub apps_used: Mutex<std::collections::BTreeSet<String>>,
    pub conn: quinn::Connection,
    /// The session's UDP flows, by flow id.
    pub flows: std::sync::Arc<super::flow::Flows>,
}

impl LiveSession {
    pub fn subject(&self) -> Subject<'_> {
        Subject {
            username: &self.username,
            device_id: &self.device_id,
            device_kind: self.device_kind,
            owner: self.owner.as_deref(),
            asset_tag: self.asset_tag.as_deref(),
            cert_expires_at: self.cert_expires_at.load(Relaxed),
            token_expires_at: self.token_expires_at.load(Relaxed),
            sign_in: self.sign_in.as_deref(),
        }
    }

    /// Notes that a stream to `app` was let through.
    pub fn used(&self, app: &str) {
        let mut apps = self.apps_used.lock().unwrap_or_else(|p| p.into_inner());
        if !apps.contains(app) {
            apps.insert(app.to_owned());
        }
    }

    /// The session as the store records it, held on `node`.
    pub fn row(&self, node: &str) -> SessionRow {
        SessionRow {
            id: self.id.clone(),
            node: node.to_owned(),
            username: self.username.clone(),
            device: self.device_label.clone(),
            kind: self.device_kind.as_str().to_owned(),
            remote: self.remote.to_string(),
            sign_in: self.sign_in.clone(),
            since: self.since,
        }
    }

    /// What the session did, for the record of its end.
    pub fn end(&self, reason: &str) -> SessionEnd {
        SessionEnd {
            reason: reason.to_owned(),
            streams: self.streams_total.load(Relaxed),
            denied_streams: self.denied_streams.load(Relaxed),
            bytes_up: self.bytes_up.load(Relaxed),
            bytes_down: self.bytes_down.load(Relaxed),
            apps: self
                .apps_used
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect(),
        }
    }

    /// Ends the session: the agent sees `code` and `reason`.
    pub fn close(&self, code: u32, reason: &str) {
        let reason: String = reason.chars().take(200).collect();
        self.conn.close(code.into(), reason.as_bytes());
    }

    /// The session as the API shows it, held on `node` (this one).
    pub fn view(&self, node: &str) -> SessionView {
        SessionView {
            id: self.id.clone(),
            node: node.to_owned(),
            username: self.username.clone(),
            device: self.device_label.clone(),
            kind: self.device_kind.as_str(),
            remote: self.remote.to_string(),
            since: rfc3339(self.since),
            open_streams: Some(self.open_streams.load(Relaxed)),
            streams_total: Some(self.streams_total.load(Relaxed)),
            bytes_up: Some(self.bytes_up.load(Relaxed)),
            bytes_down: Some(self.bytes_down.load(Relaxed)),
        }
    }
}

/// A session as the API shows it. Its live figures are known only to the
/// node that holds it: `None` when another node answers.
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    pub id: String,
    pub node: String,
    pub username: String,
    pub device: String,
    pub kind: &'static str,
    pub remote: String,
    pub since: String,
    pub open_streams: Option<u64>,
    pub streams_total: Option<u64>,
    /// Bytes from the agent to its apps.
    pub bytes_up: Option<u64>,
    /// Bytes from the apps to the agent.
    pub bytes_down: Option<u64>,
}

impl SessionView {
    /// A session held on another node, as the store records it.
    pub fn elsewhere(row: &SessionRow) -> Self {
        Self {
            id: row.id.clone(),
            node: row.node.clone(),
            username: row.username.clone(),
            device: row.device.clone(),
            kind: match row.kind.as_str() {
                "managed" => "managed",
                "personal" => "personal",
                _ => "unknown",
            },
            remote: row.remote.clone(),
            since: rfc3339(row.since),
            open_streams: None,
            streams_total: None,
            bytes_up: None,
            bytes_down: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<LiveSession>>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LiveSession>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, s: Arc<LiveSession>) {
        self.lock().insert(s.id.clone(), s);
    }

    pub fn remove(&self, id: &str) -> Option<Arc<LiveSession>> {
        self.lock().remove(id)
    }

    pub fn get(&self, id: &str) -> Option<Arc<LiveSession>> {
        self.lock().get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Streams open across every live session.
    pub fn open_streams(&self) -> u64 {
        self.lock()
            .values()
            .map(|s| s.open_streams.load(Relaxed))
            .sum()
    }

    /// Every live session, oldest first.
    pub fn list(&self) -> Vec<Arc<LiveSession>> {
        let mut all: Vec<_> = self.lock().values().cloned().collect();
        all.sort_by(|a, b| a.since.cmp(&b.since).then_with(|| a.id.cmp(&b.id)));
        all
    }
}
