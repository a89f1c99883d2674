//! The console's people and operations pages over real HTTPS, as a
//! browser without JavaScript uses them: sign in with the form, then add
//! people, import a file, change a role, the leaver action, kill a live
//! session, make and cancel an enrolment code, filter the audit log; and
//! the refusals: a post without the CSRF token, a viewer acting, ICT
//! changing people. Each change is checked through the API, not the page.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use lanyard_e2e::world::{
    api, closed_at, ended_after, live_connection, Web, WebResponse, World, PASSWORD, READY,
};

/// A person as the API shows them, or `None` when there is no such person.
fn staff_json(w: &World, token: &str, username: &str) -> Option<serde_json::Value> {
    let (status, body) = api(w, "GET", &format!("/api/v1/staff/{username}"), Some(token));
    match status {
        200 => Some(serde_json::from_str(&body).unwrap()),
        404 => None,
        other => panic!("GET /api/v1/staff/{username}: {other} {body}"),
    }
}

fn redirected(r: &WebResponse, to: &str) {
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.location.as_deref(), Some(to), "{r:?}");
}

/// The audit rows with `action` exactly, as (actor, target).
fn audited(w: &World, token: &str, action: &str) -> Vec<(String, String)> {
    let out = w
        .broker
        .lanyard(
            &["audit", "list", "--action", action, "--json"],
            Some(token),
            None,
        )
        .ok()
        .stdout;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    rows.iter()
        .filter(|r| r["action"] == action)
        .map(|r| {
            (
                r["actor"].as_str().unwrap().to_owned(),
                r["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn an_admin_runs_people_and_operations_from_the_console() {
    let w = World::new();
    w.person_with_role("a.admin", "admin", None);
    w.person("k.kill", "hr");
    let agent = w.agent("phone", "k.kill", None);
    w.person("l.leaver", "hr");
    w.broker
        .lanyard(
            &["devices", "assign", "LT-1", "--to", "l.leaver"],
            None,
            None,
        )
        .ok();
    let tok = w.token_of("a.admin");
    let mut web = Web::signed_in(&w, "a.admin", PASSWORD);

    // Add a person by form: written, and audited as the signed-in admin.
    let added = web.post(
        "/staff",
        "/staff",
        &[
            ("username", "j.new"),
            ("name", "Jo New"),
            ("email", "jo@council.example"),
            ("department", "Housing"),
            ("priority", "2"),
            ("role", "staff"),
            ("groups", "hr"),
            ("password", ""),
        ],
    );
    redirected(&added, "/staff?done=added");
    let jo = staff_json(&w, &tok, "j.new").expect("j.new was not added");
    assert_eq!(jo["priority"], 2);
    assert_eq!(jo["groups"], serde_json::json!(["hr"]));
    assert!(web
        .get("/staff?done=added")
        .body
        .contains("The person was added."));
    assert!(audited(&w, &tok, "staff.add").contains(&("a.admin".into(), "j.new".into())));

    // Bad fields: each named beside its field, 400, nothing written.
    let bad = web.post(
        "/staff",
        "/staff",
        &[
            ("username", "Bad Name"),
            ("name", "Someone"),
            ("priority", "9"),
            ("role", "staff"),
        ],
    );
    assert_eq!(bad.status, 400, "{bad:?}");
    for id in ["username-error", "priority-error"] {
        assert!(
            bad.body.contains(&format!("id=\"{id}\"")),
            "{id}: {}",
            bad.body
        );
    }
    assert!(bad.body.contains("There is a problem"));
    assert!(staff_json(&w, &tok, "Bad%20Name").is_none());

    // A file with two bad rows: both named by line, nothing written.
    let file = "username,name,email,department,priority,groups\r\n\
                c.one,Cee One,,Housing,3,hr\r\n\
                c.two,,,Housing,3,hr\r\n\
                c.three,Cee Three,,Housing,7,nosuch\r\n";
    let refused = web.post("/staff", "/staff/import", &[("csv", file)]);
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(refused.body.contains("line 3: "), "{}", refused.body);
    assert!(refused.body.contains("line 4: "), "{}", refused.body);
    assert!(!refused.body.contains("line 2: "), "{}", refused.body);
    assert!(refused.body.contains("nothing was written"));
    assert!(
        staff_json(&w, &tok, "c.one").is_none(),
        "a refused file wrote c.one"
    );
    let good = "username,name,email,department,priority,groups\r\n\
                c.one,Cee One,,Housing,3,hr\r\n";
    redirected(
        &web.post("/staff", "/staff/import", &[("csv", good)]),
        "/staff?done=imported",
    );
    assert_eq!(staff_json(&w, &tok, "c.one").unwrap()["name"], "Cee One");

    // Search is literal: a `_` is not a wildcard.
    let found = web.get("/staff?q=cee+one").body;
    assert!(found.contains("href=\"/staff/c.one\""), "{found}");
    assert!(!found.contains("href=\"/staff/j.new\""), "{found}");
    let none = web.get("/staff?q=c_one").body;
    assert!(!none.contains("href=\"/staff/c.one\""), "{none}");

    // Set a role (and priority) on the person's page.
    let page = web.get("/staff/c.one");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<label for=\"role\">Role</label>"));
    let bad_set = web.post(
        "/staff/c.one",
        "/staff/c.one",
        &[
            ("name", "Cee One"),
            ("priority", "9"),
            ("role", "ict"),
            ("groups", "hr"),
        ],
    );
    assert_eq!(bad_set.status, 400, "{bad_set:?}");
    assert!(
        bad_set.body.contains("id=\"priority-error\""),
        "{}",
        bad_set.body
    );
    assert_eq!(staff_json(&w, &tok, "c.one").unwrap()["role"], "staff");
    let set = web.post(
        "/staff/c.one",
        "/staff/c.one",
        &[
            ("name", "Cee One"),
            ("email", ""),
            ("department", "Housing"),
            ("priority", "1"),
            ("role", "ict"),
            ("groups", "hr"),
            ("groups", "housing"),
        ],
    );
    redirected(&set, "/staff/c.one?done=saved");
    let cee = staff_json(&w, &tok, "c.one").unwrap();
    assert_eq!(cee["role"], "ict");
    assert_eq!(cee["priority"], 1);
    assert_eq!(cee["groups"], serde_json::json!(["housing", "hr"]));
    assert!(audited(&w, &tok, "staff.set").contains(&("a.admin".into(), "c.one".into())));

    // Kill a live session: its tunnel closes.
    let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
    let port = up.wait_ready(READY)["echo"];
    let conn = live_connection(port);
    let sessions = web.get("/sessions").body;
    let at = sessions
        .find("action=\"/sessions/")
        .unwrap_or_else(|| panic!("no Kill button: {sessions}"));
    let rest = &sessions[at + "action=\"".len()..];
    let action = &rest[..rest.find('"').unwrap()];
    assert!(sessions.contains(">k.kill<"), "{sessions}");
    let started = std::time::Instant::now();
    redirected(&web.post("/sessions", action, &[]), "/sessions?done=killed");
    let closed = ended_after(
        closed_at(conn, Duration::from_secs(10)),
        started,
        "kill from the console",
    );
    assert!(closed < Duration::from_secs(5), "{closed:?}");
    assert!(!web.get("/sessions").body.contains(action));
    assert!(audited(&w, &tok, "session.kill")
        .iter()
        .any(|(actor, _)| actor == "a.admin"));
    drop(up);

    // The leaver action: a confirmation first, then one step.
    let confirm = web.get("/staff/l.leaver/leave");
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("Mark l.leaver as a leaver"));
    assert!(confirm.body.contains("LT-1"));
    assert!(staff_json(&w, &tok, "l.leaver").unwrap()["active"] == true);
    redirected(
        &web.post("/staff/l.leaver/leave", "/staff/l.leaver/leave", &[]),
        "/staff/l.leaver?done=left",
    );
    assert_eq!(staff_json(&w, &tok, "l.leaver").unwrap()["active"], false);
    assert_eq!(
        audited(&w, &tok, "staff.leave"),
        [("a.admin".to_owned(), "l.leaver".to_owned())]
    );
    let shown = web.get("/staff/l.leaver?done=left").body;
    assert!(shown.contains("The leaver action is done"), "{shown}");

    // An enrolment code: shown once on the answering page, then cancelled.
    let created = web.post(
        "/enrolment",
        "/enrolment",
        &[("kind", "personal"), ("for", "j.new"), ("ttl", "30m")],
    );
    assert_eq!(created.status, 200, "{created:?}");
    assert!(created.location.is_none());
    assert!(created.body.contains("id=\"code\""), "{}", created.body);
    let codes: Vec<serde_json::Value> =
        serde_json::from_str(&api(&w, "GET", "/api/v1/enrolment-codes?open=true", Some(&tok)).1)
            .unwrap();
    let code = codes
        .iter()
        .find(|c| c["for"] == "j.new")
        .unwrap_or_else(|| panic!("no open code for j.new: {codes:?}"));
    let id = code["id"].as_str().unwrap();
    assert_eq!(code["created_by"], "a.admin");
    let listed = web.get("/enrolment").body;
    assert!(!listed.contains("id=\"code\""), "the code was shown again");
    redirected(
        &web.post("/enrolment", &format!("/enrolment/{id}/cancel"), &[]),
        "/enrolment?done=cancelled",
    );
    let after: Vec<serde_json::Value> =
        serde_json::from_str(&api(&w, "GET", "/api/v1/enrolment-codes", Some(&tok)).1).unwrap();
    let state = after.iter().find(|c| c["id"] == id).unwrap();
    assert_eq!(state["state"], "cancelled");
    let bad_code = web.post(
        "/enrolment",
        "/enrolment",
        &[("kind", "laptop"), ("for", "LT 9 <b>"), ("ttl", "")],
    );
    assert_eq!(bad_code.status, 400, "{bad_code:?}");
    assert!(bad_code.body.contains("id=\"for-error\""));
    assert!(!bad_code.body.contains("<b>"));

    // The audit log filtered by action prefix and actor.
    let log = web.get("/audit?action=enrol_code.&actor=a.admin").body;
    assert!(log.contains("enrol_code.cancel"), "{log}");
    let (cancel, create) = (
        log.find("<td>enrol_code.cancel</td>").unwrap(),
        log.find("<td>enrol_code.create</td>").unwrap(),
    );
    assert!(cancel < create, "not newest first: {log}");
    assert_eq!(web.get("/audit?before=x").status, 400);
    let first_page_back = web.get("/audit?action=enrol_code.&before=1").body;
    assert!(
        !first_page_back.contains("<td>enrol_code."),
        "{first_page_back}"
    );
    assert!(!log.contains("<td>staff.add</td>"), "{log}");
    let other = web.get("/audit?action=enrol_code.&actor=nobody").body;
    assert!(!other.contains("enrol_code.cancel"), "{other}");
    let verify = web.get("/audit/verify");
    assert_eq!(verify.status, 200);
    assert!(verify.body.contains("Intact"), "{}", verify.body);
}

#[test]
fn the_pages_refuse_a_forged_post_and_a_role_too_small() {
    let w = World::new();
    w.person_with_role("a.admin", "admin", None);
    w.person_with_role("v.viewer", "viewer", None);
    w.person_with_role("i.desk", "ict", None);
    w.person_with_role("s.staff", "staff", None);
    let tok = w.token_of("a.admin");
    let mut admin = Web::signed_in(&w, "a.admin", PASSWORD);

    // No CSRF token, or another session's: 403 and nothing written.
    let add = [
        ("username", "x.forged"),
        ("name", "Forged"),
        ("priority", "3"),
        ("role", "admin"),
    ];
    let forged = admin.post_raw("/staff", &add);
    assert_eq!(forged.status, 403, "{forged:?}");
    let mut viewer = Web::signed_in(&w, "v.viewer", PASSWORD);
    let other_csrf = lanyard_e2e::world::csrf_of(&viewer.get("/staff").body);
    let mut with_other = vec![("csrf", other_csrf.as_str())];
    with_other.extend_from_slice(&add);
    assert_eq!(admin.post_raw("/staff", &with_other).status, 403);
    assert!(staff_json(&w, &tok, "x.forged").is_none());

    // A viewer reads but cannot act, and is shown no forms to.
    let list = viewer.get("/staff");
    assert_eq!(list.status, 200);
    assert!(!list.body.contains("Add a person"));
    let refused = viewer.post("/staff", "/staff", &add);
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(staff_json(&w, &tok, "x.forged").is_none());
    let code = viewer.post(
        "/staff",
        "/enrolment",
        &[("kind", "laptop"), ("for", "LT-1")],
    );
    assert_eq!(code.status, 403, "{code:?}");
    assert_eq!(viewer.get("/audit/verify").status, 200);

    // ICT run codes and sessions but not people.
    let mut ict = Web::signed_in(&w, "i.desk", PASSWORD);
    let people = ict.post("/staff", "/staff", &add);
    assert_eq!(people.status, 403, "{people:?}");
    let leave = ict.post("/staff", "/staff/v.viewer/leave", &[]);
    assert_eq!(leave.status, 403);
    assert_eq!(staff_json(&w, &tok, "v.viewer").unwrap()["active"], true);
    assert_eq!(
        ict.post(
            "/enrolment",
            "/enrolment",
            &[("kind", "laptop"), ("for", "LT-1"), ("ttl", "")]
        )
        .status,
        200
    );

    // Staff see only their own page.
    let mut staff = Web::signed_in(&w, "s.staff", PASSWORD);
    assert_eq!(staff.get("/staff").status, 403);
    assert_eq!(staff.get("/audit").status, 403);

    // Every refusal above was audited against the person who tried.
    let denied = audited(&w, &tok, "console.forbidden");
    for who in ["v.viewer", "i.desk", "s.staff"] {
        assert!(
            denied.iter().any(|(actor, _)| actor == who),
            "{who}: {denied:?}"
        );
    }
}
