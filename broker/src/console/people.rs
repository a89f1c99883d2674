//! People and access: `GET /staff` (list, search, add, CSV import),
//! `GET /staff/{username}` (details, groups, devices; change, disable,
//! enable, the leaver action), `GET /groups` (list, add) and `GET /apps`.
//! Viewers read; every change needs an admin.

use std::fmt::Write;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use super::html::{
    button_form, csrf_field, esc, link, select, summary, table, textarea, url, Field, FieldError,
    Notice, Viewer,
};
use super::session::Session;
use super::{done, page, problem, store_problem, FormData};
use crate::api::error::ApiError;
use crate::api::staff::{parse_staff_change, StaffSetRequest};
use crate::clock::now_ms;
use crate::model::{parse_text, GroupName, Role, Username};
use crate::state::AppState;
use crate::store::groups::Group;
use crate::store::laptops::LaptopFilter;
use crate::store::staff::{ImportError, RowProblem, Staff};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/staff", get(staff_list).post(staff_add))
        .route("/staff/import", post(staff_import))
        .route("/staff/{username}", get(staff_show).post(staff_change))
        .route("/staff/{username}/disable", post(staff_disable))
        .route("/staff/{username}/enable", post(staff_enable))
        .route("/staff/{username}/leave", get(leave_confirm).post(leave))
        .route("/groups", get(groups_list).post(group_add))
        .route("/apps", get(apps_list))
}

/// Longest query value read (search terms, filters); longer ones are cut.
pub(crate) const MAX_QUERY: usize = 200;
/// Largest CSV file taken from the import form.
const MAX_CSV: usize = 1 << 20;

/// A page's query, bounded: each value trimmed and cut to [`MAX_QUERY`].
pub(crate) fn query(q: Vec<(String, String)>) -> FormData {
    FormData(
        q.into_iter()
            .take(16)
            .map(|(k, v)| (k, v.trim().chars().take(MAX_QUERY).collect()))
            .collect(),
    )
}

/// The notice for `?done=KEY`, from the page's own list of keys.
pub(crate) fn notice(q: &FormData, known: &[(&str, &str)]) -> Option<Notice> {
    let key = q.get("done");
    known
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, text)| Notice::Done((*text).to_owned()))
}

pub(crate) fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// An API error as a status and words for the page.
pub(crate) fn api_problem(e: ApiError) -> (StatusCode, String) {
    match e {
        ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
        ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
        ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
        ApiError::Forbidden(m) | ApiError::Unauthorized(m) => (StatusCode::FORBIDDEN, m),
        ApiError::Rows { message, rows } => (StatusCode::BAD_REQUEST, rows_text(&message, &rows)),
        ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
        ApiError::Timeout => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The broker took too long; try again in a moment.".into(),
        ),
        ApiError::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong on the broker; it has been logged.".into(),
        ),
    }
}

/// A refused file's message, then each bad row by line, one to a line.
fn rows_text(message: &str, rows: &[RowProblem]) -> String {
    let mut out = message.to_owned();
    for r in rows {
        let _ = write!(out, "\nline {}: {}", r.line, r.problem);
    }
    out
}

pub(crate) fn with_status(mut r: Response, status: StatusCode) -> Response {
    *r.status_mut() = status;
    r
}

const ROLES: [(&str, &str); 4] = [
    ("staff", "Staff (their own page only)"),
    ("viewer", "Viewer (reads everything, changes nothing)"),
    ("ict", "ICT (laptops, requests, codes, sessions)"),
    ("admin", "Admin (everything)"),
];

const PRIORITIES: [(&str, &str); 3] = [
    ("1", "1 (let in first when busy)"),
    ("2", "2"),
    ("3", "3 (the usual)"),
];

/// The groups as checkboxes, `chosen` ticked.
fn group_checks(groups: &[Group], chosen: &[&str], errors: &[FieldError]) -> String {
    let error = errors.iter().find(|e| e.field == "groups");
    let mut h = format!(
        "<fieldset id=\"groups\" class=\"field checks{}\"><legend>Groups</legend>",
        if error.is_some() { " has-error" } else { "" }
    );
    if let Some(e) = error {
        let _ = write!(
            h,
            "<p class=\"error\" id=\"groups-error\"><span class=\"visually-hidden\">Error:</span> {}</p>",
            esc(&e.message)
        );
    }
    if groups.is_empty() {
        h.push_str("<p class=\"hint\">There are no groups yet.</p>");
    }
    for g in groups {
        let id = format!("group-{}", url(&g.name));
        let checked = if chosen.contains(&g.name.as_str()) {
            " checked"
        } else {
            ""
        };
        let _ = write!(
            h,
            "<div><input type=\"checkbox\" id=\"{id}\" name=\"groups\" value=\"{}\"{checked}>\
             <label for=\"{id}\">{}</label></div>",
            esc(&g.name),
            esc(&g.name)
        );
    }
    h.push_str("</fieldset>");
    h
}

