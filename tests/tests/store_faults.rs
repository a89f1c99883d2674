//! Faults a real deployment meets in its store: the database out of reach
//! (a PostgreSQL link gone silent, a SQLite file locked by another
//! connection), then back; and a full disk under the SQLite data dir. The
//! broker answers "unavailable" within seconds, writes nothing by halves,
//! and recovers by itself.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use lanyard_e2e::world::{World, PASSWORD};
use lanyard_e2e::{Agent, BrokerProcess, Run};

/// The longest an answer may take while the store is out of reach: a few
/// seconds, well below the agent's 30 s and the CLI's 120 s.
const PROMPT: Duration = Duration::from_secs(12);

/// What the API and the agent say when the store cannot answer.
const UNAVAILABLE: &str = "store is unavailable";

/// One API request with the admin token; its status and body.
fn api(broker: &BrokerProcess, method: &str, path: &str, body: &str) -> (u16, String) {
    let tcp = std::net::TcpStream::connect(broker.api_addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut tls = broker.tls_over(tcp);
    write!(
        tls,
        "{method} /api/v1{path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        broker.api_addr(),
        broker.admin_token(),
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {response:?}"));
    (status, response)
}

/// Runs `what`, asserting it failed within [`PROMPT`] saying the store is
/// unavailable; how long it took.
/// A second connection to the broker's SQLite file holding its write lock
/// (`BEGIN EXCLUSIVE`) until it is rolled back or dropped.
fn lock_database(rt: &tokio::runtime::Runtime, broker: &BrokerProcess) -> sqlx::SqliteConnection {
    let db = broker.data_dir.join("lanyard.db");
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut conn)
            .await
            .unwrap();
        conn
    })
}

fn refused_promptly(what: &str, run: impl FnOnce() -> Run) -> Duration {
    let started = Instant::now();
    let run = run();
    let took = started.elapsed();
    assert_ne!(run.code, 0, "{what} succeeded with the store out of reach");
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains(UNAVAILABLE),
        "{what} did not say the store is unavailable: {said}"
    );
    assert!(took < PROMPT, "{what} took {took:?} to fail");
    took
}

