//! Live load on this node: sampled every [`SAMPLE_INTERVAL`] into the store
//! (the load history) and kept for `load.keep` (30 days by default); the
//! latest sample and today's peak answer `GET /api/v1/load`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::clock::{now_ms, rfc3339, Millis};
use crate::metrics::Metrics;
use crate::store::load::LoadSample;
use crate::store::Store;
use crate::tunnel::Sessions;

/// What the load figures are read from, and where they go.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    /// This node's name in the load history.
    pub node: &'a str,
    pub metrics: &'a Metrics,
    pub sessions: &'a Sessions,
    pub store: &'a Store,
    /// Agent sessions this node is sized for.
    pub capacity: usize,
    pub state: &'a LoadState,
    /// The rules, for the apps that still exist.
    pub policy: &'a crate::policy::snapshot::PolicyCache,
}

pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);
/// How long samples are kept.
pub const KEEP: Duration = Duration::from_secs(30 * 24 * 3600);

/// The running totals a sample is the difference of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Totals {
    at: Millis,
    handshakes: u64,
    signins: u64,
    bytes_up: u64,
    bytes_down: u64,
    denials: BTreeMap<&'static str, u64>,
    apps: BTreeMap<String, (u64, u64)>,
}

impl Totals {
    fn take(m: &Metrics, at: Millis) -> Self {
        Self {
            at,
            handshakes: m.quic_handshakes.load(Relaxed),
            signins: m.agent_signins.load(Relaxed),
            bytes_up: m.bytes_up.load(Relaxed),
            bytes_down: m.bytes_down.load(Relaxed),
            denials: m.denials.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            apps: m.app_bytes(),
        }
    }
}

/// Per-second figures over one interval, as the API shows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rates {
    pub handshakes_per_s: f64,
    pub signins_per_s: f64,
    pub bytes_up_per_s: f64,
    pub bytes_down_per_s: f64,
    /// app -> {up, down} bytes per second.
    pub apps: BTreeMap<String, AppRate>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AppRate {
    pub bytes_up_per_s: f64,
    pub bytes_down_per_s: f64,
}

fn per_s(count: i64, interval_ms: i64) -> f64 {
    if interval_ms <= 0 {
        0.0
    } else {
        count as f64 * 1000.0 / interval_ms as f64
    }
}

impl Rates {
    pub fn of(sample: &LoadSample) -> Self {
        let apps: BTreeMap<String, (i64, i64)> =
            serde_json::from_str(&sample.apps).unwrap_or_default();
        Self {
            handshakes_per_s: per_s(sample.handshakes, sample.interval_ms),
            signins_per_s: per_s(sample.signins, sample.interval_ms),
            bytes_up_per_s: per_s(sample.bytes_up, sample.interval_ms),
            bytes_down_per_s: per_s(sample.bytes_down, sample.interval_ms),
            apps: apps
                .into_iter()
                .map(|(app, (up, down))| {
                    (
                        app,
                        AppRate {
                            bytes_up_per_s: per_s(up, sample.interval_ms),
                            bytes_down_per_s: per_s(down, sample.interval_ms),
                        },
                    )
                })
                .collect(),
        }
    }
}

fn delta(now: u64, before: u64) -> i64 {
    i64::try_from(now.saturating_sub(before)).unwrap_or(i64::MAX)
}

/// The sample between two totals.
fn sample(
    node: &str,
    before: &Totals,
    now: &Totals,
    agents: usize,
    streams: u64,
    capacity: usize,
) -> LoadSample {
    let denials: BTreeMap<&str, i64> = now
        .denials
        .iter()
        .map(|(k, v)| (*k, delta(*v, before.denials.get(k).copied().unwrap_or(0))))
        .filter(|(_, v)| *v > 0)
        .collect();
    let apps: BTreeMap<&str, (i64, i64)> = now
        .apps
        .iter()
        .map(|(k, (up, down))| {
            let (bu, bd) = before.apps.get(k).copied().unwrap_or((0, 0));
            (k.as_str(), (delta(*up, bu), delta(*down, bd)))
        })
        .filter(|(_, (u, d))| *u > 0 || *d > 0)
        .collect();
    LoadSample {
        node: node.to_owned(),
        at_ms: now.at,
        interval_ms: now.at - before.at,
        agents: agents as i64,
        streams: streams as i64,
        capacity: capacity as i64,
        handshakes: delta(now.handshakes, before.handshakes),
        signins: delta(now.signins, before.signins),
        bytes_up: delta(now.bytes_up, before.bytes_up),
        bytes_down: delta(now.bytes_down, before.bytes_down),
        denials: serde_json::to_string(&denials).unwrap_or_else(|_| "{}".into()),
        apps: serde_json::to_string(&apps).unwrap_or_else(|_| "{}".into()),
    }
}

/// The latest sample of this node, for the API.
#[derive(Debug, Default)]
pub struct LoadState {
    latest: Mutex<Option<LoadSample>>,
}

