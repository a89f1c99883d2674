//! `/api/v1/apps`: internal apps and who may reach them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::auth::Admin;
use super::error::ApiResult;
use super::router::Routes;
use super::JsonBody;
use crate::clock::now_ms;
use crate::model::{AppName, DeviceKindRule, GroupName, Target};
use crate::state::AppState;
use crate::store::apps::{App, AppChange, NewApp};

/// This module's routes under `/api/v1`.
pub fn routes(r: Routes) -> Routes {
    r.get("/apps", list)
        .post("/apps", add)
        .delete("/apps/{name}", remove)
        .patch("/apps/{name}", set)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppRequest {
    name: String,
    target: String,
    #[serde(default)]
    allow_groups: Vec<String>,
    #[serde(default)]
    device_kind: Option<String>,
}

async fn list(State(state): State<AppState>, _admin: Admin) -> ApiResult<Json<Vec<App>>> {
    Ok(Json(state.store.app_list().await?))
}

async fn add(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(req): JsonBody<AppRequest>,
) -> ApiResult<(StatusCode, Json<App>)> {
    let groups = groups_of(&req.allow_groups)?;
    let new = NewApp {
        name: AppName::parse(&req.name)?,
        target: Target::parse(&req.target)?,
        groups,
        device_kind: DeviceKindRule::parse(req.device_kind.as_deref().unwrap_or("any"))?,
    };
    Ok((
        StatusCode::CREATED,
        Json(state.store.app_add(&caller.name, &new, now_ms()).await?),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppSetRequest {
    target: Option<String>,
    allow_groups: Option<Vec<String>>,
    device_kind: Option<String>,
}

fn groups_of(names: &[String]) -> Result<Vec<GroupName>, super::error::ApiError> {
    let mut groups = Vec::new();
    for g in names {
        let g = GroupName::parse(g)?;
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok(groups)
}

async fn set(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<AppSetRequest>,
) -> ApiResult<Json<App>> {
    let change = AppChange {
        target: req.target.as_deref().map(Target::parse).transpose()?,
        groups: req.allow_groups.as_deref().map(groups_of).transpose()?,
        device_kind: req
            .device_kind
            .as_deref()
            .map(DeviceKindRule::parse)
            .transpose()?,
    };
    if change.target.is_none() && change.groups.is_none() && change.device_kind.is_none() {
        return Err(super::error::ApiError::bad(
            "nothing to change: give a target, allowed groups or a device kind",
        ));
    }
    Ok(Json(
        state
            .store
            .app_set(&caller.name, &name, &change, now_ms())
            .await?,
    ))
}

async fn remove(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .store
        .app_remove(&caller.name, &name, now_ms())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
