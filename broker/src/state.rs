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
    /// Read again on SIGHUP (`lanyard-broker rotate-keys` adds one).
    pub token_keys: std::sync::RwLock<Arc<TokenKeys>>,
    pub seal: SealKey,
    pub metrics: Metrics,
    pub settings: Settings,
    /// This node's own public QUIC address (its row in the node registry).
    pub public_quic_addr: String,
    /// Every public address of this node, its own first.
    pub public_addrs: Vec<String>,
    /// The addresses agents may use (this node's, then every live node's),
    /// put in enrolment codes and each session's welcome; refreshed with
    /// the heartbeat.
    pub agent_addrs: std::sync::RwLock<Vec<String>>,
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
    /// The settings SIGHUP may change; `settings` holds those at start.
    pub live: std::sync::RwLock<crate::reload::Live>,
    /// The server certificates the API and QUIC serve.
    pub certs: crate::tls::ServerCerts,
    /// The organisation's OpenID provider (`[oidc]`), when configured.
    pub oidc: Option<crate::auth::oidc::Oidc>,
}

impl Shared {
    /// The token-signing keys in force now.
    pub fn token_keys(&self) -> Arc<TokenKeys> {
        self.token_keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The settings in force now (see [`crate::reload`]).
    pub fn live(&self) -> crate::reload::Live {
        *self.live.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The addresses agents may use, this node's first.
    pub fn agent_addrs(&self) -> Vec<String> {
        let addrs = self
            .agent_addrs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if addrs.is_empty() {
            self.public_addrs.clone()
        } else {
            addrs
        }
    }

    /// Reads the node registry again for [`Shared::agent_addrs`]; on a
    /// store error the list stays as it was.
    pub async fn refresh_agent_addrs(&self, now: crate::clock::Millis) {
        if let Ok(nodes) = self.store.nodes_list().await {
            let addrs = crate::store::nodes::agent_addresses(&self.public_addrs, &nodes, now);
            *self.agent_addrs.write().unwrap_or_else(|p| p.into_inner()) = addrs;
        }
    }

    /// Where this node's load figures come from.
    pub fn load_sources(&self) -> crate::load::Sources<'_> {
        crate::load::Sources {
            node: &self.node,
            metrics: &self.metrics,
            sessions: &self.sessions,
            store: &self.store,
            capacity: self.live().admission.capacity,
            state: &self.load,
            policy: &self.policy,
        }
    }
}
