//! The tunnel benchmark: bulk throughput, first-byte latency and round
//! trips through one Lanyard tunnel (agent -> broker -> app, the real
//! release binaries on 127.0.0.1), side by side in the same run with direct
//! TCP and the peers, measured by the shared yardstick
//! `../shared/tools/peer-bench.sh`.
//!
//! ```sh
//! cargo bench -p lanyard-e2e --bench tunnel
//! LANYARD_BENCH_BYTES=2G LANYARD_BENCH_PEERS=direct,rathole-noise,stunnel cargo bench -p lanyard-e2e --bench tunnel
//! ```
//!
//! Environment: `PEER_BENCH` (path to peer-bench.sh), `LANYARD_BENCH_BYTES`
//! (bulk bytes, default 1G), `LANYARD_BENCH_PEERS` (default
//! `direct,rathole-noise`), `LANYARD_BENCH_ROUNDS` (default 2),
//! `LANYARD_BENCH_TTFB_N` (default 2000), `LANYARD_BENCH_RTT_N` (default 5000).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lanyard_e2e::{Agent, BrokerProcess};

const PASSWORD: &str = "Bench-Password-1234";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn peer_bench() -> PathBuf {
    if let Ok(p) = std::env::var("PEER_BENCH") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/peer-bench.sh")
}

/// One row of peer-bench's table: bulk Gbit/s, ttfb p50/p99, rtt p50/p99.
#[derive(Debug, Clone, Copy, Default)]
struct Row {
    bulk: Option<f64>,
    ttfb: Option<(f64, f64)>,
    rtt: Option<(f64, f64)>,
}

fn pair(cell: &str) -> Option<(f64, f64)> {
    let (a, b) = cell.split_once('/')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Reads the first table of peer-bench's report.
fn parse_report(report: &str) -> BTreeMap<String, Row> {
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for line in report.lines() {
        if line.starts_with("| tunnel | bulk") {
            in_table = true;
            continue;
        }
        if !in_table || line.starts_with("| ---") {
            continue;
        }
        if !line.starts_with('|') {
            if !rows.is_empty() {
                break;
            }
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 5 {
            continue;
        }
        rows.insert(
            cells[0].to_owned(),
            Row {
                bulk: cells[1].parse().ok(),
                ttfb: pair(cells[3]),
                rtt: pair(cells[4]),
            },
        );
    }
    rows
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".into(),
    }
}

fn main() {
    // `cargo bench` passes --bench; a filter that is not ours skips the run.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "tunnel".contains(a.as_str())) {
        return;
    }
    let script = peer_bench();
    if !script.exists() {
        eprintln!(
            "tunnel bench: {} not found; set PEER_BENCH to the path of peer-bench.sh",
            script.display()
        );
        std::process::exit(2);
    }
    let bytes = env_or("LANYARD_BENCH_BYTES", "1G");
    let peers = env_or("LANYARD_BENCH_PEERS", "direct,rathole-noise");
    let rounds = env_or("LANYARD_BENCH_ROUNDS", "2");
    let ttfb_n = env_or("LANYARD_BENCH_TTFB_N", "2000");
    let rtt_n = env_or("LANYARD_BENCH_RTT_N", "5000");

    let tmp = tempfile::tempdir().expect("temp dir");
    let port_file = tmp.path().join("target.port");
    let report_file = tmp.path().join("report.md");
    eprintln!("tunnel bench: starting peer-bench ({peers}; bulk {bytes}; {rounds} rounds)");
    let mut bench = Command::new("bash")
        .arg(&script)
        .args(["--target-port-file"])
        .arg(&port_file)
        .args(["--only", &peers, "--bytes", &bytes, "--rounds", &rounds])
        .args(["--ttfb-n", &ttfb_n, "--rtt-n", &rtt_n])
        .arg("--out")
        .arg(&report_file)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run peer-bench.sh");

    // The target app's port, once peer-bench has it listening.
    let start = Instant::now();
    let target_port = loop {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            if let Ok(p) = text.trim().parse::<u16>() {
                break p;
            }
        }
        if let Ok(Some(status)) = bench.try_wait() {
            eprintln!("tunnel bench: peer-bench ended early ({status})");
            std::process::exit(1);
        }
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "peer-bench never said where its target listens"
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    // A broker, a person, the app, an enrolled and signed-in agent.
    let broker = BrokerProcess::start(&tmp.path().join("broker"), &[], &[]);
    broker.lanyard(&["groups", "add", "bench"], None, None).ok();
    broker.add_person("b.bench", "bench", PASSWORD);
    broker
        .lanyard(
            &[
                "apps",
                "add",
                "target",
                "--target",
                &format!("127.0.0.1:{target_port}"),
                "--allow-group",
                "bench",
            ],
            None,
            None,
        )
        .ok();
    let code = broker
        .lanyard(
            &["enroll-code", "create", "--personal", "b.bench"],
            None,
            None,
        )
        .ok()
        .stdout;
    let agent = Agent::new(tmp.path().join("agent"));
    agent.enrol_and_login(code.trim(), "b.bench", PASSWORD);
    let mut up = agent.up(&["--forward", "target=127.0.0.1:0"]);
    let port = up.wait_ready(Duration::from_secs(60))["target"];
    eprintln!("tunnel bench: lanyard tunnel ready on 127.0.0.1:{port}");
    std::fs::write(
        tmp.path().join("target.port.go"),
        format!("lanyard={port}\n"),
    )
    .expect("write the go file");

    let status = bench.wait().expect("wait for peer-bench");
    let report = std::fs::read_to_string(&report_file).unwrap_or_default();
    println!("{report}");
    if !status.success() {
        eprintln!("tunnel bench: peer-bench failed ({status})");
        std::process::exit(1);
    }
    let rows = parse_report(&report);
    let ours = rows.get("lanyard").copied().unwrap_or_default();
    println!("## Lanyard against each, same run (ratio = lanyard / other)\n");
    println!("| against | bulk | ttfb p50 | ttfb p99 | rtt p50 | rtt p99 |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, row) in rows.iter().filter(|(n, _)| n.as_str() != "lanyard") {
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            ratio(ours.bulk, row.bulk),
            ratio(ours.ttfb.map(|t| t.0), row.ttfb.map(|t| t.0)),
            ratio(ours.ttfb.map(|t| t.1), row.ttfb.map(|t| t.1)),
            ratio(ours.rtt.map(|t| t.0), row.rtt.map(|t| t.0)),
            ratio(ours.rtt.map(|t| t.1), row.rtt.map(|t| t.1)),
        );
    }
    println!("\nbulk: higher is better (goal: >= 1.5 against rathole-noise); latencies: lower is better (goal: ttfb p50 <= 1.0 against rathole-noise).");
    drop(up);
    drop(broker);
}
