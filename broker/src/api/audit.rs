//! `/api/v1/audit`: read and verify the hash-chained audit log.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::Viewer;
use super::error::{ApiError, ApiResult};
use super::router::Routes;
use super::QueryParams;
use crate::clock::{duration_ms, now_ms, parse_rfc3339};
use crate::state::AppState;
use crate::store::audit::{AuditFilter, AuditRow, VerifyReport};

/// This module's routes under `/api/v1`.
pub fn routes(r: Routes) -> Routes {
    r.get("/audit", list).get("/audit/verify", verify)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// RFC 3339 time (`2026-11-01T09:00:00Z`), a date, or an age like `24h`.
    since: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    limit: Option<i64>,
}

/// One row as listed: `detail` is nested JSON (an object, or null), not
/// JSON quoted in a string.
#[derive(Debug, Serialize)]
struct Entry {
    at: String,
    seq: i64,
    actor: String,
    action: String,
    target: String,
    outcome: String,
    detail: serde_json::Value,
    prev_hash: String,
    hash: String,
}

impl From<AuditRow> for Entry {
    fn from(row: AuditRow) -> Self {
        Entry {
            at: row.at(),
            detail: row.detail_json(),
            seq: row.seq,
            actor: row.actor,
            action: row.action,
            target: row.target,
            outcome: row.outcome,
            prev_hash: row.prev_hash,
            hash: row.hash,
        }
    }
}

fn parse_since(s: &str) -> Result<i64, ApiError> {
    if let Some(t) = parse_rfc3339(s) {
        return Ok(t);
    }
    humantime::parse_duration(s.trim())
        .map(|d| now_ms() - duration_ms(d))
        .map_err(|_| {
            ApiError::bad(format!(
                "bad --since {s:?}: use a time like 2026-11-01T09:00:00Z or an age like 24h"
            ))
        })
}

async fn list(
    State(state): State<AppState>,
    _viewer: Viewer,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<Vec<Entry>>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad("limit must be between 1 and 10000"));
    }
    let filter = AuditFilter {
        since: q.since.as_deref().map(parse_since).transpose()?,
        actor: q.actor,
        action_prefix: q.action,
        limit,
        before_seq: None,
    };
    let rows = state.store.audit_list(&filter).await?;
    Ok(Json(rows.into_iter().map(Entry::from).collect()))
}

/// The chain, checked against itself and against the signed checkpoints
/// in this node's checkpoint file (a line there that is not signed by this
/// deployment's key fails the check too).
async fn verify(State(state): State<AppState>, _viewer: Viewer) -> ApiResult<Json<VerifyReport>> {
    Ok(Json(verify_chain(&state).await?))
}

/// The whole chain checked, against the signed checkpoints too.
pub(crate) async fn verify_chain(state: &AppState) -> ApiResult<VerifyReport> {
    let read = state.checkpoints.read().map_err(|e| {
        tracing::error!(error = %e, "cannot read the audit checkpoints");
        ApiError::Unavailable(format!(
            "cannot read the audit checkpoint file {}",
            state.checkpoints.path().display()
        ))
    })?;
    let mut report = state.store.audit_verify_against(&read.checkpoints).await?;
    if report.ok {
        if let Some(line) = read.bad_lines.first() {
            report.ok = false;
            report.problem = Some(format!(
                "the checkpoint file {} has a line this broker did not sign ({line})",
                state.checkpoints.path().display()
            ));
        }
    }
    state
        .metrics
        .audit_checked(crate::metrics::AuditCheck::Full, report.ok, now_ms() / 1000);
    Ok(report)
}