/// The problems with a person's details as the form gives them, each by
/// its field, read by the same rules as the API's.
fn detail_errors(form: &FormData) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut check = |field: &str, req: StaffSetRequest| {
        if let Err(e) = parse_staff_change(&req) {
            errors.push(field_error(field, api_problem(e).1));
        }
    };
    check(
        "name",
        StaffSetRequest {
            name: Some(form.get("name").to_owned()),
            ..StaffSetRequest::default()
        },
    );
    check(
        "email",
        StaffSetRequest {
            email: Some(form.get("email").to_owned()),
            ..StaffSetRequest::default()
        },
    );
    check(
        "department",
        StaffSetRequest {
            department: Some(form.get("department").to_owned()),
            ..StaffSetRequest::default()
        },
    );
    check(
        "role",
        StaffSetRequest {
            role: Some(form.get("role").to_owned()),
            ..StaffSetRequest::default()
        },
    );
    check(
        "groups",
        StaffSetRequest {
            groups: Some(form.all("groups").into_iter().map(str::to_owned).collect()),
            ..StaffSetRequest::default()
        },
    );
    if let Err(e) = crate::model::Priority::parse(form.get("priority")) {
        errors.push(field_error("priority", e.0));
    }
    errors
}

/// The form's change to a person, once [`detail_errors`] found none.
fn detail_change(form: &FormData) -> Result<crate::store::staff::StaffChange, ApiError> {
    parse_staff_change(&StaffSetRequest {
        name: Some(form.get("name").to_owned()),
        email: Some(form.get("email").to_owned()),
        department: Some(form.get("department").to_owned()),
        priority: form.get("priority").trim().parse().ok(),
        role: Some(form.get("role").to_owned()),
        groups: Some(form.all("groups").into_iter().map(str::to_owned).collect()),
    })
}

// ---------------------------------------------------------------- /staff

const STAFF_DONE: &[(&str, &str)] = &[
    ("added", "The person was added."),
    ("imported", "The file was imported: every row was added."),
];

/// Whether a person matches a search term: literally, without regard to
/// case, in their username, name or department.
fn matches(s: &Staff, term: &str) -> bool {
    if term.is_empty() {
        return true;
    }
    let term = term.to_lowercase();
    [&s.username, &s.name, &s.department]
        .iter()
        .any(|f| f.to_lowercase().contains(&term))
}

async fn staff_list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = session.require(&state, Role::Viewer, "GET /staff").await {
        return r;
    }
    let q = query(q);
    let n = notice(&q, STAFF_DONE);
    staff_page(
        &state,
        &session.viewer(),
        &q,
        n,
        &[],
        &FormData::default(),
        "",
    )
    .await
}

