//! The laptop inventory on SQLite and (when configured) PostgreSQL.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::sync::Arc;

use lanyard_broker::model::LaptopStatus;
use lanyard_broker::model::{AssetTag, Priority, Username};
use lanyard_broker::store::laptops::{LaptopFilter, LaptopImportRow, NewLaptop};
use lanyard_broker::store::staff::{ImportError, NewStaff};
use lanyard_broker::store::{Store, StoreError};
use lanyard_broker::testkit::stores;

const NOW: i64 = 1_800_000_000_000;

fn laptop(tag: &str, serial: &str, model: &str) -> NewLaptop {
    NewLaptop {
        asset_tag: AssetTag::parse(tag).unwrap(),
        serial: serial.into(),
        model: model.into(),
        status: LaptopStatus::InStock,
        notes: String::new(),
        purchase_date: None,
        warranty_end: None,
    }
}

async fn person(store: &Store, username: &str, priority: &str, department: &str) {
    let new = NewStaff {
        username: Username::parse(username).unwrap(),
        name: format!("Name of {username}"),
        email: String::new(),
        department: department.into(),
        priority: Priority::parse(priority).unwrap(),
        groups: vec![],
        role: lanyard_broker::model::Role::Staff,
        password_hash: None,
    };
    store.staff_add("ict", &new, NOW).await.unwrap();
}

fn tag(s: &str) -> AssetTag {
    AssetTag::parse(s).unwrap()
}

fn user(s: &str) -> Username {
    Username::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_100_concurrent_assigns_of_the_last_laptop_exactly_one_wins() {
    for ts in stores().await {
        let store = Arc::new(ts.store.clone());
        store
            .laptop_add("ict", &laptop("LT-LAST", "SN-LAST", "T14"), NOW)
            .await
            .unwrap();
        for i in 0..100 {
            person(&store, &format!("p{i}"), "2", "Revenues").await;
        }
        let mut tasks = Vec::new();
        for i in 0..100 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .laptop_assign("ict", &tag("LT-LAST"), &user(&format!("p{i}")), "", NOW + i)
                    .await
            }));
        }
        let (mut won, mut conflicts) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => won += 1,
                Err(StoreError::Conflict(msg)) => {
                    assert!(
                        msg.contains("LT-LAST is not in stock: it is allocated to p"),
                        "{msg}"
                    );
                    conflicts += 1;
                }
                Err(e) => panic!("{ts:?}: unexpected error {e}"),
            }
        }
        assert_eq!((won, conflicts), (1, 99), "{ts:?}");
        let open: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM allocations WHERE returned_at IS NULL")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(open, 1, "{ts:?}");
        assert!(store.audit_verify().await.unwrap().ok, "{ts:?}");
    }
}

#[tokio::test]
async fn the_database_refuses_a_second_open_allocation_even_behind_the_code() {
    for ts in stores().await {
        let store = &ts.store;
        store
            .laptop_add("ict", &laptop("LT-1", "S1", "T14"), NOW)
            .await
            .unwrap();
        person(store, "a", "1", "").await;
        person(store, "b", "1", "").await;
        store
            .laptop_assign("ict", &tag("LT-1"), &user("a"), "", NOW)
            .await
            .unwrap();
        let raw = sqlx::query(
            "INSERT INTO allocations (id, asset_tag, username, allocated_at, allocated_by) VALUES ('x', 'LT-1', 'b', 1, 'sql')",
        )
        .execute(store.pool())
        .await;
        assert!(
            raw.is_err(),
            "{ts:?}: the partial unique index let a second open allocation in"
        );
        let dup = sqlx::query(
            "INSERT INTO laptop_requests (id, username, status, created_at, created_by) VALUES ('r1', 'a', 'open', 1, 'x'), ('r2', 'a', 'open', 2, 'x')",
        )
        .execute(store.pool())
        .await;
        assert!(dup.is_err(), "{ts:?}: two open requests for one person");
    }
}

