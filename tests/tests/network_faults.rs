//! A bad network and a broken broker, end to end with the real binaries on
//! 127.0.0.1: tunnels through an impaired UDP path ([`Relay`]), a black
//! hole, an agent whose address changes, a broker killed or stopped with
//! transfers in flight.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lanyard_e2e::impair::{Faults, Relay};
use lanyard_e2e::world::{closed_at, ended_after, live_connection, World, READY};
use lanyard_e2e::{echo_through, pattern, BrokerProcess, UpProcess};

/// A world whose agents reach the broker only through `relay` (enrolment
/// codes carry the relay's address), with `config` as the broker's file.
fn world_behind(relay: &Relay, config: &str) -> (World, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.toml");
    std::fs::write(&path, config).unwrap();
    let public = relay.addr.to_string();
    let w = World::with(
        &["--config", path.to_str().unwrap(), "--public-addr", &public],
        &[],
    );
    relay.set_upstream(w.broker.quic.parse().unwrap());
    (w, dir)
}

/// `lanyard-agent status --json`.
fn status(w: &World, name: &str) -> serde_json::Value {
    let agent = lanyard_e2e::Agent::new(w.tmp.path().join(name));
    let out = agent.run(&["status", "--json"], None).ok();
    serde_json::from_str(&out.stdout).unwrap()
}

/// How a paced transfer ended.
#[derive(Debug)]
struct Transfer {
    back: Vec<u8>,
    /// The read that ended it: `None` for a clean end of stream.
    error: Option<std::io::ErrorKind>,
}

/// Sends `data` to the echo behind `port` in `chunk`-sized writes with
/// `pause` between them (so the transfer is still going when the test
/// acts), half-closes, and reads until the end; `progress` counts the
/// bytes back.
fn paced_echo(
    port: u16,
    data: Arc<Vec<u8>>,
    chunk: usize,
    pause: Duration,
    progress: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Transfer> {
    std::thread::spawn(move || {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut writer = conn.try_clone().unwrap();
        std::thread::spawn(move || {
            for part in data.chunks(chunk) {
                if writer.write_all(part).is_err() {
                    return;
                }
                std::thread::sleep(pause);
            }
            let _ = writer.shutdown(std::net::Shutdown::Write);
        });
        read_all(&mut conn, &progress)
    })
}

/// Reads until the end of stream or an error, counting in `progress`.
fn read_all(conn: &mut TcpStream, progress: &AtomicUsize) -> Transfer {
    let mut back = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return Transfer { back, error: None },
            Ok(n) => {
                back.extend_from_slice(&buf[..n]);
                progress.store(back.len(), Relaxed);
            }
            Err(e) => {
                return Transfer {
                    back,
                    error: Some(e.kind()),
                }
            }
        }
    }
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_no_reconnect(up: &UpProcess) {
    let log = up.log();
    assert!(!log.contains("disconnected"), "{log}");
}

/// 5% loss each way and a 200 ms round trip: a transfer through the tunnel
/// arrives byte for byte, and the session stays up, through the transfer
/// and through a quiet spell longer than the idle timeout (keepalives get
/// through the loss).
///
/// Loss-based congestion control (quinn's default, CUBIC) runs at some
/// 25-30 KiB/s a direction on this path, as TCP would: 4 MiB each way takes
/// some two and a half minutes, run beside the other tests of this file.
#[test]
fn a_lossy_slow_path_carries_4_mib_byte_exact_without_an_idle_timeout() {
    lossy_slow_path(4 * 1024 * 1024);
}

fn lossy_slow_path(bytes: usize) {
    let relay = Relay::start(4);
    // Idle timeout 8 s, keepalives every 5 s: a lost keepalive has some
    // three seconds to be sent again.
    let (w, _config) = world_behind(&relay, "[limits]\nquic_idle_timeout = \"8s\"\n");
    w.person("l.lossy", "hr");
    let agent = w.agent("lossy", "l.lossy", None);
    relay.set_faults(Faults {
        delay: Duration::from_millis(100),
        loss: 0.05,
        ..Faults::default()
    });
    let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
    let port = up.wait_ready(READY)["echo"];
    let session = status(&w, "lossy")["session_id"].clone();

    let data = pattern(4, bytes);
    let started = Instant::now();
    let back = echo_through(port, &data).unwrap();
    let took = started.elapsed();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the echoed bytes differ");
    let counts = relay.counts();
    assert!(
        counts.lost as f64 > counts.received as f64 * 0.03,
        "the path lost too little: {counts:?}"
    );

    // Quiet for longer than the idle timeout: only keepalives cross.
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(echo_through(port, b"still here").unwrap(), b"still here");
    assert_no_reconnect(&up);
    let now = status(&w, "lossy");
    assert_eq!(now["session_id"], session, "{now}");
    assert_eq!(now["state"], "connected", "{now}");
    eprintln!("{bytes} bytes each way through 5% loss and 200 ms RTT in {took:?}; {counts:?}");
}

