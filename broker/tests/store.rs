//! The store's behaviour, on SQLite and (when configured) PostgreSQL.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::sync::Arc;

use lanyard_broker::model::LaptopStatus;
use lanyard_broker::model::{
    AppName, AssetTag, DeviceKindRule, GroupName, HostName, Priority, Target, Username,
};
use lanyard_broker::store::api_tokens::TokenLookup;
use lanyard_broker::store::apps::{AppChange, NewApp};
use lanyard_broker::store::enrol::{ConsumeError, EnrolFor};
use lanyard_broker::store::laptops::NewLaptop;
use lanyard_broker::store::refresh::RefreshError;
use lanyard_broker::store::staff::{ImportError, NewStaff, StaffImportRow};
use lanyard_broker::store::{Store, StoreError};
use lanyard_broker::testkit::stores;

const NOW: i64 = 1_800_000_000_000;

fn person(username: &str, groups: &[&str]) -> NewStaff {
    NewStaff {
        username: Username::parse(username).unwrap(),
        name: format!("Person {username}"),
        email: format!("{username}@council.example"),
        department: "Revenues".into(),
        priority: Priority::parse("2").unwrap(),
        groups: groups
            .iter()
            .map(|g| GroupName::parse(g).unwrap())
            .collect(),
        role: lanyard_broker::model::Role::Staff,
        password_hash: None,
    }
}