impl LoadState {
    pub fn latest(&self) -> Option<LoadSample> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Samples every [`SAMPLE_INTERVAL`] until shutdown.
pub async fn run(src: Sources<'_>, mut shutdown: watch::Receiver<bool>) {
    let mut before = Totals::take(src.metrics, now_ms());
    let mut ticker = tokio::time::interval(SAMPLE_INTERVAL);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = ticker.tick() => {}
        }
        let now = Totals::take(src.metrics, now_ms());
        // Once counted here, a deleted app's bytes need not be kept.
        let rules = src.policy.current();
        src.metrics.forget_apps(|app| rules.apps.contains_key(app));
        let s = sample(
            src.node,
            &before,
            &now,
            src.sessions.len(),
            src.sessions.open_streams(),
            src.capacity,
        );
        before = now;
        if let Err(e) = src.store.load_record(&s).await {
            tracing::warn!(error = %e, "cannot record a load sample");
        }
        let keep = crate::clock::duration_ms(KEEP);
        if let Err(e) = src.store.load_prune(s.at_ms - keep).await {
            tracing::warn!(error = %e, "cannot prune the load history");
        }
        *src.state.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
    }
}

/// `GET /api/v1/load`.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub node: String,
    /// The broker's version.
    pub version: &'static str,
    pub at: String,
    pub agents: usize,
    pub streams: u64,
    pub capacity: usize,
    pub capacity_used_percent: f64,
    /// Over the last sample interval (zeros until the first).
    pub rates: Rates,
    /// Refused sessions and streams by reason since the broker started.
    pub denials_total: BTreeMap<&'static str, u64>,
    pub peak_today: Option<Peak>,
    /// Every live node together: this node's live figures plus the others'
    /// from their last heartbeat (at most 5 s old).
    pub all_nodes: AllNodes,
}

#[derive(Debug, Clone, Serialize)]
pub struct AllNodes {
    pub nodes: usize,
    pub agents: u64,
    pub streams: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Peak {
    pub agents: i64,
    pub streams: i64,
    pub at: String,
}

pub async fn report(src: Sources<'_>) -> Result<LoadReport, crate::store::StoreError> {
    let now = now_ms();
    let day_start = now - now.rem_euclid(86_400_000);
    let agents = src.sessions.len();
    let capacity = src.capacity;
    let peak = src
        .store
        .load_peak(src.node, day_start)
        .await?
        .map(|p| Peak {
            agents: p.agents,
            streams: p.streams,
            at: rfc3339(p.at_ms),
        });
    // The live figure may be above the last sampled peak.
    let peak = match peak {
        Some(p) if p.agents >= agents as i64 => Some(p),
        _ => Some(Peak {
            agents: agents as i64,
            streams: src.sessions.open_streams() as i64,
            at: rfc3339(now),
        }),
    };
    let mut all_nodes = AllNodes {
        nodes: 1,
        agents: agents as u64,
        streams: src.sessions.open_streams(),
    };
    for n in src.store.nodes_list().await? {
        if n.name != src.node && now - n.heartbeat_at < crate::store::nodes::NODE_LOST_AFTER_MS {
            all_nodes.nodes += 1;
            all_nodes.agents += n.agents.max(0) as u64;
            all_nodes.streams += n.streams.max(0) as u64;
        }
    }
    Ok(LoadReport {
        all_nodes,
        node: src.node.to_owned(),
        version: env!("CARGO_PKG_VERSION"),
        at: rfc3339(now),
        agents,
        streams: src.sessions.open_streams(),
        capacity,
        capacity_used_percent: (agents as f64 * 100.0 / capacity.max(1) as f64 * 10.0).round()
            / 10.0,
        rates: src
            .state
            .latest()
            .map(|s| Rates::of(&s))
            .unwrap_or_default(),
        denials_total: src
            .metrics
            .denials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        peak_today: peak,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_the_difference_of_two_totals() {
        let before = Totals {
            at: 1_000,
            handshakes: 10,
            signins: 4,
            bytes_up: 1_000,
            bytes_down: 0,
            denials: [("not_in_group", 2)].into_iter().collect(),
            apps: [("hr".to_string(), (500, 0))].into_iter().collect(),
        };
        let now = Totals {
            at: 11_000,
            handshakes: 30,
            signins: 9,
            bytes_up: 11_000,
            bytes_down: 5_000,
            denials: [("not_in_group", 2), ("at_capacity", 3)]
                .into_iter()
                .collect(),
            apps: [
                ("hr".to_string(), (10_500, 5_000)),
                ("pbx".to_string(), (0, 0)),
            ]
            .into_iter()
            .collect(),
        };
        let s = sample("n1", &before, &now, 7, 3, 100);
        assert_eq!((s.interval_ms, s.handshakes, s.signins), (10_000, 20, 5));
        assert_eq!(
            (s.bytes_up, s.bytes_down, s.agents, s.streams),
            (10_000, 5_000, 7, 3)
        );
        assert_eq!(s.denials, r#"{"at_capacity":3}"#);
        assert_eq!(s.apps, r#"{"hr":[10000,5000]}"#);
        let r = Rates::of(&s);
        assert_eq!(r.handshakes_per_s, 2.0);
        assert_eq!(r.bytes_up_per_s, 1000.0);
        assert_eq!(r.apps["hr"].bytes_down_per_s, 500.0);
        // Counters never go backwards into negative rates.
        let s = sample("n1", &now, &before, 0, 0, 100);
        assert_eq!(s.handshakes, 0);
    }
}
