//! The scale benchmark: memory per connected idle agent, and connect and
//! stream-open latency, with N simulated agents (`lanyard stress`) against
//! the release broker on 127.0.0.1.
//!
//! ```sh
//! cargo bench -p lanyard-e2e --bench scale
//! LANYARD_SCALE_AGENTS=1000,10000 cargo bench -p lanyard-e2e --bench scale
//! ```
//!
//! Then the restart storm: `LANYARD_SCALE_RESTART` agents (default 2000;
//! 0 skips it) connect and hold; the broker is killed with SIGKILL and
//! started again on the same ports, and the bench times how long until
//! every agent has a session again, as the broker counts them. The
//! restarted broker's memory growth over the agents that come back is the
//! cost of a connected idle agent alone: no enrolment or sign-in runs
//! beside the reconnections, as they do in the first table.
//!
//! Environment: `LANYARD_SCALE_AGENTS` (comma list, default 1000),
//! `LANYARD_SCALE_RATE` (agents started per second, default 25: each one
//! enrols and signs in, and a sign-in costs an argon2 hash; 50 a second
//! fill both cores of a 2-core machine),
//! `LANYARD_SCALE_WARMUP=0` to skip the warm-up run.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lanyard_e2e::{bin, rss_kib, BrokerProcess};

const LOG: [(&str, &str); 1] = [("LANYARD_LOG", "warn")];

