//! Stress runs with the real CLI against the real broker: every simulated
//! agent enrols, signs in and connects, every byte comes back, and the
//! broker's metrics show the run; afterwards (also after Ctrl-C) nothing
//! the run made is left, unless `--keep`; the HTML report leads with a
//! verdict and measures the hold.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lanyard_e2e::{bin, BrokerProcess};
use serde_json::Value;

/// A list command's JSON rows.
fn rows(broker: &BrokerProcess, what: &[&str]) -> Vec<Value> {
    let mut args = what.to_vec();
    args.extend(["list", "--json"]);
    let out = broker.lanyard(&args, None, None).ok();
    serde_json::from_str::<Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("{what:?}: {e}: {}", out.stdout))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Names in `devices list`, `staff list`, `groups list` and `apps list`
/// that a stress run made (`stress.*` people and their devices,
/// `stress-*` groups and apps).
fn left_by_stress(broker: &BrokerProcess) -> Vec<String> {
    let mut left = Vec::new();
    for (what, field) in [
        ("devices", "holder"),
        ("staff", "username"),
        ("groups", "name"),
        ("apps", "name"),
    ] {
        for row in rows(broker, &[what]) {
            let name = row[field].as_str().unwrap_or_default();
            if name.starts_with("stress.") || name.starts_with("stress-") {
                left.push(format!("{what}: {name}"));
            }
        }
    }
    left
}

/// Someone who is not part of any run: a clean-up must leave them be.
fn bystanders(broker: &BrokerProcess) {
    broker.lanyard(&["groups", "add", "hr"], None, None).ok();
    broker.add_person("j.smith", "hr", "Bystander-password-1");
}

fn metric(broker: &BrokerProcess, name: &str) -> Option<u64> {
    broker
        .lanyard_metrics()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
}

/// Checks `cond` every 50 ms until it holds or `limit` passes.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn fifty_agents_connect_every_byte_comes_back_and_nothing_is_left_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&tmp.path().join("data"), &[], &[]);
    bystanders(&broker);
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
            "--streams-per-minute",
            "0",
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

    let figures: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
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
    assert_eq!(page.matches("<svg").count(), 5, "five charts");

    let value = |name: &str| metric(&broker, name).unwrap_or(0);
    assert_eq!(value("lanyard_sessions_opened_total"), 50);
    assert_eq!(value("lanyard_enrolments_total"), 50);
    assert_eq!(value("lanyard_stream_open_seconds_count"), 100);
    assert!(value("lanyard_tunnel_bytes_up_total") >= 100 * 32768);

    // Every connection the run made is gone once it has ended: enrolment
    // and session connections alike (closing ones drain within a second).
    assert!(
        wait_for(Duration::from_secs(10), || metric(
            &broker,
            "lanyard_quic_connections"
        ) == Some(0)),
        "QUIC connections still open after the run"
    );

    // Nothing the run made is left: not its 50 enrolled devices, not its
    // person, group or app; the bystanders are untouched.
    assert_eq!(left_by_stress(&broker), Vec::<String>::new());
    let staff = rows(&broker, &["staff"]);
    assert_eq!(staff.len(), 1, "{staff:?}");
    assert_eq!(
        (staff[0]["username"].as_str(), staff[0]["active"].as_bool()),
        (Some("j.smith"), Some(true))
    );
    assert_eq!(rows(&broker, &["groups"]).len(), 1);
    assert_eq!(
        figures["cleanup"]["outcome"], "removed",
        "{}",
        figures["cleanup"]
    );
    assert_eq!(figures["cleanup"]["devices_removed"], 50);
    // Each removal is one audited change.
    let audit: Vec<Value> =
        serde_json::from_str(&broker.audit_json("staff.devices.remove")).unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    let detail = &audit[0]["detail"];
    assert_eq!(detail["removed"], 50, "{detail}");
    for action in ["staff.remove", "group.remove", "app.remove"] {
        let rows: Vec<Value> = serde_json::from_str(&broker.audit_json(action)).unwrap();
        assert_eq!(rows.len(), 1, "{action}: {rows:?}");
        assert!(
            rows[0]["target"].as_str().unwrap().starts_with("stress"),
            "{rows:?}"
        );
    }
    assert!(broker
        .lanyard(&["audit", "verify"], None, None)
        .ok()
        .stdout
        .contains("audit log intact"));
}

