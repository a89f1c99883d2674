//! What operators scrape and alert on: the plain-HTTP `metrics_listen`,
//! bytes per app, capacity, the process's own figures and the audit
//! chain's check, from a real broker with a live tunnel; and every metric
//! the shipped Grafana dashboard and Prometheus rules name exists.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use lanyard_e2e::world::{World, READY};
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
    // Some audited changes, then a checkpoint of them (every second).
    w.person("a.one", "hr");
    w.person("a.two", "hr");
    std::thread::sleep(Duration::from_millis(1_500));
    let text = scrape_until(&addr, Duration::from_secs(5), |t| {
        value(t, "lanyard_audit_chain_ok").is_some()
    });
    assert_eq!(value(&text, "lanyard_audit_chain_ok"), Some(1.0), "{text}");
    // Cut the last row behind the broker's back.
    let db = w.broker.data_dir.join("lanyard.db");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use sqlx::ConnectOptions;
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&db)
                .busy_timeout(Duration::from_secs(5))
                .connect()
                .await
                .unwrap();
            sqlx::query("DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)")
                .execute(&mut conn)
                .await
                .unwrap();
        });
    let text = scrape_until(&addr, Duration::from_secs(5), |t| {
        value(t, "lanyard_audit_chain_ok") == Some(0.0)
    });
    assert_eq!(value(&text, "lanyard_audit_chain_ok"), Some(0.0), "{text}");
    assert!(
        w.broker
            .log_text()
            .contains("does not match its last checkpoint"),
        "{}",
        w.broker.log_text()
    );
}
