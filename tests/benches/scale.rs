//! The scale benchmark: memory per connected idle agent, and connect and
//! stream-open latency, with N simulated agents (`lanyard stress`) against
//! the release broker on 127.0.0.1.
//!
//! ```sh
//! cargo bench -p lanyard-e2e --bench scale
//! LANYARD_SCALE_AGENTS=1000,10000 cargo bench -p lanyard-e2e --bench scale
//! ```
//!
//! Environment: `LANYARD_SCALE_AGENTS` (comma list, default 1000),
//! `LANYARD_SCALE_RATE` (agents started per second, default 50: each one
//! enrols and signs in, and a sign-in costs an argon2 hash).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lanyard_e2e::{bin, BrokerProcess};

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn live_agents(broker: &BrokerProcess) -> u64 {
    let load = broker.lanyard(&["load", "--json"], None, None);
    serde_json::from_str::<serde_json::Value>(&load.stdout)
        .ok()
        .and_then(|v| v["agents"].as_u64())
        .unwrap_or(0)
}

/// Starts `lanyard stress` with `n` agents over `ramp_s` seconds.
fn run_stress(
    broker: &BrokerProcess,
    n: u64,
    ramp_s: u64,
    json: &std::path::Path,
) -> std::process::Child {
    Command::new(bin("lanyard"))
        .args(["stress", "--agents", &n.to_string()])
        .args(["--ramp", &format!("{ramp_s}s"), "--duration", "15s"])
        .args(["--streams-per-agent", "1", "--bytes-per-stream", "1024"])
        .arg("--json-out")
        .arg(json)
        .env("LANYARD_BROKER", &broker.api)
        .env("LANYARD_CA_CERT", broker.data_dir.join("ca.pem"))
        .env("LANYARD_TOKEN", broker.admin_token())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run lanyard stress")
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "scale".contains(a.as_str())) {
        return;
    }
    let counts: Vec<u64> = std::env::var("LANYARD_SCALE_AGENTS")
        .unwrap_or_else(|_| "1000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let rate: u64 = std::env::var("LANYARD_SCALE_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50)
        .max(1);
    let mut rows = Vec::new();
    for n in counts {
        let tmp = tempfile::tempdir().expect("temp dir");
        let config = tmp.path().join("broker.toml");
        std::fs::write(
            &config,
            format!(
                "[limits]\nagents = {}\n[admission]\ncapacity = {}\n",
                n + 100,
                n * 2
            ),
        )
        .expect("config");
        let broker = BrokerProcess::start(
            &tmp.path().join("data"),
            &["--config", config.to_str().expect("utf-8 path")],
            &[("LANYARD_LOG", "warn")],
        );
        let ramp = n.div_ceil(rate);
        // A first run warms the broker up (the allocator's arenas, the
        // pooled argon2 memory), so that the second measures what connected
        // agents cost. LANYARD_SCALE_WARMUP=0 skips it.
        if std::env::var("LANYARD_SCALE_WARMUP").as_deref() != Ok("0") {
            eprintln!("scale: warm-up, {n} agents over {ramp} s");
            let warm = run_stress(&broker, n, ramp, &tmp.path().join("warm.json"))
                .wait()
                .expect("warm-up run");
            if !warm.success() {
                eprintln!("scale: some warm-up agents failed");
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        let base = rss_kib(broker.child.id());
        let json = tmp.path().join("run.json");
        eprintln!("scale: {n} agents over {ramp} s");
        let mut stress = run_stress(&broker, n, ramp, &json);
        // Follow the live count while the run lasts; the memory is read
        // when the most agents are connected at once.
        let start = Instant::now();
        let mut peak_rss = base;
        let mut connected = 0;
        while stress.try_wait().expect("wait").is_none() {
            let live = live_agents(&broker);
            if live > connected {
                connected = live;
                peak_rss = rss_kib(broker.child.id());
            }
            assert!(
                start.elapsed() < Duration::from_secs(ramp + 900),
                "the stress run did not end"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let _ = stress.wait();
        let figures: serde_json::Value = std::fs::read(&json)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let per_agent = if connected > 0 {
            peak_rss.saturating_sub(base) as f64 / connected as f64
        } else {
            0.0
        };
        rows.push(format!(
            "| {n} | {connected} | {} | {:.1} | {:.1} | {:.1} | {} / {} | {} / {} |",
            figures["agents_failed"],
            base as f64 / 1024.0,
            peak_rss as f64 / 1024.0,
            per_agent,
            figures["connect_ms"]["p50"],
            figures["connect_ms"]["p99"],
            figures["stream_open_ms"]["p50"],
            figures["stream_open_ms"]["p99"],
        ));
        drop(broker);
    }
    println!("| agents | connected at once | failed | broker RSS before MiB | with all connected MiB | KiB per agent | connect p50 / p99 ms | stream open p50 / p99 ms |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in rows {
        println!("{r}");
    }
    println!("\nconnect = mutual-TLS QUIC handshake and session hello at the agent; each agent also enrols and signs in first (not timed here).");
}
