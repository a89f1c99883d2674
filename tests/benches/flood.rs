//! The flood benchmark: what each kind of unauthenticated flood costs the
//! staff who are working through the broker at the time.
//!
//! ```sh
//! cargo bench -p lanyard-e2e --bench flood
//! LANYARD_FLOOD_ATTACKS=initials-5000,passwords cargo bench -p lanyard-e2e --bench flood
//! ```
//!
//! For each attack, a fresh release broker on 127.0.0.1 (SQLite), the
//! attack started from other loopback addresses (127.0.0.x, 127.1.x.y),
//! and meanwhile `lanyard stress` brings 200 legitimate agents in and
//! keeps their tunnels busy. One row per attack: the legitimate agents'
//! connect p50/p99, how many were refused, their tunnel throughput, the
//! broker's peak RSS and CPU, and the audit rows written.
//!
//! The attacks (all loopback only, bounded in count and time):
//! - `initials-R`: QUIC Initials at R a second from 256 source addresses
//!   that never answer (the spoofed-source flood: the broker's Retry goes
//!   nowhere);
//! - `idle-certless`: 500 certificate-less QUIC connections that complete
//!   the handshake and then idle;
//! - `unknown-codes`: enrolment requests with codes that do not exist;
//! - `passwords`: `POST /api/v1/login` with wrong passwords;
//! - `bad-tokens`: API requests with bearer tokens that are not ours.
//!
//! Environment: `LANYARD_FLOOD_ATTACKS` (comma list, default all, `none`
//! is the baseline and always runs first), `LANYARD_FLOOD_AGENTS`
//! (default 200), `LANYARD_FLOOD_HOLD` (seconds the agents hold, default 20).
//!
//! The attacker shares the machine's cores with the broker and the
//! legitimate agents: on a 2-core machine the figures include that.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lanyard_agent::client;
use lanyard_e2e::{bin, read_http_response, rss_kib, tls_client, BrokerProcess};
use lanyard_proto::enrol::SECRET_LEN;
use lanyard_proto::{KeyAlg, Message};

const LOG: [(&str, &str); 1] = [("LANYARD_LOG", "warn")];

/// One attack's running counters.
#[derive(Default)]
struct Sent {
    sent: AtomicU64,
    failed: AtomicU64,
}

