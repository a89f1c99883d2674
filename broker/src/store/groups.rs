//! Access groups: the unit that apps grant access to.

use serde::Serialize;

use super::{AuditEntry, AuditedTx, Result, Store, StoreError};
use crate::clock::Millis;
use crate::model::GroupName;

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub name: String,
    pub description: String,
    pub members: i64,
    pub apps: i64,
    /// Provider groups (SSO) whose members are made members of this one.
    pub idp_groups: Vec<String>,
}

/// Longest provider group value kept.
pub const MAX_IDP_GROUP: usize = 256;
/// Provider groups mapped to one group at most.
pub const MAX_IDP_GROUPS: usize = 64;

impl Store {
    pub async fn group_add(
        &self,
        actor: &str,
        name: &GroupName,
        description: &str,
        now: Millis,
    ) -> Result<()> {
        self.group_add_mapped(actor, name, description, &[], now)
            .await
    }

    /// Adds a group whose members are, at SSO sign-in, whoever the
    /// provider says is in one of `idp_groups` (names or object ids, as
    /// the provider sends them).
    pub async fn group_add_mapped(
        &self,
        actor: &str,
        name: &GroupName,
        description: &str,
        idp_groups: &[String],
        now: Millis,
    ) -> Result<()> {
        if idp_groups.len() > MAX_IDP_GROUPS {
            return Err(StoreError::Invalid(format!(
                "at most {MAX_IDP_GROUPS} --idp-group values"
            )));
        }
        for g in idp_groups {
            if g.trim().is_empty() || g.len() > MAX_IDP_GROUP || g.chars().any(char::is_control) {
                return Err(StoreError::Invalid(format!(
                    "bad --idp-group {g:?}: 1 to {MAX_IDP_GROUP} characters, no control characters"
                )));
            }
        }
        let mut tx = self.begin_audited(now).await?;
        let inserted = sqlx::query(
            "INSERT INTO access_groups (name, description, created_at) VALUES ($1, $2, $3)",
        )
        .bind(name.as_str())
        .bind(description)
        .bind(now)
        .execute(tx.conn())
        .await
        .map_err(StoreError::from);
        match inserted {
            Err(e) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!("group {name} already exists")));
            }
            other => other?,
        };
        let mut mapped: Vec<&str> = idp_groups.iter().map(|g| g.trim()).collect();
        mapped.sort_unstable();
        mapped.dedup();
        for g in &mapped {
            sqlx::query("INSERT INTO group_idp_groups (group_name, idp_group) VALUES ($1, $2)")
                .bind(name.as_str())
                .bind(*g)
                .execute(tx.conn())
                .await?;
        }
        let entry = AuditEntry::ok(actor, "group.add", name.as_str());
        let entry = if mapped.is_empty() {
            entry
        } else {
            entry.with_detail(serde_json::json!({ "idp_groups": mapped }))
        };
        tx.audit(entry).await?;
        tx.commit().await
    }

    pub async fn group_list(&self) -> Result<Vec<Group>> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT g.name, g.description,
                    (SELECT COUNT(*) FROM staff_groups sg WHERE sg.group_name = g.name),
                    (SELECT COUNT(*) FROM app_groups ag WHERE ag.group_name = g.name)
             FROM access_groups g ORDER BY g.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mappings = self.idp_group_mappings().await?;
        Ok(rows
            .into_iter()
            .map(|(name, description, members, apps)| Group {
                idp_groups: mappings
                    .iter()
                    .filter(|(g, _)| *g == name)
                    .map(|(_, idp)| idp.clone())
                    .collect(),
                name,
                description,
                members,
                apps,
            })
            .collect())
    }

    pub async fn group_remove(&self, actor: &str, name: &GroupName, now: Millis) -> Result<()> {
        let mut tx = self.begin_audited(now).await?;
        tx.access_changed();
        let (members, apps, pools): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM staff_groups WHERE group_name = $1),
                    (SELECT COUNT(*) FROM app_groups WHERE group_name = $1),
                    (SELECT COUNT(*) FROM laptops WHERE pool_group = $1)",
        )
        .bind(name.as_str())
        .fetch_one(tx.conn())
        .await?;
        if members > 0 || apps > 0 || pools > 0 {
            return Err(StoreError::Conflict(format!(
                "group {name} is still used by {members} staff, {apps} apps and {pools} pool laptops; take them out of it first"
            )));
        }
        sqlx::query("DELETE FROM group_idp_groups WHERE group_name = $1")
            .bind(name.as_str())
            .execute(tx.conn())
            .await?;
        let done = sqlx::query("DELETE FROM access_groups WHERE name = $1")
            .bind(name.as_str())
            .execute(tx.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no group named {name}")));
        }
        tx.audit(AuditEntry::ok(actor, "group.remove", name.as_str()))
            .await?;
        tx.commit().await
    }
}

/// Fails with a clear message naming the first group that does not exist.
pub(super) async fn require_groups(tx: &mut AuditedTx, groups: &[GroupName]) -> Result<()> {
    for g in groups {
        if !group_exists(tx, g).await? {
            return Err(StoreError::Invalid(unknown_group(g)));
        }
    }
    Ok(())
}

/// The problem with a group that does not exist, and its fix.
pub(super) fn unknown_group(g: &GroupName) -> String {
    format!("unknown group {g}: add it first with `lanyard groups add {g}`")
}

pub(super) async fn group_exists(tx: &mut AuditedTx, g: &GroupName) -> Result<bool> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM access_groups WHERE name = $1")
        .bind(g.as_str())
        .fetch_one(tx.conn())
        .await?;
    Ok(n > 0)
}