async fn with_groups(store: &Store, groups: &[&str]) {
    for g in groups {
        store
            .group_add("admin", &GroupName::parse(g).unwrap(), "", NOW)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn migrations_are_idempotent() {
    for ts in stores().await {
        assert_eq!(ts.store.migrate().await.unwrap(), 0, "{ts:?}");
        ts.store.ping().await.unwrap();
    }
}

#[tokio::test]
async fn staff_add_list_and_refusals_change_nothing() {
    for ts in stores().await {
        let store = &ts.store;
        with_groups(store, &["hr", "contact-centre"]).await;
        let added = store
            .staff_add("admin", &person("j.smith", &["hr"]), NOW)
            .await
            .unwrap();
        assert_eq!(added.groups, vec!["hr"]);
        assert!(added.active);

        let audit_before = store.audit_count().await.unwrap();
        let dup = store
            .staff_add("admin", &person("j.smith", &[]), NOW)
            .await
            .unwrap_err();
        assert!(
            matches!(dup, StoreError::Conflict(ref m) if m.contains("already exists")),
            "{ts:?}: {dup}"
        );
        let unknown = store
            .staff_add("admin", &person("a.jones", &["nope"]), NOW)
            .await
            .unwrap_err();
        assert!(
            matches!(unknown, StoreError::Invalid(ref m) if m.contains("unknown group nope")),
            "{ts:?}: {unknown}"
        );
        assert_eq!(
            store.audit_count().await.unwrap(),
            audit_before,
            "{ts:?}: refusals wrote audit rows"
        );
        assert!(
            matches!(
                store.staff_get("a.jones").await,
                Err(StoreError::NotFound(_))
            ),
            "{ts:?}"
        );

        let list = store.staff_list().await.unwrap();
        assert_eq!(list.len(), 1, "{ts:?}");
        assert_eq!(list[0].username, "j.smith");
    }
}

/// A row with a bad field is still checked against the store: one pass
/// names its conflicts along with its format problems.
#[tokio::test]
async fn staff_import_checks_rows_with_bad_fields_against_the_store_too() {
    for ts in stores().await {
        let store = &ts.store;
        store
            .staff_add("admin", &person("existing", &[]), NOW)
            .await
            .unwrap();
        let rows = vec![
            StaffImportRow {
                line: 2,
                username: Some(Username::parse("existing").unwrap()),
                groups: vec![GroupName::parse("planning").unwrap()],
                staff: None,
                problems: vec!["bad priority \"7\": use 1, 2 or 3".into()],
            },
            StaffImportRow::unreadable(3, "has 2 fields, the header has 6".into()),
            StaffImportRow::parsed(4, &person("a.one", &[])),
        ];
        let err = store
            .staff_import_rows("admin", &rows, NOW)
            .await
            .unwrap_err();
        let ImportError::Rows(problems) = &err else {
            panic!("{ts:?}: expected refusal, got {err:?}");
        };
        let got: Vec<(u64, &str)> = problems
            .iter()
            .map(|p| (p.line, p.problem.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, "bad priority \"7\": use 1, 2 or 3"),
                (2, "staff member existing already exists"),
                (
                    2,
                    "unknown group planning: add it first with `lanyard groups add planning`"
                ),
                (3, "has 2 fields, the header has 6"),
            ],
            "{ts:?}"
        );
        assert_eq!(
            err.to_string(),
            "import refused: 2 bad rows, 4 problems; nothing was written"
        );
        assert_eq!(store.staff_list().await.unwrap().len(), 1, "{ts:?}");
    }
}

#[tokio::test]
async fn staff_import_is_all_or_nothing_with_line_numbers() {
    for ts in stores().await {
        let store = &ts.store;
        with_groups(store, &["hr"]).await;
        store
            .staff_add("admin", &person("existing", &[]), NOW)
            .await
            .unwrap();
        let rows = vec![
            (2, person("a.one", &["hr"])),
            (3, person("existing", &[])),
            (4, person("a.two", &["ghosts"])),
            (5, person("a.one", &[])),
        ];
        match store.staff_import("admin", &rows, NOW).await {
            Err(ImportError::Rows(problems)) => {
                let lines: Vec<u64> = problems.iter().map(|p| p.line).collect();
                assert_eq!(lines, vec![3, 4, 5], "{ts:?}: {problems:?}");
                assert!(problems[1].problem.contains("unknown group ghosts"));
            }
            other => panic!("{ts:?}: expected refusal, got {other:?}"),
        }
        assert_eq!(
            store.staff_list().await.unwrap().len(),
            1,
            "{ts:?}: a refused import wrote rows"
        );

        let good = vec![(2, person("a.one", &["hr"])), (3, person("a.two", &[]))];
        assert_eq!(store.staff_import("admin", &good, NOW).await.unwrap(), 2);
        assert_eq!(store.staff_list().await.unwrap().len(), 3, "{ts:?}");
    }
}

#[tokio::test]
async fn apps_need_known_groups_and_can_be_removed() {
    for ts in stores().await {
        let store = &ts.store;
        with_groups(store, &["hr"]).await;
        let app = NewApp {
            name: AppName::parse("hr-system").unwrap(),
            target: Target::parse("hr.internal:443").unwrap(),
            groups: vec![GroupName::parse("hr").unwrap()],
            device_kind: DeviceKindRule::Managed,
            hosts: Vec::new(),
            protocol: lanyard_proto::AppProtocol::Tcp,
            flow_idle_secs: 300,
        };
        let added = store.app_add("admin", &app, NOW).await.unwrap();
        assert_eq!(added.allow_groups, vec!["hr"]);
        assert_eq!(added.device_kind, "managed");
        assert!(
            matches!(
                store.app_add("admin", &app, NOW).await,
                Err(StoreError::Conflict(_))
            ),
            "{ts:?}"
        );
        let mut bad = app.clone();
        bad.name = AppName::parse("other").unwrap();
        bad.groups = vec![GroupName::parse("nobody").unwrap()];
        assert!(
            matches!(
                store.app_add("admin", &bad, NOW).await,
                Err(StoreError::Invalid(_))
            ),
            "{ts:?}"
        );
        // A group in use cannot be removed.
        let in_use = store
            .group_remove("admin", &GroupName::parse("hr").unwrap(), NOW)
            .await
            .unwrap_err();
        assert!(matches!(in_use, StoreError::Conflict(_)), "{ts:?}");
        store.app_remove("admin", "hr-system", NOW).await.unwrap();
        assert!(store.app_list().await.unwrap().is_empty());
        assert!(matches!(
            store.app_remove("admin", "hr-system", NOW).await,
            Err(StoreError::NotFound(_))
        ));
        store
            .group_remove("admin", &GroupName::parse("hr").unwrap(), NOW)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn an_app_s_host_names_belong_to_it_alone() {
    for ts in stores().await {
        let store = &ts.store;
        let host = |h: &str| HostName::parse(h).unwrap();
        let app = |name: &str, hosts: &[&str]| NewApp {
            name: AppName::parse(name).unwrap(),
            target: Target::parse("127.0.0.1:80").unwrap(),
            groups: vec![],
            device_kind: DeviceKindRule::Any,
            hosts: hosts.iter().map(|h| host(h)).collect(),
            protocol: lanyard_proto::AppProtocol::Udp,
            flow_idle_secs: 60,
        };
        let hr = store
            .app_add("admin", &app("hr", &["hr.council.internal", "hr"]), NOW)
            .await
            .unwrap();
        assert_eq!(hr.hosts, vec!["hr", "hr.council.internal"], "{ts:?}");
        assert_eq!(hr.protocol, "udp");
        assert_eq!(hr.flow_idle_secs, 60);
        // A name of another app's, on add or set: refused, nothing written.
        let taken = store
            .app_add("admin", &app("web", &["hr.council.internal"]), NOW)
            .await;
        assert!(matches!(taken, Err(StoreError::Conflict(_))), "{ts:?}");
        store.app_add("admin", &app("web", &[]), NOW).await.unwrap();
        let change = AppChange {
            hosts: Some(vec![host("web.internal"), host("hr")]),
            ..AppChange::default()
        };
        let taken = store.app_set("admin", "web", &change, NOW).await;
        assert!(matches!(taken, Err(StoreError::Conflict(_))), "{ts:?}");
        let apps = store.app_list().await.unwrap();
        assert_eq!(apps.len(), 2);
        assert!(apps[1].hosts.is_empty(), "{ts:?}: {apps:?}");
        // Given up by one app, a name is free for another.
        let change = AppChange {
            hosts: Some(vec![host("hr.council.internal")]),
            protocol: Some(lanyard_proto::AppProtocol::Tcp),
            ..AppChange::default()
        };
        store.app_set("admin", "hr", &change, NOW).await.unwrap();
        let change = AppChange {
            hosts: Some(vec![host("hr")]),
            ..AppChange::default()
        };
        let web = store.app_set("admin", "web", &change, NOW).await.unwrap();
        assert_eq!(web.hosts, vec!["hr"]);
        store.app_remove("admin", "hr", NOW).await.unwrap();
        let change = AppChange {
            hosts: Some(vec![host("hr.council.internal")]),
            ..AppChange::default()
        };
        let web = store.app_set("admin", "web", &change, NOW).await.unwrap();
        assert_eq!(web.hosts, vec!["hr.council.internal"]);
        assert_eq!(web.protocol, "udp");
    }
}

#[tokio::test]
async fn enrolment_codes_are_single_use_even_under_a_race() {
    for ts in stores().await {
        let store = &ts.store;
        store
            .staff_add("admin", &person("j.smith", &[]), NOW)
            .await
            .unwrap();
        let who = EnrolFor::Personal(Username::parse("j.smith").unwrap());

        // In sequence.
        store
            .enrol_code_create("admin", &who, "hash-seq", 60_000, NOW)
            .await
            .unwrap();
        let used = store.enrol_code_consume("hash-seq", NOW + 1).await.unwrap();
        assert_eq!(used.enrol_for, who);
        assert!(
            matches!(
                store.enrol_code_consume("hash-seq", NOW + 2).await,
                Err(ConsumeError::Used)
            ),
            "{ts:?}"
        );
        assert!(
            matches!(
                store.enrol_code_consume("nope", NOW).await,
                Err(ConsumeError::Unknown)
            ),
            "{ts:?}"
        );

        // Expired.
        store
            .enrol_code_create("admin", &who, "hash-old", 60_000, NOW)
            .await
            .unwrap();
        assert!(
            matches!(
                store.enrol_code_consume("hash-old", NOW + 60_000).await,
                Err(ConsumeError::Expired)
            ),
            "{ts:?}"
        );

        // 50 at once.
        store
            .enrol_code_create("admin", &who, "hash-race", 60_000, NOW)
            .await
            .unwrap();
        let store = Arc::new(store.clone());
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.enrol_code_consume("hash-race", NOW + 5).await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(ConsumeError::Used) => {}
                Err(e) => panic!("{ts:?}: unexpected {e}"),
            }
        }
        assert_eq!(
            ok, 1,
            "{ts:?}: exactly one of 50 concurrent uses must succeed"
        );
    }
}

#[tokio::test]
async fn enrolment_codes_for_laptops_need_a_usable_laptop() {
    for ts in stores().await {
        let store = &ts.store;
        let tag = AssetTag::parse("LT-001").unwrap();
        let missing = store
            .enrol_code_create("admin", &EnrolFor::Laptop(tag.clone()), "h1", 1000, NOW)
            .await;
        assert!(matches!(missing, Err(StoreError::NotFound(_))), "{ts:?}");
        let laptop = NewLaptop {
            asset_tag: tag.clone(),
            serial: "SN1".into(),
            model: "X1".into(),
            status: LaptopStatus::InStock,
            notes: String::new(),
            purchase_date: None,
            warranty_end: None,
        };
        store.laptop_add("admin", &laptop, NOW).await.unwrap();
        store
            .enrol_code_create("admin", &EnrolFor::Laptop(tag.clone()), "h1", 1000, NOW)
            .await
            .unwrap();
        let used = store.enrol_code_consume("h1", NOW).await.unwrap();
        assert_eq!(used.enrol_for, EnrolFor::Laptop(tag));
    }
}

#[tokio::test]
async fn audit_chain_verifies_and_names_an_edited_or_deleted_row() {
    for ts in stores().await {
        let store = &ts.store;
        with_groups(store, &["a", "b", "c", "d", "e"]).await;
        let report = store.audit_verify().await.unwrap();
        assert!(report.ok, "{ts:?}: {report:?}");
        assert_eq!(report.rows_checked, 5);

        sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
            .execute(store.pool())
            .await
            .unwrap();
        let report = store.audit_verify().await.unwrap();
        assert!(!report.ok);
        assert_eq!(report.bad_seq, Some(3), "{ts:?}: {report:?}");
        assert!(report.problem.unwrap().contains("row 3 was edited"));
        sqlx::query("UPDATE audit_log SET actor = 'admin' WHERE seq = 3")
            .execute(store.pool())
            .await
            .unwrap();
        assert!(
            store.audit_verify().await.unwrap().ok,
            "{ts:?}: restoring the row restores the chain"
        );

        sqlx::query("DELETE FROM audit_log WHERE seq = 2")
            .execute(store.pool())
            .await
            .unwrap();
        let report = store.audit_verify().await.unwrap();
        assert_eq!(report.bad_seq, Some(2), "{ts:?}: {report:?}");
        assert!(report.problem.unwrap().contains("missing"));
    }
}

#[tokio::test]
async fn the_audit_log_pages_back_by_sequence_number_under_a_filter() {
    for ts in stores().await {
        let store = &ts.store;
        with_groups(store, &["a", "b", "c", "d", "e"]).await;
        store
            .staff_add("admin", &person("p.one", &["a"]), NOW)
            .await
            .unwrap();
        let filter = |before_seq| lanyard_broker::store::audit::AuditFilter {
            action_prefix: Some("group.".into()),
            limit: 2,
            before_seq,
            ..Default::default()
        };
        let seqs = |rows: Vec<lanyard_broker::store::audit::AuditRow>| {
            rows.iter().map(|r| r.seq).collect::<Vec<_>>()
        };
        let newest = seqs(store.audit_list(&filter(None)).await.unwrap());
        assert_eq!(newest, [4, 5], "{ts:?}");
        let older = seqs(store.audit_list(&filter(Some(4))).await.unwrap());
        assert_eq!(older, [2, 3], "{ts:?}");
        let oldest = seqs(store.audit_list(&filter(Some(2))).await.unwrap());
        assert_eq!(oldest, [1], "{ts:?}");
    }
}

#[tokio::test]
async fn audit_chain_detects_a_deleted_tail() {
    for ts in stores().await {
        let store = &ts.store;
        with_groups(store, &["a", "b", "c"]).await;
        sqlx::query("DELETE FROM audit_log WHERE seq = 3")
            .execute(store.pool())
            .await
            .unwrap();
        let report = store.audit_verify().await.unwrap();
        assert_eq!(report.bad_seq, Some(3), "{ts:?}: {report:?}");
    }
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_replay_revokes_the_family() {
    for ts in stores().await {
        let store = &ts.store;
        store
            .staff_add("admin", &person("j.smith", &[]), NOW)
            .await
            .unwrap();
        store
            .refresh_issue("j.smith", "fp1", "r1", 60_000, NOW)
            .await
            .unwrap();
        let rotated = store
            .refresh_rotate("r1", "r2", "fp1", 60_000, NOW + 1)
            .await
            .unwrap();
        assert_eq!(rotated.username, "j.smith");
        assert!(
            matches!(
                store
                    .refresh_rotate("r2", "r3", "fp2", 60_000, NOW + 2)
                    .await,
                Err(RefreshError::WrongDevice)
            ),
            "{ts:?}"
        );
        // r1 again: stolen. The family (r2 too) is revoked.
        assert!(
            matches!(
                store
                    .refresh_rotate("r1", "rx", "fp1", 60_000, NOW + 3)
                    .await,
                Err(RefreshError::Reused)
            ),
            "{ts:?}"
        );
        assert!(
            matches!(
                store
                    .refresh_rotate("r2", "r3", "fp1", 60_000, NOW + 4)
                    .await,
                Err(RefreshError::Revoked)
            ),
            "{ts:?}"
        );
        assert!(matches!(
            store.refresh_rotate("zz", "r3", "fp1", 60_000, NOW).await,
            Err(RefreshError::Unknown)
        ));

        store
            .refresh_issue("j.smith", "fp1", "s1", 60_000, NOW)
            .await
            .unwrap();
        assert!(
            matches!(
                store
                    .refresh_rotate("s1", "s2", "fp1", 60_000, NOW + 60_000)
                    .await,
                Err(RefreshError::Expired)
            ),
            "{ts:?}"
        );
        store
            .refresh_issue("j.smith", "fp1", "t1", 60_000, NOW)
            .await
            .unwrap();
        store
            .staff_set_active("admin", "j.smith", false, NOW)
            .await
            .unwrap();
        assert!(
            matches!(
                store
                    .refresh_rotate("t1", "t2", "fp1", 60_000, NOW + 1)
                    .await,
                Err(RefreshError::Revoked)
            ),
            "{ts:?}"
        );
    }
}

#[tokio::test]
async fn api_tokens_expire_and_follow_their_owner() {
    for ts in stores().await {
        let store = &ts.store;
        assert!(store.api_token_ensure_bootstrap("boot", NOW).await.unwrap());
        assert!(
            !store.api_token_ensure_bootstrap("boot", NOW).await.unwrap(),
            "{ts:?}: inserted twice"
        );
        match store.api_token_lookup("boot", NOW).await.unwrap() {
            TokenLookup::Valid(c) => assert!(c.admin && c.name == "bootstrap"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            store.api_token_lookup("nope", NOW).await.unwrap(),
            TokenLookup::Unknown
        );

        let mut admin = person("boss", &[]);
        admin.role = lanyard_broker::model::Role::Admin;
        store.staff_add("bootstrap", &admin, NOW).await.unwrap();
        store
            .api_token_create("boss", true, "t-boss", 1000, NOW)
            .await
            .unwrap();
        assert!(
            matches!(store.api_token_lookup("t-boss", NOW).await.unwrap(), TokenLookup::Valid(ref c) if c.admin)
        );
        assert_eq!(
            store.api_token_lookup("t-boss", NOW + 1000).await.unwrap(),
            TokenLookup::Expired
        );
        store
            .staff_set_active("bootstrap", "boss", false, NOW)
            .await
            .unwrap();
        // A disable ends the token for good: enabling again revives none.
        assert_eq!(
            store.api_token_lookup("t-boss", NOW).await.unwrap(),
            TokenLookup::Revoked,
            "{ts:?}"
        );
        store
            .staff_set_active("bootstrap", "boss", true, NOW + 1)
            .await
            .unwrap();
        assert_eq!(
            store.api_token_lookup("t-boss", NOW + 2).await.unwrap(),
            TokenLookup::Revoked,
            "{ts:?}"
        );
    }
}

/// A token issued in a race with a disable or a password reset (its
/// sign-in checked the person before the change, its row written after)
/// is dead all the same, and enabling the person again revives nothing.
#[tokio::test]
async fn tokens_issued_before_a_disable_or_reset_stay_dead() {
    for ts in stores().await {
        let store = &ts.store;
        store
            .staff_add("admin", &person("r.race", &[]), NOW)
            .await
            .unwrap();
        for (round, change) in ["disable", "password"].into_iter().enumerate() {
            let at = NOW + 100 * round as i64;
            let family = store
                .refresh_issue("r.race", "fp1", &format!("live-{change}"), 600_000, at)
                .await
                .unwrap();
            store
                .api_token_create("r.race", false, &format!("api-live-{change}"), 600_000, at)
                .await
                .unwrap();
            match change {
                "disable" => {
                    store
                        .staff_set_active("admin", "r.race", false, at + 10)
                        .await
                        .unwrap();
                }
                _ => store
                    .staff_set_password("admin", "r.race", "$argon2id$x", at + 10)
                    .await
                    .unwrap(),
            };
            // Issued as of `at + 5`, written after the change committed.
            let raced = store
                .refresh_issue("r.race", "fp1", &format!("race-{change}"), 600_000, at + 5)
                .await
                .unwrap();
            store
                .api_token_create(
                    "r.race",
                    false,
                    &format!("api-race-{change}"),
                    600_000,
                    at + 5,
                )
                .await
                .unwrap();
            store
                .staff_set_active("admin", "r.race", true, at + 20)
                .await
                .unwrap();
            for (token, sign_in) in [("live", &family), ("race", &raced)] {
                assert!(
                    store.sign_in_ended(sign_in).await.unwrap(),
                    "{ts:?} {change}: the {token} sign-in goes on"
                );
                assert!(
                    matches!(
                        store
                            .refresh_rotate(
                                &format!("{token}-{change}"),
                                "next",
                                "fp1",
                                600_000,
                                at + 30
                            )
                            .await,
                        Err(RefreshError::Revoked)
                    ),
                    "{ts:?} {change}: the {token} refresh token still rotates"
                );
                assert_eq!(
                    store
                        .api_token_lookup(&format!("api-{token}-{change}"), at + 30)
                        .await
                        .unwrap(),
                    TokenLookup::Revoked,
                    "{ts:?} {change}: the {token} API token still works"
                );
            }
            // What is issued after the change works.
            let fresh = store
                .refresh_issue(
                    "r.race",
                    "fp1",
                    &format!("fresh-{change}"),
                    600_000,
                    at + 30,
                )
                .await
                .unwrap();
            assert!(!store.sign_in_ended(&fresh).await.unwrap(), "{ts:?}");
            store
                .api_token_create(
                    "r.race",
                    false,
                    &format!("api-fresh-{change}"),
                    600_000,
                    at + 30,
                )
                .await
                .unwrap();
            assert!(matches!(
                store
                    .api_token_lookup(&format!("api-fresh-{change}"), at + 31)
                    .await
                    .unwrap(),
                TokenLookup::Valid(_)
            ));
            // The ended sign-ins are what the rules in memory read.
            let ended = store.sign_ins_ended_since(at).await.unwrap();
            assert!(ended.contains(&family), "{ts:?} {change}: {ended:?}");
        }
    }
}

/// A sign-out ends the whole family, only from the device it was made on;
/// a refused one, or one of a sign-in already ended, writes nothing.
#[tokio::test]
async fn a_sign_out_ends_the_family_from_its_own_device_only() {
    for ts in stores().await {
        let store = &ts.store;
        store
            .staff_add("admin", &person("s.out", &[]), NOW)
            .await
            .unwrap();
        let family = store
            .refresh_issue("s.out", "fp1", "o1", 600_000, NOW)
            .await
            .unwrap();
        store
            .refresh_rotate("o1", "o2", "fp1", 600_000, NOW + 1)
            .await
            .unwrap();
        let rows = || async { store.audit_count().await.unwrap() };
        let before = rows().await;
        let generation = store.access_generation();
        assert!(matches!(
            store.sign_out("o2", "fp2", "phone", NOW + 2).await,
            Err(RefreshError::WrongDevice)
        ));
        assert!(matches!(
            store.sign_out("nope", "fp1", "phone", NOW + 2).await,
            Err(RefreshError::Unknown)
        ));
        assert!(!store.sign_in_ended(&family).await.unwrap(), "{ts:?}");
        assert_eq!(rows().await, before, "{ts:?}: a refused sign-out wrote");
        assert_eq!(
            store.sign_out("o2", "fp1", "phone", NOW + 3).await.unwrap(),
            "s.out"
        );
        assert!(store.sign_in_ended(&family).await.unwrap(), "{ts:?}");
        assert!(
            store.access_generation() > generation,
            "{ts:?}: no access change"
        );
        assert_eq!(rows().await, before + 1, "{ts:?}");
        assert!(matches!(
            store
                .refresh_rotate("o2", "o3", "fp1", 600_000, NOW + 4)
                .await,
            Err(RefreshError::Revoked)
        ));
        // Again: already ended, nothing more written.
        store.sign_out("o2", "fp1", "phone", NOW + 5).await.unwrap();
        assert_eq!(rows().await, before + 1, "{ts:?}");
    }
}

/// Codes, API tokens and personal devices are listed and revoked one by
/// one, with the same SQL on both stores; refusals write nothing.
#[tokio::test]
async fn codes_tokens_and_personal_devices_are_listed_and_revoked_one_by_one() {
    use lanyard_broker::store::devices::NewDevice;
    for ts in stores().await {
        let store = &ts.store;
        store
            .staff_add("admin", &person("o.one", &[]), NOW)
            .await
            .unwrap();
        let who = EnrolFor::Personal(Username::parse("o.one").unwrap());
        let kept = store
            .enrol_code_create("admin", &who, "c-kept", 60_000, NOW)
            .await
            .unwrap();
        let dropped = store
            .enrol_code_create("admin", &who, "c-dropped", 60_000, NOW + 1)
            .await
            .unwrap();
        store
            .enrol_code_cancel("admin", &dropped.id, NOW + 2)
            .await
            .unwrap();
        let open: Vec<String> = store
            .enrol_code_list(true, NOW + 3)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(open, vec![kept.id.clone()], "{ts:?}");
        let states: Vec<&str> = store
            .enrol_code_list(false, NOW + 60_000)
            .await
            .unwrap()
            .iter()
            .map(|c| c.state)
            .collect();
        assert_eq!(states, ["cancelled", "expired"], "{ts:?}");
        let rows = store.audit_count().await.unwrap();
        assert!(matches!(
            store.enrol_code_cancel("admin", &dropped.id, NOW + 4).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store.enrol_code_cancel("admin", "nope", NOW + 4).await,
            Err(StoreError::NotFound(_))
        ));

        store
            .api_token_create("o.one", false, "t1", 60_000, NOW)
            .await
            .unwrap();
        let listed = store.api_token_list(Some("o.one"), NOW).await.unwrap();
        assert_eq!(listed.len(), 1, "{ts:?}");
        assert_eq!(listed[0].state, "active");
        assert!(store
            .api_token_list(Some("nobody"), NOW)
            .await
            .unwrap()
            .is_empty());
        assert!(matches!(
            store.api_token_revoke("admin", "nope", NOW).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(store.audit_count().await.unwrap(), rows + 1, "{ts:?}");
        store
            .api_token_revoke("admin", &listed[0].id, NOW + 1)
            .await
            .unwrap();
        assert_eq!(
            store.api_token_lookup("t1", NOW + 2).await.unwrap(),
            TokenLookup::Revoked
        );

        store
            .enrol_code_create("admin", &who, "c-dev", 60_000, NOW)
            .await
            .unwrap();
        let fingerprint = "ab".repeat(32);
        store
            .enrol_code_consume_with("c-dev", NOW + 1, |_| {
                Some(NewDevice {
                    fingerprint: fingerprint.clone(),
                    kind: "personal",
                    asset_tag: None,
                    owner: Some("o.one".into()),
                    public_key: String::new(),
                    cert_expires_at: NOW + 86_400_000,
                    agent_version: "0".into(),
                    os: "linux".into(),
                })
            })
            .await
            .unwrap();
        let rows = store.audit_count().await.unwrap();
        for (id, refused) in [("AB%", "bad"), ("cdcdcdcdcdcdcdcd", "unknown")] {
            let r = store
                .personal_device_revoke("admin", id, "x", NOW + 2)
                .await;
            assert!(
                matches!(
                    r,
                    Err(StoreError::Invalid(_)) | Err(StoreError::NotFound(_))
                ),
                "{ts:?} {refused}: {r:?}"
            );
        }
        assert_eq!(store.audit_count().await.unwrap(), rows, "{ts:?}");
        let generation = store.access_generation();
        assert_eq!(
            store
                .personal_device_revoke("admin", &fingerprint[..16].to_uppercase(), "lost", NOW + 3)
                .await
                .unwrap(),
            "o.one"
        );
        assert!(store.access_generation() > generation, "{ts:?}");
        assert_eq!(
            store.devices_revoked().await.unwrap(),
            vec![fingerprint.clone()]
        );
        assert!(store.staff_get("o.one").await.unwrap().active);
    }
}

/// What ran out long ago is pruned; what is live, or ran out lately, stays.
#[tokio::test]
async fn pruning_deletes_only_what_ran_out_long_ago() {
    use lanyard_broker::store::nodes::{SessionEnd, SessionRow, KEEP_ENDED_MS};
    for ts in stores().await {
        let store = &ts.store;
        store
            .staff_add("admin", &person("j.smith", &[]), NOW)
            .await
            .unwrap();
        let long_ago = NOW - KEEP_ENDED_MS - 1_000;
        // API tokens: one expired long ago, one revoked long ago, one live.
        store
            .api_token_create("j.smith", false, "t-old", 1_000, long_ago - 10_000)
            .await
            .unwrap();
        store
            .api_token_create("j.smith", false, "t-live", 3_600_000, NOW)
            .await
            .unwrap();
        // Sessions: one ended long ago, one ended lately, one live.
        let session = |id: &str, since| SessionRow {
            id: id.into(),
            node: "node-a".into(),
            username: "j.smith".into(),
            device: "laptop".into(),
            kind: "personal".into(),
            remote: "127.0.0.1:1".into(),
            sign_in: None,
            since,
        };
        for (id, ended) in [
            ("old", Some(long_ago)),
            ("recent", Some(NOW - 1_000)),
            ("live", None),
        ] {
            let s = session(id, long_ago - 5_000);
            store.session_open(&s).await.unwrap();
            if let Some(at) = ended {
                store
                    .session_close(&s, &SessionEnd::default(), at)
                    .await
                    .unwrap();
            }
        }
        let pruned = store.prune_ended(NOW).await.unwrap();
        assert_eq!(pruned.sessions, 1, "{}: {pruned:?}", ts.label);
        assert_eq!(pruned.api_tokens, 1, "{}: {pruned:?}", ts.label);
        let live: Vec<String> = store
            .sessions_live()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(live, ["live"], "{}", ts.label);
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agent_sessions")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(
            left, 2,
            "{}: the recent end and the live one stay",
            ts.label
        );
        // Pruning again finds nothing.
        let again = store.prune_ended(NOW).await.unwrap();
        assert_eq!(again, Default::default(), "{}", ts.label);
    }
}
