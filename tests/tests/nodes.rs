//! Several broker nodes on one PostgreSQL: every node lists every node's
//! sessions, a revocation made on one node closes a tunnel held on another
//! within a second, a node that dies has its sessions recorded as ended
//! when it comes back, and its agents move to the other nodes by
//! themselves.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::path::Path;
use std::time::{Duration, Instant};

use lanyard_e2e::world::{closed_at, ended_after, live_connection, World, PASSWORD, READY};
use lanyard_e2e::{Agent, BrokerProcess};

/// A copy of the first node's data dir (its CA, signing keys and admin
/// token): every node of one deployment shares them.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn json(broker: &BrokerProcess, args: &[&str]) -> serde_json::Value {
    let run = broker.lanyard(args, None, None).ok();
    serde_json::from_str(&run.stdout).unwrap()
}

/// The live session of `username` as `broker` lists it.
fn session_of(broker: &BrokerProcess, username: &str) -> Option<serde_json::Value> {
    json(broker, &["sessions", "list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["username"] == username)
        .cloned()
}

/// An agent of `username` enrolled through `node` (its enrolment code sends
/// the agent there), with a live tunnel to the app `echo`.
fn agent_on(node: &BrokerProcess, dir: &Path, username: &str) -> (lanyard_e2e::UpProcess, u16) {
    let code = node
        .lanyard(
            &["enroll-code", "create", "--personal", username],
            None,
            None,
        )
        .ok()
        .stdout
        .trim()
        .to_owned();
    let agent = Agent::new(dir.to_owned());
    agent.enrol_and_login(&code, username, PASSWORD);
    let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
    let port = up.wait_ready(READY)["echo"];
    (up, port)
}

#[test]
fn three_nodes_share_sessions_and_revocations() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(pg) = rt.block_on(lanyard_e2e::TestStore::postgres()) else {
        lanyard_broker::testkit::say_skipped(
            "LANYARD_TEST_DATABASE_URL is not set, so several broker nodes were not run",
        );
        return;
    };
    let url = pg.url();
    let w = World::with(&["--database-url", &url, "--node", "node-a"], &[]);
    let a = &w.broker;
    let start = |name: &str| {
        let dir = w.tmp.path().join(name);
        copy_dir(&a.data_dir, &dir);
        BrokerProcess::start(&dir, &["--database-url", &url, "--node", name], &[])
    };
    let b = start("node-b");
    let mut c = start("node-c");

    // Every node knows every node.
    let nodes = json(&b, &["nodes", "list", "--json"]);
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["alive"] == true)
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["node-a", "node-b", "node-c"], "{nodes}");

    w.person("p.onc", "hr");
    w.person("p.onb", "hr");
    let (mut on_c, port_c) = agent_on(&c, &w.tmp.path().join("agent-c"), "p.onc");
    let (mut on_b, port_b) = agent_on(&b, &w.tmp.path().join("agent-b"), "p.onb");

    // Node A's load counts every node's agents (B's and C's from their
    // heartbeats, at most 5 s old).
    let mut summed = serde_json::Value::Null;
    for _ in 0..40 {
        summed = json(a, &["load", "--json"]);
        if summed["all_nodes"]["agents"] == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(summed["all_nodes"]["nodes"], 3, "{summed}");
    assert_eq!(summed["all_nodes"]["agents"], 2, "{summed}");
    assert_eq!(summed["agents"], 0, "{summed}");

    // Node A lists the sessions held on B and C, with their nodes.
    let held_on_c = session_of(a, "p.onc").expect("node A lists C's session");
    assert_eq!(held_on_c["node"], "node-c", "{held_on_c}");
    assert_eq!(session_of(a, "p.onb").unwrap()["node"], "node-b");
    let only_b = json(a, &["sessions", "list", "--node", "node-b", "--json"]);
    assert_eq!(only_b.as_array().unwrap().len(), 1, "{only_b}");

    // A session on C killed from A: the tunnel closes within a second of
    // the command returning, and the agent is told to sign in again.
    let conn = live_connection(port_c);
    let waiter = std::thread::spawn(move || closed_at(conn, Duration::from_secs(5)));
    let id = held_on_c["id"].as_str().unwrap();
    a.lanyard(&["sessions", "kill", id], None, None).ok();
    let after = ended_after(
        waiter.join().unwrap(),
        Instant::now(),
        "kill on another node",
    );
    assert!(
        after < Duration::from_secs(1),
        "C's tunnel stayed open {after:?}"
    );
    assert_eq!(
        on_c.wait_exit(Duration::from_secs(30)),
        Some(4),
        "{}",
        on_c.log()
    );

    // A person disabled on A: their tunnel on B closes within a second.
    let conn = live_connection(port_b);
    let waiter = std::thread::spawn(move || closed_at(conn, Duration::from_secs(5)));
    a.lanyard(&["staff", "disable", "p.onb"], None, None).ok();
    let after = ended_after(
        waiter.join().unwrap(),
        Instant::now(),
        "disable on another node",
    );
    assert!(
        after < Duration::from_secs(1),
        "B's tunnel stayed open {after:?}"
    );
    assert_eq!(
        on_b.wait_exit(Duration::from_secs(30)),
        Some(4),
        "{}",
        on_b.log()
    );

    // Both ends are on record, each with its node.
    let ends = a.audit_json("session.end");
    assert!(ends.contains("node-c") && ends.contains("node-b"), "{ends}");

    // A node killed outright, with a session open: when it comes back, that
    // session is recorded as ended (any node lists it no more).
    w.person("p.crash", "hr");
    let (_crashed, _) = agent_on(&c, &w.tmp.path().join("agent-crash"), "p.crash");
    let old = session_of(a, "p.crash").unwrap()["id"].clone();
    let listed = |id: &serde_json::Value| {
        json(a, &["sessions", "list", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .any(|s| &s["id"] == id)
    };
    c.signal("KILL");
    c.wait_exit(Duration::from_secs(10));
    assert!(
        listed(&old),
        "the session was ended before anyone could know"
    );
    let api = c.api.trim_start_matches("https://").to_owned();
    let quic = c.quic.clone();
    let c_dir = c.data_dir.clone();
    let _c = BrokerProcess::start_at(
        &c_dir,
        &api,
        &quic,
        &["--database-url", &url, "--node", "node-c"],
        &[],
    );
    assert!(!listed(&old), "node C's dead session is still listed");
}

/// Agents enrolled through node A know every node's address (the code and
/// the welcome carry them). A is killed outright: each agent notices once
/// the idle timeout has run from its last keepalive (up to 5 s later),
/// moves to B or C, and its tunnel works again within the bound; B lists
/// the new sessions.
#[test]
fn agents_of_a_dead_node_move_to_the_others() {
    const IDLE: Duration = Duration::from_secs(6);
    const AGENTS: usize = 3;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(pg) = rt.block_on(lanyard_e2e::TestStore::postgres()) else {
        lanyard_broker::testkit::say_skipped(
            "LANYARD_TEST_DATABASE_URL is not set, so no node was killed under its agents",
        );
        return;
    };
    let url = pg.url();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("broker.toml");
    std::fs::write(&config, "[limits]\nquic_idle_timeout = \"6s\"\n").unwrap();
    let config = config.to_str().unwrap();
    let w = World::with(
        &[
            "--database-url",
            &url,
            "--node",
            "node-a",
            "--config",
            config,
        ],
        &[],
    );
    let mut a = w.broker;
    let start = |name: &str| {
        let dir = w.tmp.path().join(name);
        copy_dir(&a.data_dir, &dir);
        BrokerProcess::start(
            &dir,
            &["--database-url", &url, "--node", name, "--config", config],
            &[],
        )
    };
    let b = start("node-b");
    let _c = start("node-c");

    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let user = format!("p.move{i}");
        a.add_person(&user, "hr", PASSWORD);
        let dir = w.tmp.path().join(format!("agent-{i}"));
        let (up, port) = agent_on(&a, &dir, &user);
        assert_eq!(session_of(&b, &user).unwrap()["node"], "node-a");
        assert_eq!(
            lanyard_e2e::echo_through(port, b"before").unwrap(),
            b"before"
        );
        // The agent keeps every node's address.
        let kept: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("brokers.json")).unwrap()).unwrap();
        assert_eq!(kept["addrs"].as_array().unwrap().len(), 3, "{kept}");
        agents.push((user, up, port));
    }

    a.signal("KILL");
    let killed_at = Instant::now();
    a.wait_exit(Duration::from_secs(10));
    let bound = IDLE + Duration::from_secs(8);
    for (user, up, port) in &agents {
        let back = loop {
            if lanyard_e2e::echo_through(*port, b"after").unwrap_or_default() == b"after" {
                break Some(killed_at.elapsed());
            }
            if killed_at.elapsed() > bound {
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            back.is_some(),
            "{user}'s tunnel did not work again within {bound:?} of node A's death; agent log:\n{}",
            up.log()
        );
        // B lists the new session, on B or C.
        let sessions = json(&b, &["sessions", "list", "--json"]);
        let moved = sessions
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["username"] == user.as_str() && s["node"] != "node-a");
        let node = moved.map(|s| s["node"].as_str().unwrap().to_owned());
        assert!(
            matches!(node.as_deref(), Some("node-b" | "node-c")),
            "{user}: {sessions}"
        );
    }
}

