//! Staff: the people who sign in, with their priority tier and groups.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::groups::{group_exists, require_groups};
use super::{flag, AuditEntry, AuditedTx, Result, Store, StoreError};
use crate::clock::{rfc3339, Millis};
use crate::model::{GroupName, Priority, Role, Username};

/// A new staff member, already validated.
#[derive(Debug, Clone)]
pub struct NewStaff {
    pub username: Username,
    pub name: String,
    pub email: String,
    pub department: String,
    pub priority: Priority,
    pub groups: Vec<GroupName>,
    pub role: Role,
    /// An argon2id PHC string, never the password itself.
    pub password_hash: Option<String>,
}

/// A staff member as listed and shown.
#[derive(Debug, Clone, Serialize)]
pub struct Staff {
    pub username: String,
    pub name: String,
    pub email: String,
    pub department: String,
    pub priority: i64,
    pub groups: Vec<String>,
    /// `role == admin`, kept for scripts written before roles.
    pub admin: bool,
    pub role: Role,
    pub active: bool,
    pub has_password: bool,
    pub totp: bool,
    pub created_at: String,
}

/// A change to a person's details: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct StaffChange {
    pub name: Option<String>,
    pub email: Option<String>,
    pub department: Option<String>,
    pub priority: Option<Priority>,
    pub role: Option<Role>,
    /// Replaces every group when given.
    pub groups: Option<Vec<GroupName>>,
}

/// What sign-in needs to know about a person.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub active: bool,
    pub admin: bool,
    pub role: Role,
    pub password_hash: Option<String>,
    pub totp_sealed: Option<String>,
}

/// One CSV row that cannot be imported, by its line in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowProblem {
    pub line: u64,
    pub problem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Every problem in the file, in line order; nothing was written.
    #[error("{}", refused_message(.0))]
    Rows(Vec<RowProblem>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a refused import says: rows counted as rows, then how many
/// problems they have, e.g. "import refused: 2 bad rows, 3 problems;
/// nothing was written".
pub fn refused_message(problems: &[RowProblem]) -> String {
    let rows = problems
        .iter()
        .map(|p| p.line)
        .collect::<BTreeSet<_>>()
        .len();
    let n = problems.len();
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    format!(
        "import refused: {rows} bad row{}, {n} problem{}; nothing was written",
        plural(rows),
        plural(n)
    )
}

/// One row of a staff import as far as it could be read. Its username and
/// groups are checked against the file and the store even when another
/// field is bad, so that one pass names every problem.
#[derive(Debug, Clone)]
pub struct StaffImportRow {
    /// Its line in the file.
    pub line: u64,
    pub username: Option<Username>,
    /// The group names that parsed.
    pub groups: Vec<GroupName>,
    /// The whole row, when every field parsed.
    pub staff: Option<NewStaff>,
    /// What is wrong with its fields (or the row as a whole).
    pub problems: Vec<String>,
}

impl StaffImportRow {
    /// A row that parsed.
    pub fn parsed(line: u64, s: &NewStaff) -> Self {
        Self {
            line,
            username: Some(s.username.clone()),
            groups: s.groups.clone(),
            staff: Some(s.clone()),
            problems: Vec::new(),
        }
    }

    /// A row that could not be read at all.
    pub fn unreadable(line: u64, problem: String) -> Self {
        Self {
            line,
            username: None,
            groups: Vec::new(),
            staff: None,
            problems: vec![problem],
        }
    }
}

from_row! {
    struct StaffRow {
        username: String,
        name: String,
        email: String,
        department: String,
        priority: i64,
        is_admin: i64,
        role: String,
        active: i64,
        password_hash: Option<String>,
        totp_secret: Option<String>,
        created_at: i64,
    }
}

const STAFF_COLUMNS: &str =
    "username, name, email, department, priority, is_admin, role, active, password_hash, totp_secret, created_at";

impl StaffRow {
    fn into_staff(self, groups: Vec<String>) -> Staff {
        Staff {
            username: self.username,
            name: self.name,
            email: self.email,
            department: self.department,
            priority: self.priority,
            groups,
            admin: self.is_admin == 1,
            role: Role::from_stored(&self.role),
            active: self.active == 1,
            has_password: self.password_hash.is_some(),
            totp: self.totp_secret.is_some(),
            created_at: rfc3339(self.created_at),
        }
    }
}

async fn insert_staff(tx: &mut AuditedTx, s: &NewStaff) -> Result<()> {
    let now = tx.now();
    let inserted = sqlx::query(
        "INSERT INTO staff (username, name, email, department, priority, is_admin, role, active,
                            password_hash, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $9)",
    )
    .bind(s.username.as_str())
    .bind(&s.name)
    .bind(&s.email)
    .bind(&s.department)
    .bind(i64::from(s.priority.get()))
    .bind(flag(s.role.is_admin()))
    .bind(s.role.as_str())
    .bind(s.password_hash.clone())
    .bind(now)
    .execute(tx.conn())
    .await
    .map_err(StoreError::from);
    match inserted {
        Err(e) if e.is_unique_violation() => {
            return Err(StoreError::Conflict(format!(
                "staff member {} already exists",
                s.username
            )));
        }
        other => other?,
    };
    for g in &s.groups {
        sqlx::query("INSERT INTO staff_groups (username, group_name) VALUES ($1, $2)")
            .bind(s.username.as_str())
            .bind(g.as_str())
            .execute(tx.conn())
            .await?;
    }
    Ok(())
}