async fn staff_page(
    state: &AppState,
    viewer: &Viewer,
    q: &FormData,
    notice: Option<Notice>,
    errors: &[FieldError],
    add: &FormData,
    csv: &str,
) -> Response {
    let (staff, groups) = match (
        state.store.staff_list().await,
        state.store.group_list().await,
    ) {
        (Ok(s), Ok(g)) => (s, g),
        (Err(e), _) | (_, Err(e)) => return problem(viewer, "Staff", "/staff", e),
    };
    let term = q.get("q");
    let found: Vec<&crate::store::staff::Staff> =
        staff.iter().filter(|s| matches(s, term)).collect();
    // Pages of 50, as the laptops list: a council's 4,000 staff are not
    // one page.
    let per = super::laptops::PAGE_SIZE;
    let pages = found.len().div_ceil(per).max(1);
    let page_no = q.get("page").parse::<usize>().unwrap_or(1).clamp(1, pages);
    let rows: Vec<Vec<String>> = found
        .iter()
        .skip((page_no - 1) * per)
        .take(per)
        .map(|s| {
            vec![
                link(&format!("/staff/{}", url(&s.username)), &s.username),
                esc(&s.name),
                esc(&s.department),
                s.priority.to_string(),
                s.role.to_string(),
                esc(&s.groups.join(", ")),
                if s.active { "active" } else { "disabled" }.into(),
            ]
        })
        .collect();
    let mut body = format!(
        "<form class=\"filters\" method=\"get\" action=\"/staff\" role=\"search\">{}\
         <div class=\"field\"><button type=\"submit\" class=\"button secondary\">Search</button></div></form>{}",
        Field::text("q", "Search by username, name or department", term)
            .kind("search")
            .render(&[]),
        table(
            &format!(
                "Staff: {} found of {}, page {page_no} of {pages}",
                found.len(),
                staff.len()
            ),
            &[
                "Username",
                "Name",
                "Department",
                "Priority",
                "Role",
                "Groups",
                "State"
            ],
            &rows
        )
    );
    if pages > 1 {
        let q_enc = url(term);
        let mut pager = String::from("<nav class=\"pager\" aria-label=\"Pages\">");
        if page_no > 1 {
            pager.push_str(&link(
                &format!("/staff?q={q_enc}&page={}", page_no - 1),
                "Previous page",
            ));
        }
        if page_no < pages {
            pager.push_str(&link(
                &format!("/staff?q={q_enc}&page={}", page_no + 1),
                "Next page",
            ));
        }
        pager.push_str("</nav>");
        body.push_str(&pager);
    }
    if viewer.role >= Role::Admin {
        let chosen = add.all("groups");
        let _ = write!(
            body,
            "<section class=\"panel\" aria-labelledby=\"add-person\"><h2 id=\"add-person\">Add a person</h2>\
             <form method=\"post\" action=\"/staff\" novalidate>{}{}{}{}{}{}{}{}{}\
             <button type=\"submit\" class=\"button\">Add person</button></form></section>",
            csrf_field(&viewer.csrf),
            Field::text("username", "Username", add.get("username"))
                .hint("Lower-case letters, digits, dots and dashes, e.g. j.smith")
                .autocomplete("off")
                .required()
                .render(errors),
            Field::text("name", "Full name", add.get("name"))
                .autocomplete("off")
                .required()
                .render(errors),
            Field::text("email", "Email (optional)", add.get("email"))
                .kind("email")
                .autocomplete("off")
                .render(errors),
            Field::text("department", "Department (optional)", add.get("department"))
                .render(errors),
            select(
                "priority",
                "Priority",
                &PRIORITIES,
                if add.get("priority").is_empty() {
                    "3"
                } else {
                    add.get("priority")
                },
                errors
            ),
            select(
                "role",
                "Role",
                &ROLES,
                if add.get("role").is_empty() {
                    "staff"
                } else {
                    add.get("role")
                },
                errors
            ),
            group_checks(&groups, &chosen, errors),
            Field::text("password", "Password (optional)", "")
                .kind("password")
                .hint("Leave empty for someone who signs in through the council's identity provider")
                .autocomplete("new-password")
                .render(errors),
        );
        let _ = write!(
            body,
            "<section class=\"panel\" aria-labelledby=\"import\"><h2 id=\"import\">Import staff from a CSV file</h2>\
             <form method=\"post\" action=\"/staff/import\" novalidate>{}{}\
             <button type=\"submit\" class=\"button\">Import</button></form></section>",
            csrf_field(&viewer.csrf),
            textarea(
                "csv",
                "CSV file",
                "Paste the whole file, header first: username,name,email,department,priority,groups \
                 (groups separated by ; or spaces). Nothing is written unless every row is good.",
                csv,
                errors
            ),
        );
    }
    page(viewer, "Staff", "/staff", notice, errors, body)
}

