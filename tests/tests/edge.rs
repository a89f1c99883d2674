//! The broker facing the internet: one host holding admin API connections
//! open cannot lock ICT out, and connections without a device certificate
//! (anyone can make one) cannot take the agents' places.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use lanyard_e2e::echo_through;
use lanyard_e2e::world::World;

/// A TCP connection to `to` from the loopback address `from`, left silent.
fn silent_from(from: [u8; 4], to: SocketAddr) -> Option<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.bind(&SocketAddr::from((from, 0)).into()).ok()?;
    socket
        .connect_timeout(&to.into(), Duration::from_secs(2))
        .ok()?;
    Some(socket.into())
}

#[test]
fn a_slow_loris_from_one_address_does_not_lock_ict_out() {
    let tmp = tempfile::tempdir().unwrap();
    // 100 connections in all, at most 64 from one address.
    let config = tmp.path().join("broker.toml");
    std::fs::write(
        &config,
        "[limits]\nhttp_connections = 100\nhttp_connections_per_address = 64\n",
    )
    .unwrap();
    let w = World::with(&["--config", config.to_str().unwrap()], &[]);
    let api: SocketAddr = w.broker.api.trim_start_matches("https://").parse().unwrap();
    // 150 silent connections from 127.0.0.2: each would sit in the TLS
    // handshake for up to 10 s.
    let held: Vec<TcpStream> = (0..150)
        .filter_map(|_| silent_from([127, 0, 0, 2], api))
        .collect();
    assert!(held.len() >= 100, "only {} connections opened", held.len());
    // The broker has taken what it will from that address.
    assert!(w.broker.wait_metric(
        "lanyard_http_connections_refused_total",
        Duration::from_secs(5),
        |n| n >= 50.0
    ));
    // Meanwhile ICT, from another address, is served and revokes a laptop.
    let listed = w.broker.lanyard(&["staff", "list"], None, None);
    assert_eq!(listed.code, 0, "ICT was locked out: {}", listed.stderr);
    let revoked = w.broker.lanyard(
        &[
            "devices",
            "revoke",
            "LT-1",
            "--reason",
            "stolen during the flood",
        ],
        None,
        None,
    );
    assert_eq!(revoked.code, 0, "ICT could not revoke: {}", revoked.stderr);
    drop(held);
}

/// An address that keeps failing (bad API tokens) is answered more and
/// more slowly once it has failed 60 times in a minute, one failure a
/// second per connection, while ICT at another address is served.
#[test]
fn an_address_that_keeps_failing_is_slowed_and_others_are_served() {
    use std::io::Write;
    let w = World::new();
    let api = w.broker.api_addr();
    let tcp = silent_from([127, 0, 0, 5], api).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = w.broker.tls_over(tcp);
    let mut slow = 0;
    for i in 0..65 {
        let asked = std::time::Instant::now();
        write!(
            tls,
            "GET /api/v1/staff HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer lyt_not-a-token-{i}\r\n\r\n"
        )
        .unwrap();
        let status = lanyard_e2e::read_http_response(&mut tls);
        assert_eq!(status, Some(401), "request {i}");
        if asked.elapsed() >= Duration::from_millis(900) {
            slow += 1;
        }
    }
    // The 60 before were answered at once; every one after, a second late.
    assert!(slow >= 5, "only {slow} of the last failures were slowed");
    let listed = w.broker.lanyard(&["staff", "list"], None, None);
    assert_eq!(listed.code, 0, "ICT was not served: {}", listed.stderr);
    assert!(w
        .broker
        .wait_metric("lanyard_http_slowed_total", Duration::from_secs(5), |n| n
            >= 5.0));
}

/// A client that asks for responses and never reads them gives its
/// connection back once a write has stalled for the request timeout.
#[test]
fn a_client_that_stops_reading_gives_its_connection_back() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("broker.toml");
    std::fs::write(&config, "[limits]\nhttp_request_timeout = \"2s\"\n").unwrap();
    let w = World::with(&["--config", config.to_str().unwrap()], &[]);
    let api = w.broker.api_addr();
    // A tiny receive window, then far more responses asked for than the
    // socket buffers on both sides hold.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&api.into()).unwrap();
    let mut tls = w.broker.tls_over(socket.into());
    let asked = 1000;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {api}\r\n\r\n");
    tls.write_all(request.repeat(asked).as_bytes()).unwrap();
    tls.flush().unwrap();
    // Only the probe's own connection is left open once the stall is over.
    let given_back = w.broker.wait_metric(
        "lanyard_http_connections_open",
        Duration::from_secs(15),
        |n| n <= 1.0,
    );
    assert!(given_back, "the stalled connection is still held");
    // Reading now: some responses, then the end, never all of them.
    let mut got = Vec::new();
    let _ = tls.read_to_end(&mut got);
    let answered = String::from_utf8_lossy(&got)
        .matches("HTTP/1.1 200")
        .count();
    assert!(
        answered < asked,
        "all {asked} responses arrived: the connection was not cut"
    );
}

/// Connections without a device certificate are anyone's to make: they
/// have a pool of their own, so idle ones, however many, leave the agents'
/// places free; and one host holds few of that pool's places, so others
/// can still enrol.
#[test]
fn idle_certificate_less_connections_do_not_take_the_agents_places() {
    use lanyard_agent::client;
    use lanyard_agent::state::StateDir;

    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("broker.toml");
    std::fs::write(&config, "[limits]\nagents = 100\n").unwrap();
    let w = World::with(&["--config", config.to_str().unwrap()], &[]);
    w.person("s.staff", "hr");
    let agent = w.agent("laptop", "s.staff", None);
    w.person("n.newcomer", "hr");
    let newcomer_code = w.code(&["--personal", "n.newcomer"]);
    let state = StateDir::open(&agent.state_dir).unwrap();
    let enrolment = state.device().unwrap().enrolment;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_endpoint, idle) = rt.block_on(async {
        let (addr, host) = client::resolve(&enrolment.broker).await.unwrap();
        // From another host than the agents'.
        let endpoint = quinn::Endpoint::client(([127, 0, 0, 3], 0).into()).unwrap();
        let fingerprint: [u8; 32] = data_encoding::HEXLOWER
            .decode(enrolment.ca_fingerprint.as_bytes())
            .unwrap()
            .try_into()
            .unwrap();
        let pin = client::PinnedCa::new(fingerprint);
        let mut idle = Vec::new();
        for _ in 0..150 {
            let config = client::enrolment_config(pin.clone()).unwrap();
            if let Ok(c) = client::connect(&endpoint, config, addr, &host).await {
                idle.push(c);
            }
        }
        (endpoint, idle)
    });
    assert!(
        idle.len() >= 100,
        "only {} idle connections made",
        idle.len()
    );
    // With 150 certificate-less connections held by one host, someone else
    // can still enrol (that host holds at most 8 of the 64 places), and the
    // agent still gets in, well before the broker would close the idle ones
    // (10 s).
    let newcomer = lanyard_e2e::Agent::new(w.tmp.path().join("newcomer"));
    let enrolled = newcomer.run(&["enroll", &newcomer_code], None);
    assert_eq!(enrolled.code, 0, "could not enrol: {}", enrolled.stderr);
    let mut up = agent.up(&["--forward", "echo=127.0.0.1:0"]);
    let port = up.wait_ready(std::time::Duration::from_secs(5))["echo"];
    assert_eq!(echo_through(port, b"still here").unwrap(), b"still here");
    drop(idle);
}