#[test]
fn keep_leaves_what_the_run_made_and_says_how_to_remove_it() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&tmp.path().join("data"), &[], &[]);
    let run = broker.lanyard(
        &[
            "stress",
            "--agents",
            "3",
            "--ramp",
            "0s",
            "--duration",
            "1s",
            "--streams-per-minute",
            "0",
            "--keep",
        ],
        None,
        None,
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("kept for inspection (--keep)"),
        "{}",
        run.stdout
    );
    let left = left_by_stress(&broker);
    let count = |prefix: &str| left.iter().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(
        (
            count("devices"),
            count("staff"),
            count("groups"),
            count("apps")
        ),
        (3, 1, 1, 1),
        "{left:?}"
    );
    let devices = rows(&broker, &["devices"]);
    assert!(
        devices
            .iter()
            .all(|d| d["kind"] == "personal" && d["status"] == "enrolled"),
        "{devices:?}"
    );

    // The run says so, and how to remove it all later; doing that leaves
    // nothing.
    let (_, commands) = run
        .stderr
        .split_once("Remove them with: ")
        .unwrap_or_else(|| panic!("no removal hint: {}", run.stderr));
    for command in commands.trim().split(" && ") {
        let args: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(args[0], "lanyard", "{command}");
        broker.lanyard(&args[1..], None, None).ok();
    }
    assert_eq!(left_by_stress(&broker), Vec::<String>::new());
}

#[test]
fn ctrl_c_stops_the_run_and_still_removes_what_it_made() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&tmp.path().join("data"), &[], &[]);
    let stderr = tmp.path().join("stress.err");
    let mut stress = Command::new(bin("lanyard"))
        .args([
            "stress",
            "--agents",
            "10",
            "--ramp",
            "1s",
            "--duration",
            "300s",
        ])
        .env("LANYARD_BROKER", &broker.api)
        .env("LANYARD_CA_CERT", broker.data_dir.join("ca.pem"))
        .env("LANYARD_TOKEN", broker.admin_token())
        .env_remove("LANYARD_TOKEN_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    // Mid-run: every agent has its session.
    let connected = wait_for(Duration::from_secs(60), || {
        metric(&broker, "lanyard_sessions_opened_total") == Some(10)
    });
    if !connected {
        let _ = stress.kill();
        panic!(
            "the agents did not connect: {}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
    }
    assert_eq!(left_by_stress(&broker).len(), 10 + 3, "mid-run");
    let sent = Command::new("kill")
        .args(["-INT", &stress.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut code = None;
    wait_for(Duration::from_secs(30), || {
        code = stress.try_wait().unwrap().map(|s| s.code());
        code.is_some()
    });
    if code.is_none() {
        let _ = stress.kill();
    }
    let said = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(code, Some(Some(130)), "{said}");
    assert!(
        said.contains("interrupted (Ctrl-C); removed what it made (10 enrolled devices)"),
        "{said}"
    );
    assert_eq!(left_by_stress(&broker), Vec::<String>::new());
    assert!(
        wait_for(Duration::from_secs(10), || metric(
            &broker,
            "lanyard_quic_connections"
        ) == Some(0)),
        "QUIC connections still open after Ctrl-C"
    );
}

/// The `name="…"` attribute in `s`.
fn attr<'a>(s: &'a str, name: &str) -> &'a str {
    let start = s
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("no {name}"))
        + name.len()
        + 2;
    &s[start..start + s[start..].find('"').unwrap()]
}

/// The HTML of the chart with `id`.
fn figure<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("<figure id=\"{id}\""))
        .unwrap_or_else(|| panic!("no chart {id}"));
    &page[start..start + page[start..].find("</figure>").unwrap()]
}

