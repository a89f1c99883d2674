//! Leavers (`POST /api/v1/staff/{username}/leave`: everything a person
//! held ends in one audited step), and removing people for good with the
//! personal devices they enrolled:
//! `DELETE /api/v1/staff/{username}/devices`, then
//! `DELETE /api/v1/staff/{username}`. For leavers and for test identities
//! (`lanyard stress` removes what it made this way).
//!
//! Both are narrow on purpose: the person must already be disabled (which
//! ended their sessions), and a person with admin rights or any laptop
//! history is refused, so that history keeps its person. Each call is one
//! audited change.

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::router::Routes;
use crate::clock::now_ms;
use crate::model::Username;
use crate::state::AppState;
use crate::store::leavers::Leaver;

/// This module's routes under `/api/v1`.
pub fn routes(r: Routes) -> Routes {
    r.post("/staff/{username}/leave", leave)
        .delete("/staff/{username}", remove_person)
        .delete("/staff/{username}/devices", remove_devices)
}

/// The leaver action: disabled, sign-ins and tunnels ended, codes
/// cancelled, personal devices revoked, laptop request cancelled, laptops
/// recalled; one audit entry.
async fn leave(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(username): Path<String>,
) -> ApiResult<Json<Leaver>> {
    let username = Username::parse(&username)?;
    if caller.name == username.as_str() {
        return Err(ApiError::bad("you cannot mark yourself as a leaver"));
    }
    Ok(Json(
        state
            .store
            .staff_leave(&caller.name, &username, now_ms())
            .await?,
    ))
}

#[derive(Debug, Serialize)]
struct DevicesRemoved {
    username: String,
    removed_devices: usize,
}

/// Revokes and removes every personal device a disabled person enrolled.
async fn remove_devices(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(username): Path<String>,
) -> ApiResult<Json<DevicesRemoved>> {
    let username = Username::parse(&username)?;
    let fingerprints = state
        .store
        .personal_devices_remove(&caller.name, &username, now_ms())
        .await?;
    let removed_devices = fingerprints.len();
    Ok(Json(DevicesRemoved {
        username: username.to_string(),
        removed_devices,
    }))
}

#[derive(Debug, Serialize)]
struct PersonRemoved {
    username: String,
    removed: bool,
}

/// Removes a disabled person with no devices left and no laptop history.
async fn remove_person(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(username): Path<String>,
) -> ApiResult<Json<PersonRemoved>> {
    let username = Username::parse(&username)?;
    if caller.name == username.as_str() {
        return Err(ApiError::bad("you cannot remove yourself"));
    }
    state
        .store
        .staff_remove(&caller.name, &username, now_ms())
        .await?;
    Ok(Json(PersonRemoved {
        username: username.to_string(),
        removed: true,
    }))
}
