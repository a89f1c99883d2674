//! What operators scrape and alert on: the plain-HTTP `metrics_listen`,
//! bytes per app, capacity, the process's own figures and the audit
//! chain's check, from a real broker with a live tunnel; and every metric
//! the shipped Grafana dashboard and Prometheus rules name exists.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use lanyard_e2e::promql::{dashboard_exprs, exposed_names, metric_names, rule_exprs};
use lanyard_e2e::world::{World, PASSWORD, READY};
use lanyard_e2e::{echo_through, pattern};

/// A broker with the plain metrics listener on a free loopback port, a
/// quick audit check, and known capacity figures.
fn world(tmp: &std::path::Path) -> World {
    let config = tmp.join("broker.toml");
    std::fs::write(
        &config,
        "metrics_listen = \"127.0.0.1:0\"\n\
         [admission]\ncapacity = 50\nonly_priority_1_2_at = 80\nonly_priority_1_at = 90\n\
         [limits]\nagents = 100\n\
         [audit]\ncheckpoint_interval = \"1s\"\n",
    )
    .unwrap();
    World::with(&["--config", config.to_str().unwrap()], &[])
}

/// The plain listener's address, from the ready line.
fn metrics_addr(w: &World) -> String {
    w.broker
        .ready_line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("metrics=http://"))
        .unwrap_or_else(|| panic!("no metrics= in {}", w.broker.ready_line))
        .trim_end_matches("/metrics")
        .to_owned()
}

