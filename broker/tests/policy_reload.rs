//! The rules in memory follow the store: reloads pick up people, groups,
//! apps and revocations; live sessions are woken only when something
//! changed; on SQLite and (when configured) PostgreSQL.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use lanyard_broker::model::{AppName, DeviceKindRule, GroupName, Priority, Target, Username};
use lanyard_broker::policy::snapshot::PolicyCache;
use lanyard_broker::policy::{decide_stream, Deny, DeviceKind, Subject};
use lanyard_broker::store::apps::NewApp;
use lanyard_broker::store::staff::NewStaff;
use lanyard_broker::testkit::stores;

const NOW: i64 = 1_800_000_000_000;

#[tokio::test]
async fn reloads_follow_the_store_and_wake_sessions_only_on_change() {
    for t in stores().await {
        let store = &t.store;
        store
            .group_add("admin", &GroupName::parse("hr").unwrap(), "", NOW)
            .await
            .unwrap();
        store
            .staff_add(
                "admin",
                &NewStaff {
                    username: Username::parse("a.patel").unwrap(),
                    name: "Asha".into(),
                    email: String::new(),
                    department: String::new(),
                    priority: Priority::parse("1").unwrap(),
                    groups: vec![GroupName::parse("hr").unwrap()],
                    role: lanyard_broker::model::Role::Staff,
                    password_hash: None,
                },
                NOW,
            )
            .await
            .unwrap();
        store
            .app_add(
                "admin",
                &NewApp {
                    name: AppName::parse("hr-system").unwrap(),
                    target: Target::parse("hr.internal:443").unwrap(),
                    groups: vec![GroupName::parse("hr").unwrap()],
                    device_kind: DeviceKindRule::Managed,
                    hosts: Vec::new(),
                    protocol: lanyard_proto::AppProtocol::Tcp,
                    flow_idle_secs: 300,
                },
                NOW,
            )
            .await
            .unwrap();

        let cache = PolicyCache::default();
        let mut generation = cache.subscribe();
        cache.reload(store, NOW).await.unwrap();
        assert!(
            generation.has_changed().unwrap(),
            "{}: first load wakes",
            t.label
        );
        generation.mark_unchanged();

        let who = Subject {
            username: "a.patel",
            device_id: "dev-1",
            device_kind: DeviceKind::Managed,
            owner: None,
            asset_tag: None,
            cert_expires_at: NOW + 86_400_000,
            token_expires_at: NOW + 600_000,
            sign_in: None,
        };
        let policy = cache.current();
        assert_eq!(policy.staff["a.patel"].priority, 1);
        assert_eq!(
            decide_stream(&policy, &who, "hr-system", NOW)
                .unwrap()
                .target,
            "hr.internal:443"
        );

        cache.reload(store, NOW + 1).await.unwrap();
        assert!(
            !generation.has_changed().unwrap(),
            "{}: an unchanged reload does not wake sessions",
            t.label
        );
        assert_eq!(cache.current().loaded_at, NOW + 1, "but it is fresh");

        store
            .staff_set_active("admin", "a.patel", false, NOW + 2)
            .await
            .unwrap();
        cache.reload(store, NOW + 2).await.unwrap();
        assert!(generation.has_changed().unwrap(), "{}", t.label);
        assert_eq!(
            decide_stream(&cache.current(), &who, "hr-system", NOW + 2).unwrap_err(),
            Deny::PersonDisabled
        );

        store
            .app_remove("admin", "hr-system", NOW + 3)
            .await
            .unwrap();
        store
            .staff_set_active("admin", "a.patel", true, NOW + 3)
            .await
            .unwrap();
        cache.reload(store, NOW + 3).await.unwrap();
        assert_eq!(
            decide_stream(&cache.current(), &who, "hr-system", NOW + 3).unwrap_err(),
            Deny::UnknownApp("hr-system".into())
        );
    }
}
