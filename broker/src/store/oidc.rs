//! SSO: provider groups mapped to Lanyard groups, the person admitted at
//! each sign-in, and the provider's refresh token kept per sign-in.

use std::collections::BTreeSet;

use super::{AuditEntry, Result, Store};
use crate::clock::Millis;
use crate::model::Role;

/// Where a person's role came from, when the provider gave it: the role
/// it gave and the person's own role before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdpRole {
    pub gave: Role,
    pub before: Role,
}

/// The role a person has after an SSO sign-in, from their role now, what
/// the provider gave before (if it did) and the highest role their mapped
/// groups grant now: `Some((role, idp))` when either changes. A granted
/// role higher than their own is taken; a role from the provider follows
/// what it grants, back down to their own role; a role of their own (set
/// by hand, even over one the provider gave) is never lowered.
pub fn role_after_sign_in(
    current: Role,
    idp: Option<IdpRole>,
    granted: Option<Role>,
) -> Option<(Role, Option<IdpRole>)> {
    let own = match idp {
        Some(i) if i.gave == current => i.before,
        _ => current,
    };
    let granted = granted.unwrap_or(Role::Staff);
    let next = if granted > own {
        (
            granted,
            Some(IdpRole {
                gave: granted,
                before: own,
            }),
        )
    } else {
        (own, None)
    };
    (next != (current, idp)).then_some(next)
}

/// What the store decided about a person the provider signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// May sign in; `provisioned` when made just now, `changed` when their
    /// groups (or they) were written.
    Admitted {
        provisioned: bool,
        changed: bool,
    },
    /// None of the provider's groups is mapped to a Lanyard group.
    NoMappedGroup,
    /// Not a Lanyard person, and `provision` is off.
    Unknown,
    Disabled,
}

/// An SSO sign-in's provider state.
#[derive(Debug, Clone)]
pub struct OidcSignIn {
    pub username: String,
    pub subject: String,
    pub refresh_sealed: Option<String>,
    pub checked_at: Millis,
}

fn idp_role(gave: &Option<String>, before: &Option<String>) -> Option<IdpRole> {
    Some(IdpRole {
        gave: Role::from_stored(gave.as_deref()?),
        before: Role::from_stored(before.as_deref()?),
    })
}

