//! Council laptops: stock, allocations and their history.
//!
//! Every change is one `AuditedTx` whose audit rows name the asset tag, so a
//! laptop's history is read straight from the tamper-evident log. Assigning
//! is guarded twice: the conditional `UPDATE … WHERE status = 'in-stock'`
//! lets one of any number of concurrent assigns through, and the partial
//! unique index on open allocations refuses a second one regardless.

use std::collections::HashMap;

use serde::Serialize;

use super::staff::{ImportError, RowProblem};
use super::{AuditEntry, AuditedTx, Result, Store, StoreError};
use crate::clock::{rfc3339, Millis};
use crate::model::{AssetTag, LaptopStatus, Username};

/// One row of a laptop import as far as it could be read. Its asset tag
/// and serial are checked against the file and the store even when another
/// field is bad, so that one pass names every problem.
#[derive(Debug, Clone)]
pub struct LaptopImportRow {
    /// Its line in the file.
    pub line: u64,
    pub asset_tag: Option<AssetTag>,
    pub serial: Option<String>,
    /// The whole row, when every field parsed.
    pub laptop: Option<NewLaptop>,
    /// What is wrong with its fields (or the row as a whole).
    pub problems: Vec<String>,
}

impl LaptopImportRow {
    /// A row that parsed.
    pub fn parsed(line: u64, l: &NewLaptop) -> Self {
        Self {
            line,
            asset_tag: Some(l.asset_tag.clone()),
            serial: Some(l.serial.clone()),
            laptop: Some(l.clone()),
            problems: Vec::new(),
        }
    }

