//! Enrolled agent devices: what the QUIC side needs to know about a device
//! certificate it is shown, and its renewals.
//!
//! A device's `fingerprint` is the SHA-256 of its public key
//! (SubjectPublicKeyInfo), so it stays the same when its certificate is
//! renewed; the certificate itself is short-lived.

use super::{AuditEntry, AuditedTx, Result, Store, StoreError};
use crate::clock::Millis;

/// A device about to be recorded at enrolment.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub fingerprint: String,
    /// `managed` or `personal`.
    pub kind: &'static str,
    pub asset_tag: Option<String>,
    pub owner: Option<String>,
    /// base64 of the raw public key, for renewals.
    pub public_key: String,
    pub cert_expires_at: Millis,
    pub agent_version: String,
    pub os: String,
}

from_row! {
    /// An enrolled device as the tunnel layer sees it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Device {
        pub fingerprint: String,
        pub kind: String,
        pub asset_tag: Option<String>,
        pub owner: Option<String>,
        pub public_key: String,
        pub cert_expires_at: i64,
        pub revoked_at: Option<i64>,
        pub revoke_reason: Option<String>,
    }
}

impl Device {
    /// How the device is named to people: its asset tag, or whose it is.
    pub fn label(&self) -> String {
        match (&self.asset_tag, &self.owner) {
            (Some(tag), _) => tag.clone(),
            (None, Some(owner)) => format!("personal:{owner}"),
            (None, None) => self.fingerprint.chars().take(12).collect(),
        }
    }
}

pub(super) async fn insert(tx: &mut AuditedTx, new: &NewDevice, now: Millis) -> Result<()> {
    let inserted = sqlx::query(
        "INSERT INTO enrolled_devices (fingerprint, kind, asset_tag, owner, enrolled_at, cert_expires_at,
                                       last_seen_at, agent_version, os, public_key)
         VALUES ($1, $2, $3, $4, $5, $6, $5, $7, $8, $9)",
    )
    .bind(&new.fingerprint)
    .bind(new.kind)
    .bind(new.asset_tag.clone())
    .bind(new.owner.clone())
    .bind(now)
    .bind(new.cert_expires_at)
    .bind(&new.agent_version)
    .bind(&new.os)
    .bind(&new.public_key)
    .execute(tx.conn())
    .await
    .map_err(StoreError::from);
    match inserted {
        Err(e) if e.is_unique_violation() => Err(StoreError::Conflict(
            "this device key is already enrolled; make a new key (remove the state dir) to enrol again"
                .into(),
        )),
        other => other.map(|_| ()),
    }
}

impl Store {
    pub async fn device_get(&self, fingerprint: &str) -> Result<Option<Device>> {
        Ok(sqlx::query_as(
            "SELECT fingerprint, kind, asset_tag, owner, public_key, cert_expires_at, revoked_at, revoke_reason
             FROM enrolled_devices WHERE fingerprint = $1",
        )
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records a renewed certificate's expiry; refused for a revoked device.
    pub async fn device_renew(
        &self,
        fingerprint: &str,
        cert_expires_at: Millis,
        now: Millis,
    ) -> Result<()> {
        let mut tx = self.begin_audited(now).await?;
        let done = sqlx::query(
            "UPDATE enrolled_devices SET cert_expires_at = $1, last_seen_at = $2
             WHERE fingerprint = $3 AND revoked_at IS NULL",
        )
        .bind(cert_expires_at)
        .bind(now)
        .bind(fingerprint)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(
                "this device is revoked or not enrolled".into(),
            ));
        }
        tx.audit(
            AuditEntry::ok("agent", "device.renew", fingerprint).with_detail(serde_json::json!({
                "cert_expires_at": crate::clock::rfc3339(cert_expires_at),
            })),
        )
        .await?;
        tx.commit().await
    }

    /// Notes that a device connected, with what it runs.
    pub async fn device_seen(
        &self,
        fingerprint: &str,
        agent_version: &str,
        os: &str,
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE enrolled_devices SET last_seen_at = $1, agent_version = $2, os = $3 WHERE fingerprint = $4",
        )
        .bind(now)
        .bind(agent_version)
        .bind(os)
        .bind(fingerprint)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every revoked device's fingerprint.
    pub async fn devices_revoked(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT fingerprint FROM enrolled_devices WHERE revoked_at IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Revoking one personal device.
impl Store {
    /// Revokes the personal device whose fingerprint starts with `id` (at
    /// least the 16 hex digits `devices list` shows): its sessions and
    /// tunnels end when the rules reload, and it cannot connect again. Its
    /// owner stays as they are; their other devices go on. One audited
    /// access change; the owner.
    pub async fn personal_device_revoke(
        &self,
        actor: &str,
        id: &str,
        reason: &str,
        now: Millis,
    ) -> Result<String> {
        let id = id.trim().to_ascii_lowercase();
        if id.len() < 16 || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::Invalid(format!(
                "bad device id {:?}: give the 16 hex digits `lanyard devices list --kind personal` shows",
                id.chars().take(80).collect::<String>()
            )));
        }
        let mut tx = self.begin_audited(now).await?;
        tx.access_changed();
        let found: Vec<(String, String, Option<i64>)> = sqlx::query_as(
            "SELECT fingerprint, owner, revoked_at FROM enrolled_devices
             WHERE kind = 'personal' AND fingerprint LIKE $1 ESCAPE '\\'",
        )
        .bind(super::like_prefix(&id))
        .fetch_all(tx.conn())
        .await?;
        let (fingerprint, owner) = match found.as_slice() {
            [] => {
                return Err(StoreError::NotFound(format!(
                    "no personal device {id}; see `lanyard devices list --kind personal`"
                )))
            }
            [(_, _, Some(_))] => {
                return Err(StoreError::Conflict(format!(
                    "personal device {id} is revoked already"
                )))
            }
            [(f, o, None)] => (f.clone(), o.clone()),
            _ => {
                return Err(StoreError::Conflict(format!(
                    "{id} names {} devices; give more of its digits",
                    found.len()
                )))
            }
        };
        sqlx::query(
            "UPDATE enrolled_devices SET revoked_at = $1, revoke_reason = $2
             WHERE fingerprint = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(&fingerprint)
        .execute(tx.conn())
        .await?;
        tx.audit(
            AuditEntry::ok(actor, "device.revoke", &owner).with_detail(serde_json::json!({
                "kind": "personal",
                "device": fingerprint.chars().take(16).collect::<String>(),
                "reason": reason,
            })),
        )
        .await?;
        tx.commit().await?;
        Ok(owner)
    }
}
