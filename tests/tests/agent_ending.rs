//! How `lanyard-agent up` ends: when ICT ends its sign-in, and when it is
//! stopped itself. Through the real binaries.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use lanyard_e2e::world::{World, READY};

fn session_ids(w: &World, username: &str) -> Vec<String> {
    let list = w
        .broker
        .lanyard(&["sessions", "list", "--json"], None, None)
        .ok();
    let list: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .filter(|s| s["username"] == username)
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A killed session is final: the agent does not announce a reconnect, it
/// stops with the reason, and `status` says the sign-in was ended and what
/// to run, with the agent's own state dir.
#[test]
fn an_ended_sign_in_stops_the_agent_and_status_says_so() {
    let w = World::new();
    w.person("e.ended", "hr");
    let agent = w.agent("laptop", "e.ended", None);
    let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
    up.wait_ready(READY);
    let id = session_ids(&w, "e.ended").pop().unwrap();
    w.broker
        .lanyard(&["sessions", "kill", &id], None, None)
        .ok();
    assert_eq!(
        up.wait_exit(Duration::from_secs(30)),
        Some(4),
        "not the exit status for \"sign in again\": {}",
        up.log()
    );
    let log = up.log();
    assert!(!log.contains("reconnecting in"), "{log}");
    assert!(log.contains("ended by ICT"), "{log}");
    let state_dir = agent.state_dir.display().to_string();
    assert!(
        log.contains(&state_dir),
        "the hint drops --state-dir: {log}"
    );
    let status = agent.run(&["status"], None).ok();
    assert!(
        status.stdout.contains("the broker ended e.ended's sign-in"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains(&format!("--state-dir {state_dir} login e.ended")),
        "{}",
        status.stdout
    );
    let json = agent.run(&["status", "--json"], None).ok();
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["signed_in"], false);
    assert_eq!(json["sign_in_ended"]["username"], "e.ended");
}

/// An agent stopped with SIGTERM closes its connection on the way out, so
/// its session leaves `sessions list` at once, not at the idle timeout.
#[test]
fn a_stopped_agent_leaves_the_session_list_at_once() {
    let w = World::new();
    w.person("s.stop", "hr");
    let agent = w.agent("laptop", "s.stop", None);
    let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
    up.wait_ready(READY);
    assert_eq!(session_ids(&w, "s.stop").len(), 1);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &up.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        up.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        up.log()
    );
    let stopped = Instant::now();
    while !session_ids(&w, "s.stop").is_empty() {
        assert!(
            stopped.elapsed() < Duration::from_secs(3),
            "the session stayed listed after the agent stopped"
        );
    }
}

/// `up` where starting again cannot help exits with a status that says
/// what would (the user unit's RestartPreventExitStatus= lists them): 3
/// on a laptop that is not enrolled, 4 where nobody is signed in.
#[test]
fn up_exits_with_enrol_again_or_sign_in_again() {
    let w = World::new();
    let agent = lanyard_e2e::Agent::new(w.tmp.path().join("fresh"));
    let up = agent.run(&["up"], None);
    assert_eq!(up.code, 3, "not enrolled: {}", up.stderr);
    assert!(up.stderr.contains("not enrolled"), "{}", up.stderr);
    w.person("n.nobody", "hr");
    let code = w.code(&["--personal", "n.nobody"]);
    agent.run(&["enroll", &code], None).ok();
    let up = agent.run(&["up"], None);
    assert_eq!(up.code, 4, "not signed in: {}", up.stderr);
    assert!(up.stderr.contains("not signed in"), "{}", up.stderr);
}
