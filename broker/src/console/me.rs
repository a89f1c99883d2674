//! `/me`: a member of staff's own page. Their devices and live sessions,
//! a laptop request and its place in the queue, an enrolment code for
//! their own device (when an app they may reach allows personal devices),
//! and reporting their laptop lost (its agent is revoked at once).

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use super::html::{csrf_field, esc, summary, table, url, Field, FieldError, Notice};
use super::session::Session;
use super::{done, page, problem, FormData};
use crate::clock::now_ms;
use crate::model::{parse_text, AssetTag, DeviceKindRule, LaptopStatus, Role, Username};
use crate::state::AppState;
use crate::store::enrol::EnrolFor;
use crate::store::laptops::LaptopFilter;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/me", get(show))
        .route("/me/request", post(request))
        .route("/me/enrol", post(enrol))
        .route("/me/lost/{tag}", post(lost))
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct MeQuery {
    #[serde(default)]
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<Notice> {
    let text = match done? {
        "requested" => "Your request is in the queue.",
        "lost" => {
            "Thank you. The laptop is marked lost and can no longer connect; ICT will be in touch."
        }
        _ => return None,
    };
    Some(Notice::Done(text.into()))
}

/// Whether `username` may enrol a device of their own: some app one of
/// their groups may reach lets personal devices in.
fn may_enrol_own(state: &AppState, groups: &[String]) -> bool {
    let rules = state.policy.current();
    rules.apps.values().any(|app| {
        app.device_kind != DeviceKindRule::Managed && groups.iter().any(|g| app.groups.contains(g))
    })
}

async fn render(
    state: &AppState,
    session: &Session,
    notice_now: Option<Notice>,
    errors: &[FieldError],
    extra: String,
) -> Response {
    let viewer = session.viewer();
    let me = &session.caller.name;
    let person = match state.store.staff_get(me).await {
        Ok(p) => p,
        Err(e) => return problem(&viewer, "My devices", "/me", e),
    };
    let devices = match state
        .store
        .device_list(&LaptopFilter {
            holder: Some(me.clone()),
            ..LaptopFilter::default()
        })
        .await
    {
        Ok(d) => d,
        Err(e) => return problem(&viewer, "My devices", "/me", e),
    };
    // `holder` matches a prefix or name as `devices list` does: keep mine.
    let devices: Vec<_> = devices
        .into_iter()
        .filter(|d| d.holder.as_deref() == Some(me.as_str()))
        .collect();
    let laptops: Vec<Vec<String>> = devices
        .iter()
        .filter(|d| d.kind == "managed")
        .map(|d| {
            let tag = d.asset_tag.clone().unwrap_or_default();
            let action = if d.status == "allocated" {
                format!(
                    "<form class=\"inline\" method=\"post\" action=\"/me/lost/{}\">{}\
                     <button type=\"submit\" class=\"button warn\">Report lost<span class=\"visually-hidden\"> laptop {}</span></button></form>",
                    url(&tag),
                    csrf_field(&session.csrf),
                    esc(&tag)
                )
            } else {
                String::new()
            };
            vec![
                esc(&tag),
                esc(d.model.as_deref().unwrap_or("")),
                esc(&d.status),
                esc(d.allocated_since.as_deref().unwrap_or("")),
                action,
            ]
        })
        .collect();
    let own: Vec<Vec<String>> = devices
        .iter()
        .filter(|d| d.kind == "personal")
        .map(|d| {
            vec![
                esc(d.device_id.as_deref().unwrap_or("")),
                esc(&d.status),
                esc(d.allocated_since.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    let mut sessions: Vec<Vec<String>> = state
        .sessions
        .list()
        .iter()
        .map(|s| s.view(&state.node))
        .filter(|s| &s.username == me)
        .map(|s| {
            vec![
                esc(&s.device),
                esc(s.kind),
                esc(&s.remote),
                esc(&s.since),
                esc(&s.node),
            ]
        })
        .collect();
    if let Ok(rows) = state.store.sessions_live().await {
        for row in rows {
            if row.node != state.node && &row.username == me {
                let s = crate::tunnel::SessionView::elsewhere(&row);
                sessions.push(vec![
                    esc(&s.device),
                    esc(s.kind),
                    esc(&s.remote),
                    esc(&s.since),
                    esc(&s.node),
                ]);
            }
        }
    }
    let queue = match state.store.request_list(true).await {
        Ok(q) => q,
        Err(e) => return problem(&viewer, "My devices", "/me", e),
    };
    let mine = queue.iter().find(|r| &r.row.username == me);
    let request = match mine {
        Some(r) => format!(
            "<p>You asked for a laptop on {}. {}</p>",
            esc(&r.requested),
            match r.place {
                Some(1) => "You are next in the queue.".to_owned(),
                Some(p) => format!("You are number {p} in the queue."),
                None => "Your request is on hold; contact ICT.".to_owned(),
            }
        ),
        None => format!(
            "<form method=\"post\" action=\"/me/request\" novalidate>{}{}\
             <button type=\"submit\" class=\"button\">Request a laptop</button></form>",
            csrf_field(&session.csrf),
            Field::text("reason", "Why you need one", "")
                .hint("For example: starting in Revenues on Monday")
                .render(errors),
        ),
    };
    let enrol = if may_enrol_own(state, &person.groups) {
        format!(
            "<p>To use Lanyard on a device of your own, make a one-time code here and enter it in \
             the Lanyard agent on that device (<code>lanyard-agent enroll CODE</code>).</p>\
             <form method=\"post\" action=\"/me/enrol\">{}\
             <button type=\"submit\" class=\"button secondary\">Make an enrolment code for my own device</button></form>",
            csrf_field(&session.csrf)
        )
    } else {
        "<p>None of the apps you use allow personal devices, so you cannot enrol one.</p>".into()
    };
    let body = format!(
        "{extra}{}<h2>Council laptops</h2>{}<h2>My own devices</h2>{}{}\
         <h2>Signed-in sessions</h2>{}<h2>A laptop</h2>{}",
        summary(&[
            ("Name", esc(&person.name)),
            ("Username", esc(&person.username)),
            ("Department", esc(&person.department)),
            ("Priority", person.priority.to_string()),
            ("Groups", esc(&person.groups.join(", "))),
        ]),
        table(
            "Council laptops you hold",
            &["Asset tag", "Model", "Status", "Since", "Action"],
            &laptops
        ),
        table(
            "Your own enrolled devices",
            &["Device id", "Status", "Enrolled"],
            &own
        ),
        enrol,
        table(
            "Your live sessions",
            &["Device", "Kind", "From", "Since", "Node"],
            &sessions
        ),
        request,
    );
    page(&viewer, "My devices", "/me", notice_now, errors, body)
}

async fn show(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<MeQuery>,
) -> Response {
    if session.caller.name == crate::store::api_tokens::BOOTSTRAP {
        return page(
            &session.viewer(),
            "My devices",
            "/me",
            Some(Notice::Problem(
                "The bootstrap token is not a person: it has no devices.".into(),
            )),
            &[],
            String::new(),
        );
    }
    render(
        &state,
        &session,
        notice(q.done.as_deref()),
        &[],
        String::new(),
    )
    .await
}

async fn request(State(state): State<AppState>, session: Session, form: FormData) -> Response {
    if let Err(r) = session.check_csrf(form.get("csrf")) {
        return r;
    }
    let me = match Username::parse(&session.caller.name) {
        Ok(u) => u,
        Err(e) => {
            return problem(
                &session.viewer(),
                "My devices",
                "/me",
                crate::store::StoreError::Invalid(e.0),
            )
        }
    };
    let reason = match parse_text("reason", form.get("reason"), 500, false) {
        Ok(r) => r,
        Err(e) => {
            let errors = [FieldError {
                field: "reason".into(),
                message: e.0,
            }];
            return render(&state, &session, None, &errors, String::new()).await;
        }
    };
    match state
        .store
        .request_add(me.as_str(), &me, &reason, now_ms())
        .await
    {
        Ok(_) => done("/me", "requested"),
        Err(e) => problem(&session.viewer(), "My devices", "/me", e),
    }
}

async fn enrol(State(state): State<AppState>, session: Session, form: FormData) -> Response {
    if let Err(r) = session.check_csrf(form.get("csrf")) {
        return r;
    }
    let viewer = session.viewer();
    let me = match Username::parse(&session.caller.name) {
        Ok(u) => u,
        Err(e) => {
            return problem(
                &viewer,
                "My devices",
                "/me",
                crate::store::StoreError::Invalid(e.0),
            )
        }
    };
    let groups = match state.store.staff_get(me.as_str()).await {
        Ok(p) => p.groups,
        Err(e) => return problem(&viewer, "My devices", "/me", e),
    };
    if !may_enrol_own(&state, &groups) {
        return session
            .require(
                &state,
                Role::Ict,
                "POST /me/enrol (no app allows personal devices)",
            )
            .await
            .err()
            .unwrap_or_else(|| {
                problem(
                    &viewer,
                    "My devices",
                    "/me",
                    crate::store::StoreError::Invalid(
                        "none of your apps allow personal devices".into(),
                    ),
                )
            });
    }
    match crate::api::enrol::issue(&state, me.as_str(), EnrolFor::Personal(me.clone()), None).await
    {
        // The code is shown on this page once, never put in a URL.
        Ok(code) => {
            let extra = format!(
                "<div class=\"notice done\" role=\"status\"><h2>Your enrolment code</h2>\
                 <p>Enter this in the Lanyard agent on your own device before {}. It works once, and \
                 is not shown again.</p><p class=\"code\">{}</p></div>",
                esc(&code.expires_at),
                esc(&code.code)
            );
            render(&state, &session, None, &[], extra).await
        }
        Err(e) => page(
            &viewer,
            "My devices",
            "/me",
            Some(Notice::Problem(e.message().to_owned())),
            &[],
            String::new(),
        ),
    }
}

async fn lost(
    State(state): State<AppState>,
    session: Session,
    Path(tag): Path<String>,
    form: FormData,
) -> Response {
    if let Err(r) = session.check_csrf(form.get("csrf")) {
        return r;
    }
    let viewer = session.viewer();
    let tag = match AssetTag::parse(&tag) {
        Ok(t) => t,
        Err(e) => {
            return problem(
                &viewer,
                "My devices",
                "/me",
                crate::store::StoreError::Invalid(e.0),
            )
        }
    };
    // Only the laptop's holder reports it lost here.
    match state.store.laptop_get(tag.as_str()).await {
        Ok(l) if l.holder.as_deref() == Some(session.caller.name.as_str()) => {}
        Ok(_) => {
            return session
                .require(&state, Role::Admin, "POST /me/lost/{tag} (not the holder)")
                .await
                .err()
                .unwrap_or_else(|| {
                    problem(
                        &viewer,
                        "My devices",
                        "/me",
                        crate::store::StoreError::Invalid(format!(
                            "{tag} is not held by you; ICT marks other laptops"
                        )),
                    )
                })
        }
        Err(e) => return problem(&viewer, "My devices", "/me", e),
    }
    match state
        .store
        .laptop_mark(
            &session.caller.name,
            &tag,
            LaptopStatus::Lost,
            "reported lost by its holder",
            now_ms(),
        )
        .await
    {
        Ok(_) => done("/me", "lost"),
        Err(e) => problem(&viewer, "My devices", "/me", e),
    }
}
