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

from_row! {
    struct RefreshRow {
        family_id: String,
        username: String,
        device_fingerprint: String,
        expires_at: i64,
        used_at: Option<i64>,
        revoked_at: Option<i64>,
        issued_at: i64,
        active: i64,
        tokens_valid_after: Option<i64>,
    }
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
            "SELECT r.family_id, r.username, r.device_fingerprint, r.expires_at, r.used_at, r.revoked_at,
                    r.issued_at, s.active, s.tokens_valid_after
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
            issued_at,
            active,
            tokens_valid_after,
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
            // The sign-in's live session ends too, on every node.
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
        // Issued before a password reset or a disable: ended, even if it
        // was issued in a race with that change.
        if revoked_at.is_some() || tokens_valid_after.is_some_and(|t| issued_at <= t) {
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
        tx.access_changed();
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

    /// Ends the sign-in that `token_hash` belongs to, at its agent's
    /// request (`lanyard-agent logout`): the whole family is revoked and,
    /// as an access change, its live session closes. Only the device the
    /// sign-in was made on may end it. A sign-in that had already ended is
    /// left as it is. The person signed out.
    pub async fn sign_out(
        &self,
        token_hash: &str,
        device_fingerprint: &str,
        device_label: &str,
        now: Millis,
    ) -> Result<String, RefreshError> {
        let mut tx = self.begin_audited(now).await?;
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT family_id, username, device_fingerprint FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(tx.conn())
        .await
        .map_err(StoreError::from)?;
        let Some((family, username, device)) = row else {
            return Err(RefreshError::Unknown);
        };
        if !crate::secrets::constant_time_eq(device.as_bytes(), device_fingerprint.as_bytes()) {
            return Err(RefreshError::WrongDevice);
        }
        let ended = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(&family)
        .execute(tx.conn())
        .await
        .map_err(StoreError::from)?
        .rows_affected();
        if ended == 0 {
            tx.rollback().await?;
            return Ok(username);
        }
        tx.access_changed();
        tx.audit(
            AuditEntry::ok(&username, "agent.signout", device_label)
                .with_detail(serde_json::json!({ "sign_in": family, "device": device })),
        )
        .await?;
        tx.commit().await?;
        Ok(username)
    }

    /// Whether a sign-in (refresh-token family) has ended: revoked, or
    /// begun at or before its person's last password reset or disable.
    /// A family the store does not know is not ended here; the rules
    /// refuse a person who is gone.
    pub async fn sign_in_ended(&self, family_id: &str) -> Result<bool> {
        let rows: Vec<(Option<i64>, i64, Option<i64>)> = sqlx::query_as(
            "SELECT r.revoked_at, r.issued_at, s.tokens_valid_after
             FROM refresh_tokens r JOIN staff s ON s.username = r.username
             WHERE r.family_id = $1",
        )
        .bind(family_id)
        .fetch_all(&self.pool)
        .await?;
        let began = rows.iter().map(|r| r.1).min();
        let stamp = rows.iter().find_map(|r| r.2);
        Ok(rows.iter().any(|r| r.0.is_some())
            || matches!((began, stamp), (Some(b), Some(t)) if b <= t))
    }

    /// The sign-ins revoked at or after `since`, for the rules in memory.
    pub async fn sign_ins_ended_since(&self, since: Millis) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT family_id FROM refresh_tokens WHERE revoked_at >= $1",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Ends everything `username` is signed in with, in `tx`: their sign-ins
/// (refresh-token families) and API tokens are revoked, and their
/// `tokens_valid_after` is stamped so that a token issued in a race with
/// this change is refused too. Marks `tx` an access change, so their live
/// sessions close. How many sign-ins and API tokens were ended.
pub(crate) async fn end_tokens_in(tx: &mut super::AuditedTx, username: &str) -> Result<(u64, u64)> {
    let now = tx.now();
    tx.access_changed();
    sqlx::query("UPDATE staff SET tokens_valid_after = $1 WHERE username = $2")
        .bind(now)
        .bind(username)
        .execute(tx.conn())
        .await?;
    let families: Vec<String> = sqlx::query_scalar(
        "UPDATE refresh_tokens SET revoked_at = $1
         WHERE username = $2 AND revoked_at IS NULL AND expires_at > $1
         RETURNING family_id",
    )
    .bind(now)
    .bind(username)
    .fetch_all(tx.conn())
    .await?;
    let families: std::collections::BTreeSet<String> = families.into_iter().collect();
    let tokens = sqlx::query(
        "UPDATE api_tokens SET revoked_at = $1
         WHERE username = $2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)",
    )
    .bind(now)
    .bind(username)
    .execute(tx.conn())
    .await?
    .rows_affected();
    Ok((families.len() as u64, tokens))
}
