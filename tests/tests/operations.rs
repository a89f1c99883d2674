//! Running the broker as a service, with the real binaries on 127.0.0.1:
//! its server certificate renewed while serving, SIGHUP reloading the
//! certificate files and the configuration without dropping a tunnel;
//! token-signing keys rotated.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lanyard_broker::auth::ca::Ca;
use lanyard_broker::datadir::{to_pem, DataDir};
use lanyard_broker::tls::certificate_facts;
use lanyard_e2e::world::{live_connection, World, PASSWORD, READY};
use lanyard_e2e::{bin, echo_through, pattern, run, Agent, BrokerProcess};

/// The leaf certificate the API serves to a new TLS connection (verified
/// against the broker's CA on the way).
fn served_cert(b: &BrokerProcess) -> Vec<u8> {
    let tcp = TcpStream::connect(b.api_addr()).unwrap();
    let mut tls = b.tls_over(tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls.conn.peer_certificates().unwrap()[0].to_vec()
}

/// Bytes still flow both ways on a tunnel connection opened earlier.
fn still_echoes(conn: &mut TcpStream, word: &[u8; 4]) {
    conn.write_all(word).unwrap();
    let mut back = [0u8; 4];
    conn.read_exact(&mut back).unwrap();
    assert_eq!(&back, word);
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// The `took_ms` of the last SIGHUP log line.
fn last_reload_ms(log: &str) -> f64 {
    log.lines()
        .rev()
        .find(|l| l.contains("SIGHUP: reloaded the configuration"))
        .and_then(|l| l.split("took_ms=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn the_server_certificate_renews_at_half_life_under_live_tunnels_and_cli_calls() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("broker.toml");
    std::fs::write(&config, "[tls]\nserver_cert_ttl = \"4s\"\n").unwrap();
    let config = config.to_str().unwrap().to_owned();
    let w = World::in_dir(tmp, &["--config", &config], &[]);
    w.person("a.patel", "hr");
    let agent = w.agent("laptop", "a.patel", None);
    let mut up = agent.up(&[]);
    let forwards = up.wait_ready(READY);
    let mut live = live_connection(forwards["echo"]);

    let first = served_cert(&w.broker);
    let mut seen = vec![first.clone()];
    let mut calls = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        // Each call is a new TLS connection, which must verify.
        w.broker
            .lanyard(&["staff", "list", "--json"], None, None)
            .ok();
        calls += 1;
        let now = served_cert(&w.broker);
        if !seen.contains(&now) {
            seen.push(now);
        }
        still_echoes(&mut live, b"tick");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A 4 s certificate renewed every 2 s: 5 in 10 s.
    assert!(
        seen.len() >= 4,
        "{} certificates served in 10 s",
        seen.len()
    );
    let (a, b) = (
        certificate_facts(&first).unwrap(),
        certificate_facts(seen.last().unwrap()).unwrap(),
    );
    assert_ne!(a.serial, b.serial);
    assert!(b.not_after >= a.not_after + 4, "{a:?} then {b:?}");
    let renewals = w
        .broker
        .log_text()
        .matches("renewed the broker's server certificate")
        .count();
    assert!(renewals >= 4, "{renewals} renewals logged");

    // The gauge: seconds until the served certificate (at most 4 s away)
    // and the CA (years) expire.
    let metrics = w.broker.lanyard_metrics();
    let gauge = |cert: &str| -> f64 {
        let prefix = format!("lanyard_certificate_expiry_seconds{{cert=\"{cert}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {cert} expiry in {metrics}"))
    };
    assert!((0.0..=4.0).contains(&gauge("server")), "{metrics}");
    assert!(gauge("ca") > 9.0 * 365.0 * 86400.0, "{metrics}");

    // New QUIC connections after the renewals: an enrolment, a sign-in and
    // a session of a second device, and bytes through it.
    let phone = w.agent("phone", "a.patel", None);
    let mut up2 = phone.up(&[]);
    let forwards2 = up2.wait_ready(READY);
    let data = pattern(7, 256 * 1024);
    assert!(echo_through(forwards2["echo"], &data).unwrap() == data);
    still_echoes(&mut live, b"tock");
    println!(
        "renewal: {} certificates served, {renewals} renewals logged, {calls} CLI calls, all answered",
        seen.len()
    );
}

/// A certificate for the API from the broker's CA, written as PEM files;
/// its DER.
fn write_api_cert(ca: &Ca, dir: &Path, life: Duration) -> Vec<u8> {
    let (chain, key) = ca.issue_server_cert(&[], life).unwrap();
    std::fs::write(dir.join("api.pem"), to_pem("CERTIFICATE", &chain[0])).unwrap();
    std::fs::write(
        dir.join("api-key.pem"),
        to_pem("PRIVATE KEY", key.secret_der()),
    )
    .unwrap();
    chain[0].to_vec()
}

#[test]
fn sighup_reloads_certificate_files_and_config_without_dropping_a_tunnel() {
    let tmp = tempfile::tempdir().unwrap();
    // The CA made ahead, so the test can issue the API's certificates.
    let ca = Ca::load_or_create(&DataDir::open(&tmp.path().join("data")).unwrap()).unwrap();
    let files = tmp.path().to_owned();
    let first = write_api_cert(&ca, &files, Duration::from_secs(3600));
    let config = files.join("broker.toml");
    std::fs::write(&config, "[admission]\ncapacity = 100\n").unwrap();
    let (cert_file, key_file) = (files.join("api.pem"), files.join("api-key.pem"));
    let w = World::in_dir(
        tmp,
        &[
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(served_cert(&w.broker), first);
    w.person("a.patel", "hr");
    let agent = w.agent("laptop", "a.patel", None);
    let mut up = agent.up(&[]);
    let forwards = up.wait_ready(READY);
    let mut live = live_connection(forwards["echo"]);
    let hups = |b: &BrokerProcess| {
        b.log_text()
            .matches("SIGHUP: reloaded the configuration")
            .count()
    };

    // New files: served from the next connection on.
    let second = write_api_cert(&ca, &files, Duration::from_secs(7200));
    w.broker.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || hups(&w.broker) == 1),
        "{}",
        w.broker.log_text()
    );
    let took_files = last_reload_ms(&w.broker.log_text());
    assert_eq!(served_cert(&w.broker), second);
    let metrics = w.broker.lanyard_metrics();
    let api_expiry: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("lanyard_certificate_expiry_seconds{cert=\"api\"} ")?
                .parse()
                .ok()
        })
        .unwrap();
    assert!((7000.0..=7200.0).contains(&api_expiry), "{metrics}");
    still_echoes(&mut live, b"one.");

    // A broken file: the old certificate stays, and the log says why.
    std::fs::write(&cert_file, "not a certificate").unwrap();
    w.broker.signal("HUP");
    assert!(wait_until(Duration::from_secs(10), || hups(&w.broker) == 2));
    let log = w.broker.log_text();
    assert!(
        log.contains("the --tls-cert certificate was not reloaded; serving the old one"),
        "{log}"
    );
    assert!(log.contains("no certificate in it"), "{log}");
    assert_eq!(served_cert(&w.broker), second);

    // A config change: the live one applies, the restart-only one is named.
    write_api_cert(&ca, &files, Duration::from_secs(7200));
    std::fs::write(
        &config,
        "log_level = \"debug\"\n[admission]\ncapacity = 7\n[limits]\nstreams_per_agent = 9\n",
    )
    .unwrap();
    w.broker.signal("HUP");
    assert!(wait_until(Duration::from_secs(10), || hups(&w.broker) == 3));
    let took_config = last_reload_ms(&w.broker.log_text());
    let load = w.broker.lanyard(&["load", "--json"], None, None).ok();
    let load: serde_json::Value = serde_json::from_str(&load.stdout).unwrap();
    assert_eq!(load["capacity"], 7, "{load}");
    let log = w.broker.log_text();
    let restart = log
        .lines()
        .find(|l| l.contains("take effect only after a restart"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(restart.contains("limits.streams_per_agent"), "{restart}");
    assert!(!restart.contains("admission"), "{restart}");
    let applied = log
        .lines()
        .rev()
        .find(|l| l.contains("SIGHUP: reloaded the configuration"))
        .unwrap();
    assert!(
        applied.contains("applied=admission, log_level"),
        "{applied}"
    );
    assert!(log.contains(" DEBUG "), "the new log level holds: {log}");

    // A config that does not parse changes nothing.
    std::fs::write(&config, "colour = 'blue'\n").unwrap();
    w.broker.signal("HUP");
    assert!(wait_until(Duration::from_secs(10), || hups(&w.broker) == 4));
    assert!(w
        .broker
        .log_text()
        .contains("the configuration was not reloaded; the running one stays"));
    let load = w.broker.lanyard(&["load", "--json"], None, None).ok();
    let load: serde_json::Value = serde_json::from_str(&load.stdout).unwrap();
    assert_eq!(load["capacity"], 7, "{load}");

    still_echoes(&mut live, b"two.");
    let mut broker = w.broker;
    assert_eq!(
        broker.wait_exit(Duration::from_millis(100)),
        None,
        "still running"
    );
    println!("SIGHUP reload: {took_files:.2} ms (certificate files), {took_config:.2} ms (config)");
}

/// The `kid` in the header of the agent's stored access token.
fn access_token_kid(agent: &Agent) -> String {
    let tokens: serde_json::Value =
        serde_json::from_slice(&std::fs::read(agent.state_dir.join("tokens.json")).unwrap())
            .unwrap();
    let token = tokens["access_token"].as_str().unwrap();
    let header = data_encoding::BASE64URL_NOPAD
        .decode(token.split('.').next().unwrap().as_bytes())
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[test]
fn rotated_keys_sign_new_tokens_while_old_ones_verify_until_they_expire() {
    let w = World::new();
    w.person("a.patel", "hr");
    let agent = w.agent("laptop", "a.patel", None);
    let old_kid = access_token_kid(&agent);

    let mut cmd = Command::new(bin("lanyard-broker"));
    cmd.arg("rotate-keys")
        .arg("--data-dir")
        .arg(&w.broker.data_dir);
    let out = run(cmd, None).ok().stdout;
    let new_kid = out
        .split("new token-signing key: kid ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    assert_ne!(new_kid, old_kid);
    assert!(out.contains(&old_kid), "the old kid still verifies: {out}");
    assert!(w.broker.data_dir.join("token-signing-key-2.pem").exists());
    w.broker.signal("HUP");
    assert!(wait_until(Duration::from_secs(10), || w
        .broker
        .log_text()
        .contains("SIGHUP: token-signing keys reloaded")));

    // The token signed before the rotation still opens a session.
    {
        let mut up = agent.up(&[]);
        let forwards = up.wait_ready(READY);
        assert_eq!(
            echo_through(forwards["echo"], b"old key").unwrap(),
            b"old key"
        );
        assert_eq!(access_token_kid(&agent), old_kid, "not refreshed meanwhile");
    }
    // A new sign-in gets a token under the new key, and it verifies.
    agent
        .run(
            &["login", "a.patel", "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        )
        .ok();
    assert_eq!(access_token_kid(&agent), new_kid);
    let mut up = agent.up(&[]);
    let forwards = up.wait_ready(READY);
    assert_eq!(
        echo_through(forwards["echo"], b"new key").unwrap(),
        b"new key"
    );
}

/// The data dir's files a restore needs beside the database copy.
const KEEP_WITH_A_BACKUP: [&str; 7] = [
    "ca.pem",
    "ca-key.pem",
    "token-signing-key.pem",
    "seal.key",
    "audit-signing.key",
    "quic-reset-key",
    "admin-token",
];

#[test]
fn a_backup_taken_under_writes_restores_with_a_good_audit_log_and_the_same_rules() {
    let w = World::new();
    w.person("a.patel", "hr");
    let agent = w.agent("laptop", "a.patel", None);
    let forwards = [
        "--forward",
        "echo=127.0.0.1:0",
        "--forward",
        "housing-app=127.0.0.1:0",
    ];

    // Writes going on: one audited change after another.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (stop, writes) = (stop.clone(), writes.clone());
        let (api, data) = (w.broker.api.clone(), w.broker.data_dir.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut cmd = Command::new(bin("lanyard"));
                cmd.args(["groups", "add", &format!("load-{i}")])
                    .env("LANYARD_BROKER", &api)
                    .env("LANYARD_CA_CERT", data.join("ca.pem"))
                    .env("LANYARD_TOKEN_FILE", data.join("admin-token"))
                    .env_remove("LANYARD_TOKEN");
                run(cmd, None).ok();
                writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                i += 1;
            }
        })
    };
    assert!(wait_until(Duration::from_secs(20), || writes
        .load(std::sync::atomic::Ordering::Relaxed)
        >= 5));
    let before = writes.load(std::sync::atomic::Ordering::Relaxed);
    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("lanyard-backup.db");
    let backup = |file: &Path| {
        let mut cmd = Command::new(bin("lanyard-broker"));
        cmd.arg("backup")
            .arg("--data-dir")
            .arg(&w.broker.data_dir)
            .arg(file);
        run(cmd, None)
    };
    let out = backup(&file).ok().stdout;
    let after = writes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(out.starts_with("backup: "), "{out}");
    // A second backup to the same name is refused and leaves it alone.
    let first_copy = std::fs::read(&file).unwrap();
    let again = backup(&file);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), first_copy);
    assert!(wait_until(Duration::from_secs(20), || writes
        .load(std::sync::atomic::Ordering::Relaxed)
        >= after + 3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let total = writes.load(std::sync::atomic::Ordering::Relaxed);

    // The broker is lost; its addresses get a broker on a fresh data dir
    // holding the copy and the key files.
    let mut lost = w.broker;
    let (api, quic) = (
        lost.api.trim_start_matches("https://").to_owned(),
        lost.quic.clone(),
    );
    lost.signal("KILL");
    lost.wait_exit(Duration::from_secs(10)).expect("exits");
    let fresh = backups.path().join("restored");
    std::fs::create_dir(&fresh).unwrap();
    for name in KEEP_WITH_A_BACKUP {
        std::fs::copy(lost.data_dir.join(name), fresh.join(name)).unwrap();
    }
    std::fs::copy(&file, fresh.join("lanyard.db")).unwrap();
    let restored = BrokerProcess::start_at(&fresh, &api, &quic, &[], &[]);

    let verify = restored.lanyard(&["audit", "verify"], None, None);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    // A consistent snapshot: every group added before the backup began, none
    // after it ended.
    let groups = restored
        .lanyard(&["groups", "list", "--json"], None, None)
        .ok();
    let groups: serde_json::Value = serde_json::from_str(&groups.stdout).unwrap();
    let load_groups = groups
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["name"].as_str().is_some_and(|n| n.starts_with("load-")))
        .count();
    assert!(
        (before..=after).contains(&load_groups),
        "{load_groups} groups restored; {before} were made before the backup, {after} by its end"
    );

    // The same rules: the person's allowed app carries bytes, the other
    // group's app is refused with the reason.
    let mut up = agent.up(&forwards);
    up.wait_ready(READY);
    let bound = std::fs::read_to_string(agent.state_dir.join("forwards.json")).unwrap();
    let bound: std::collections::BTreeMap<String, u16> = serde_json::from_str(&bound).unwrap();
    assert_eq!(
        echo_through(bound["echo"], b"restored").unwrap(),
        b"restored"
    );
    assert!(echo_through(bound["housing-app"], b"no")
        .unwrap_or_default()
        .is_empty());
    assert!(
        up.wait_log("not in any of its groups", Duration::from_secs(5)),
        "{}",
        up.log()
    );
    println!(
        "backup: {} bytes under {total} writes ({} during the backup); {out}",
        first_copy.len(),
        after - before
    );
}

#[test]
fn json_logs_have_an_access_line_per_request_and_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(
        &tmp.path().join("data"),
        &[],
        &[
            ("LANYARD_LOG_FORMAT", "json"),
            ("LANYARD_LOG", "info,rustls=debug"),
        ],
    );
    broker.lanyard(&["groups", "add", "hr"], None, None).ok();
    broker.add_person("a.patel", "hr", PASSWORD);
    let staff = broker
        .lanyard(&["staff", "show", "a.patel"], None, None)
        .ok();
    assert!(staff.stdout.contains("a.patel"), "{}", staff.stdout);
    let bad_token = "lyt_this-token-is-not-valid-0123456789";
    let refused = broker.lanyard(&["staff", "list"], Some(bad_token), None);
    assert_ne!(refused.code, 0);
    let login = broker
        .lanyard(
            &["login", "a.patel", "--password-stdin"],
            Some(""),
            Some(&format!("{PASSWORD}\n")),
        )
        .ok();
    let api_token = login
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("lyt_"))
        .unwrap_or_else(|| panic!("no token in {}", login.stdout))
        .to_owned();
    // Not an admin: refused, but signed in.
    let forbidden = broker.lanyard(&["staff", "list"], Some(&api_token), None);
    assert_ne!(forbidden.code, 0);
    broker.lanyard_metrics();

    // The CLI's own log (rustls, bridged) is JSON too.
    let mut cmd = Command::new(bin("lanyard"));
    cmd.args(["staff", "list"])
        .env("LANYARD_BROKER", &broker.api)
        .env("LANYARD_CA_CERT", broker.data_dir.join("ca.pem"))
        .env("LANYARD_TOKEN", broker.admin_token())
        .env("LANYARD_LOG_FORMAT", "json")
        .env("LANYARD_LOG", "rustls=debug");
    let cli = run(cmd, None).ok();
    let cli_lines: Vec<serde_json::Value> = cli
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        cli_lines
            .iter()
            .any(|l| l["target"].as_str().unwrap_or("").starts_with("rustls")),
        "{}",
        cli.stderr
    );

    // The agent's messages too, its last words included.
    let mut up = Agent::new(tmp.path().join("not-enrolled")).command();
    up.arg("up").env("LANYARD_LOG_FORMAT", "json");
    let up = run(up, None);
    assert_ne!(up.code, 0);
    let last: serde_json::Value = serde_json::from_str(up.stderr.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", up.stderr));
    assert_eq!(last["level"], "ERROR", "{last}");
    assert!(
        last["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("not enrolled"),
        "{last}"
    );

    let log = broker.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "lanyard_broker::access")
        .map(|l| &l["fields"])
        .collect();
    let find = |method: &str, route: &str, status: u64| {
        access
            .iter()
            .find(|f| f["method"] == method && f["route"] == route && f["status"] == status)
            .unwrap_or_else(|| panic!("no {method} {route} {status} in {access:#?}"))
    };
    let shown = find("GET", "/api/v1/staff/{username}", 200);
    assert_eq!(shown["actor"], "bootstrap", "{shown}");
    assert!(shown["duration_ms"]
        .as_str()
        .unwrap()
        .parse::<f64>()
        .is_ok());
    assert_eq!(find("GET", "/api/v1/staff", 401)["actor"], "-");
    assert_eq!(find("POST", "/api/v1/login", 200)["actor"], "a.patel");
    assert_eq!(find("GET", "/api/v1/staff", 403)["actor"], "a.patel");
    find("GET", "/metrics", 200);
    assert!(
        lines
            .iter()
            .any(|l| l["target"].as_str().unwrap_or("").starts_with("rustls")),
        "rustls's log records are in the same stream"
    );
    for secret in [
        PASSWORD,
        bad_token,
        api_token.as_str(),
        broker.admin_token().as_str(),
    ] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
    println!(
        "json log: {} lines, {} access lines, all JSON",
        lines.len(),
        access.len()
    );
}