async fn staff_add(State(state): State<AppState>, session: Session, form: FormData) -> Response {
    if let Err(r) = session.check_csrf(form.get("csrf")) {
        return r;
    }
    if let Err(r) = session.require(&state, Role::Admin, "POST /staff").await {
        return r;
    }
    let viewer = session.viewer();
    let q = FormData::default();
    let mut errors = Vec::new();
    if let Err(e) = Username::parse(form.get("username")) {
        errors.push(field_error("username", e.0));
    }
    errors.extend(detail_errors(&form));
    let priority = form.get("priority");
    let row = crate::api::staff::parse_staff(
        0,
        form.get("username"),
        form.get("name"),
        form.get("email"),
        form.get("department"),
        if priority.is_empty() { "3" } else { priority },
        form.all("groups"),
    );
    let new = match (row.staff, errors.is_empty()) {
        (Some(new), true) => Some(new),
        _ => None,
    };
    let Some(mut new) = new else {
        if errors.is_empty() {
            errors.push(field_error("username", row.problems.join("; ")));
        }
        return staff_page(&state, &viewer, &q, None, &errors, &form, "").await;
    };
    new.role = match Role::parse(form.get("role")) {
        Ok(r) => r,
        Err(e) => {
            let errors = [field_error("role", e.0)];
            return staff_page(&state, &viewer, &q, None, &errors, &form, "").await;
        }
    };
    let password = form.get("password");
    if !password.is_empty() {
        match crate::api::staff::hash_password(password.to_owned()).await {
            Ok(h) => new.password_hash = Some(h),
            Err(e) => {
                let errors = [field_error("password", api_problem(e).1)];
                return staff_page(&state, &viewer, &q, None, &errors, &form, "").await;
            }
        }
    }
    match state
        .store
        .staff_add(&session.caller.name, &new, now_ms())
        .await
    {
        Ok(_) => done("/staff", "added"),
        Err(e) => {
            let (status, text) = store_problem(e);
            let field = if text.contains("group") {
                "groups"
            } else {
                "username"
            };
            let errors = [field_error(field, text)];
            let r = staff_page(&state, &viewer, &q, None, &errors, &form, "").await;
            with_status(r, status)
        }
    }
}

async fn staff_import(State(state): State<AppState>, session: Session, form: FormData) -> Response {
    if let Err(r) = session
        .post(&state, &form, Role::Admin, "POST /staff/import")
        .await
    {
        return r;
    }
    let viewer = session.viewer();
    let csv = form.get("csv");
    let q = FormData::default();
    let add = FormData::default();
    let refused = |text: String| [field_error("csv", text)];
    if csv.len() > MAX_CSV {
        let errors = refused(format!(
            "The file is larger than {} MiB; import it in parts",
            MAX_CSV >> 20
        ));
        return staff_page(&state, &viewer, &q, None, &errors, &add, "").await;
    }
    if csv.trim().is_empty() {
        let errors = refused("Paste the CSV file, header first".into());
        return staff_page(&state, &viewer, &q, None, &errors, &add, csv).await;
    }
    // The browser sends line ends as CR LF; the file's lines are the same.
    let file = match crate::api::staff::read_staff_file(csv) {
        Ok(f) => f,
        Err(e) => {
            let errors = refused(api_problem(e).1);
            return staff_page(&state, &viewer, &q, None, &errors, &add, csv).await;
        }
    };
    match state
        .store
        .staff_import_rows(&session.caller.name, &file, now_ms())
        .await
    {
        Ok(_) => done("/staff", "imported"),
        Err(ImportError::Rows(rows)) => {
            let message = crate::store::staff::refused_message(&rows);
            let errors = refused(rows_text(&message, &rows));
            staff_page(&state, &viewer, &q, None, &errors, &add, csv).await
        }
        Err(ImportError::Store(e)) => {
            let (status, text) = store_problem(e);
            let errors = refused(text);
            let r = staff_page(&state, &viewer, &q, None, &errors, &add, csv).await;
            with_status(r, status)
        }
    }
}

// ------------------------------------------------------ /staff/{username}

const PERSON_DONE: &[(&str, &str)] = &[
    ("saved", "The changes were saved."),
    (
        "unchanged",
        "Nothing was changed: the details were the same.",
    ),
    ("disabled", "The person was disabled: they cannot sign in."),
    ("enabled", "The person was enabled: they can sign in again."),
    (
        "left",
        "The leaver action is done: disabled, sign-ins and tunnels ended, codes cancelled, \
         personal devices revoked and laptops recalled.",
    ),
];

async fn staff_show(
    State(state): State<AppState>,
    session: Session,
    Path(username): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = session
        .require(&state, Role::Viewer, "GET /staff/{username}")
        .await
    {
        return r;
    }
    let q = query(q);
    let n = notice(&q, PERSON_DONE);
    person_page(&state, &session.viewer(), &username, n, &[], None).await
}

