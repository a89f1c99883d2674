//! Enrolment codes: single-use, short-lived, stored only as a hash, and
//! consumed by one atomic statement so that of any number of concurrent
//! uses exactly one succeeds.

use serde::Serialize;

use super::{AuditEntry, AuditedTx, Result, Store, StoreError};
use crate::clock::{rfc3339, Millis};
use crate::model::{AssetTag, LaptopStatus, Username};

/// What a code enrols.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrolFor {
    /// A council laptop, by asset tag.
    Laptop(AssetTag),
    /// A person's own device.
    Personal(Username),
}

impl EnrolFor {
    pub fn kind(&self) -> &'static str {
        match self {
            EnrolFor::Laptop(_) => "managed",
            EnrolFor::Personal(_) => "personal",
        }
    }
    /// The audit target: the asset tag (so the code shows in the laptop's
    /// history) or the person's username.
    pub fn target(&self) -> String {
        match self {
            EnrolFor::Laptop(t) => t.to_string(),
            EnrolFor::Personal(u) => u.to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct IssuedCode {
    pub id: String,
    pub kind: &'static str,
    pub expires_at: String,
}

/// A consumed code: what the enrolment that used it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedCode {
    pub id: String,
    pub enrol_for: EnrolFor,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("unknown enrolment code")]
    Unknown,
    #[error("this enrolment code has already been used; ask ICT for a new one")]
    Used,
    #[error("this enrolment code has expired; ask ICT for a new one")]
    Expired,
    #[error("this enrolment code was cancelled; ask ICT for a new one")]
    Cancelled,
    /// The code is good but what it enrols may not be enrolled now.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Stores a new code for `what`; `secret_hash` is the SHA-256 of the
    /// secret, which only the caller sees.
    pub async fn enrol_code_create(
        &self,
        actor: &str,
        what: &EnrolFor,
        secret_hash: &str,
        ttl_ms: Millis,
        now: Millis,
    ) -> Result<IssuedCode> {
        let mut tx = self.begin_audited(now).await?;
        // The same check as when the code is used: a code for a laptop out
        // of use or a disabled person is never made.
        match holder_state(&mut tx, what).await? {
            Holder::Ready => {}
            Holder::Missing(why) => return Err(StoreError::NotFound(why)),
            Holder::Refused(why) => return Err(StoreError::Invalid(why)),
        }
        let (asset_tag, username) = match what {
            EnrolFor::Laptop(tag) => (Some(tag.as_str().to_owned()), None),
            EnrolFor::Personal(user) => (None, Some(user.as_str().to_owned())),
        };
        let id = crate::secrets::new_id();
        let expires_at = now + ttl_ms;
        sqlx::query(
            "INSERT INTO enrolment_codes (id, secret_hash, kind, asset_tag, username, created_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(secret_hash)
        .bind(what.kind())
        .bind(asset_tag)
        .bind(username)
        .bind(actor)
        .bind(now)
        .bind(expires_at)
        .execute(tx.conn())
        .await?;
        tx.audit(
            AuditEntry::ok(actor, "enrol_code.create", &what.target()).with_detail(
                serde_json::json!({
                    "code_id": id, "kind": what.kind(), "expires_at": rfc3339(expires_at),
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(IssuedCode {
            id,
            kind: what.kind(),
            expires_at: rfc3339(expires_at),
        })
    }

    /// Uses a code up. One statement decides, so concurrent callers with the
    /// same code get exactly one success between them.
    pub async fn enrol_code_consume(
        &self,
        secret_hash: &str,
        now: Millis,
    ) -> Result<ConsumedCode, ConsumeError> {
        self.enrol_code_consume_with(secret_hash, now, |_| None)
            .await
    }

    /// Uses a code up and, in the same transaction, records the device that
    /// `device` makes for what the code enrols.
    ///
    /// A code that cannot be used (unknown, used, expired, cancelled) is
    /// found by a plain read: no transaction, no audit row and no wait on
    /// the audit chain, so guessing codes costs the broker a lookup; the
    /// caller counts such failures (and audits them in aggregate).
    pub async fn enrol_code_consume_with(
        &self,
        secret_hash: &str,
        now: Millis,
        device: impl FnOnce(&EnrolFor) -> Option<super::devices::NewDevice>,
    ) -> Result<ConsumedCode, ConsumeError> {
        let state: Option<(Option<i64>, Option<i64>, i64)> = sqlx::query_as(
            "SELECT consumed_at, cancelled_at, expires_at FROM enrolment_codes WHERE secret_hash = $1",
        )
        .bind(secret_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::from)?;
        match state {
            None => return Err(ConsumeError::Unknown),
            Some((Some(_), _, _)) => return Err(ConsumeError::Used),
            Some((None, Some(_), _)) => return Err(ConsumeError::Cancelled),
            Some((None, None, expires)) if expires <= now => return Err(ConsumeError::Expired),
            Some(_) => {}
        }
        let mut tx = self.begin_audited(now).await?;
        let row: Option<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
            "UPDATE enrolment_codes SET consumed_at = $1
             WHERE secret_hash = $2 AND consumed_at IS NULL AND cancelled_at IS NULL
               AND expires_at > $1
             RETURNING id, kind, asset_tag, username",
        )
        .bind(now)
        .bind(secret_hash)
        .fetch_optional(tx.conn())
        .await
        .map_err(StoreError::from)?;
        let Some((id, kind, asset_tag, username)) = row else {
            // Another enrolment used it (or it was cancelled) in between.
            tx.rollback().await?;
            return Err(ConsumeError::Used);
        };
        let enrol_for = match (kind.as_str(), asset_tag, username) {
            ("managed", Some(tag), _) => EnrolFor::Laptop(
                AssetTag::parse(&tag).map_err(|e| StoreError::Invalid(e.to_string()))?,
            ),
            (_, _, Some(user)) => EnrolFor::Personal(
                Username::parse(&user).map_err(|e| StoreError::Invalid(e.to_string()))?,
            ),
            _ => {
                return Err(
                    StoreError::Invalid(format!("enrolment code {id} is inconsistent")).into(),
                )
            }
        };
        // Whatever the code says, a lost or retired laptop, or a disabled
        // person, is not enrolled. The code is used up all the same.
        if let Holder::Missing(why) | Holder::Refused(why) =
            holder_state(&mut tx, &enrol_for).await?
        {
            tx.audit(
                AuditEntry::denied("anonymous", "enrol_code.consume", &enrol_for.target(), &why)
                    .with_detail(serde_json::json!({ "code_id": id, "reason": why })),
            )
            .await?;
            tx.commit().await?;
            return Err(ConsumeError::Refused(why));
        }
        let mut detail = serde_json::json!({ "code_id": id, "kind": enrol_for.kind() });
        if let Some(new) = device(&enrol_for) {
            super::devices::insert(&mut tx, &new, now).await?;
            detail["device"] = serde_json::json!(new.fingerprint);
            detail["agent_version"] = serde_json::json!(new.agent_version);
            detail["os"] = serde_json::json!(new.os);
        }
        tx.audit(
            AuditEntry::ok("anonymous", "enrol_code.consume", &enrol_for.target())
                .with_detail(detail),
        )
        .await?;
        tx.commit().await?;
        Ok(ConsumedCode { id, enrol_for })
    }
}

/// An enrolment code as listed: never its secret (only its hash is kept).
#[derive(Debug, Clone, Serialize)]
pub struct CodeView {
    pub id: String,
    pub kind: String,
    /// The asset tag or the username it enrols.
    #[serde(rename = "for")]
    pub for_: String,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: String,
    /// `open`, `used`, `expired` or `cancelled`.
    pub state: &'static str,
}

from_row! {
    struct CodeRow {
        id: String,
        kind: String,
        asset_tag: Option<String>,
        username: Option<String>,
        created_by: String,
        created_at: i64,
        expires_at: i64,
        consumed_at: Option<i64>,
        cancelled_at: Option<i64>,
    }
}

impl CodeRow {
    fn state(&self, now: Millis) -> &'static str {
        match (self.consumed_at, self.cancelled_at) {
            (Some(_), _) => "used",
            (None, Some(_)) => "cancelled",
            (None, None) if self.expires_at <= now => "expired",
            (None, None) => "open",
        }
    }

    fn view(self, now: Millis) -> CodeView {
        CodeView {
            state: self.state(now),
            id: self.id,
            kind: self.kind,
            for_: self.asset_tag.or(self.username).unwrap_or_default(),
            created_by: self.created_by,
            created_at: rfc3339(self.created_at),
            expires_at: rfc3339(self.expires_at),
        }
    }
}

const CODE_COLUMNS: &str =
    "id, kind, asset_tag, username, created_by, created_at, expires_at, consumed_at, cancelled_at";

impl Store {
    /// Enrolment codes, newest first; with `open_only`, only those that
    /// could still enrol something (not used, cancelled or expired).
    pub async fn enrol_code_list(&self, open_only: bool, now: Millis) -> Result<Vec<CodeView>> {
        let rows: Vec<CodeRow> = sqlx::query_as(&format!(
            "SELECT {CODE_COLUMNS} FROM enrolment_codes
             WHERE $1 = 0 OR (consumed_at IS NULL AND cancelled_at IS NULL AND expires_at > $2)
             ORDER BY created_at DESC, id"
        ))
        .bind(super::flag(open_only))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.view(now)).collect())
    }

    /// Cancels one open code by its id, audited against what it enrols.
    /// A code that is used, cancelled or expired is left as it is (409).
    pub async fn enrol_code_cancel(&self, actor: &str, id: &str, now: Millis) -> Result<CodeView> {
        let mut tx = self.begin_audited(now).await?;
        let row: Option<CodeRow> = sqlx::query_as(&format!(
            "SELECT {CODE_COLUMNS} FROM enrolment_codes WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
        let Some(mut row) = row else {
            return Err(StoreError::NotFound(format!(
                "no enrolment code {id}; see `lanyard enroll-code list`"
            )));
        };
        match row.state(now) {
            "open" => {}
            state => {
                return Err(StoreError::Conflict(format!(
                    "enrolment code {id} is {state} already; only an open code can be cancelled"
                )))
            }
        }
        let done = sqlx::query(
            "UPDATE enrolment_codes SET cancelled_at = $1
             WHERE id = $2 AND consumed_at IS NULL AND cancelled_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "enrolment code {id} was used or cancelled meanwhile"
            )));
        }
        row.cancelled_at = Some(now);
        let view = row.view(now);
        tx.audit(
            AuditEntry::ok(actor, "enrol_code.cancel", &view.for_)
                .with_detail(serde_json::json!({ "code_id": id, "kind": view.kind })),
        )
        .await?;
        tx.commit().await?;
        Ok(view)
    }
}

