//! The fuzz targets' bodies (`fuzz/src/bodies.rs`) over the committed seeds
//! (`fuzz/seeds/<target>/`), on the stable toolchain: the code the
//! fuzzers run is built and run by every `cargo test`, and each target's
//! valid seeds must still do what they are there for (decode, parse, reach
//! the open session). `cargo test -p lanyard-proto --test fuzz_corpus --
//! --ignored` writes the seeds again from the messages below.

#[path = "../../fuzz/src/bodies.rs"]
mod bodies;

use std::path::{Path, PathBuf};

use lanyard_proto::frame::to_frame;
use lanyard_proto::{AppGrant, EnrolmentCode, ErrorCode, KeyAlg, Message};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target)
}

/// Every seed of `target`, by file name, sorted; at least one.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a corpus entry").path();
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, data)
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// Runs `body` on every seed of `target`, naming the seed that panics.
fn run<T>(target: &str, body: fn(&[u8]) -> T) -> Vec<(String, T)> {
    seeds(target)
        .into_iter()
        .map(
            |(name, data)| match std::panic::catch_unwind(|| body(&data)) {
                Ok(out) => (name, out),
                Err(_) => panic!("fuzz/seeds/{target}/{name} panicked"),
            },
        )
        .collect()
}

#[test]
fn frame_decoder_runs_over_its_corpus() {
    let results = run("frame_decoder", bodies::frame_decoder);
    let all = messages().len();
    for (name, decoded) in &results {
        if name.starts_with("valid-all-") {
            assert_eq!(*decoded, all, "{name}");
        } else if name.starts_with("valid-") {
            assert_eq!(*decoded, 1, "{name}");
        } else {
            assert_eq!(*decoded, 0, "{name}");
        }
    }
    assert!(results.iter().any(|(n, _)| n.starts_with("bad-")));
}

#[test]
fn enrolment_code_runs_over_its_corpus() {
    let results = run("enrolment_code", bodies::enrolment_code);
    for (name, parsed) in &results {
        assert_eq!(*parsed, name.starts_with("valid-"), "{name}");
    }
    assert!(results.iter().any(|(n, _)| n.starts_with("bad-")));
}

#[test]
fn control_session_runs_over_its_corpus() {
    let results = run("control_session", bodies::control_session);
    // The valid seeds' messages reach the open sessions and give events or
    // answers.
    for (name, events) in &results {
        if name.starts_with("valid-") {
            assert!(*events > 0, "{name}: no events or answers");
        }
    }
}

/// One of each message.
fn messages() -> Vec<Message> {
    vec![
        Message::EnrolRequest {
            secret: [3; 20],
            key_alg: KeyAlg::EcdsaP256,
            public_key: vec![4; 65],
            proof: vec![9; 70],
            agent_version: "0.1.0".into(),
            os: "linux".into(),
        },
        Message::Certificate {
            certificate: vec![0x30; 64],
            expires_at: 1_800_000_000,
        },
        Message::Renew,
        Message::SignIn {
            username: "j.smith".into(),
            password: "pw".into(),
            totp: Some("123456".into()),
        },
        Message::Tokens {
            access_token: "a.b.c".into(),
            refresh_token: "lyr_x".into(),
            expires_in: 900,
        },
        Message::SsoStart { port: 53682 },
        Message::SsoAuthorize {
            url: "https://login.example/authorize?client_id=x&state=s".into(),
            ports: vec![53682, 53683, 53684],
        },
        Message::SsoFinish {
            code: "code-from-the-provider".into(),
            state: "state-from-the-broker".into(),
        },
        Message::SsoTokens {
            username: "j.smith".into(),
            access_token: "a.b.c".into(),
            refresh_token: "lyr_x".into(),
            expires_in: 900,
        },
        Message::DeviceStart,
        Message::DeviceAuthorize {
            handle: "lyd_handle".into(),
            user_code: "BCDF-GHJK".into(),
            verification_uri: "https://login.example/device".into(),
            verification_uri_complete: "https://login.example/device?user_code=BCDF-GHJK".into(),
            expires_in: 600,
            interval: 5,
        },
        Message::DevicePoll {
            handle: "lyd_handle".into(),
        },
        Message::Refresh {
            refresh_token: "lyr_x".into(),
        },
        Message::SignOut {
            refresh_token: "lyr_x".into(),
        },
        Message::SignedOut,
        Message::Hello {
            version: 1,
            access_token: "a.b.c".into(),
            agent_version: "0.1.0".into(),
            os: "macos".into(),
        },
        Message::Welcome {
            session_id: "s1".into(),
            apps: vec![AppGrant {
                port_hint: 8080,
                target: "10.0.0.5:443".into(),
                hosts: vec!["hr.council.internal".into()],
                ..AppGrant::named("hr")
            }],
            addrs: vec!["a.council.example:4433".into(), "10.0.0.2:4433".into()],
        },
        Message::AppsChanged {
            apps: vec![AppGrant {
                target: "pbx.internal:5060".into(),
                protocol: lanyard_proto::AppProtocol::Udp,
                ..AppGrant::named("pbx")
            }],
        },
        Message::Ping { nonce: 42 },
        Message::Pong { nonce: 42 },
        Message::Revoked {
            reason: "laptop marked lost".into(),
        },
        Message::Refused {
            code: ErrorCode::AtCapacity,
            message: "at capacity, try again later".into(),
        },
        Message::StreamOpen {
            app: "hr".into(),
            request_id: 7,
        },
        Message::StreamAccepted { request_id: 7 },
    ]
}

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(name), data).expect("write a seed");
}