async fn staff_exists(tx: &mut AuditedTx, username: &str) -> Result<bool> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM staff WHERE username = $1")
        .bind(username)
        .fetch_one(tx.conn())
        .await?;
    Ok(n > 0)
}

fn audit_detail(s: &NewStaff) -> serde_json::Value {
    serde_json::json!({
        "priority": s.priority.get(),
        "groups": s.groups,
        "role": s.role,
        "department": s.department,
    })
}

impl Store {
    pub async fn staff_add(&self, actor: &str, new: &NewStaff, now: Millis) -> Result<Staff> {
        let mut tx = self.begin_audited(now).await?;
        tx.access_changed();
        require_groups(&mut tx, &new.groups).await?;
        insert_staff(&mut tx, new).await?;
        tx.audit(
            AuditEntry::ok(actor, "staff.add", new.username.as_str())
                .with_detail(audit_detail(new)),
        )
        .await?;
        tx.commit().await?;
        self.staff_get(new.username.as_str()).await
    }

    /// Imports many staff at once: every row is checked against the file
    /// and the store first; any bad row refuses the whole file.
    pub async fn staff_import(
        &self,
        actor: &str,
        rows: &[(u64, NewStaff)],
        now: Millis,
    ) -> Result<usize, ImportError> {
        let rows: Vec<StaffImportRow> = rows
            .iter()
            .map(|(line, s)| StaffImportRow::parsed(*line, s))
            .collect();
        self.staff_import_rows(actor, &rows, now).await
    }

