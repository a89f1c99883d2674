//! Roles against a real broker: every route of the admin API, called by a
//! person of every role, answers 403 exactly when the role is too small;
//! and the leaver action, with a live tunnel, in one audited step.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use lanyard_e2e::world::{api, closed_at, ended_after, live_connection, World, READY};

/// The least role each route needs. Every route the API document names
/// must be here, so a new route cannot go unclassified.
fn needs() -> BTreeMap<(&'static str, &'static str), &'static str> {
    let public = "public";
    let (staff, viewer, ict, admin) = ("staff", "viewer", "ict", "admin");
    [
        (("POST", "/login"), public),
        (("POST", "/login/sso/start"), public),
        (("POST", "/login/sso/finish"), public),
        (("GET", "/openapi.json"), public),
        (("GET", "/me"), staff),
        (("GET", "/groups"), viewer),
        (("POST", "/groups"), admin),
        (("PATCH", "/groups/{name}"), admin),
        (("DELETE", "/groups/{name}"), admin),
        (("GET", "/staff"), viewer),
        (("POST", "/staff"), admin),
        (("POST", "/staff/import"), admin),
        (("GET", "/staff/{username}"), viewer),
        (("PATCH", "/staff/{username}"), admin),
        (("DELETE", "/staff/{username}"), admin),
        (("POST", "/staff/{username}/disable"), admin),
        (("POST", "/staff/{username}/enable"), admin),
        (("POST", "/staff/{username}/password"), admin),
        (("POST", "/staff/{username}/totp"), admin),
        (("DELETE", "/staff/{username}/totp"), admin),
        (("POST", "/staff/{username}/leave"), admin),
        (("DELETE", "/staff/{username}/devices"), admin),
        (("GET", "/apps"), viewer),
        (("POST", "/apps"), admin),
        (("PATCH", "/apps/{name}"), admin),
        (("DELETE", "/apps/{name}"), admin),
        (("GET", "/enrolment-codes"), viewer),
        (("POST", "/enrolment-codes"), ict),
        (("POST", "/enrolment-codes/{id}/cancel"), ict),
        (("GET", "/devices"), viewer),
        (("POST", "/devices"), ict),
        (("POST", "/devices/import"), ict),
        (("GET", "/devices/{tag}"), viewer),
        (("POST", "/devices/{tag}/assign"), ict),
        (("POST", "/devices/{tag}/return"), ict),
        (("POST", "/devices/{tag}/mark"), ict),
        (("POST", "/devices/{tag}/revoke"), ict),
        (("GET", "/devices/{tag}/history"), viewer),
        (("POST", "/personal-devices/{id}/revoke"), ict),
        (("GET", "/requests"), viewer),
        (("POST", "/requests"), ict),
        (("POST", "/requests/fulfil"), ict),
        (("POST", "/requests/{username}/cancel"), ict),
        (("GET", "/reports/inventory"), viewer),
        (("GET", "/sessions"), viewer),
        (("DELETE", "/sessions/{id}"), ict),
        (("GET", "/nodes"), viewer),
        (("GET", "/tokens"), admin),
        (("POST", "/tokens/{id}/revoke"), admin),
        (("GET", "/load"), viewer),
        (("GET", "/audit"), viewer),
        (("GET", "/audit/verify"), viewer),
    ]
    .into_iter()
    .collect()
}

const ROLES: [&str; 4] = ["staff", "viewer", "ict", "admin"];

fn rank(role: &str) -> usize {
    match role {
        "public" => 0,
        r => 1 + ROLES.iter().position(|x| *x == r).unwrap(),
    }
}

/// An API token for a new person with `role`.
fn token_for(w: &World, username: &str, role: &str) -> String {
    w.person_with_role(username, role, None);
    w.token_of(username)
}

