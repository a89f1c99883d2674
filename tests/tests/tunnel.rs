//! Tunnels end to end with the real binaries on 127.0.0.1: a laptop
//! enrolled, signed in and reaching an app; denials with their reasons;
//! live revocation; a broker killed and restarted; one enrolment code raced.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use lanyard_e2e::world::{closed_at, ended_after, live_connection, World, PASSWORD, READY};
use lanyard_e2e::{echo_through, pattern, Agent, BrokerProcess};

#[test]
fn a_laptop_enrols_signs_in_and_reaches_its_apps_byte_exact() {
    let w = World::with(&[], &[("LANYARD_LOG", "debug")]);
    w.person("a.patel", "hr");
    w.broker
        .lanyard(
            &["devices", "assign", "LT-1", "--to", "a.patel"],
            None,
            None,
        )
        .ok();
    let code = w.code(&["--device", "LT-1"]);
    let agent = Agent::new(w.tmp.path().join("laptop"));
    agent.enrol_and_login(&code, "a.patel", PASSWORD);
    let status = agent.run(&["status", "--json"], None).ok();
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["enrolled"], true);
    assert_eq!(status["username"], "a.patel");
    // The state dir is private.
    use std::os::unix::fs::PermissionsExt;
    for file in ["device-key.pem", "device.pem", "tokens.json"] {
        let mode = std::fs::metadata(agent.state_dir.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }

    let mut up = agent.up(&[]);
    let forwards = up.wait_ready(READY);
    assert_eq!(
        forwards.keys().collect::<Vec<_>>(),
        ["echo", "hr-only-laptops", "web"],
        "every app open to hr on a laptop, and only those"
    );

    // 10 MiB there and back, byte for byte.
    let data = pattern(0, 10 * 1024 * 1024);
    let back = echo_through(forwards["echo"], &data).unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the echoed bytes differ");

    // An HTTP app.
    let reply = echo_through(forwards["web"], b"GET / HTTP/1.1\r\nHost: web\r\n\r\n").unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(reply.ends_with("hello from the intranet"), "{reply}");

    // Several connections at once.
    let port = forwards["echo"];
    let handles: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let data = pattern(0, 100_000 + i);
                assert_eq!(echo_through(port, &data).unwrap(), data);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }

    // The session as ICT sees it.
    let sessions = w
        .broker
        .lanyard(&["sessions", "list", "--json"], None, None)
        .ok();
    let sessions: serde_json::Value = serde_json::from_str(&sessions.stdout).unwrap();
    let s = &sessions[0];
    assert_eq!(s["username"], "a.patel");
    assert_eq!(s["device"], "LT-1");
    assert_eq!(s["kind"], "managed");
    assert!(s["bytes_up"].as_u64().unwrap() >= 10 * 1024 * 1024, "{s}");
    assert!(s["bytes_down"].as_u64().unwrap() >= 10 * 1024 * 1024, "{s}");

    // The laptop shows as enrolled in the inventory.
    let show = w
        .broker
        .lanyard(&["devices", "show", "LT-1", "--json"], None, None)
        .ok();
    assert!(show.stdout.contains("0.1.0"), "{}", show.stdout);

    let metrics = w.broker.lanyard_metrics();
    assert!(metrics.contains("lanyard_sessions_live 1"), "{metrics}");
    assert!(metrics.contains("lanyard_enrolments_total 1"), "{metrics}");
    let opened = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lanyard_stream_open_seconds_count "))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(opened >= 10, "every stream timed: {opened}");
    assert!(
        metrics.contains("lanyard_connect_seconds_bucket{le=\"+Inf\"}"),
        "{metrics}"
    );

    // The live load.
    let load = w.broker.lanyard(&["load", "--json"], None, None).ok();
    let load: serde_json::Value = serde_json::from_str(&load.stdout).unwrap();
    assert_eq!(load["agents"], 1, "{load}");
    assert_eq!(load["capacity"], 10_000, "{load}");
    assert!(
        load["peak_today"]["agents"].as_i64().unwrap() >= 1,
        "{load}"
    );
    let text = w.broker.lanyard(&["load"], None, None).ok().stdout;
    assert!(text.contains("agents       1 of 10000"), "{text}");

    // No secret in the broker's debug log or the agent's.
    let tokens: serde_json::Value =
        serde_json::from_slice(&std::fs::read(agent.state_dir.join("tokens.json")).unwrap())
            .unwrap();
    let key = std::fs::read_to_string(agent.state_dir.join("device-key.pem")).unwrap();
    let key_body: String = key.lines().nth(1).unwrap().to_owned();
    let secret_code = code.trim_start_matches("lye1.").to_owned();
    let secrets = [
        PASSWORD.to_owned(),
        secret_code,
        tokens["access_token"].as_str().unwrap().to_owned(),
        tokens["refresh_token"].as_str().unwrap().to_owned(),
        key_body,
    ];
    let logs = [w.broker.log_text(), up.log()];
    assert!(
        logs[0].contains("session opened"),
        "the broker logged at debug"
    );
    for log in &logs {
        for secret in &secrets {
            assert!(!log.contains(secret.as_str()), "a secret reached a log");
        }
    }
}

