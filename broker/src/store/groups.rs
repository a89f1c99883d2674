//! Access groups: the unit that apps grant access to.

use serde::Serialize;

use super::{AuditEntry, AuditedTx, Result, Store, StoreError};
use crate::clock::Millis;
use crate::model::{GroupName, Role};

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub name: String,
    pub description: String,
    pub members: i64,
    pub apps: i64,
    /// Provider groups (SSO) whose members are made members of this one.
    pub idp_groups: Vec<String>,
    /// The role (admin, ict or viewer) the provider's members of this
    /// group are given at SSO sign-in; none when it grants none.
    pub grants_role: Option<Role>,
}

/// A change to a group's provider mappings (`lanyard groups set`): each
/// `None` leaves that part as it is.
#[derive(Debug, Clone, Default)]
pub struct GroupMappingChange {
    /// The whole list of provider groups (empty: none).
    pub idp_groups: Option<Vec<String>>,
    /// The role granted (`Some(None)`: none).
    pub grants_role: Option<Option<Role>>,
}

/// Checks provider group values: the cleaned, sorted, deduplicated list.
fn clean_idp_groups(idp_groups: &[String]) -> Result<Vec<String>> {
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
    let mut mapped: Vec<String> = idp_groups.iter().map(|g| g.trim().to_owned()).collect();
    mapped.sort_unstable();
    mapped.dedup();
    Ok(mapped)
}

/// A role a group may grant: not `staff` (everyone's), and only with a
/// provider group to take the members from.
fn check_grant(grants_role: Option<Role>, idp_groups: &[String]) -> Result<()> {
    match grants_role {
        Some(Role::Staff) => Err(StoreError::Invalid(
            "a group grants admin, ict or viewer (or none: --grants-role none)".into(),
        )),
        Some(_) if idp_groups.is_empty() => Err(StoreError::Invalid(
            "--grants-role needs at least one --idp-group: the role goes to the people the identity provider puts in the group".into(),
        )),
        _ => Ok(()),
    }
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
        self.group_add_granting(actor, name, description, idp_groups, None, now)
            .await
    }

    /// As [`Store::group_add_mapped`]; the provider's members of the group
    /// are also given `grants_role` at SSO sign-in.
    pub async fn group_add_granting(
        &self,
        actor: &str,
        name: &GroupName,
        description: &str,
        idp_groups: &[String],
        grants_role: Option<Role>,
        now: Millis,
    ) -> Result<()> {
        let mapped = clean_idp_groups(idp_groups)?;
        check_grant(grants_role, &mapped)?;
        let mut tx = self.begin_audited(now).await?;
        let inserted = sqlx::query(
            "INSERT INTO access_groups (name, description, created_at, grants_role) VALUES ($1, $2, $3, $4)",
        )
        .bind(name.as_str())
        .bind(description)
        .bind(now)
        .bind(grants_role.map(Role::as_str))
        .execute(tx.conn())
        .await
        .map_err(StoreError::from);
        match inserted {
            Err(e) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!("group {name} already exists")));
            }
            other => other?,
        };
        for g in &mapped {
            sqlx::query("INSERT INTO group_idp_groups (group_name, idp_group) VALUES ($1, $2)")
                .bind(name.as_str())
                .bind(g)
                .execute(tx.conn())
                .await?;
        }
        let entry = AuditEntry::ok(actor, "group.add", name.as_str());
        let entry = match (mapped.is_empty(), grants_role) {
            (true, _) => entry,
            (false, None) => entry.with_detail(serde_json::json!({ "idp_groups": mapped })),
            (false, Some(r)) => entry.with_detail(
                serde_json::json!({ "idp_groups": mapped, "grants_role": r.as_str() }),
            ),
        };
        tx.audit(entry).await?;
        tx.commit().await
    }

    /// Changes a group's provider mappings (`lanyard groups set`): the
    /// list of provider groups is replaced, the role granted set or
    /// cleared. People's memberships and roles follow at their next SSO
    /// sign-in or re-check. Audited with what was and what is.
    pub async fn group_set_mappings(
        &self,
        actor: &str,
        name: &GroupName,
        change: &GroupMappingChange,
        now: Millis,
    ) -> Result<()> {
        let new_list = change
            .idp_groups
            .as_deref()
            .map(clean_idp_groups)
            .transpose()?;
        let mut tx = self.begin_audited(now).await?;
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT grants_role FROM access_groups WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(tx.conn())
                .await?;
        let Some((old_role,)) = row else {
            return Err(StoreError::NotFound(format!("no group named {name}")));
        };
        let old_role = old_role.as_deref().map(Role::from_stored);
        let old_list: Vec<(String,)> = sqlx::query_as(
            "SELECT idp_group FROM group_idp_groups WHERE group_name = $1 ORDER BY idp_group",
        )
        .bind(name.as_str())
        .fetch_all(tx.conn())
        .await?;
        let old_list: Vec<String> = old_list.into_iter().map(|(g,)| g).collect();
        let list = new_list.unwrap_or_else(|| old_list.clone());
        let role = change.grants_role.unwrap_or(old_role);
        check_grant(role, &list)?;
        if list == old_list && role == old_role {
            tx.rollback().await?;
            return Ok(());
        }
        if list != old_list {
            sqlx::query("DELETE FROM group_idp_groups WHERE group_name = $1")
                .bind(name.as_str())
                .execute(tx.conn())
                .await?;
            for g in &list {
                sqlx::query("INSERT INTO group_idp_groups (group_name, idp_group) VALUES ($1, $2)")
                    .bind(name.as_str())
                    .bind(g)
                    .execute(tx.conn())
                    .await?;
            }
        }
        if role != old_role {
            sqlx::query("UPDATE access_groups SET grants_role = $1 WHERE name = $2")
                .bind(role.map(Role::as_str))
                .bind(name.as_str())
                .execute(tx.conn())
                .await?;
        }
        tx.audit(
            AuditEntry::ok(actor, "group.set", name.as_str()).with_detail(serde_json::json!({
                "idp_groups": list,
                "was_idp_groups": old_list,
                "grants_role": role.map(Role::as_str),
                "was_grants_role": old_role.map(Role::as_str),
            })),
        )
        .await?;
        tx.commit().await
    }

    pub async fn group_list(&self) -> Result<Vec<Group>> {
        let rows: Vec<(String, String, i64, i64, Option<String>)> = sqlx::query_as(
            "SELECT g.name, g.description,
                    (SELECT COUNT(*) FROM staff_groups sg WHERE sg.group_name = g.name),
                    (SELECT COUNT(*) FROM app_groups ag WHERE ag.group_name = g.name),
                    g.grants_role
             FROM access_groups g ORDER BY g.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mappings = self.idp_group_mappings().await?;
        Ok(rows
            .into_iter()
            .map(|(name, description, members, apps, grants_role)| Group {
                grants_role: grants_role.as_deref().map(Role::from_stored),
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