/// The devices a person has: laptops they hold and personal devices.
async fn devices_of(
    state: &AppState,
    username: &str,
) -> Result<Vec<crate::store::laptops::DeviceRow>, crate::store::StoreError> {
    state
        .store
        .device_list(&LaptopFilter {
            holder: Some(username.to_owned()),
            ..LaptopFilter::default()
        })
        .await
}

fn device_rows(devices: &[crate::store::laptops::DeviceRow]) -> Vec<Vec<String>> {
    devices
        .iter()
        .map(|d| {
            let what = match (&d.asset_tag, &d.device_id) {
                (Some(tag), _) => link(&format!("/laptops/{}", url(tag)), tag),
                (None, Some(id)) => esc(id),
                _ => String::new(),
            };
            vec![
                if d.kind == "managed" {
                    "council laptop"
                } else {
                    "personal device"
                }
                .into(),
                what,
                esc(d.model.as_deref().unwrap_or("")),
                esc(&d.status),
                esc(d.allocated_since.as_deref().unwrap_or("")),
                esc(d.recall_since.as_deref().unwrap_or("")),
            ]
        })
        .collect()
}

async fn person_page(
    state: &AppState,
    viewer: &Viewer,
    username: &str,
    notice: Option<Notice>,
    errors: &[FieldError],
    form: Option<&FormData>,
) -> Response {
    let title = "Staff member";
    let person = match state.store.staff_get(username).await {
        Ok(p) => p,
        Err(e) => return problem(viewer, title, "/staff", e),
    };
    let (devices, groups) = match (
        devices_of(state, username).await,
        state.store.group_list().await,
    ) {
        (Ok(d), Ok(g)) => (d, g),
        (Err(e), _) | (_, Err(e)) => return problem(viewer, title, "/staff", e),
    };
    let base = format!("/staff/{}", url(&person.username));
    let mut body = summary(&[
        ("Username", esc(&person.username)),
        ("Name", esc(&person.name)),
        ("Email", esc(&person.email)),
        ("Department", esc(&person.department)),
        ("Priority", person.priority.to_string()),
        ("Role", person.role.to_string()),
        ("Groups", esc(&person.groups.join(", "))),
        (
            "State",
            if person.active { "active" } else { "disabled" }.into(),
        ),
        (
            "Password",
            if person.has_password { "set" } else { "none" }.into(),
        ),
        (
            "Second factor",
            if person.totp { "on" } else { "off" }.into(),
        ),
        ("Added", esc(&person.created_at)),
    ]);
    body.push_str(&table(
        "Devices",
        &[
            "Kind",
            "Asset tag or ID",
            "Model",
            "State",
            "Since",
            "Recalled since",
        ],
        &device_rows(&devices),
    ));
    if viewer.role >= Role::Admin {
        let role = person.role.to_string();
        let priority = person.priority.to_string();
        let current: Vec<&str> = person.groups.iter().map(String::as_str).collect();
        let value = |name: &str, now: &'_ str| -> String {
            form.map_or(now.to_owned(), |f| f.get(name).to_owned())
        };
        let chosen: Vec<&str> = form.map_or(current.clone(), |f| f.all("groups"));
        let (name, email, department) = (
            value("name", &person.name),
            value("email", &person.email),
            value("department", &person.department),
        );
        let (priority, role) = (value("priority", &priority), value("role", &role));
        let _ = write!(
            body,
            "<section class=\"panel\" aria-labelledby=\"change\"><h2 id=\"change\">Change details, priority, role or groups</h2>\
             <form method=\"post\" action=\"{}\" novalidate>{}{}{}{}{}{}{}\
             <button type=\"submit\" class=\"button\">Save changes</button></form></section>",
            esc(&base),
            csrf_field(&viewer.csrf),
            Field::text("name", "Full name", &name).required().render(errors),
            Field::text("email", "Email", &email).kind("email").render(errors),
            Field::text("department", "Department", &department).render(errors),
            select("priority", "Priority", &PRIORITIES, &priority, errors),
            select("role", "Role", &ROLES, &role, errors),
            group_checks(&groups, &chosen, errors),
        );
        let _ = write!(
            body,
            "<section class=\"panel\" aria-labelledby=\"access\"><h2 id=\"access\">Access</h2><div>{} \
             <a class=\"button warn\" href=\"{}/leave\">Leaver action…</a></div></section>",
            if person.active {
                button_form(
                    &viewer.csrf,
                    &format!("{base}/disable"),
                    "Disable",
                    &person.username,
                    true,
                )
            } else {
                button_form(
                    &viewer.csrf,
                    &format!("{base}/enable"),
                    "Enable",
                    &person.username,
                    false,
                )
            },
            esc(&base)
        );
    }
    page(viewer, title, "/staff", notice, errors, body)
}