#[test]
fn on_postgres_one_enrolment_wins_and_tunnels_work() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(pg) = rt.block_on(lanyard_e2e::TestStore::postgres()) else {
        lanyard_broker::testkit::say_skipped(
            "LANYARD_TEST_DATABASE_URL is not set, so tunnels were not run on PostgreSQL",
        );
        return;
    };
    let url = pg.url();
    let w = World::with(&["--database-url", &url], &[]);
    w.person("p.pg", "hr");
    let code = w.code(&["--personal", "p.pg"]);
    let tmp = tempfile::tempdir().unwrap();
    let racers: Vec<_> = (0..50)
        .map(|i| {
            let agent = Agent::new(tmp.path().join(format!("racer-{i}")));
            let code = code.clone();
            std::thread::spawn(move || (agent.run(&["enroll", &code], None), agent))
        })
        .collect();
    let results: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    let winners: Vec<_> = results.iter().filter(|(r, _)| r.code == 0).collect();
    assert_eq!(winners.len(), 1, "exactly one enrolment wins on PostgreSQL");
    let agent = &winners[0].1;
    agent
        .run(
            &["login", "p.pg", "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        )
        .ok();
    let mut up = agent.up(&[]);
    let port = up.wait_ready(READY)["echo"];
    let data = pattern(0, 1024 * 1024);
    assert!(echo_through(port, &data).unwrap() == data);
    drop(up);
    drop(w);
    drop(pg);
}

#[test]
fn streams_are_denied_by_group_and_device_kind_with_the_reason() {
    let w = World::new();
    w.person("m.jones", "hr");
    let agent = w.agent("own-laptop", "m.jones", None);
    let mut up = agent.up(&[
        "--forward",
        "housing-app=127.0.0.1:0",
        "--forward",
        "hr-only-laptops=127.0.0.1:0",
        "--forward",
        "echo=127.0.0.1:0",
    ]);
    let _ = up.wait_ready(READY);
    assert!(
        up.wait_log("housing-app: not allowed", Duration::from_secs(5)),
        "{}",
        up.log()
    );
    // Explicit forwards are bound even when not allowed, so the broker's
    // reason reaches the person. Find their ports from status.
    let status = agent.run(&["status", "--json"], None).ok();
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert!(status["forwards"]["echo"].is_string(), "{status}");
    let bound = std::fs::read_to_string(agent.state_dir.join("forwards.json")).unwrap();
    let bound: std::collections::BTreeMap<String, u16> = serde_json::from_str(&bound).unwrap();

    for (app, reason) in [
        (
            "housing-app",
            "not allowed to reach housing-app: not in any of its groups",
        ),
        (
            "hr-only-laptops",
            "hr-only-laptops may only be reached from managed devices",
        ),
    ] {
        let back = echo_through(bound[app], b"hello").unwrap_or_default();
        assert!(back.is_empty(), "{app} carried data");
        assert!(
            up.wait_log(reason, Duration::from_secs(5)),
            "{app}: {}",
            up.log()
        );
    }
    assert_eq!(echo_through(bound["echo"], b"allowed").unwrap(), b"allowed");

    let audit = w.broker.audit_json("stream.open");
    assert!(audit.contains("not in any of its groups"), "{}", audit);
    assert!(audit.contains("managed devices"), "{}", audit);
    let metrics = w.broker.lanyard_metrics();
    assert!(
        metrics.contains("lanyard_denials_total{reason=\"not_in_group\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lanyard_denials_total{reason=\"device_kind\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_disabled_person_is_refused_and_the_agent_says_why() {
    let w = World::new();
    w.person("k.lee", "hr");
    let agent = w.agent("laptop", "k.lee", None);
    w.broker
        .lanyard(&["staff", "disable", "k.lee"], None, None)
        .ok();
    let mut up = agent.up(&[]);
    let code = up.wait_exit(Duration::from_secs(30));
    // Refused until ICT enables the person again: not worth restarting.
    assert_eq!(code, Some(5), "{}", up.log());
    let log = up.log();
    assert!(log.contains("disabled"), "{log}");
    let audit = w.broker.audit_json("session.open");
    assert!(audit.contains("disabled"), "{}", audit);
}

/// Each way of revoking access closes a live tunnel within a second and
/// keeps it closed.
#[test]
fn revocation_closes_live_tunnels_within_a_second() {
    let w = World::new();
    let cases: [(&str, &[&str]); 6] = [
        ("disable", &["staff", "disable", "p.disable"]),
        ("revoke", &["devices", "revoke", "LT-1"]),
        ("app", &["apps", "remove", "echo"]),
        ("kill", &["sessions", "kill", "SESSION"]),
        // The app's rules change under a live stream: another group only,
        // then council laptops only (these agents are personal devices).
        (
            "group",
            &["apps", "set", "echo", "--allow-group", "housing"],
        ),
        ("kind", &["apps", "set", "echo", "--device-kind", "managed"]),
    ];
    for (case, command) in cases {
        let username = format!("p.{case}");
        w.person(&username, "hr");
        let laptop = (case == "revoke").then_some("LT-1");
        {
            // The "app" case removes it: put it back for the cases after.
            let _ = w.broker.lanyard(
                &[
                    "apps",
                    "add",
                    "echo",
                    "--target",
                    &format!("127.0.0.1:{}", w.echo_port),
                    "--allow-group",
                    "hr",
                ],
                None,
                None,
            );
        }
        let agent = w.agent(case, &username, laptop);
        let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
        let forwards = up.wait_ready(READY);
        let conn = live_connection(forwards["echo"]);
        let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        if case == "kill" {
            let list = w
                .broker
                .lanyard(&["sessions", "list", "--json"], None, None)
                .ok();
            let list: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
            let id = list
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["username"] == username.as_str())
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            args[2] = id;
        }
        let waiter = std::thread::spawn(move || closed_at(conn, Duration::from_secs(5)));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        w.broker.lanyard(&args, None, None).ok();
        // From the instant the command returned to the instant the live
        // stream ended.
        let returned = Instant::now();
        let after = ended_after(waiter.join().unwrap(), returned, case);
        assert!(
            after < Duration::from_secs(1),
            "{case}: the live tunnel stayed open {after:?} after the command; agent log:\n{}",
            up.log()
        );
        if matches!(case, "app" | "group" | "kind") {
            // The session goes on; new streams to the app are refused.
            let back = echo_through(forwards["echo"], b"again").unwrap_or_default();
            assert!(back.is_empty(), "{case}: the app still answers");
            // As it was, for the cases after (a removed app is added back
            // at the top of the loop).
            if case != "app" {
                w.broker
                    .lanyard(
                        &[
                            "apps",
                            "set",
                            "echo",
                            "--allow-group",
                            "hr",
                            "--device-kind",
                            "any",
                        ],
                        None,
                        None,
                    )
                    .ok();
            }
        } else {
            // The agent may not come back: it stops with the reason.
            // Its exit status says what would help: enrol again (3) or
            // sign in again (4).
            let want = if case == "revoke" { 3 } else { 4 };
            let code = up.wait_exit(Duration::from_secs(30));
            assert_eq!(code, Some(want), "{case}: agent log:\n{}", up.log());
        }
        let live = w
            .broker
            .lanyard(&["sessions", "list", "--json"], None, None)
            .ok();
        if !matches!(case, "app" | "group" | "kind") {
            assert!(!live.stdout.contains(&username), "{case}: {}", live.stdout);
        }
    }
    let audit = w
        .broker
        .lanyard(&["audit", "list", "--limit", "500", "--json"], None, None)
        .ok();
    for action in [
        "staff.disable",
        "device.revoke",
        "app.remove",
        "session.kill",
        "session.close",
        "app.set",
    ] {
        assert!(audit.stdout.contains(action), "{action} not audited");
    }
}

#[test]
fn the_agent_reconnects_after_the_broker_is_killed_and_restarted() {
    let w = World::new();
    w.person("j.smith", "hr");
    let agent = w.agent("laptop", "j.smith", None);
    let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
    let port = up.wait_ready(READY)["echo"];
    assert_eq!(echo_through(port, b"before").unwrap(), b"before");

    let mut broker = w.broker;
    let (api, quic, data_dir) = (
        broker.api.trim_start_matches("https://").to_owned(),
        broker.quic.clone(),
        broker.data_dir.clone(),
    );
    broker.signal("KILL");
    broker
        .wait_exit(Duration::from_secs(10))
        .expect("broker exits");
    let restarted = BrokerProcess::start_at(&data_dir, &api, &quic, &[], &[]);
    let again = up.wait_ready(READY);
    assert_eq!(again["echo"], port, "the local port stays the same");
    assert_eq!(echo_through(port, b"after").unwrap(), b"after");
    assert!(
        up.wait_log("disconnected", Duration::from_secs(5)),
        "{}",
        up.log()
    );
    drop(restarted);
}

#[test]
fn an_enrolment_code_works_once_in_sequence_and_in_a_race_of_fifty() {
    let w = World::new();
    w.person("r.race", "hr");
    let tmp = tempfile::tempdir().unwrap();

    let code = w.code(&["--personal", "r.race"]);
    let first = Agent::new(tmp.path().join("first")).run(&["enroll", &code], None);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let second = Agent::new(tmp.path().join("second")).run(&["enroll", &code], None);
    assert_eq!(second.code, 1);
    assert!(
        second.stderr.contains("already been used"),
        "{}",
        second.stderr
    );
    assert!(
        !tmp.path().join("second").join("device.pem").exists(),
        "a refused enrolment writes nothing"
    );

    let code = w.code(&["--personal", "r.race"]);
    let racers: Vec<_> = (0..50)
        .map(|i| {
            let agent = Agent::new(tmp.path().join(format!("racer-{i}")));
            let code = code.clone();
            std::thread::spawn(move || agent.run(&["enroll", &code], None))
        })
        .collect();
    let results: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    let won = results.iter().filter(|r| r.code == 0).count();
    assert_eq!(won, 1, "exactly one enrolment wins");
    for r in results.iter().filter(|r| r.code != 0) {
        assert!(r.stderr.contains("already been used"), "{}", r.stderr);
    }
}

#[test]
fn at_the_reserve_threshold_priority_three_waits_and_priority_one_gets_in() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("broker.toml");
    std::fs::write(
        &config,
        "[admission]\ncapacity = 4\nonly_priority_1_2_at = 50\nonly_priority_1_at = 75\n",
    )
    .unwrap();
    let w = World::with(&["--config", config.to_str().unwrap()], &[]);
    for (username, priority) in [
        ("f.one", "3"),
        ("f.two", "3"),
        ("w.three", "3"),
        ("v.ip", "1"),
    ] {
        w.broker.add_person_at(username, "hr", priority, PASSWORD);
    }
    // Two sessions: half the capacity, the first threshold.
    let first = w.agent("first", "f.one", None);
    let mut first_up = first.up(&[]);
    first_up.wait_ready(READY);
    let second = w.agent("second", "f.two", None);
    let mut second_up = second.up(&[]);
    second_up.wait_ready(READY);

    // Priority 3 is told to wait, and keeps trying with backoff.
    let waiting = w.agent("waiting", "w.three", None);
    let mut waiting_up = waiting.up(&[]);
    assert!(
        waiting_up.wait_log("at capacity, try again later", Duration::from_secs(20)),
        "{}",
        waiting_up.log()
    );
    assert_eq!(waiting_up.wait_exit(Duration::from_millis(500)), None);

    // Priority 1 gets in.
    let vip = w.agent("vip", "v.ip", None);
    let mut vip_up = vip.up(&[]);
    let forwards = vip_up.wait_ready(READY);
    assert_eq!(echo_through(forwards["echo"], b"in").unwrap(), b"in");

    let audit = w.broker.audit_json("session.open");
    assert!(audit.contains("at capacity"), "{}", audit);
    let metrics = w.broker.lanyard_metrics();
    assert!(
        metrics.contains("lanyard_denials_total{reason=\"at_capacity\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("lanyard_sessions_live 3"), "{metrics}");
}
