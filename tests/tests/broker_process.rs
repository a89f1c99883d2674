//! `lanyard-broker` as a process: first start, restart, signals, bad input.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use lanyard_e2e::{bin, run, run_with_closed_stdout, BrokerProcess};

#[test]
fn first_start_prints_one_ready_line_and_writes_0600_files_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut broker = BrokerProcess::start(&data, &[], &[]);
    let line = &broker.ready_line;
    assert!(
        line.starts_with("lanyard-broker ready api=https://127.0.0.1:"),
        "{line}"
    );
    assert!(
        !broker.api.ends_with(":0") && !broker.quic.ends_with(":0"),
        "{line}"
    );
    assert_eq!(broker.ca_fingerprint.len(), 64, "{line}");
    for file in [
        "ca.pem",
        "ca-key.pem",
        "token-signing-key.pem",
        "seal.key",
        "admin-token",
        "lanyard.db",
    ] {
        let mode = std::fs::metadata(data.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file} has mode {mode:o}");
    }
    let token = broker.admin_token();
    assert!(token.starts_with("lyt_"));
    let ca = std::fs::read(data.join("ca.pem")).unwrap();

    broker.signal("TERM");
    assert_eq!(
        broker.wait_exit(Duration::from_secs(10)),
        Some(0),
        "an idle broker stops at once with 0"
    );

    let mut again = BrokerProcess::start(&data, &[], &[]);
    assert_eq!(
        again.ca_fingerprint, broker.ca_fingerprint,
        "the CA was regenerated"
    );
    assert_eq!(
        again.admin_token(),
        token,
        "the admin token was overwritten"
    );
    assert_eq!(std::fs::read(data.join("ca.pem")).unwrap(), ca);
    again.lanyard(&["staff", "list"], None, None).ok();
    again.signal("INT");
    assert_eq!(again.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_second_signal_exits_at_once_while_draining() {
    let tmp = tempfile::tempdir().unwrap();
    let mut broker =
        BrokerProcess::start(&tmp.path().join("data"), &["--grace-period", "60s"], &[]);
    // A connection that never finishes its TLS handshake keeps the drain busy.
    let addr = broker.api.trim_start_matches("https://").to_owned();
    let _held = std::net::TcpStream::connect(&addr).unwrap();
    // Accepted once the broker counts it beside the metrics request itself.
    assert!(broker.wait_metric(
        "lanyard_http_connections_open",
        Duration::from_secs(10),
        |open| open >= 2.0
    ));
    broker.signal("TERM");
    assert_eq!(
        broker.wait_exit(Duration::from_millis(500)),
        None,
        "it should be draining"
    );
    broker.signal("TERM");
    let code = broker
        .wait_exit(Duration::from_secs(5))
        .expect("the second signal must end it");
    assert_ne!(code, 0);
    assert!(
        broker.log_text().contains("second signal"),
        "{}",
        broker.log_text()
    );
}

#[test]
fn check_config_accepts_the_valid_fixture_and_names_a_bad_key() {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../broker/tests/fixtures");
    let mut cmd = Command::new(bin("lanyard-broker"));
    cmd.args(["check-config", "--config"])
        .arg(fixtures.join("valid.toml"));
    let out = run(cmd, None).ok();
    assert!(out.stdout.starts_with("config ok:"), "{}", out.stdout);
    assert!(out.stdout.contains("broker.council.example:4433"));

    let mut cmd = Command::new(bin("lanyard-broker"));
    cmd.args(["check-config", "--config"])
        .arg(fixtures.join("invalid.toml"));
    let out = run(cmd, None);
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("unknown field `grace_periode`"),
        "{}",
        out.stderr
    );
}

/// `check-config` shows the database URL with every password in it hidden:
/// in the userinfo and in any query parameter named like a password.
#[test]
fn check_config_hides_every_password_in_the_database_url() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("lanyard.toml");
    std::fs::write(
        &path,
        "database_url = \"postgres://u:hunter1@db.internal:5432/lanyard?sslmode=verify-full&sslpassword=hunter2&PASSWORD=hunter3\"\n",
    )
    .unwrap();
    let mut cmd = Command::new(bin("lanyard-broker"));
    cmd.args(["check-config", "--config"]).arg(&path);
    let out = run(cmd, None).ok();
    assert!(
        out.stdout.contains(
            "postgres://u:***@db.internal:5432/lanyard?sslmode=verify-full&sslpassword=***&PASSWORD=***"
        ),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("hunter"), "{}", out.stdout);
}

