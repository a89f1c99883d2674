//! `lanyard-broker serve` under a `Type=notify` service manager: the test
//! plays systemd's part, a unix datagram socket named in NOTIFY_SOCKET.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lanyard_agent::client;
use lanyard_e2e::bin;

/// A port free on 127.0.0.1 for TCP (`udp` false) or UDP, given up at once
/// so the broker can take it.
fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// Kills the broker if the test ends early.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn receive(socket: &UnixDatagram, within: Duration) -> Option<String> {
    socket.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    match socket.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("notify socket: {e}"),
    }
}

/// READY=1 comes only once the broker has read its config and bound both
/// listeners: the config is a FIFO the test writes last, nothing may
/// arrive before that, and when READY=1 arrives the API answers an HTTPS
/// request and the QUIC endpoint a handshake, each at the first attempt.
/// STOPPING=1 follows SIGTERM.
#[test]
fn ready_is_sent_once_both_listeners_answer_and_stopping_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let notify_path = tmp.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let fifo = tmp.path().join("broker.toml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let data = tmp.path().join("data");
    let (api_port, quic_port) = (free_port(false), free_port(true));
    let mut broker = Killed(
        Command::new(bin("lanyard-broker"))
            .arg("serve")
            .arg("--config")
            .arg(&fifo)
            .env("NOTIFY_SOCKET", &notify_path)
            .env_remove("LANYARD_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let child = &mut broker.0;
    // The broker waits on its config; it must not claim to be ready.
    assert_eq!(receive(&notify, Duration::from_secs(1)), None);
    {
        let mut config = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        write!(
            config,
            "data_dir = {data:?}\napi_listen = \"127.0.0.1:{api_port}\"\n\
             quic_listen = \"127.0.0.1:{quic_port}\"\ngrace_period = \"5s\"\n"
        )
        .unwrap();
    }
    let ready = receive(&notify, Duration::from_secs(60)).expect("no READY=1 within 60 s");
    let lines: Vec<&str> = ready.lines().collect();
    assert_eq!(lines[0], "READY=1", "{ready:?}");
    let status = lines
        .iter()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS: {ready:?}"));
    assert!(
        status.starts_with(&format!(
            "lanyard-broker ready api=https://127.0.0.1:{api_port} quic=127.0.0.1:{quic_port} ca=sha256:"
        )),
        "{status}"
    );

    // The API, at once: one connection, one request.
    let tcp = std::net::TcpStream::connect(("127.0.0.1", api_port))
        .expect("the API refused a connection after READY=1");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = lanyard_e2e::tls_client(&data.join("ca.pem"), tcp);
    write!(
        tls,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    assert_eq!(lanyard_e2e::read_http_response(&mut tls), Some(200));

    // The QUIC endpoint, at once: a handshake pinned to the CA in STATUS.
    let fingerprint: [u8; 32] = data_encoding::HEXLOWER
        .decode(status.rsplit_once("ca=sha256:").unwrap().1.as_bytes())
        .unwrap()
        .try_into()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], quic_port));
        let endpoint = client::endpoint(addr).unwrap();
        let config = client::enrolment_config(client::PinnedCa::new(fingerprint)).unwrap();
        let conn = client::connect(&endpoint, config, addr, "127.0.0.1")
            .await
            .expect("no QUIC handshake after READY=1");
        conn.close(0u32.into(), b"done");
        endpoint.wait_idle().await;
    });

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let stopping = receive(&notify, Duration::from_secs(10)).expect("no STOPPING=1");
    assert_eq!(stopping, "STOPPING=1");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(10), "no exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
