//! A misbehaving agent against the real broker: bad frames, streams out of
//! order, a flood of real tunnel streams, no certificate. Each gets an error or a reset;
//! the broker stays up and the same connection (and others) keep working.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use lanyard_agent::state::StateDir;
use lanyard_agent::{account, client};
use lanyard_e2e::world::World;
use lanyard_e2e::Agent;
use lanyard_proto::stream::StreamOpener;
use lanyard_proto::{ErrorCode, Message};
use lanyard_relay::{read_frame, write_frame};

/// A broker (the shared test world) and one signed-in agent.
struct Setup {
    world: World,
    agent: Agent,
}

fn setup() -> Setup {
    let world = World::new();
    world.person("x.abuse", "hr");
    let agent = world.agent("agent", "x.abuse", None);
    Setup { world, agent }
}

/// Sends a `Hello` on a new stream of `conn`; the answer and the stream.
async fn hello(
    conn: &quinn::Connection,
    state: &StateDir,
) -> (Message, (quinn::SendStream, quinn::RecvStream)) {
    let tokens = state.tokens().unwrap().unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    write_frame(
        &mut send,
        &Message::Hello {
            version: lanyard_proto::PROTOCOL_VERSION,
            access_token: tokens.access_token,
            agent_version: "test".into(),
            os: "test".into(),
        },
    )
    .await
    .unwrap();
    let answer = read_frame(&mut recv, Duration::from_secs(10))
        .await
        .unwrap();
    (answer, (send, recv))
}

/// A tunnel stream to the echo app, with its header sent.
struct EchoStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    opener: StreamOpener,
}

/// Opens a tunnel stream to the echo app: the header only.
async fn open_echo(conn: &quinn::Connection, request_id: u64) -> EchoStream {
    let (mut send, recv) = conn.open_bi().await.unwrap();
    let opener = StreamOpener::new("echo", request_id, 0, 10_000);
    send.write_all(opener.frame()).await.unwrap();
    EchoStream { send, recv, opener }
}

impl EchoStream {
    /// Reads the broker's answer; it must accept this very stream.
    async fn expect_accepted(&mut self) {
        let answer = read_frame(&mut self.recv, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("no answer to a stream open: {e}"));
        self.opener
            .handle_answer(answer)
            .unwrap_or_else(|e| panic!("a stream open was not accepted: {e}"));
    }
}

async fn echo_once(conn: &quinn::Connection, data: &[u8]) -> Vec<u8> {
    let mut stream = open_echo(conn, 1).await;
    stream.send.write_all(data).await.unwrap();
    stream.send.finish().unwrap();
    stream.expect_accepted().await;
    stream.recv.read_to_end(1 << 20).await.unwrap()
}