#[tokio::test]
async fn fulfil_serves_priority_one_first_then_oldest_and_leaves_the_rest_queued() {
    for ts in stores().await {
        let store = &ts.store;
        for (u, p) in [
            ("old3", "3"),
            ("new1", "1"),
            ("mid2", "2"),
            ("old1", "1"),
            ("new3", "3"),
            ("off1", "1"),
        ] {
            person(store, u, p, "Housing").await;
        }
        for (i, (u, _)) in [
            ("old3", 0),
            ("old1", 1),
            ("mid2", 2),
            ("new1", 3),
            ("new3", 4),
            ("off1", 5),
        ]
        .iter()
        .enumerate()
        {
            store
                .request_add("ict", &user(u), "home working", NOW + i as i64 * 1000)
                .await
                .unwrap();
        }
        let again = store
            .request_add("ict", &user("old1"), "", NOW + 9000)
            .await
            .unwrap_err();
        assert!(
            matches!(again, StoreError::Conflict(ref m) if m.contains("already has an open")),
            "{ts:?}: {again}"
        );
        store
            .staff_set_active("ict", "off1", false, NOW)
            .await
            .unwrap();

        for i in 0..4 {
            store
                .laptop_add(
                    "ict",
                    &laptop(&format!("LT-{i}"), &format!("S{i}"), "T14"),
                    NOW + i,
                )
                .await
                .unwrap();
        }
        store
            .laptop_mark("ict", &tag("LT-3"), LaptopStatus::InRepair, "", NOW)
            .await
            .unwrap();

        let queue = store.request_list(true).await.unwrap();
        let order: Vec<(&str, Option<usize>)> = queue
            .iter()
            .map(|r| (r.row.username.as_str(), r.place))
            .collect();
        assert_eq!(
            order,
            vec![
                ("old1", Some(1)),
                ("new1", Some(2)),
                ("off1", None),
                ("mid2", Some(3)),
                ("old3", Some(4)),
                ("new3", Some(5))
            ],
            "{ts:?}"
        );

        let first = store
            .requests_fulfil("ict", Some(2), NOW + 20_000)
            .await
            .unwrap();
        let got: Vec<(&str, &str)> = first
            .allocated
            .iter()
            .map(|a| (a.username.as_str(), a.asset_tag.as_str()))
            .collect();
        assert_eq!(got, vec![("old1", "LT-0"), ("new1", "LT-1")], "{ts:?}");
        assert_eq!(first.still_queued, 3);

        let rest = store
            .requests_fulfil("ict", None, NOW + 30_000)
            .await
            .unwrap();
        let got: Vec<&str> = rest.allocated.iter().map(|a| a.username.as_str()).collect();
        assert_eq!(
            got,
            vec!["mid2"],
            "{ts:?}: only one laptop was left in stock"
        );
        assert_eq!((rest.still_queued, rest.in_stock), (2, 0));
        assert_eq!(rest.skipped_disabled, vec!["off1"]);

        let queue = store.request_list(true).await.unwrap();
        let left: Vec<(&str, Option<usize>)> = queue
            .iter()
            .map(|r| (r.row.username.as_str(), r.place))
            .collect();
        assert_eq!(
            left,
            vec![("off1", None), ("old3", Some(1)), ("new3", Some(2))],
            "{ts:?}"
        );
        let all = store.request_list(false).await.unwrap();
        let fulfilled = all.iter().filter(|r| r.row.status == "fulfilled").count();
        assert_eq!(fulfilled, 3);
        assert_eq!(
            store.laptop_get("LT-0").await.unwrap().holder.as_deref(),
            Some("old1")
        );
    }
}

