//! Broker nodes and the sessions they hold, shared through the store so
//! that any node can list every session and end any of them.

use serde::Serialize;

use super::{AuditEntry, Result, Store};
use crate::clock::Millis;

/// How long what has run out (ended sessions, expired or revoked tokens,
/// expired enrolment codes) is kept for listing before it is deleted.
pub const KEEP_ENDED_MS: Millis = 30 * 24 * 3600 * 1000;

/// Rows deleted by one pruning, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub sessions: u64,
    pub refresh_tokens: u64,
    pub api_tokens: u64,
    pub enrolment_codes: u64,
}

/// A node whose heartbeat is older than this is gone: its sessions are
/// ended and it is shown as such.
pub const NODE_LOST_AFTER_MS: Millis = 30_000;

from_row! {
    /// A node as `lanyard nodes list` shows it.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub struct NodeRow {
        pub name: String,
        pub quic_addr: String,
        pub api_addr: String,
        pub started_at: i64,
        pub heartbeat_at: i64,
        pub agents: i64,
        pub streams: i64,
    }
}

from_row! {
    /// A session as the store holds it.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub struct SessionRow {
        pub id: String,
        pub node: String,
        pub username: String,
        pub device: String,
        pub kind: String,
        pub remote: String,
        pub sign_in: Option<String>,
        pub since: i64,
    }
}

/// What a session did, recorded when it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionEnd {
    pub reason: String,
    pub streams: u64,
    pub denied_streams: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub apps: Vec<String>,
}

/// The addresses agents may use: this node's own public addresses, then
/// the QUIC address of every other node heard from within
/// [`NODE_LOST_AFTER_MS`], without repeats, at most
/// [`lanyard_proto::enrol::MAX_ADDRESSES`] (what an enrolment code holds).
pub fn agent_addresses(own: &[String], nodes: &[NodeRow], now: Millis) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let live = nodes
        .iter()
        .filter(|n| n.heartbeat_at >= now - NODE_LOST_AFTER_MS)
        .map(|n| &n.quic_addr);
    for a in own.iter().chain(live) {
        if out.len() == lanyard_proto::enrol::MAX_ADDRESSES {
            break;
        }
        if lanyard_proto::enrol::valid_host_port(a) && !out.contains(a) {
            out.push(a.clone());
        }
    }
    out
}

