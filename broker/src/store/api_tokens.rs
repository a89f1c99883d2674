//! Bearer tokens for the admin API: the bootstrap token from the data dir
//! and tokens that staff get by signing in with `lanyard login`.
//!
//! The bootstrap token is for setting up: it expires the first time a
//! person with admin rights signs in with a password, and it can be
//! revoked like any other token before then.

use serde::Serialize;

use super::{flag, AuditEntry, AuditedTx, Result, Store, StoreError};
use crate::clock::{rfc3339, Millis};

/// What the bootstrap token is called in lists and the audit log.
pub const BOOTSTRAP: &str = "bootstrap";

/// An API token as listed: never the token or its hash.
#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    pub id: String,
    /// Its owner; none for the bootstrap token.
    pub user: Option<String>,
    /// `login` or `bootstrap`.
    pub label: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// `active`, `expired`, `revoked` or `disabled` (its owner is).
    pub state: &'static str,
}

from_row! {
    struct ListedRow {
        id: String,
        username: Option<String>,
        label: String,
        created_at: i64,
        expires_at: Option<i64>,
        revoked_at: Option<i64>,
        owner_active: Option<i64>,
        tokens_valid_after: Option<i64>,
    }
}

impl ListedRow {
    fn view(self, now: Millis) -> TokenView {
        let ended = self
            .tokens_valid_after
            .is_some_and(|t| self.created_at <= t);
        let state = if self.revoked_at.is_some() || ended {
            "revoked"
        } else if self.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else if self.username.is_some() && self.owner_active != Some(1) {
            "disabled"
        } else {
            "active"
        };
        TokenView {
            id: self.id,
            user: self.username,
            label: self.label,
            created_at: rfc3339(self.created_at),
            expires_at: self.expires_at.map(rfc3339),
            revoked_at: self.revoked_at.map(rfc3339),
            state,
        }
    }
}

const LISTED_SELECT: &str =
    "SELECT t.id, t.username, t.label, t.created_at, t.expires_at, t.revoked_at, s.active AS owner_active,
            s.tokens_valid_after
     FROM api_tokens t LEFT JOIN staff s ON s.username = t.username";

/// Who a valid API token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The staff member, or `bootstrap` for the data dir's token.
    pub name: String,
    pub admin: bool,
    /// The owner's role, read live (the bootstrap token is an admin's).
    pub role: crate::model::Role,
    pub token_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLookup {
    Valid(Caller),
    Unknown,
    Expired,
    Revoked,
    /// The token's owner has been disabled.
    Disabled,
}

from_row! {
    struct TokenRow {
        id: String,
        username: Option<String>,
        is_admin: i64,
        expires_at: Option<i64>,
        revoked_at: Option<i64>,
        created_at: i64,
        owner_active: Option<i64>,
        owner_admin: Option<i64>,
        owner_role: Option<String>,
        tokens_valid_after: Option<i64>,
    }
}

