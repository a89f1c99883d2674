//! `/requests`: the laptop request queue in priority order with each
//! request's place; add and cancel; fulfil after a preview of who gets
//! which laptop (committed only if the plan is still the one shown).
//! Reading needs `viewer`; changing needs `ict`.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use super::html::{button_form, csrf_field, esc, link, table, url, Field, FieldError, Notice};
use super::session::Session;
use super::{done, page, problem, FormData};
use crate::clock::now_ms;
use crate::model::{parse_text, Role, Username};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/requests", get(list).post(add))
        .route("/requests/fulfil", get(preview).post(fulfil))
        .route("/requests/{username}/cancel", post(cancel))
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    n: Option<usize>,
}

fn notice(q: &ListQuery) -> Option<Notice> {
    let text = match q.done.as_deref()? {
        "added" => "Request added to the queue.".to_owned(),
        "cancelled" => "Request cancelled.".to_owned(),
        "fulfilled" => match q.n.unwrap_or(0) {
            0 => "No laptops were allocated.".to_owned(),
            1 => "1 laptop allocated.".to_owned(),
            n => format!("{n} laptops allocated."),
        },
        _ => return None,
    };
    Some(Notice::Done(text))
}

async fn render(
    state: &AppState,
    session: &Session,
    notice_now: Option<Notice>,
    errors: &[FieldError],
    form: &FormData,
) -> Response {
    let viewer = session.viewer();
    let open = match state.store.request_list(true).await {
        Ok(r) => r,
        Err(e) => return problem(&viewer, "Laptop requests", "/requests", e),
    };
    let ict = session.caller.role >= Role::Ict;
    let rows: Vec<Vec<String>> = open
        .iter()
        .map(|r| {
            let mut row = vec![
                r.place
                    .map_or("passed over (disabled)".into(), |p| p.to_string()),
                format!("{} ({})", esc(&r.row.name), esc(&r.row.username)),
                esc(&r.row.department),
                r.row.priority.to_string(),
                esc(&r.row.reason),
                esc(&r.requested),
            ];
            if ict {
                row.push(button_form(
                    &session.csrf,
                    &format!("/requests/{}/cancel", url(&r.row.username)),
                    "Cancel",
                    &format!("{}'s request", r.row.username),
                    false,
                ));
            }
            row
        })
        .collect();
    let mut headers = vec![
        "Place",
        "Who",
        "Department",
        "Priority",
        "Reason",
        "Requested",
    ];
    if ict {
        headers.push("Action");
    }
    let mut body = format!(
        "<p>Priority 1 first, then 2, then 3; oldest first within a tier. A person's place \
         follows their priority when it changes.</p>{}",
        table("Open requests in queue order", &headers, &rows)
    );
    if ict {
        body.push_str(&format!(
            "<p>{}</p>\
             <section class=\"panel\" aria-labelledby=\"add\"><h2 id=\"add\">Add a request</h2>\
             <form method=\"post\" action=\"/requests\" novalidate>{}{}{}\
             <button type=\"submit\" class=\"button\">Add request</button></form></section>",
            link(
                "/requests/fulfil",
                "Fulfil the queue from stock (shows who gets what first)"
            ),
            csrf_field(&session.csrf),
            Field::text("username", "Username", form.get("username"))
                .required()
                .render(errors),
            Field::text("reason", "Reason (optional)", form.get("reason")).render(errors),
        ));
    }
    page(
        &viewer,
        "Laptop requests",
        "/requests",
        notice_now,
        errors,
        body,
    )
}

async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(r) = session.require(&state, Role::Viewer, "GET /requests").await {
        return r;
    }
    render(&state, &session, notice(&q), &[], &FormData::default()).await
}

async fn add(State(state): State<AppState>, session: Session, form: FormData) -> Response {
    if let Err(r) = session.check_csrf(form.get("csrf")) {
        return r;
    }
    if let Err(r) = session.require(&state, Role::Ict, "POST /requests").await {
        return r;
    }
    let field = |f: &str, m: String| {
        vec![FieldError {
            field: f.into(),
            message: m,
        }]
    };
    let username = match Username::parse(form.get("username").trim()) {
        Ok(u) => u,
        Err(e) => return render(&state, &session, None, &field("username", e.0), &form).await,
    };
    let reason = match parse_text("reason", form.get("reason"), 500, false) {
        Ok(r) => r,
        Err(e) => return render(&state, &session, None, &field("reason", e.0), &form).await,
    };
    match state
        .store
        .request_add(&session.caller.name, &username, &reason, now_ms())
        .await
    {
        Ok(_) => done("/requests", "added"),
        Err(e) => {
            let (_, m) = super::store_problem(e);
            render(&state, &session, None, &field("username", m), &form).await
        }
    }
}