#[test]
fn bad_frames_are_refused_and_the_broker_carries_on() {
    let s = setup();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let state = StateDir::open(&s.agent.state_dir).unwrap();
        let device = state.device().unwrap();
        let (_endpoint, conn) = account::connect(&device).await.unwrap();

        // A tunnel stream before any session: refused with a reason.
        let mut early = open_echo(&conn, 1).await;
        match read_frame(&mut early.recv, Duration::from_secs(10))
            .await
            .unwrap()
        {
            Message::Refused { code, .. } => assert_eq!(code, ErrorCode::Unauthorized),
            other => panic!("{other:?}"),
        }

        let (welcome, _control) = hello(&conn, &state).await;
        assert!(matches!(welcome, Message::Welcome { .. }), "{welcome:?}");
        assert_eq!(echo_once(&conn, b"first").await, b"first");

        // An oversized length, a zero length, an unknown type, a truncated
        // frame: each stream is reset, the connection lives on.
        for bad in [
            vec![0xff, 0xff, 0xff, 0xff],
            vec![0, 0, 0, 0],
            vec![0, 0, 0, 1, 0x7f],
            vec![0, 0, 0, 9, 0x30, 0],
        ] {
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            send.write_all(&bad).await.unwrap();
            send.finish().unwrap();
            let got = recv.read_to_end(1024).await;
            assert!(
                got.is_err() || got.as_ref().is_ok_and(|b| b.is_empty()),
                "{bad:?}: {got:?}"
            );
        }
        // A second session on the same connection is refused.
        let (second, _) = hello(&conn, &state).await;
        assert!(
            matches!(
                second,
                Message::Refused {
                    code: ErrorCode::BadRequest,
                    ..
                }
            ),
            "{second:?}"
        );

        // The connection still works after the bad streams.
        let after = tokio::time::timeout(Duration::from_secs(10), echo_once(&conn, b"after")).await;
        assert_eq!(after.ok().as_deref(), Some(&b"after"[..]));

        // Without a certificate only enrolment is possible.
        let (addr, host) = client::resolve(&device.enrolment.broker).await.unwrap();
        let endpoint = client::endpoint(addr).unwrap();
        let fingerprint: [u8; 32] = data_encoding::HEXLOWER
            .decode(device.enrolment.ca_fingerprint.as_bytes())
            .unwrap()
            .try_into()
            .unwrap();
        let pin = client::PinnedCa::new(fingerprint);
        let anon = client::connect(
            &endpoint,
            client::enrolment_config(pin).unwrap(),
            addr,
            &host,
        )
        .await
        .unwrap();
        match client::request(&anon, &Message::Renew).await {
            Err(client::ClientError::Refused { code, message }) => {
                assert_eq!(code, ErrorCode::Unauthorized);
                assert!(message.contains("enrol"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    });
    // Still serving.
    let health = s.world.broker.https_get("/healthz");
    assert!(health.contains("ok"), "{health}");
}

/// A connection starts with room for a few streams and is given more as it
/// uses them: 100 tunnel streams held open at once are all accepted.
#[test]
fn a_busy_agent_gets_more_stream_room() {
    const OPEN: usize = 100;
    let s = setup();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let state = StateDir::open(&s.agent.state_dir).unwrap();
        let device = state.device().unwrap();
        let (_endpoint, conn) = account::connect(&device).await.unwrap();
        let (welcome, _control) = hello(&conn, &state).await;
        assert!(matches!(welcome, Message::Welcome { .. }), "{welcome:?}");
        // Every stream stays open until all of them have been accepted.
        let all_open = std::sync::Arc::new(tokio::sync::Barrier::new(OPEN));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..OPEN {
            let (conn, all_open) = (conn.clone(), all_open.clone());
            tasks.spawn(async move {
                let mut stream = open_echo(&conn, i as u64).await;
                stream.expect_accepted().await;
                all_open.wait().await;
                let data = format!("stream {i}");
                stream.send.write_all(data.as_bytes()).await.unwrap();
                stream.send.finish().unwrap();
                let back = stream.recv.read_to_end(1024).await.unwrap();
                assert_eq!(back, data.as_bytes());
            });
        }
        let all = tokio::time::timeout(Duration::from_secs(30), async {
            let mut done = 0;
            while let Some(joined) = tasks.join_next().await {
                joined.unwrap();
                done += 1;
            }
            done
        })
        .await;
        assert_eq!(
            all.ok(),
            Some(OPEN),
            "not every one of {OPEN} concurrent streams was accepted"
        );
    });
}

/// The per-connection stream limit of the flood test's broker.
const FLOOD_LIMIT: usize = 64;

