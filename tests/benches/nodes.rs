//! The several-nodes benchmark, on PostgreSQL (`LANYARD_TEST_DATABASE_URL`):
//!
//! 1. Cross-node revocation: a live tunnel stream held on node B, the app
//!    removed through node A's API, timed to the instant the stream ends;
//!    then the app is added back and a new stream opened. Repeated
//!    `LANYARD_NODES_REVOCATIONS` times (default 100).
//! 2. The audit log's size per 1,000 sessions: `lanyard stress` brings
//!    `LANYARD_NODES_SESSIONS` agents (default 300) through node B, each
//!    with one session; the rows and bytes the run added are counted by
//!    action and scaled to 1,000 sessions.
//!
//! ```sh
//! LANYARD_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo bench -p lanyard-e2e --bench nodes
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lanyard_e2e::world::{closed_at, PASSWORD};
use lanyard_e2e::{bin, echo_server, Agent, BrokerProcess, TestStore};

const LOG: [(&str, &str); 1] = [("LANYARD_LOG", "warn")];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("data dir");
    for entry in std::fs::read_dir(from).expect("data dir") {
        let entry = entry.expect("entry");
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "nodes".contains(a.as_str())) {
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let Some(pg) = rt.block_on(TestStore::postgres()) else {
        println!("nodes: skipped (LANYARD_TEST_DATABASE_URL is not set)");
        return;
    };
    let url = pg.url();
    let tmp = tempfile::tempdir().expect("temp dir");
    let a = BrokerProcess::start(
        &tmp.path().join("a"),
        &["--database-url", &url, "--node", "node-a"],
        &LOG,
    );
    copy_dir(&a.data_dir, &tmp.path().join("b"));
    let b = BrokerProcess::start(
        &tmp.path().join("b"),
        &["--database-url", &url, "--node", "node-b"],
        &LOG,
    );
    revocations(&a, &b, tmp.path());
    audit_size(&b, &url, &rt);
}

fn revocations(a: &BrokerProcess, b: &BrokerProcess, dir: &Path) {
    let n: usize = std::env::var("LANYARD_NODES_REVOCATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let echo = echo_server().to_string();
    a.lanyard(&["groups", "add", "hr"], None, None).ok();
    let add_app = || {
        a.lanyard(
            &[
                "apps",
                "add",
                "echo",
                "--target",
                &echo,
                "--allow-group",
                "hr",
            ],
            None,
            None,
        )
        .ok();
    };
    add_app();
    a.add_person("r.bench", "hr", PASSWORD);
    let code = b
        .lanyard(
            &["enroll-code", "create", "--personal", "r.bench"],
            None,
            None,
        )
        .ok()
        .stdout
        .trim()
        .to_owned();
    let agent = Agent::new(dir.join("agent"));
    agent.enrol_and_login(&code, "r.bench", PASSWORD);
    let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
    let port = up.wait_ready(Duration::from_secs(30))["echo"];

    let (mut after_return, mut from_start) = (Vec::new(), Vec::new());
    let mut missed = 0;
    for _ in 0..n {
        // The app comes back on node A; node B must know before a stream
        // to it is let through.
        let conn = wait_live(port);
        let waiter = std::thread::spawn(move || closed_at(conn, Duration::from_secs(10)));
        let started = Instant::now();
        a.lanyard(&["apps", "remove", "echo"], None, None).ok();
        let returned = Instant::now();
        match waiter.join().expect("waiter") {
            Some(at) => {
                after_return.push(at.saturating_duration_since(returned).as_secs_f64() * 1e3);
                from_start.push(at.saturating_duration_since(started).as_secs_f64() * 1e3);
            }
            None => missed += 1,
        }
        add_app();
    }
    let _ = up.child.kill();
    after_return.sort_by(f64::total_cmp);
    from_start.sort_by(f64::total_cmp);
    println!("cross-node revocation (app removed on node A, live stream on node B), {n} times:");
    println!(
        "  stream ended after the command returned: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        percentile(&after_return, 0.5),
        percentile(&after_return, 0.99),
        after_return.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  from the command's start (CLI, HTTPS, commit, NOTIFY, reload): p50 {:.1} ms  p99 {:.1} ms",
        percentile(&from_start, 0.5),
        percentile(&from_start, 0.99)
    );
    println!("  streams never ended within 10 s: {missed}");
}

/// A live stream through the agent's forward, once the app is allowed again
/// (node B may take a moment to hear of it).
fn wait_live(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("forward");
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let mut buf = [0u8; 4];
        if conn.write_all(b"ping").is_ok() && conn.read_exact(&mut buf).is_ok() && &buf == b"ping" {
            return conn;
        }
        assert!(
            Instant::now() < deadline,
            "the app never came back on node B"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn audit_size(b: &BrokerProcess, url: &str, rt: &tokio::runtime::Runtime) {
    let n: u64 = std::env::var("LANYARD_NODES_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let counts = |rt: &tokio::runtime::Runtime| -> Vec<(String, i64, i64)> {
        rt.block_on(async {
            let store = lanyard_broker::store::Store::connect(url).await.expect("store");
            let rows: Vec<(String, i64, i64)> = sqlx::query_as(
                "SELECT action, COUNT(*), CAST(SUM(LENGTH(actor) + LENGTH(action) + LENGTH(target)
                        + LENGTH(outcome) + LENGTH(detail) + LENGTH(prev_hash) + LENGTH(hash) + 16) AS BIGINT)
                 FROM audit_log GROUP BY action ORDER BY action",
            )
            .fetch_all(store.pool())
            .await
            .expect("count audit rows");
            store.close().await;
            rows
        })
    };
    let before = counts(rt);
    let json = b.data_dir.with_extension("stress.json");
    let status = Command::new(bin("lanyard"))
        .args(["stress", "--agents", &n.to_string()])
        .args(["--ramp", &format!("{}s", n.div_ceil(25))])
        .args([
            "--duration",
            "5s",
            "--streams-per-agent",
            "2",
            "--bytes-per-stream",
            "4096",
        ])
        .arg("--json-out")
        .arg(&json)
        .env("LANYARD_BROKER", &b.api)
        .env("LANYARD_CA_CERT", b.data_dir.join("ca.pem"))
        .env("LANYARD_TOKEN", b.admin_token())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("lanyard stress");
    // Every session has ended (and been recorded) once its agent is gone.
    std::thread::sleep(Duration::from_secs(3));
    let after = counts(rt);
    let sessions = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["agents_connected"].as_u64())
        .unwrap_or(0);
    println!(
        "audit log per 1,000 sessions (stress with {n} agents, {sessions} sessions, exit {:?}):",
        status.code()
    );
    let scale = 1000.0 / sessions.max(1) as f64;
    for (action, rows, bytes) in &after {
        let (r0, b0) = before
            .iter()
            .find(|(a, _, _)| a == action)
            .map(|(_, r, b)| (*r, *b))
            .unwrap_or((0, 0));
        if rows > &r0 {
            println!(
                "  {action:<20} {:>8.0} rows  {:>8.1} KiB",
                (rows - r0) as f64 * scale,
                (bytes - b0) as f64 * scale / 1024.0
            );
        }
    }
}
