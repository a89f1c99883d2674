//! What a lost laptop and a disabled person may still do: nothing. Through
//! the real binaries, as ICT would do it.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use lanyard_e2e::world::{World, PASSWORD};
use lanyard_e2e::Agent;

/// The tour's sequence: a code is made for LT-1, then the laptop is marked
/// lost. The code no longer enrols anything, and the laptop shows no agent.
#[test]
fn a_laptop_marked_lost_cannot_be_enrolled_with_a_code_made_before() {
    let w = World::new();
    let code = w.code(&["--device", "LT-1"]);
    w.broker
        .lanyard(
            &[
                "devices",
                "mark",
                "LT-1",
                "--status",
                "lost",
                "--note",
                "left on a train",
            ],
            None,
            None,
        )
        .ok();
    let agent = Agent::new(w.tmp.path().join("found-laptop"));
    let enrol = agent.run(&["enroll", &code], None);
    assert_ne!(enrol.code, 0, "a lost laptop enrolled: {}", enrol.stdout);
    assert!(enrol.stderr.contains("cancelled"), "{}", enrol.stderr);
    let shown = w
        .broker
        .lanyard(&["devices", "show", "LT-1", "--json"], None, None)
        .ok();
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(shown["status"], "lost");
    assert_eq!(shown["agents"].as_array().map(Vec::len), Some(0), "{shown}");
    // Nor does a fresh code: the laptop is out of use.
    let refused = w
        .broker
        .lanyard(&["enroll-code", "create", "--device", "LT-1"], None, None);
    assert_ne!(refused.code, 0, "{}", refused.stdout);
}

/// A code made for a person who is disabled afterwards enrols nothing, and
/// enabling the person again does not bring the code back.
#[test]
fn a_disabled_persons_codes_are_cancelled() {
    let w = World::new();
    w.person("d.code", "hr");
    let code = w.code(&["--personal", "d.code"]);
    for step in ["disable", "enable"] {
        w.broker
            .lanyard(&["staff", step, "d.code"], None, None)
            .ok();
    }
    let agent = Agent::new(w.tmp.path().join("own-laptop"));
    let enrol = agent.run(&["enroll", &code], None);
    assert_ne!(enrol.code, 0, "{}", enrol.stdout);
    assert!(enrol.stderr.contains("cancelled"), "{}", enrol.stderr);
}

/// An API token issued before a disable stays dead after the enable.
#[test]
fn a_disable_ends_api_tokens_for_good() {
    let w = World::new();
    w.person("t.token", "hr");
    let login = w
        .broker
        .lanyard(
            &["login", "t.token", "--password-stdin"],
            None,
            Some(&format!("{PASSWORD}\n")),
        )
        .ok();
    let token = login.stdout.trim().to_owned();
    // A non-admin is refused (403) but known: the token works.
    let before = w.broker.lanyard(&["staff", "list"], Some(&token), None);
    assert!(before.stderr.contains("admin"), "{}", before.stderr);
    for step in ["disable", "enable"] {
        w.broker
            .lanyard(&["staff", step, "t.token"], None, None)
            .ok();
    }
    let after = w.broker.lanyard(&["staff", "list"], Some(&token), None);
    assert_ne!(after.code, 0);
    assert!(
        !after.stderr.contains("admin"),
        "the old token still authenticates: {}",
        after.stderr
    );
    assert!(after.stderr.contains("revoked"), "{}", after.stderr);
}

/// A connection opened before its device was revoked can do nothing more:
/// its next sign-in is refused as revoked and the connection is closed.
#[test]
fn a_revoked_devices_open_connection_can_only_close() {
    use lanyard_agent::state::StateDir;
    use lanyard_agent::{account, client};
    use lanyard_proto::{ErrorCode, Message};

    let w = World::new();
    w.person("r.old", "hr");
    let agent = w.agent("laptop", "r.old", Some("LT-1"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let state = StateDir::open(&agent.state_dir).unwrap();
        let device = state.device().unwrap();
        let (_endpoint, conn) = account::connect(&device).await.unwrap();
        w.broker
            .lanyard(
                &["devices", "revoke", "LT-1", "--reason", "stolen"],
                None,
                None,
            )
            .ok();
        let answer = client::request(
            &conn,
            &Message::SignIn {
                username: "r.old".into(),
                password: PASSWORD.into(),
                totp: None,
            },
        )
        .await;
        // Refused as revoked, or the connection closed with that code
        // before the refusal was read: either way nothing was signed in.
        match answer {
            Err(client::ClientError::Refused { code, .. }) => assert_eq!(code, ErrorCode::Revoked),
            Err(_) => {}
            Ok(other) => panic!("a revoked device signed in: {other:?}"),
        }
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), conn.closed()).await;
        assert!(closed.is_ok(), "the connection stayed open");
        match conn.close_reason() {
            Some(quinn::ConnectionError::ApplicationClosed(c)) => assert_eq!(
                c.error_code,
                quinn::VarInt::from_u32(lanyard_proto::close::DEVICE_REVOKED)
            ),
            other => panic!("closed for another reason: {other:?}"),
        }
    });
}