    /// Imports a file's rows, each as far as it could be read. In one pass
    /// it names every problem: each row's own (bad fields), a username that
    /// repeats an earlier line, a person who already exists, a group that
    /// does not. Any problem refuses the whole file and nothing is written.
    pub async fn staff_import_rows(
        &self,
        actor: &str,
        rows: &[StaffImportRow],
        now: Millis,
    ) -> Result<usize, ImportError> {
        let mut tx = self.begin_audited(now).await?;
        tx.access_changed();
        let mut problems = Vec::new();
        let mut first_line: HashMap<&str, u64> = HashMap::new();
        let mut known_groups: BTreeMap<String, bool> = BTreeMap::new();
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
            if row.staff.is_none() && row.problems.is_empty() {
                problem("the row is incomplete".into());
            }
            if let Some(u) = &row.username {
                if let Some(first) = first_line.get(u.as_str()) {
                    problem(format!("username {u} is also on line {first}"));
                } else {
                    first_line.insert(u.as_str(), row.line);
                    if staff_exists(&mut tx, u.as_str()).await? {
                        problem(format!("staff member {u} already exists"));
                    }
                }
            }
            for g in &row.groups {
                let exists = match known_groups.get(g.as_str()) {
                    Some(e) => *e,
                    None => {
                        let e = group_exists(&mut tx, g).await?;
                        known_groups.insert(g.as_str().to_owned(), e);
                        e
                    }
                };
                if !exists {
                    problem(super::groups::unknown_group(g));
                }
            }
        }
        if !problems.is_empty() {
            problems.sort_by_key(|p| p.line);
            return Err(ImportError::Rows(problems));
        }
        let staff: Vec<&NewStaff> = rows.iter().filter_map(|r| r.staff.as_ref()).collect();
        for s in &staff {
            insert_staff(&mut tx, s).await?;
        }
        let names: Vec<&str> = staff.iter().map(|s| s.username.as_str()).collect();
        tx.audit(
            AuditEntry::ok(actor, "staff.import", &format!("{} staff", staff.len()))
                .with_detail(serde_json::json!({ "usernames": names })),
        )
        .await?;
        tx.commit().await?;
        Ok(staff.len())
    }

    pub async fn staff_list(&self) -> Result<Vec<Staff>> {
        let rows: Vec<StaffRow> = sqlx::query_as(&format!(
            "SELECT {STAFF_COLUMNS} FROM staff ORDER BY username"
        ))
        .fetch_all(&self.pool)
        .await?;
        let memberships: Vec<(String, String)> = sqlx::query_as(
            "SELECT username, group_name FROM staff_groups ORDER BY username, group_name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (u, g) in memberships {
            groups.entry(u).or_default().push(g);
        }
        Ok(rows
            .into_iter()
            .map(|r| {
                let g = groups.remove(&r.username).unwrap_or_default();
                r.into_staff(g)
            })
            .collect())
    }

    pub async fn staff_get(&self, username: &str) -> Result<Staff> {
        let row: Option<StaffRow> = sqlx::query_as(&format!(
            "SELECT {STAFF_COLUMNS} FROM staff WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        let row =
            row.ok_or_else(|| StoreError::NotFound(format!("no staff member named {username}")))?;
        let groups: Vec<String> = sqlx::query_scalar(
            "SELECT group_name FROM staff_groups WHERE username = $1 ORDER BY group_name",
        )
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        Ok(row.into_staff(groups))
    }

    /// Changes a person's details: each field given is set, the others
    /// stay. `groups`, when given, replaces their groups. One audit row
    /// with what changed; nothing is written when nothing changes.
    pub async fn staff_set(
        &self,
        actor: &str,
        username: &str,
        change: &StaffChange,
        now: Millis,
    ) -> Result<Staff> {
        let before = self.staff_get(username).await?;
        let mut tx = self.begin_audited(now).await?;
        let mut changed = serde_json::Map::new();
        let set_text = |column: &'static str, new: &Option<String>, old: &str| {
            new.as_ref()
                .filter(|v| v.as_str() != old)
                .map(|v| (column, v.clone()))
        };
        let texts: Vec<(&'static str, String)> = [
            set_text("name", &change.name, &before.name),
            set_text("email", &change.email, &before.email),
            set_text("department", &change.department, &before.department),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (column, value) in &texts {
            // `column` is one of three names written above, never input.
            sqlx::query(&format!(
                "UPDATE staff SET {column} = $1, updated_at = $2 WHERE username = $3"
            ))
            .bind(value)
            .bind(now)
            .bind(username)
            .execute(tx.conn())
            .await?;
            changed.insert((*column).into(), serde_json::json!(value));
        }
        if let Some(p) = change
            .priority
            .filter(|p| i64::from(p.get()) != before.priority)
        {
            tx.access_changed();
            sqlx::query("UPDATE staff SET priority = $1, updated_at = $2 WHERE username = $3")
                .bind(i64::from(p.get()))
                .bind(now)
                .bind(username)
                .execute(tx.conn())
                .await?;
            changed.insert("priority".into(), serde_json::json!(p.get()));
        }
        if let Some(role) = change.role.filter(|r| *r != before.role) {
            tx.access_changed();
            sqlx::query(
                "UPDATE staff SET role = $1, is_admin = $2, updated_at = $3 WHERE username = $4",
            )
            .bind(role.as_str())
            .bind(flag(role.is_admin()))
            .bind(now)
            .bind(username)
            .execute(tx.conn())
            .await?;
            changed.insert("role".into(), serde_json::json!(role));
        }
        if let Some(groups) = &change.groups {
            let old: BTreeSet<&str> = before.groups.iter().map(String::as_str).collect();
            let new: BTreeSet<&str> = groups.iter().map(GroupName::as_str).collect();
            if old != new {
                require_groups(&mut tx, groups).await?;
                tx.access_changed();
                sqlx::query("DELETE FROM staff_groups WHERE username = $1")
                    .bind(username)
                    .execute(tx.conn())
                    .await?;
                for g in &new {
                    sqlx::query("INSERT INTO staff_groups (username, group_name) VALUES ($1, $2)")
                        .bind(username)
                        .bind(*g)
                        .execute(tx.conn())
                        .await?;
                }
                changed.insert("groups".into(), serde_json::json!(new));
            }
        }
        if changed.is_empty() {
            return Ok(before);
        }
        tx.audit(
            AuditEntry::ok(actor, "staff.set", username)
                .with_detail(serde_json::Value::Object(changed)),
        )
        .await?;
        tx.commit().await?;
        self.staff_get(username).await
    }

    /// Disables or re-enables a person. Disabling also revokes their API
    /// tokens' admin reach (checked live) and their refresh tokens.
    pub async fn staff_set_active(
        &self,
        actor: &str,
        username: &str,
        active: bool,
        now: Millis,
    ) -> Result<Staff> {
        let mut tx = self.begin_audited(now).await?;
        tx.access_changed();
        let done = sqlx::query("UPDATE staff SET active = $1, updated_at = $2 WHERE username = $3")
            .bind(flag(active))
            .bind(now)
            .bind(username)
            .execute(tx.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "no staff member named {username}"
            )));
        }
        if !active {
            // A disable ends what the person held: sign-ins, API tokens and
            // unused enrolment codes. Enabling them again revives none, not
            // even a token issued in a race with the disable.
            super::refresh::end_tokens_in(&mut tx, username).await?;
            super::enrol::cancel_codes_in(&mut tx, super::enrol::CodesOf::Person(username)).await?;
        }
        let action = if active {
            "staff.enable"
        } else {
            "staff.disable"
        };
        tx.audit(AuditEntry::ok(actor, action, username)).await?;
        tx.commit().await?;
        self.staff_get(username).await
    }

    /// Sets (or resets) a person's password. Whatever they were signed in
    /// with ends: their API tokens and agent sign-ins are revoked, their
    /// live sessions close, and a token issued in a race with the reset is
    /// refused too. Audited with how many were ended.
    pub async fn staff_set_password(
        &self,
        actor: &str,
        username: &str,
        password_hash: &str,
        now: Millis,
    ) -> Result<()> {
        let mut tx = self.begin_audited(now).await?;
        let done =
            sqlx::query("UPDATE staff SET password_hash = $1, updated_at = $2 WHERE username = $3")
                .bind(password_hash)
                .bind(now)
                .bind(username)
                .execute(tx.conn())
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "no staff member named {username}"
            )));
        }
        let (sign_ins, api_tokens) = super::refresh::end_tokens_in(&mut tx, username).await?;
        tx.audit(
            AuditEntry::ok(actor, "staff.password", username).with_detail(serde_json::json!({
                "ended_sign_ins": sign_ins, "revoked_api_tokens": api_tokens,
            })),
        )
        .await?;
        tx.commit().await
    }

    /// Stores (or, with `None`, clears) a person's sealed TOTP secret.
    pub async fn staff_set_totp(
        &self,
        actor: &str,
        username: &str,
        sealed: Option<&str>,
        now: Millis,
    ) -> Result<()> {
        let mut tx = self.begin_audited(now).await?;
        let done = sqlx::query(
            "UPDATE staff SET totp_secret = $1, totp_last_step = NULL, updated_at = $2 WHERE username = $3",
        )
        .bind(sealed.map(str::to_owned))
        .bind(now)
        .bind(username)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "no staff member named {username}"
            )));
        }
        let action = if sealed.is_some() {
            "staff.totp.enable"
        } else {
            "staff.totp.disable"
        };
        tx.audit(AuditEntry::ok(actor, action, username)).await?;
        tx.commit().await
    }

    pub async fn staff_credentials(&self, username: &str) -> Result<Option<Credentials>> {
        let row: Option<StaffRow> = sqlx::query_as(&format!(
            "SELECT {STAFF_COLUMNS} FROM staff WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Credentials {
            username: r.username,
            active: r.active == 1,
            admin: r.is_admin == 1,
            role: Role::from_stored(&r.role),
            password_hash: r.password_hash,
            totp_sealed: r.totp_secret,
        }))
    }

    /// Removes a person for good: only one who is disabled (so their
    /// sessions have ended), has no admin rights, no enrolled devices left
    /// and no laptop history (allocations or requests; such a person is
    /// kept, disabled, so the history keeps its person). Their group
    /// memberships, API and refresh tokens and enrolment codes go with
    /// them. One audited change.
    pub async fn staff_remove(&self, actor: &str, username: &Username, now: Millis) -> Result<()> {
        let mut tx = self.begin_audited(now).await?;
        tx.access_changed();
        let username = username.as_str();
        let admin = require_disabled(&mut tx, username).await?;
        if admin {
            return Err(StoreError::Conflict(format!(
                "{username} has admin rights; people with admin rights are disabled, not removed"
            )));
        }
        let (devices, allocations, requests): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM enrolled_devices WHERE owner = $1),
                    (SELECT COUNT(*) FROM allocations WHERE username = $1),
                    (SELECT COUNT(*) FROM laptop_requests WHERE username = $1)",
        )
        .bind(username)
        .fetch_one(tx.conn())
        .await?;
        if devices > 0 {
            return Err(StoreError::Conflict(format!(
                "{username} still has {devices} enrolled device(s); remove them first \
                 (`lanyard staff remove` does both)"
            )));
        }
        if allocations > 0 || requests > 0 {
            return Err(StoreError::Conflict(format!(
                "{username} has laptop history ({allocations} allocation(s), {requests} request(s)); \
                 they stay, disabled, so that history keeps its person"
            )));
        }
        let groups: Vec<String> = sqlx::query_scalar(
            "SELECT group_name FROM staff_groups WHERE username = $1 ORDER BY group_name",
        )
        .bind(username)
        .fetch_all(tx.conn())
        .await?;
        let codes = sqlx::query("DELETE FROM enrolment_codes WHERE username = $1")
            .bind(username)
            .execute(tx.conn())
            .await?
            .rows_affected();
        // Memberships and tokens go with the person (ON DELETE CASCADE).
        sqlx::query("DELETE FROM staff WHERE username = $1")
            .bind(username)
            .execute(tx.conn())
            .await?;
        tx.audit(
            AuditEntry::ok(actor, "staff.remove", username).with_detail(serde_json::json!({
                "groups": groups, "enrolment_codes_removed": codes,
            })),
        )
        .await?;
        tx.commit().await
    }

    /// Records that TOTP step `step` was used; false if it (or a later one)
    /// already was, so that one code cannot sign in twice.
    pub async fn staff_claim_totp_step(&self, username: &str, step: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE staff SET totp_last_step = $1
             WHERE username = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)",
        )
        .bind(step)
        .bind(username)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// Fails unless `username` exists and is disabled; whether they are an
