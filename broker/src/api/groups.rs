//! `/api/v1/groups`

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::auth::{Admin, Viewer};
use super::error::ApiResult;
use super::router::Routes;
use super::JsonBody;
use crate::clock::now_ms;
use crate::model::{parse_text, GroupName};
use crate::state::AppState;
use crate::store::groups::Group;

/// This module's routes under `/api/v1`.
pub fn routes(r: Routes) -> Routes {
    r.get("/groups", list)
        .post("/groups", add)
        .delete("/groups/{name}", remove)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGroup {
    name: String,
    #[serde(default)]
    description: String,
    /// Provider groups (SSO) that make a person a member.
    #[serde(default)]
    idp_groups: Vec<String>,
}

async fn list(State(state): State<AppState>, _viewer: Viewer) -> ApiResult<Json<Vec<Group>>> {
    Ok(Json(state.store.group_list().await?))
}

async fn add(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(req): JsonBody<NewGroup>,
) -> ApiResult<(StatusCode, Json<Group>)> {
    let name = GroupName::parse(&req.name)?;
    let description = parse_text("description", &req.description, 200, false)?;
    state
        .store
        .group_add_mapped(&caller.name, &name, &description, &req.idp_groups, now_ms())
        .await?;
    let group = state
        .store
        .group_list()
        .await?
        .into_iter()
        .find(|g| g.name == name.as_str());
    Ok((
        StatusCode::CREATED,
        Json(group.ok_or(super::error::ApiError::Internal)?),
    ))
}

async fn remove(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let name = GroupName::parse(&name)?;
    state
        .store
        .group_remove(&caller.name, &name, now_ms())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
