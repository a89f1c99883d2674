//! `/api/v1/staff`: people, their groups, passwords and second factor.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::{Admin, Viewer};
use super::error::{header_refused, ApiError, ApiResult, Imported};
use super::router::Routes;
use super::JsonBody;
use crate::auth::{password, totp};
use crate::clock::now_ms;
use crate::csv_import::FieldProblems;
use crate::model::{parse_email, parse_text, GroupName, Priority, Role, Username};
use crate::state::AppState;
use crate::store::staff::{NewStaff, Staff, StaffChange, StaffImportRow};

pub const CSV_COLUMNS: [&str; 6] = [
    "username",
    "name",
    "email",
    "department",
    "priority",
    "groups",
];

/// This module's routes under `/api/v1`.
pub fn routes(r: Routes) -> Routes {
    r.get("/staff", list)
        .post("/staff", add)
        .post("/staff/import", import)
        .get("/staff/{username}", show)
        .patch("/staff/{username}", set)
        .post("/staff/{username}/disable", disable)
        .post("/staff/{username}/enable", enable)
        .post("/staff/{username}/password", set_password)
        .post("/staff/{username}/totp", enable_totp)
        .delete("/staff/{username}/totp", disable_totp)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffRequest {
    pub username: String,
    pub name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub department: String,
    #[serde(default)]
    pub priority: Option<u8>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Kept for scripts written before roles: `true` is `role: admin`.
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

/// A staff member's fields, each checked, so that every bad one is named.
/// `line` is the row's line in an import file (0 for one added alone).
pub(crate) fn parse_staff<'a>(
    line: u64,
    username: &str,
    name: &str,
    email: &str,
    department: &str,
    priority: &str,
    groups: impl IntoIterator<Item = &'a str>,
) -> StaffImportRow {
    let mut p = FieldProblems::default();
    let username = p.check(Username::parse(username));
    let name = p.check(parse_text("name", name, 200, true));
    let email = p.check(parse_email(email));
    let department = p.check(parse_text("department", department, 100, false));
    let priority = p.check(Priority::parse(priority));
    let mut parsed_groups: Vec<GroupName> = Vec::new();
    for g in groups {
        if let Some(g) = p.check(GroupName::parse(g)) {
            if !parsed_groups.contains(&g) {
                parsed_groups.push(g);
            }
        }
    }
    let staff = match (&username, name, email, department, priority) {
        (Some(username), Some(name), Some(email), Some(department), Some(priority))
            if p.0.is_empty() =>
        {
            Some(NewStaff {
                username: username.clone(),
                name,
                email,
                department,
                priority,
                groups: parsed_groups.clone(),
                role: Role::Staff,
                password_hash: None,
            })
        }
        _ => None,
    };
    StaffImportRow {
        line,
        username,
        groups: parsed_groups,
        staff,
        problems: p.0,
    }
}

pub(crate) async fn hash_password(pw: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

async fn add(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(req): JsonBody<StaffRequest>,
) -> ApiResult<(StatusCode, Json<Staff>)> {
    let priority = req
        .priority
        .map(|p| p.to_string())
        .unwrap_or_else(|| "3".into());
    let row = parse_staff(
        0,
        &req.username,
        &req.name,
        &req.email,
        &req.department,
        &priority,
        req.groups.iter().map(String::as_str),
    );
    let Some(mut new) = row.staff else {
        return Err(ApiError::bad(row.problems.join("; ")));
    };
    new.role = match (req.role.as_deref(), req.admin) {
        (Some(r), admin) => {
            let role = Role::parse(r)?;
            if admin && role != Role::Admin {
                return Err(ApiError::bad(format!(
                    "admin: true and role: {role} disagree; give only the role"
                )));
            }
            role
        }
        (None, true) => Role::Admin,
        (None, false) => Role::Staff,
    };
    if let Some(pw) = req.password {
        new.password_hash = Some(hash_password(pw).await?);
    }
    let staff = state.store.staff_add(&caller.name, &new, now_ms()).await?;
    Ok((StatusCode::CREATED, Json(staff)))
}

/// The body is the CSV file itself. All or nothing: every problem in the
/// file (unreadable rows, bad fields, repeats, people who exist, unknown
/// groups) is named in one answer, by line.
async fn import(
    State(state): State<AppState>,
    Admin(caller): Admin,
    body: String,
) -> ApiResult<Json<Imported>> {
    let file = read_staff_file(&body)?;
    let imported = state
        .store
        .staff_import_rows(&caller.name, &file, now_ms())
        .await?;
    Ok(Json(Imported { imported }))
}

/// A staff CSV file read row by row, each as far as it could be read (the
/// store then checks the whole file against itself and what exists). A
/// bad header, or a header with no rows, refuses the file at once.
pub(crate) fn read_staff_file(body: &str) -> ApiResult<Vec<StaffImportRow>> {
    let (rows, unreadable) =
        crate::csv_import::read(body, &CSV_COLUMNS, &[]).map_err(header_refused)?;
    let mut file: Vec<StaffImportRow> = unreadable
        .into_iter()
        .map(|p| StaffImportRow::unreadable(p.line, p.problem))
        .collect();
    file.extend(rows.iter().map(|row| {
        parse_staff(
            row.line,
            row.get("username"),
            row.get("name"),
            row.get("email"),
            row.get("department"),
            row.get("priority"),
            row.get("groups")
                .split([';', ' '])
                .filter(|g| !g.is_empty()),
        )
    }));
    if file.is_empty() {
        return Err(ApiError::bad("the file has a header but no rows"));
    }
    file.sort_by_key(|r| r.line);
    Ok(file)
}

async fn list(State(state): State<AppState>, _viewer: Viewer) -> ApiResult<Json<Vec<Staff>>> {
    Ok(Json(state.store.staff_list().await?))
}

async fn show(
    State(state): State<AppState>,
    _viewer: Viewer,
    Path(username): Path<String>,
) -> ApiResult<Json<Staff>> {
    Ok(Json(state.store.staff_get(&username).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffSetRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub priority: Option<u8>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub groups: Option<Vec<String>>,
}

/// Reads a change to a person, naming every bad field at once.
pub fn parse_staff_change(req: &StaffSetRequest) -> Result<StaffChange, ApiError> {
    let mut p = FieldProblems::default();
    let change = StaffChange {
        name: req
            .name
            .as_deref()
            .and_then(|v| p.check(parse_text("name", v, 200, true))),
        email: req.email.as_deref().and_then(|v| p.check(parse_email(v))),
        department: req
            .department
            .as_deref()
            .and_then(|v| p.check(parse_text("department", v, 100, false))),
        priority: req
            .priority
            .and_then(|v| p.check(Priority::parse(&v.to_string()))),
        role: req.role.as_deref().and_then(|v| p.check(Role::parse(v))),
        groups: req.groups.as_ref().map(|gs| {
            let mut out: Vec<GroupName> = Vec::new();
            for g in gs {
                if let Some(g) = p.check(GroupName::parse(g)) {
                    if !out.contains(&g) {
                        out.push(g);
                    }
                }
            }
            out
        }),
    };
    if p.0.is_empty() {
        Ok(change)
    } else {
        Err(ApiError::bad(p.0.join("; ")))
    }
}

/// Changes a person's name, email, department, priority, role or groups.
async fn set(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(username): Path<String>,
    JsonBody(req): JsonBody<StaffSetRequest>,
) -> ApiResult<Json<Staff>> {
    let change = parse_staff_change(&req)?;
    if change.role.is_some() && caller.name == username {
        return Err(ApiError::bad(
            "you cannot change your own role; ask another admin",
        ));
    }
    Ok(Json(
        state
            .store
            .staff_set(&caller.name, &username, &change, now_ms())
            .await?,
    ))
}

async fn disable(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(username): Path<String>,
) -> ApiResult<Json<Staff>> {
    if caller.name == username {
        return Err(ApiError::bad("you cannot disable yourself"));
    }
    let staff = state
        .store
        .staff_set_active(&caller.name, &username, false, now_ms())
        .await?;
    Ok(Json(staff))
}

async fn enable(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(username): Path<String>,
) -> ApiResult<Json<Staff>> {
    Ok(Json(
        state
            .store
            .staff_set_active(&caller.name, &username, true, now_ms())
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordRequest {
    password: String,
}

async fn set_password(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(username): Path<String>,
    JsonBody(req): JsonBody<PasswordRequest>,
) -> ApiResult<StatusCode> {
    let hash = hash_password(req.password).await?;
    state
        .store
        .staff_set_password(&caller.name, &username, &hash, now_ms())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize)]
struct TotpEnrolled {
    username: String,
    otpauth_uri: String,
}

/// Makes a new TOTP secret; the URI is shown this once and never again.
async fn enable_totp(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(username): Path<String>,
) -> ApiResult<Json<TotpEnrolled>> {
    let username = Username::parse(&username)?;
    let secret = totp::new_secret();
    let sealed = state.seal.seal(&secret, username.as_str());
    state
        .store
        .staff_set_totp(&caller.name, username.as_str(), Some(&sealed), now_ms())
        .await?;
    Ok(Json(TotpEnrolled {
        otpauth_uri: totp::otpauth_uri(&secret, username.as_str()),
        username: username.to_string(),
    }))
}

async fn disable_totp(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .store
        .staff_set_totp(&caller.name, &username, None, now_ms())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