/// Retries `attempt` until it succeeds, for at most `limit`.
fn recovers(what: &str, limit: Duration, attempt: impl Fn() -> Run) -> Run {
    let deadline = Instant::now() + limit;
    loop {
        let run = attempt();
        if run.code == 0 {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not recover: {}{}",
            run.stdout,
            run.stderr
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn alive(broker: &mut BrokerProcess) {
    assert_eq!(broker.child.try_wait().unwrap(), None, "the broker exited");
    let log = broker.log_text();
    assert!(!log.contains("panicked"), "the broker panicked:\n{log}");
}

fn add_staff(broker: &BrokerProcess, username: &str) -> Run {
    broker.lanyard(
        &[
            "staff",
            "add",
            username,
            "--name",
            username,
            "--group",
            "hr",
            "--password-stdin",
        ],
        None,
        Some(&format!("{PASSWORD}\n")),
    )
}

fn login(agent: &Agent, username: &str) -> Run {
    agent.run(
        &["login", username, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    )
}

/// With PostgreSQL behind a link gone silent (no error, only waiting), the
/// API answers 503, and sign-in and enrolment over QUIC are refused as
/// "unavailable", each within seconds; the broker stays up, and once the
/// link is back everything works again with no one stepping in.
#[test]
fn a_silent_postgres_link_is_unavailable_promptly_then_recovers() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(pg) = rt.block_on(lanyard_e2e::TestStore::postgres()) else {
        lanyard_broker::testkit::say_skipped(
            "LANYARD_TEST_DATABASE_URL is not set, so the PostgreSQL link was not cut",
        );
        return;
    };
    let url = pg.url();
    let (link, linked) = lanyard_e2e::store_link::StoreLink::in_front_of(&url);
    let mut w = World::with(&["--database-url", &linked], &[]);
    w.person("p.signin", "hr");
    w.person("p.enrol", "hr");
    // Enrolled, not yet signed in; and a code not yet used.
    let signing = Agent::new(w.tmp.path().join("signing"));
    let code = w.code(&["--personal", "p.signin"]);
    signing.run(&["enroll", &code], None).ok();
    let enrolling = Agent::new(w.tmp.path().join("enrolling"));
    let code = w.code(&["--personal", "p.enrol"]);

    link.cut();
    let started = Instant::now();
    let (status, body) = api(&w.broker, "GET", "/staff", "");
    let took = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(UNAVAILABLE), "{body}");
    assert!(took < PROMPT, "GET /staff took {took:?}");
    let added = refused_promptly("staff add", || add_staff(&w.broker, "p.later"));
    let signed = refused_promptly("sign-in", || login(&signing, "p.signin"));
    let enrolled = refused_promptly("enrolment", || enrolling.run(&["enroll", &code], None));
    eprintln!("refused: staff add {added:?}, sign-in {signed:?}, enrolment {enrolled:?}");
    alive(&mut w.broker);

    link.restore();
    let limit = Duration::from_secs(30);
    recovers("staff add", limit, || add_staff(&w.broker, "p.later"));
    recovers("sign-in", limit, || login(&signing, "p.signin"));
    recovers("enrolment", limit, || {
        enrolling.run(&["enroll", &code], None)
    });
    login(&enrolling, "p.enrol").ok();
    assert_eq!(api(&w.broker, "GET", "/staff", "").0, 200);
    w.broker.lanyard(&["audit", "verify"], None, None).ok();
    alive(&mut w.broker);
}

/// With the SQLite database held by another connection's exclusive
/// transaction, every write (an admin's change, a sign-in, an enrolment)
/// is refused as "unavailable" within seconds (503 on the API) while reads
/// still answer; once the lock is let go, the same requests succeed.
#[test]
fn a_locked_sqlite_database_is_unavailable_promptly_then_recovers() {
    let mut w = World::new();
    w.person("p.signin", "hr");
    w.person("p.enrol", "hr");
    let signing = Agent::new(w.tmp.path().join("signing"));
    let code = w.code(&["--personal", "p.signin"]);
    signing.run(&["enroll", &code], None).ok();
    let enrolling = Agent::new(w.tmp.path().join("enrolling"));
    let code = w.code(&["--personal", "p.enrol"]);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut holder = lock_database(&rt, &w.broker);

    let body = r#"{"username":"p.api","name":"p.api","groups":["hr"],"password":"Correct-Horse-Battery-9"}"#;
    let started = Instant::now();
    let (status, answer) = api(&w.broker, "POST", "/staff", body);
    let took = started.elapsed();
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains(UNAVAILABLE), "{answer}");
    assert!(took < PROMPT, "POST /staff took {took:?}");
    let added = refused_promptly("staff add", || add_staff(&w.broker, "p.later"));
    let signed = refused_promptly("sign-in", || login(&signing, "p.signin"));
    let enrolled = refused_promptly("enrolment", || enrolling.run(&["enroll", &code], None));
    eprintln!("refused: staff add {added:?}, sign-in {signed:?}, enrolment {enrolled:?}");
    // Reading does not need the write lock.
    let listed = w.broker.lanyard(&["staff", "list"], None, None).ok();
    assert!(!listed.stdout.contains("p.later"), "{}", listed.stdout);
    alive(&mut w.broker);

    rt.block_on(async {
        sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    });
    drop(holder);
    let limit = Duration::from_secs(20);
    recovers("staff add", limit, || add_staff(&w.broker, "p.later"));
    recovers("sign-in", limit, || login(&signing, "p.signin"));
    recovers("enrolment", limit, || {
        enrolling.run(&["enroll", &code], None)
    });
    login(&enrolling, "p.enrol").ok();
    w.broker.lanyard(&["audit", "verify"], None, None).ok();
    alive(&mut w.broker);
}

/// A tmpfs mounted for the length of a test.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts a small tmpfs (root only), or says why not.
    fn mount(at: &std::path::Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(at).unwrap();
        let run = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if !run.status.success() {
            return Err(String::from_utf8_lossy(&run.stderr).trim().to_owned());
        }
        Ok(Self(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes `path` until the file system is full; how many bytes it took.
fn fill(path: &std::path::Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5au8; 16 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = file.sync_all();
    written
}

/// `lanyard ARGS`, which must succeed (else the broker's log is shown).
fn must(broker: &BrokerProcess, args: &[&str]) -> Run {
    let run = broker.lanyard(args, None, None);
    assert_eq!(
        run.code,
        0,
        "lanyard {args:?} failed: {}\nbroker log:\n{}",
        run.stderr,
        broker.log_text()
    );
    run
}

/// The broker's SQLite data dir on a small file system that fills up: an
/// audited change is refused with 503 "store unavailable", and nothing of
/// it is written (neither the change nor its audit row: the chain still
/// verifies); once space returns, the same change goes through.
#[test]
fn a_full_disk_refuses_audited_changes_whole_then_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let _fs = match Tmpfs::mount(&data, "8m") {
        Ok(fs) => fs,
        Err(why) => {
            lanyard_broker::testkit::say_skipped(&format!(
                "cannot mount a tmpfs ({why}), so the disk was not filled"
            ));
            return;
        }
    };
    let mut broker = BrokerProcess::start(&data, &[], &[]);
    broker.lanyard(&["groups", "add", "hr"], None, None).ok();
    add_staff(&broker, "p.before").ok();

    // The write-ahead log emptied into the database, so that the next
    // write needs space of its own; then no space is left.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let db = data.join("lanyard.db");
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    });
    let filler = data.join("filler");
    let filled = fill(&filler);
    assert!(filled > 0, "nothing was written to fill the disk");

    let audit_rows = |b: &BrokerProcess| -> usize {
        let rows = must(b, &["audit", "list", "--limit", "1000", "--json"]);
        let rows: serde_json::Value = serde_json::from_str(&rows.stdout).unwrap();
        rows.as_array().unwrap().len()
    };
    let rows_before = audit_rows(&broker);
    let body = r#"{"username":"p.api","name":"p.api","groups":["hr"]}"#;
    let (status, answer) = api(&broker, "POST", "/staff", body);
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains(UNAVAILABLE), "{answer}");
    let took = refused_promptly("staff add", || add_staff(&broker, "p.full"));
    eprintln!("staff add refused after {took:?} with the disk full");
    let revoke = broker.lanyard(&["staff", "disable", "p.before"], None, None);
    assert_ne!(revoke.code, 0, "a disable went through on a full disk");
    assert!(revoke.stderr.contains(UNAVAILABLE), "{}", revoke.stderr);

    // Nothing half-written: no person, no audit row, the chain intact.
    let listed = must(&broker, &["staff", "list"]).stdout;
    assert!(
        !listed.contains("p.full") && !listed.contains("p.api"),
        "{listed}"
    );
    assert_eq!(audit_rows(&broker), rows_before, "an audit row was written");
    must(&broker, &["audit", "verify"]);
    alive(&mut broker);

    std::fs::remove_file(&filler).unwrap();
    recovers("staff add", Duration::from_secs(20), || {
        add_staff(&broker, "p.full")
    });
    must(&broker, &["staff", "disable", "p.before"]);
    let (status, answer) = api(&broker, "POST", "/staff", body);
    assert_eq!(status, 201, "{answer}\nbroker log:\n{}", broker.log_text());
    // Every pooled connection is whole again: each change is kept, and
    // seen at once by the next request, whichever connection serves it.
    for n in 0..12 {
        let name = format!("p.after{n}");
        let body = format!(r#"{{"username":"{name}","name":"{name}","groups":["hr"]}}"#);
        let (status, answer) = api(&broker, "POST", "/staff", &body);
        assert_eq!(status, 201, "{answer}\nbroker log:\n{}", broker.log_text());
        let (status, answer) = api(&broker, "GET", &format!("/staff/{name}"), "");
        assert_eq!(status, 200, "{answer}\nbroker log:\n{}", broker.log_text());
    }
    let listed = must(&broker, &["staff", "list"]).stdout;
    assert!(
        listed.contains("p.full") && listed.contains("p.api"),
        "{listed}"
    );
    must(&broker, &["audit", "verify"]);
    alive(&mut broker);
}

/// How long device certificates live in the expiry tests.
const CERT_TTL: Duration = Duration::from_secs(20);

/// A world whose device certificates live [`CERT_TTL`], with an agent of
/// `p.cert` on a personal device holding a live tunnel to `echo`; the
/// instants just before its enrolment began and just after it ended (its
/// certificate runs out between `CERT_TTL` after each).
fn short_lived_certificate() -> (
    World,
    lanyard_e2e::UpProcess,
    std::net::TcpStream,
    Instant,
    Instant,
) {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[enrolment]\ndevice_cert_ttl = \"{}s\"\n",
            CERT_TTL.as_secs()
        ),
    )
    .unwrap();
    let w = World::with(&["--config", config.to_str().unwrap()], &[]);
    w.person("p.cert", "hr");
    let code = w.code(&["--personal", "p.cert"]);
    let agent = Agent::new(w.tmp.path().join("laptop"));
    let before = Instant::now();
    agent.enrol_and_login(&code, "p.cert", PASSWORD);
    let after = Instant::now();
    let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
    let port = up.wait_ready(lanyard_e2e::world::READY)["echo"];
    let conn = lanyard_e2e::world::live_connection(port);
    drop(tmp);
    (w, up, conn, before, after)
}

