//! Ending access on purpose: enrolment codes cancelled, API tokens and
//! personal devices revoked, passwords reset, agents signed out. Through
//! the real binaries, as ICT would do it.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use lanyard_e2e::world::{closed_at, ended_after, live_connection, World, PASSWORD, READY};
use lanyard_e2e::Agent;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A cancelled code is listed as cancelled, leaves `--open`, is audited,
/// and enrols nothing; cancelling it again or an unknown id changes nothing.
#[test]
fn a_cancelled_code_cannot_enrol() {
    let w = World::new();
    w.person("c.code", "hr");
    let made = w
        .broker
        .lanyard(
            &["enroll-code", "create", "--personal", "c.code", "--json"],
            None,
            None,
        )
        .ok();
    let made = json(&made.stdout);
    let (code, id) = (
        made["code"].as_str().unwrap(),
        made["id"].as_str().unwrap().to_owned(),
    );
    let open = |w: &World| -> Vec<String> {
        let list = w
            .broker
            .lanyard(&["enroll-code", "list", "--open", "--json"], None, None)
            .ok();
        json(&list.stdout)
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(open(&w), vec![id.clone()]);
    let table = w.broker.lanyard(&["enroll-code", "list"], None, None).ok();
    assert!(table.stdout.contains("c.code"), "{}", table.stdout);
    assert!(!table.stdout.contains(code), "the code itself was listed");

    let cancelled = w
        .broker
        .lanyard(&["enroll-code", "cancel", &id], None, None)
        .ok();
    assert!(
        cancelled.stdout.contains("cancelled"),
        "{}",
        cancelled.stdout
    );
    assert!(open(&w).is_empty());
    let all = w
        .broker
        .lanyard(&["enroll-code", "list", "--json"], None, None)
        .ok();
    assert_eq!(json(&all.stdout)[0]["state"], "cancelled");
    let audit = w.broker.audit_json("enrol_code.cancel");
    assert!(audit.contains(&id), "not audited: {audit}");

    let agent = Agent::new(w.tmp.path().join("own-laptop"));
    let enrol = agent.run(&["enroll", code], None);
    assert_ne!(enrol.code, 0, "a cancelled code enrolled: {}", enrol.stdout);
    assert!(enrol.stderr.contains("cancelled"), "{}", enrol.stderr);

    let chain = |w: &World| {
        let all = w
            .broker
            .lanyard(&["audit", "list", "--limit", "10000", "--json"], None, None)
            .ok();
        json(&all.stdout).as_array().unwrap().len()
    };
    let rows = chain(&w);
    let again = w
        .broker
        .lanyard(&["enroll-code", "cancel", &id], None, None);
    assert_ne!(again.code, 0);
    assert!(
        again.stderr.contains("cancelled already"),
        "{}",
        again.stderr
    );
    let unknown = w
        .broker
        .lanyard(&["enroll-code", "cancel", "no-such-code"], None, None);
    assert_ne!(unknown.code, 0);
    assert!(
        unknown.stderr.contains("no enrolment code"),
        "{}",
        unknown.stderr
    );
    assert_eq!(chain(&w), rows, "a refused cancel wrote to the audit log");
}

/// `lanyard login` as `username`; the API token.
fn login(w: &World, username: &str) -> String {
    w.broker
        .lanyard(
            &["login", username, "--password-stdin"],
            None,
            Some(&format!("{PASSWORD}\n")),
        )
        .ok()
        .stdout
        .trim()
        .to_owned()
}

/// A revoked API token is refused at its next request; the revocation is
/// audited; revoking it again, or a token that does not exist, changes
/// nothing.
#[test]
fn a_revoked_api_token_is_refused_at_once() {
    let w = World::new();
    w.person("t.user", "hr");
    let token = login(&w, "t.user");
    // Known (403 for a non-admin, not 401).
    let before = w.broker.lanyard(&["staff", "list"], Some(&token), None);
    assert!(
        before.stderr.contains("has the role staff"),
        "{}",
        before.stderr
    );
    let listed = w
        .broker
        .lanyard(
            &["tokens", "list", "--user", "t.user", "--json"],
            None,
            None,
        )
        .ok();
    let listed = json(&listed.stdout);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["state"], "active");
    assert!(
        !listed[0].to_string().contains(&token),
        "the token was listed"
    );
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let all = w.broker.lanyard(&["tokens", "list"], None, None).ok();
    assert!(all.stdout.contains("bootstrap"), "{}", all.stdout);

    w.broker
        .lanyard(&["tokens", "revoke", &id], None, None)
        .ok();
    let after = w.broker.lanyard(&["staff", "list"], Some(&token), None);
    assert_ne!(after.code, 0);
    assert!(after.stderr.contains("revoked"), "{}", after.stderr);
    let audit = w.broker.audit_json("api_token.revoke");
    assert!(audit.contains(&id), "not audited: {audit}");

    let again = w.broker.lanyard(&["tokens", "revoke", &id], None, None);
    assert!(again.stderr.contains("revoked already"), "{}", again.stderr);
    let unknown = w.broker.lanyard(&["tokens", "revoke", "nope"], None, None);
    assert!(
        unknown.stderr.contains("no API token"),
        "{}",
        unknown.stderr
    );
    let bad_user = w
        .broker
        .lanyard(&["tokens", "list", "--user", "No Such/User"], None, None);
    assert_ne!(bad_user.code, 0, "{}", bad_user.stdout);
    assert_eq!(
        json(&w.broker.audit_json("api_token."))
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// The bootstrap token is one of the tokens: listed, and expired by the
/// first password sign-in of a person with admin rights (audited); a
/// non-admin's sign-in leaves it working.
#[test]
fn the_bootstrap_token_ends_when_an_admin_signs_in() {
    let w = World::new();
    w.person("n.staff", "hr");
    login(&w, "n.staff");
    w.broker.lanyard(&["tokens", "list"], None, None).ok();
    w.broker
        .lanyard(
            &[
                "staff",
                "add",
                "a.admin",
                "--name",
                "A",
                "--admin",
                "--password-stdin",
            ],
            None,
            Some(&format!("{PASSWORD}\n")),
        )
        .ok();
    let admin = login(&w, "a.admin");
    let bootstrap = w.broker.lanyard(&["tokens", "list"], None, None);
    assert_ne!(bootstrap.code, 0, "the bootstrap token still works");
    assert!(bootstrap.stderr.contains("expired"), "{}", bootstrap.stderr);
    let listed = w
        .broker
        .lanyard(&["tokens", "list", "--json"], Some(&admin), None)
        .ok();
    let listed = json(&listed.stdout);
    let boot = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["label"] == "bootstrap")
        .unwrap();
    assert_eq!(boot["state"], "expired");
    let audit = w
        .broker
        .lanyard(
            &["audit", "list", "--action", "api_token.expire", "--json"],
            Some(&admin),
            None,
        )
        .ok();
    assert!(audit.stdout.contains("a.admin"), "{}", audit.stdout);
}

/// The bootstrap token can be revoked like any other, by itself even.
#[test]
fn the_bootstrap_token_can_be_revoked() {
    let w = World::new();
    let listed = w
        .broker
        .lanyard(&["tokens", "list", "--json"], None, None)
        .ok();
    let listed = json(&listed.stdout);
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(listed[0]["label"], "bootstrap");
    w.broker
        .lanyard(&["tokens", "revoke", &id], None, None)
        .ok();
    let after = w.broker.lanyard(&["tokens", "list"], None, None);
    assert!(after.stderr.contains("revoked"), "{}", after.stderr);
}

/// The personal devices of `username`, by the id `devices list` shows.
fn personal_ids(w: &World, username: &str) -> Vec<String> {
    let list = w
        .broker
        .lanyard(
            &[
                "devices", "list", "--kind", "personal", "--holder", username, "--json",
            ],
            None,
            None,
        )
        .ok();
    json(&list.stdout)
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Revoking one personal device closes its live tunnel within a second;
/// its owner stays enabled and their other device keeps working.
#[test]
fn a_revoked_personal_device_closes_its_tunnels_and_nothing_else() {
    let w = World::new();
    w.person("p.own", "hr");
    let phone = w.agent("phone", "p.own", None);
    let phone_id = personal_ids(&w, "p.own").pop().unwrap();
    let desk = w.agent("desk", "p.own", None);
    let mut phone_up = phone.up(&["--forward", "echo=127.0.0.1:0"]);
    let phone_port = phone_up.wait_ready(READY)["echo"];
    let mut desk_up = desk.up(&["--forward", "echo=127.0.0.1:0"]);
    let desk_port = desk_up.wait_ready(READY)["echo"];
    let phone_conn = live_connection(phone_port);
    let desk_conn = live_connection(desk_port);

    let waiter = std::thread::spawn(move || closed_at(phone_conn, Duration::from_secs(5)));
    w.broker
        .lanyard(
            &[
                "devices",
                "revoke",
                "--personal",
                &phone_id,
                "--reason",
                "phone lost",
            ],
            None,
            None,
        )
        .ok();
    // From the instant the command returned to the instant the stream ended.
    let closed_after = ended_after(waiter.join().unwrap(), Instant::now(), "revoke --personal");
    assert!(
        closed_after < Duration::from_secs(1),
        "the revoked device's tunnel stayed open {closed_after:?}; agent log:\n{}",
        phone_up.log()
    );
    assert!(
        phone_up.wait_log("revoked", Duration::from_secs(10)),
        "{}",
        phone_up.log()
    );
    // The person and their other device go on.
    let shown = w
        .broker
        .lanyard(&["staff", "show", "p.own", "--json"], None, None)
        .ok();
    assert_eq!(json(&shown.stdout)["active"], true);
    let mut desk_conn = desk_conn;
    desk_conn.write_all(b"pong").unwrap();
    let mut back = [0u8; 4];
    desk_conn.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"pong");
    assert!(
        desk_up.child.try_wait().unwrap().is_none(),
        "{}",
        desk_up.log()
    );
    let audit = w.broker.audit_json("device.revoke");
    assert!(
        audit.contains(&phone_id) && audit.contains("phone lost"),
        "{audit}"
    );

    // Bad or unknown ids, or the same device again, change nothing.
    for (id, says) in [
        ("zz-not-hex", "bad device id"),
        ("0123", "bad device id"),
        ("00000000000000000000", "no personal device"),
        (phone_id.as_str(), "revoked already"),
    ] {
        let refused = w
            .broker
            .lanyard(&["devices", "revoke", "--personal", id], None, None);
        assert_ne!(refused.code, 0, "{id}");
        assert!(refused.stderr.contains(says), "{id}: {}", refused.stderr);
    }
    assert_eq!(
        json(&w.broker.audit_json("device.revoke"))
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// A password reset ends what the person was signed in with: their live
/// tunnel closes within a second, their agent stops (it must sign in
/// again), their API token is refused; the new password works.
#[test]
fn a_password_reset_ends_sign_ins_tokens_and_tunnels() {
    let w = World::new();
    w.person("r.reset", "hr");
    let token = login(&w, "r.reset");
    let agent = w.agent("laptop", "r.reset", None);
    let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
    let port = up.wait_ready(READY)["echo"];
    let conn = live_connection(port);
    let waiter = std::thread::spawn(move || closed_at(conn, Duration::from_secs(5)));
    let new_password = "Another-Horse-Battery-10";
    w.broker
        .lanyard(
            &["staff", "password", "r.reset", "--password-stdin"],
            None,
            Some(&format!("{new_password}\n")),
        )
        .ok();
    let closed_after = ended_after(waiter.join().unwrap(), Instant::now(), "password reset");
    assert!(
        closed_after < Duration::from_secs(1),
        "the tunnel stayed open {closed_after:?} after a password reset; agent log:\n{}",
        up.log()
    );
    assert_eq!(
        up.wait_exit(Duration::from_secs(30)),
        Some(4),
        "the agent went on, or not with \"sign in again\": {}",
        up.log()
    );
    assert!(up.log().contains("sign-in was ended"), "{}", up.log());
    let refused = w.broker.lanyard(&["staff", "list"], Some(&token), None);
    assert!(refused.stderr.contains("revoked"), "{}", refused.stderr);
    let audit = json(&w.broker.audit_json("staff.password"));
    let detail = audit[0]["detail"].to_string();
    assert!(
        detail.contains("\"ended_sign_ins\":1") && detail.contains("\"revoked_api_tokens\":1"),
        "{audit}"
    );
    let fresh = w
        .broker
        .lanyard(
            &["login", "r.reset", "--password-stdin"],
            None,
            Some(&format!("{new_password}\n")),
        )
        .ok();
    let fresh = w
        .broker
        .lanyard(&["staff", "list"], Some(fresh.stdout.trim()), None);
    assert!(
        fresh.stderr.contains("has the role staff"),
        "{}",
        fresh.stderr
    );
}

/// `lanyard-agent logout` ends the sign-in at the broker: the running
/// `up` is disconnected within a second and stops, the sign-out is
/// audited, and the tokens here are gone.
#[test]
fn an_agent_logout_ends_the_sign_in_at_the_broker() {
    let w = World::new();
    w.person("l.out", "hr");
    let agent = w.agent("laptop", "l.out", None);
    let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
    let port = up.wait_ready(READY)["echo"];
    let conn = live_connection(port);
    let waiter = std::thread::spawn(move || closed_at(conn, Duration::from_secs(5)));
    let out = agent.run(&["logout"], None).ok();
    let returned = Instant::now();
    assert!(out.stdout.contains("at the broker"), "{}", out.stdout);
    let closed_after = ended_after(waiter.join().unwrap(), returned, "logout");
    assert!(
        closed_after < Duration::from_secs(1),
        "the tunnel stayed open {closed_after:?} after logout; agent log:\n{}",
        up.log()
    );
    assert_eq!(
        up.wait_exit(Duration::from_secs(30)),
        Some(4),
        "up went on, or not with \"sign in again\": {}",
        up.log()
    );
    let audit = w.broker.audit_json("agent.signout");
    assert!(audit.contains("l.out"), "not audited: {audit}");
    let status = agent.run(&["status", "--json"], None).ok();
    assert_eq!(
        json(&status.stdout)["signed_in"],
        false,
        "{}",
        status.stdout
    );
    let again = agent.run(&["logout"], None).ok();
    assert!(
        again.stdout.contains("nobody was signed in"),
        "{}",
        again.stdout
    );
}

/// With the broker out of reach, `logout` still removes the sign-in here,
/// and fails saying the broker was not told.
#[test]
fn a_logout_without_the_broker_says_so() {
    let mut w = World::new();
    w.person("l.away", "hr");
    let agent = w.agent("laptop", "l.away", None);
    w.broker.signal("KILL");
    w.broker.wait_exit(Duration::from_secs(10));
    let out = agent.run(&["logout"], None);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("on this device"), "{}", out.stdout);
    assert!(out.stderr.contains("broker was not told"), "{}", out.stderr);
    let status = agent.run(&["status", "--json"], None).ok();
    assert_eq!(
        json(&status.stdout)["signed_in"],
        false,
        "{}",
        status.stdout
    );
}
