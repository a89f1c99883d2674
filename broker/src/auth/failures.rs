//! Failures by callers who proved nothing (no or a bad API token, a wrong
//! password), counted in memory and audited in aggregate: one row per
//! source address and kind per interval, written by a background task.
//!
//! So an unauthenticated flood costs a counter, not a database write: it
//! never takes the audit chain's lock that authenticated work (an agent's
//! token refresh, an admin's revocation) waits on, and the audit log grows
//! by at most one row per source and kind per interval, whatever the
//! flood's size. The tally itself is bounded: past [`MAX_SOURCES`] sources
//! the rest are counted together as "other sources".

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::{rfc3339, Millis};
use crate::store::{AuditEntry, Store};

/// How often the tally is written to the audit log.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(60);
/// Distinct sources tallied per interval at most.
pub const MAX_SOURCES: usize = 4096;
/// Characters of an example kept per source and kind.
const SAMPLE_CHARS: usize = 128;

#[derive(Debug, Clone)]
struct Tally {
    count: u64,
    first: Millis,
    last: Millis,
    reason: &'static str,
    sample: String,
}

/// Unauthenticated failures since the last flush.
#[derive(Debug, Default)]
pub struct FailureTally {
    by_source: Mutex<HashMap<(Option<IpAddr>, &'static str), Tally>>,
}

/// `text` cut to [`SAMPLE_CHARS`], control characters shown as `?`.
fn sample(text: &str) -> String {
    text.chars()
        .take(SAMPLE_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl FailureTally {
    /// Counts one failure of kind `action` from `from`: `reason` says what
    /// was wrong, `example` what was asked (kept short and printable).
    pub fn note(
        &self,
        from: Option<IpAddr>,
        action: &'static str,
        reason: &'static str,
        example: &str,
        now: Millis,
    ) {
        let mut map = self.by_source.lock().unwrap_or_else(|p| p.into_inner());
        let key = if map.len() >= MAX_SOURCES && !map.contains_key(&(from, action)) {
            (None, action)
        } else {
            (from, action)
        };
        let tally = map.entry(key).or_insert_with(|| Tally {
            count: 0,
            first: now,
            last: now,
            reason,
            sample: sample(example),
        });
        tally.count += 1;
        tally.last = now;
    }

    /// Failures of every kind from `from` since the last flush.
    pub fn recent(&self, from: IpAddr) -> u64 {
        let map = self.by_source.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter(|((source, _), _)| *source == Some(from))
            .map(|(_, t)| t.count)
            .sum()
    }

    /// Sources tallied now.
    pub fn sources(&self) -> usize {
        self.by_source.lock().map_or(0, |m| m.len())
    }

    /// Writes one audit row per source and kind, and starts a new
    /// interval; the rows written. What cannot be written is logged and
    /// dropped (the counts are in `/metrics` too).
    pub async fn flush(&self, store: &Store, now: Millis) -> usize {
        let taken = std::mem::take(&mut *self.by_source.lock().unwrap_or_else(|p| p.into_inner()));
        let mut written = 0;
        for ((from, action), t) in taken {
            let target = from.map_or_else(|| "other sources".to_owned(), |ip| ip.to_string());
            let entry = AuditEntry::denied("anonymous", action, &target, t.reason).with_detail(
                serde_json::json!({
                    "reason": t.reason,
                    "count": t.count,
                    "first": rfc3339(t.first),
                    "last": rfc3339(t.last),
                    "example": t.sample,
                }),
            );
            match store.audit_only(now, entry).await {
                Ok(()) => written += 1,
                Err(e) => tracing::warn!(error = %e, "could not audit unauthenticated failures"),
            }
        }
        written
    }

    /// Flushes every [`FLUSH_INTERVAL`] until `shutdown`, and once more then.
    pub async fn run(&self, store: &Store, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(FLUSH_INTERVAL);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                _ = ticker.tick() => {}
            }
            self.flush(store, crate::clock::now_ms()).await;
        }
        self.flush(store, crate::clock::now_ms()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_is_bounded_and_samples_are_short_and_printable() {
        let t = FailureTally::default();
        for i in 0..(MAX_SOURCES + 100) {
            let ip = IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
            t.note(Some(ip), "api.unauthorized", "bad", "GET /x", 0);
        }
        assert_eq!(t.sources(), MAX_SOURCES + 1, "the rest as other sources");
        let long = format!("\u{1b}[2J{}", "y".repeat(10_000));
        assert_eq!(sample(&long).chars().count(), SAMPLE_CHARS);
        assert!(sample(&long).starts_with("?[2J"));
    }
}