/// A certificate that runs out mid-session: the agent renews it at half
/// its life over the session's own connection, and the live tunnel goes
/// on past the old certificate's end.
#[test]
fn a_renewed_certificate_carries_a_live_tunnel_past_the_old_end() {
    let (w, mut up, mut conn, _, enrolled) = short_lived_certificate();
    let past_end = enrolled + CERT_TTL + Duration::from_secs(3);
    let agent = Agent::new(w.tmp.path().join("laptop"));
    let expiry = || {
        let status = agent.run(&["status", "--json"], None).ok().stdout;
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        status["certificate_expires_at"].clone()
    };
    let first = expiry();
    assert!(
        up.wait_log("renewed the device certificate", CERT_TTL),
        "no renewal in the agent's log:\n{}",
        up.log()
    );
    assert_ne!(expiry(), first, "the renewed certificate was not kept");
    std::thread::sleep(past_end.saturating_duration_since(Instant::now()));
    let mut back = [0u8; 5];
    let echoed = conn
        .write_all(b"still")
        .and_then(|()| conn.read_exact(&mut back));
    echoed.unwrap_or_else(|e| {
        panic!(
            "the live tunnel ended at the old certificate's end ({e}); agent log:\n{}",
            up.log()
        )
    });
    assert_eq!(&back, b"still");
    assert_eq!(up.child.try_wait().unwrap(), None, "{}", up.log());
    let ends = w.broker.audit_json("session.end");
    assert!(!ends.contains("p.cert"), "the session ended: {ends}");
}

