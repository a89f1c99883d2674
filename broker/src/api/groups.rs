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
use crate::model::{parse_text, GroupName, Role};
use crate::state::AppState;
use crate::store::groups::{Group, GroupMappingChange};

/// This module's routes under `/api/v1`.
pub fn routes(r: Routes) -> Routes {
    r.get("/groups", list)
        .post("/groups", add)
        .patch("/groups/{name}", set)
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
    /// The role (admin, ict, viewer; or none) the provider's members get.
    #[serde(default)]
    grants_role: Option<String>,
}

/// `PATCH /groups/{name}`: what is left out stays as it is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupChange {
    /// The whole list of provider groups (empty: none).
    idp_groups: Option<Vec<String>>,
    /// admin, ict, viewer, or none.
    grants_role: Option<String>,
}

/// A role a group may grant, or "none".
fn granted_role(s: &str) -> Result<Option<Role>, super::error::ApiError> {
    match s.trim() {
        "none" => Ok(None),
        "admin" | "ict" | "viewer" => Ok(Some(Role::parse(s)?)),
        other => Err(super::error::ApiError::BadRequest(format!(
            "bad grants_role {other:?}: use admin, ict, viewer or none"
        ))),
    }
}

async fn one(state: &AppState, name: &GroupName) -> ApiResult<Group> {
    state
        .store
        .group_list()
        .await?
        .into_iter()
        .find(|g| g.name == name.as_str())
        .ok_or(super::error::ApiError::Internal)
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
    let grants_role = match req.grants_role.as_deref() {
        Some(r) => granted_role(r)?,
        None => None,
    };
    state
        .store
        .group_add_granting(
            &caller.name,
            &name,
            &description,
            &req.idp_groups,
            grants_role,
            now_ms(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(one(&state, &name).await?)))
}

async fn set(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<GroupChange>,
) -> ApiResult<Json<Group>> {
    let name = GroupName::parse(&name)?;
    let change = GroupMappingChange {
        idp_groups: req.idp_groups,
        grants_role: req.grants_role.as_deref().map(granted_role).transpose()?,
    };
    state
        .store
        .group_set_mappings(&caller.name, &name, &change, now_ms())
        .await?;
    Ok(Json(one(&state, &name).await?))
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