/// A broker config in `dir` with room for `n` agents and no admission
/// reserve in the way; returns its path.
fn broker_config(dir: &std::path::Path, n: u64) -> String {
    let path = dir.join("broker.toml");
    std::fs::write(
        &path,
        format!(
            "[limits]\nagents = {}\n[admission]\ncapacity = {}\n",
            n + 100,
            n * 2
        ),
    )
    .expect("config");
    path.to_str().expect("utf-8 path").to_owned()
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
    hold_s: u64,
    json: &std::path::Path,
) -> std::process::Child {
    Command::new(bin("lanyard"))
        .args(["stress", "--agents", &n.to_string()])
        .args([
            "--ramp",
            &format!("{ramp_s}s"),
            "--duration",
            &format!("{hold_s}s"),
        ])
        .args(["--streams-per-agent", "1", "--bytes-per-stream", "1024"])
        // Idle agents once connected, as the memory figures assume (and no
        // streams in flight to fail when the restart storm kills the broker).
        .args(["--streams-per-minute", "0"])
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
        .unwrap_or(25)
        .max(1);
    let mut rows = Vec::new();
    for n in counts {
        let tmp = tempfile::tempdir().expect("temp dir");
        let config = broker_config(tmp.path(), n);
        let broker = BrokerProcess::start(&tmp.path().join("data"), &["--config", &config], &LOG);
        let ramp = n.div_ceil(rate);
        // A first run (up to 1,000 agents) warms the broker up: the pooled
        // argon2 memory, the allocator's arenas, the store's caches. The
        // second then measures what connected agents cost.
        // LANYARD_SCALE_WARMUP=0 skips it.
        if std::env::var("LANYARD_SCALE_WARMUP").as_deref() != Ok("0") {
            let warm_n = n.min(1000);
            let warm_ramp = warm_n.div_ceil(rate);
            eprintln!("scale: warm-up, {warm_n} agents over {warm_ramp} s");
            let warm = run_stress(&broker, warm_n, warm_ramp, 5, &tmp.path().join("warm.json"))
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
        let mut stress = run_stress(&broker, n, ramp, 15, &json);
        // Follow the live count while the run lasts. Memory is read when
        // half the agents are connected and when the most are: the
        // difference over the agents between is what one more idle agent
        // costs, free of one-off costs (the argon2 pool, the store's
        // caches, allocator arenas).
        let start = Instant::now();
        let (mut half, mut half_rss) = (0, base);
        let (mut connected, mut peak_rss) = (0, base);
        while stress.try_wait().expect("wait").is_none() {
            let live = live_agents(&broker);
            if live > connected {
                connected = live;
                peak_rss = rss_kib(broker.child.id());
                if half == 0 && live >= n / 2 {
                    (half, half_rss) = (live, peak_rss);
                }
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
        let per = |kib: u64, agents: u64| {
            if agents > 0 {
                format!("{:.1}", kib as f64 / agents as f64)
            } else {
                "-".into()
            }
        };
        rows.push(format!(
            "| {n} | {connected} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} / {} | {} / {} |",
            figures["agents_failed"],
            base as f64 / 1024.0,
            half_rss as f64 / 1024.0,
            peak_rss as f64 / 1024.0,
            per(peak_rss.saturating_sub(base), connected),
            per(
                peak_rss.saturating_sub(half_rss),
                connected.saturating_sub(half)
            ),
            figures["connect_ms"]["p50"],
            figures["connect_ms"]["p99"],
            figures["stream_open_ms"]["p50"],
            figures["stream_open_ms"]["p99"],
        ));
        drop(broker);
    }
    let restart: u64 = std::env::var("LANYARD_SCALE_RESTART")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2000);
    let storm = (restart > 0).then(|| restart_storm(restart, rate));
    println!("| agents | connected at once | failed | broker RSS before MiB | at half MiB | with all MiB | KiB per agent (all / before) | KiB per agent (second half) | connect p50 / p99 ms | stream open p50 / p99 ms |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in rows {
        println!("{r}");
    }
    println!("\nKiB per agent (second half) = RSS growth from half the agents connected to all, over the agents added: the cost of one more idle agent.");
    println!("connect = mutual-TLS QUIC handshake and session hello at the agent; each agent also enrols and signs in first (not timed here).");
    if let Some(row) = storm {
        println!("\n| agents | connected before | all back after s | back within 10 s | not back | agent's wait p50 / p99 / max ms | restarted broker RSS ready / all back MiB, KiB per agent |");
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        println!("{row}");
        println!("\nall back = from SIGKILL until the restarted broker counts every agent's session again (its start included); the agent's wait runs from the agent noticing the loss (a stateless reset at its next packet) to its new session.");
        println!("KiB per agent here = RSS growth of the restarted broker from ready to all back, over the agents that came back meanwhile: a connected idle agent alone, with no enrolment or sign-in beside it (the first table's figure includes what those leave behind).");
    }
}

/// `n` agents connect and hold; the broker is killed and started again on
/// the same ports and data dir; returns the table row.
fn restart_storm(n: u64, rate: u64) -> String {
    let tmp = tempfile::tempdir().expect("temp dir");
    let config = broker_config(tmp.path(), n);
    let mut broker = BrokerProcess::start(&tmp.path().join("data"), &["--config", &config], &LOG);
    let ramp = n.div_ceil(rate);
    let json = tmp.path().join("restart.json");
    eprintln!("scale: restart storm, {n} agents over {ramp} s");
    // They hold long enough for the restart and the way back.
    let mut stress = run_stress(&broker, n, ramp, 90, &json);
    let start = Instant::now();
    let mut before = 0;
    while before < n {
        assert!(
            stress.try_wait().expect("wait").is_none(),
            "the stress run ended before all agents connected"
        );
        assert!(
            start.elapsed() < Duration::from_secs(ramp + 120),
            "only {before} of {n} agents connected"
        );
        std::thread::sleep(Duration::from_millis(500));
        before = live_agents(&broker);
    }
    std::thread::sleep(Duration::from_secs(2));
    let (api, quic, data_dir) = (
        broker.api.trim_start_matches("https://").to_owned(),
        broker.quic.clone(),
        broker.data_dir.clone(),
    );
    eprintln!("scale: {before} agents connected; SIGKILL and restart");
    let killed = Instant::now();
    broker.signal("KILL");
    broker
        .wait_exit(Duration::from_secs(10))
        .expect("broker exits");
    let broker = BrokerProcess::start_at(&data_dir, &api, &quic, &["--config", &config], &LOG);
    // Memory of the restarted broker: once ready (a few agents may be back
    // already) and with all back. The difference over the agents between is
    // what a connected idle agent costs on its own, without the enrolment
    // and sign-in the first run did beside it.
    let ready_rss = rss_kib(broker.child.id());
    let ready_back = live_agents(&broker);
    let mut all_rss = None;
    let mut back = 0;
    let mut at_10s = None;
    let mut all_back = None;
    while killed.elapsed() < Duration::from_secs(50) {
        back = live_agents(&broker);
        if at_10s.is_none() && killed.elapsed() >= Duration::from_secs(10) {
            at_10s = Some(back);
        }
        if back >= before {
            all_back = Some(killed.elapsed());
            std::thread::sleep(Duration::from_secs(2));
            all_rss = Some((rss_kib(broker.child.id()), live_agents(&broker)));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = stress.wait();
    let figures: serde_json::Value = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if let Some(errors) = figures["errors"].as_object() {
        for (kind, count) in errors {
            eprintln!("scale: restart storm error x{count}: {kind}");
        }
    }
    let wait = &figures["reconnect_ms"];
    let per_agent = match all_rss {
        Some((rss, agents)) if agents > ready_back => format!(
            "{:.1} / {:.1} / {:.1}",
            ready_rss as f64 / 1024.0,
            rss as f64 / 1024.0,
            rss.saturating_sub(ready_rss) as f64 / (agents - ready_back) as f64
        ),
        _ => "-".into(),
    };
    format!(
        "| {n} | {before} | {} | {} | {} | {} / {} / {} | {per_agent} |",
        all_back.map_or("not all".into(), |d| format!("{:.2}", d.as_secs_f64())),
        at_10s.unwrap_or(back),
        before.saturating_sub(back),
        wait["p50"],
        wait["p99"],
        wait["max"],
    )
}
