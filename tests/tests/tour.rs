//! The README's tour with the real binaries, on SQLite and (when
//! LANYARD_TEST_DATABASE_URL is set) PostgreSQL; and no secret in the log.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::time::Duration;

use lanyard_e2e::{BrokerProcess, TestStore};

fn tour(broker: &BrokerProcess) -> Vec<String> {
    let mut secrets = vec![broker.admin_token()];
    broker.lanyard(&["groups", "add", "hr"], None, None).ok();
    let password = "Correct-Horse-Battery-9";
    secrets.push(password.into());
    broker
        .lanyard(
            &[
                "staff",
                "add",
                "j.smith",
                "--name",
                "Jo Smith",
                "--priority",
                "1",
                "--group",
                "hr",
                "--password-stdin",
            ],
            None,
            Some(&format!("{password}\n")),
        )
        .ok();
    broker
        .lanyard(
            &[
                "apps",
                "add",
                "hr-system",
                "--target",
                "127.0.0.1:9",
                "--allow-group",
                "hr",
            ],
            None,
            None,
        )
        .ok();
    let code = broker
        .lanyard(
            &["enroll-code", "create", "--personal", "j.smith"],
            None,
            None,
        )
        .ok()
        .stdout;
    let code = code.trim().to_owned();
    assert!(code.starts_with("lye1."), "{code}");
    secrets.push(code.clone());
    let login = broker
        .lanyard(
            &["login", "j.smith", "--password-stdin"],
            Some("-"),
            Some(&format!("{password}\n")),
        )
        .ok();
    secrets.push(login.stdout.trim().to_owned());
    let bad = broker.lanyard(
        &["login", "j.smith", "--password-stdin"],
        Some("-"),
        Some("Wrong-Password-77\n"),
    );
    assert_eq!(bad.code, 1);
    secrets.push("Wrong-Password-77".into());
    let verify = broker.lanyard(&["audit", "verify"], None, None).ok();
    assert!(
        verify.stdout.contains("audit log intact"),
        "{}",
        verify.stdout
    );
    let list = broker
        .lanyard(&["staff", "list", "--json"], None, None)
        .ok();
    let staff: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(staff[0]["username"], "j.smith");
    secrets
}

fn check_log(broker: &BrokerProcess, secrets: &[String]) {
    let log = broker.log_text();
    assert!(!log.is_empty());
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(
            !log.contains(secret.as_str()),
            "a secret reached the log: {secret}\n{log}"
        );
    }
}

#[test]
fn tour_on_sqlite_keeps_every_secret_out_of_a_debug_log() {
    let tmp = tempfile::tempdir().unwrap();
    let mut broker =
        BrokerProcess::start(&tmp.path().join("data"), &[], &[("LANYARD_LOG", "debug")]);
    let secrets = tour(&broker);
    broker.signal("TERM");
    assert_eq!(broker.wait_exit(Duration::from_secs(10)), Some(0));
    check_log(&broker, &secrets);
}

#[test]
fn tour_on_postgres() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(pg) = rt.block_on(TestStore::postgres()) else {
        lanyard_broker::testkit::say_skipped(
            "LANYARD_TEST_DATABASE_URL is not set, so the broker was not run on PostgreSQL",
        );
        return;
    };
    let url = pg.url();
    let tmp = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(
        &tmp.path().join("data"),
        &["--database-url", &url],
        &[("LANYARD_LOG", "debug")],
    );
    assert!(
        !tmp.path().join("data/lanyard.db").exists(),
        "PostgreSQL was asked for, SQLite was used"
    );
    let secrets = tour(&broker);
    broker.signal("TERM");
    assert_eq!(broker.wait_exit(Duration::from_secs(10)), Some(0));
    check_log(&broker, &secrets);
    drop(pg);
}
