//! `/api/v1/devices`: council laptops (and enrolled personal devices).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::Admin;
use super::error::{refuse_bad_rows, rows_refused, ApiError, ApiResult, Imported};
use super::{JsonBody, QueryParams};
use crate::clock::now_ms;
use crate::model::{parse_text, AssetTag, Username};
use crate::revocation::Revocation;
use crate::state::AppState;
use crate::store::laptops::{
    parse_date, parse_status, DeviceRow, LaptopDetail, LaptopFilter, NewLaptop, Revoked,
};
use crate::store::staff::RowProblem;

pub const CSV_COLUMNS: [&str; 4] = ["asset_tag", "serial", "model", "status"];
pub const CSV_OPTIONAL: [&str; 3] = ["notes", "purchase_date", "warranty_end"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/devices", get(list).post(add))
        .route("/devices/import", post(import))
        .route("/devices/{tag}", get(show))
        .route("/devices/{tag}/assign", post(assign))
        .route("/devices/{tag}/return", post(give_back))
        .route("/devices/{tag}/mark", post(mark))
        .route("/devices/{tag}/revoke", post(revoke))
        .route("/devices/{tag}/history", get(history))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LaptopRequest {
    asset_tag: String,
    serial: String,
    model: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    purchase_date: String,
    #[serde(default)]
    warranty_end: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    kind: Option<String>,
    model: Option<String>,
    holder: Option<String>,
    department: Option<String>,
    /// Free text: asset tag, serial or model, matched literally.
    q: Option<String>,
}

fn parse_laptop(
    tag: &str,
    serial: &str,
    model: &str,
    status: &str,
    notes: &str,
    purchase_date: &str,
    warranty_end: &str,
) -> Result<NewLaptop, crate::model::Invalid> {
    let status = parse_status(if status.trim().is_empty() {
        "in-stock"
    } else {
        status
    })?;
    if status == "allocated" {
        return Err(crate::model::Invalid(
            "a new laptop cannot start allocated; add it in-stock, then assign it".into(),
        ));
    }
    Ok(NewLaptop {
        asset_tag: AssetTag::parse(tag)?,
        serial: parse_text("serial", serial, 100, true)?,
        model: parse_text("model", model, 100, true)?,
        status,
        notes: parse_text("notes", notes, 1000, false)?,
        purchase_date: parse_date("purchase_date", purchase_date)?,
        warranty_end: parse_date("warranty_end", warranty_end)?,
    })
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<Vec<DeviceRow>>> {
    let status = nonempty(q.status).map(|s| parse_status(&s)).transpose()?;
    let kind = nonempty(q.kind);
    if let Some(k) = &kind {
        if k != "managed" && k != "personal" {
            return Err(ApiError::bad(format!(
                "bad kind {k:?}: use managed or personal"
            )));
        }
    }
    let search = nonempty(q.q);
    if search.as_ref().is_some_and(|s| s.chars().count() > 100) {
        return Err(ApiError::bad("search text is longer than 100 characters"));
    }
    let filter = LaptopFilter {
        status,
        kind,
        model: nonempty(q.model),
        holder: nonempty(q.holder),
        department: nonempty(q.department),
        search,
    };
    Ok(Json(state.store.device_list(&filter).await?))
}

async fn add(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(req): JsonBody<LaptopRequest>,
) -> ApiResult<(StatusCode, Json<DeviceRow>)> {
    let new = parse_laptop(
        &req.asset_tag,
        &req.serial,
        &req.model,
        req.status.as_deref().unwrap_or(""),
        &req.notes,
        &req.purchase_date,
        &req.warranty_end,
    )?;
    Ok((
        StatusCode::CREATED,
        Json(state.store.laptop_add(&caller.name, &new, now_ms()).await?),
    ))
}

/// The body is the CSV file: asset_tag,serial,model,status (notes,
/// purchase_date, warranty_end optional). All or nothing.
async fn import(
    State(state): State<AppState>,
    Admin(caller): Admin,
    body: String,
) -> ApiResult<Json<Imported>> {
    let (rows, mut problems) =
        crate::csv_import::read(&body, &CSV_COLUMNS, &CSV_OPTIONAL).map_err(rows_refused)?;
    let mut parsed = Vec::with_capacity(rows.len());
    problems.extend(crate::csv_import::repeats(&rows, "asset_tag", "asset tag"));
    problems.extend(crate::csv_import::repeats(&rows, "serial", "serial"));
    for row in &rows {
        match parse_laptop(
            row.get("asset_tag"),
            row.get("serial"),
            row.get("model"),
            row.get("status"),
            row.get("notes"),
            row.get("purchase_date"),
            row.get("warranty_end"),
        ) {
            Ok(l) => parsed.push((row.line, l)),
            Err(e) => problems.push(RowProblem {
                line: row.line,
                problem: e.0,
            }),
        }
    }
    refuse_bad_rows(problems)?;
    if parsed.is_empty() {
        return Err(ApiError::bad("the file has a header but no rows"));
    }
    Ok(Json(Imported {
        imported: state
            .store
            .laptop_import(&caller.name, &parsed, now_ms())
            .await?,
    }))
}

async fn show(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tag): Path<String>,
) -> ApiResult<Json<LaptopDetail>> {
    Ok(Json(state.store.laptop_detail(&tag).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignRequest {
    to: String,
    #[serde(default)]
    note: String,
}

async fn assign(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(tag): Path<String>,
    JsonBody(req): JsonBody<AssignRequest>,
) -> ApiResult<Json<DeviceRow>> {
    let tag = AssetTag::parse(&tag)?;
    let to = Username::parse(&req.to)?;
    let note = parse_text("note", &req.note, 1000, false)?;
    Ok(Json(
        state
            .store
            .laptop_assign(&caller.name, &tag, &to, &note, now_ms())
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnRequest {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    note: String,
}

async fn give_back(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(tag): Path<String>,
    JsonBody(req): JsonBody<ReturnRequest>,
) -> ApiResult<Json<DeviceRow>> {
    let tag = AssetTag::parse(&tag)?;
    let status = parse_status(req.status.as_deref().unwrap_or("in-stock"))?;
    let note = parse_text("note", &req.note, 1000, false)?;
    Ok(Json(
        state
            .store
            .laptop_return(&caller.name, &tag, &status, &note, now_ms())
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkRequest {
    status: String,
    #[serde(default)]
    note: String,
}

#[derive(Debug, Serialize)]
struct Marked {
    #[serde(flatten)]
    laptop: DeviceRow,
    revoked_certificates: usize,
}

fn publish(state: &AppState, revoked: &Revoked, reason: String) {
    if !revoked.fingerprints.is_empty() {
        state.revocations.publish(Revocation::Devices {
            fingerprints: revoked.fingerprints.clone(),
            reason,
        });
    }
}

async fn mark(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(tag): Path<String>,
    JsonBody(req): JsonBody<MarkRequest>,
) -> ApiResult<Json<Marked>> {
    let tag = AssetTag::parse(&tag)?;
    let status = parse_status(&req.status)?;
    let note = parse_text("note", &req.note, 1000, false)?;
    let (laptop, revoked) = state
        .store
        .laptop_mark(&caller.name, &tag, &status, &note, now_ms())
        .await?;
    publish(&state, &revoked, format!("laptop {tag} marked {status}"));
    Ok(Json(Marked {
        laptop,
        revoked_certificates: revoked.fingerprints.len(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    #[serde(default)]
    reason: String,
}

async fn revoke(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(tag): Path<String>,
    JsonBody(req): JsonBody<RevokeRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let tag = AssetTag::parse(&tag)?;
    let reason = parse_text("reason", &req.reason, 200, false)?;
    let reason = if reason.is_empty() {
        format!("revoked by {}", caller.name)
    } else {
        reason
    };
    let revoked = state
        .store
        .laptop_revoke(&caller.name, &tag, &reason, now_ms())
        .await?;
    publish(&state, &revoked, reason);
    Ok(Json(
        serde_json::json!({ "asset_tag": tag, "revoked_certificates": revoked.fingerprints.len() }),
    ))
}

#[derive(Debug, Serialize)]
struct HistoryEntry {
    seq: i64,
    at: String,
    actor: String,
    action: String,
    detail: serde_json::Value,
}

async fn history(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tag): Path<String>,
) -> ApiResult<Json<Vec<HistoryEntry>>> {
    let rows = state.store.laptop_history(&tag).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| HistoryEntry {
                seq: r.seq,
                at: r.at(),
                detail: r.detail_json(),
                actor: r.actor,
                action: r.action,
            })
            .collect(),
    ))
}
