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
//! `LANYARD_BENCH_TTFB_N` (default 2000), `LANYARD_BENCH_RTT_N` (default 5000),
//! `LANYARD_BENCH_DOWNLOAD` (bytes the app sends back to the client in the
//! download measurement, default 1G; 0 skips it).
//!
//! peer-bench's bulk flow goes from the client to the app (an upload). The
//! download measurement after it sends the other way, app to client, through
//! the same tunnel and directly, in as many rounds: the broker is then the
//! one sending packets.

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

    let download_bytes = parse_bytes(&env_or("LANYARD_BENCH_DOWNLOAD", "1G"));
    let download_port = download_server();

    // A broker, a person, the apps, an enrolled and signed-in agent.
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
    broker
        .lanyard(
            &[
                "apps",
                "add",
                "download",
                "--target",
                &format!("127.0.0.1:{download_port}"),
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
    let mut up = agent.up(&[
        "--forward",
        "target=127.0.0.1:0",
        "--forward",
        "download=127.0.0.1:0",
    ]);
    let ports = up.wait_ready(Duration::from_secs(60));
    let port = ports["target"];
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
    if download_bytes > 0 {
        let rounds: usize = rounds.parse().unwrap_or(2).max(1);
        download_table(download_bytes, rounds, download_port, ports["download"]);
    }
    drop(up);
    drop(broker);
}

/// `512M`, `1G`, `4096`: a byte count (binary units).
fn parse_bytes(text: &str) -> u64 {
    let t = text.trim().trim_end_matches(['B', 'b', 'i']);
    let (num, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let n: f64 = num
        .parse()
        .unwrap_or_else(|_| panic!("not a byte count: {text}"));
    let scale = match unit.to_ascii_uppercase().as_str() {
        "" => 1u64,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => panic!("not a byte count: {text}"),
    };
    (n * scale as f64) as u64
}

/// A TCP app on 127.0.0.1 that reads an 8-byte count and sends that many
/// bytes back, then closes; its port.
fn download_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the download app");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut s = conn;
                let _ = s.set_nodelay(true);
                let mut count = [0u8; 8];
                if s.read_exact(&mut count).is_err() {
                    return;
                }
                let mut left = u64::from_be_bytes(count);
                let chunk = vec![0x5au8; 1 << 20];
                while left > 0 {
                    let k = left.min(chunk.len() as u64) as usize;
                    if s.write_all(&chunk[..k]).is_err() {
                        return;
                    }
                    left -= k as u64;
                }
            });
        }
    });
    port
}

/// Asks the app at `port` for `bytes` and reads them all; Gbit/s.
fn download_once(port: u16, bytes: u64) -> f64 {
    use std::io::{Read, Write};
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect for a download");
    let _ = s.set_nodelay(true);
    s.write_all(&bytes.to_be_bytes())
        .expect("ask for the download");
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("download broke after {got} bytes: {e}"),
        }
    }
    assert_eq!(got, bytes, "the download ended early");
    got as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9
}

/// Download rounds, direct and through the tunnel alternately; the table.
fn download_table(bytes: u64, rounds: usize, direct: u16, tunnel: u16) {
    eprintln!("tunnel bench: download, {bytes} bytes, {rounds} rounds");
    let (mut d, mut l) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        d.push(download_once(direct, bytes));
        l.push(download_once(tunnel, bytes));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (dm, lm) = (median(&mut d), median(&mut l));
    println!("\n## Download (app to client, one TCP flow of {bytes} bytes, median of {rounds})\n");
    println!("| tunnel | Gbit/s | ratio to direct |");
    println!("| --- | ---: | ---: |");
    println!("| direct | {dm:.2} | 1.00 |");
    println!("| lanyard | {lm:.2} | {:.2} |", lm / dm);
}
