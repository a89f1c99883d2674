//! SSO in the store, on SQLite and (when configured) PostgreSQL: provider
//! groups mapped to Lanyard groups, a person admitted (made, refused,
//! their mapped groups set from the claim), and an SSO sign-in's provider
//! state kept, re-checked and ended.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use lanyard_broker::model::GroupName;
use lanyard_broker::store::oidc::Admission;
use lanyard_broker::store::{Store, StoreError};
use lanyard_broker::testkit::stores;

const NOW: i64 = 1_800_000_000_000;

fn groups(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn setup(store: &Store) {
    let g = |s: &str| GroupName::parse(s).unwrap();
    store
        .group_add_mapped(
            "ict",
            &g("finance"),
            "",
            &groups(&["grp-fin", "0f1e-id"]),
            NOW,
        )
        .await
        .unwrap();
    store
        .group_add_mapped("ict", &g("hr"), "", &groups(&["grp-hr"]), NOW)
        .await
        .unwrap();
    // Not mapped: SSO never changes it.
    store.group_add("ict", &g("manual"), "", NOW).await.unwrap();
}

#[tokio::test]
async fn a_person_is_admitted_by_mapped_groups_only() {
    for ts in stores().await {
        let store = &ts.store;
        setup(store).await;
        let listed = store.group_list().await.unwrap();
        let fin = listed.iter().find(|g| g.name == "finance").unwrap();
        assert_eq!(fin.idp_groups, groups(&["0f1e-id", "grp-fin"]), "{ts:?}");

        // Not a person yet, provision off: refused, nothing made.
        let a = store
            .sso_admit("f.jones", &groups(&["grp-fin"]), false, NOW)
            .await
            .unwrap();
        assert_eq!(a, Admission::Unknown, "{ts:?}");
        assert!(matches!(
            store.staff_get("f.jones").await,
            Err(StoreError::NotFound(_))
        ));
        // In no mapped group: refused even with provision.
        let a = store
            .sso_admit("f.jones", &groups(&["grp-x"]), true, NOW)
            .await
            .unwrap();
        assert_eq!(a, Admission::NoMappedGroup, "{ts:?}");
        assert!(matches!(
            store.staff_get("f.jones").await,
            Err(StoreError::NotFound(_))
        ));
        // Made at priority 3, in finance (mapped by object id) and hr.
        let a = store
            .sso_admit(
                "f.jones",
                &groups(&["0f1e-id", "grp-hr", "grp-x"]),
                true,
                NOW,
            )
            .await
            .unwrap();
        assert_eq!(
            a,
            Admission::Admitted {
                provisioned: true,
                changed: true
            },
            "{ts:?}"
        );
        let p = store.staff_get("f.jones").await.unwrap();
        assert_eq!(p.priority, 3);
        assert_eq!(p.groups, groups(&["finance", "hr"]), "{ts:?}");

        // A group added by hand and not mapped stays; a mapped one the
        // provider no longer sends goes.
        sqlx::query("INSERT INTO staff_groups (username, group_name) VALUES ('f.jones', 'manual')")
            .execute(store.pool())
            .await
            .unwrap();
        let a = store
            .sso_admit("f.jones", &groups(&["grp-fin"]), true, NOW + 1)
            .await
            .unwrap();
        assert_eq!(
            a,
            Admission::Admitted {
                provisioned: false,
                changed: true
            },
            "{ts:?}"
        );
        let p = store.staff_get("f.jones").await.unwrap();
        assert_eq!(p.groups, groups(&["finance", "manual"]), "{ts:?}");
        // The same again changes nothing.
        let a = store
            .sso_admit("f.jones", &groups(&["grp-fin"]), true, NOW + 2)
            .await
            .unwrap();
        assert_eq!(
            a,
            Admission::Admitted {
                provisioned: false,
                changed: false
            },
            "{ts:?}"
        );

        // Disabled in Lanyard: refused.
        store
            .staff_set_active("ict", "f.jones", false, NOW + 3)
            .await
            .unwrap();
        let a = store
            .sso_admit("f.jones", &groups(&["grp-fin"]), true, NOW + 4)
            .await
            .unwrap();
        assert_eq!(a, Admission::Disabled, "{ts:?}");

        // A bad --idp-group value is refused and makes nothing.
        let bad = store
            .group_add_mapped(
                "ict",
                &GroupName::parse("bad").unwrap(),
                "",
                &groups(&["a\nb"]),
                NOW,
            )
            .await;
        assert!(matches!(bad, Err(StoreError::Invalid(_))), "{ts:?}");
        assert!(store
            .group_list()
            .await
            .unwrap()
            .iter()
            .all(|g| g.name != "bad"));

        // Removing a group removes its mappings.
        sqlx::query("DELETE FROM staff_groups WHERE group_name = 'hr'")
            .execute(store.pool())
            .await
            .unwrap();
        store
            .group_remove("ict", &GroupName::parse("hr").unwrap(), NOW + 5)
            .await
            .unwrap();
        let left = store.idp_group_mappings().await.unwrap();
        assert!(left.iter().all(|(g, _)| g != "hr"), "{ts:?}: {left:?}");
    }
}

#[tokio::test]
async fn an_sso_sign_in_keeps_the_providers_state_and_can_be_ended() {
    for ts in stores().await {
        let store = &ts.store;
        setup(store).await;
        store
            .sso_admit("f.jones", &groups(&["grp-fin"]), true, NOW)
            .await
            .unwrap();
        let family = store
            .refresh_issue("f.jones", "fp-1", "hash-1", 3_600_000, NOW)
            .await
            .unwrap();
        store
            .oidc_sign_in_record(&family, "f.jones", "sub-1", Some("sealed-1"), NOW)
            .await
            .unwrap();
        let row = store.oidc_sign_in(&family).await.unwrap().unwrap();
        assert_eq!(
            (row.subject.as_str(), row.checked_at),
            ("sub-1", NOW),
            "{ts:?}"
        );
        assert_eq!(row.refresh_sealed.as_deref(), Some("sealed-1"));
        // A re-check without a new refresh token keeps the old one.
        store
            .oidc_sign_in_checked(&family, None, NOW + 10)
            .await
            .unwrap();
        let row = store.oidc_sign_in(&family).await.unwrap().unwrap();
        assert_eq!(
            (row.refresh_sealed.as_deref(), row.checked_at),
            (Some("sealed-1"), NOW + 10)
        );
        store
            .oidc_sign_in_checked(&family, Some("sealed-2"), NOW + 20)
            .await
            .unwrap();
        let row = store.oidc_sign_in(&family).await.unwrap().unwrap();
        assert_eq!(row.refresh_sealed.as_deref(), Some("sealed-2"), "{ts:?}");
        assert!(store.oidc_sign_in("other").await.unwrap().is_none());

        assert!(!store.sign_in_ended(&family).await.unwrap());
        store
            .oidc_sign_in_end(&family, "f.jones", "LT-9", "sso: gone", NOW + 30)
            .await
            .unwrap();
        assert!(store.sign_in_ended(&family).await.unwrap(), "{ts:?}");
        assert!(store.oidc_sign_in(&family).await.unwrap().is_none());
        let ended = store.sign_ins_ended_since(NOW + 29).await.unwrap();
        assert!(
            ended.contains(&family),
            "{ts:?}: the live session would not close"
        );
    }
}