impl Store {
    /// Registers the bootstrap admin token's hash if it is not there yet.
    pub async fn api_token_ensure_bootstrap(&self, token_hash: &str, now: Millis) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, username, label, is_admin, created_at)
             VALUES ($1, $2, NULL, 'bootstrap', 1, $3)
             ON CONFLICT (token_hash) DO NOTHING",
        )
        .bind(crate::secrets::new_id())
        .bind(token_hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores a token for `username` and audits the sign-in.
    pub async fn api_token_create(
        &self,
        username: &str,
        admin: bool,
        token_hash: &str,
        ttl_ms: Millis,
        now: Millis,
    ) -> Result<String> {
        let mut tx = self.begin_audited(now).await?;
        let id = crate::secrets::new_id();
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, username, label, is_admin, created_at, expires_at)
             VALUES ($1, $2, $3, 'login', $4, $5, $6)",
        )
        .bind(&id)
        .bind(token_hash)
        .bind(username)
        .bind(flag(admin))
        .bind(now)
        .bind(now + ttl_ms)
        .execute(tx.conn())
        .await?;
        tx.audit(
            AuditEntry::ok(username, "api.login", username)
                .with_detail(serde_json::json!({ "token_id": id })),
        )
        .await?;
        if admin {
            expire_bootstrap_in(&mut tx, username).await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// API tokens, newest first; only `user`'s when given.
    pub async fn api_token_list(&self, user: Option<&str>, now: Millis) -> Result<Vec<TokenView>> {
        let rows: Vec<ListedRow> = sqlx::query_as(&format!(
            "{LISTED_SELECT} WHERE $1 = '' OR t.username = $1 ORDER BY t.created_at DESC, t.id"
        ))
        .bind(user.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.view(now)).collect())
    }

    /// Revokes one token by its id: it is refused from the next request
    /// on. A token that is revoked or expired already is left as it is
    /// (409).
    pub async fn api_token_revoke(&self, actor: &str, id: &str, now: Millis) -> Result<TokenView> {
        let mut tx = self.begin_audited(now).await?;
        tx.access_changed();
        let row: Option<ListedRow> = sqlx::query_as(&format!("{LISTED_SELECT} WHERE t.id = $1"))
            .bind(id)
            .fetch_optional(tx.conn())
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!(
                "no API token {id}; see `lanyard tokens list`"
            )));
        };
        let current = row.view(now);
        if matches!(current.state, "revoked" | "expired") {
            return Err(StoreError::Conflict(format!(
                "API token {id} is {} already",
                current.state
            )));
        }
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(tx.conn())
            .await?;
        let owner = current.user.clone().unwrap_or_else(|| BOOTSTRAP.into());
        tx.audit(
            AuditEntry::ok(actor, "api_token.revoke", &owner)
                .with_detail(serde_json::json!({ "token_id": id, "label": current.label })),
        )
        .await?;
        tx.commit().await?;
        Ok(TokenView {
            revoked_at: Some(rfc3339(now)),
            state: "revoked",
            ..current
        })
    }

    pub async fn api_token_lookup(&self, token_hash: &str, now: Millis) -> Result<TokenLookup> {
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT t.id, t.username, t.is_admin, t.expires_at, t.revoked_at, t.created_at,
                    s.active AS owner_active, s.is_admin AS owner_admin, s.role AS owner_role,
                    s.tokens_valid_after
             FROM api_tokens t LEFT JOIN staff s ON s.username = t.username
             WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(TokenRow {
            id,
            username,
            is_admin: token_admin,
            expires_at,
            revoked_at,
            created_at,
            owner_active: active,
            owner_admin: staff_admin,
            owner_role,
            tokens_valid_after,
        }) = row
        else {
            return Ok(TokenLookup::Unknown);
        };
        // Made at or before its owner's last password reset or disable
        // (even in a race with it): ended.
        if revoked_at.is_some() || tokens_valid_after.is_some_and(|t| created_at <= t) {
            return Ok(TokenLookup::Revoked);
        }
        if expires_at.is_some_and(|e| e <= now) {
            return Ok(TokenLookup::Expired);
        }
        Ok(match username {
            None => TokenLookup::Valid(Caller {
                name: BOOTSTRAP.into(),
                admin: token_admin == 1,
                role: if token_admin == 1 {
                    crate::model::Role::Admin
                } else {
                    crate::model::Role::Staff
                },
                token_id: id,
            }),
            Some(_) if active != Some(1) => TokenLookup::Disabled,
            Some(name) => TokenLookup::Valid(Caller {
                name,
                // Admin rights are read live from the person, not frozen in the token.
                admin: staff_admin == Some(1),
                role: crate::model::Role::from_stored(owner_role.as_deref().unwrap_or("staff")),
                token_id: id,
            }),
        })
    }
}

/// Expires the bootstrap token, if it still works, because `admin` (a
/// person with admin rights) has signed in with a password; audited.
async fn expire_bootstrap_in(tx: &mut AuditedTx, admin: &str) -> Result<()> {
    let now = tx.now();
    let ids: Vec<String> = sqlx::query_scalar(
        "UPDATE api_tokens SET expires_at = $1
         WHERE username IS NULL AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)
         RETURNING id",
    )
    .bind(now)
    .fetch_all(tx.conn())
    .await?;
    for id in ids {
        tx.audit(
            AuditEntry::ok(admin, "api_token.expire", BOOTSTRAP).with_detail(serde_json::json!({
                "token_id": id,
                "reason": "a person with admin rights signed in with a password",
            })),
        )
        .await?;
    }
    Ok(())
}