impl Store {
    /// A person's role, and where it came from when the provider gave it.
    pub async fn staff_role_source(
        &self,
        username: &str,
    ) -> Result<Option<(Role, Option<IdpRole>)>> {
        let row: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT role, role_from_idp, role_before_idp FROM staff WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(r, gave, before)| (Role::from_stored(&r), idp_role(&gave, &before))))
    }

    /// The provider groups mapped to each Lanyard group: (group, provider group).
    pub async fn idp_group_mappings(&self) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT group_name, idp_group FROM group_idp_groups ORDER BY group_name, idp_group",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Admits `username`, whom the provider says is in `idp_groups`: the
    /// person must be in at least one mapped group; with `provision` an
    /// unknown person is made (priority 3). Their membership of every
    /// mapped group is set from `idp_groups`, audited, as an access change;
    /// their role from what the groups grant ([`role_after_sign_in`]),
    /// audited.
    pub async fn sso_admit(
        &self,
        username: &str,
        idp_groups: &[String],
        provision: bool,
        now: Millis,
    ) -> Result<Admission> {
        let mut tx = self.begin_audited(now).await?;
        let mappings: Vec<(String, String)> =
            sqlx::query_as("SELECT group_name, idp_group FROM group_idp_groups")
                .fetch_all(tx.conn())
                .await?;
        let theirs: BTreeSet<&str> = idp_groups.iter().map(String::as_str).collect();
        let mapped: BTreeSet<&str> = mappings.iter().map(|(g, _)| g.as_str()).collect();
        let wanted: BTreeSet<&str> = mappings
            .iter()
            .filter(|(_, idp)| theirs.contains(idp.as_str()))
            .map(|(g, _)| g.as_str())
            .collect();
        if wanted.is_empty() {
            tx.rollback().await?;
            return Ok(Admission::NoMappedGroup);
        }
        let person: Option<(i64, String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT active, role, role_from_idp, role_before_idp FROM staff WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(tx.conn())
        .await?;
        let (role_now, idp_role) = person
            .as_ref()
            .map(|(_, r, gave, before)| (Role::from_stored(r), idp_role(gave, before)))
            .unwrap_or((Role::Staff, None));
        let provisioned = match person {
            Some((0, _, _, _)) => {
                tx.rollback().await?;
                return Ok(Admission::Disabled);
            }
            Some(_) => false,
            None if !provision => {
                tx.rollback().await?;
                return Ok(Admission::Unknown);
            }
            None => {
                sqlx::query(
                    "INSERT INTO staff (username, name, priority, created_at, updated_at)
                     VALUES ($1, $1, 3, $2, $2)",
                )
                .bind(username)
                .bind(now)
                .execute(tx.conn())
                .await?;
                tx.audit(
                    AuditEntry::ok(username, "staff.provision", username)
                        .with_detail(serde_json::json!({ "priority": 3, "by": "sso" })),
                )
                .await?;
                true
            }
        };
        let current: Vec<(String,)> =
            sqlx::query_as("SELECT group_name FROM staff_groups WHERE username = $1")
                .bind(username)
                .fetch_all(tx.conn())
                .await?;
        let current: BTreeSet<String> = current.into_iter().map(|(g,)| g).collect();
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for g in &mapped {
            let has = current.contains(*g);
            let wants = wanted.contains(g);
            if wants && !has {
                sqlx::query("INSERT INTO staff_groups (username, group_name) VALUES ($1, $2)")
                    .bind(username)
                    .bind(*g)
                    .execute(tx.conn())
                    .await?;
                added.push(*g);
            } else if !wants && has {
                sqlx::query("DELETE FROM staff_groups WHERE username = $1 AND group_name = $2")
                    .bind(username)
                    .bind(*g)
                    .execute(tx.conn())
                    .await?;
                removed.push(*g);
            }
        }
        let grants: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, grants_role FROM access_groups WHERE grants_role IS NOT NULL",
        )
        .fetch_all(tx.conn())
        .await?;
        let granted = grants
            .iter()
            .filter(|(g, _)| wanted.contains(g.as_str()))
            .map(|(_, r)| Role::from_stored(r))
            .max();
        let role_changed = role_after_sign_in(role_now, idp_role, granted);
        if let Some((role, idp)) = role_changed {
            sqlx::query(
                "UPDATE staff SET role = $1, is_admin = $2, role_from_idp = $3,
                        role_before_idp = $4, updated_at = $5
                 WHERE username = $6",
            )
            .bind(role.as_str())
            .bind(i64::from(role.is_admin()))
            .bind(idp.map(|i| i.gave.as_str()))
            .bind(idp.map(|i| i.before.as_str()))
            .bind(now)
            .bind(username)
            .execute(tx.conn())
            .await?;
            if role != role_now {
                tx.audit(
                    AuditEntry::ok(username, "staff.role_from_idp", username).with_detail(
                        serde_json::json!({ "role": role, "was": role_now, "by": "sso" }),
                    ),
                )
                .await?;
            }
        }
        let groups_changed = !(added.is_empty() && removed.is_empty() && !provisioned);
        let changed = groups_changed || role_changed.is_some();
        if !changed {
            tx.rollback().await?;
        } else {
            if groups_changed {
                tx.access_changed();
                tx.audit(
                    AuditEntry::ok(username, "staff.groups_from_idp", username)
                        .with_detail(serde_json::json!({ "added": added, "removed": removed })),
                )
                .await?;
            }
            tx.commit().await?;
        }
        Ok(Admission::Admitted {
            provisioned,
            changed,
        })
    }

    /// Keeps the provider's state for the SSO sign-in `family_id`.
    pub async fn oidc_sign_in_record(
        &self,
        family_id: &str,
        username: &str,
        subject: &str,
        refresh_sealed: Option<&str>,
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO oidc_sign_ins (family_id, username, subject, refresh_sealed, checked_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(family_id)
        .bind(username)
        .bind(subject)
        .bind(refresh_sealed)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The provider's state for a sign-in, if it was an SSO one.
    pub async fn oidc_sign_in(&self, family_id: &str) -> Result<Option<OidcSignIn>> {
        let row: Option<(String, String, Option<String>, i64)> = sqlx::query_as(
            "SELECT username, subject, refresh_sealed, checked_at FROM oidc_sign_ins WHERE family_id = $1",
        )
        .bind(family_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(username, subject, refresh_sealed, checked_at)| OidcSignIn {
                username,
                subject,
                refresh_sealed,
                checked_at,
            },
        ))
    }

    /// After a re-check at the provider: its next refresh token, and when.
    pub async fn oidc_sign_in_checked(
        &self,
        family_id: &str,
        refresh_sealed: Option<&str>,
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE oidc_sign_ins SET refresh_sealed = COALESCE($1, refresh_sealed), checked_at = $2
             WHERE family_id = $3",
        )
        .bind(refresh_sealed)
        .bind(now)
        .bind(family_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends an SSO sign-in the provider no longer allows: the family is
    /// revoked (its live session closes, as an access change), audited.
    pub async fn oidc_sign_in_end(
        &self,
        family_id: &str,
        username: &str,
        device_label: &str,
        reason: &str,
        now: Millis,
    ) -> Result<()> {
        let mut tx = self.begin_audited(now).await?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(family_id)
        .execute(tx.conn())
        .await?;
        sqlx::query("DELETE FROM oidc_sign_ins WHERE family_id = $1")
            .bind(family_id)
            .execute(tx.conn())
            .await?;
        tx.access_changed();
        tx.audit(
            AuditEntry::denied(username, "agent.refresh", device_label, reason).with_detail(
                serde_json::json!({ "reason": reason, "sign_in": family_id, "by": "sso recheck" }),
            ),
        )
        .await?;
        tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_granted_role_raises_and_only_a_provider_role_drops() {
        use Role::*;
        let idp = |gave, before| Some(IdpRole { gave, before });
        // Higher than their own: taken, over their own.
        assert_eq!(
            role_after_sign_in(Staff, None, Some(Ict)),
            Some((Ict, idp(Ict, Staff)))
        );
        assert_eq!(
            role_after_sign_in(Viewer, None, Some(Admin)),
            Some((Admin, idp(Admin, Viewer)))
        );
        // Not higher than their own: nothing.
        assert_eq!(role_after_sign_in(Admin, None, Some(Viewer)), None);
        assert_eq!(role_after_sign_in(Ict, None, None), None);
        assert_eq!(role_after_sign_in(Ict, None, Some(Ict)), None);
        assert_eq!(role_after_sign_in(Staff, None, None), None);
        // A provider role follows the provider, down to their own.
        assert_eq!(
            role_after_sign_in(Admin, idp(Admin, Staff), Some(Ict)),
            Some((Ict, idp(Ict, Staff)))
        );
        assert_eq!(
            role_after_sign_in(Admin, idp(Admin, Staff), None),
            Some((Staff, None))
        );
        assert_eq!(
            role_after_sign_in(Ict, idp(Ict, Viewer), None),
            Some((Viewer, None))
        );
        assert_eq!(role_after_sign_in(Ict, idp(Ict, Viewer), Some(Ict)), None);
        assert_eq!(
            role_after_sign_in(Admin, idp(Admin, Viewer), Some(Viewer)),
            Some((Viewer, None))
        );
        // Set by hand over a provider role: their own now, never lowered.
        assert_eq!(
            role_after_sign_in(Admin, idp(Ict, Staff), None),
            Some((Admin, None))
        );
        assert_eq!(
            role_after_sign_in(Viewer, idp(Ict, Staff), Some(Ict)),
            Some((Ict, idp(Ict, Viewer)))
        );
    }
}
