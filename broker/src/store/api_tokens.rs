//! Bearer tokens for the admin API: the bootstrap token from the data dir
//! and tokens that staff get by signing in with `lanyard login`.

use super::{flag, AuditEntry, Result, Store};
use crate::clock::Millis;

/// Who a valid API token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The staff member, or `bootstrap` for the data dir's token.
    pub name: String,
    pub admin: bool,
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

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    username: Option<String>,
    is_admin: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    owner_active: Option<i64>,
    owner_admin: Option<i64>,
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
        tx.commit().await?;
        Ok(id)
    }

    pub async fn api_token_lookup(&self, token_hash: &str, now: Millis) -> Result<TokenLookup> {
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT t.id, t.username, t.is_admin, t.expires_at, t.revoked_at,
                    s.active AS owner_active, s.is_admin AS owner_admin
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
            owner_active: active,
            owner_admin: staff_admin,
        }) = row
        else {
            return Ok(TokenLookup::Unknown);
        };
        if revoked_at.is_some() {
            return Ok(TokenLookup::Revoked);
        }
        if expires_at.is_some_and(|e| e <= now) {
            return Ok(TokenLookup::Expired);
        }
        Ok(match username {
            None => TokenLookup::Valid(Caller {
                name: "bootstrap".into(),
                admin: token_admin == 1,
                token_id: id,
            }),
            Some(_) if active != Some(1) => TokenLookup::Disabled,
            Some(name) => TokenLookup::Valid(Caller {
                name,
                // Admin rights are read live from the person, not frozen in the token.
                admin: staff_admin == Some(1),
                token_id: id,
            }),
        })
    }
}