/// A black hole longer than the idle timeout: the idle timeout closes the
/// connection (and the live tunnel with it), `status` says the agent cannot
/// reach the broker, the agent tries again only now and then, and once the
/// path is back it reconnects by itself.
#[test]
fn after_a_black_hole_the_idle_timeout_closes_and_the_agent_comes_back_without_a_storm() {
    let relay = Relay::start(5);
    let (w, _config) = world_behind(&relay, "[limits]\nquic_idle_timeout = \"6s\"\n");
    w.person("b.hole", "hr");
    let agent = w.agent("hole", "b.hole", None);
    let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
    let port = up.wait_ready(READY)["echo"];
    let conn = live_connection(port);
    let before = relay.attempts().len();

    let hole = Duration::from_secs(25);
    let hole_start = Instant::now();
    relay.black_hole(hole);
    let closed_after = ended_after(
        closed_at(conn, Duration::from_secs(20)),
        hole_start,
        "black hole",
    );
    assert!(
        closed_after >= Duration::from_secs(1) && closed_after < Duration::from_secs(15),
        "the live tunnel ended {closed_after:?} into the hole (idle timeout 6s, keepalives every 5 s); {}",
        up.log()
    );
    assert!(
        up.wait_log("within the idle timeout", Duration::from_secs(5)),
        "{}",
        up.log()
    );

    // While the broker cannot be reached, status says so.
    wait_for(
        "status shows the agent reconnecting",
        Duration::from_secs(5),
        || {
            let s = status(&w, "hole");
            s["up"] == true && s["connected"] == false && s["last_error"].is_string()
        },
    );
    let s = status(&w, "hole");
    assert_eq!(s["state"], "reconnecting", "{s}");
    let text = agent.run(&["status"], None).ok().stdout;
    assert!(text.contains("reconnecting"), "{text}");
    assert!(text.contains("cannot reach the broker"), "{text}");

    // The rest of the hole.
    std::thread::sleep(hole.saturating_sub(hole_start.elapsed()));
    let in_hole: Vec<_> = relay.attempts()[before..]
        .iter()
        .filter(|(at, _)| *at < hole_start + hole)
        .map(|(at, _)| at.duration_since(hole_start))
        .collect();
    assert!(!in_hole.is_empty(), "the agent never tried again");
    assert!(
        in_hole.len() <= 4,
        "a retry storm: {} connection attempts in {hole:?}: {in_hole:?}",
        in_hole.len()
    );
    // It waits between attempts (capped exponential backoff, full jitter).
    let waits: Vec<String> = up
        .log()
        .lines()
        .filter_map(|l| l.split("reconnecting in ").nth(1).map(str::to_owned))
        .collect();
    assert!(
        waits.iter().any(|w| w != "0s"),
        "no backoff between attempts: {waits:?}"
    );

    // The path is back: so is the agent.
    let back_at = Instant::now();
    let again = up.wait_ready(Duration::from_secs(40));
    assert_eq!(again["echo"], port);
    assert_eq!(echo_through(port, b"back").unwrap(), b"back");
    let total = relay.attempts().len() - before;
    assert!(total <= in_hole.len() + 2, "{:?}", relay.attempts());
    let s = status(&w, "hole");
    assert_eq!(s["state"], "connected", "{s}");
    eprintln!(
        "closed {closed_after:?} into the hole; attempts in the hole at {in_hole:?}; \
         back {:?} after the hole; waits {waits:?}",
        back_at.elapsed()
    );
}

