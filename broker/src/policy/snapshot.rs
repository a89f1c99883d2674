//! The rules in memory: loaded from the store at start, reloaded at once
//! after every admin change and revocation made on this node, when another
//! node announces one (PostgreSQL `NOTIFY`), when the store's access
//! generation is seen to have moved (polled every [`GENERATION_POLL`]: the
//! catch-up for a lost notification), and every [`RELOAD_INTERVAL`]
//! anyway. Each reload that changes the rules bumps a generation that live
//! sessions and streams watch, so they re-check themselves against the new
//! rules. Every read has [`STORE_TIMEOUT`]: a store that stops answering
//! leaves the rules to age until sessions fail closed.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::{AppRule, LaptopAccess, Person, Policy};
use crate::clock::{now_ms, Millis};
use crate::model::{DeviceKindRule, LaptopStatus};
use crate::store::{Store, StoreError};

/// How often the rules are re-read even when nothing says they changed.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// How often the store's access generation is read.
pub const GENERATION_POLL: Duration = Duration::from_millis(250);
/// The longest a read of the rules may take.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// How far back ended sign-ins are read unless told the access tokens'
/// life: a day, longer than any access token lasts.
const DEFAULT_ENDED_SIGN_INS_FOR: Millis = 86_400_000;

#[derive(Debug)]
pub struct PolicyCache {
    current: RwLock<Arc<Policy>>,
    generation: watch::Sender<u64>,
    wake: Notify,
    /// One reload at a time, so an older read never replaces a newer one.
    reloading: tokio::sync::Mutex<()>,
    /// `[policy] managed_requires_allocation`.
    managed_requires_allocation: bool,
    /// `[policy] rules_max_age`.
    max_age_ms: Option<Millis>,
    /// How far back ended sign-ins are read: as long as a session can
    /// outlive its sign-in (an access token's life and its leeway).
    ended_sign_ins_for: Millis,
}

impl Default for PolicyCache {
    fn default() -> Self {
        Self::new(true)
    }
}

impl PolicyCache {
    /// Empty rules until the first reload; `managed_requires_allocation`
    /// is the organisation's setting.
    pub fn new(managed_requires_allocation: bool) -> Self {
        Self {
            current: RwLock::new(Arc::new(Policy::default())),
            generation: watch::channel(0).0,
            wake: Notify::new(),
            reloading: tokio::sync::Mutex::new(()),
            managed_requires_allocation,
            max_age_ms: None,
            ended_sign_ins_for: DEFAULT_ENDED_SIGN_INS_FOR,
        }
    }