/// A certificate that cannot be renewed (the store refuses every write:
/// its SQLite file is held by another connection's exclusive transaction,
/// reads still answer): the live tunnel closes when the certificate runs
/// out, and the agent stops instead of redialling with an expired
/// certificate, saying why.
#[test]
fn an_unrenewable_certificate_ends_the_tunnel_at_its_end_and_the_agent_stops() {
    let (w, mut up, conn, enrolling, enrolled) = short_lived_certificate();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut holder = lock_database(&rt, &w.broker);
    let closed = lanyard_e2e::world::closed_at(conn, CERT_TTL + Duration::from_secs(10));
    let closed = closed.unwrap_or_else(|| {
        panic!(
            "the tunnel outlived its certificate; agent log:\n{}",
            up.log()
        )
    });
    assert!(
        closed >= enrolling + CERT_TTL - Duration::from_secs(1),
        "the tunnel closed {:?} before the certificate's end",
        (enrolling + CERT_TTL).saturating_duration_since(closed)
    );
    assert!(
        closed <= enrolled + CERT_TTL + Duration::from_secs(5),
        "the tunnel closed {:?} after the certificate's end",
        closed.saturating_duration_since(enrolled + CERT_TTL)
    );
    // It stops at once rather than redial with the expired certificate.
    let code = up.wait_exit(Duration::from_secs(5));
    let log = up.log();
    assert!(
        matches!(code, Some(c) if c != 0),
        "the agent did not stop ({code:?}):\n{log}"
    );
    assert!(log.contains("renewal failed"), "{log}");
    assert!(
        log.contains("the device certificate has expired"),
        "the agent did not say why it stopped:\n{log}"
    );
    rt.block_on(async {
        sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    });
}