    /// A row that could not be read at all.
    pub fn unreadable(line: u64, problem: String) -> Self {
        Self {
            line,
            asset_tag: None,
            serial: None,
            laptop: None,
            problems: vec![problem],
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewLaptop {
    pub asset_tag: AssetTag,
    pub serial: String,
    pub model: String,
    pub status: LaptopStatus,
    pub notes: String,
    pub purchase_date: Option<String>,
    pub warranty_end: Option<String>,
}

/// A row of `devices list`: a council laptop, or a personal device.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceRow {
    pub kind: &'static str,
    pub asset_tag: Option<String>,
    pub serial: Option<String>,
    pub model: Option<String>,
    pub status: String,
    /// Who has it: the allocation's holder, or a personal device's owner.
    pub holder: Option<String>,
    pub holder_name: Option<String>,
    pub department: Option<String>,
    pub allocated_since: Option<String>,
    /// A pool laptop's group: any active member may use it.
    pub pool: Option<String>,
    /// Since when the laptop is to come back (its holder left).
    pub recall_since: Option<String>,
    pub notes: String,
    pub purchase_date: Option<String>,
    pub warranty_end: Option<String>,
    /// A personal device's certificate fingerprint (first 16 hex digits).
    pub device_id: Option<String>,
}

from_row! {
    /// An enrolled personal device and its owner.
    #[derive(Debug, Clone)]
    struct PersonalRow {
        fingerprint: String,
        owner: String,
        name: String,
        department: String,
        enrolled_at: i64,
        revoked_at: Option<i64>,
        os: Option<String>,
    }
}

from_row! {
    #[derive(Debug, Clone)]
    struct LaptopRow {
        asset_tag: String,
        serial: String,
        model: String,
        status: String,
        notes: String,
        purchase_date: Option<String>,
        warranty_end: Option<String>,
        holder: Option<String>,
        holder_name: Option<String>,
        department: Option<String>,
        allocated_at: Option<i64>,
        pool: Option<String>,
        recall_at: Option<i64>,
    }
}

impl From<LaptopRow> for DeviceRow {
    fn from(r: LaptopRow) -> Self {
        DeviceRow {
            kind: "managed",
            asset_tag: Some(r.asset_tag),
            serial: Some(r.serial),
            model: Some(r.model),
            status: r.status,
            holder: r.holder,
            holder_name: r.holder_name,
            department: r.department,
            allocated_since: r.allocated_at.map(rfc3339),
            pool: r.pool,
            recall_since: r.recall_at.map(rfc3339),
            notes: r.notes,
            purchase_date: r.purchase_date,
            warranty_end: r.warranty_end,
            device_id: None,
        }
    }
}

from_row! {
    /// One hand-over, open or closed.
    #[derive(Debug, Clone, Serialize)]
    pub struct Allocation {
        pub id: String,
        pub asset_tag: String,
        pub username: String,
        #[serde(skip)]
        pub allocated_at: i64,
        pub allocated_by: String,
        pub request_id: Option<String>,
        #[serde(skip)]
        pub returned_at: Option<i64>,
        pub received_by: Option<String>,
        pub return_condition: Option<String>,
        pub return_note: Option<String>,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AllocationView {
    #[serde(flatten)]
    pub allocation: Allocation,
    pub since: String,
    pub returned: Option<String>,
}

from_row! {
    /// The agent that holds a certificate for a device.
    #[derive(Debug, Clone, Serialize)]
    pub struct AgentRow {
        pub fingerprint: String,
        #[serde(skip)]
        pub enrolled_at: i64,
        #[serde(skip)]
        pub cert_expires_at: i64,
        #[serde(skip)]
        pub last_seen_at: Option<i64>,
        pub agent_version: Option<String>,
        pub os: Option<String>,
        #[serde(skip)]
        pub revoked_at: Option<i64>,
        pub revoke_reason: Option<String>,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    #[serde(flatten)]
    pub agent: AgentRow,
    pub enrolled: String,
    pub cert_expires: String,
    pub last_seen: Option<String>,
    pub revoked: Option<String>,
}

impl From<AgentRow> for AgentView {
    fn from(a: AgentRow) -> Self {
        AgentView {
            enrolled: rfc3339(a.enrolled_at),
            cert_expires: rfc3339(a.cert_expires_at),
            last_seen: a.last_seen_at.map(rfc3339),
            revoked: a.revoked_at.map(rfc3339),
            agent: a,
        }
    }
}

/// `devices show`: the laptop, who has it, its past, and its agent.
#[derive(Debug, Clone, Serialize)]
pub struct LaptopDetail {
    #[serde(flatten)]
    pub laptop: DeviceRow,
    pub allocations: Vec<AllocationView>,
    /// Agents enrolled on this laptop, newest first; empty if none.
    pub agents: Vec<AgentView>,
    /// The last sign-ins on this laptop's agent, newest first, refused ones
    /// too: who tried, when, and whether they got in.
    pub sign_ins: Vec<SignInView>,
}

/// One sign-in on a laptop, from the audit log.
#[derive(Debug, Clone, Serialize)]
pub struct SignInView {
    pub username: String,
    pub at: String,
    pub outcome: String,
}

/// How many sign-ins `devices show` lists.
const SIGN_INS_SHOWN: i64 = 10;

/// Filters for `devices list`; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct LaptopFilter {
    pub status: Option<LaptopStatus>,
    pub kind: Option<String>,
    pub model: Option<String>,
    pub holder: Option<String>,
    pub department: Option<String>,
    /// Free text, matched literally (`%`, `_`, quotes are not special) and
    /// without regard to case against asset tag, serial and model.
    pub search: Option<String>,
}

from_row! {
    /// A laptop as the access rules need it.
    #[derive(Debug, Clone)]
    pub struct LaptopAccessRow {
        pub asset_tag: String,
        pub status: String,
        pub holder: Option<String>,
        pub pool: Option<String>,
    }
}

/// What a revocation touched, so live tunnels can be closed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Revoked {
    pub fingerprints: Vec<String>,
}

pub fn search_key(tag: &str, serial: &str, model: &str) -> String {
    format!("{tag} {serial} {model}").to_lowercase()
}

const LAPTOP_SELECT: &str =
    "SELECT l.asset_tag, l.serial, l.model, l.status, l.notes, l.purchase_date, l.warranty_end,
            a.username AS holder, s.name AS holder_name, s.department AS department, a.allocated_at,
            l.pool_group AS pool, a.recall_at
     FROM laptops l
     LEFT JOIN allocations a ON a.asset_tag = l.asset_tag AND a.returned_at IS NULL
     LEFT JOIN staff s ON s.username = a.username";

async fn insert_laptop(tx: &mut AuditedTx, l: &NewLaptop) -> Result<()> {
    let now = tx.now();
    let inserted = sqlx::query(
        "INSERT INTO laptops (asset_tag, serial, model, status, notes, purchase_date, warranty_end,
                              search_key, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(l.asset_tag.as_str())
    .bind(&l.serial)
    .bind(&l.model)
    .bind(l.status.as_str())
    .bind(&l.notes)
    .bind(l.purchase_date.clone())
    .bind(l.warranty_end.clone())
    .bind(search_key(l.asset_tag.as_str(), &l.serial, &l.model))
    .bind(now)
    .execute(tx.conn())
    .await
    .map_err(StoreError::from);
    match inserted {
        Err(e) if e.is_unique_violation() => Err(StoreError::Conflict(format!(
            "a laptop with asset tag {} or serial {} already exists",
            l.asset_tag, l.serial
        ))),
        other => other.map(|_| ()),
    }
}

async fn laptop_status(tx: &mut AuditedTx, tag: &str) -> Result<String> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM laptops WHERE asset_tag = $1")
            .bind(tag)
            .fetch_optional(tx.conn())
            .await?;
    status.ok_or_else(|| StoreError::NotFound(format!("no laptop with asset tag {tag}")))
}

async fn open_holder(tx: &mut AuditedTx, tag: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT username FROM allocations WHERE asset_tag = $1 AND returned_at IS NULL",
    )
    .bind(tag)
    .fetch_optional(tx.conn())
    .await?)
}

/// Hands `tag` to `username` inside `tx`; the caller audits and commits.
pub(super) async fn assign_in(
    tx: &mut AuditedTx,
    actor: &str,
    tag: &str,
    username: &str,
    request_id: Option<&str>,
) -> Result<String> {
    let now = tx.now();
    let claimed = sqlx::query(
        "UPDATE laptops SET status = 'allocated', updated_at = $1 WHERE asset_tag = $2 AND status = 'in-stock'",
    )
    .bind(now)
    .bind(tag)
    .execute(tx.conn())
    .await?;
    if claimed.rows_affected() != 1 {
        let status = laptop_status(tx, tag).await?;
        let why = match (status.as_str(), open_holder(tx, tag).await?) {
            ("allocated", Some(holder)) => format!("it is allocated to {holder}"),
            (s, _) => format!("it is {s}"),
        };
        return Err(StoreError::Conflict(format!(
            "laptop {tag} is not in stock: {why}"
        )));
    }
    let id = crate::secrets::new_id();
    let inserted = sqlx::query(
        "INSERT INTO allocations (id, asset_tag, username, allocated_at, allocated_by, request_id)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(tag)
    .bind(username)
    .bind(now)
    .bind(actor)
    .bind(request_id.map(str::to_owned))
    .execute(tx.conn())
    .await
    .map_err(StoreError::from);
    match inserted {
        Err(e) if e.is_unique_violation() => Err(StoreError::Conflict(format!(
            "laptop {tag} is not in stock: it already has an open allocation"
        ))),
        other => other.map(|_| id),
    }
}

async fn require_active(tx: &mut AuditedTx, username: &str) -> Result<()> {
    let active: Option<i64> = sqlx::query_scalar("SELECT active FROM staff WHERE username = $1")
        .bind(username)
        .fetch_optional(tx.conn())
        .await?;
    match active {
        None => Err(StoreError::NotFound(format!(
            "no staff member named {username}"
        ))),
        Some(0) => Err(StoreError::Invalid(format!(
            "{username} is disabled; enable them first"
        ))),
        Some(_) => Ok(()),
    }
}

/// Revokes the agents of laptop `tag` and cancels its unused enrolment
/// codes, so that neither an enrolled agent nor a code in a drawer can
/// bring the laptop back.
async fn revoke_agents_in(tx: &mut AuditedTx, tag: &str, reason: &str) -> Result<Revoked> {
    let now = tx.now();
    super::enrol::cancel_codes_in(tx, super::enrol::CodesOf::Laptop(tag)).await?;
    let fingerprints: Vec<String> = sqlx::query_scalar(
        "UPDATE enrolled_devices SET revoked_at = $1, revoke_reason = $2
         WHERE asset_tag = $3 AND revoked_at IS NULL RETURNING fingerprint",
    )
    .bind(now)
    .bind(reason)
    .bind(tag)
    .fetch_all(tx.conn())
    .await?;
    Ok(Revoked { fingerprints })
}

impl Store {
    /// Every laptop as the access rules need it: status, holder, pool.
    pub async fn laptops_access(&self) -> Result<Vec<LaptopAccessRow>> {
        Ok(sqlx::query_as(
            "SELECT l.asset_tag, l.status, a.username AS holder, l.pool_group AS pool
             FROM laptops l
             LEFT JOIN allocations a ON a.asset_tag = l.asset_tag AND a.returned_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Makes `tag` a pool laptop of `group` (any active member may use it,
    /// whoever holds it), or, with `None`, an ordinary one again.
    pub async fn laptop_set_pool(
        &self,
        actor: &str,
        tag: &AssetTag,
        group: Option<&crate::model::GroupName>,
        now: Millis,
    ) -> Result<DeviceRow> {
        let mut tx = self.begin_audited(now).await?;
        tx.access_changed();
        laptop_status(&mut tx, tag.as_str()).await?;
        if let Some(g) = group {
            super::groups::require_groups(&mut tx, std::slice::from_ref(g)).await?;
        }
        sqlx::query("UPDATE laptops SET pool_group = $1, updated_at = $2 WHERE asset_tag = $3")
            .bind(group.map(|g| g.as_str()))
            .bind(now)
            .bind(tag.as_str())
            .execute(tx.conn())
            .await?;
        tx.audit(
            AuditEntry::ok(actor, "laptop.pool", tag.as_str())
                .with_detail(serde_json::json!({ "pool": group.map(|g| g.as_str()) })),
        )
        .await?;
        tx.commit().await?;
        self.laptop_get(tag.as_str()).await
    }

    pub async fn laptop_add(&self, actor: &str, new: &NewLaptop, now: Millis) -> Result<DeviceRow> {
        let mut tx = self.begin_audited(now).await?;
        insert_laptop(&mut tx, new).await?;
        tx.audit(
            AuditEntry::ok(actor, "laptop.add", new.asset_tag.as_str()).with_detail(
                serde_json::json!({
                    "serial": new.serial, "model": new.model, "status": new.status,
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        self.laptop_get(new.asset_tag.as_str()).await
    }

    /// Imports many laptops: checked against the file and the store first;
    /// any bad row refuses the whole file.
    pub async fn laptop_import(
        &self,
        actor: &str,
        rows: &[(u64, NewLaptop)],
        now: Millis,
    ) -> Result<usize, ImportError> {
        let rows: Vec<LaptopImportRow> = rows
            .iter()
            .map(|(line, l)| LaptopImportRow::parsed(*line, l))
            .collect();
        self.laptop_import_rows(actor, &rows, now).await
    }

    /// Imports a file's rows, each as far as it could be read. In one pass
    /// it names every problem: each row's own (bad fields), an asset tag or
    /// serial that repeats an earlier line or is already in the inventory.
    /// Any problem refuses the whole file and nothing is written.
    pub async fn laptop_import_rows(
        &self,
        actor: &str,
        rows: &[LaptopImportRow],
        now: Millis,
    ) -> Result<usize, ImportError> {
        let mut tx = self.begin_audited(now).await?;
        let mut problems = Vec::new();
        let mut tags: HashMap<&str, u64> = HashMap::new();
        let mut serials: HashMap<&str, u64> = HashMap::new();
        for row in rows {
            let mut problem = |problem: String| {
                problems.push(RowProblem {
                    line: row.line,
                    problem,
                })
            };
            for p in &row.problems {
                problem(p.clone());
            }
            if row.laptop.is_none() && row.problems.is_empty() {
                problem("the row is incomplete".into());
            }
            // A key that repeats an earlier line is reported as that, and
            // not looked up: the earlier line already says if it exists.
            let tag = row.asset_tag.as_ref().map(AssetTag::as_str);
            let tag = match tag.and_then(|t| tags.get(t).map(|first| (t, *first))) {
                Some((t, first)) => {
                    problem(format!("asset tag {t} is also on line {first}"));
                    None
                }
                None => tag,
            };
            let serial = row.serial.as_deref();
            let serial = match serial.and_then(|s| serials.get(s).map(|first| (s, *first))) {
                Some((s, first)) => {
                    problem(format!("serial {s} is also on line {first}"));
                    None
                }
                None => serial,
            };
            if let Some(t) = tag {
                tags.insert(t, row.line);
            }
            if let Some(s) = serial {
                serials.insert(s, row.line);
            }
            if tag.is_none() && serial.is_none() {
                continue;
            }
            // A missing key binds NULL, which matches no row.
            let (tag_taken, serial_taken): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM laptops WHERE asset_tag = $1), (SELECT COUNT(*) FROM laptops WHERE serial = $2)",
            )
            .bind(tag)
            .bind(serial)
            .fetch_one(tx.conn())
            .await
            .map_err(StoreError::from)?;
            if let (Some(t), true) = (tag, tag_taken > 0) {
                problem(format!("asset tag {t} already exists"));
            }
            if let (Some(s), true) = (serial, serial_taken > 0) {
                problem(format!("serial {s} already exists"));
            }
        }
        if !problems.is_empty() {
            problems.sort_by_key(|p| p.line);
            return Err(ImportError::Rows(problems));
        }
        // One audit row per laptop, so each laptop's history starts with it.
        let mut imported = 0;
        for (line, l) in rows
            .iter()
            .filter_map(|r| Some((r.line, r.laptop.as_ref()?)))
        {
            insert_laptop(&mut tx, l).await?;
            tx.audit(AuditEntry::ok(actor, "laptop.add", l.asset_tag.as_str()).with_detail(serde_json::json!({
                "serial": l.serial, "model": l.model, "status": l.status, "import_line": line,
            })))
            .await?;
            imported += 1;
        }
        tx.commit().await?;
        Ok(imported)
    }

    pub async fn laptop_get(&self, asset_tag: &str) -> Result<DeviceRow> {
        let row: Option<LaptopRow> =
            sqlx::query_as(&format!("{LAPTOP_SELECT} WHERE l.asset_tag = $1"))
                .bind(asset_tag)
                .fetch_optional(&self.pool)
                .await?;
        row.map(DeviceRow::from)
            .ok_or_else(|| StoreError::NotFound(format!("no laptop with asset tag {asset_tag}")))
    }

    pub async fn laptop_detail(&self, asset_tag: &str) -> Result<LaptopDetail> {
        let laptop = self.laptop_get(asset_tag).await?;
        let allocations: Vec<Allocation> = sqlx::query_as(
            "SELECT id, asset_tag, username, allocated_at, allocated_by, request_id, returned_at,
                    received_by, return_condition, return_note
             FROM allocations WHERE asset_tag = $1 ORDER BY allocated_at DESC, id",
        )
        .bind(asset_tag)
        .fetch_all(&self.pool)
        .await?;
        let agents: Vec<AgentRow> = sqlx::query_as(
            "SELECT fingerprint, enrolled_at, cert_expires_at, last_seen_at, agent_version, os, revoked_at, revoke_reason
             FROM enrolled_devices WHERE asset_tag = $1 ORDER BY enrolled_at DESC",
        )
        .bind(asset_tag)
        .fetch_all(&self.pool)
        .await?;
        let sign_ins: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT actor, at_ms, outcome FROM audit_log
             WHERE action = 'agent.signin' AND target = $1
             ORDER BY seq DESC LIMIT $2",
        )
        .bind(asset_tag)
        .bind(SIGN_INS_SHOWN)
        .fetch_all(&self.pool)
        .await?;
        Ok(LaptopDetail {
            laptop,
            allocations: allocations
                .into_iter()
                .map(|a| AllocationView {
                    since: rfc3339(a.allocated_at),
                    returned: a.returned_at.map(rfc3339),
                    allocation: a,
                })
                .collect(),
            agents: agents.into_iter().map(AgentView::from).collect(),
            sign_ins: sign_ins
                .into_iter()
                .map(|(username, at, outcome)| SignInView {
                    username,
                    at: rfc3339(at),
                    outcome,
                })
                .collect(),
        })
    }

    /// Laptops and personal devices matching `filter`, laptops first by tag.
    pub async fn device_list(&self, filter: &LaptopFilter) -> Result<Vec<DeviceRow>> {
        Ok(self.device_page(filter, 0, usize::MAX).await?.0)
    }

    /// One page of [`device_list`](Self::device_list): `limit` rows from
    /// `offset`, and how many match in all. The laptops' page is read with
    /// `LIMIT`/`OFFSET` (a page of 10,000 laptops costs a page, not 10,000
    /// rows).
    pub async fn device_page(
        &self,
        filter: &LaptopFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<DeviceRow>, usize)> {
        let want = |f: &Option<String>| f.clone().unwrap_or_default();
        let search = filter.search.as_deref().map(str::trim).unwrap_or("");
        let like = super::like_pattern(&search.to_lowercase());
        let kind = filter.kind.as_deref().unwrap_or("");
        let status = filter.status.map_or("", LaptopStatus::as_str);
        const MANAGED_WHERE: &str = "WHERE ($1 = '' OR l.status = $1)
                   AND ($2 = '' OR l.model = $2)
                   AND ($3 = '' OR a.username = $3)
                   AND ($4 = '' OR s.department = $4)
                   AND ($5 = '' OR l.search_key LIKE $6 ESCAPE '\\')";
        let mut out = Vec::new();
        let mut managed_total = 0usize;
        if kind.is_empty() || kind == "managed" {
            let count: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM laptops l
                 LEFT JOIN allocations a ON a.asset_tag = l.asset_tag AND a.returned_at IS NULL
                 LEFT JOIN staff s ON s.username = a.username
                 {MANAGED_WHERE}"
            ))
            .bind(status)
            .bind(want(&filter.model))
            .bind(want(&filter.holder))
            .bind(want(&filter.department))
            .bind(search)
            .bind(&like)
            .fetch_one(&self.pool)
            .await?;
            managed_total = usize::try_from(count).unwrap_or(0);
            if offset < managed_total && limit > 0 {
                let rows: Vec<LaptopRow> = sqlx::query_as(&format!(
                    "{LAPTOP_SELECT} {MANAGED_WHERE} ORDER BY l.asset_tag LIMIT $7 OFFSET $8"
                ))
                .bind(status)
                .bind(want(&filter.model))
                .bind(want(&filter.holder))
                .bind(want(&filter.department))
                .bind(search)
                .bind(&like)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .bind(i64::try_from(offset).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
                out.extend(rows.into_iter().map(DeviceRow::from));
            }
        }
        // Personal devices have no status, model or serial of the laptop kind;
        // they match only filters that apply to them.
        let personal_applies = (kind.is_empty() || kind == "personal")
            && filter.status.is_none()
            && filter.model.is_none()
            && search.is_empty();
        let mut personal_total = 0;
        if personal_applies {
            let rows: Vec<PersonalRow> = sqlx::query_as(
                "SELECT d.fingerprint, d.owner, s.name, s.department, d.enrolled_at, d.revoked_at, d.os
                 FROM enrolled_devices d JOIN staff s ON s.username = d.owner
                 WHERE d.kind = 'personal' AND ($1 = '' OR d.owner = $1) AND ($2 = '' OR s.department = $2)
                 ORDER BY d.owner, d.enrolled_at",
            )
            .bind(want(&filter.holder))
            .bind(want(&filter.department))
            .fetch_all(&self.pool)
            .await?;
            personal_total = rows.len();
            let skip = offset.saturating_sub(managed_total);
            let room = limit.saturating_sub(out.len());
            out.extend(rows.into_iter().skip(skip).take(room).map(|p| {
                DeviceRow {
                    kind: "personal",
                    asset_tag: None,
                    serial: None,
                    model: p.os,
                    status: if p.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "enrolled"
                    }
                    .into(),
                    holder: Some(p.owner),
                    holder_name: Some(p.name),
                    department: Some(p.department),
                    pool: None,
                    recall_since: None,
                    allocated_since: Some(rfc3339(p.enrolled_at)),
                    notes: String::new(),
                    purchase_date: None,
                    warranty_end: None,
                    device_id: Some(p.fingerprint.chars().take(16).collect()),
                }
            }));
        }
        Ok((out, managed_total + personal_total))
    }

    pub async fn laptop_assign(
        &self,
        actor: &str,
        tag: &AssetTag,
        to: &Username,
        note: &str,
        now: Millis,
    ) -> Result<DeviceRow> {
        let mut tx = self.begin_audited(now).await?;
        tx.access_changed();
        require_active(&mut tx, to.as_str()).await?;
        let allocation = assign_in(&mut tx, actor, tag.as_str(), to.as_str(), None).await?;
        tx.audit(
            AuditEntry::ok(actor, "laptop.assign", tag.as_str()).with_detail(serde_json::json!({
                "to": to, "allocation": allocation, "note": note,
            })),
        )
        .await?;
        tx.commit().await?;
        self.laptop_get(tag.as_str()).await
    }

    /// Takes a laptop back; `condition` is the status it returns to.
    pub async fn laptop_return(
        &self,
        actor: &str,
        tag: &AssetTag,
        condition: LaptopStatus,
        note: &str,
        now: Millis,
    ) -> Result<DeviceRow> {
        let condition = condition.as_str();
        if !matches!(condition, "in-stock" | "in-repair") {
            return Err(StoreError::Invalid(format!(
                "a returned laptop goes back in-stock or in-repair, not {condition}"
            )));
        }
        let mut tx = self.begin_audited(now).await?;
        tx.access_changed();
        laptop_status(&mut tx, tag.as_str()).await?;
        let holder: Option<String> = sqlx::query_scalar(
            "UPDATE allocations SET returned_at = $1, received_by = $2, return_condition = $3, return_note = $4
             WHERE asset_tag = $5 AND returned_at IS NULL RETURNING username",
        )
        .bind(now)
        .bind(actor)
        .bind(condition)
        .bind(note)
        .bind(tag.as_str())
        .fetch_optional(tx.conn())
        .await?;
        let Some(holder) = holder else {
            return Err(StoreError::Conflict(format!(
                "laptop {tag} is not allocated to anyone"
            )));
        };
        sqlx::query("UPDATE laptops SET status = $1, updated_at = $2 WHERE asset_tag = $3")
            .bind(condition)
            .bind(now)
            .bind(tag.as_str())
            .execute(tx.conn())
            .await?;
        tx.audit(
            AuditEntry::ok(actor, "laptop.return", tag.as_str()).with_detail(serde_json::json!({
                "from": holder, "condition": condition, "note": note,
            })),
        )
        .await?;
        tx.commit().await?;
        self.laptop_get(tag.as_str()).await
    }

    /// Sets a laptop's status. An allocated laptop must be returned first,
    /// unless it is lost or retired: then its allocation is closed too.
    /// Lost and retired laptops lose their agent certificates.
    pub async fn laptop_mark(
        &self,
        actor: &str,
        tag: &AssetTag,
        status: LaptopStatus,
        note: &str,
        now: Millis,
    ) -> Result<(DeviceRow, Revoked)> {
        if status == LaptopStatus::Allocated {
            return Err(StoreError::Invalid(
                "use `lanyard devices assign` to allocate a laptop".into(),
            ));
        }
        let status = status.as_str();
        let mut tx = self.begin_audited(now).await?;
        tx.access_changed();
        let current = laptop_status(&mut tx, tag.as_str()).await?;
        let mut detail = serde_json::json!({ "from": current, "status": status, "note": note });
        if current == "allocated" {
            if !matches!(status, "lost" | "retired") {
                let holder = open_holder(&mut tx, tag.as_str())
                    .await?
                    .unwrap_or_default();
                return Err(StoreError::Conflict(format!(
                    "laptop {tag} is allocated to {holder}; take it back with `lanyard devices return {tag}` first"
                )));
            }
            let holder: Option<String> = sqlx::query_scalar(
                "UPDATE allocations SET returned_at = $1, received_by = $2, return_condition = $3, return_note = $4
                 WHERE asset_tag = $5 AND returned_at IS NULL RETURNING username",
            )
            .bind(now)
            .bind(actor)
            .bind(status)
            .bind(note)
            .bind(tag.as_str())
            .fetch_optional(tx.conn())
            .await?;
            detail["holder"] = serde_json::json!(holder);
        }
        // An empty note keeps the laptop's notes as they were.
        sqlx::query(
            "UPDATE laptops SET status = $1, updated_at = $2, notes = CASE WHEN $4 = '' THEN notes ELSE $4 END
             WHERE asset_tag = $3",
        )
        .bind(status)
        .bind(now)
        .bind(tag.as_str())
        .bind(note)
        .execute(tx.conn())
        .await?;
        let revoked = if matches!(status, "lost" | "retired") {
            revoke_agents_in(&mut tx, tag.as_str(), &format!("laptop marked {status}")).await?
        } else {
            Revoked::default()
        };
        detail["revoked_certificates"] = serde_json::json!(revoked.fingerprints.len());
        tx.audit(AuditEntry::ok(actor, "laptop.mark", tag.as_str()).with_detail(detail))
            .await?;
        tx.commit().await?;
        Ok((self.laptop_get(tag.as_str()).await?, revoked))
    }

    /// Revokes every agent certificate held by a laptop.
    pub async fn laptop_revoke(
        &self,
        actor: &str,
        tag: &AssetTag,
        reason: &str,
        now: Millis,
    ) -> Result<Revoked> {
        let mut tx = self.begin_audited(now).await?;
        tx.access_changed();
        laptop_status(&mut tx, tag.as_str()).await?;
        let revoked = revoke_agents_in(&mut tx, tag.as_str(), reason).await?;
        tx.audit(
            AuditEntry::ok(actor, "device.revoke", tag.as_str()).with_detail(serde_json::json!({
                "reason": reason, "revoked_certificates": revoked.fingerprints.len(),
            })),
        )
        .await?;
        tx.commit().await?;
        Ok(revoked)
    }

    /// The audit rows about one laptop, oldest first.
    pub async fn laptop_history(&self, asset_tag: &str) -> Result<Vec<super::audit::AuditRow>> {
        let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM laptops WHERE asset_tag = $1")
            .bind(asset_tag)
            .fetch_one(&self.pool)
            .await?;
        if exists == 0 {
            return Err(StoreError::NotFound(format!(
                "no laptop with asset tag {asset_tag}"
            )));
        }
        Ok(sqlx::query_as(
            "SELECT seq, at_ms, actor, action, target, outcome, detail, prev_hash, hash
             FROM audit_log WHERE target = $1 ORDER BY seq",
        )
        .bind(asset_tag)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records an enrolled agent device as enrolment would (for tests that
    /// need one without an agent).
    #[cfg(any(test, feature = "testkit"))]
    #[allow(clippy::too_many_arguments)]
    pub async fn enrolled_device_insert(
        &self,
        fingerprint: &str,
        kind: &str,
        asset_tag: Option<&str>,
        owner: Option<&str>,
        cert_expires_at: Millis,
        agent_version: &str,
        os: &str,
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO enrolled_devices (fingerprint, kind, asset_tag, owner, enrolled_at, cert_expires_at,
                                           last_seen_at, agent_version, os)
             VALUES ($1, $2, $3, $4, $5, $6, $5, $7, $8)",
        )
        .bind(fingerprint)
        .bind(kind)
        .bind(asset_tag.map(str::to_owned))
        .bind(owner.map(str::to_owned))
        .bind(now)
        .bind(cert_expires_at)
        .bind(agent_version)
        .bind(os)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
