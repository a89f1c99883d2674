//! Apps: internal services reachable through tunnels, with who may reach them.

use serde::Serialize;

use super::groups::require_groups;
use super::{AuditEntry, Result, Store, StoreError};
use crate::clock::Millis;
use crate::model::{AppName, DeviceKindRule, GroupName, HostName, Target};
use lanyard_proto::AppProtocol;

#[derive(Debug, Clone)]
pub struct NewApp {
    pub name: AppName,
    pub target: Target,
    pub groups: Vec<GroupName>,
    pub device_kind: DeviceKindRule,
    pub hosts: Vec<HostName>,
    pub protocol: AppProtocol,
    pub flow_idle_secs: u32,
}

/// What `lanyard apps set` changes; `None` leaves it as it is.
#[derive(Debug, Clone, Default)]
pub struct AppChange {
    pub target: Option<Target>,
    pub groups: Option<Vec<GroupName>>,
    pub device_kind: Option<DeviceKindRule>,
    pub hosts: Option<Vec<HostName>>,
    pub protocol: Option<AppProtocol>,
    pub flow_idle_secs: Option<u32>,
}

impl AppChange {
    pub fn is_empty(&self) -> bool {
        self.target.is_none()
            && self.groups.is_none()
            && self.device_kind.is_none()
            && self.hosts.is_none()
            && self.protocol.is_none()
            && self.flow_idle_secs.is_none()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct App {
    pub name: String,
    pub target: String,
    pub allow_groups: Vec<String>,
    pub device_kind: String,
    /// The names it is known by, sorted.
    pub hosts: Vec<String>,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// A UDP flow ends after this long without a datagram.
    pub flow_idle_secs: i64,
}

/// Gives `app` the host names `hosts` (after its old ones were removed);
/// a name that belongs to another app is a conflict.
async fn insert_hosts(tx: &mut super::AuditedTx, app: &str, hosts: &[HostName]) -> Result<()> {
    for h in hosts {
        let owner: Option<String> =
            sqlx::query_scalar("SELECT app_name FROM app_hosts WHERE host = $1")
                .bind(h.as_str())
                .fetch_optional(tx.conn())
                .await?;
        if let Some(owner) = owner {
            return Err(StoreError::Conflict(format!(
                "host name {h} already belongs to app {owner}",
                h = h.as_str()
            )));
        }
        let inserted = sqlx::query("INSERT INTO app_hosts (host, app_name) VALUES ($1, $2)")
            .bind(h.as_str())
            .bind(app)
            .execute(tx.conn())
            .await
            .map_err(StoreError::from);
        match inserted {
            Err(e) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!(
                    "host name {} already belongs to another app",
                    h.as_str()
                )));
            }
            other => other?,
        };
    }
    Ok(())
}