    /// Reads ended sign-ins as far back as a session holding an access
    /// token of `access_ttl` can outlive its sign-in.
    /// Rules that fail closed once `max_age` passes unconfirmed
    /// (`[policy] rules_max_age`).
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age_ms = Some(max_age.as_millis() as Millis);
        self
    }

    pub fn with_access_ttl(mut self, access_ttl: Duration) -> Self {
        self.ended_sign_ins_for =
            crate::clock::duration_ms(access_ttl) + 2 * crate::auth::tokens::LEEWAY_SECS * 1000;
        self
    }

    /// The rules now.
    pub fn current(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes each time the rules are reloaded (or found stale).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Asks for a reload now (after an admin change).
    pub fn trigger(&self) {
        self.wake.notify_one();
    }

    /// Reads the rules from the store and installs them.
    pub async fn reload(&self, store: &Store, now: Millis) -> Result<(), StoreError> {
        let _one = self.reloading.lock().await;
        let loaded = load(
            store,
            now,
            self.managed_requires_allocation,
            self.ended_sign_ins_for,
        );
        let policy = tokio::time::timeout(STORE_TIMEOUT, loaded)
            .await
            .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolTimedOut))??;
        let policy = Policy {
            max_age_ms: self.max_age_ms,
            ..policy
        };
        let changed = !self.current().same_rules(&policy);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
        // Live sessions and streams re-check only when the rules changed.
        if changed {
            self.generation.send_modify(|g| *g += 1);
        }
        Ok(())
    }

    /// Keeps the rules fresh until `shutdown`: reloads them after every
    /// change to access committed through `store`, when asked, and every
    /// [`RELOAD_INTERVAL`] anyway.
    pub async fn run(&self, store: &Store, mut shutdown: watch::Receiver<bool>) {
        let mut access = store.access_changes();
        let mut seen = None;
        let mut next_reload = tokio::time::Instant::now() + RELOAD_INTERVAL;
        loop {
            let mut poll = false;
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                _ = self.wake.notified() => {}
                _ = access.changed() => {}
                _ = tokio::time::sleep_until(next_reload) => {}
                _ = tokio::time::sleep(GENERATION_POLL) => poll = true,
            }
            if poll {
                let read =
                    tokio::time::timeout(STORE_TIMEOUT, store.access_generation_stored()).await;
                match read {
                    Ok(Ok(g)) if seen == Some(g) => continue,
                    Ok(Ok(g)) => seen = Some(g),
                    // Unreadable: the reload below says so, and fails.
                    _ => {}
                }
            }
            next_reload = tokio::time::Instant::now() + RELOAD_INTERVAL;
            if let Err(e) = self.reload(store, now_ms()).await {
                let age = now_ms() - self.current().loaded_at;
                tracing::warn!(error = %e, age_ms = age, "cannot reload access rules; keeping the last ones");
                // Wake the sessions anyway: past the limit they fail closed.
                self.generation.send_modify(|g| *g += 1);
            }
        }
    }
}

async fn load(
    store: &Store,
    now: Millis,
    managed_requires_allocation: bool,
    ended_sign_ins_for: Millis,
) -> Result<Policy, StoreError> {
    let mut policy = Policy {
        loaded_at: now,
        ..Policy::default()
    };
    for person in store.staff_access().await? {
        policy.staff.insert(
            person.username,
            Person {
                active: person.active,
                priority: person.priority.clamp(1, 3) as u8,
                groups: person.groups.into_iter().collect(),
            },
        );
    }
    for app in store.app_list().await? {
        // The store's CHECK allows only valid kinds; anything else is
        // left out (no access) rather than guessed.
        let Ok(device_kind) = DeviceKindRule::parse(&app.device_kind) else {
            tracing::error!(app = %app.name, kind = %app.device_kind, "unknown device kind in the store");
            continue;
        };
        let Some(protocol) = lanyard_proto::AppProtocol::parse(&app.protocol) else {
            tracing::error!(app = %app.name, protocol = %app.protocol, "unknown app protocol in the store");
            continue;
        };
        policy.apps.insert(
            app.name.clone(),
            AppRule {
                name: app.name,
                target: app.target,
                groups: app.allow_groups.into_iter().collect::<BTreeSet<_>>(),
                device_kind,
                hosts: app.hosts,
                protocol,
                flow_idle: std::time::Duration::from_secs(
                    app.flow_idle_secs.clamp(1, 86_400) as u64
                ),
            },
        );
    }
    policy.revoked_devices = store.devices_revoked().await?.into_iter().collect();
    policy.ended_sign_ins = store
        .sign_ins_ended_since(now - ended_sign_ins_for)
        .await?
        .into_iter()
        .collect();
    policy.managed_requires_allocation = managed_requires_allocation;
    policy.ended_sessions = store.sessions_ended().await?.into_iter().collect();
    for l in store.laptops_access().await? {
        // The store's CHECK allows only valid statuses.
        let Ok(status) = LaptopStatus::parse(&l.status) else {
            tracing::error!(laptop = %l.asset_tag, status = %l.status, "unknown laptop status in the store");
            continue;
        };
        policy.laptops.insert(
            l.asset_tag,
            LaptopAccess {
                status,
                holder: l.holder,
                pool: l.pool,
            },
        );
    }
    Ok(policy)
}
