//! `/api/v1/apps`: internal apps and who may reach them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::auth::{Admin, Viewer};
use super::error::ApiResult;
use super::router::Routes;
use super::JsonBody;
use crate::clock::now_ms;
use crate::model::{
    parse_flow_idle, parse_host_names, parse_protocol, AppName, DeviceKindRule, GroupName, Target,
    DEFAULT_FLOW_IDLE_SECS,
};
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
    /// The names the app is known by (the agent's proxy answers for them).
    #[serde(default)]
    hosts: Vec<String>,
    /// `tcp` (the default) or `udp`.
    #[serde(default)]
    protocol: Option<String>,
    /// A UDP flow ends after this many seconds without a datagram.
    #[serde(default)]
    flow_idle_secs: Option<u64>,
}

async fn list(State(state): State<AppState>, _viewer: Viewer) -> ApiResult<Json<Vec<App>>> {
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
        hosts: parse_host_names(&req.hosts)?,
        protocol: parse_protocol(req.protocol.as_deref().unwrap_or("tcp"))?,
        flow_idle_secs: req
            .flow_idle_secs
            .map(parse_flow_idle)
            .transpose()?
            .unwrap_or(DEFAULT_FLOW_IDLE_SECS),
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
    /// Replaces the host names (an empty list removes them all).
    hosts: Option<Vec<String>>,
    protocol: Option<String>,
    flow_idle_secs: Option<u64>,
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
        hosts: req.hosts.as_deref().map(parse_host_names).transpose()?,
        protocol: req.protocol.as_deref().map(parse_protocol).transpose()?,
        flow_idle_secs: req.flow_idle_secs.map(parse_flow_idle).transpose()?,
    };
    if change.is_empty() {
        return Err(super::error::ApiError::bad(
            "nothing to change: give a target, allowed groups, a device kind, host names, a protocol or a flow idle timeout",
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