/// Writes the seed corpus again (run with `--ignored`).
#[test]
#[ignore = "writes fuzz/seeds; run by hand after changing the messages"]
fn write_seed_corpus() {
    // frame_decoder: a chunk size, then frames.
    for msg in messages() {
        let mut seed = vec![7];
        seed.extend(to_frame(&msg));
        write("frame_decoder", &format!("valid-{}", msg.name()), &seed);
    }
    for chunk in [1u8, 3, 64, 255] {
        let mut seed = vec![chunk];
        for msg in messages() {
            seed.extend(to_frame(&msg));
        }
        write("frame_decoder", &format!("valid-all-chunk-{chunk}"), &seed);
    }
    for (name, bytes) in [
        ("bad-oversized", vec![0xff, 0xff, 0xff, 0xff]),
        ("bad-zero-length", vec![0, 0, 0, 0]),
        ("bad-unknown-type", vec![0, 0, 0, 1, 0x7f]),
        (
            "bad-truncated",
            to_frame(&Message::Ping { nonce: 1 })[..8].to_vec(),
        ),
        (
            "bad-trailing",
            vec![0, 0, 0, 10, 0x23, 0, 0, 0, 0, 0, 0, 0, 1, 9],
        ),
    ] {
        let mut seed = vec![2];
        seed.extend(bytes);
        write("frame_decoder", name, &seed);
    }

    // enrolment_code: text.
    let code = |addr: &str| {
        EnrolmentCode {
            broker_addrs: addr.split(' ').map(str::to_owned).collect(),
            ca_fingerprint: [7; 32],
            secret: [9; 20],
        }
        .encode()
    };
    write(
        "enrolment_code",
        "valid-ip",
        code("127.0.0.1:4433").as_bytes(),
    );
    write(
        "enrolment_code",
        "valid-name",
        code("broker.council.example:4433").as_bytes(),
    );
    write(
        "enrolment_code",
        "valid-pasted-with-spaces",
        format!("  {}\n", code("[::1]:4433")).as_bytes(),
    );
    write(
        "enrolment_code",
        "valid-several",
        code("a.council.example:4433 10.0.0.2:4433 [::1]:4433").as_bytes(),
    );
    let good = code("127.0.0.1:4433");
    write(
        "enrolment_code",
        "bad-prefix",
        good.replace("lye1.", "lye9.").as_bytes(),
    );
    write(
        "enrolment_code",
        "bad-list-in-first-form",
        code("a:4433 b:4433").replace("lye2.", "lye1.").as_bytes(),
    );
    write(
        "enrolment_code",
        "bad-empty-in-list",
        code("a:4433 ").as_bytes(),
    );
    write(
        "enrolment_code",
        "bad-base64",
        format!("{good}!").as_bytes(),
    );
    write("enrolment_code", "bad-short", &good.as_bytes()[..20]);
    write("enrolment_code", "bad-not-utf8", &[0x6c, 0x79, 0xff, 0xfe]);

    // control_session: a chunk size, then what either side might be sent.
    for (name, msgs) in [
        ("valid-ping", vec![Message::Ping { nonce: 1 }]),
        ("valid-pong", vec![Message::Pong { nonce: 2 }]),
        (
            "valid-apps-changed",
            vec![Message::AppsChanged {
                apps: vec![AppGrant {
                    target: "10.0.0.5:443".into(),
                    hosts: vec!["hr.council.internal".into()],
                    ..AppGrant::named("hr")
                }],
            }],
        ),
        (
            "valid-revoked",
            vec![Message::Revoked {
                reason: "laptop marked lost".into(),
            }],
        ),
        (
            "bad-second-hello",
            vec![Message::Hello {
                version: 1,
                access_token: "t".into(),
                agent_version: "0".into(),
                os: "x".into(),
            }],
        ),
    ] {
        let mut seed = vec![3];
        for msg in msgs {
            seed.extend(to_frame(&msg));
        }
        write("control_session", name, &seed);
    }
    write(
        "control_session",
        "bad-garbage",
        &[1, 0, 0, 0, 1, 0x7f, 9, 9],
    );
}