#[test]
fn bad_start_inputs_fail_with_one_line_and_no_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let data = tmp.path().join("d").to_str().unwrap().to_owned();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["serve", "--data-dir", &data, "--api-listen", "nonsense"],
            1,
            "api_listen",
        ),
        (
            vec![
                "serve",
                "--data-dir",
                "/dev/null/lanyard",
                "--api-listen",
                "127.0.0.1:0",
                "--quic-listen",
                "127.0.0.1:0",
            ],
            1,
            "not writable",
        ),
        (
            vec![
                "serve",
                "--data-dir",
                &data,
                "--api-listen",
                &taken_addr,
                "--quic-listen",
                "127.0.0.1:0",
            ],
            1,
            "cannot listen on TCP",
        ),
        (
            vec![
                "serve",
                "--data-dir",
                &data,
                "--database-url",
                "mysql://u:hunter2@h/db",
                "--api-listen",
                "127.0.0.1:0",
                "--quic-listen",
                "127.0.0.1:0",
            ],
            1,
            "mysql://u:***@h/db",
        ),
        (vec!["serve", "--no-such-flag"], 2, "--no-such-flag"),
        (
            vec!["serve", "--data-dir", &data, "--grace-period", "soon"],
            1,
            "grace_period",
        ),
    ];
    for (args, want, needle) in cases {
        let mut cmd = Command::new(bin("lanyard-broker"));
        cmd.args(&args).env("LANYARD_LOG", "error");
        let out = run(cmd, None);
        assert_eq!(out.code, want, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
        assert!(
            !out.stderr.contains("panicked") && !out.stderr.contains("hunter2"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{args:?}: printed {}", out.stdout);
    }
}

/// The listeners are bound before the data dir is made: a broker that
/// cannot listen leaves no CA, admin token or database behind.
#[test]
fn a_port_in_use_fails_before_a_fresh_data_dir_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_addr = tcp.local_addr().unwrap().to_string();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_addr = udp.local_addr().unwrap().to_string();
    let cases = [
        (
            "api",
            tcp_addr.as_str(),
            "127.0.0.1:0",
            "cannot listen on TCP",
            "--api-listen",
        ),
        (
            "quic",
            "127.0.0.1:0",
            udp_addr.as_str(),
            "cannot listen on UDP",
            "--quic-listen",
        ),
    ];
    for (what, api, quic, needle, flag) in cases {
        let data = tmp.path().join(what);
        let mut cmd = Command::new(bin("lanyard-broker"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .args(["--api-listen", api, "--quic-listen", quic])
            .env_remove("LANYARD_DATABASE_URL")
            .env("LANYARD_LOG", "error");
        let out = run(cmd, None);
        assert_eq!(out.code, 1, "{what}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{what}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{what}: {}", out.stderr);
        assert!(out.stderr.contains("in use"), "{what}: {}", out.stderr);
        assert!(out.stderr.contains(flag), "{what}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{what}: {}", out.stdout);
        assert!(
            !data.exists(),
            "{what}: the data dir was made: {:?}",
            std::fs::read_dir(&data).map(|d| d.count())
        );
    }
    drop((tcp, udp));
}

#[test]
fn migrate_applies_every_migration_once() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let files = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count();
    assert!(files >= 2);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let mut cmd = Command::new(bin("lanyard-broker"));
    cmd.args(["migrate", "--data-dir"]).arg(&data);
    let first = run(cmd, None).ok().stdout;
    assert!(
        first.contains(&format!("migrations applied: {files} ")),
        "{first}"
    );
    let mut cmd = Command::new(bin("lanyard-broker"));
    cmd.args(["migrate", "--data-dir"]).arg(&data);
    assert!(run(cmd, None)
        .ok()
        .stdout
        .contains("migrations applied: 0 "));
}

/// `... | head -1`: a command whose stdout reader has gone ends quietly
/// with 0, without a panic or a "Broken pipe" message.
#[test]
fn a_closed_stdout_ends_broker_and_agent_commands_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../broker/tests/fixtures");
    let mut check = Command::new(bin("lanyard-broker"));
    check
        .args(["check-config", "--config"])
        .arg(fixtures.join("valid.toml"));
    let mut migrate = Command::new(bin("lanyard-broker"));
    migrate
        .args(["migrate", "--data-dir"])
        .arg(tmp.path().join("data"))
        .env("LANYARD_LOG", "error");
    let agent = |args: &[&str]| {
        let mut cmd = Command::new(bin("lanyard-agent"));
        cmd.arg("--state-dir")
            .arg(tmp.path().join("agent"))
            .args(args);
        cmd
    };
    let cases = [
        ("check-config", check),
        ("migrate", migrate),
        ("agent status", agent(&["status"])),
        ("agent status --json", agent(&["status", "--json"])),
        ("agent logout", agent(&["logout"])),
    ];
    for (what, cmd) in cases {
        let out = run_with_closed_stdout(cmd);
        assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{what}");
    }
}