impl Store {
    pub async fn app_add(&self, actor: &str, new: &NewApp, now: Millis) -> Result<App> {
        let mut tx = self.begin_audited(now).await?;
        tx.access_changed();
        require_groups(&mut tx, &new.groups).await?;
        let inserted = sqlx::query(
            "INSERT INTO apps (name, target, device_kind, created_at, protocol, flow_idle_secs) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new.name.as_str())
        .bind(new.target.as_str())
        .bind(new.device_kind.as_str())
        .bind(now)
        .bind(new.protocol.as_str())
        .bind(i64::from(new.flow_idle_secs))
        .execute(tx.conn())
        .await
        .map_err(StoreError::from);
        match inserted {
            Err(e) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!(
                    "app {} already exists",
                    new.name
                )));
            }
            other => other?,
        };
        for g in &new.groups {
            sqlx::query("INSERT INTO app_groups (app_name, group_name) VALUES ($1, $2)")
                .bind(new.name.as_str())
                .bind(g.as_str())
                .execute(tx.conn())
                .await?;
        }
        insert_hosts(&mut tx, new.name.as_str(), &new.hosts).await?;
        tx.audit(
            AuditEntry::ok(actor, "app.add", new.name.as_str()).with_detail(serde_json::json!({
                "target": new.target, "groups": new.groups, "device_kind": new.device_kind.as_str(),
                "hosts": new.hosts, "protocol": new.protocol.as_str(),
                "flow_idle_secs": new.flow_idle_secs,
            })),
        )
        .await?;
        tx.commit().await?;
        self.app_get(new.name.as_str()).await
    }

    /// Changes an app's target, groups or device kind (what is given), in
    /// one audited access change: live streams it no longer allows close.
    pub async fn app_set(
        &self,
        actor: &str,
        name: &str,
        change: &AppChange,
        now: Millis,
    ) -> Result<App> {
        let mut tx = self.begin_audited(now).await?;
        tx.access_changed();
        let found: Option<String> = sqlx::query_scalar("SELECT name FROM apps WHERE name = $1")
            .bind(name)
            .fetch_optional(tx.conn())
            .await?;
        if found.is_none() {
            return Err(StoreError::NotFound(format!(
                "no app named {name}; see `lanyard apps list`"
            )));
        }
        if let Some(target) = &change.target {
            sqlx::query("UPDATE apps SET target = $1 WHERE name = $2")
                .bind(target.as_str())
                .bind(name)
                .execute(tx.conn())
                .await?;
        }
        if let Some(kind) = change.device_kind {
            sqlx::query("UPDATE apps SET device_kind = $1 WHERE name = $2")
                .bind(kind.as_str())
                .bind(name)
                .execute(tx.conn())
                .await?;
        }
        if let Some(protocol) = change.protocol {
            sqlx::query("UPDATE apps SET protocol = $1 WHERE name = $2")
                .bind(protocol.as_str())
                .bind(name)
                .execute(tx.conn())
                .await?;
        }
        if let Some(secs) = change.flow_idle_secs {
            sqlx::query("UPDATE apps SET flow_idle_secs = $1 WHERE name = $2")
                .bind(i64::from(secs))
                .bind(name)
                .execute(tx.conn())
                .await?;
        }
        if let Some(hosts) = &change.hosts {
            sqlx::query("DELETE FROM app_hosts WHERE app_name = $1")
                .bind(name)
                .execute(tx.conn())
                .await?;
            insert_hosts(&mut tx, name, hosts).await?;
        }
        if let Some(groups) = &change.groups {
            require_groups(&mut tx, groups).await?;
            sqlx::query("DELETE FROM app_groups WHERE app_name = $1")
                .bind(name)
                .execute(tx.conn())
                .await?;
            for g in groups {
                sqlx::query("INSERT INTO app_groups (app_name, group_name) VALUES ($1, $2)")
                    .bind(name)
                    .bind(g.as_str())
                    .execute(tx.conn())
                    .await?;
            }
        }
        tx.audit(
            AuditEntry::ok(actor, "app.set", name).with_detail(serde_json::json!({
                "target": change.target,
                "groups": change.groups,
                "device_kind": change.device_kind.map(|k| k.as_str()),
                "hosts": change.hosts,
                "protocol": change.protocol.map(|p| p.as_str()),
                "flow_idle_secs": change.flow_idle_secs,
            })),
        )
        .await?;
        tx.commit().await?;
        self.app_get(name).await
    }

    pub async fn app_list(&self) -> Result<Vec<App>> {
        let apps: Vec<(String, String, String, String, i64)> = sqlx::query_as(
            "SELECT name, target, device_kind, protocol, flow_idle_secs FROM apps ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        let grants: Vec<(String, String)> = sqlx::query_as(
            "SELECT app_name, group_name FROM app_groups ORDER BY app_name, group_name",
        )
        .fetch_all(&self.pool)
        .await?;
        let hosts: Vec<(String, String)> =
            sqlx::query_as("SELECT app_name, host FROM app_hosts ORDER BY app_name, host")
                .fetch_all(&self.pool)
                .await?;
        let mut grants = group_by_app(grants);
        let mut hosts = group_by_app(hosts);
        Ok(apps
            .into_iter()
            .map(
                |(name, target, device_kind, protocol, flow_idle_secs)| App {
                    allow_groups: grants.remove(&name).unwrap_or_default(),
                    hosts: hosts.remove(&name).unwrap_or_default(),
                    name,
                    target,
                    device_kind,
                    protocol,
                    flow_idle_secs,
                },
            )
            .collect())
    }

    pub async fn app_get(&self, name: &str) -> Result<App> {
        self.app_list()
            .await?
            .into_iter()
            .find(|a| a.name == name)
            .ok_or_else(|| StoreError::NotFound(format!("no app named {name}")))
    }

    pub async fn app_remove(&self, actor: &str, name: &str, now: Millis) -> Result<()> {
        let mut tx = self.begin_audited(now).await?;
        tx.access_changed();
        sqlx::query("DELETE FROM app_groups WHERE app_name = $1")
            .bind(name)
            .execute(tx.conn())
            .await?;
        sqlx::query("DELETE FROM app_hosts WHERE app_name = $1")
            .bind(name)
            .execute(tx.conn())
            .await?;
        let done = sqlx::query("DELETE FROM apps WHERE name = $1")
            .bind(name)
            .execute(tx.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no app named {name}")));
        }
        tx.audit(AuditEntry::ok(actor, "app.remove", name)).await?;
        tx.commit().await
    }
}

/// `(app, value)` rows, in order, as each app's values.
fn group_by_app(rows: Vec<(String, String)>) -> std::collections::HashMap<String, Vec<String>> {
    let mut by_app: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (app, value) in rows {
        by_app.entry(app).or_default().push(value);
    }
    by_app
}