async fn staff_change(
    State(state): State<AppState>,
    session: Session,
    Path(username): Path<String>,
    form: FormData,
) -> Response {
    if let Err(r) = session
        .post(&state, &form, Role::Admin, "POST /staff/{username}")
        .await
    {
        return r;
    }
    let viewer = session.viewer();
    let mut errors = detail_errors(&form);
    let change = if errors.is_empty() {
        match detail_change(&form) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.push(field_error("name", api_problem(e).1));
                None
            }
        }
    } else {
        None
    };
    let Some(change) = change else {
        return person_page(&state, &viewer, &username, None, &errors, Some(&form)).await;
    };
    if session.caller.name == username {
        let own = state.store.staff_get(&username).await.map(|p| p.role).ok();
        if change.role.is_some() && change.role != own {
            let errors = [field_error(
                "role",
                "You cannot change your own role; ask another admin",
            )];
            return person_page(&state, &viewer, &username, None, &errors, Some(&form)).await;
        }
    }
    let before = state.store.staff_get(&username).await.ok();
    match state
        .store
        .staff_set(&session.caller.name, &username, &change, now_ms())
        .await
    {
        Ok(after) => {
            let same = before.is_some_and(|b| {
                (
                    &b.name,
                    &b.email,
                    &b.department,
                    b.priority,
                    b.role,
                    &b.groups,
                ) == (
                    &after.name,
                    &after.email,
                    &after.department,
                    after.priority,
                    after.role,
                    &after.groups,
                )
            });
            let to = format!("/staff/{}", url(&username));
            done(&to, if same { "unchanged" } else { "saved" })
        }
        Err(crate::store::StoreError::NotFound(m)) if !m.contains("group") => problem(
            &viewer,
            "Staff member",
            "/staff",
            crate::store::StoreError::NotFound(m),
        ),
        Err(e) => {
            let (status, text) = store_problem(e);
            let errors = [field_error("groups", text)];
            let r = person_page(&state, &viewer, &username, None, &errors, Some(&form)).await;
            with_status(r, status)
        }
    }
}

async fn set_active(
    state: AppState,
    session: Session,
    username: String,
    form: FormData,
    active: bool,
) -> Response {
    if let Err(r) = session.check_csrf(form.get("csrf")) {
        return r;
    }
    let what = if active {
        "POST /staff/{username}/enable"
    } else {
        "POST /staff/{username}/disable"
    };
    if let Err(r) = session.require(&state, Role::Admin, what).await {
        return r;
    }
    let viewer = session.viewer();
    if !active && session.caller.name == username {
        let r = person_page(
            &state,
            &viewer,
            &username,
            Some(Notice::Problem("You cannot disable yourself.".into())),
            &[],
            None,
        )
        .await;
        return with_status(r, StatusCode::BAD_REQUEST);
    }
    match state
        .store
        .staff_set_active(&session.caller.name, &username, active, now_ms())
        .await
    {
        Ok(_) => done(
            &format!("/staff/{}", url(&username)),
            if active { "enabled" } else { "disabled" },
        ),
        Err(e) => problem(&viewer, "Staff member", "/staff", e),
    }
}

async fn staff_disable(
    State(state): State<AppState>,
    session: Session,
    Path(username): Path<String>,
    form: FormData,
) -> Response {
    set_active(state, session, username, form, false).await
}

async fn staff_enable(
    State(state): State<AppState>,
    session: Session,
    Path(username): Path<String>,
    form: FormData,
) -> Response {
    set_active(state, session, username, form, true).await
}