async fn cancel(
    State(state): State<AppState>,
    session: Session,
    Path(username): Path<String>,
    form: FormData,
) -> Response {
    if let Err(r) = session
        .post(&state, &form, Role::Ict, "POST /requests/{username}/cancel")
        .await
    {
        return r;
    }
    match state
        .store
        .request_cancel(&session.caller.name, &username, now_ms())
        .await
    {
        Ok(()) => done("/requests", "cancelled"),
        Err(e) => problem(&session.viewer(), "Laptop requests", "/requests", e),
    }
}

/// Who would get which laptop; a button commits exactly that.
async fn preview(State(state): State<AppState>, session: Session) -> Response {
    if let Err(r) = session
        .require(&state, Role::Ict, "GET /requests/fulfil")
        .await
    {
        return r;
    }
    render_preview(&state, &session, None).await
}

async fn render_preview(
    state: &AppState,
    session: &Session,
    notice_now: Option<Notice>,
) -> Response {
    let viewer = session.viewer();
    let (report, digest) = match state.store.requests_fulfil_preview(None).await {
        Ok(p) => p,
        Err(e) => return problem(&viewer, "Fulfil requests", "/requests", e),
    };
    let rows: Vec<Vec<String>> = report
        .allocated
        .iter()
        .map(|a| {
            vec![
                esc(&a.username),
                a.priority.to_string(),
                link(&format!("/laptops/{}", url(&a.asset_tag)), &a.asset_tag),
            ]
        })
        .collect();
    let mut body = format!(
        "<p>Nothing has been allocated yet. If these laptops are handed out, {} request{} stay \
         queued and {} laptop{} stay in stock.{}</p>{}",
        report.still_queued,
        if report.still_queued == 1 { "" } else { "s" },
        report.in_stock,
        if report.in_stock == 1 { "" } else { "s" },
        if report.skipped_disabled.is_empty() {
            String::new()
        } else {
            format!(
                " Passed over because they are disabled: {}.",
                esc(&report.skipped_disabled.join(", "))
            )
        },
        table(
            "Who gets which laptop",
            &["Who", "Priority", "Laptop"],
            &rows
        ),
    );
    if report.allocated.is_empty() {
        body.push_str(&format!(
            "<p>{}</p>",
            link("/requests", "Back to the queue")
        ));
    } else {
        body.push_str(&format!(
            "<form method=\"post\" action=\"/requests/fulfil\">{}\
             <input type=\"hidden\" name=\"plan\" value=\"{}\">\
             <button type=\"submit\" class=\"button\">Allocate these {} laptop{}</button> {}</form>",
            csrf_field(&session.csrf),
            esc(&digest),
            report.allocated.len(),
            if report.allocated.len() == 1 { "" } else { "s" },
            link("/requests", "Cancel"),
        ));
    }
    page(
        &viewer,
        "Fulfil requests",
        "/requests",
        notice_now,
        &[],
        body,
    )
}

async fn fulfil(State(state): State<AppState>, session: Session, form: FormData) -> Response {
    if let Err(r) = session
        .post(&state, &form, Role::Ict, "POST /requests/fulfil")
        .await
    {
        return r;
    }
    let plan = form.get("plan");
    if plan.is_empty() || plan.len() > 64 {
        return render_preview(
            &state,
            &session,
            Some(Notice::Problem(
                "Allocate from the preview below: it shows who gets what first.".into(),
            )),
        )
        .await;
    }
    match state
        .store
        .requests_fulfil_as_previewed(&session.caller.name, None, Some(plan), now_ms())
        .await
    {
        Ok(report) => done(
            &format!("/requests?n={}", report.allocated.len()),
            "fulfilled",
        ),
        Err(crate::store::StoreError::Conflict(m)) => {
            let mut r = render_preview(&state, &session, Some(Notice::Problem(m))).await;
            *r.status_mut() = axum::http::StatusCode::CONFLICT;
            r
        }
        Err(e) => problem(&session.viewer(), "Fulfil requests", "/requests", e),
    }
}
