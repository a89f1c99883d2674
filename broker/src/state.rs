//! What every request handler and connection task shares.

use std::sync::Arc;

use crate::auth::ca::Ca;
use crate::auth::sealed::SealKey;
use crate::auth::signin::Throttle;
use crate::auth::tokens::TokenKeys;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::policy::snapshot::PolicyCache;
use crate::store::Store;
use crate::tunnel::Sessions;

pub type AppState = Arc<Shared>;

#[derive(Debug)]
pub struct Shared {
    pub store: Store,
    pub ca: Ca,
    pub token_keys: TokenKeys,
    pub seal: SealKey,
    pub metrics: Metrics,
    pub settings: Settings,
    /// The QUIC address put in enrolment codes.
    pub public_quic_addr: String,
    pub started_at_secs: i64,
    pub throttle: Throttle,
    /// Unauthenticated failures, audited in aggregate.
    pub failures: crate::auth::failures::FailureTally,
    pub policy: PolicyCache,
    pub sessions: Sessions,
    /// The agents' QUIC endpoint (for its live connection count).
    pub quic: quinn::Endpoint,
    /// This node's name in the load history.
    pub node: String,
    pub load: crate::load::LoadState,
    /// Signed checkpoints of the audit chain, outside the database.
    pub checkpoints: crate::checkpoint::Checkpoints,
}

impl Shared {
    /// Where this node's load figures come from.
    pub fn load_sources(&self) -> crate::load::Sources<'_> {
        crate::load::Sources {
            node: &self.node,
            metrics: &self.metrics,
            sessions: &self.sessions,
            store: &self.store,
            capacity: self.settings.admission.capacity,
            state: &self.load,
        }
    }
}
