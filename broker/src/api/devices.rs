//! `/api/v1/devices`: council laptops.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::auth::Admin;
use super::error::ApiResult;
use super::{JsonBody, QueryParams};
use crate::clock::now_ms;
use crate::model::{parse_text, AssetTag};
use crate::state::AppState;
use crate::store::laptops::{parse_status, Laptop, NewLaptop};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/devices", get(list).post(add))
        .route("/devices/{tag}", get(show))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LaptopRequest {
    asset_tag: String,
    serial: String,
    model: String,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<Vec<Laptop>>> {
    let status = q.status.as_deref().map(parse_status).transpose()?;
    Ok(Json(state.store.laptop_list(status.as_deref()).await?))
}

async fn add(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(req): JsonBody<LaptopRequest>,
) -> ApiResult<(StatusCode, Json<Laptop>)> {
    let status = parse_status(req.status.as_deref().unwrap_or("in-stock"))?;
    if status == "allocated" {
        return Err(super::error::ApiError::bad(
            "a new laptop cannot start allocated; add it in stock, then assign it",
        ));
    }
    let new = NewLaptop {
        asset_tag: AssetTag::parse(&req.asset_tag)?,
        serial: parse_text("serial", &req.serial, 100, true)?,
        model: parse_text("model", &req.model, 100, true)?,
        status,
    };
    Ok((
        StatusCode::CREATED,
        Json(state.store.laptop_add(&caller.name, &new, now_ms()).await?),
    ))
}

async fn show(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tag): Path<String>,
) -> ApiResult<Json<Laptop>> {
    Ok(Json(state.store.laptop_get(&tag).await?))
}