#[test]
fn every_route_answers_every_role_as_its_role_allows() {
    let w = World::new();
    let tokens: Vec<(&str, String)> = ROLES
        .iter()
        .map(|role| (*role, token_for(&w, &format!("r.{role}"), role)))
        .collect();
    let (_, doc) = api(&w, "GET", "/api/v1/openapi.json", None);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    let needs = needs();
    let mut documented = 0;
    let mut wrong = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            documented += 1;
            let Some(need) = needs.get(&(method.as_str(), path.as_str())) else {
                wrong.push(format!("{method} {path}: no role in this test's table"));
                continue;
            };
            // Parameters that name nothing and no body: an allowed caller
            // gets its own 400 or 404, and nothing changes.
            let concrete: String = path
                .split('/')
                .map(|s| if s.starts_with('{') { "no-such-x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            for (role, token) in &tokens {
                let (status, body) = api(&w, &method, &format!("/api/v1{concrete}"), Some(token));
                let allowed = rank(role) >= rank(need);
                if allowed == (status == 403) {
                    wrong.push(format!(
                        "{method} {path} as {role} (needs {need}): {status} {body}"
                    ));
                }
                if status == 401 {
                    wrong.push(format!("{method} {path} as {role}: 401 {body}"));
                }
            }
        }
    }
    assert_eq!(
        documented,
        needs.len(),
        "the table names a route not served"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // A refusal says what the route needs, and is audited.
    let viewer = &tokens[1].1;
    let (status, body) = api(&w, "POST", "/api/v1/requests/fulfil", Some(viewer));
    assert_eq!(status, 403);
    assert!(
        body.contains("r.viewer has the role viewer; this needs the role ict or admin"),
        "{body}"
    );
    // (The admin's sign-in ended the bootstrap token: the admin reads.)
    let admin = &tokens[3].1;
    let (_, audit) = api(&w, "GET", "/api/v1/audit?action=api.forbidden", Some(admin));
    let audit: Value = serde_json::from_str(&audit).unwrap();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "r.viewer" && e["target"] == "POST /api/v1/requests/fulfil"),
        "{audit}"
    );
}

/// ICT can run the inventory (assign a laptop) but not change who may
/// reach what; a role change holds from the next request.
#[test]
fn ict_runs_the_inventory_but_not_the_access_rules() {
    let w = World::new();
    w.person("s.holder", "hr");
    let ict = token_for(&w, "i.desk", "ict");
    let assigned = w.broker.lanyard(
        &["devices", "assign", "LT-1", "--to", "s.holder"],
        Some(&ict),
        None,
    );
    assert_eq!(assigned.code, 0, "{}", assigned.stderr);
    let refused = w
        .broker
        .lanyard(&["groups", "add", "finance"], Some(&ict), None);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("needs admin rights"),
        "{}",
        refused.stderr
    );
    // Made viewer: the same token can no longer assign.
    w.broker
        .lanyard(&["staff", "set", "i.desk", "--role", "viewer"], None, None)
        .ok();
    let now_refused = w
        .broker
        .lanyard(&["devices", "return", "LT-1"], Some(&ict), None);
    assert_ne!(now_refused.code, 0, "{}", now_refused.stdout);
    assert!(
        now_refused.stderr.contains("has the role viewer"),
        "{}",
        now_refused.stderr
    );
    let shown = w
        .broker
        .lanyard(&["staff", "show", "i.desk", "--json"], None, None)
        .ok();
    let shown: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(shown["role"], "viewer");
    assert_eq!(shown["admin"], false);
}