/// A node whose database link goes silent (no error, only waiting) cannot
/// confirm its rules: its tunnels close once the rules are older than
/// `rules_max_age`, and when the link comes back the agent is served again
/// without anyone stepping in.
#[test]
fn a_node_that_loses_its_store_fails_closed_and_recovers() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(pg) = rt.block_on(lanyard_e2e::TestStore::postgres()) else {
        lanyard_broker::testkit::say_skipped(
            "LANYARD_TEST_DATABASE_URL is not set, so the store link was not cut",
        );
        return;
    };
    let url = pg.url();
    let (link, linked) = lanyard_e2e::store_link::StoreLink::in_front_of(&url);
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("broker.toml");
    std::fs::write(&config, "[policy]\nrules_max_age = \"5s\"\n").unwrap();
    let w = World::with(
        &[
            "--database-url",
            &linked,
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    w.person("p.link", "hr");
    let agent = w.agent("laptop", "p.link", None);
    let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
    let port = up.wait_ready(READY)["echo"];
    let conn = live_connection(port);

    link.cut();
    let cut_at = Instant::now();
    let closed = closed_at(conn, Duration::from_secs(30));
    let after = ended_after(closed, cut_at, "store link cut");
    // The rules were good for 5 s, then a failed read (at most 5 s) found
    // them stale: never before the limit, and not long after it.
    assert!(
        after >= Duration::from_secs(4) && after < Duration::from_secs(20),
        "the tunnel closed {after:?} after the store went silent"
    );

    link.restore();
    let deadline = Instant::now() + Duration::from_secs(60);
    let back = loop {
        let answer = lanyard_e2e::echo_through(port, b"again").unwrap_or_default();
        if answer == b"again" {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        back,
        "the agent was not served again; agent log:\n{}",
        up.log()
    );
}