async fn leave_confirm(
    State(state): State<AppState>,
    session: Session,
    Path(username): Path<String>,
) -> Response {
    if let Err(r) = session
        .require(&state, Role::Admin, "GET /staff/{username}/leave")
        .await
    {
        return r;
    }
    let viewer = session.viewer();
    let title = "Leaver action";
    let person = match state.store.staff_get(&username).await {
        Ok(p) => p,
        Err(e) => return problem(&viewer, title, "/staff", e),
    };
    let devices = match devices_of(&state, &username).await {
        Ok(d) => d,
        Err(e) => return problem(&viewer, title, "/staff", e),
    };
    let base = format!("/staff/{}", url(&person.username));
    let laptops = devices.iter().filter(|d| d.kind == "managed").count();
    let personal = devices
        .iter()
        .filter(|d| d.kind == "personal" && d.status == "enrolled")
        .count();
    let body =
        format!(
        "<p>This is the leaver action for {} ({}). In one step, recorded as one audit entry:</p>\
         <ul><li>they are disabled and cannot sign in;</li>\
         <li>every sign-in they have ends, and their live tunnels close;</li>\
         <li>their unused enrolment codes are cancelled;</li>\
         <li>their personal devices ({personal}) are revoked;</li>\
         <li>an open laptop request of theirs is cancelled;</li>\
         <li>the council laptops they hold ({laptops}) are recalled.</li></ul>{}\
         <form method=\"post\" action=\"{}/leave\">{}\
         <button type=\"submit\" class=\"button warn\">Mark {} as a leaver</button> \
         <a href=\"{}\">Cancel</a></form>",
        esc(&person.name),
        esc(&person.username),
        table(
            "Devices affected",
            &["Kind", "Asset tag or ID", "Model", "State", "Since", "Recalled since"],
            &device_rows(&devices)
        ),
        esc(&base),
        csrf_field(&viewer.csrf),
        esc(&person.username),
        esc(&base),
    );
    page(&viewer, title, "/staff", None, &[], body)
}

async fn leave(
    State(state): State<AppState>,
    session: Session,
    Path(username): Path<String>,
    form: FormData,
) -> Response {
    if let Err(r) = session
        .post(&state, &form, Role::Admin, "POST /staff/{username}/leave")
        .await
    {
        return r;
    }
    let viewer = session.viewer();
    let title = "Leaver action";
    let username = match Username::parse(&username) {
        Ok(u) => u,
        Err(e) => {
            return problem(
                &viewer,
                title,
                "/staff",
                crate::store::StoreError::NotFound(e.0),
            )
        }
    };
    if session.caller.name == username.as_str() {
        let r = person_page(
            &state,
            &viewer,
            username.as_str(),
            Some(Notice::Problem(
                "You cannot mark yourself as a leaver.".into(),
            )),
            &[],
            None,
        )
        .await;
        return with_status(r, StatusCode::BAD_REQUEST);
    }
    match state
        .store
        .staff_leave(&session.caller.name, &username, now_ms())
        .await
    {
        Ok(_) => done(&format!("/staff/{}", url(username.as_str())), "left"),
        Err(e) => problem(&viewer, title, "/staff", e),
    }
}

// --------------------------------------------------------------- /groups

const GROUPS_DONE: &[(&str, &str)] = &[("added", "The group was added.")];

async fn groups_list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = session.require(&state, Role::Viewer, "GET /groups").await {
        return r;
    }
    let q = query(q);
    let n = notice(&q, GROUPS_DONE);
    groups_page(&state, &session.viewer(), n, &[], &FormData::default()).await
}

async fn groups_page(
    state: &AppState,
    viewer: &Viewer,
    notice: Option<Notice>,
    errors: &[FieldError],
    form: &FormData,
) -> Response {
    let groups = match state.store.group_list().await {
        Ok(g) => g,
        Err(e) => return problem(viewer, "Groups", "/groups", e),
    };
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                esc(&g.name),
                esc(&g.description),
                g.members.to_string(),
                g.apps.to_string(),
                esc(&g.idp_groups.join(", ")),
            ]
        })
        .collect();
    let mut body = table(
        "Groups",
        &["Name", "Description", "Members", "Apps", "Provider groups"],
        &rows,
    );
    if viewer.role >= Role::Admin {
        let _ = write!(
            body,
            "<section class=\"panel\" aria-labelledby=\"add-group\"><h2 id=\"add-group\">Add a group</h2>\
             <form method=\"post\" action=\"/groups\" novalidate>{}{}{}\
             <button type=\"submit\" class=\"button\">Add group</button></form></section>",
            csrf_field(&viewer.csrf),
            Field::text("name", "Name", form.get("name"))
                .hint("Lower-case letters, digits and dashes, e.g. housing")
                .required()
                .render(errors),
            Field::text("description", "Description (optional)", form.get("description"))
                .render(errors),
        );
    }
    page(viewer, "Groups", "/groups", notice, errors, body)
}

