//! `/laptops`: the inventory with filters and literal search, a page per
//! laptop (holder, agent, allocations, history) and its actions: assign,
//! return, mark, revoke. Reading needs `viewer`; changing needs `ict`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use super::html::{
    csrf_field, esc, link, select, summary, table, textarea, url, Field, FieldError, Notice,
};
use super::session::Session;
use super::{done, page, problem, FormData};
use crate::clock::now_ms;
use crate::model::{parse_text, AssetTag, LaptopStatus, Role, Username};
use crate::state::AppState;
use crate::store::laptops::{DeviceRow, LaptopFilter};

/// Rows on one page of the list.
pub const PAGE_SIZE: usize = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/laptops", get(list).post(add))
        .route("/laptops/import", post(import))
        .route("/laptops/{tag}", get(show))
        .route("/laptops/{tag}/assign", post(assign))
        .route("/laptops/{tag}/return", post(give_back))
        .route("/laptops/{tag}/mark", post(mark))
        .route("/laptops/{tag}/revoke", post(revoke))
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<usize>,
    #[serde(default)]
    done: Option<String>,
}

const STATUSES: [(&str, &str); 6] = [
    ("", "Any status"),
    ("in-stock", "In stock"),
    ("allocated", "Allocated"),
    ("in-repair", "In repair"),
    ("lost", "Lost"),
    ("retired", "Retired"),
];

fn notice(done: Option<&str>) -> Option<Notice> {
    let text = match done? {
        "added" => "Laptop added.",
        "imported" => "The file was imported: every row was written.",
        "assigned" => "Laptop assigned.",
        "returned" => "Laptop returned.",
        "marked" => "Laptop marked.",
        "revoked" => "The laptop's agent was revoked: its sessions have ended.",
        _ => return None,
    };
    Some(Notice::Done(text.into()))
}

fn device_cells(d: &DeviceRow) -> Vec<String> {
    let tag = d.asset_tag.as_deref().unwrap_or("");
    let name = if tag.is_empty() {
        esc(d.device_id.as_deref().unwrap_or("personal device"))
    } else {
        link(&format!("/laptops/{}", url(tag)), tag)
    };
    let mut status = esc(&d.status);
    if d.recall_since.is_some() {
        status.push_str(" (recall)");
    }
    vec![
        name,
        esc(d.kind),
        esc(d.model.as_deref().unwrap_or("")),
        status,
        esc(d.holder.as_deref().unwrap_or("")),
        esc(d.department.as_deref().unwrap_or("")),
    ]
}

fn filter_of(q: &ListQuery) -> Result<LaptopFilter, FieldError> {
    let status = match q.status.trim() {
        "" => None,
        s => Some(LaptopStatus::parse(s).map_err(|e| FieldError {
            field: "status".into(),
            message: e.0,
        })?),
    };
    let kind = match q.kind.trim() {
        "" => None,
        k @ ("managed" | "personal") => Some(k.to_owned()),
        _ => {
            return Err(FieldError {
                field: "kind".into(),
                message: "Choose council laptops or personal devices".into(),
            })
        }
    };
    let search = q.q.trim();
    if search.chars().count() > 100 {
        return Err(FieldError {
            field: "q".into(),
            message: "Search text must be 100 characters or fewer".into(),
        });
    }
    Ok(LaptopFilter {
        status,
        kind,
        search: (!search.is_empty()).then(|| search.to_owned()),
        ..LaptopFilter::default()
    })
}

fn add_form(csrf: &str, errors: &[FieldError], form: &FormData) -> String {
    format!(
        "<section class=\"panel\" aria-labelledby=\"add\"><h2 id=\"add\">Add a laptop</h2>\
         <form method=\"post\" action=\"/laptops\" novalidate>{}{}{}{}\
         <button type=\"submit\" class=\"button\">Add laptop</button></form></section>",
        csrf_field(csrf),
        Field::text("asset_tag", "Asset tag", form.get("asset_tag"))
            .hint("For example LT-00421")
            .required()
            .render(errors),
        Field::text("serial", "Serial number", form.get("serial"))
            .required()
            .render(errors),
        Field::text("model", "Model", form.get("model"))
            .required()
            .render(errors),
    )
}