#[test]
fn the_report_leads_with_a_verdict_and_measures_the_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&tmp.path().join("data"), &[], &[]);
    let json = tmp.path().join("run.json");
    let html = tmp.path().join("run.html");
    let run = broker.lanyard(
        &[
            "stress",
            "--agents",
            "20",
            "--ramp",
            "2s",
            "--duration",
            "6s",
            "--streams-per-minute",
            "60",
            "--bytes-per-stream",
            "16384",
            "--json-out",
            json.to_str().unwrap(),
            "--report",
            html.to_str().unwrap(),
        ],
        None,
        None,
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let figures: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let page = std::fs::read_to_string(&html).unwrap();

    // The verdict first, in words, on the terminal and the page.
    let headline = figures["verdict"]["headline"].as_str().unwrap();
    assert_eq!(figures["verdict"]["ok"], true);
    assert!(
        headline.starts_with("20 of 20 simulated staff connected; connect p99 ")
            && headline.ends_with("; no errors"),
        "{headline}"
    );
    assert!(run
        .stdout
        .starts_with(&format!("verdict            PASS: {headline}")));
    let verdict_at = page.find(headline).expect("the headline on the page");
    assert!(
        verdict_at < page.find("<svg").unwrap(),
        "verdict before charts"
    );
    // When, against which broker, sized for how many.
    let started = figures["started_at"].as_str().unwrap();
    assert!(page.contains(&started[..10]), "the date: {started}");
    assert_eq!(figures["broker"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        figures["broker"]["capacity"], 10_000,
        "the broker's default"
    );
    assert!(page.contains(&format!("version {}", env!("CARGO_PKG_VERSION"))));
    assert!(page.contains("capacity 10,000 agent sessions"));

    // The hold is measured: after the last connect, each second of the
    // hold has streams and throughput, and no connect time (none
    // happened), which is null, not 0.
    let timeline = figures["timeline"].as_array().unwrap();
    let last_connect = timeline
        .iter()
        .filter(|p| !p["connect_p99_ms"].is_null())
        .map(|p| p["second"].as_u64().unwrap())
        .max()
        .unwrap();
    let hold: Vec<&Value> = timeline
        .iter()
        .filter(|p| {
            let s = p["second"].as_u64().unwrap();
            s > last_connect && s < 8
        })
        .collect();
    assert!(
        hold.len() >= 2,
        "hold seconds after {last_connect}: {hold:?}"
    );
    for p in &hold {
        assert!(p["connect_p99_ms"].is_null(), "{p}");
        assert!(
            p["bytes_per_s"].as_u64().unwrap_or(0) > 0,
            "hold measured: {p}"
        );
        assert!(p["stream_open_p99_ms"].as_f64().unwrap_or(0.0) > 0.0, "{p}");
    }
    assert_eq!(
        figures["throughput_bytes_per_s"],
        figures["throughput"]["mean_bytes_per_s"]
    );

    // Charts: a zero, units on both axes, and nothing drawn at zero where
    // nothing was measured (a connect or stream-open time is never 0).
    let connect = figure(&page, "connect_p99");
    assert!(connect.contains("class=\"nodata\""), "the hold is a gap");
    for id in ["connect_p99", "stream_open_p99"] {
        let chart = figure(&page, id);
        let zero: f64 = attr(chart, "data-zero-y").parse().unwrap();
        let d = attr(&chart[chart.find("class=\"data\"").unwrap()..], "d");
        for point in d.split(['M', 'L']).filter(|p| !p.trim().is_empty()) {
            let y: f64 = point.trim().split(',').nth(1).unwrap().parse().unwrap();
            assert!((y - zero).abs() > 0.5, "{id}: {point} drawn at zero");
        }
        assert!(chart.contains(">ms<") && chart.contains(">0<"), "{id}");
    }
    for id in [
        "connected",
        "connect_p99",
        "stream_open_p99",
        "throughput",
        "errors",
    ] {
        assert!(
            figure(&page, id).contains(">seconds since the run started<"),
            "{id}"
        );
    }
    let throughput = figure(&page, "throughput");
    assert!(
        ["B/s", "KiB/s", "MiB/s"]
            .iter()
            .any(|u| throughput.contains(&format!(">{u}<"))),
        "throughput unit"
    );
    // The summary states what the chart draws.
    let row = page
        .split("<th>Throughput</th><td class=\"num\">")
        .nth(1)
        .unwrap();
    let row = &row[..row.find("</td>").unwrap()];
    let mean = &row[..row.find(" over").unwrap()];
    let peak = &row[row.find("peak ").unwrap()..row.find(" at ").unwrap()];
    assert!(
        throughput.contains(&format!(">{mean}<")) && throughput.contains(&format!(">{peak}<")),
        "{row} vs the chart"
    );
    // Human numbers, and a page that needs nothing from elsewhere.
    let bytes = figures["bytes_verified"].as_u64().unwrap();
    assert!(!page.contains(&bytes.to_string()), "raw byte count");
    for external in ["<script", "<link", "@import", "src=\"http", "url(http"] {
        assert!(!page.contains(external), "{external}");
    }
}

/// The capacity search: steps of more agents until an objective breaks; the
/// knee, what gave out, a headline first, and nothing left behind.
#[test]
fn find_capacity_reports_the_knee_and_what_gave_out() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&tmp.path().join("data"), &[], &[]);
    let search = |slo: &str, json: &std::path::Path, more: &[&str]| {
        broker.lanyard(
            &[
                &[
                    "stress",
                    "--find-capacity",
                    "--max-agents",
                    "4",
                    "--step",
                    "2",
                    "--ramp",
                    "0s",
                    "--duration",
                    "1s",
                    "--streams-per-minute",
                    "0",
                    "--slo-connect-p99",
                    slo,
                    "--slo-stream-p99",
                    "10s",
                    "--json-out",
                    json.to_str().unwrap(),
                    "--report",
                    json.with_extension("html").to_str().unwrap(),
                ],
                more,
            ]
            .concat(),
            None,
            None,
        )
    };
    // Generous objectives: both steps hold, nothing gives out. The agents
    // were signed in before each step's clock: no password check is timed.
    let held = tmp.path().join("held.json");
    let run = search("60s", &held, &["--signed-in"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let first = run.stdout.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        "This broker held 4 staff within the 60000 ms connect objective, the most asked for; nothing gave out.",
        "{}",
        run.stdout
    );
    let knee: Value = serde_json::from_slice(&std::fs::read(&held).unwrap()).unwrap();
    let agents: Vec<u64> = knee["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["agents"].as_u64().unwrap())
        .collect();
    assert_eq!(agents, [2, 4], "{knee}");
    assert_eq!(knee["agents"], 4);
    for step in knee["steps"].as_array().unwrap() {
        assert_eq!(step["sign_in_p99_ms"], 0.0, "{step}");
        assert!(step["session_p99_ms"].as_f64().unwrap() > 0.0, "{step}");
    }
    assert!(
        knee["identities"]
            .as_str()
            .unwrap()
            .contains("before its step's clock started"),
        "{knee}"
    );
    let page = std::fs::read_to_string(held.with_extension("html")).unwrap();
    assert!(page.contains("<h1>This broker held 4 staff"), "{page}");

    // An objective nothing can meet: the first step breaks it, and the
    // report says which part of a connect took the time.
    let broke = tmp.path().join("broke.json");
    let run = search("1us", &broke, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.starts_with("Even 2 staff"), "{}", run.stdout);
    let knee: Value = serde_json::from_slice(&std::fs::read(&broke).unwrap()).unwrap();
    assert_eq!(knee["agents"], 0);
    assert_eq!(knee["steps"].as_array().unwrap().len(), 1, "{knee}");
    assert!(
        knee["steps"][0]["sign_in_p99_ms"].as_f64().unwrap() > 0.0,
        "each connect signed in: {knee}"
    );
    let gave_out = knee["gave_out"].as_str().unwrap();
    assert!(
        gave_out.starts_with("sign-ins: connect p99")
            || gave_out.starts_with("handshakes: connect p99")
            || gave_out.starts_with("session set-up: connect p99"),
        "{gave_out}"
    );
    assert!(
        left_by_stress(&broker).is_empty(),
        "a step left things behind"
    );
}
