//! Refresh tokens: opaque, single-use, rotated on every use, stored hashed.
//!
//! Each sign-in starts a family. Using a token marks it used and issues the
//! next one in the same family. Presenting a token that was already used is
//! a sign that it was stolen: the whole family is revoked, so both the thief
//! and the person must sign in again.

use super::{AuditEntry, Result, Store, StoreError};
use crate::clock::Millis;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub username: String,
    pub family_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("unknown refresh token; sign in again")]
    Unknown,
    #[error("refresh token has expired; sign in again")]
    Expired,
    #[error("refresh token was revoked; sign in again")]
    Revoked,
    #[error("refresh token was already used; all sessions from that sign-in are revoked")]
    Reused,
    #[error("refresh token belongs to another device")]
    WrongDevice,
    #[error("this person is disabled")]
    Disabled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    family_id: String,
    username: String,
    device_fingerprint: String,
    expires_at: i64,
    used_at: Option<i64>,
    revoked_at: Option<i64>,
    active: i64,
}

impl Store {
    /// Stores the first token of a new family (at sign-in).
    pub async fn refresh_issue(
        &self,
        username: &str,
        device_fingerprint: &str,
        token_hash: &str,
        ttl_ms: Millis,
        now: Millis,
    ) -> Result<String> {
        let family = crate::secrets::new_id();
        insert(
            self.pool(),
            &family,
            username,
            device_fingerprint,
            token_hash,
            ttl_ms,
            now,
        )
        .await?;
        Ok(family)
    }

    /// Uses `old_hash` up and stores `new_hash` as its successor.
    pub async fn refresh_rotate(
        &self,
        old_hash: &str,
        new_hash: &str,
        device_fingerprint: &str,
        ttl_ms: Millis,
        now: Millis,
    ) -> Result<Rotated, RefreshError> {
        let mut tx = self.begin_audited(now).await?;
        let row: Option<RefreshRow> = sqlx::query_as(
            "SELECT r.family_id, r.username, r.device_fingerprint, r.expires_at, r.used_at, r.revoked_at, s.active
             FROM refresh_tokens r JOIN staff s ON s.username = r.username
             WHERE r.token_hash = $1",
        )
        .bind(old_hash)
        .fetch_optional(tx.conn())
        .await
        .map_err(StoreError::from)?;
        let Some(RefreshRow {
            family_id: family,
            username,
            device_fingerprint: device,
            expires_at,
            used_at,
            revoked_at,
            active,
        }) = row
        else {
            return Err(RefreshError::Unknown);
        };
        if used_at.is_some() {
            sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(&family)
                .execute(tx.conn())
                .await
                .map_err(StoreError::from)?;
            // The family's live sessions end on every node.
            tx.access_changed();
            tx.audit(AuditEntry::denied(
                &username,
                "token.refresh",
                &username,
                "refresh token reused; family revoked",
            ))
            .await?;
            tx.commit().await?;
            return Err(RefreshError::Reused);
        }
        if revoked_at.is_some() {
            return Err(RefreshError::Revoked);
        }
        if expires_at <= now {
            return Err(RefreshError::Expired);
        }
        if !crate::secrets::constant_time_eq(device.as_bytes(), device_fingerprint.as_bytes()) {
            return Err(RefreshError::WrongDevice);
        }
        if active != 1 {
            return Err(RefreshError::Disabled);
        }
        let claimed = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(old_hash)
        .execute(tx.conn())
        .await
        .map_err(StoreError::from)?;
        if claimed.rows_affected() != 1 {
            return Err(RefreshError::Reused);
        }
        insert(
            tx.conn(),
            &family,
            &username,
            &device,
            new_hash,
            ttl_ms,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Rotated {
            username,
            family_id: family,
        })
    }
}

async fn insert<'e, E>(
    executor: E,
    family: &str,
    username: &str,
    device_fingerprint: &str,
    token_hash: &str,
    ttl_ms: Millis,
    now: Millis,
) -> Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO refresh_tokens (id, token_hash, family_id, username, device_fingerprint, issued_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(crate::secrets::new_id())
    .bind(token_hash)
    .bind(family)
    .bind(username)
    .bind(device_fingerprint)
    .bind(now)
    .bind(now + ttl_ms)
    .execute(executor)
    .await?;
    Ok(())
}

/// Sign-ins ended from outside the agent.
impl Store {
    /// Records that `actor` ended a live session, revoking the sign-in
    /// behind it so that its agent cannot reconnect without signing in.
    pub async fn session_kill(
        &self,
        actor: &str,
        session_id: &str,
        username: &str,
        sign_in: Option<&str>,
        now: Millis,
    ) -> Result<()> {
        let mut tx = self.begin_audited(now).await?;
        if let Some(family) = sign_in {
            sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(family)
            .execute(tx.conn())
            .await?;
        }
        // Whichever node holds the session ends it on its next reload.
        sqlx::query(
            "UPDATE agent_sessions SET kill_requested_at = $1 WHERE id = $2 AND kill_requested_at IS NULL",
        )
        .bind(now)
        .bind(session_id)
        .execute(tx.conn())
        .await?;
        tx.access_changed();
        tx.audit(
            AuditEntry::ok(actor, "session.kill", username)
                .with_detail(serde_json::json!({ "session": session_id, "sign_in": sign_in })),
        )
        .await?;
        tx.commit().await
    }

    /// Whether a sign-in (refresh-token family) has been revoked.
    pub async fn refresh_family_revoked(&self, family_id: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NOT NULL",
        )
        .bind(family_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }
}