#[tokio::test]
async fn returns_marks_and_losses_keep_an_honest_record() {
    for ts in stores().await {
        let store = &ts.store;
        person(store, "j.smith", "1", "Revenues").await;
        store
            .laptop_add("ict", &laptop("LT-9", "S9", "T14"), NOW)
            .await
            .unwrap();
        store
            .enrolled_device_insert(
                "fp-of-lt9",
                "managed",
                Some("LT-9"),
                None,
                NOW + 86_400_000,
                "0.1.0",
                "linux",
                NOW,
            )
            .await
            .unwrap();

        let none = store
            .laptop_return("ict", &tag("LT-9"), LaptopStatus::InStock, "", NOW)
            .await
            .unwrap_err();
        assert!(
            matches!(none, StoreError::Conflict(ref m) if m.contains("not allocated")),
            "{none}"
        );
        store
            .laptop_assign("ict", &tag("LT-9"), &user("j.smith"), "", NOW + 1)
            .await
            .unwrap();
        let busy = store
            .laptop_mark("ict", &tag("LT-9"), LaptopStatus::InRepair, "", NOW + 2)
            .await
            .unwrap_err();
        assert!(
            matches!(busy, StoreError::Conflict(ref m) if m.contains("devices return")),
            "{busy}"
        );
        let back = store
            .laptop_return(
                "ict",
                &tag("LT-9"),
                LaptopStatus::InRepair,
                "cracked screen",
                NOW + 3,
            )
            .await
            .unwrap();
        assert_eq!(back.status, "in-repair");
        let not_in_stock = store
            .laptop_assign("ict", &tag("LT-9"), &user("j.smith"), "", NOW + 4)
            .await
            .unwrap_err();
        assert!(
            matches!(not_in_stock, StoreError::Conflict(ref m) if m.contains("it is in-repair")),
            "{not_in_stock}"
        );
        store
            .laptop_mark(
                "ict",
                &tag("LT-9"),
                LaptopStatus::InStock,
                "repaired",
                NOW + 5,
            )
            .await
            .unwrap();
        store
            .laptop_assign("ict", &tag("LT-9"), &user("j.smith"), "", NOW + 6)
            .await
            .unwrap();

        let (lost, revoked) = store
            .laptop_mark(
                "ict",
                &tag("LT-9"),
                LaptopStatus::Lost,
                "left on a train",
                NOW + 7,
            )
            .await
            .unwrap();
        assert_eq!(lost.status, "lost");
        assert_eq!(
            lost.holder, None,
            "{ts:?}: a lost laptop has no open allocation"
        );
        assert_eq!(revoked.fingerprints, vec!["fp-of-lt9"], "{ts:?}");

        let detail = store.laptop_detail("LT-9").await.unwrap();
        assert_eq!(detail.allocations.len(), 2);
        assert_eq!(
            detail.allocations[0].allocation.return_condition.as_deref(),
            Some("lost")
        );
        assert_eq!(
            detail.allocations[1].allocation.return_note.as_deref(),
            Some("cracked screen")
        );
        assert!(detail.agents[0].revoked.is_some());
        assert_eq!(
            detail.agents[0].agent.revoke_reason.as_deref(),
            Some("laptop marked lost")
        );

        let history = store.laptop_history("LT-9").await.unwrap();
        let actions: Vec<&str> = history.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(
            actions,
            vec![
                "laptop.add",
                "laptop.assign",
                "laptop.return",
                "laptop.mark",
                "laptop.assign",
                "laptop.mark"
            ],
            "{ts:?}"
        );
        assert!(store.audit_verify().await.unwrap().ok);
    }
}

#[tokio::test]
async fn search_is_literal_case_blind_and_the_same_on_every_store() {
    for ts in stores().await {
        let store = &ts.store;
        for (t, s, m) in [
            ("LT-1", "S-100", "50% Off Special"),
            ("LT-2", "S-200", "A_B Model"),
            ("LT-3", "S-300", "O'Brien's Book"),
            ("LT-4", "S-400", "Ünïcode Book"),
            ("LT-5", "S-500", "ThinkPad T14"),
            ("LT-6", "S-600", "AxB Model"),
        ] {
            store
                .laptop_add("ict", &laptop(t, s, m), NOW)
                .await
                .unwrap();
        }
        let find = |q: &'static str| async move {
            let f = LaptopFilter {
                search: Some(q.into()),
                ..LaptopFilter::default()
            };
            let rows = store.device_list(&f).await.unwrap();
            rows.into_iter()
                .filter_map(|r| r.asset_tag)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            find("%").await,
            vec!["LT-1"],
            "{ts:?}: % must match literally"
        );
        assert_eq!(
            find("_").await,
            vec!["LT-2"],
            "{ts:?}: _ must match literally"
        );
        assert_eq!(find("a_b").await, vec!["LT-2"], "{ts:?}");
        assert!(find("' OR 1=1--").await.is_empty(), "{ts:?}");
        assert!(find("\\").await.is_empty(), "{ts:?}");
        assert_eq!(find("o'brien").await, vec!["LT-3"], "{ts:?}");
        assert_eq!(find("ÜNÏ").await, vec!["LT-4"], "{ts:?}: Unicode case");
        assert_eq!(find("thinkpad").await, vec!["LT-5"], "{ts:?}");
        assert_eq!(
            find("s-3").await,
            vec!["LT-3"],
            "{ts:?}: serials are searched"
        );
        assert_eq!(find("book").await, vec!["LT-3", "LT-4"], "{ts:?}");
    }
}