/// admin.
pub(super) async fn require_disabled(tx: &mut AuditedTx, username: &str) -> Result<bool> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT active, is_admin FROM staff WHERE username = $1")
            .bind(username)
            .fetch_optional(tx.conn())
            .await?;
    match row {
        None => Err(StoreError::NotFound(format!(
            "no staff member named {username}"
        ))),
        Some((1, _)) => Err(StoreError::Conflict(format!(
            "{username} is active; disable them first (`lanyard staff disable {username}`), which ends their sessions"
        ))),
        Some((_, admin)) => Ok(admin == 1),
    }
}

/// A person as the access rules need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffAccess {
    pub username: String,
    pub active: bool,
    pub priority: i64,
    pub groups: Vec<String>,
}

impl Store {
    /// Who may reach what: every person with their state and groups.
    pub async fn staff_access(&self) -> Result<Vec<StaffAccess>> {
        let people: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT username, active, priority FROM staff")
                .fetch_all(&self.pool)
                .await?;
        let memberships: Vec<(String, String)> =
            sqlx::query_as("SELECT username, group_name FROM staff_groups")
                .fetch_all(&self.pool)
                .await?;
        let mut groups: std::collections::HashMap<String, Vec<String>> =
            std::collections::HashMap::new();
        for (user, group) in memberships {
            groups.entry(user).or_default().push(group);
        }
        Ok(people
            .into_iter()
            .map(|(username, active, priority)| StaffAccess {
                groups: groups.remove(&username).unwrap_or_default(),
                username,
                active: active == 1,
                priority,
            })
            .collect())
    }
}

