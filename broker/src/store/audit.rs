//! The audit log: append-only, each row hash-chained to the one before.
//!
//! `hash(n) = SHA-256(len-prefixed fields of row n || hash(n-1))`, and the
//! head row remembers the last sequence number and hash. Editing a row
//! breaks its hash; deleting one leaves a gap in the sequence or a broken
//! link; deleting the newest rows leaves the head pointing past the end.

use serde::Serialize;
use sqlx::AnyConnection;

use super::{col, Result, Store};
use crate::clock::{rfc3339, Millis};

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Denied,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
}

/// One thing that happened. `detail` must never hold a secret.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: String,
    pub action: &'static str,
    pub target: String,
    pub outcome: Outcome,
    pub detail: serde_json::Value,
}

impl AuditEntry {
    pub fn ok(actor: &str, action: &'static str, target: &str) -> Self {
        Self {
            actor: actor.to_owned(),
            action,
            target: target.to_owned(),
            outcome: Outcome::Ok,
            detail: serde_json::Value::Null,
        }
    }

    pub fn denied(actor: &str, action: &'static str, target: &str, reason: &str) -> Self {
        Self {
            outcome: Outcome::Denied,
            detail: serde_json::json!({ "reason": reason }),
            ..Self::ok(actor, action, target)
        }
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

from_row! {
    /// An audit row as stored and listed.
    #[derive(Debug, Clone, Serialize)]
    pub struct AuditRow {
        pub seq: i64,
        #[serde(skip)]
        pub at_ms: i64,
        pub actor: String,
        pub action: String,
        pub target: String,
        pub outcome: String,
        pub detail: String,
        pub prev_hash: String,
        pub hash: String,
    }
}

impl AuditRow {
    pub fn at(&self) -> String {
        rfc3339(self.at_ms)
    }

    /// `detail` as the JSON it was written as (null when there is none),
    /// for answers that nest it rather than quote it. Text that is not
    /// JSON (edited behind the API) is kept as a string.
    pub fn detail_json(&self) -> serde_json::Value {
        if self.detail.is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_str(&self.detail)
            .unwrap_or_else(|_| serde_json::Value::String(self.detail.clone()))
    }

    pub(crate) fn expected_hash(&self) -> String {
        row_hash(
            self.seq,
            self.at_ms,
            &self.actor,
            &self.action,
            &self.target,
            &self.outcome,
            &self.detail,
            &self.prev_hash,
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn row_hash(
    seq: i64,
    at_ms: i64,
    actor: &str,
    action: &str,
    target: &str,
    outcome: &str,
    detail: &str,
    prev_hash: &str,
) -> String {
    let seq = seq.to_string();
    let at = at_ms.to_string();
    let mut buf = Vec::with_capacity(256);
    for field in [
        seq.as_str(),
        &at,
        actor,
        action,
        target,
        outcome,
        detail,
        prev_hash,
    ] {
        buf.extend_from_slice(&(field.len() as u64).to_be_bytes());
        buf.extend_from_slice(field.as_bytes());
    }
    crate::secrets::sha256_hex(&buf)
}

/// Inserts row `seq` chained to `prev_hash`; returns its hash.
pub(super) async fn append(
    conn: &mut AnyConnection,
    seq: i64,
    at_ms: Millis,
    prev_hash: &str,
    entry: &AuditEntry,
) -> Result<String> {
    let detail = if entry.detail.is_null() {
        String::new()
    } else {
        entry.detail.to_string()
    };
    let outcome = entry.outcome.as_str();
    let hash = row_hash(
        seq,
        at_ms,
        &entry.actor,
        entry.action,
        &entry.target,
        outcome,
        &detail,
        prev_hash,
    );
    sqlx::query(
        "INSERT INTO audit_log (seq, at_ms, actor, action, target, outcome, detail, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(seq)
    .bind(at_ms)
    .bind(&entry.actor)
    .bind(entry.action)
    .bind(&entry.target)
    .bind(outcome)
    .bind(&detail)
    .bind(prev_hash)
    .bind(&hash)
    .execute(conn)
    .await?;
    Ok(hash)
}

/// Which rows `audit list` shows.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since: Option<Millis>,
    pub actor: Option<String>,
    pub action_prefix: Option<String>,
    pub limit: i64,
    /// Only rows older than this sequence number (the next page back).
    pub before_seq: Option<i64>,
}

/// The outcome of checking the whole chain.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub rows_checked: i64,
    /// The first row found wrong, by sequence number.
    pub bad_seq: Option<i64>,
    pub problem: Option<String>,
    /// Signed checkpoints (kept outside the database) the chain was
    /// checked against.
    pub checkpoints_checked: usize,
}

const VERIFY_PAGE: i64 = 2_000;

impl Store {
    /// The newest rows matching `filter`, oldest first.
    pub async fn audit_list(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>> {
        let limit = filter.limit.clamp(1, 10_000);
        let mut rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT seq, at_ms, actor, action, target, outcome, detail, prev_hash, hash
             FROM audit_log
             WHERE at_ms >= $1 AND ($2 = '' OR actor = $2) AND ($3 = '' OR action LIKE $4 ESCAPE '\\')
               AND seq < $6
             ORDER BY seq DESC LIMIT $5",
        )
        .bind(filter.since.unwrap_or(0))
        .bind(filter.actor.clone().unwrap_or_default())
        .bind(filter.action_prefix.clone().unwrap_or_default())
        .bind(super::like_prefix(filter.action_prefix.as_deref().unwrap_or("")))
        .bind(limit)
        .bind(filter.before_seq.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.reverse();
        Ok(rows)
    }

    /// Walks the whole chain and reports the first row that is wrong.
    pub async fn audit_verify(&self) -> Result<VerifyReport> {
        self.audit_verify_against(&[]).await
    }

    /// Walks the whole chain and reports the first row that is wrong,
    /// checking it against signed `checkpoints` too: a row whose hash is
    /// not the one signed was re-computed, and a checkpoint past the end of
    /// the log means the log was rewound.
    pub async fn audit_verify_against(
        &self,
        checkpoints: &[crate::checkpoint::Checkpoint],
    ) -> Result<VerifyReport> {
        let anchors: std::collections::HashMap<i64, &crate::checkpoint::Checkpoint> =
            checkpoints.iter().map(|c| (c.seq, c)).collect();
        let mut expected_seq = 1i64;
        let mut prev = GENESIS_HASH.to_owned();
        let mut checked = 0i64;
        let used = checkpoints.len();
        let bad = |seq: i64, checked: i64, problem: String| VerifyReport {
            ok: false,
            rows_checked: checked,
            bad_seq: Some(seq),
            problem: Some(problem),
            checkpoints_checked: used,
        };
        loop {
            let page: Vec<AuditRow> = sqlx::query_as(
                "SELECT seq, at_ms, actor, action, target, outcome, detail, prev_hash, hash
                 FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2",
            )
            .bind(expected_seq)
            .bind(VERIFY_PAGE)
            .fetch_all(&self.pool)
            .await?;
            let n = page.len() as i64;
            for row in page {
                if row.seq != expected_seq {
                    return Ok(bad(
                        expected_seq,
                        checked,
                        format!(
                            "row {expected_seq} is missing (deleted); the next row is {}",
                            row.seq
                        ),
                    ));
                }
                if row.prev_hash != prev {
                    return Ok(bad(
                        row.seq,
                        checked,
                        format!("row {} does not link to the row before it (a row was replaced or removed)", row.seq),
                    ));
                }
                if row.expected_hash() != row.hash {
                    return Ok(bad(
                        row.seq,
                        checked,
                        format!(
                            "row {} was edited: its contents do not match its hash",
                            row.seq
                        ),
                    ));
                }
                if let Some(c) = anchors.get(&row.seq) {
                    if c.hash != row.hash {
                        return Ok(bad(
                            row.seq,
                            checked,
                            format!(
                                "row {} is not the row {} signed at {}: it or a row before it was edited and the chain re-computed",
                                row.seq,
                                c.node,
                                crate::clock::rfc3339(c.at_ms)
                            ),
                        ));
                    }
                }
                prev = row.hash;
                expected_seq += 1;
                checked += 1;
            }
            if n < VERIFY_PAGE {
                break;
            }
        }
        let (head_seq, head_hash): (i64, String) =
            sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
        let last = expected_seq - 1;
        if head_seq != last || head_hash != prev {
            let problem = if head_seq > last {
                format!(
                    "rows {}..={head_seq} are missing (deleted from the end of the log)",
                    last + 1
                )
            } else {
                format!("the chain head (row {head_seq}) does not match the last row ({last})")
            };
            return Ok(bad(last + 1, checked, problem));
        }
        if let Some(c) = checkpoints
            .iter()
            .filter(|c| c.seq > last)
            .max_by_key(|c| c.seq)
        {
            return Ok(bad(
                last + 1,
                checked,
                format!(
                    "the log was rewound: {} signed row {} at {}, but the log ends at row {last}",
                    c.node,
                    c.seq,
                    crate::clock::rfc3339(c.at_ms)
                ),
            ));
        }
        Ok(VerifyReport {
            ok: true,
            rows_checked: checked,
            bad_seq: None,
            problem: None,
            checkpoints_checked: used,
        })
    }

    /// A quick look at the chain, cheap enough for every checkpoint
    /// interval: the head matches the last row, and the row `signed` (the
    /// last checkpoint this node signed: seq, hash) is still there with the
    /// hash that was signed. The problem found, if any. A row edited
    /// without the chain re-computed, or one after the last checkpoint, is
    /// found only by the full walk ([`Store::audit_verify_against`]).
    pub async fn audit_quick_check(&self, signed: Option<(i64, &str)>) -> Result<Option<String>> {
        // One statement: one consistent view, even while rows are added.
        let (head_seq, head_hash, last_seq, last_hash, signed_hash): (
            i64,
            String,
            Option<i64>,
            Option<String>,
            Option<String>,
        ) = sqlx::query_as(
            "SELECT h.seq, h.hash, l.seq, l.hash, s.hash
             FROM audit_head h
             LEFT JOIN audit_log l ON l.seq = (SELECT MAX(seq) FROM audit_log)
             LEFT JOIN audit_log s ON s.seq = $1
             WHERE h.id = 1",
        )
        .bind(signed.map(|(seq, _)| seq).unwrap_or(0))
        .fetch_one(&self.pool)
        .await?;
        let last_seq = last_seq.unwrap_or(0);
        let last_hash = last_hash.unwrap_or_else(|| GENESIS_HASH.to_owned());
        if head_seq > last_seq {
            return Ok(Some(format!(
                "rows {}..={head_seq} are missing (deleted from the end of the log)",
                last_seq + 1
            )));
        }
        if head_seq != last_seq || head_hash != last_hash {
            return Ok(Some(format!(
                "the chain head (row {head_seq}) does not match the last row ({last_seq})"
            )));
        }
        if let Some((seq, hash)) = signed {
            if seq > last_seq {
                return Ok(Some(format!(
                    "the log was rewound: row {seq} was signed, but the log ends at row {last_seq}"
                )));
            }
            match signed_hash {
                None => return Ok(Some(format!("row {seq}, signed, is missing (deleted)"))),
                Some(h) if h != hash => {
                    return Ok(Some(format!(
                        "row {seq} is not the row signed: it or a row before it was edited and the chain re-computed"
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(None)
    }

    /// The chain head: the last row's sequence number and hash.
    pub async fn audit_head(&self) -> Result<(i64, String)> {
        Ok(
            sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Number of audit rows, for metrics and tests.
    pub async fn audit_count(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM audit_log")
            .fetch_one(&self.pool)
            .await?;
        col(&row, "n")
    }
}
