//! `/api/v1/reports/inventory`: every laptop with its holder, as JSON or CSV.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::QueryParams;
use crate::clock::{now_ms, rfc3339};
use crate::model::LaptopStatus;
use crate::state::AppState;
use crate::store::laptops::LaptopFilter;

pub const CSV_HEADER: [&str; 11] = [
    "asset_tag",
    "serial",
    "model",
    "status",
    "holder",
    "holder_name",
    "department",
    "allocated_since",
    "purchase_date",
    "warranty_end",
    "notes",
];

pub fn router() -> Router<AppState> {
    Router::new().route("/reports/inventory", get(inventory))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    format: Option<String>,
}

async fn inventory(
    State(state): State<AppState>,
    _admin: Admin,
    QueryParams(q): QueryParams<ReportQuery>,
) -> ApiResult<Response> {
    let filter = LaptopFilter {
        kind: Some("managed".into()),
        ..LaptopFilter::default()
    };
    let laptops = state.store.device_list(&filter).await?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => {
            let mut totals: BTreeMap<&str, usize> =
                LaptopStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
            for l in &laptops {
                if let Some(n) = totals.get_mut(l.status.as_str()) {
                    *n += 1;
                }
            }
            Ok(Json(serde_json::json!({
                "generated_at": rfc3339(now_ms()),
                "total": laptops.len(),
                "by_status": totals,
                "laptops": laptops,
            }))
            .into_response())
        }
        "csv" => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let fail = |_| ApiError::Internal;
            w.write_record(CSV_HEADER).map_err(fail)?;
            for l in &laptops {
                let o = |v: &Option<String>| v.clone().unwrap_or_default();
                w.write_record([
                    o(&l.asset_tag),
                    o(&l.serial),
                    o(&l.model),
                    l.status.clone(),
                    o(&l.holder),
                    o(&l.holder_name),
                    o(&l.department),
                    o(&l.allocated_since),
                    o(&l.purchase_date),
                    o(&l.warranty_end),
                    l.notes.clone(),
                ])
                .map_err(fail)?;
            }
            let body = w.into_inner().map_err(|_| ApiError::Internal)?;
            Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response())
        }
        other => Err(ApiError::bad(format!(
            "bad format {other:?}: use csv or json"
        ))),
    }
}
