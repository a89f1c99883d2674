//! Operations: `GET /sessions` (every node's live sessions; kill),
//! `GET /enrolment` (codes: list, create, cancel), `GET /audit` (the log,
//! newest first, filtered and paged) and `GET /audit/verify`. Viewers
//! read; sessions and codes are changed by ICT and admins.

use std::fmt::Write;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use super::html::{
    button_form, csrf_field, esc, link, select, summary, table, url, Field, FieldError, Notice,
    Viewer,
};
use super::people::{api_problem, field_error, notice, query, with_status};
use super::session::Session;
use super::{done, page, problem, store_problem, FormData};
use crate::clock::now_ms;
use crate::model::{AssetTag, Role, Username};
use crate::state::AppState;
use crate::store::audit::AuditFilter;
use crate::store::enrol::EnrolFor;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sessions", get(sessions_list))
        .route("/sessions/{id}/kill", post(session_kill))
        .route("/enrolment", get(codes_list).post(code_create))
        .route("/enrolment/{id}/cancel", post(code_cancel))
        .route("/audit", get(audit_list))
        .route("/audit/verify", get(audit_verify))
}

// ------------------------------------------------------------- /sessions

const SESSIONS_DONE: &[(&str, &str)] = &[(
    "killed",
    "The session was ended: its tunnels closed and its agent must sign in again.",
)];

async fn sessions_list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = session.require(&state, Role::Viewer, "GET /sessions").await {
        return r;
    }
    let q = query(q);
    let n = notice(&q, SESSIONS_DONE);
    sessions_page(&state, &session.viewer(), n).await
}

fn figure(v: Option<u64>) -> String {
    v.map_or_else(|| "–".into(), |v| v.to_string())
}

async fn sessions_page(state: &AppState, viewer: &Viewer, notice: Option<Notice>) -> Response {
    let all = match crate::api::sessions::live_sessions(state).await {
        Ok(a) => a,
        Err(e) => return problem(viewer, "Sessions", "/sessions", e),
    };
    let can_kill = viewer.role >= Role::Ict;
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|s| {
            let mut row = vec![
                esc(&s.id),
                link(&format!("/staff/{}", url(&s.username)), &s.username),
                esc(&s.device),
                esc(s.kind),
                esc(&s.node),
                esc(&s.remote),
                esc(&s.since),
                figure(s.open_streams),
                figure(s.bytes_up),
                figure(s.bytes_down),
            ];
            if can_kill {
                row.push(button_form(
                    &viewer.csrf,
                    &format!("/sessions/{}/kill", url(&s.id)),
                    "Kill",
                    &format!("session {} of {}", s.id, s.username),
                    true,
                ));
            }
            row
        })
        .collect();
    let mut headers = vec![
        "Session",
        "Person",
        "Device",
        "Kind",
        "Node",
        "From",
        "Since",
        "Open streams",
        "Bytes up",
        "Bytes down",
    ];
    if can_kill {
        headers.push("Action");
    }
    let body = format!(
        "<p>Every agent connected to any node. Killing a session ends the sign-in behind it: \
         its tunnels close at once and its agent must sign in again. Figures are live for \
         this node ({}) only.</p>{}",
        esc(&state.node),
        table(&format!("Live sessions ({})", rows.len()), &headers, &rows)
    );
    page(viewer, "Sessions", "/sessions", notice, &[], body)
}

async fn session_kill(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    form: FormData,
) -> Response {
    if let Err(r) = session
        .post(&state, &form, Role::Ict, "POST /sessions/{id}/kill")
        .await
    {
        return r;
    }
    match crate::api::sessions::kill_session(&state, &session.caller.name, &id).await {
        Ok(()) => done("/sessions", "killed"),
        Err(e) => {
            let (status, text) = api_problem(e);
            let r = sessions_page(&state, &session.viewer(), Some(Notice::Problem(text))).await;
            with_status(r, status)
        }
    }
}

// ------------------------------------------------------------ /enrolment

