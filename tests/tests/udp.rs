//! UDP apps end to end: a local peer's datagrams are a flow through the
//! tunnel to a UDP echo app and back, each peer its own flow; a datagram
//! too large for the connection is dropped and counted, never split; a
//! flow ends after the app's idle timeout (the next datagram opens a new
//! one); a rule change ends a live flow and refuses the next, saying why;
//! and a real SIP user agent's calls, RTP included, through two UDP apps.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::net::UdpSocket;
use std::time::Duration;

use lanyard_e2e::pattern;
use lanyard_e2e::world::{World, READY};

/// A UDP echo server on 127.0.0.1.
fn udp_echo() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    });
    port
}

/// A softphone's socket, talking to the local forward at `port`.
fn peer(port: u16) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Sends `data` and waits for its echo (`None` if none comes in `wait`).
fn ping(s: &UdpSocket, data: &[u8], wait: Duration) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(wait)).unwrap();
    s.send(data).unwrap();
    let mut buf = [0u8; 65536];
    match s.recv(&mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

#[test]
fn udp_flows_carry_datagrams_idle_out_and_are_revoked() {
    let w = World::new();
    w.person("a.patel", "hr");
    let echo = udp_echo();
    let target = format!("127.0.0.1:{echo}");
    w.broker
        .lanyard(
            &[
                "apps",
                "add",
                "pbx",
                "--target",
                &target,
                "--protocol",
                "udp",
                "--flow-idle-timeout",
                "2s",
                "--allow-group",
                "hr",
            ],
            None,
            None,
        )
        .ok();
    let agent = w.agent("laptop", "a.patel", None);
    let mut up = agent.up(&["--no-proxy"]);
    let forwards = up.wait_ready(READY);
    let port = forwards["pbx"];

    // Two softphones at once, each its own flow: 50 datagrams of 172 bytes
    // (an RTP packet's size) each, every one echoed byte for byte to the
    // socket that sent it.
    let phones: Vec<_> = (0..2u64)
        .map(|i| {
            std::thread::spawn(move || {
                let s = peer(port);
                for n in 0..50 {
                    let data = pattern(i * 1000 + n, 172);
                    let back = ping(&s, &data, Duration::from_secs(5));
                    assert_eq!(back.as_deref(), Some(&data[..]), "phone {i}, datagram {n}");
                }
                s
            })
        })
        .collect();
    let phones: Vec<UdpSocket> = phones.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(up.wait_log("UDP flow opened", READY));
    assert_eq!(w.broker.metric("lanyard_udp_flows_opened_total"), Some(2.0));

    // Too large for one QUIC datagram: dropped and counted, not split; the
    // flow goes on.
    let a = &phones[0];
    assert_eq!(ping(a, &[7u8; 1500], Duration::from_millis(500)), None);
    assert!(
        up.wait_log("datagram too large for the connection; dropped", READY),
        "{}",
        up.log()
    );
    assert_eq!(
        ping(a, b"still here", Duration::from_secs(5)).as_deref(),
        Some(&b"still here"[..])
    );

    // Idle for longer than the app's 2 s: the broker ends the flows; the
    // next datagram opens a new one.
    std::thread::sleep(Duration::from_millis(2600));
    assert!(up.wait_log("UDP flow ended", READY), "{}", up.log());
    assert_eq!(
        ping(a, b"again", Duration::from_secs(5)).as_deref(),
        Some(&b"again"[..])
    );
    assert_eq!(w.broker.metric("lanyard_udp_flows_opened_total"), Some(3.0));

    // The rules change: the live flow ends, and the next is refused with
    // the reason.
    w.broker
        .lanyard(
            &["apps", "set", "pbx", "--allow-group", "housing"],
            None,
            None,
        )
        .ok();
    assert!(
        up.wait_log("pbx: refused:", Duration::from_secs(1)) || {
            // The flow may have ended before this datagram: it opens a new
            // flow, which is refused.
            let _ = ping(a, b"after", Duration::from_millis(500));
            up.wait_log("pbx: refused:", Duration::from_secs(10))
        },
        "{}",
        up.log()
    );
    assert_eq!(ping(a, b"after", Duration::from_millis(500)), None);
}

/// A child process killed when the test ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A UDP port free just now.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// sipp's built-in scenario `name`, with each `(from, to)` replaced (each
/// must be there).
fn sipp_scenario(name: &str, edits: &[(&str, &str)]) -> String {
    let out = std::process::Command::new("sipp")
        .args(["-sd", name])
        .output()
        .unwrap();
    let mut xml = String::from_utf8(out.stdout).unwrap();
    for (from, to) in edits {
        assert!(xml.contains(from), "sipp's {name} scenario has no {from:?}");
        xml = xml.replacen(from, to, 1);
    }
    xml
}

#[test]
fn sip_calls_with_rtp_from_a_real_user_agent_complete_through_udp_apps() {
    let found = std::process::Command::new("sipp")
        .arg("-v")
        .output()
        .is_ok();
    if !found {
        eprintln!(
            "SKIPPED: sipp is not installed (.ci/run installs it: apt-get install sip-tester)"
        );
        return;
    }
    const CALLS: u64 = 20;
    // Each call's RTP: one second of G.711 A-law silence, 50 packets of 172
    // bytes (a 12-byte RTP header and 20 ms of audio).
    const RTP_BYTES: u64 = CALLS * 50 * 172;
    let w = World::new();
    w.person("a.patel", "hr");
    // The PBX: SIP on one port, RTP echoed on another (sipp's -rtp_echo),
    // each a UDP app.
    let sip_port = free_udp_port();
    let rtp_port = free_udp_port();
    for (app, port) in [("pbx", sip_port), ("pbx-media", rtp_port)] {
        let target = format!("127.0.0.1:{port}");
        w.broker
            .lanyard(
                &[
                    "apps",
                    "add",
                    app,
                    "--target",
                    &target,
                    "--protocol",
                    "udp",
                    "--allow-group",
                    "hr",
                ],
                None,
                None,
            )
            .ok();
    }
    let agent = w.agent("laptop", "a.patel", None);
    let mut up = agent.up(&["--no-proxy"]);
    let forwards = up.wait_ready(READY);
    let (sip_forward, rtp_forward) = (forwards["pbx"], forwards["pbx-media"]);
    // The PBX answers each call with its media address as the softphone
    // reaches it: the media app's forward (the address the softphone is
    // given for RTP).
    let uas = sipp_scenario(
        "uas",
        &[
            ("c=IN IP[media_ip_type] [media_ip]", "c=IN IP4 127.0.0.1"),
            (
                "m=audio [media_port] RTP/AVP 0\n      a=rtpmap:0 PCMU/8000",
                &format!("m=audio {rtp_forward} RTP/AVP 8\n      a=rtpmap:8 PCMA/8000"),
            ),
        ],
    );
    std::fs::write(w.tmp.path().join("pbx.xml"), uas).unwrap();
    let _server = Child(
        std::process::Command::new("sipp")
            .args(["-sf", "pbx.xml", "-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &sip_port.to_string()])
            .args(["-rtp_echo", "-mp", &rtp_port.to_string()])
            .arg("-nostdin")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .current_dir(w.tmp.path())
            .spawn()
            .unwrap(),
    );
    // The softphone: each call (INVITE, 100, 180, 200, ACK, BYE, 200)
    // sends its second of audio to the media address in the PBX's answer
    // while the call is up.
    std::fs::write(w.tmp.path().join("silence.pcma"), [0xd5u8; 8000]).unwrap();
    let uac = sipp_scenario(
        "uac",
        &[
            (
                "m=audio [media_port] RTP/AVP 0\n      a=rtpmap:0 PCMU/8000",
                "m=audio [auto_media_port] RTP/AVP 8\n      a=rtpmap:8 PCMA/8000",
            ),
            (
                "<pause/>",
                "<nop><action><exec rtp_stream=\"silence.pcma,1,8\"/></action></nop>\n  \
                 <pause milliseconds=\"1300\"/>",
            ),
        ],
    );
    std::fs::write(w.tmp.path().join("phone.xml"), uac).unwrap();
    let mut phone = std::process::Command::new("sipp");
    phone
        .args(["-sf", "phone.xml", "-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-p", &free_udp_port().to_string()])
        .args(["-mp", &free_udp_port().to_string()])
        .arg(format!("127.0.0.1:{sip_forward}"))
        .args(["-m", &CALLS.to_string(), "-r", "10", "-nostdin"])
        .args(["-timeout", "30s", "-timeout_error"])
        .current_dir(w.tmp.path());
    let out = lanyard_e2e::run(phone, None);
    let calls = |what: &str| {
        out.stdout
            .lines()
            .rfind(|l| l.trim_start().starts_with(what))
            .and_then(|l| l.rsplit('|').next())
            .and_then(|n| n.trim().parse::<u64>().ok())
    };
    assert_eq!(out.code, 0, "sipp failed: {}\n{}", out.stderr, out.stdout);
    assert_eq!(calls("Successful call"), Some(CALLS), "{}", out.stdout);
    assert_eq!(calls("Failed call"), Some(0), "{}", out.stdout);
    // Through the tunnel: the softphone's SIP socket and its RTP socket(s),
    // each a flow; the audio went up and its echo came back down (SIP adds
    // a little either way; loss on loopback is allowed up to 5%).
    let flows = w.broker.metric("lanyard_udp_flows_opened_total").unwrap();
    assert!(flows >= 2.0, "{flows}");
    let up_bytes = w.broker.metric("lanyard_tunnel_bytes_up_total").unwrap();
    let down_bytes = w.broker.metric("lanyard_tunnel_bytes_down_total").unwrap();
    eprintln!("through the tunnel: {flows} flows, {up_bytes} bytes up, {down_bytes} down");
    let floor = RTP_BYTES as f64 * 0.95;
    assert!(up_bytes >= floor, "RTP up: {up_bytes} < {floor}");
    assert!(
        down_bytes >= floor,
        "RTP echoed back: {down_bytes} < {floor}"
    );
}