/// One plain HTTP/1.1 request; the status and the body.
fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the series written exactly `series` (name and labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Scrapes until `ready` holds for the text, or `limit` passes; the last text.
fn scrape_until(addr: &str, limit: Duration, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let (status, text) = http(addr, "GET", "/metrics");
        assert_eq!(status, 200, "{text}");
        if ready(&text) || Instant::now() >= deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_plain_listener_shows_bytes_per_app_capacity_and_the_process() {
    let tmp = tempfile::tempdir().unwrap();
    let w = world(tmp.path());
    let addr = metrics_addr(&w);
    w.person("m.jones", "hr");
    let agent = w.agent("laptop", "m.jones", None);
    let mut up = agent.up(&[]);
    let forwards = up.wait_ready(READY);
    let data = pattern(1, 100_000);
    assert_eq!(echo_through(forwards["echo"], &data).unwrap(), data);

    let to_app = "lanyard_app_bytes_total{app=\"echo\",direction=\"to_app\"}";
    let from_app = "lanyard_app_bytes_total{app=\"echo\",direction=\"from_app\"}";
    let text = scrape_until(&addr, Duration::from_secs(10), |t| {
        value(t, from_app) == Some(100_000.0)
    });
    assert_eq!(value(&text, to_app), Some(100_000.0), "{text}");
    assert_eq!(value(&text, from_app), Some(100_000.0), "{text}");
    // Capacity: one session of 50.
    assert_eq!(value(&text, "lanyard_admission_capacity"), Some(50.0));
    assert_eq!(value(&text, "lanyard_agents_limit"), Some(100.0));
    assert_eq!(value(&text, "lanyard_sessions_live"), Some(1.0));
    assert_eq!(value(&text, "lanyard_capacity_used_ratio"), Some(0.02));
    assert_eq!(
        value(
            &text,
            "lanyard_admission_threshold_ratio{admits=\"priority_1_2\"}"
        ),
        Some(0.8)
    );
    assert_eq!(value(&text, "lanyard_admission_lowest_priority"), Some(3.0));
    // The agent's sign-in was timed.
    assert_eq!(
        value(&text, "lanyard_signin_seconds_count"),
        Some(1.0),
        "{text}"
    );
    // The broker process itself.
    let rss = value(&text, "process_resident_memory_bytes").unwrap();
    assert!(rss > 4.0 * 1024.0 * 1024.0, "rss {rss}");
    let fds = value(&text, "process_open_fds").unwrap();
    let max = value(&text, "process_max_fds").unwrap();
    assert!(fds >= 5.0 && max >= fds, "fds {fds} of {max}");
    assert!(value(&text, "process_cpu_seconds_total").unwrap() > 0.0);
    // The audit chain has been checked (at start) and is whole.
    assert_eq!(value(&text, "lanyard_audit_chain_ok"), Some(1.0), "{text}");
    assert_eq!(value(&text, "lanyard_store_up"), Some(1.0));

    // Only GET /metrics: nothing of the API on this listener.
    assert_eq!(http(&addr, "GET", "/api/v1/staff").0, 404);
    assert_eq!(http(&addr, "GET", "/healthz").0, 404);
    assert_eq!(http(&addr, "POST", "/metrics").0, 405);
    // The API's own /metrics (HTTPS, no token) still answers.
    assert!(w.broker.lanyard_metrics().contains(to_app));

    // A deleted app's series go once no stream relays for it.
    drop(up);
    w.broker
        .lanyard(&["apps", "remove", "echo"], None, None)
        .ok();
    let text = scrape_until(&addr, Duration::from_secs(15), |t| {
        !t.contains("app=\"echo\"")
    });
    assert!(!text.contains("app=\"echo\""), "{text}");
}

#[test]
fn a_cut_audit_log_shows_in_the_chain_gauge() {
    let tmp = tempfile::tempdir().unwrap();
    let w = world(tmp.path());
    let addr = metrics_addr(&w);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut db = rt.block_on(async {
        use sqlx::ConnectOptions;
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(w.broker.data_dir.join("lanyard.db"))
            .busy_timeout(Duration::from_secs(5))
            .connect()
            .await
            .unwrap()
    });
    let mut sql = |q: &str| -> i64 {
        rt.block_on(async {
            if q.starts_with("SELECT") {
                sqlx::query_scalar(q).fetch_one(&mut db).await.unwrap()
            } else {
                sqlx::query(q).execute(&mut db).await.unwrap();
                0
            }
        })
    };
    let checkpoints = w.broker.data_dir.join("audit-checkpoints.log");
    let signed = || std::fs::read_to_string(&checkpoints).unwrap_or_default();
    // Some audited changes, then a checkpoint of them (every second).
    w.person("a.one", "hr");
    w.person("a.two", "hr");
    let last = sql("SELECT MAX(seq) FROM audit_log");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !signed().contains(&format!(" seq={last} ")) {
        assert!(
            Instant::now() < deadline,
            "row {last} not signed: {}",
            signed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = scrape_until(&addr, Duration::from_secs(5), |t| {
        value(t, "lanyard_audit_chain_ok").is_some()
    });
    assert_eq!(value(&text, "lanyard_audit_chain_ok"), Some(1.0), "{text}");

    // Cut the last (signed) row behind the broker's back.
    sql("DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)");
    let text = scrape_until(&addr, Duration::from_secs(5), |t| {
        value(t, "lanyard_audit_chain_ok") == Some(0.0)
    });
    assert_eq!(value(&text, "lanyard_audit_chain_ok"), Some(0.0), "{text}");
    assert!(
        w.broker
            .log_text()
            .contains(&format!("rows {last}..={last} are missing")),
        "{}",
        w.broker.log_text()
    );

    // A new change moves the head past the gap: the head matches the last
    // row again, but the signed row is gone; the gauge stays at 0 and the
    // broker signs nothing more.
    let before = signed();
    w.person("a.three", "hr");
    assert!(sql("SELECT MAX(seq) FROM audit_log") > last);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !w
        .broker
        .log_text()
        .contains(&format!("row {last}, signed, is missing"))
    {
        assert!(Instant::now() < deadline, "{}", w.broker.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(
        signed(),
        before,
        "a checkpoint of a chain that fails its check"
    );
    assert!(w
        .broker
        .log_text()
        .contains("not signing an audit checkpoint"));
    let text = http(&addr, "GET", "/metrics").1;
    assert_eq!(value(&text, "lanyard_audit_chain_ok"), Some(0.0), "{text}");
}

/// Names the dashboard and rules may use that this broker does not make:
/// Prometheus makes `up` for every target it scrapes.
const MADE_BY_PROMETHEUS: &[&str] = &["up"];

/// The repository's root (the tests crate's parent).
fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

#[test]
fn every_metric_the_dashboard_and_alert_rules_name_exists() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/lanyard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    let mut named = std::collections::BTreeMap::<String, std::collections::BTreeSet<&str>>::new();
    let dash_exprs = dashboard_exprs(&dashboard);
    let rule_exprs = rule_exprs(&rules);
    // One expression per alert; the dashboard has dozens.
    assert!(rule_exprs.len() >= 9, "{rule_exprs:?}");
    assert!(dash_exprs.len() >= 30, "{dash_exprs:?}");
    for (source, exprs) in [("dashboard", &dash_exprs), ("alert rules", &rule_exprs)] {
        for e in exprs {
            let names = metric_names(e);
            assert!(!names.is_empty(), "{source}: no metric in {e:?}");
            for n in names {
                named.entry(n).or_default().insert(source);
            }
        }
    }

    // A broker that has done a little: API calls (the world's setup), an
    // agent's sign-in, a tunnel stream and a stream refused (its app is
    // down), so that labelled series exist.
    let tmp = tempfile::tempdir().unwrap();
    let w = world(tmp.path());
    let addr = metrics_addr(&w);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_target = dead.local_addr().unwrap().to_string();
    drop(dead);
    w.broker
        .lanyard(
            &[
                "apps",
                "add",
                "down",
                "--target",
                &dead_target,
                "--allow-group",
                "hr",
            ],
            None,
            None,
        )
        .ok();
    w.person("d.ash", "hr");
    let agent = w.agent("laptop", "d.ash", None);
    let mut up = agent.up(&[]);
    let forwards = up.wait_ready(READY);
    assert_eq!(echo_through(forwards["echo"], b"hello").unwrap(), b"hello");
    // The refused stream: the agent closes the local connection.
    let _ = echo_through(forwards["down"], b"x");
    // A failed sign-in too, for the failure counters' sake.
    let stranger = lanyard_e2e::Agent::new(tmp.path().join("stranger"));
    let code = w.code(&["--personal", "d.ash"]);
    stranger.run(&["enroll", &code], None).ok();
    let _ = stranger.run(
        &["login", "d.ash", "--password-stdin"],
        Some(&format!("{PASSWORD}-wrong\n")),
    );
    let text = scrape_until(&addr, Duration::from_secs(10), |t| {
        t.contains("lanyard_denials_total{reason=\"app_unreachable\"}")
            && t.contains("lanyard_app_bytes_total{app=\"echo\"")
    });
    let shown = exposed_names(&text);

    let mut missing = Vec::new();
    for (name, sources) in &named {
        let present = shown.contains(name);
        if MADE_BY_PROMETHEUS.contains(&name.as_str()) {
            continue;
        }
        if !present {
            let sources: Vec<&str> = sources.iter().copied().collect();
            missing.push(format!("{name} (named by the {})", sources.join(", ")));
        }
        // A histogram's series belong to a histogram.
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if text.contains(&format!("# TYPE {base} histogram")) {
                    assert!(present, "{name}");
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "named but not in /metrics:\n  {}\n/metrics:\n{text}",
        missing.join("\n  ")
    );
    println!(
        "{} metric names from {} dashboard and {} rule expressions, all in /metrics",
        named.len(),
        dash_exprs.len(),
        rule_exprs.len()
    );
}

#[test]
fn metrics_listen_in_use_stops_the_start_and_off_loopback_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    // A port in use: one clear line, and no data dir made.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = tmp.path().join("taken.toml");
    std::fs::write(
        &config,
        format!("metrics_listen = \"{}\"\n", taken.local_addr().unwrap()),
    )
    .unwrap();
    let data = tmp.path().join("data-taken");
    let mut cmd = std::process::Command::new(lanyard_e2e::bin("lanyard-broker"));
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--quic-listen",
            "127.0.0.1:0",
        ])
        .env_remove("LANYARD_DATABASE_URL")
        .env("LANYARD_LOG", "error");
    let out = lanyard_e2e::run(cmd, None);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("metrics_listen") && out.stderr.contains("in use"),
        "{}",
        out.stderr
    );
    assert!(!data.exists(), "the data dir was made");
    drop(taken);

    // On every address: it serves, and the log says who can read it.
    let config = tmp.path().join("open.toml");
    std::fs::write(&config, "metrics_listen = \"0.0.0.0:0\"\n").unwrap();
    let broker = lanyard_e2e::BrokerProcess::start(
        &tmp.path().join("data-open"),
        &["--config", config.to_str().unwrap()],
        &[],
    );
    let port = broker
        .ready_line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("metrics=http://0.0.0.0:"))
        .and_then(|p| p.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("{}", broker.ready_line))
        .to_owned();
    let (status, text) = http(&format!("127.0.0.1:{port}"), "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(text.contains("lanyard_build_info"), "{text}");
    assert!(
        broker
            .log_text()
            .contains("metrics_listen is not a loopback address"),
        "{}",
        broker.log_text()
    );
}