/// The agent's address changes in the middle of a transfer (the relay
/// sends from a new socket): QUIC migrates the connection, the transfer
/// finishes byte for byte, and the session is the same; the same person's
/// other device, given this one's tokens, cannot carry the session on.
#[test]
fn a_transfer_survives_the_agent_changing_address_by_migration() {
    let relay = Relay::start(6);
    let (w, _config) = world_behind(&relay, "[limits]\nquic_idle_timeout = \"8s\"\n");
    w.person("m.move", "hr");
    let agent = w.agent("move", "m.move", None);
    relay.set_faults(Faults {
        delay: Duration::from_millis(5),
        ..Faults::default()
    });
    let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
    let port = up.wait_ready(READY)["echo"];
    let session = status(&w, "move")["session_id"].clone();

    let data = Arc::new(pattern(6, 4 * 1024 * 1024));
    let progress = Arc::new(AtomicUsize::new(0));
    let transfer = paced_echo(
        port,
        data.clone(),
        64 * 1024,
        Duration::from_millis(10),
        progress.clone(),
    );
    wait_for("a first MiB back", Duration::from_secs(20), || {
        progress.load(Relaxed) >= 1024 * 1024
    });
    relay.rebind();
    let done = transfer.join().unwrap();
    assert_eq!(done.error, None, "the transfer broke: {}", up.log());
    assert_eq!(done.back.len(), data.len());
    assert!(done.back == *data, "the echoed bytes differ");
    assert_no_reconnect(&up);
    assert_eq!(status(&w, "move")["session_id"], session);

    // The migrated session is bound to this device's key: the same
    // person's other device, given a copy of this one's tokens, cannot
    // carry it on (the access token names this certificate, the refresh
    // token this key), and trying does not end the real one.
    // The copy is edited to name the other device's certificate, so that
    // its agent presents the access token as it is instead of refreshing
    // first: both bindings are tried.
    let other = w.agent("other", "m.move", None);
    let tokens = |a: &lanyard_e2e::Agent| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(a.state_dir.join("tokens.json")).unwrap()).unwrap()
    };
    let mut copied = tokens(&agent);
    copied["cert_thumbprint"] = tokens(&other)["cert_thumbprint"].clone();
    std::fs::write(
        other.state_dir.join("tokens.json"),
        serde_json::to_vec(&copied).unwrap(),
    )
    .unwrap();
    let mut thief = other.up(&["--forward", "echo=127.0.0.1:0"]);
    let code = thief.wait_exit(Duration::from_secs(20));
    assert!(
        code.is_some_and(|c| c != 0),
        "the copied sign-in was refused and the agent stopped (exit {code:?}): {}",
        thief.log()
    );
    assert!(
        thief.log().contains("another device"),
        "the refusal says why: {}",
        thief.log()
    );
    let sessions = w
        .broker
        .lanyard(&["sessions", "list", "--json"], None, None)
        .ok();
    let sessions: serde_json::Value = serde_json::from_str(&sessions.stdout).unwrap();
    let ids: Vec<&serde_json::Value> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["id"])
        .collect();
    assert_eq!(ids, [&session], "only the real session: {sessions}");
    let small = pattern(7, 64 * 1024);
    assert_eq!(echo_through(port, &small).unwrap(), small);
    assert_no_reconnect(&up);
}

/// A TCP server on 127.0.0.1 that sends `data` to each connection and
/// closes: a download, with nothing for the agent to read from its side.
fn source_server(data: Arc<Vec<u8>>, chunk: usize, pause: Duration) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let data = data.clone();
            std::thread::spawn(move || {
                for part in data.chunks(chunk) {
                    if conn.write_all(part).is_err() {
                        return;
                    }
                    std::thread::sleep(pause);
                }
            });
        }
    });
    addr
}