/// Whether what a code enrols may be enrolled now.
enum Holder {
    Ready,
    /// The laptop or person is not in the store.
    Missing(String),
    /// A laptop lost or retired, or a person disabled.
    Refused(String),
}

/// Whether what `enrol_for` names may be enrolled now; checked when a code
/// is made and again when it is used.
async fn holder_state(tx: &mut AuditedTx, enrol_for: &EnrolFor) -> Result<Holder> {
    Ok(match enrol_for {
        EnrolFor::Laptop(tag) => {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM laptops WHERE asset_tag = $1")
                    .bind(tag.as_str())
                    .fetch_optional(tx.conn())
                    .await?;
            match status.as_deref().map(LaptopStatus::parse) {
                None => Holder::Missing(format!(
                    "no laptop with asset tag {tag}; add it first with `lanyard devices add`"
                )),
                Some(Ok(s)) if s.is_out_of_use() => Holder::Refused(format!(
                    "{tag} is marked {s}: it cannot be enrolled; contact ICT"
                )),
                Some(Ok(_)) => Holder::Ready,
                Some(Err(e)) => Holder::Refused(e.0),
            }
        }
        EnrolFor::Personal(user) => {
            let active: Option<i64> =
                sqlx::query_scalar("SELECT active FROM staff WHERE username = $1")
                    .bind(user.as_str())
                    .fetch_optional(tx.conn())
                    .await?;
            match active {
                None => Holder::Missing(format!("no staff member named {user}")),
                Some(1) => Holder::Ready,
                Some(_) => Holder::Refused(format!(
                    "{user} is disabled: enable them before enrolling a device"
                )),
            }
        }
    })
}

/// Whose unused codes to cancel.
pub(crate) enum CodesOf<'a> {
    Laptop(&'a str),
    Person(&'a str),
}

/// Cancels the unused codes of a laptop or a person, in `tx`; how many.
pub(crate) async fn cancel_codes_in(tx: &mut AuditedTx, of: CodesOf<'_>) -> Result<u64> {
    let (column, key) = match of {
        CodesOf::Laptop(tag) => ("asset_tag", tag),
        CodesOf::Person(user) => ("username", user),
    };
    let now = tx.now();
    let done = sqlx::query(&format!(
        "UPDATE enrolment_codes SET cancelled_at = $1
         WHERE {column} = $2 AND consumed_at IS NULL AND cancelled_at IS NULL"
    ))
    .bind(now)
    .bind(key)
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected())
}