async fn render_list(
    state: &AppState,
    session: &Session,
    q: &ListQuery,
    errors: &[FieldError],
    form: &FormData,
) -> Response {
    let viewer = session.viewer();
    let mut errors = errors.to_vec();
    let filter = match filter_of(q) {
        Ok(f) => f,
        Err(e) => {
            errors.push(e);
            LaptopFilter::default()
        }
    };
    let page_no = q.page.unwrap_or(1).max(1);
    let (rows, total) = match state
        .store
        .device_page(&filter, (page_no - 1).saturating_mul(PAGE_SIZE), PAGE_SIZE)
        .await
    {
        Ok(r) => r,
        Err(e) => return problem(&viewer, "Laptops", "/laptops", e),
    };
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    // Past the last page (the list shrank, or a typed address): the last.
    let (rows, page_no) = if page_no > pages {
        match state
            .store
            .device_page(&filter, (pages - 1) * PAGE_SIZE, PAGE_SIZE)
            .await
        {
            Ok((r, _)) => (r, pages),
            Err(e) => return problem(&viewer, "Laptops", "/laptops", e),
        }
    } else {
        (rows, page_no)
    };
    let shown: Vec<Vec<String>> = rows.iter().map(device_cells).collect();
    let query = format!(
        "status={}&kind={}&q={}",
        url(q.status.trim()),
        url(q.kind.trim()),
        url(q.q.trim())
    );
    let mut pager = String::from("<nav class=\"pager\" aria-label=\"Pages\">");
    if page_no > 1 {
        pager.push_str(&link(
            &format!("/laptops?{query}&page={}", page_no - 1),
            "Previous page",
        ));
    }
    pager.push_str(&format!("<span>Page {page_no} of {pages}</span>"));
    if page_no < pages {
        pager.push_str(&link(
            &format!("/laptops?{query}&page={}", page_no + 1),
            "Next page",
        ));
    }
    pager.push_str("</nav>");
    let mut body = format!(
        "<form method=\"get\" action=\"/laptops\" class=\"filters\" role=\"search\" aria-label=\"Filter laptops\">{}{}{}\
         <div class=\"field\"><button type=\"submit\" class=\"button secondary\">Filter</button></div></form>\
         <p>{total} device{} found.</p>{}{}",
        Field::text("q", "Search asset tag, serial or model", q.q.trim())
            .kind("search")
            .render(&errors),
        select("status", "Status", &STATUSES, q.status.trim(), &errors),
        select(
            "kind",
            "Kind",
            &[
                ("", "Council laptops and personal devices"),
                ("managed", "Council laptops"),
                ("personal", "Personal devices"),
            ],
            q.kind.trim(),
            &errors
        ),
        if total == 1 { "" } else { "s" },
        table(
            "Devices",
            &["Device", "Kind", "Model", "Status", "Holder", "Department"],
            &shown
        ),
        pager,
    );
    if session.caller.role >= Role::Ict {
        body.push_str(&add_form(&session.csrf, &errors, form));
        body.push_str(&format!(
            "<section class=\"panel\" aria-labelledby=\"import\"><h2 id=\"import\">Import laptops</h2>\
             <form method=\"post\" action=\"/laptops/import\" novalidate>{}{}\
             <button type=\"submit\" class=\"button\">Import laptops</button></form></section>",
            csrf_field(&session.csrf),
            textarea(
                "csv",
                "CSV file",
                "Paste the file: the header asset_tag,serial,model,status (notes, purchase_date, \
                 warranty_end optional), one laptop a line. The whole file is checked first; if any \
                 row is bad nothing is written and every problem is listed by line.",
                form.get("csv"),
                &errors
            ),
        ));
    }
    page(
        &viewer,
        "Laptops",
        "/laptops",
        notice(q.done.as_deref()),
        &errors,
        body,
    )
}

async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(r) = session.require(&state, Role::Viewer, "GET /laptops").await {
        return r;
    }
    render_list(&state, &session, &q, &[], &FormData::default()).await
}

