//! Council laptops: the inventory's stock.

use serde::Serialize;

use super::{AuditEntry, Result, Store, StoreError};
use crate::clock::{rfc3339, Millis};
use crate::model::AssetTag;

pub const STATUSES: [&str; 5] = ["in-stock", "allocated", "in-repair", "lost", "retired"];

#[derive(Debug, Clone)]
pub struct NewLaptop {
    pub asset_tag: AssetTag,
    pub serial: String,
    pub model: String,
    pub status: String,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LaptopRow {
    pub asset_tag: String,
    pub serial: String,
    pub model: String,
    pub status: String,
    pub notes: String,
    #[serde(skip)]
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Laptop {
    #[serde(flatten)]
    pub row: LaptopRow,
    pub kind: &'static str,
    pub created: String,
}

pub fn parse_status(s: &str) -> std::result::Result<String, crate::model::Invalid> {
    let s = s.trim();
    if STATUSES.contains(&s) {
        Ok(s.to_owned())
    } else {
        Err(crate::model::Invalid(format!(
            "bad status {s:?}: use one of {}",
            STATUSES.join(", ")
        )))
    }
}

impl Store {
    pub async fn laptop_add(&self, actor: &str, new: &NewLaptop, now: Millis) -> Result<Laptop> {
        let mut tx = self.begin_audited(now).await?;
        let inserted = sqlx::query(
            "INSERT INTO laptops (asset_tag, serial, model, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(new.asset_tag.as_str())
        .bind(&new.serial)
        .bind(&new.model)
        .bind(&new.status)
        .bind(now)
        .execute(tx.conn())
        .await
        .map_err(StoreError::from);
        match inserted {
            Err(e) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!(
                    "a laptop with asset tag {} or serial {} already exists",
                    new.asset_tag, new.serial
                )));
            }
            other => other?,
        };
        tx.audit(
            AuditEntry::ok(actor, "laptop.add", new.asset_tag.as_str()).with_detail(
                serde_json::json!({
                    "serial": new.serial, "model": new.model, "status": new.status,
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        self.laptop_get(new.asset_tag.as_str()).await
    }

    pub async fn laptop_get(&self, asset_tag: &str) -> Result<Laptop> {
        let row: Option<LaptopRow> = sqlx::query_as(
            "SELECT asset_tag, serial, model, status, notes, created_at FROM laptops WHERE asset_tag = $1",
        )
        .bind(asset_tag)
        .fetch_optional(&self.pool)
        .await?;
        row.map(laptop)
            .ok_or_else(|| StoreError::NotFound(format!("no laptop with asset tag {asset_tag}")))
    }

    pub async fn laptop_list(&self, status: Option<&str>) -> Result<Vec<Laptop>> {
        let rows: Vec<LaptopRow> = sqlx::query_as(
            "SELECT asset_tag, serial, model, status, notes, created_at FROM laptops
             WHERE ($1 = '' OR status = $1) ORDER BY asset_tag",
        )
        .bind(status.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(laptop).collect())
    }
}

fn laptop(row: LaptopRow) -> Laptop {
    let created = rfc3339(row.created_at);
    Laptop {
        row,
        kind: "managed",
        created,
    }
}
