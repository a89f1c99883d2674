//! The failover benchmark: N simulated agents (`lanyard stress`) hold
//! sessions on node A of three broker nodes sharing one PostgreSQL; A is
//! killed with SIGKILL, and the bench times how long until each agent has a
//! session again, as the other nodes count them (node B's `sessions list`,
//! which shows every node's sessions, polled every 250 ms: each new
//! session on B or C is timed when it is first listed).
//!
//! ```sh
//! LANYARD_TEST_DATABASE_URL=postgres://... cargo bench -p lanyard-e2e --bench failover
//! LANYARD_FAILOVER_AGENTS=200 cargo bench -p lanyard-e2e --bench failover
//! ```
//!
//! Environment: `LANYARD_TEST_DATABASE_URL` (without it the bench says so
//! and stops), `LANYARD_FAILOVER_AGENTS` (default 1000),
//! `LANYARD_FAILOVER_RATE` (agents started per second, default 25: each
//! one enrols and signs in, an argon2 hash), `LANYARD_FAILOVER_IDLE` (the
//! nodes' `[limits] quic_idle_timeout`, default 6s: a killed node's agents
//! notice it once that much has passed since their last keepalive, i.e. 0
//! to 5 s more, so it is part of every figure).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lanyard_e2e::{bin, BrokerProcess};

const LOG: [(&str, &str); 1] = [("LANYARD_LOG", "warn")];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("node dir");
    for entry in std::fs::read_dir(from).expect("data dir") {
        let entry = entry.expect("data dir entry");
        if entry.file_type().expect("file type").is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

/// Every node's live sessions as `broker` lists them: id → node.
fn sessions(broker: &BrokerProcess) -> HashMap<String, String> {
    let run = broker.lanyard(&["sessions", "list", "--json"], None, None);
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&run.stdout) else {
        return HashMap::new();
    };
    v.as_array()
        .map(|all| {
            all.iter()
                .filter_map(|s| {
                    Some((s["id"].as_str()?.to_owned(), s["node"].as_str()?.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "failover".contains(a.as_str())) {
        return;
    }
    let n: usize = std::env::var("LANYARD_FAILOVER_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .max(1);
    let rate: usize = std::env::var("LANYARD_FAILOVER_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
        .max(1);
    let idle = std::env::var("LANYARD_FAILOVER_IDLE").unwrap_or_else(|_| "6s".into());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let Some(pg) = rt.block_on(lanyard_e2e::TestStore::postgres()) else {
        eprintln!("failover: LANYARD_TEST_DATABASE_URL is not set; nothing measured");
        return;
    };
    let url = pg.url();
    let tmp = tempfile::tempdir().expect("temp dir");
    let config = tmp.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[limits]\nagents = {}\nquic_idle_timeout = \"{idle}\"\n[admission]\ncapacity = {}\n",
            n + 100,
            n * 2
        ),
    )
    .expect("config");
    let config = config.to_str().expect("utf-8 path");
    let node = |name: &str, dir: &Path| {
        BrokerProcess::start(
            dir,
            &["--database-url", &url, "--node", name, "--config", config],
            &LOG,
        )
    };
    let a = node("node-a", &tmp.path().join("node-a"));
    let start_copy = |name: &str| {
        let dir = tmp.path().join(name);
        copy_dir(&a.data_dir, &dir);
        node(name, &dir)
    };
    let b = start_copy("node-b");
    let _c = start_copy("node-c");

    // The agents enrol through A (its codes carry all three addresses) and
    // hold their sessions there, idle, well past the failover.
    let ramp = n.div_ceil(rate) as u64;
    let hold = 120u64;
    eprintln!("failover: {n} agents onto node A over {ramp} s");
    let mut stress = Command::new(bin("lanyard"))
        .args(["stress", "--agents", &n.to_string()])
        .args([
            "--ramp",
            &format!("{ramp}s"),
            "--duration",
            &format!("{hold}s"),
        ])
        .args(["--streams-per-agent", "1", "--bytes-per-stream", "1024"])
        .args(["--streams-per-minute", "0"])
        .env("LANYARD_BROKER", &a.api)
        .env("LANYARD_CA_CERT", a.data_dir.join("ca.pem"))
        .env("LANYARD_TOKEN", a.admin_token())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run lanyard stress");
    let deadline = Instant::now() + Duration::from_secs(ramp + 60);
    let before = loop {
        let all = sessions(&b);
        let on_a = all.values().filter(|node| *node == "node-a").count();
        if on_a >= n {
            break all;
        }
        if Instant::now() > deadline {
            eprintln!("failover: only {on_a} of {n} agents reached node A; measuring those");
            break all;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let held = before.values().filter(|node| *node == "node-a").count();
    let old: HashSet<String> = before.into_keys().collect();

    let mut a = a;
    a.signal("KILL");
    let killed = Instant::now();
    a.wait_exit(Duration::from_secs(10));
    eprintln!("failover: node A killed with {held} agents");
    let mut back: HashMap<String, Duration> = HashMap::new();
    let limit = Duration::from_secs(hold / 2);
    while back.len() < held && killed.elapsed() < limit {
        let polled = killed.elapsed();
        for (id, node) in sessions(&b) {
            if node != "node-a" && !old.contains(&id) {
                back.entry(id).or_insert(polled);
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = stress.kill();
    let _ = stress.wait();

    let mut times: Vec<Duration> = back.into_values().collect();
    times.sort();
    println!("failover ({held} agents on the killed node, quic_idle_timeout {idle}, 3 nodes):");
    println!(
        "  back on another node: {} of {held} within {:.1} s",
        times.len(),
        limit.as_secs_f64()
    );
    if !times.is_empty() {
        println!(
            "  time to a session again: p50 {:.2} s  p99 {:.2} s  max {:.2} s",
            percentile(&times, 0.50).as_secs_f64(),
            percentile(&times, 0.99).as_secs_f64(),
            times[times.len() - 1].as_secs_f64()
        );
    }
    drop(pg);
}
