//! `/api/v1/devices`: council laptops (and enrolled personal devices).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::{Ict, Viewer};
use super::error::{header_refused, ApiError, ApiResult, Imported};
use super::router::Routes;
use super::{JsonBody, QueryParams};
use crate::clock::now_ms;
use crate::csv_import::FieldProblems;
use crate::model::{parse_date, parse_text, AssetTag, GroupName, LaptopStatus, Username};
use crate::state::AppState;
use crate::store::laptops::{DeviceRow, LaptopDetail, LaptopFilter, LaptopImportRow, NewLaptop};

pub const CSV_COLUMNS: [&str; 4] = ["asset_tag", "serial", "model", "status"];
pub const CSV_OPTIONAL: [&str; 3] = ["notes", "purchase_date", "warranty_end"];

/// This module's routes under `/api/v1`.
pub fn routes(r: Routes) -> Routes {
    r.get("/devices", list)
        .post("/devices", add)
        .post("/devices/import", import)
        .get("/devices/{tag}", show)
        .post("/devices/{tag}/assign", assign)
        .post("/devices/{tag}/return", give_back)
        .post("/devices/{tag}/mark", mark)
        .post("/devices/{tag}/revoke", revoke)
        .get("/devices/{tag}/history", history)
        .post("/personal-devices/{id}/revoke", revoke_personal)
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
    /// A pool laptop's group: any active member may use it.
    #[serde(default)]
    pool: Option<String>,
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

/// The status a laptop is added with: in stock unless said, never allocated.
fn parse_new_status(status: &str) -> Result<LaptopStatus, crate::model::Invalid> {
    let status = LaptopStatus::parse(if status.trim().is_empty() {
        "in-stock"
    } else {
        status
    })?;
    if status == LaptopStatus::Allocated {
        return Err(crate::model::Invalid(
            "a new laptop cannot start allocated; add it in-stock, then assign it".into(),
        ));
    }
    Ok(status)
}

/// A laptop's fields, each checked, so that every bad one is named.
/// `line` is the row's line in an import file (0 for one added alone).
#[allow(clippy::too_many_arguments)]
pub fn parse_laptop(
    line: u64,
    tag: &str,
    serial: &str,
    model: &str,
    status: &str,
    notes: &str,
    purchase_date: &str,
    warranty_end: &str,
) -> LaptopImportRow {
    let mut p = FieldProblems::default();
    let asset_tag = p.check(AssetTag::parse(tag));
    let serial = p.check(parse_text("serial", serial, 100, true));
    let model = p.check(parse_text("model", model, 100, true));
    let status = p.check(parse_new_status(status));
    let notes = p.check(parse_text("notes", notes, 1000, false));
    let purchase_date = p.check(parse_date("purchase_date", purchase_date));
    let warranty_end = p.check(parse_date("warranty_end", warranty_end));
    let laptop = match (
        &asset_tag,
        &serial,
        model,
        status,
        notes,
        purchase_date,
        warranty_end,
    ) {
        (
            Some(tag),
            Some(serial),
            Some(model),
            Some(status),
            Some(notes),
            Some(purchase_date),
            Some(warranty_end),
        ) if p.0.is_empty() => Some(NewLaptop {
            asset_tag: tag.clone(),
            serial: serial.clone(),
            model,
            status,
            notes,
            purchase_date,
            warranty_end,
        }),
        _ => None,
    };
    LaptopImportRow {
        line,
        asset_tag,
        serial,
        laptop,
        problems: p.0,
    }
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

async fn list(
    State(state): State<AppState>,
    _viewer: Viewer,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<Vec<DeviceRow>>> {
    let status = nonempty(q.status)
        .map(|s| LaptopStatus::parse(&s))
        .transpose()?;
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
    Ict(caller): Ict,
    JsonBody(req): JsonBody<LaptopRequest>,
) -> ApiResult<(StatusCode, Json<DeviceRow>)> {
    let row = parse_laptop(
        0,
        &req.asset_tag,
        &req.serial,
        &req.model,
        req.status.as_deref().unwrap_or(""),
        &req.notes,
        &req.purchase_date,
        &req.warranty_end,
    );
    let Some(new) = row.laptop else {
        return Err(ApiError::bad(row.problems.join("; ")));
    };
    let pool = nonempty(req.pool)
        .map(|g| GroupName::parse(&g))
        .transpose()?;
    let mut added = state.store.laptop_add(&caller.name, &new, now_ms()).await?;
    if let Some(pool) = &pool {
        added = state
            .store
            .laptop_set_pool(&caller.name, &new.asset_tag, Some(pool), now_ms())
            .await?;
    }
    Ok((StatusCode::CREATED, Json(added)))
}

/// The body is the CSV file: asset_tag,serial,model,status (notes,
/// purchase_date, warranty_end optional). All or nothing: every problem in
/// the file (unreadable rows, bad fields, repeated or existing tags and
/// serials) is named in one answer, by line.
async fn import(
    State(state): State<AppState>,
    Ict(caller): Ict,
    body: String,
) -> ApiResult<Json<Imported>> {
    Ok(Json(Imported {
        imported: import_file(&state, &caller.name, &body).await?,
    }))
}

/// Reads a laptop CSV file whole and imports it all or not at all (the API
/// and the console's import both come here): how many were written.
pub async fn import_file(state: &AppState, actor: &str, body: &str) -> ApiResult<usize> {
    let (rows, unreadable) =
        crate::csv_import::read(body, &CSV_COLUMNS, &CSV_OPTIONAL).map_err(header_refused)?;
    let mut file: Vec<LaptopImportRow> = unreadable
        .into_iter()
        .map(|p| LaptopImportRow::unreadable(p.line, p.problem))
        .collect();
    file.extend(rows.iter().map(|row| {
        parse_laptop(
            row.line,
            row.get("asset_tag"),
            row.get("serial"),
            row.get("model"),
            row.get("status"),
            row.get("notes"),
            row.get("purchase_date"),
            row.get("warranty_end"),
        )
    }));
    if file.is_empty() {
        return Err(ApiError::bad("the file has a header but no rows"));
    }
    file.sort_by_key(|r| r.line);
    Ok(state
        .store
        .laptop_import_rows(actor, &file, now_ms())
        .await?)
}

async fn show(
    State(state): State<AppState>,
    _viewer: Viewer,
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
    Ict(caller): Ict,
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
    Ict(caller): Ict,
    Path(tag): Path<String>,
    JsonBody(req): JsonBody<ReturnRequest>,
) -> ApiResult<Json<DeviceRow>> {
    let tag = AssetTag::parse(&tag)?;
    let status = LaptopStatus::parse(req.status.as_deref().unwrap_or("in-stock"))?;
    let note = parse_text("note", &req.note, 1000, false)?;
    Ok(Json(
        state
            .store
            .laptop_return(&caller.name, &tag, status, &note, now_ms())
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkRequest {
    #[serde(default)]
    status: Option<String>,
    /// A group makes it a pool laptop of that group; "" makes it an
    /// ordinary laptop again.
    #[serde(default)]
    pool: Option<String>,
    #[serde(default)]
    note: String,
}

#[derive(Debug, Serialize)]
struct Marked {
    #[serde(flatten)]
    laptop: DeviceRow,
    revoked_certificates: usize,
}

async fn mark(
    State(state): State<AppState>,
    Ict(caller): Ict,
    Path(tag): Path<String>,
    JsonBody(req): JsonBody<MarkRequest>,
) -> ApiResult<Json<Marked>> {
    let tag = AssetTag::parse(&tag)?;
    let status = req.status.as_deref().map(LaptopStatus::parse).transpose()?;
    let pool = match req.pool.as_deref().map(str::trim) {
        None => None,
        Some("") => Some(None),
        Some(g) => Some(Some(GroupName::parse(g)?)),
    };
    let note = parse_text("note", &req.note, 1000, false)?;
    if status.is_none() && pool.is_none() {
        return Err(ApiError::bad("give a status, a pool group, or both"));
    }
    let mut marked = Marked {
        laptop: state.store.laptop_get(tag.as_str()).await?,
        revoked_certificates: 0,
    };
    if let Some(pool) = &pool {
        marked.laptop = state
            .store
            .laptop_set_pool(&caller.name, &tag, pool.as_ref(), now_ms())
            .await?;
    }
    if let Some(status) = status {
        let (laptop, revoked) = state
            .store
            .laptop_mark(&caller.name, &tag, status, &note, now_ms())
            .await?;
        marked = Marked {
            laptop,
            revoked_certificates: revoked.fingerprints.len(),
        };
    }
    Ok(Json(marked))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    #[serde(default)]
    reason: String,
}

async fn revoke(
    State(state): State<AppState>,
    Ict(caller): Ict,
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
    Ok(Json(
        serde_json::json!({ "asset_tag": tag, "revoked_certificates": revoked.fingerprints.len() }),
    ))
}

/// Revokes one personal device; its owner and their other devices go on.
async fn revoke_personal(
    State(state): State<AppState>,
    Ict(caller): Ict,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<RevokeRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let reason = parse_text("reason", &req.reason, 200, false)?;
    let reason = if reason.is_empty() {
        format!("revoked by {}", caller.name)
    } else {
        reason
    };
    let owner = state
        .store
        .personal_device_revoke(&caller.name, &id, &reason, now_ms())
        .await?;
    Ok(Json(
        serde_json::json!({ "device": id.trim(), "owner": owner, "revoked_certificates": 1 }),
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
    _viewer: Viewer,
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