/// `lanyard staff leave`: one step ends the person's live tunnel within a
/// second, revokes their own device, cancels their code and their laptop
/// request, recalls the laptop they hold, and writes one audit entry.
#[test]
fn a_leaver_loses_everything_in_one_audited_step() {
    let w = World::new();
    w.person("l.leaver", "hr");
    let agent = w.agent("own-laptop", "l.leaver", None);
    w.broker
        .lanyard(
            &["devices", "assign", "LT-1", "--to", "l.leaver"],
            None,
            None,
        )
        .ok();
    let spare_code = w.code(&["--personal", "l.leaver"]);
    w.broker
        .lanyard(
            &["requests", "add", "l.leaver", "--reason", "second screen"],
            None,
            None,
        )
        .ok();
    let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
    let port = up.wait_ready(READY)["echo"];
    let conn = live_connection(port);
    let waiter = std::thread::spawn(move || closed_at(conn, Duration::from_secs(5)));
    let left = w
        .broker
        .lanyard(&["staff", "leave", "l.leaver", "--json"], None, None)
        .ok();
    let closed_after = ended_after(waiter.join().unwrap(), Instant::now(), "leaver");
    assert!(
        closed_after < Duration::from_secs(1),
        "the tunnel stayed open {closed_after:?} after the leaver action; agent log:\n{}",
        up.log()
    );
    let left: Value = serde_json::from_str(&left.stdout).unwrap();
    assert_eq!(left["disabled"], true, "{left}");
    assert_eq!(
        left["laptops_recalled"],
        serde_json::json!(["LT-1"]),
        "{left}"
    );
    assert_eq!(left["request_cancelled"], true, "{left}");
    assert_eq!(left["codes_cancelled"], 1, "{left}");
    assert_eq!(
        left["devices_revoked"].as_array().unwrap().len(),
        1,
        "{left}"
    );
    assert!(left["sign_ins_ended"].as_u64().unwrap() >= 1, "{left}");
    // The spare code enrols nothing; the laptop shows its recall.
    let other = lanyard_e2e::Agent::new(w.tmp.path().join("spare"));
    let enrol = other.run(&["enroll", &spare_code], None);
    assert_ne!(enrol.code, 0, "{}", enrol.stdout);
    let laptop = w
        .broker
        .lanyard(&["devices", "show", "LT-1", "--json"], None, None)
        .ok();
    let laptop: Value = serde_json::from_str(&laptop.stdout).unwrap();
    assert!(laptop["recall_since"].is_string(), "{laptop}");
    let audit: Value = serde_json::from_str(&w.broker.audit_json("staff.leave")).unwrap();
    assert_eq!(audit.as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(audit[0]["target"], "l.leaver");
    // Done twice: nothing more to do, nothing broken.
    let again = w
        .broker
        .lanyard(&["staff", "leave", "l.leaver", "--json"], None, None)
        .ok();
    let again: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(again["disabled"], false, "{again}");
    assert_eq!(again["devices_revoked"], serde_json::json!([]), "{again}");
    // An unknown person: a clear error, nothing written.
    let unknown = w.broker.lanyard(&["staff", "leave", "no.one"], None, None);
    assert_ne!(unknown.code, 0);
    assert!(
        unknown.stderr.contains("no staff member named no.one"),
        "{}",
        unknown.stderr
    );
}

/// The console holds the same roles: every page and every action, opened
/// by a person of every role (each with their own session and CSRF token),
/// is refused with 403 exactly when the role is too small.
#[test]
fn every_console_page_and_action_answers_every_role_as_its_role_allows() {
    use lanyard_e2e::world::{csrf_of, Web, PASSWORD};
    let w = World::new();
    for role in ROLES {
        w.person_with_role(&format!("r.{role}"), role, Some("hr"));
    }
    // (method, path, least role); actions carry fields that name nothing,
    // so an allowed caller gets its own refusal and nothing changes.
    let routes: &[(&str, &str, &str)] = &[
        ("GET", "/me", "staff"),
        ("GET", "/live.json", "viewer"),
        ("GET", "/laptops", "viewer"),
        ("GET", "/laptops/LT-1", "viewer"),
        ("GET", "/requests", "viewer"),
        ("GET", "/requests/fulfil", "ict"),
        ("GET", "/staff", "viewer"),
        ("GET", "/staff/r.staff", "viewer"),
        ("GET", "/staff/r.staff/leave", "admin"),
        ("GET", "/groups", "viewer"),
        ("GET", "/apps", "viewer"),
        ("GET", "/sessions", "viewer"),
        ("GET", "/enrolment", "viewer"),
        ("GET", "/audit", "viewer"),
        ("GET", "/audit/verify", "viewer"),
        ("POST", "/laptops", "ict"),
        ("POST", "/laptops/import", "ict"),
        ("POST", "/laptops/NO-SUCH/assign", "ict"),
        ("POST", "/laptops/NO-SUCH/return", "ict"),
        ("POST", "/laptops/NO-SUCH/mark", "ict"),
        ("POST", "/laptops/NO-SUCH/revoke", "ict"),
        ("POST", "/requests", "ict"),
        ("POST", "/requests/fulfil", "ict"),
        ("POST", "/requests/no.one/cancel", "ict"),
        ("POST", "/staff", "admin"),
        ("POST", "/staff/import", "admin"),
        ("POST", "/staff/no.one", "admin"),
        ("POST", "/staff/no.one/disable", "admin"),
        ("POST", "/staff/no.one/enable", "admin"),
        ("POST", "/staff/no.one/leave", "admin"),
        ("POST", "/groups", "admin"),
        ("POST", "/sessions/no-such/kill", "ict"),
        ("POST", "/enrolment", "ict"),
        ("POST", "/enrolment/no-such/cancel", "ict"),
    ];
    let mut wrong = Vec::new();
    for role in ROLES {
        let mut web = Web::signed_in(&w, &format!("r.{role}"), PASSWORD);
        let csrf = csrf_of(&web.get("/me").body);
        for (method, path, need) in routes {
            let r = if *method == "GET" {
                web.get(path)
            } else {
                web.post_raw(path, &[("csrf", &csrf)])
            };
            let allowed = rank(role) >= rank(need);
            if allowed == (r.status == 403)
                || r.status == 303 && r.location.as_deref().is_some_and(|l| l.contains("/login"))
            {
                wrong.push(format!(
                    "{method} {path} as {role} (needs {need}): {}",
                    r.status
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Staff opening the dashboard are sent to their own page.
    let mut staff = Web::signed_in(&w, "r.staff", PASSWORD);
    let r = staff.get("/");
    assert_eq!(
        (r.status, r.location.as_deref()),
        (303, Some("/me")),
        "{r:?}"
    );
}