impl Store {
    /// Records this node as started (again): its sessions from an earlier
    /// run ended with it.
    pub async fn node_start(
        &self,
        name: &str,
        quic_addr: &str,
        api_addr: &str,
        now: Millis,
    ) -> Result<u64> {
        sqlx::query(
            "INSERT INTO nodes (name, quic_addr, api_addr, started_at, heartbeat_at, agents, streams)
             VALUES ($1, $2, $3, $4, $4, 0, 0)
             ON CONFLICT (name) DO UPDATE SET quic_addr = $2, api_addr = $3, started_at = $4,
                                              heartbeat_at = $4, agents = 0, streams = 0",
        )
        .bind(name)
        .bind(quic_addr)
        .bind(api_addr)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query(
            "UPDATE agent_sessions SET ended_at = $1, end_reason = 'the node restarted'
             WHERE node = $2 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(name)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// This node is alive with `agents` and `streams`; the sessions of any
    /// node silent for [`NODE_LOST_AFTER_MS`] are ended. How many were.
    pub async fn node_heartbeat(
        &self,
        name: &str,
        agents: u64,
        streams: u64,
        now: Millis,
    ) -> Result<u64> {
        sqlx::query(
            "UPDATE nodes SET heartbeat_at = $1, agents = $2, streams = $3 WHERE name = $4",
        )
        .bind(now)
        .bind(agents as i64)
        .bind(streams as i64)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query(
            "UPDATE agent_sessions SET ended_at = $1, end_reason = 'the node was lost'
             WHERE ended_at IS NULL
               AND node IN (SELECT name FROM nodes WHERE heartbeat_at < $2)",
        )
        .bind(now)
        .bind(now - NODE_LOST_AFTER_MS)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Deletes what ran out more than [`KEEP_ENDED_MS`] before `now`:
    /// ended sessions, refresh tokens past their expiry (a day after it:
    /// nothing can use them and no live session depends on them), API
    /// tokens expired or revoked, and enrolment codes past their expiry.
    /// The tables that grow with use stay the size of their use.
    pub async fn prune_ended(&self, now: Millis) -> Result<Pruned> {
        let before = now - KEEP_ENDED_MS;
        let run = |sql: &'static str, at: Millis| async move {
            Ok::<u64, super::StoreError>(
                sqlx::query(sql)
                    .bind(at)
                    .execute(&self.pool)
                    .await?
                    .rows_affected(),
            )
        };
        Ok(Pruned {
            sessions: run(
                "DELETE FROM agent_sessions WHERE ended_at IS NOT NULL AND ended_at < $1",
                before,
            )
            .await?,
            refresh_tokens: run(
                "DELETE FROM refresh_tokens WHERE expires_at < $1",
                now - 24 * 3600 * 1000,
            )
            .await?,
            api_tokens: run(
                "DELETE FROM api_tokens WHERE (expires_at IS NOT NULL AND expires_at < $1)
                                           OR (revoked_at IS NOT NULL AND revoked_at < $1)",
                before,
            )
            .await?,
            enrolment_codes: run("DELETE FROM enrolment_codes WHERE expires_at < $1", before)
                .await?,
        })
    }

    /// Every node known, by name.
    pub async fn nodes_list(&self) -> Result<Vec<NodeRow>> {
        Ok(sqlx::query_as(
            "SELECT name, quic_addr, api_addr, started_at, heartbeat_at, agents, streams
             FROM nodes ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records a session as open on its node.
    pub async fn session_open(&self, s: &SessionRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO agent_sessions (id, node, username, device, kind, remote, sign_in, since)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&s.id)
        .bind(&s.node)
        .bind(&s.username)
        .bind(&s.device)
        .bind(&s.kind)
        .bind(&s.remote)
        .bind(&s.sign_in)
        .bind(s.since)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a session as ended, with one audit row that says what it
    /// did: who, on what, from where, on which node, the apps reached, the
    /// streams and bytes, and how long.
    pub async fn session_close(&self, s: &SessionRow, end: &SessionEnd, now: Millis) -> Result<()> {
        let mut tx = self.begin_audited(now).await?;
        sqlx::query(
            "UPDATE agent_sessions SET ended_at = $1, end_reason = COALESCE(end_reason, $2)
             WHERE id = $3",
        )
        .bind(now)
        .bind(&end.reason)
        .bind(&s.id)
        .execute(tx.conn())
        .await?;
        tx.audit(
            AuditEntry::ok(&s.username, "session.end", &s.device).with_detail(serde_json::json!({
                "session": s.id,
                "node": s.node,
                "remote": s.remote,
                "apps": end.apps,
                "streams": end.streams,
                "denied_streams": end.denied_streams,
                "bytes_up": end.bytes_up,
                "bytes_down": end.bytes_down,
                "duration_ms": now - s.since,
                "reason": end.reason,
            })),
        )
        .await?;
        tx.commit().await
    }

    /// Live sessions of every node, oldest first.
    pub async fn sessions_live(&self) -> Result<Vec<SessionRow>> {
        Ok(sqlx::query_as(
            "SELECT id, node, username, device, kind, remote, sign_in, since
             FROM agent_sessions WHERE ended_at IS NULL ORDER BY since, id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// One live session, on whichever node.
    pub async fn session_live(&self, id: &str) -> Result<Option<SessionRow>> {
        Ok(sqlx::query_as(
            "SELECT id, node, username, device, kind, remote, sign_in, since
             FROM agent_sessions WHERE id = $1 AND ended_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Live sessions that must end: asked to by an admin, or whose sign-in
    /// has been ended (by logout, by refresh-token reuse, by a password
    /// reset or by an admin).
    pub async fn sessions_ended(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT s.id FROM agent_sessions s
             WHERE s.ended_at IS NULL
               AND (s.kill_requested_at IS NOT NULL
                    OR EXISTS (SELECT 1 FROM refresh_tokens r
                               WHERE r.family_id = s.sign_in AND r.revoked_at IS NOT NULL))",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The store's access generation: moves on with every committed change
    /// to access, made by any node.
    pub async fn access_generation_stored(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT generation FROM access_state WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

impl Store {
    /// Calls `changed` whenever another node announces a change to access,
    /// until `shutdown`. PostgreSQL only (one SQLite node hears its own
    /// changes in-process); a lost listening connection is made again, and
    /// what it missed is caught up by the generation poll.
    pub async fn listen_access(
        &self,
        changed: impl Fn(),
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        if self.backend != super::Backend::Postgres {
            return;
        }
        loop {
            let listening = async {
                let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
                listener.listen(super::ACCESS_CHANNEL).await?;
                // Anything said while not listening is in the store already.
                changed();
                loop {
                    listener.recv().await?;
                    changed();
                }
                #[allow(unreachable_code)]
                Ok::<(), sqlx::Error>(())
            };
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                ended = listening => {
                    if let Err(e) = ended {
                        tracing::warn!(error = %e, "lost the access-change listener; listening again");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, quic_addr: &str, heartbeat_at: i64) -> NodeRow {
        NodeRow {
            name: name.into(),
            quic_addr: quic_addr.into(),
            api_addr: String::new(),
            started_at: 0,
            heartbeat_at,
            agents: 0,
            streams: 0,
        }
    }

    #[test]
    fn agent_addresses_put_this_node_first_and_leave_out_lost_nodes() {
        let now = 100_000;
        let own = vec!["b.example:4433".to_owned(), "lb.example:4433".to_owned()];
        let nodes = [
            node("a", "a.example:4433", now - 1_000),
            node("b", "b.example:4433", now),
            node("c", "c.example:4433", now - NODE_LOST_AFTER_MS - 1),
            node("d", "d.example:4433", now - NODE_LOST_AFTER_MS),
        ];
        assert_eq!(
            agent_addresses(&own, &nodes, now),
            [
                "b.example:4433",
                "lb.example:4433",
                "a.example:4433",
                "d.example:4433"
            ]
        );
        let many: Vec<NodeRow> = (0..20)
            .map(|i| node("n", &format!("10.0.0.{i}:4433"), now))
            .collect();
        assert_eq!(
            agent_addresses(&own, &many, now).len(),
            lanyard_proto::enrol::MAX_ADDRESSES
        );
    }
}