const CODES_DONE: &[(&str, &str)] = &[("cancelled", "The code was cancelled: it enrols nothing.")];

const KINDS: [(&str, &str); 2] = [
    ("laptop", "A council laptop (by asset tag)"),
    ("personal", "A person's own device (by username)"),
];

async fn codes_list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = session
        .require(&state, Role::Viewer, "GET /enrolment")
        .await
    {
        return r;
    }
    let q = query(q);
    let n = notice(&q, CODES_DONE);
    codes_page(
        &state,
        &session.viewer(),
        n,
        &[],
        &FormData::default(),
        None,
        StatusCode::OK,
    )
    .await
}

/// A code just made: shown on the page that answers the form, this once.
struct Created {
    code: String,
    for_: String,
    expires_at: String,
    broker: String,
}

async fn codes_page(
    state: &AppState,
    viewer: &Viewer,
    notice: Option<Notice>,
    errors: &[FieldError],
    form: &FormData,
    created: Option<Created>,
    status: StatusCode,
) -> Response {
    let codes = match state.store.enrol_code_list(false, now_ms()).await {
        Ok(c) => c,
        Err(e) => return problem(viewer, "Enrolment codes", "/enrolment", e),
    };
    let can_change = viewer.role >= Role::Ict;
    let mut body = String::new();
    if let Some(c) = created {
        let _ = write!(
            body,
            "<section class=\"panel\" aria-labelledby=\"new-code\"><h2 id=\"new-code\">The new code</h2>\
             <p>For {}, until {} (broker {}). Give it to the person enrolling the device. \
             It is shown only this once: it is not kept and cannot be shown again.</p>\
             <p class=\"code\" id=\"code\">{}</p></section>",
            esc(&c.for_),
            esc(&c.expires_at),
            esc(&c.broker),
            esc(&c.code)
        );
    }
    let rows: Vec<Vec<String>> = codes
        .iter()
        .map(|c| {
            let mut row = vec![
                esc(&c.id),
                esc(&c.kind),
                esc(&c.for_),
                esc(&c.created_by),
                esc(&c.created_at),
                esc(&c.expires_at),
                esc(c.state),
            ];
            if can_change {
                row.push(if c.state == "open" {
                    button_form(
                        &viewer.csrf,
                        &format!("/enrolment/{}/cancel", url(&c.id)),
                        "Cancel",
                        &format!("code {} for {}", c.id, c.for_),
                        true,
                    )
                } else {
                    String::new()
                });
            }
            row
        })
        .collect();
    let mut headers = vec!["Code", "Kind", "For", "Made by", "Made", "Expires", "State"];
    if can_change {
        headers.push("Action");
    }
    body.push_str(&table("Enrolment codes", &headers, &rows));
    if can_change {
        let kind = if form.get("kind").is_empty() {
            "laptop"
        } else {
            form.get("kind")
        };
        let _ = write!(
            body,
            "<section class=\"panel\" aria-labelledby=\"create\"><h2 id=\"create\">Create a code</h2>\
             <form method=\"post\" action=\"/enrolment\" novalidate>{}{}{}{}\
             <button type=\"submit\" class=\"button\">Create code</button></form></section>",
            csrf_field(&viewer.csrf),
            select("kind", "What it enrols", &KINDS, kind, errors),
            Field::text("for", "Asset tag or username", form.get("for"))
                .hint("The laptop's asset tag, e.g. LT-00421, or the person's username")
                .autocomplete("off")
                .required()
                .render(errors),
            Field::text("ttl", "Valid for (optional)", form.get("ttl"))
                .hint("A duration such as 30m or 24h; empty for the usual time")
                .autocomplete("off")
                .render(errors),
        );
    }
    let mut r = page(
        viewer,
        "Enrolment codes",
        "/enrolment",
        notice,
        errors,
        body,
    );
    if status != StatusCode::OK {
        r = with_status(r, status);
    }
    r
}

