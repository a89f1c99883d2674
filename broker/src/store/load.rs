//! Load history: what each node sampled, and the day's peak.

use serde::Serialize;

use super::{Result, Store};
use crate::clock::Millis;

from_row! {
    /// One sample as stored: counts over `interval_ms`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub struct LoadSample {
        pub node: String,
        pub at_ms: i64,
        pub interval_ms: i64,
        pub agents: i64,
        pub streams: i64,
        pub capacity: i64,
        pub handshakes: i64,
        pub signins: i64,
        pub bytes_up: i64,
        pub bytes_down: i64,
        /// JSON object: reason -> count.
        pub denials: String,
        /// JSON object: app -> [bytes up, bytes down].
        pub apps: String,
    }
}

impl Store {
    pub async fn load_record(&self, s: &LoadSample) -> Result<()> {
        sqlx::query(
            "INSERT INTO load_samples (node, at_ms, interval_ms, agents, streams, capacity, handshakes,
                                       signins, bytes_up, bytes_down, denials, apps)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&s.node)
        .bind(s.at_ms)
        .bind(s.interval_ms)
        .bind(s.agents)
        .bind(s.streams)
        .bind(s.capacity)
        .bind(s.handshakes)
        .bind(s.signins)
        .bind(s.bytes_up)
        .bind(s.bytes_down)
        .bind(&s.denials)
        .bind(&s.apps)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes samples older than `before`; how many.
    pub async fn load_prune(&self, before: Millis) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM load_samples WHERE at_ms < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// The sample with the most agents on `node` since `since`, if any.
    pub async fn load_peak(&self, node: &str, since: Millis) -> Result<Option<LoadSample>> {
        Ok(sqlx::query_as(
            "SELECT node, at_ms, interval_ms, agents, streams, capacity, handshakes, signins,
                    bytes_up, bytes_down, denials, apps
             FROM load_samples WHERE node = $1 AND at_ms >= $2
             ORDER BY agents DESC, at_ms ASC LIMIT 1",
        )
        .bind(node)
        .bind(since)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Samples of `node` since `since`, oldest first.
    pub async fn load_history(&self, node: &str, since: Millis) -> Result<Vec<LoadSample>> {
        Ok(sqlx::query_as(
            "SELECT node, at_ms, interval_ms, agents, streams, capacity, handshakes, signins,
                    bytes_up, bytes_down, denials, apps
             FROM load_samples WHERE node = $1 AND at_ms >= $2 ORDER BY at_ms",
        )
        .bind(node)
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }
}
