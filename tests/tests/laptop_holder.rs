//! Access that knows the inventory: a council laptop works for the person
//! it is allocated to, or any member of its pool group; a hand-over
//! changes access at once. Through the real binaries, on SQLite and on
//! PostgreSQL.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use lanyard_e2e::world::{closed_at, ended_after, live_connection, World, PASSWORD, READY};
use lanyard_e2e::{echo_through, Agent, TestStore};

/// The broker on SQLite, then (when configured) on PostgreSQL.
fn worlds() -> Vec<(World, Option<TestStore>)> {
    let mut all = vec![(World::new(), None)];
    let rt = tokio::runtime::Runtime::new().unwrap();
    match rt.block_on(TestStore::postgres()) {
        Some(pg) => {
            let url = pg.url();
            all.push((World::with(&["--database-url", &url], &[]), Some(pg)));
        }
        None => lanyard_broker::testkit::say_skipped(
            "the PostgreSQL half of the laptop-holder test (LANYARD_TEST_DATABASE_URL is not set)",
        ),
    }
    all
}

fn lanyard(w: &World, args: &[&str]) {
    w.broker.lanyard(args, None, None).ok();
}

/// `lanyard-agent login` on `agent` as `username`: its exit code and stderr.
fn login(agent: &Agent, username: &str) -> (i32, String) {
    let run = agent.run(
        &["login", username, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    (run.code, run.stderr)
}

#[test]
fn a_laptop_works_for_its_holder_and_a_hand_over_moves_access_at_once() {
    for (w, _pg) in worlds() {
        w.person("j.smith", "hr");
        w.person("a.patel", "hr");
        // The holder signs in and reaches an app.
        let agent = w.agent("lt-1", "j.smith", Some("LT-1"));
        let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
        let port = up.wait_ready(READY)["echo"];
        assert_eq!(echo_through(port, b"holder").unwrap(), b"holder");

        // A colleague on the same laptop is refused, with the reason.
        let (code, stderr) = login(&agent, "a.patel");
        assert_ne!(code, 0);
        assert!(
            stderr.contains("LT-1 is allocated to j.smith, not to a.patel"),
            "{stderr}"
        );

        // The return closes the holder's live tunnel within a second.
        let conn = live_connection(port);
        let waiter = std::thread::spawn(move || closed_at(conn, Duration::from_secs(5)));
        lanyard(&w, &["devices", "return", "LT-1"]);
        let returned = Instant::now();
        // From the instant the command returned to the instant the stream
        // ended (never ending within 5 s fails this too).
        let after = ended_after(waiter.join().unwrap(), returned, "return");
        assert!(
            after < Duration::from_secs(1),
            "the old holder's tunnel stayed open {after:?} after the return",
        );
        assert_eq!(
            up.wait_exit(Duration::from_secs(30)),
            Some(4),
            "not the exit status for \"sign in again\": {}",
            up.log()
        );
        assert!(up.log().contains("not allocated to anyone"), "{}", up.log());

        // The next holder signs in after the assignment, with no new
        // enrolment, and reaches the app.
        lanyard(&w, &["devices", "assign", "LT-1", "--to", "a.patel"]);
        let (code, stderr) = login(&agent, "a.patel");
        assert_eq!(code, 0, "{stderr}");
        let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
        let port = up.wait_ready(READY)["echo"];
        assert_eq!(echo_through(port, b"next").unwrap(), b"next");

        // In repair: refused for everyone.
        lanyard(&w, &["devices", "return", "LT-1", "--status", "in-repair"]);
        assert_eq!(
            up.wait_exit(Duration::from_secs(30)),
            Some(4),
            "not the exit status for \"sign in again\": {}",
            up.log()
        );
        let (code, stderr) = login(&agent, "a.patel");
        assert_ne!(code, 0);
        assert!(stderr.contains("LT-1 is in repair"), "{stderr}");

        // `devices show` tells who signed in, refusals too.
        let shown = w
            .broker
            .lanyard(&["devices", "show", "LT-1", "--json"], None, None)
            .ok();
        let shown: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
        let sign_ins: Vec<(String, String)> = shown["sign_ins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["username"].as_str().unwrap().to_owned(),
                    s["outcome"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = [
            ("a.patel", "denied"),
            ("a.patel", "ok"),
            ("a.patel", "denied"),
            ("j.smith", "ok"),
        ]
        .iter()
        .map(|(u, o)| (u.to_string(), o.to_string()))
        .collect();
        assert_eq!(sign_ins, expected, "{shown}");
    }
}

#[test]
fn a_pool_laptop_works_for_any_member_of_its_group_and_no_one_else() {
    for (w, _pg) in worlds() {
        lanyard(&w, &["groups", "add", "contact-centre"]);
        lanyard(
            &w,
            &[
                "devices",
                "add",
                "LT-POOL",
                "--serial",
                "P1",
                "--model",
                "T14",
                "--pool",
                "contact-centre",
            ],
        );
        w.broker.add_person("c.one", "contact-centre", PASSWORD);
        w.broker.add_person("c.two", "contact-centre", PASSWORD);
        w.person("h.other", "hr");
        let code = w.code(&["--device", "LT-POOL"]);
        let agent = Agent::new(w.tmp.path().join("pool"));
        agent.run(&["enroll", &code], None).ok();
        for member in ["c.one", "c.two"] {
            let (code, stderr) = login(&agent, member);
            assert_eq!(code, 0, "{member}: {stderr}");
        }
        let (code, stderr) = login(&agent, "h.other");
        assert_ne!(code, 0);
        assert!(
            stderr.contains("LT-POOL is a pool laptop of contact-centre"),
            "{stderr}"
        );
        // No longer a pool laptop: nobody holds it, so nobody gets in.
        lanyard(&w, &["devices", "mark", "LT-POOL", "--no-pool"]);
        let (code, stderr) = login(&agent, "c.one");
        assert_ne!(code, 0);
        assert!(stderr.contains("not allocated to anyone"), "{stderr}");
    }
}
