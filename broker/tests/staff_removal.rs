//! Removing a person and their personal devices for good, on SQLite and
//! (when configured) PostgreSQL: only a disabled person, never one with
//! admin rights or laptop history; each removal one audited change; a
//! refusal changes nothing.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use lanyard_broker::model::LaptopStatus;
use lanyard_broker::model::{AssetTag, GroupName, Priority, Username};
use lanyard_broker::store::audit::AuditFilter;
use lanyard_broker::store::enrol::EnrolFor;
use lanyard_broker::store::laptops::{LaptopFilter, NewLaptop};
use lanyard_broker::store::staff::NewStaff;
use lanyard_broker::store::{Store, StoreError};
use lanyard_broker::testkit::stores;

const NOW: i64 = 1_800_000_000_000;

fn user(s: &str) -> Username {
    Username::parse(s).unwrap()
}

async fn person(store: &Store, username: &str, group: &str, admin: bool) {
    let new = NewStaff {
        username: user(username),
        name: format!("Name of {username}"),
        email: String::new(),
        department: "Revenues".into(),
        priority: Priority::parse("3").unwrap(),
        groups: vec![GroupName::parse(group).unwrap()],
        role: if admin {
            lanyard_broker::model::Role::Admin
        } else {
            lanyard_broker::model::Role::Staff
        },
        password_hash: None,
    };
    store.staff_add("ict", &new, NOW).await.unwrap();
}

async fn personal_device(store: &Store, owner: &str, fingerprint: &str) {
    store
        .enrolled_device_insert(
            fingerprint,
            "personal",
            None,
            Some(owner),
            NOW + 86_400_000,
            "test",
            "linux",
            NOW,
        )
        .await
        .unwrap();
}

async fn personal_rows(store: &Store, owner: &str) -> usize {
    let filter = LaptopFilter {
        kind: Some("personal".into()),
        holder: Some(owner.into()),
        ..LaptopFilter::default()
    };
    store.device_list(&filter).await.unwrap().len()
}

async fn audit_rows(store: &Store, action: &str) -> Vec<(String, String, serde_json::Value)> {
    let filter = AuditFilter {
        action_prefix: Some(action.into()),
        limit: 100,
        ..AuditFilter::default()
    };
    store
        .audit_list(&filter)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == action)
        .map(|r| (r.actor, r.target, serde_json::from_str(&r.detail).unwrap()))
        .collect()
}

