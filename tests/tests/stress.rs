//! A small stress run with the real CLI against the real broker: every
//! simulated agent enrols, signs in and connects, every byte comes back,
//! and the broker's metrics show the run.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use lanyard_e2e::BrokerProcess;

#[test]
fn fifty_agents_connect_and_every_byte_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&tmp.path().join("data"), &[], &[]);
    let json = tmp.path().join("run.json");
    let html = tmp.path().join("run.html");
    let run = broker.lanyard(
        &[
            "stress",
            "--agents",
            "50",
            "--ramp",
            "2s",
            "--duration",
            "2s",
            "--streams-per-agent",
            "2",
            "--bytes-per-stream",
            "32768",
            "--json-out",
            json.to_str().unwrap(),
            "--report",
            html.to_str().unwrap(),
        ],
        None,
        None,
    );
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert!(
        run.stdout.contains("50 requested, 50 connected, 0 failed"),
        "{}",
        run.stdout
    );

    let figures: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(figures["agents_requested"], 50);
    assert_eq!(figures["agents_connected"], 50);
    assert_eq!(figures["agents_failed"], 0);
    assert_eq!(figures["streams_ok"], 100);
    assert_eq!(figures["streams_failed"], 0);
    assert_eq!(figures["bytes_verified"], 100 * 32768);
    assert_eq!(figures["errors"], serde_json::json!({}));
    for field in ["connect_ms", "stream_open_ms"] {
        let p = &figures[field];
        assert!(p["p50"].as_f64().unwrap() > 0.0, "{field}: {p}");
        assert!(p["p50"].as_f64() <= p["p99"].as_f64(), "{field}: {p}");
    }
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<svg").count(), 4, "four charts");

    let metrics = broker.lanyard_metrics();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(value("lanyard_sessions_opened_total"), 50, "{metrics}");
    assert_eq!(value("lanyard_enrolments_total"), 50);
    assert_eq!(value("lanyard_stream_open_seconds_count"), 100);
    assert!(value("lanyard_tunnel_bytes_up_total") >= 100 * 32768);

    // Every connection the run made is gone once it has ended: enrolment
    // and session connections alike (closing ones drain within a second).
    let connections = || -> Option<u64> {
        broker
            .lanyard_metrics()
            .lines()
            .find_map(|l| l.strip_prefix("lanyard_quic_connections "))
            .and_then(|v| v.parse().ok())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut open = connections();
    while open != Some(0) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        open = connections();
    }
    assert_eq!(open, Some(0), "QUIC connections still open after the run");

    // The test identities are disabled and the app it made is gone.
    let apps = broker.lanyard(&["apps", "list", "--json"], None, None).ok();
    assert_eq!(apps.stdout.trim(), "[]");
    let staff = broker
        .lanyard(&["staff", "list", "--json"], None, None)
        .ok();
    let staff: serde_json::Value = serde_json::from_str(&staff.stdout).unwrap();
    assert!(
        staff
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["active"] == false || s["status"] == "disabled"),
        "{staff}"
    );
}