async fn add(State(state): State<AppState>, session: Session, form: FormData) -> Response {
    if let Err(r) = session.check_csrf(form.get("csrf")) {
        return r;
    }
    if let Err(r) = session.require(&state, Role::Ict, "POST /laptops").await {
        return r;
    }
    let row = crate::api::laptops::parse_laptop(
        0,
        form.get("asset_tag"),
        form.get("serial"),
        form.get("model"),
        "",
        "",
        "",
        "",
    );
    let errors: Vec<FieldError> = row
        .problems
        .iter()
        .map(|p| FieldError {
            field: field_of(p),
            message: p.clone(),
        })
        .collect();
    let Some(new) = row.laptop.filter(|_| errors.is_empty()) else {
        return render_list(&state, &session, &ListQuery::default(), &errors, &form).await;
    };
    match state
        .store
        .laptop_add(&session.caller.name, &new, now_ms())
        .await
    {
        Ok(_) => done(
            &format!("/laptops/{}", url(new.asset_tag.as_str())),
            "added",
        ),
        Err(e) => {
            let errors = [FieldError {
                field: "asset_tag".into(),
                message: super::store_problem(e).1,
            }];
            render_list(&state, &session, &ListQuery::default(), &errors, &form).await
        }
    }
}

async fn import(State(state): State<AppState>, session: Session, form: FormData) -> Response {
    if let Err(r) = session
        .post(&state, &form, Role::Ict, "POST /laptops/import")
        .await
    {
        return r;
    }
    let csv = form.get("csv");
    let message = if csv.trim().is_empty() {
        "Paste a CSV file with its header line".to_owned()
    } else {
        match crate::api::laptops::import_file(&state, &session.caller.name, csv).await {
            Ok(_) => return done("/laptops", "imported"),
            Err(crate::api::error::ApiError::Rows { message, rows }) => {
                let mut m = message;
                for r in rows {
                    m.push_str(&format!("\nline {}: {}", r.line, r.problem));
                }
                m
            }
            Err(e) => e.message().to_owned(),
        }
    };
    let errors = [FieldError {
        field: "csv".into(),
        message,
    }];
    render_list(&state, &session, &ListQuery::default(), &errors, &form).await
}

