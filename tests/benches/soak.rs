//! The soak benchmark: a steady load for a long time, watching for anything
//! that grows without bound.
//!
//! ```sh
//! cargo bench -p lanyard-e2e --bench soak                       # 1,000 agents, 10 minutes
//! LANYARD_SOAK_MINUTES=60 cargo bench -p lanyard-e2e --bench soak
//! LANYARD_SOAK_AGENTS=200 LANYARD_SOAK_MINUTES=3 cargo bench -p lanyard-e2e --bench soak
//! ```
//!
//! `lanyard stress` holds the agents with streams coming and going
//! (`--streams-per-minute 6`) against the release broker (SQLite in its
//! data dir). Every 10 s the bench samples the broker's open file
//! descriptors, threads, resident memory, the store's size on disk, its
//! live sessions and the rows of the tables that grow with use. At the end
//! it prints each series' slope per hour over the second half of the run
//! (the first half is the ramp and the warm-up) and over the last quarter,
//! and fails if any grows without bound: still growing at the end, at a
//! rate that would add half its mean again within a day
//! (`lanyard_e2e::trend`: a high-water mark, which grows ever more slowly,
//! is told apart from a leak).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lanyard_e2e::trend::{judge, Verdict};
use lanyard_e2e::{bin, BrokerProcess};

const LOG: [(&str, &str); 1] = [("LANYARD_LOG", "warn")];
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn proc_field(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(f64::NAN)
}

fn open_fds(pid: u32) -> f64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(f64::NAN, |d| d.count() as f64)
}

fn store_bytes(data_dir: &std::path::Path) -> f64 {
    ["lanyard.db", "lanyard.db-wal", "lanyard.db-shm"]
        .iter()
        .filter_map(|f| std::fs::metadata(data_dir.join(f)).ok())
        .map(|m| m.len() as f64)
        .sum()
}

/// Rows in the tables that grow with use, and the live sessions, read over
/// one connection of the bench's own (a reader in WAL mode: it never holds
/// up the broker's writes), kept for the whole soak; a count the store
/// would not give within its busy timeout is NaN, not a guess.
async fn table_rows(conn: &mut sqlx::SqliteConnection) -> Vec<(&'static str, f64)> {
    let mut out = Vec::new();
    for (name, sql) in [
        ("audit rows", "SELECT COUNT(*) FROM audit_log"),
        ("refresh tokens", "SELECT COUNT(*) FROM refresh_tokens"),
        ("enrolment codes", "SELECT COUNT(*) FROM enrolment_codes"),
        ("api tokens", "SELECT COUNT(*) FROM api_tokens"),
        ("session rows", "SELECT COUNT(*) FROM agent_sessions"),
        (
            "live sessions",
            "SELECT COUNT(*) FROM agent_sessions WHERE ended_at IS NULL",
        ),
    ] {
        let n = match sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&mut *conn)
            .await
        {
            Ok(n) => n as f64,
            Err(e) => {
                eprintln!("soak: {name}: {e}");
                f64::NAN
            }
        };
        out.push((name, n));
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "soak".contains(a.as_str())) {
        return;
    }
    let agents = env_num("LANYARD_SOAK_AGENTS", 1000);
    let minutes = env_num("LANYARD_SOAK_MINUTES", 10).max(1);
    let tmp = tempfile::tempdir().expect("temp dir");
    let config = tmp.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[limits]\nagents = {}\n[admission]\ncapacity = {}\n",
            agents + 100,
            agents * 2
        ),
    )
    .expect("config");
    let data_dir = tmp.path().join("data");
    let broker = BrokerProcess::start(
        &data_dir,
        &["--config", config.to_str().expect("utf-8")],
        &LOG,
    );
    let pid = broker.child.id();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut reader = rt
        .block_on(async {
            use sqlx::ConnectOptions;
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(data_dir.join("lanyard.db"))
                .busy_timeout(Duration::from_secs(5))
                .connect()
                .await
        })
        .expect("a reader connection to the broker's store");
    let ramp = agents.div_ceil(25).max(2);
    let hold = minutes * 60;
    println!("soak: {agents} agents (ramp {ramp}s), held {minutes} min, streams 6 a minute each; a sample every 10 s");
    let mut stress = Command::new(bin("lanyard"))
        .args(["stress", "--agents", &agents.to_string()])
        .args([
            "--ramp",
            &format!("{ramp}s"),
            "--duration",
            &format!("{hold}s"),
        ])
        .args(["--streams-per-agent", "1", "--bytes-per-stream", "16384"])
        .args(["--streams-per-minute", "6"])
        .arg("--json-out")
        .arg(tmp.path().join("soak.json"))
        .env("LANYARD_BROKER", &broker.api)
        .env("LANYARD_CA_CERT", data_dir.join("ca.pem"))
        .env("LANYARD_TOKEN", broker.admin_token())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run lanyard stress");

    let started = Instant::now();
    let mut times = Vec::new();
    let mut series: Vec<(String, Vec<f64>)> = Vec::new();
    // Sampled only while the run goes on: once `lanyard stress` has
    // exited it has removed its test identities, and the counts fall.
    while stress.try_wait().ok().flatten().is_none() {
        let t = started.elapsed().as_secs_f64();
        let mut sample: Vec<(String, f64)> = vec![
            ("file descriptors".into(), open_fds(pid)),
            ("threads".into(), proc_field(pid, "Threads:")),
            ("rss KiB".into(), proc_field(pid, "VmRSS:")),
            ("store bytes".into(), store_bytes(&data_dir)),
        ];
        sample.extend(
            rt.block_on(table_rows(&mut reader))
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v)),
        );
        times.push(t);
        for (name, v) in sample {
            match series.iter_mut().find(|(n, _)| *n == name) {
                Some((_, vs)) => vs.push(v),
                None => series.push((name, vec![v])),
            }
        }
        std::thread::sleep(SAMPLE_EVERY);
    }

    let hours: Vec<f64> = times.iter().map(|t| t / 3600.0).collect();
    println!(
        "{:<18} {:>14} {:>14} {:>16} {:>16}  verdict",
        "series", "first", "last", "per hour (2nd half)", "(last quarter)"
    );
    let mut unbounded = Vec::new();
    for (name, vs) in &series {
        let t = judge(&hours, vs);
        // The audit log grows with use by design (one row per session end,
        // sign-in and enrolment); it is reported, not judged.
        let judged = name != "audit rows" && name != "store bytes";
        println!(
            "{name:<18} {:>14.0} {:>14.0} {:>16.1} {:>16.1}  {}",
            vs.first().copied().unwrap_or(f64::NAN),
            vs.last().copied().unwrap_or(f64::NAN),
            t.per_hour,
            t.last_quarter_per_hour,
            match (judged, t.verdict) {
                (false, _) => "grows with use (audit)",
                (true, Verdict::Steady) => "steady",
                (true, Verdict::LevelsOff) => "levels off (a high-water mark)",
                (true, Verdict::Growing) => "GROWING",
                (true, Verdict::Unread) => "UNREAD (too few samples)",
            }
        );
        if judged && matches!(t.verdict, Verdict::Growing | Verdict::Unread) {
            unbounded.push(name.clone());
        }
    }
    let _ = stress.wait();
    assert!(
        unbounded.is_empty(),
        "growing without bound over the soak: {unbounded:?}"
    );
}