/// What the attack needs to know of its target.
#[derive(Clone)]
struct Target {
    api: SocketAddr,
    quic: SocketAddr,
    host: String,
    fingerprint: [u8; 32],
    data_dir: std::path::PathBuf,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "flood".contains(a.as_str())) {
        return;
    }
    let all = "none,initials-1000,initials-5000,idle-certless,unknown-codes,passwords,bad-tokens";
    let mut attacks: Vec<String> = std::env::var("LANYARD_FLOOD_ATTACKS")
        .unwrap_or_else(|_| all.into())
        .split(',')
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty() && a != "none")
        .collect();
    attacks.insert(0, "none".into());
    let agents: u64 = env_num("LANYARD_FLOOD_AGENTS", 200);
    let hold: u64 = env_num("LANYARD_FLOOD_HOLD", 20);

    println!(
        "flood: {agents} legitimate agents (sign in over {}s, hold {hold}s, streams every 2s) during each attack",
        ramp_for(agents)
    );
    println!(
        "{:<15} {:>9} {:>9} {:>9} {:>8} {:>10} {:>8} {:>7} {:>9} {:>8}",
        "attack",
        "sent",
        "conn p50",
        "conn p99",
        "refused",
        "tunnel",
        "rss MiB",
        "cpu %",
        "audit +",
        "verdict"
    );
    for attack in attacks {
        run_one(&attack, agents, hold);
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seconds to sign `n` agents in at 25 a second (each costs an argon2 hash).
fn ramp_for(n: u64) -> u64 {
    n.div_ceil(25).max(2)
}

fn run_one(attack: &str, agents: u64, hold: u64) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let config = tmp.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[limits]\nagents = {}\n[admission]\ncapacity = {}\n",
            agents * 4 + 100,
            agents * 8
        ),
    )
    .expect("config");
    let data_dir = tmp.path().join("data");
    let broker = BrokerProcess::start(
        &data_dir,
        &["--config", config.to_str().expect("utf-8")],
        &LOG,
    );
    let fingerprint: [u8; 32] = data_encoding::HEXLOWER
        .decode(broker.ca_fingerprint.as_bytes())
        .expect("hex fingerprint")
        .try_into()
        .expect("32 bytes");
    let quic: SocketAddr = broker.quic.parse().expect("QUIC address");
    let target = Target {
        api: broker
            .api
            .trim_start_matches("https://")
            .parse()
            .expect("API"),
        quic,
        host: quic.ip().to_string(),
        fingerprint,
        data_dir: data_dir.clone(),
    };
    let pid = broker.child.id();
    let rows_before = audit_rows(&broker);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Sent::default());
    let attacker = {
        let (attack, stop, sent) = (attack.to_owned(), stop.clone(), sent.clone());
        std::thread::spawn(move || attack_run(&attack, &target, &stop, &sent))
    };
    // Let the attack reach its full weight before staff arrive.
    std::thread::sleep(Duration::from_secs(2));

    let json = tmp.path().join("stress.json");
    let cpu_before = cpu_ticks(pid);
    let started = Instant::now();
    let mut stress = Command::new(bin("lanyard"))
        .args(["stress", "--agents", &agents.to_string()])
        .args(["--ramp", &format!("{}s", ramp_for(agents))])
        .args(["--duration", &format!("{hold}s")])
        .args(["--streams-per-agent", "1", "--bytes-per-stream", "65536"])
        .args(["--streams-per-minute", "30"])
        .arg("--json-out")
        .arg(&json)
        .env("LANYARD_BROKER", &broker.api)
        .env("LANYARD_CA_CERT", data_dir.join("ca.pem"))
        .env("LANYARD_TOKEN", broker.admin_token())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run lanyard stress");
    let mut rss_peak = 0;
    let deadline = Instant::now() + Duration::from_secs(ramp_for(agents) + hold + 120);
    loop {
        rss_peak = rss_peak.max(rss_kib(pid));
        if stress.try_wait().ok().flatten().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = stress.kill();
            let _ = stress.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let busy_s = started.elapsed().as_secs_f64();
    let cpu_pct = (cpu_ticks(pid) - cpu_before) as f64 / ticks_per_second() / busy_s * 100.0;
    stop.store(true, Relaxed);
    let _ = attacker.join();
    let rows = audit_rows(&broker).saturating_sub(rows_before);

    let figures: serde_json::Value = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let refused = figures["agents_failed"].as_u64().unwrap_or(agents);
    let p99 = figures["connect_ms"]["p99"].as_f64().unwrap_or(f64::NAN);
    let ok = refused == 0 && p99 < 1000.0;
    println!(
        "{:<15} {:>9} {:>7.1}ms {:>7.1}ms {:>8} {:>6.1}MB/s {:>8.1} {:>7.0} {:>9} {:>8}",
        attack,
        format!(
            "{}{}",
            sent.sent.load(Relaxed),
            match sent.failed.load(Relaxed) {
                0 => String::new(),
                n => format!("/{n}x"),
            }
        ),
        figures["connect_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
        p99,
        refused,
        figures["throughput"]["mean_bytes_per_s"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e6,
        rss_peak as f64 / 1024.0,
        cpu_pct,
        rows,
        if ok { "ok" } else { "MISSED" }
    );
    println!(
        "    of a connect, p99: handshake {:.1} ms, sign-in {:.1} ms; stream open p99 {:.1} ms",
        figures["handshake_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
        figures["sign_in_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
        figures["stream_open_ms"]["p99"]
            .as_f64()
            .unwrap_or(f64::NAN),
    );
    if let Some(errors) = figures["errors"].as_object() {
        if !errors.is_empty() {
            println!(
                "    agent errors: {}",
                serde_json::Value::Object(errors.clone())
            );
        }
    }
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name, which may hold spaces.
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0)
}

fn ticks_per_second() -> f64 {
    // The kernel's USER_HZ, which /proc reports in; 100 on Linux.
    100.0
}

/// Rows in the audit log, as `lanyard audit verify` counts them.
fn audit_rows(broker: &BrokerProcess) -> u64 {
    let run = broker.lanyard(&["audit", "verify", "--json"], None, None);
    serde_json::from_str::<serde_json::Value>(&run.stdout)
        .ok()
        .and_then(|v| v["rows_checked"].as_u64())
        .unwrap_or(0)
}

fn attack_run(attack: &str, target: &Target, stop: &AtomicBool, sent: &Sent) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("attacker runtime");
    match attack {
        "none" => {
            while !stop.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        a if a.starts_with("initials-") => {
            let rate = a["initials-".len()..].parse().unwrap_or(1000);
            initials(target, rate, stop, sent);
        }
        "idle-certless" => rt.block_on(idle_certless(target, 500, stop, sent)),
        "unknown-codes" => rt.block_on(unknown_codes(target, stop, sent)),
        "passwords" => api_flood(target, stop, sent, |_| {
            let body = r#"{"username":"s.staff","password":"not-the-password"}"#;
            format!(
                "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        }),
        "bad-tokens" => api_flood(target, stop, sent, |i| {
            format!(
                "GET /api/v1/staff HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer eyJhbGciOiJFUzI1NiJ9.{i:x}.AAAA\r\n\r\n"
            )
        }),
        other => panic!("unknown attack {other:?}"),
    }
}

/// QUIC Initials at `rate` a second from 256 loopback addresses that never
/// answer. Each is a real client's first flight (a fresh connection ID, a
/// full TLS ClientHello), made ahead of time so the attacker's own crypto
/// does not limit the rate.
fn initials(target: &Target, rate: u64, stop: &AtomicBool, sent: &Sent) {
    let pin = client::PinnedCa::new(target.fingerprint);
    let config = client::enrolment_config(pin).expect("client config");
    let mut endpoint = quinn_proto::Endpoint::new(
        Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let batch = (rate * 4) as usize;
    let now = Instant::now();
    let mut packets = Vec::with_capacity(batch);
    for _ in 0..batch {
        let Ok((_, mut conn)) = endpoint.connect(now, config.clone(), target.quic, &target.host)
        else {
            continue;
        };
        let mut buf = Vec::new();
        if let Some(t) = conn.poll_transmit(now, 1, &mut buf) {
            buf.truncate(t.size);
            packets.push(buf);
        }
    }
    let sockets: Vec<UdpSocket> = (0..256u32)
        .filter_map(|i| {
            UdpSocket::bind(SocketAddr::from((
                [127, 1, (i / 250) as u8, (i % 250 + 1) as u8],
                0,
            )))
            .ok()
        })
        .collect();
    assert!(
        !sockets.is_empty(),
        "no loopback source addresses to send from"
    );
    let started = Instant::now();
    let mut n: u64 = 0;
    while !stop.load(Relaxed) {
        // Send in 10 ms slices at the asked rate; Initials repeat after
        // four seconds' worth, by which time the broker has let them go.
        let due = started.elapsed().as_secs_f64() * rate as f64;
        while (n as f64) < due {
            let packet = &packets[n as usize % packets.len()];
            let socket = &sockets[n as usize % sockets.len()];
            match socket.send_to(packet, target.quic) {
                Ok(_) => sent.sent.fetch_add(1, Relaxed),
                Err(_) => sent.failed.fetch_add(1, Relaxed),
            };
            n += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `count` certificate-less connections, handshake complete, then idle
/// until the end of the run (quinn keeps them alive).
async fn idle_certless(target: &Target, count: usize, stop: &AtomicBool, sent: &Sent) {
    let pin = client::PinnedCa::new(target.fingerprint);
    let endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 3], 0))).expect("bind");
    let mut held = Vec::new();
    for _ in 0..count {
        if stop.load(Relaxed) {
            break;
        }
        let config = client::enrolment_config(pin.clone()).expect("client config");
        match client::connect(&endpoint, config, target.quic, &target.host).await {
            Ok(c) => {
                sent.sent.fetch_add(1, Relaxed);
                held.push(c);
            }
            Err(_) => {
                sent.failed.fetch_add(1, Relaxed);
            }
        }
    }
    while !stop.load(Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(held);
}

/// Enrolment requests with codes that do not exist, over certificate-less
/// connections from one address, as fast as the broker answers them.
async fn unknown_codes(target: &Target, stop: &AtomicBool, sent: &Sent) {
    let pin = client::PinnedCa::new(target.fingerprint);
    let endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 4], 0))).expect("bind");
    let mut i: u64 = 0;
    while !stop.load(Relaxed) {
        let config = client::enrolment_config(pin.clone()).expect("client config");
        let Ok(conn) = client::connect(&endpoint, config, target.quic, &target.host).await else {
            sent.failed.fetch_add(1, Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // A few requests per connection, as a script would.
        for _ in 0..4 {
            i += 1;
            let mut secret = [0u8; SECRET_LEN];
            secret[..8].copy_from_slice(&i.to_le_bytes());
            let msg = Message::EnrolRequest {
                secret,
                key_alg: KeyAlg::Ed25519,
                public_key: vec![7; 32],
                proof: vec![9; 64],
                agent_version: "flood".into(),
                os: "flood".into(),
            };
            match client::request(&conn, &msg).await {
                Err(client::ClientError::Refused { .. }) => sent.sent.fetch_add(1, Relaxed),
                _ => sent.failed.fetch_add(1, Relaxed),
            };
        }
        conn.close(0u32.into(), b"");
    }
}

/// HTTPS requests made by `request(i)` from 127.0.0.5, 8 connections at a
/// time, each connection carrying requests until the broker closes it.
fn api_flood(
    target: &Target,
    stop: &AtomicBool,
    sent: &Sent,
    request: impl Fn(u64) -> String + Sync,
) {
    let counter = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                while !stop.load(Relaxed) {
                    let Some(tcp) = tcp_from([127, 0, 0, 5], target.api) else {
                        sent.failed.fetch_add(1, Relaxed);
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    let mut tls = tls_client(&target.data_dir.join("ca.pem"), tcp);
                    while !stop.load(Relaxed) {
                        let i = counter.fetch_add(1, Relaxed);
                        if tls.write_all(request(i).as_bytes()).is_err() {
                            break;
                        }
                        match read_http_response(&mut tls) {
                            Some(status) if status >= 400 => sent.sent.fetch_add(1, Relaxed),
                            Some(_) => sent.failed.fetch_add(1, Relaxed),
                            None => break,
                        };
                    }
                }
            });
        }
    });
}

fn tcp_from(from: [u8; 4], to: SocketAddr) -> Option<std::net::TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.bind(&SocketAddr::from((from, 0)).into()).ok()?;
    socket
        .connect_timeout(&to.into(), Duration::from_secs(2))
        .ok()?;
    let tcp: std::net::TcpStream = socket.into();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    Some(tcp)
}