async fn group_add(State(state): State<AppState>, session: Session, form: FormData) -> Response {
    if let Err(r) = session.check_csrf(form.get("csrf")) {
        return r;
    }
    if let Err(r) = session.require(&state, Role::Admin, "POST /groups").await {
        return r;
    }
    let viewer = session.viewer();
    let mut errors = Vec::new();
    let name = GroupName::parse(form.get("name"))
        .map_err(|e| errors.push(field_error("name", e.0)))
        .ok();
    let description = parse_text("description", form.get("description"), 200, false)
        .map_err(|e| errors.push(field_error("description", e.0)))
        .ok();
    let (Some(name), Some(description)) = (name, description) else {
        return groups_page(&state, &viewer, None, &errors, &form).await;
    };
    match state
        .store
        .group_add_mapped(&session.caller.name, &name, &description, &[], now_ms())
        .await
    {
        Ok(_) => done("/groups", "added"),
        Err(e) => {
            let (status, text) = store_problem(e);
            let errors = [field_error("name", text)];
            let r = groups_page(&state, &viewer, None, &errors, &form).await;
            with_status(r, status)
        }
    }
}

// ----------------------------------------------------------------- /apps

async fn apps_list(State(state): State<AppState>, session: Session) -> Response {
    if let Err(r) = session.require(&state, Role::Viewer, "GET /apps").await {
        return r;
    }
    let viewer = session.viewer();
    let apps = match state.store.app_list().await {
        Ok(a) => a,
        Err(e) => return problem(&viewer, "Apps", "/apps", e),
    };
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|a| {
            vec![
                esc(&a.name),
                esc(&a.target),
                esc(&a.hosts.join(", ")),
                esc(&a.protocol),
                esc(&a.allow_groups.join(", ")),
                esc(&a.device_kind),
            ]
        })
        .collect();
    let body = format!(
        "<p>Who may reach which internal app. Apps are changed with <code>lanyard apps</code>.</p>{}",
        table(
            "Apps",
            &[
                "Name",
                "Target",
                "Host names",
                "Protocol",
                "Allowed groups",
                "Device kind"
            ],
            &rows
        )
    );
    page(&viewer, "Apps", "/apps", None, &[], body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> FormData {
        FormData(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn each_bad_detail_is_named_by_its_field() {
        let f = form(&[
            ("name", ""),
            ("email", "not-an-email"),
            ("department", "Housing"),
            ("priority", "7"),
            ("role", "boss"),
            ("groups", "hr"),
            ("groups", "Bad Group!"),
        ]);
        let errors = detail_errors(&f);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "email", "role", "groups", "priority"]);
        let good = form(&[
            ("name", "Jo Smith"),
            ("email", "jo@council.example"),
            ("department", ""),
            ("priority", "2"),
            ("role", "ict"),
            ("groups", "hr"),
        ]);
        assert!(detail_errors(&good).is_empty());
        let change = detail_change(&good).unwrap();
        assert_eq!(change.role, Some(Role::Ict));
        assert_eq!(change.priority.map(|p| p.get()), Some(2));
    }

    #[test]
    fn search_is_literal_and_ignores_case() {
        let s = Staff {
            username: "j.smith".into(),
            name: "Jo Smith".into(),
            email: String::new(),
            department: "Housing_100%".into(),
            priority: 3,
            groups: vec![],
            admin: false,
            role: Role::Staff,
            active: true,
            has_password: false,
            totp: false,
            created_at: String::new(),
        };
        assert!(matches(&s, "SMITH"));
        assert!(matches(&s, "g_100%"));
        assert!(!matches(&s, "h%"));
        assert!(!matches(&s, "j_smith"));
    }

    #[test]
    fn a_refused_file_names_every_row_by_line() {
        let rows = vec![
            RowProblem {
                line: 3,
                problem: "bad priority".into(),
            },
            RowProblem {
                line: 5,
                problem: "no group hx".into(),
            },
        ];
        let t = rows_text("import refused", &rows);
        assert_eq!(
            t,
            "import refused\nline 3: bad priority\nline 5: no group hx"
        );
    }
}