/// The broker is killed in the middle of a download: the local connection
/// ends with an error (a reset), having carried only a prefix of the data,
/// never a clean end that would pass for a complete download; the agent is
/// back once the broker restarts on the same data dir and port.
#[test]
fn a_killed_broker_fails_the_open_stream_loudly_and_the_agent_comes_back() {
    let w = World::new();
    let data = Arc::new(pattern(1, 8 * 1024 * 1024));
    let source = source_server(data.clone(), 64 * 1024, Duration::from_millis(10));
    w.broker
        .lanyard(
            &[
                "apps",
                "add",
                "download",
                "--target",
                &source.to_string(),
                "--allow-group",
                "hr",
            ],
            None,
            None,
        )
        .ok();
    w.person("k.kill", "hr");
    let agent = w.agent("kill", "k.kill", None);
    let mut up = agent.up(&[
        "--forward",
        "download=127.0.0.1:0",
        "--forward",
        "echo=127.0.0.1:0",
    ]);
    let forwards = up.wait_ready(READY);

    let progress = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (port, progress) = (forwards["download"], progress.clone());
        std::thread::spawn(move || {
            let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(40)))
                .unwrap();
            read_all(&mut conn, &progress)
        })
    };
    wait_for("a first MiB", Duration::from_secs(20), || {
        progress.load(Relaxed) >= 1024 * 1024
    });

    let World { broker, .. } = w;
    let mut broker = broker;
    let (api, quic, data_dir) = (
        broker.api.trim_start_matches("https://").to_owned(),
        broker.quic.clone(),
        broker.data_dir.clone(),
    );
    broker.signal("KILL");
    broker.wait_exit(Duration::from_secs(10)).expect("killed");
    let restarted = BrokerProcess::start_at(&data_dir, &api, &quic, &[], &[]);

    let done = reader.join().unwrap();
    assert!(done.back.len() < data.len(), "the whole download arrived");
    assert!(
        done.back[..] == data[..done.back.len()],
        "the bytes that arrived are not what was sent"
    );
    assert!(
        matches!(done.error, Some(k) if k != std::io::ErrorKind::WouldBlock && k != std::io::ErrorKind::TimedOut),
        "the broken download ended as {:?} after {} of {} bytes: it looks complete",
        done.error,
        done.back.len(),
        data.len()
    );

    let again = up.wait_ready(READY);
    assert_eq!(echo_through(again["echo"], b"after").unwrap(), b"after");
    drop(restarted);
}

/// SIGTERM with a transfer in flight: new tunnel streams and new agent
/// connections are refused at once, the transfer in flight finishes byte
/// for byte, and the broker exits by the end of the grace period although
/// another tunnel stays open.
#[test]
fn a_stopping_broker_refuses_new_work_at_once_and_drains_the_live_tunnel() {
    let grace = Duration::from_secs(8);
    let w = World::with(&["--grace-period", "8s"], &[]);
    w.person("d.drain", "hr");
    w.person("n.new", "hr");
    let agent = w.agent("drain", "d.drain", None);
    let late = w.agent("late", "n.new", None);
    let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
    let port = up.wait_ready(READY)["echo"];
    let idle = live_connection(port);

    let data = Arc::new(pattern(2, 4 * 1024 * 1024));
    let progress = Arc::new(AtomicUsize::new(0));
    let transfer = paced_echo(
        port,
        data.clone(),
        32 * 1024,
        Duration::from_millis(10),
        progress.clone(),
    );
    wait_for("a first MiB back", Duration::from_secs(20), || {
        progress.load(Relaxed) >= 1024 * 1024
    });
    let mut broker = w.broker;
    let stopped = Instant::now();
    broker.signal("TERM");
    std::thread::sleep(Duration::from_millis(200));

    // A new tunnel stream is refused at once.
    let asked = Instant::now();
    let answer = echo_through(port, b"new work").unwrap_or_default();
    assert!(answer.is_empty(), "a new stream was served while stopping");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "a new stream waited {:?} for its refusal; agent log:\n{}\nbroker log:\n{}",
        asked.elapsed(),
        up.log(),
        broker.log_text()
    );
    // So is a new agent connection.
    let asked = Instant::now();
    let late_up = late.up(&["--forward", "echo=127.0.0.1:0"]);
    assert!(
        late_up.wait_log("disconnected", Duration::from_secs(3)),
        "{}",
        late_up.log()
    );
    let waited = asked.elapsed();
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    drop(late_up);

    // The live transfer drains.
    let done = transfer.join().unwrap();
    assert_eq!(done.error, None, "the transfer broke: {}", up.log());
    assert_eq!(done.back.len(), data.len());
    assert!(done.back == *data, "the echoed bytes differ");
    assert!(progress.load(Relaxed) == data.len());

    // The idle tunnel holds the drain open; the grace period ends it.
    let code = broker.wait_exit(grace + Duration::from_secs(3));
    let exited = stopped.elapsed();
    assert_eq!(code, Some(0), "{exited:?}: {}", broker.log_text());
    assert!(exited <= grace + Duration::from_secs(3), "{exited:?}");
    drop(idle);
    eprintln!("the broker exited {exited:?} after SIGTERM (grace {grace:?})");
}
