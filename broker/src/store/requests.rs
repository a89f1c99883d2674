//! The laptop request queue: priority 1 first, then 2, then 3; oldest first
//! within a tier. A person has at most one open request (a partial unique
//! index), and the person's priority is read when the queue is served, so a
//! re-tiered person moves at once.

use serde::Serialize;

use super::laptops::assign_in;
use super::{AuditEntry, Result, Store, StoreError};
use crate::clock::{rfc3339, Millis};
use crate::model::Username;

from_row! {
    #[derive(Debug, Clone, Serialize)]
    pub struct RequestRow {
        pub id: String,
        pub username: String,
        pub name: String,
        pub department: String,
        pub priority: i64,
        pub reason: String,
        pub status: String,
        #[serde(skip)]
        pub created_at: i64,
        #[serde(skip)]
        pub fulfilled_at: Option<i64>,
        pub asset_tag: Option<String>,
        #[serde(skip)]
        pub active: i64,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestView {
    #[serde(flatten)]
    pub row: RequestRow,
    /// Place in the queue (1 = served next), for open requests.
    pub place: Option<usize>,
    pub requested: String,
    pub fulfilled: Option<String>,
}

/// One allocation made by `requests fulfil`.
#[derive(Debug, Clone, Serialize)]
pub struct Fulfilled {
    pub request_id: String,
    pub username: String,
    pub priority: i64,
    pub asset_tag: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FulfilReport {
    pub allocated: Vec<Fulfilled>,
    /// Open requests still waiting.
    pub still_queued: usize,
    /// Laptops still in stock.
    pub in_stock: usize,
    /// Open requests passed over because the person is disabled.
    pub skipped_disabled: Vec<String>,
}

const REQUEST_SELECT: &str =
    "SELECT r.id, r.username, s.name, s.department, s.priority, r.reason, r.status,
            r.created_at, r.fulfilled_at, a.asset_tag, s.active
     FROM laptop_requests r
     JOIN staff s ON s.username = r.username
     LEFT JOIN allocations a ON a.id = r.allocation_id";

/// Queue order: priority, then age, then id so ties are stable.
const QUEUE_ORDER: &str = "ORDER BY s.priority, r.created_at, r.id";

impl Store {
    pub async fn request_add(
        &self,
        actor: &str,
        username: &Username,
        reason: &str,
        now: Millis,
    ) -> Result<RequestView> {
        let mut tx = self.begin_audited(now).await?;
        let active: Option<i64> =
            sqlx::query_scalar("SELECT active FROM staff WHERE username = $1")
                .bind(username.as_str())
                .fetch_optional(tx.conn())
                .await?;
        match active {
            None => {
                return Err(StoreError::NotFound(format!(
                    "no staff member named {username}"
                )))
            }
            Some(0) => return Err(StoreError::Invalid(format!("{username} is disabled"))),
            Some(_) => {}
        }
        let id = crate::secrets::new_id();
        let inserted = sqlx::query(
            "INSERT INTO laptop_requests (id, username, reason, status, created_at, created_by)
             VALUES ($1, $2, $3, 'open', $4, $5)",
        )
        .bind(&id)
        .bind(username.as_str())
        .bind(reason)
        .bind(now)
        .bind(actor)
        .execute(tx.conn())
        .await
        .map_err(StoreError::from);
        match inserted {
            Err(e) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!(
                    "{username} already has an open laptop request"
                )));
            }
            other => other?,
        };
        tx.audit(
            AuditEntry::ok(actor, "request.add", username.as_str()).with_detail(
                serde_json::json!({
                    "request": id, "reason": reason,
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        self.request_list(true)
            .await?
            .into_iter()
            .find(|r| r.row.id == id)
            .ok_or_else(|| StoreError::NotFound("the new request vanished".into()))
    }

    /// Open requests in queue order with their places; then, unless
    /// `open_only`, the others, newest first.
    pub async fn request_list(&self, open_only: bool) -> Result<Vec<RequestView>> {
        let open: Vec<RequestRow> = sqlx::query_as(&format!(
            "{REQUEST_SELECT} WHERE r.status = 'open' {QUEUE_ORDER}"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<RequestView> = Vec::with_capacity(open.len());
        let mut place = 0;
        for row in open {
            let p = if row.active == 1 {
                place += 1;
                Some(place)
            } else {
                None
            };
            out.push(view(row, p));
        }
        if !open_only {
            let closed: Vec<RequestRow> = sqlx::query_as(&format!(
                "{REQUEST_SELECT} WHERE r.status <> 'open' ORDER BY r.created_at DESC, r.id"
            ))
            .fetch_all(&self.pool)
            .await?;
            out.extend(closed.into_iter().map(|r| view(r, None)));
        }
        Ok(out)
    }

    pub async fn request_cancel(&self, actor: &str, username: &str, now: Millis) -> Result<()> {
        let mut tx = self.begin_audited(now).await?;
        let done = sqlx::query("UPDATE laptop_requests SET status = 'cancelled' WHERE username = $1 AND status = 'open'")
            .bind(username)
            .execute(tx.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "{username} has no open laptop request"
            )));
        }
        tx.audit(AuditEntry::ok(actor, "request.cancel", username))
            .await?;
        tx.commit().await
    }

    /// Gives in-stock laptops (oldest stock first) to open requests in queue
    /// order, at most `limit` of them, in one transaction.
    pub async fn requests_fulfil(
        &self,
        actor: &str,
        limit: Option<usize>,
        now: Millis,
    ) -> Result<FulfilReport> {
        self.requests_fulfil_as_previewed(actor, limit, None, now)
            .await
    }

    /// Who would get which laptop if the queue were served now (at most
    /// `limit`), without changing anything; with the digest that
    /// [`requests_fulfil_as_previewed`](Self::requests_fulfil_as_previewed)
    /// checks.
    pub async fn requests_fulfil_preview(
        &self,
        limit: Option<usize>,
    ) -> Result<(FulfilReport, String)> {
        let (queue, stock, in_stock) = queue_and_stock(&mut *self.pool.acquire().await?).await?;
        let report = plan(queue, stock, in_stock, limit).report();
        let digest = plan_digest(&report);
        Ok((report, digest))
    }

    /// Serves the queue as [`requests_fulfil`](Self::requests_fulfil) does;
    /// with `expected` (a preview's digest), only if the plan is still the
    /// one previewed: otherwise nothing is written and the answer is a
    /// conflict naming why.
    pub async fn requests_fulfil_as_previewed(
        &self,
        actor: &str,
        limit: Option<usize>,
        expected: Option<&str>,
        now: Millis,
    ) -> Result<FulfilReport> {
        let mut tx = self.begin_audited(now).await?;
        let (queue, stock, in_stock) = queue_and_stock(tx.conn()).await?;
        let plan = plan(queue, stock, in_stock, limit);
        if let Some(expected) = expected {
            if plan_digest(&plan.report()) != expected {
                return Err(StoreError::Conflict(
                    "the queue or the stock changed since the preview; nothing was allocated: look at the new preview".into(),
                ));
            }
        }
        let mut report = plan.report();
        report.allocated.clear();
        for (req, tag) in plan.pairs {
            let allocation = assign_in(&mut tx, actor, &tag, &req.username, Some(&req.id)).await?;
            sqlx::query(
                "UPDATE laptop_requests SET status = 'fulfilled', fulfilled_at = $1, allocation_id = $2
                 WHERE id = $3 AND status = 'open'",
            )
            .bind(now)
            .bind(&allocation)
            .bind(&req.id)
            .execute(tx.conn())
            .await?;
            tx.audit(AuditEntry::ok(actor, "laptop.assign", &tag).with_detail(serde_json::json!({
                "to": req.username, "allocation": allocation, "request": req.id, "priority": req.priority,
            })))
            .await?;
            report.allocated.push(Fulfilled {
                request_id: req.id,
                username: req.username,
                priority: req.priority,
                asset_tag: tag,
            });
        }
        tx.commit().await?;
        Ok(report)
    }
}

/// The open requests in queue order, the in-stock laptops they could take
/// (oldest stock first, no more than there are requests), and how many
/// laptops are in stock in all.
async fn queue_and_stock(
    conn: &mut sqlx::AnyConnection,
) -> Result<(Vec<RequestRow>, Vec<String>, usize)> {
    let queue: Vec<RequestRow> = sqlx::query_as(&format!(
        "{REQUEST_SELECT} WHERE r.status = 'open' {QUEUE_ORDER}"
    ))
    .fetch_all(&mut *conn)
    .await?;
    let stock: Vec<String> = sqlx::query_scalar(
        "SELECT asset_tag FROM laptops WHERE status = 'in-stock' ORDER BY created_at, asset_tag LIMIT $1",
    )
    .bind(i64::try_from(queue.len()).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;
    let in_stock: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM laptops WHERE status = 'in-stock'")
            .fetch_one(&mut *conn)
            .await?;
    Ok((queue, stock, usize::try_from(in_stock).unwrap_or(0)))
}

/// Who gets what: requests in queue order take stock in order; disabled
/// people are passed over; at most `limit` are served.
struct Plan {
    pairs: Vec<(RequestRow, String)>,
    still_queued: usize,
    in_stock: usize,
    skipped_disabled: Vec<String>,
}

fn plan(queue: Vec<RequestRow>, stock: Vec<String>, in_stock: usize, limit: Option<usize>) -> Plan {
    let mut stock = stock.into_iter();
    let limit = limit.unwrap_or(usize::MAX);
    let mut p = Plan {
        pairs: Vec::new(),
        still_queued: 0,
        in_stock: 0,
        skipped_disabled: Vec::new(),
    };
    for req in queue {
        if req.active != 1 {
            p.skipped_disabled.push(req.username);
            continue;
        }
        if p.pairs.len() >= limit {
            p.still_queued += 1;
            continue;
        }
        match stock.next() {
            Some(tag) => p.pairs.push((req, tag)),
            None => p.still_queued += 1,
        }
    }
    p.in_stock = in_stock.saturating_sub(p.pairs.len());
    p
}

impl Plan {
    fn report(&self) -> FulfilReport {
        FulfilReport {
            allocated: self
                .pairs
                .iter()
                .map(|(req, tag)| Fulfilled {
                    request_id: req.id.clone(),
                    username: req.username.clone(),
                    priority: req.priority,
                    asset_tag: tag.clone(),
                })
                .collect(),
            still_queued: self.still_queued,
            in_stock: self.in_stock,
            skipped_disabled: self.skipped_disabled.clone(),
        }
    }
}

/// A digest of who gets what, for a preview to be committed only as seen.
pub fn plan_digest(report: &FulfilReport) -> String {
    let mut text = String::new();
    for a in &report.allocated {
        text.push_str(&a.request_id);
        text.push(':');
        text.push_str(&a.asset_tag);
        text.push('\n');
    }
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    data_encoding::HEXLOWER.encode(&d.as_ref()[..16])
}

fn view(row: RequestRow, place: Option<usize>) -> RequestView {
    RequestView {
        requested: rfc3339(row.created_at),
        fulfilled: row.fulfilled_at.map(rfc3339),
        place,
        row,
    }
}