#[tokio::test]
async fn filters_by_status_holder_department_and_model() {
    for ts in stores().await {
        let store = &ts.store;
        person(store, "a", "1", "Housing").await;
        person(store, "b", "2", "Revenues").await;
        for i in 0..4 {
            let model = if i % 2 == 0 { "T14" } else { "X1" };
            store
                .laptop_add(
                    "ict",
                    &laptop(&format!("LT-{i}"), &format!("S{i}"), model),
                    NOW,
                )
                .await
                .unwrap();
        }
        store
            .laptop_assign("ict", &tag("LT-0"), &user("a"), "", NOW)
            .await
            .unwrap();
        store
            .laptop_assign("ict", &tag("LT-1"), &user("b"), "", NOW)
            .await
            .unwrap();
        let tags = |f: LaptopFilter| async move {
            store
                .device_list(&f)
                .await
                .unwrap()
                .into_iter()
                .filter_map(|r| r.asset_tag)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            tags(LaptopFilter {
                status: Some(LaptopStatus::Allocated),
                ..Default::default()
            })
            .await,
            vec!["LT-0", "LT-1"]
        );
        assert_eq!(
            tags(LaptopFilter {
                holder: Some("b".into()),
                ..Default::default()
            })
            .await,
            vec!["LT-1"]
        );
        assert_eq!(
            tags(LaptopFilter {
                department: Some("Housing".into()),
                ..Default::default()
            })
            .await,
            vec!["LT-0"]
        );
        assert_eq!(
            tags(LaptopFilter {
                model: Some("X1".into()),
                ..Default::default()
            })
            .await,
            vec!["LT-1", "LT-3"]
        );
        assert_eq!(
            tags(LaptopFilter {
                model: Some("T14".into()),
                status: Some(LaptopStatus::InStock),
                ..Default::default()
            })
            .await,
            vec!["LT-2"],
            "{ts:?}"
        );
        // Personal devices appear alongside, by owner.
        store
            .enrolled_device_insert(
                "fp-personal",
                "personal",
                None,
                Some("b"),
                NOW + 1,
                "0.1.0",
                "macos",
                NOW,
            )
            .await
            .unwrap();
        let all = store
            .device_list(&LaptopFilter {
                holder: Some("b".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].kind, "personal");
        assert_eq!(all[1].status, "enrolled");
        let personal = store
            .device_list(&LaptopFilter {
                kind: Some("personal".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(personal.len(), 1, "{ts:?}");
    }
}

/// A row whose tag did not parse still has its serial checked against the
/// file and the store (the missing tag matches nothing).
#[tokio::test]
async fn laptop_import_checks_the_keys_a_bad_row_has() {
    for ts in stores().await {
        let store = &ts.store;
        store
            .laptop_add("ict", &laptop("LT-OLD", "S-OLD", "T14"), NOW)
            .await
            .unwrap();
        let rows = vec![
            LaptopImportRow {
                line: 2,
                asset_tag: None,
                serial: Some("S-OLD".into()),
                laptop: None,
                problems: vec!["bad asset tag \"LT 1\"".into()],
            },
            LaptopImportRow {
                line: 3,
                asset_tag: Some(AssetTag::parse("LT-OLD").unwrap()),
                serial: None,
                laptop: None,
                problems: vec!["serial is required".into()],
            },
            LaptopImportRow::parsed(4, &laptop("LT-NEW", "S-OLD", "T14")),
        ];
        match store.laptop_import_rows("ict", &rows, NOW).await {
            Err(ImportError::Rows(p)) => {
                let got: Vec<(u64, &str)> =
                    p.iter().map(|x| (x.line, x.problem.as_str())).collect();
                assert_eq!(
                    got,
                    vec![
                        (2, "bad asset tag \"LT 1\""),
                        (2, "serial S-OLD already exists"),
                        (3, "serial is required"),
                        (3, "asset tag LT-OLD already exists"),
                        (4, "serial S-OLD is also on line 2"),
                    ],
                    "{ts:?}"
                );
            }
            other => panic!("{ts:?}: {other:?}"),
        }
        assert_eq!(
            store
                .device_list(&LaptopFilter::default())
                .await
                .unwrap()
                .len(),
            1,
            "{ts:?}"
        );
    }
}

#[tokio::test]
async fn laptop_import_is_all_or_nothing_with_line_numbers() {
    for ts in stores().await {
        let store = &ts.store;
        store
            .laptop_add("ict", &laptop("LT-OLD", "S-OLD", "T14"), NOW)
            .await
            .unwrap();
        let rows = vec![
            (2, laptop("LT-A", "S-A", "T14")),
            (3, laptop("LT-A", "S-B", "T14")),
            (4, laptop("LT-OLD", "S-C", "T14")),
            (5, laptop("LT-D", "S-OLD", "T14")),
        ];
        match store.laptop_import("ict", &rows, NOW).await {
            Err(ImportError::Rows(p)) => {
                let lines: Vec<u64> = p.iter().map(|x| x.line).collect();
                assert_eq!(lines, vec![3, 4, 5], "{ts:?}: {p:?}");
                assert!(p[0].problem.contains("also on line 2"));
            }
            other => panic!("{ts:?}: {other:?}"),
        }
        assert_eq!(
            store
                .device_list(&LaptopFilter::default())
                .await
                .unwrap()
                .len(),
            1,
            "{ts:?}"
        );
        let good = vec![
            (2, laptop("LT-A", "S-A", "T14")),
            (3, laptop("LT-B", "S-B", "X1")),
        ];
        assert_eq!(store.laptop_import("ict", &good, NOW).await.unwrap(), 2);
        assert_eq!(
            store
                .device_list(&LaptopFilter::default())
                .await
                .unwrap()
                .len(),
            3
        );
    }
}

/// The console's pages of the list: `LIMIT`/`OFFSET` in the store, the
/// same rows in the same order as the whole list, with the total; a
/// search narrows the total too.
#[tokio::test]
async fn a_page_of_the_list_is_the_lists_own_rows() {
    for ts in stores().await {
        let store = &ts.store;
        for i in (1..=7).rev() {
            store
                .laptop_add(
                    "ict",
                    &laptop(&format!("LT-{i}"), &format!("S{i}"), "T14"),
                    NOW,
                )
                .await
                .unwrap();
        }
        let all = LaptopFilter::default();
        let tags = |rows: Vec<lanyard_broker::store::laptops::DeviceRow>| {
            rows.into_iter()
                .filter_map(|r| r.asset_tag)
                .collect::<Vec<_>>()
        };
        let (first, total) = store.device_page(&all, 0, 3).await.unwrap();
        assert_eq!(total, 7, "{ts:?}");
        assert_eq!(tags(first), vec!["LT-1", "LT-2", "LT-3"], "{ts:?}");
        let (last, _) = store.device_page(&all, 6, 3).await.unwrap();
        assert_eq!(tags(last), vec!["LT-7"], "{ts:?}");
        let (past, total) = store.device_page(&all, 9, 3).await.unwrap();
        assert!(past.is_empty() && total == 7, "{ts:?}");
        let one = LaptopFilter {
            search: Some("s5".into()),
            ..LaptopFilter::default()
        };
        let (found, total) = store.device_page(&one, 0, 3).await.unwrap();
        assert_eq!((tags(found), total), (vec!["LT-5".to_owned()], 1), "{ts:?}");
        assert_eq!(
            tags(store.device_list(&all).await.unwrap()).len(),
            7,
            "{ts:?}"
        );
    }
}
