//! Ending access on purpose: enrolment codes cancelled, API tokens and
//! personal devices revoked, passwords reset, agents signed out. Through
//! the real binaries, as ICT would do it.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use lanyard_e2e::world::World;
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
