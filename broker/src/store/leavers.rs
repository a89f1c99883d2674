//! A leaver, in one step: disabled, every sign-in and live tunnel ended,
//! unused enrolment codes cancelled, personal devices revoked, an open
//! laptop request cancelled and any laptop they hold recalled. One
//! transaction, one audit entry.

use serde::Serialize;

use super::{flag, AuditEntry, Result, Store, StoreError};
use crate::clock::Millis;
use crate::model::Username;

/// What a leaver action did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Leaver {
    pub username: String,
    /// False when the person was disabled already.
    pub disabled: bool,
    /// API tokens and agent sign-ins ended.
    pub sign_ins_ended: u64,
    pub codes_cancelled: u64,
    /// Personal devices revoked (first 16 hex digits of each).
    pub devices_revoked: Vec<String>,
    pub request_cancelled: bool,
    /// Council laptops the person holds, now recalled.
    pub laptops_recalled: Vec<String>,
}

impl Store {
    /// The leaver action for `username`, audited as `staff.leave` by
    /// `actor`. Repeating it is harmless: what was done already is not
    /// done again, and a laptop recalled before keeps its first recall
    /// time.
    pub async fn staff_leave(
        &self,
        actor: &str,
        username: &Username,
        now: Millis,
    ) -> Result<Leaver> {
        let username = username.as_str();
        let mut tx = self.begin_audited(now).await?;
        tx.access_changed();
        let active: Option<i64> =
            sqlx::query_scalar("SELECT active FROM staff WHERE username = $1")
                .bind(username)
                .fetch_optional(tx.conn())
                .await?;
        let Some(active) = active else {
            return Err(StoreError::NotFound(format!(
                "no staff member named {username}"
            )));
        };
        let mut out = Leaver {
            username: username.to_owned(),
            disabled: active == 1,
            ..Leaver::default()
        };
        sqlx::query("UPDATE staff SET active = $1, updated_at = $2 WHERE username = $3")
            .bind(flag(false))
            .bind(now)
            .bind(username)
            .execute(tx.conn())
            .await?;
        let (tokens, sign_ins) = super::refresh::end_tokens_in(&mut tx, username).await?;
        out.sign_ins_ended = tokens + sign_ins;
        out.codes_cancelled =
            super::enrol::cancel_codes_in(&mut tx, super::enrol::CodesOf::Person(username)).await?;
        let devices: Vec<String> = sqlx::query_scalar(
            "SELECT fingerprint FROM enrolled_devices
             WHERE kind = 'personal' AND owner = $1 AND revoked_at IS NULL ORDER BY fingerprint",
        )
        .bind(username)
        .fetch_all(tx.conn())
        .await?;
        sqlx::query(
            "UPDATE enrolled_devices SET revoked_at = $1, revoke_reason = 'leaver'
             WHERE kind = 'personal' AND owner = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(username)
        .execute(tx.conn())
        .await?;
        out.devices_revoked = devices
            .iter()
            .map(|f| f.chars().take(16).collect())
            .collect();
        out.request_cancelled = sqlx::query(
            "UPDATE laptop_requests SET status = 'cancelled' WHERE username = $1 AND status = 'open'",
        )
        .bind(username)
        .execute(tx.conn())
        .await?
        .rows_affected()
            > 0;
        out.laptops_recalled = sqlx::query_scalar(
            "SELECT asset_tag FROM allocations
             WHERE username = $1 AND returned_at IS NULL ORDER BY asset_tag",
        )
        .bind(username)
        .fetch_all(tx.conn())
        .await?;
        sqlx::query(
            "UPDATE allocations SET recall_at = $1, recall_by = $2
             WHERE username = $3 AND returned_at IS NULL AND recall_at IS NULL",
        )
        .bind(now)
        .bind(actor)
        .bind(username)
        .execute(tx.conn())
        .await?;
        tx.audit(
            AuditEntry::ok(actor, "staff.leave", username).with_detail(serde_json::json!({
                "disabled": out.disabled,
                "sign_ins_ended": out.sign_ins_ended,
                "codes_cancelled": out.codes_cancelled,
                "devices_revoked": out.devices_revoked,
                "request_cancelled": out.request_cancelled,
                "laptops_recalled": out.laptops_recalled,
            })),
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }
}
