//! `/api/v1/reports/inventory`: every laptop with its holder, as JSON or CSV.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::Viewer;
use super::error::{ApiError, ApiResult};
use super::router::Routes;
use super::QueryParams;
use crate::clock::{now_ms, rfc3339};
use crate::model::LaptopStatus;
use crate::state::AppState;
use crate::store::laptops::{DeviceRow, LaptopFilter};

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

/// This module's routes under `/api/v1`.
pub fn routes(r: Routes) -> Routes {
    r.get("/reports/inventory", inventory)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    format: Option<String>,
}

async fn inventory(
    State(state): State<AppState>,
    _viewer: Viewer,
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
            let body = inventory_csv(&laptops).map_err(|_| ApiError::Internal)?;
            Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response())
        }
        other => Err(ApiError::bad(format!(
            "bad format {other:?}: use csv or json"
        ))),
    }
}

/// The inventory as CSV: the header, then one row per laptop, every cell
/// made safe for a spreadsheet.
fn inventory_csv(laptops: &[DeviceRow]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_HEADER)?;
    for l in laptops {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        let cells = [
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
        ];
        w.write_record(cells.map(spreadsheet_text))?;
    }
    w.into_inner().map_err(|e| e.into_error().into())
}

/// A cell a spreadsheet would read as a formula (it starts with `=`, `+`,
/// `-`, `@`, a tab or a carriage return) gets a leading `'`, so it is shown
/// as text (OWASP's advice on CSV injection). Other cells are unchanged.
pub fn spreadsheet_text(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn laptop(tag: &str) -> DeviceRow {
        DeviceRow {
            kind: "managed",
            asset_tag: Some(tag.into()),
            serial: Some("PF3A0001".into()),
            model: Some("ThinkPad T14".into()),
            status: "in-stock".into(),
            holder: None,
            holder_name: None,
            department: None,
            allocated_since: None,
            pool: None,
            recall_since: None,
            notes: String::new(),
            purchase_date: Some("2025-01-31".into()),
            warranty_end: None,
            device_id: None,
        }
    }

    fn parse(body: &[u8]) -> Vec<Vec<String>> {
        csv::Reader::from_reader(body)
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn formula_cells_are_exported_as_text() {
        let mut evil = laptop("LT-1");
        evil.model = Some("=HYPERLINK(\"http://x\")".into());
        evil.notes = "=HYPERLINK(\"http://x\",\"click\")".into();
        evil.serial = Some("+SUM(1,2)".into());
        evil.holder = Some("@cmd".into());
        evil.holder_name = Some("-2+3".into());
        evil.department = Some("\t=1".into());
        evil.pool = Some("=not-exported".into());
        let mut cr = laptop("LT-2");
        cr.notes = "\r=1".into();
        let body = inventory_csv(&[evil, cr, laptop("LT-3")]).unwrap();
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(text.starts_with("asset_tag,serial,model,"), "{text}");
        let rows = parse(&body);
        assert_eq!(rows.len(), 3);
        let col = |name: &str| CSV_HEADER.iter().position(|h| *h == name).unwrap();
        assert_eq!(rows[0][col("model")], "'=HYPERLINK(\"http://x\")");
        assert_eq!(rows[0][col("notes")], "'=HYPERLINK(\"http://x\",\"click\")");
        assert_eq!(rows[0][col("serial")], "'+SUM(1,2)");
        assert_eq!(rows[0][col("holder")], "'@cmd");
        assert_eq!(rows[0][col("holder_name")], "'-2+3");
        assert_eq!(rows[0][col("department")], "'\t=1");
        assert_eq!(rows[1][col("notes")], "'\r=1");
        // Ordinary cells are exactly as stored.
        assert_eq!(
            rows[2],
            [
                "LT-3",
                "PF3A0001",
                "ThinkPad T14",
                "in-stock",
                "",
                "",
                "",
                "",
                "2025-01-31",
                "",
                ""
            ]
        );
    }

    #[test]
    fn only_a_leading_formula_character_is_quoted() {
        assert_eq!(spreadsheet_text("a=b".into()), "a=b");
        assert_eq!(spreadsheet_text("LT-00421".into()), "LT-00421");
        assert_eq!(spreadsheet_text(String::new()), "");
        assert_eq!(spreadsheet_text(" =1".into()), " =1");
        assert_eq!(spreadsheet_text("'=1".into()), "'=1");
        assert_eq!(spreadsheet_text("=1".into()), "'=1");
    }
}