async fn code_create(State(state): State<AppState>, session: Session, form: FormData) -> Response {
    if let Err(r) = session.check_csrf(form.get("csrf")) {
        return r;
    }
    if let Err(r) = session.require(&state, Role::Ict, "POST /enrolment").await {
        return r;
    }
    let viewer = session.viewer();
    let target = form.get("for");
    let what = match form.get("kind") {
        "laptop" => AssetTag::parse(target).map(EnrolFor::Laptop),
        "personal" => Username::parse(target).map(EnrolFor::Personal),
        _ => {
            let errors = [field_error(
                "kind",
                "Choose a council laptop or a person's own device",
            )];
            return codes_page(
                &state,
                &viewer,
                None,
                &errors,
                &form,
                None,
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    let what = match what {
        Ok(w) => w,
        Err(e) => {
            let errors = [field_error("for", e.0)];
            return codes_page(
                &state,
                &viewer,
                None,
                &errors,
                &form,
                None,
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    let ttl = Some(form.get("ttl")).filter(|t| !t.is_empty());
    match crate::api::enrol::issue(&state, &session.caller.name, what, ttl).await {
        Ok(c) => {
            let created = Created {
                code: c.code,
                for_: c.for_,
                expires_at: c.expires_at,
                broker: c.broker,
            };
            let notice = Some(Notice::Done(format!(
                "Code {} was created; copy it now.",
                c.id
            )));
            codes_page(
                &state,
                &viewer,
                notice,
                &[],
                &FormData::default(),
                Some(created),
                StatusCode::OK,
            )
            .await
        }
        Err(e) => {
            let (status, text) = api_problem(e);
            let field = if text.contains("ttl") { "ttl" } else { "for" };
            let errors = [field_error(field, text)];
            codes_page(&state, &viewer, None, &errors, &form, None, status).await
        }
    }
}

async fn code_cancel(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    form: FormData,
) -> Response {
    if let Err(r) = session
        .post(&state, &form, Role::Ict, "POST /enrolment/{id}/cancel")
        .await
    {
        return r;
    }
    match state
        .store
        .enrol_code_cancel(&session.caller.name, id.trim(), now_ms())
        .await
    {
        Ok(_) => done("/enrolment", "cancelled"),
        Err(e) => {
            let (status, text) = store_problem(e);
            codes_page(
                &state,
                &session.viewer(),
                Some(Notice::Problem(text)),
                &[],
                &FormData::default(),
                None,
                status,
            )
            .await
        }
    }
}

// ----------------------------------------------------------------- /audit

/// Entries on one page of the log.
const AUDIT_PAGE: i64 = 50;

/// A query link for the audit page with these filters.
fn audit_href(action: &str, actor: &str, before: Option<i64>) -> String {
    let mut parts = Vec::new();
    if !action.is_empty() {
        parts.push(format!("action={}", url(action)));
    }
    if !actor.is_empty() {
        parts.push(format!("actor={}", url(actor)));
    }
    if let Some(b) = before {
        parts.push(format!("before={b}"));
    }
    if parts.is_empty() {
        "/audit".into()
    } else {
        format!("/audit?{}", parts.join("&"))
    }
}

async fn audit_list(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = session.require(&state, Role::Viewer, "GET /audit").await {
        return r;
    }
    let viewer = session.viewer();
    let q = query(q);
    let (action, actor) = (q.get("action"), q.get("actor"));
    let before = match q.get("before") {
        "" => None,
        b => match b.parse::<i64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                let r = page(
                    &viewer,
                    "Audit",
                    "/audit",
                    Some(Notice::Problem(
                        "That is not a page of the audit log.".into(),
                    )),
                    &[],
                    link("/audit", "Go to the newest entries"),
                );
                return with_status(r, StatusCode::BAD_REQUEST);
            }
        },
    };
    let filter = AuditFilter {
        since: None,
        actor: Some(actor.to_owned()).filter(|a| !a.is_empty()),
        action_prefix: Some(action.to_owned()).filter(|a| !a.is_empty()),
        // One more than shown: whether there is an older page.
        limit: AUDIT_PAGE + 1,
        before_seq: before,
    };
    let mut rows = match state.store.audit_list(&filter).await {
        Ok(r) => r,
        Err(e) => return problem(&viewer, "Audit", "/audit", e),
    };
    // Newest first.
    rows.reverse();
    let older = rows.len() as i64 > AUDIT_PAGE;
    rows.truncate(AUDIT_PAGE as usize);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let detail = r.detail_json();
            vec![
                r.seq.to_string(),
                esc(&r.at()),
                esc(&r.actor),
                esc(&r.action),
                esc(&r.target),
                esc(&r.outcome),
                if detail.is_null() {
                    String::new()
                } else {
                    format!("<code>{}</code>", esc(&detail.to_string()))
                },
            ]
        })
        .collect();
    let mut body = format!(
        "<p>Every change and refusal, newest first. {}</p>\
         <form class=\"filters\" method=\"get\" action=\"/audit\" role=\"search\">{}{}\
         <div class=\"field\"><button type=\"submit\" class=\"button secondary\">Filter</button></div></form>{}",
        link("/audit/verify", "Check the chain"),
        Field::text("action", "Action starts with", action)
            .hint("e.g. staff. or laptop.assign")
            .render(&[]),
        Field::text("actor", "Actor (exact username)", actor).render(&[]),
        table(
            "Audit log",
            &["Seq", "Time", "Actor", "Action", "Target", "Outcome", "Detail"],
            &cells
        )
    );
    body.push_str("<nav class=\"pager\" aria-label=\"Audit pages\">");
    if before.is_some() {
        let _ = write!(
            body,
            "{}",
            link(&audit_href(action, actor, None), "Newest entries")
        );
    }
    if older {
        if let Some(last) = rows.last() {
            let _ = write!(
                body,
                "{}",
                link(&audit_href(action, actor, Some(last.seq)), "Older entries")
            );
        }
    }
    body.push_str("</nav>");
    page(&viewer, "Audit", "/audit", None, &[], body)
}

async fn audit_verify(State(state): State<AppState>, session: Session) -> Response {
    if let Err(r) = session
        .require(&state, Role::Viewer, "GET /audit/verify")
        .await
    {
        return r;
    }
    let viewer = session.viewer();
    let title = "Audit chain check";
    let report = match crate::api::audit::verify_chain(&state).await {
        Ok(r) => r,
        Err(e) => {
            let (status, text) = api_problem(e);
            let r = page(
                &viewer,
                title,
                "/audit",
                Some(Notice::Problem(text)),
                &[],
                String::new(),
            );
            return with_status(r, status);
        }
    };
    let result = if report.ok {
        "Intact: every row links to the one before and matches the signed checkpoints."
    } else {
        "Broken: the log has been changed outside the broker."
    };
    let body = format!(
        "<p id=\"verify-result\"><strong>{}</strong></p>{}<p>{}</p>",
        esc(result),
        summary(&[
            ("Rows checked", report.rows_checked.to_string()),
            (
                "Checkpoints checked",
                report.checkpoints_checked.to_string()
            ),
            (
                "First bad row",
                report.bad_seq.map_or_else(String::new, |s| s.to_string())
            ),
            ("Problem", esc(report.problem.as_deref().unwrap_or(""))),
        ]),
        link("/audit", "Back to the audit log")
    );
    let notice = if report.ok {
        None
    } else {
        Some(Notice::Problem(result.into()))
    };
    page(&viewer, title, "/audit", notice, &[], body)
}

#[cfg(test)]
mod tests {
    use super::audit_href;

    #[test]
    fn audit_links_keep_the_filters_escaped() {
        assert_eq!(audit_href("", "", None), "/audit");
        assert_eq!(
            audit_href("staff.", "a&b", Some(40)),
            "/audit?action=staff.&actor=a%26b&before=40"
        );
    }
}