#[tokio::test]
async fn a_disabled_test_person_and_their_devices_are_removed_in_audited_steps() {
    for ts in stores().await {
        let store = &ts.store;
        let group = GroupName::parse("stress-abc").unwrap();
        store.group_add("ict", &group, "", NOW).await.unwrap();
        person(store, "stress.abc", "stress-abc", false).await;
        for fp in ["fp-1", "fp-2", "fp-3"] {
            personal_device(store, "stress.abc", fp).await;
        }
        store
            .enrol_code_create(
                "ict",
                &EnrolFor::Personal(user("stress.abc")),
                "unused-code",
                60_000,
                NOW,
            )
            .await
            .unwrap();
        store
            .refresh_issue("stress.abc", "fp-1", "refresh-hash", 60_000, NOW)
            .await
            .unwrap();

        // Active: both refused, nothing changes, nothing is audited.
        let audit_before = store.audit_count().await.unwrap();
        for refused in [
            store
                .personal_devices_remove("ict", &user("stress.abc"), NOW)
                .await
                .map(|_| ())
                .unwrap_err(),
            store
                .staff_remove("ict", &user("stress.abc"), NOW)
                .await
                .unwrap_err(),
        ] {
            assert!(
                matches!(refused, StoreError::Conflict(ref m) if m.contains("disable them first")),
                "{ts:?}: {refused}"
            );
        }
        assert_eq!(store.audit_count().await.unwrap(), audit_before, "{ts:?}");
        assert_eq!(personal_rows(store, "stress.abc").await, 3);

        store
            .staff_set_active("ict", "stress.abc", false, NOW)
            .await
            .unwrap();
        // Devices first: the person is refused while any are enrolled.
        let refused = store
            .staff_remove("ict", &user("stress.abc"), NOW)
            .await
            .unwrap_err();
        assert!(
            matches!(refused, StoreError::Conflict(ref m) if m.contains("3 enrolled device(s)")),
            "{ts:?}: {refused}"
        );

        let removed = store
            .personal_devices_remove("ict", &user("stress.abc"), NOW)
            .await
            .unwrap();
        assert_eq!(removed, ["fp-1", "fp-2", "fp-3"], "{ts:?}");
        assert_eq!(personal_rows(store, "stress.abc").await, 0);
        assert_eq!(store.device_get("fp-1").await.unwrap(), None);
        let rows = audit_rows(store, "staff.devices.remove").await;
        assert_eq!(rows.len(), 1, "{ts:?}: one audited change");
        assert_eq!(
            (rows[0].0.as_str(), rows[0].1.as_str()),
            ("ict", "stress.abc")
        );
        assert_eq!(rows[0].2["removed"], 3);
        assert_eq!(rows[0].2["devices"][2], "fp-3");

        store
            .staff_remove("ict", &user("stress.abc"), NOW)
            .await
            .unwrap();
        assert!(matches!(
            store.staff_get("stress.abc").await,
            Err(StoreError::NotFound(_))
        ));
        let rows = audit_rows(store, "staff.remove").await;
        assert_eq!(rows.len(), 1, "{ts:?}");
        assert_eq!(rows[0].1, "stress.abc");
        assert_eq!(rows[0].2["groups"][0], "stress-abc");
        assert_eq!(rows[0].2["enrolment_codes_removed"], 1);
        // The membership went with the person, so the group can go too.
        store.group_remove("ict", &group, NOW).await.unwrap();
        assert!(store.group_list().await.unwrap().is_empty());
        assert!(store.audit_verify().await.unwrap().ok, "{ts:?}");

        // Again: there is nobody left to remove.
        assert!(matches!(
            store.staff_remove("ict", &user("stress.abc"), NOW).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store
                .personal_devices_remove("ict", &user("stress.abc"), NOW)
                .await,
            Err(StoreError::NotFound(_))
        ));
    }
}

#[tokio::test]
async fn people_with_laptop_history_or_admin_rights_are_kept() {
    for ts in stores().await {
        let store = &ts.store;
        let group = GroupName::parse("hr").unwrap();
        store.group_add("ict", &group, "", NOW).await.unwrap();
        person(store, "j.smith", "hr", false).await;
        person(store, "a.admin", "hr", true).await;
        let tag = AssetTag::parse("LT-1").unwrap();
        let laptop = NewLaptop {
            asset_tag: tag.clone(),
            serial: "S1".into(),
            model: "X1".into(),
            status: LaptopStatus::InStock,
            notes: String::new(),
            purchase_date: None,
            warranty_end: None,
        };
        store.laptop_add("ict", &laptop, NOW).await.unwrap();
        store
            .laptop_assign("ict", &tag, &user("j.smith"), "", NOW)
            .await
            .unwrap();
        store
            .laptop_return("ict", &tag, LaptopStatus::InStock, "", NOW)
            .await
            .unwrap();
        for u in ["j.smith", "a.admin"] {
            store.staff_set_active("ict", u, false, NOW).await.unwrap();
        }

        let audit_before = store.audit_count().await.unwrap();
        let history = store
            .staff_remove("ict", &user("j.smith"), NOW)
            .await
            .unwrap_err();
        assert!(
            matches!(history, StoreError::Conflict(ref m) if m.contains("laptop history (1 allocation(s), 0 request(s))")),
            "{ts:?}: {history}"
        );
        let admin = store
            .staff_remove("ict", &user("a.admin"), NOW)
            .await
            .unwrap_err();
        assert!(
            matches!(admin, StoreError::Conflict(ref m) if m.contains("admin rights")),
            "{ts:?}: {admin}"
        );
        assert_eq!(store.audit_count().await.unwrap(), audit_before, "{ts:?}");
        assert_eq!(store.staff_list().await.unwrap().len(), 2);
        assert_eq!(
            store.laptop_history("LT-1").await.unwrap().len(),
            3,
            "{ts:?}: add, assign, return"
        );
    }
}