/// One agent opens real tunnel streams (each a `StreamOpen` answered by the
/// broker) up to its limit and holds them: each is accepted; past the limit
/// the agent gets no more streams (quinn waits for credit the broker does
/// not give) or they are refused; meanwhile the broker is healthy and a
/// second agent opens a tunnel and echoes bytes through it.
#[test]
fn a_stream_flood_stops_at_the_limit_and_others_still_get_through() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("broker.toml");
    std::fs::write(
        &config,
        format!("[limits]\nstreams_per_agent = {FLOOD_LIMIT}\n"),
    )
    .unwrap();
    let world = World::with(&["--config", config.to_str().unwrap()], &[]);
    world.person("x.flood", "hr");
    world.person("x.calm", "hr");
    let flooder = world.agent("flooder", "x.flood", None);
    let calm = world.agent("calm", "x.calm", None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let state = StateDir::open(&flooder.state_dir).unwrap();
        let (_endpoint, conn) = account::connect(&state.device().unwrap()).await.unwrap();
        let (welcome, _control) = hello(&conn, &state).await;
        assert!(matches!(welcome, Message::Welcome { .. }), "{welcome:?}");

        // The control stream is one of the connection's streams; every
        // other one up to the limit is a tunnel, answered and held open.
        let tunnels = FLOOD_LIMIT - 1;
        let mut held = Vec::with_capacity(tunnels);
        for i in 0..tunnels {
            let opened = tokio::time::timeout(Duration::from_secs(10), async {
                let mut stream = open_echo(&conn, i as u64).await;
                stream.expect_accepted().await;
                stream
            })
            .await;
            match opened {
                Ok(stream) => held.push(stream),
                Err(_) => panic!(
                    "tunnel stream {i} of {tunnels} (limit {FLOOD_LIMIT}) was not answered \
                     within 10 s"
                ),
            }
        }
        assert_eq!(held.len(), tunnels);

        // Past the limit: no stream opens, or one that does is refused.
        for extra in 0..4u64 {
            match tokio::time::timeout(Duration::from_millis(500), conn.open_bi()).await {
                Err(_) => {} // waits for credit the broker does not give
                Ok(Err(e)) => panic!("the connection failed at the limit: {e}"),
                Ok(Ok((mut send, mut recv))) => {
                    let mut opener = StreamOpener::new("echo", 1_000 + extra, 0, 10_000);
                    let _ = send.write_all(opener.frame()).await;
                    if let Ok(answer) = read_frame(&mut recv, Duration::from_secs(10)).await {
                        assert!(
                            opener.handle_answer(answer).is_err(),
                            "extra stream {extra} past the limit of {FLOOD_LIMIT} was accepted"
                        );
                    }
                }
            }
        }

        // During the flood: the broker is healthy ...
        let health = tokio::task::block_in_place(|| world.broker.https_get("/healthz"));
        assert!(health.contains("ok"), "{health}");

        // ... and a second agent opens a tunnel and echoes through it.
        let calm_state = StateDir::open(&calm.state_dir).unwrap();
        let data = lanyard_e2e::pattern(7, 100_000);
        let echoed = tokio::time::timeout(Duration::from_secs(20), async {
            let (_endpoint, other) = account::connect(&calm_state.device().unwrap())
                .await
                .unwrap();
            let (welcome, _control) = hello(&other, &calm_state).await;
            assert!(matches!(welcome, Message::Welcome { .. }), "{welcome:?}");
            echo_once(&other, &data).await
        })
        .await;
        let echoed = echoed.expect("a second agent's tunnel did not complete during the flood");
        assert!(echoed == data, "the second agent's bytes came back changed");

        // The flooded connection's held streams are all still open and
        // relaying: each echoes its own bytes.
        for (i, stream) in held.iter_mut().enumerate() {
            let msg = format!("held {i}");
            stream.send.write_all(msg.as_bytes()).await.unwrap();
            let mut back = vec![0; msg.len()];
            tokio::time::timeout(Duration::from_secs(10), stream.recv.read_exact(&mut back))
                .await
                .expect("a held stream stopped relaying")
                .unwrap();
            assert_eq!(back, msg.as_bytes());
        }
    });
    let health = world.broker.https_get("/healthz");
    assert!(health.contains("ok"), "{health}");
}

/// A device repeating refused hellos is audited a few times, then only
/// counted, then disconnected: it cannot flood the audit log.
#[test]
fn repeated_refused_hellos_are_capped_and_end_the_connection() {
    let s = setup();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let state = StateDir::open(&s.agent.state_dir).unwrap();
        let device = state.device().unwrap();
        let (_endpoint, conn) = account::connect(&device).await.unwrap();
        let mut refused = 0;
        for _ in 0..12 {
            let Ok((mut send, mut recv)) = conn.open_bi().await else {
                break;
            };
            let hello = Message::Hello {
                version: lanyard_proto::PROTOCOL_VERSION,
                access_token: "not-a-token".into(),
                agent_version: "test".into(),
                os: "test".into(),
            };
            if write_frame(&mut send, &hello).await.is_err() {
                break;
            }
            match read_frame(&mut recv, Duration::from_secs(10)).await {
                Ok(Message::Refused { .. }) => refused += 1,
                _ => break,
            }
        }
        assert!(refused <= 10, "{refused} hellos refused on one connection");
        let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
        assert!(closed.is_ok(), "the connection stayed open");
    });
    let audit: serde_json::Value =
        serde_json::from_str(&s.world.broker.audit_json("session.open")).unwrap();
    let rows = audit.as_array().unwrap().len();
    assert!(rows <= 5, "{rows} refused hellos audited one by one");
    assert!(rows >= 1, "refusals are still audited");
}