/// Which field a parse problem is about, from its wording.
fn field_of(problem: &str) -> String {
    for f in ["serial", "model"] {
        if problem.contains(f) {
            return f.into();
        }
    }
    "asset_tag".into()
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct ShowQuery {
    #[serde(default)]
    done: Option<String>,
}

async fn render_show(
    state: &AppState,
    session: &Session,
    tag: &str,
    notice_now: Option<Notice>,
    errors: &[FieldError],
    form: &FormData,
) -> Response {
    let viewer = session.viewer();
    let title = format!("Laptop {tag}");
    let detail = match state.store.laptop_detail(tag).await {
        Ok(d) => d,
        Err(e) => return problem(&viewer, &title, "/laptops", e),
    };
    let history = match state.store.laptop_history(tag).await {
        Ok(h) => h,
        Err(e) => return problem(&viewer, &title, "/laptops", e),
    };
    let l = &detail.laptop;
    let opt = |v: &Option<String>| esc(v.as_deref().unwrap_or("—"));
    let mut fields = vec![
        ("Status", esc(&l.status)),
        ("Serial", opt(&l.serial)),
        ("Model", opt(&l.model)),
        (
            "Holder",
            match (&l.holder, &l.holder_name) {
                (Some(u), Some(n)) => format!("{} ({})", esc(n), esc(u)),
                (Some(u), None) => esc(u),
                _ => "nobody".into(),
            },
        ),
        ("Allocated since", opt(&l.allocated_since)),
        ("Pool group", opt(&l.pool)),
        (
            "Notes",
            esc(if l.notes.is_empty() { "—" } else { &l.notes }),
        ),
    ];
    if let Some(since) = &l.recall_since {
        fields.push(("Recall", format!("to come back since {}", esc(since))));
    }
    let agents: Vec<Vec<String>> = detail
        .agents
        .iter()
        .map(|a| {
            vec![
                esc(&a.agent.fingerprint.chars().take(16).collect::<String>()),
                esc(&a.enrolled),
                esc(a.last_seen.as_deref().unwrap_or("never")),
                esc(a.agent.os.as_deref().unwrap_or("")),
                esc(&a.cert_expires),
                esc(a.revoked.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    let allocations: Vec<Vec<String>> = detail
        .allocations
        .iter()
        .map(|a| {
            vec![
                esc(&a.allocation.username),
                esc(&a.since),
                esc(a.returned.as_deref().unwrap_or("")),
                esc(a.allocation.return_condition.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    let events: Vec<Vec<String>> = history
        .iter()
        .rev()
        .map(|r| vec![esc(&r.at()), esc(&r.actor), esc(&r.action), esc(&r.detail)])
        .collect();
    let mut body = summary(&fields);
    body.push_str(&format!(
        "<h2>Agent</h2>{}<h2>Allocations</h2>{}<h2>History</h2>{}",
        table(
            "Agents enrolled on this laptop",
            &[
                "Device id",
                "Enrolled",
                "Last seen",
                "OS",
                "Certificate expires",
                "Revoked"
            ],
            &agents
        ),
        table(
            "Allocations, newest first",
            &["Holder", "Since", "Returned", "Condition"],
            &allocations
        ),
        table(
            "History, newest first",
            &["When", "Who", "What", "Detail"],
            &events
        ),
    ));
    if session.caller.role >= Role::Ict {
        let t = url(tag);
        let csrf = &session.csrf;
        let status_choices = &STATUSES[1..];
        body.push_str(&format!(
            "<h2>Actions</h2>\
             <section class=\"panel\" aria-labelledby=\"assign\"><h3 id=\"assign\">Assign</h3>\
             <form method=\"post\" action=\"/laptops/{t}/assign\" novalidate>{}{}{}\
             <button type=\"submit\" class=\"button\">Assign laptop</button></form></section>\
             <section class=\"panel\" aria-labelledby=\"return\"><h3 id=\"return\">Return</h3>\
             <form method=\"post\" action=\"/laptops/{t}/return\" novalidate>{}{}{}\
             <button type=\"submit\" class=\"button secondary\">Record return</button></form></section>\
             <section class=\"panel\" aria-labelledby=\"mark\"><h3 id=\"mark\">Mark</h3>\
             <form method=\"post\" action=\"/laptops/{t}/mark\" novalidate>{}{}{}\
             <button type=\"submit\" class=\"button secondary\">Mark laptop</button></form></section>\
             <section class=\"panel\" aria-labelledby=\"revoke\"><h3 id=\"revoke\">Revoke its agent</h3>\
             <form method=\"post\" action=\"/laptops/{t}/revoke\" novalidate>{}{}\
             <button type=\"submit\" class=\"button warn\">Revoke agent</button></form></section>",
            csrf_field(csrf),
            Field::text("to", "Username to assign to", form.get("to"))
                .render(errors),
            Field::text("assign_note", "Note (optional)", form.get("assign_note")).render(errors),
            csrf_field(csrf),
            select(
                "return_status",
                "Condition it came back in",
                &[
                    ("in-stock", "In stock"),
                    ("in-repair", "In repair"),
                    ("lost", "Lost"),
                    ("retired", "Retired")
                ],
                form.get("return_status"),
                errors
            ),
            Field::text("return_note", "Note (optional)", form.get("return_note")).render(errors),
            csrf_field(csrf),
            select(
                "mark_status",
                "New status",
                status_choices,
                form.get("mark_status"),
                errors
            ),
            Field::text("mark_note", "Note (optional)", form.get("mark_note"))
                .hint("Lost or retired also revokes the laptop's agent")
                .render(errors),
            csrf_field(csrf),
            Field::text("reason", "Reason", form.get("reason")).render(errors),
        ));
    }
    page(&viewer, &title, "/laptops", notice_now, errors, body)
}

async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(tag): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    if let Err(r) = session
        .require(&state, Role::Viewer, "GET /laptops/{tag}")
        .await
    {
        return r;
    }
    render_show(
        &state,
        &session,
        &tag,
        notice(q.done.as_deref()),
        &[],
        &FormData::default(),
    )
    .await
}

/// What every laptop action does first: the CSRF token, the role, the tag.
async fn action_guard(
    state: &AppState,
    session: &Session,
    form: &FormData,
    tag: &str,
    what: &str,
) -> Result<AssetTag, Response> {
    session.check_csrf(form.get("csrf"))?;
    session.require(state, Role::Ict, what).await?;
    AssetTag::parse(tag).map_err(|e| {
        let mut r = page(
            &session.viewer(),
            "Laptop",
            "/laptops",
            Some(Notice::Problem(e.0)),
            &[],
            String::new(),
        );
        *r.status_mut() = StatusCode::BAD_REQUEST;
        r
    })
}

/// The laptop's page again with `errors`, or the store's refusal beside
/// `field`.
async fn refused(
    state: &AppState,
    session: &Session,
    tag: &str,
    field: &str,
    message: String,
    form: &FormData,
) -> Response {
    let errors = [FieldError {
        field: field.into(),
        message,
    }];
    render_show(state, session, tag, None, &errors, form).await
}

async fn assign(
    State(state): State<AppState>,
    session: Session,
    Path(tag): Path<String>,
    form: FormData,
) -> Response {
    let tag = match action_guard(&state, &session, &form, &tag, "POST /laptops/{tag}/assign").await
    {
        Ok(t) => t,
        Err(r) => return r,
    };
    let to = match Username::parse(form.get("to").trim()) {
        Ok(u) => u,
        Err(e) => return refused(&state, &session, tag.as_str(), "to", e.0, &form).await,
    };
    let note = match parse_text("note", form.get("assign_note"), 1000, false) {
        Ok(n) => n,
        Err(e) => return refused(&state, &session, tag.as_str(), "assign_note", e.0, &form).await,
    };
    match state
        .store
        .laptop_assign(&session.caller.name, &tag, &to, &note, now_ms())
        .await
    {
        Ok(_) => done(&format!("/laptops/{}", url(tag.as_str())), "assigned"),
        Err(e) => {
            let (_, m) = super::store_problem(e);
            refused(&state, &session, tag.as_str(), "to", m, &form).await
        }
    }
}

async fn give_back(
    State(state): State<AppState>,
    session: Session,
    Path(tag): Path<String>,
    form: FormData,
) -> Response {
    let tag = match action_guard(&state, &session, &form, &tag, "POST /laptops/{tag}/return").await
    {
        Ok(t) => t,
        Err(r) => return r,
    };
    let status = match LaptopStatus::parse(form.get("return_status")) {
        Ok(s) => s,
        Err(e) => {
            return refused(&state, &session, tag.as_str(), "return_status", e.0, &form).await
        }
    };
    let note = match parse_text("note", form.get("return_note"), 1000, false) {
        Ok(n) => n,
        Err(e) => return refused(&state, &session, tag.as_str(), "return_note", e.0, &form).await,
    };
    match state
        .store
        .laptop_return(&session.caller.name, &tag, status, &note, now_ms())
        .await
    {
        Ok(_) => done(&format!("/laptops/{}", url(tag.as_str())), "returned"),
        Err(e) => {
            let (_, m) = super::store_problem(e);
            refused(&state, &session, tag.as_str(), "return_status", m, &form).await
        }
    }
}

async fn mark(
    State(state): State<AppState>,
    session: Session,
    Path(tag): Path<String>,
    form: FormData,
) -> Response {
    let tag = match action_guard(&state, &session, &form, &tag, "POST /laptops/{tag}/mark").await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let status = match LaptopStatus::parse(form.get("mark_status")) {
        Ok(s) => s,
        Err(e) => return refused(&state, &session, tag.as_str(), "mark_status", e.0, &form).await,
    };
    let note = match parse_text("note", form.get("mark_note"), 1000, false) {
        Ok(n) => n,
        Err(e) => return refused(&state, &session, tag.as_str(), "mark_note", e.0, &form).await,
    };
    match state
        .store
        .laptop_mark(&session.caller.name, &tag, status, &note, now_ms())
        .await
    {
        Ok(_) => done(&format!("/laptops/{}", url(tag.as_str())), "marked"),
        Err(e) => {
            let (_, m) = super::store_problem(e);
            refused(&state, &session, tag.as_str(), "mark_status", m, &form).await
        }
    }
}

async fn revoke(
    State(state): State<AppState>,
    session: Session,
    Path(tag): Path<String>,
    form: FormData,
) -> Response {
    let tag = match action_guard(&state, &session, &form, &tag, "POST /laptops/{tag}/revoke").await
    {
        Ok(t) => t,
        Err(r) => return r,
    };
    let reason = match parse_text("reason", form.get("reason"), 1000, false) {
        Ok(n) => n,
        Err(e) => return refused(&state, &session, tag.as_str(), "reason", e.0, &form).await,
    };
    match state
        .store
        .laptop_revoke(&session.caller.name, &tag, &reason, now_ms())
        .await
    {
        Ok(_) => done(&format!("/laptops/{}", url(tag.as_str())), "revoked"),
        Err(e) => {
            let (_, m) = super::store_problem(e);
            refused(&state, &session, tag.as_str(), "reason", m, &form).await
        }
    }
}