/// Removing what a person enrolled.
impl Store {
    /// Revokes and removes every personal device a disabled person
    /// enrolled; their fingerprints. A removed device's certificate no
    /// longer connects ("not enrolled"). One audited change, naming each
    /// device.
    pub async fn personal_devices_remove(
        &self,
        actor: &str,
        owner: &crate::model::Username,
        now: Millis,
    ) -> Result<Vec<String>> {
        let mut tx = self.begin_audited(now).await?;
        tx.access_changed();
        let owner = owner.as_str();
        require_disabled(&mut tx, owner).await?;
        let mut fingerprints: Vec<String> = sqlx::query_scalar(
            "DELETE FROM enrolled_devices WHERE owner = $1 AND kind = 'personal' RETURNING fingerprint",
        )
        .bind(owner)
        .fetch_all(tx.conn())
        .await?;
        fingerprints.sort();
        // Named as `devices list` names them (the first 16 hex digits), so
        // that a removal of thousands stays a readable row.
        let ids: Vec<String> = fingerprints
            .iter()
            .map(|f| f.chars().take(16).collect())
            .collect();
        tx.audit(
            AuditEntry::ok(actor, "staff.devices.remove", owner).with_detail(serde_json::json!({
                "removed": fingerprints.len(), "devices": ids,
            })),
        )
        .await?;
        tx.commit().await?;
        Ok(fingerprints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_counts_rows_as_rows() {
        let p = |line: u64| RowProblem {
            line,
            problem: "x".into(),
        };
        assert_eq!(
            refused_message(&[p(3), p(3), p(5)]),
            "import refused: 2 bad rows, 3 problems; nothing was written"
        );
        assert_eq!(
            refused_message(&[p(2)]),
            "import refused: 1 bad row, 1 problem; nothing was written"
        );
    }
}
