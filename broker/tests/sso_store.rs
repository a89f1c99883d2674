//! SSO in the store, on SQLite and (when configured) PostgreSQL: provider
//! groups mapped to Lanyard groups, a person admitted (made, refused,
//! their mapped groups set from the claim), and an SSO sign-in's provider
//! state kept, re-checked and ended.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use lanyard_broker::model::{GroupName, Role};
use lanyard_broker::store::groups::GroupMappingChange;
use lanyard_broker::store::oidc::{Admission, IdpRole};
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

/// The audit rows for `action` about `target`: their details.
async fn audited(store: &Store, action: &str, target: &str) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT detail FROM audit_log WHERE action = $1 AND target = $2 ORDER BY seq",
    )
    .bind(action)
    .bind(target)
    .fetch_all(store.pool())
    .await
    .unwrap();
    rows.into_iter().map(|(d,)| d).collect()
}

/// A mapped group may grant a role: a person the provider puts in it gets
/// the highest role granted (is_admin kept equal to role = admin), and
/// loses it when the provider no longer grants it; a role set by hand is
/// never lowered. Each change is audited.
#[tokio::test]
async fn a_role_comes_from_a_mapped_group_and_goes_with_it() {
    for ts in stores().await {
        let store = &ts.store;
        setup(store).await;
        let g = |s: &str| GroupName::parse(s).unwrap();
        store
            .group_add_granting(
                "ict",
                &g("admins"),
                "",
                &groups(&["grp-admins"]),
                Some(Role::Admin),
                NOW,
            )
            .await
            .unwrap();
        store
            .group_add_granting(
                "ict",
                &g("helpdesk"),
                "",
                &groups(&["grp-ict"]),
                Some(Role::Ict),
                NOW,
            )
            .await
            .unwrap();
        let listed = store.group_list().await.unwrap();
        let admins = listed.iter().find(|g| g.name == "admins").unwrap();
        assert_eq!(admins.grants_role, Some(Role::Admin), "{ts:?}");
        // Granting staff, or a role with no provider group, is refused.
        for (list, role) in [(groups(&["x"]), Role::Staff), (vec![], Role::Viewer)] {
            let bad = store
                .group_add_granting("ict", &g("bad"), "", &list, Some(role), NOW)
                .await;
            assert!(
                matches!(bad, Err(StoreError::Invalid(_))),
                "{ts:?}: {bad:?}"
            );
        }

        // Made at first sign-in in both: the highest role, from the provider.
        store
            .sso_admit("f.jones", &groups(&["grp-admins", "grp-ict"]), true, NOW)
            .await
            .unwrap();
        let p = store.staff_get("f.jones").await.unwrap();
        assert_eq!((p.role, p.admin), (Role::Admin, true), "{ts:?}");
        assert_eq!(
            store.staff_role_source("f.jones").await.unwrap(),
            Some((
                Role::Admin,
                Some(IdpRole {
                    gave: Role::Admin,
                    before: Role::Staff
                })
            ))
        );
        let rows = audited(store, "staff.role_from_idp", "f.jones").await;
        assert_eq!(rows.len(), 1, "{ts:?}: {rows:?}");
        assert!(
            rows[0].contains("admin") && rows[0].contains("staff"),
            "{rows:?}"
        );
        // Out of the admins' group at the provider: ict, then staff.
        let a = store
            .sso_admit("f.jones", &groups(&["grp-ict"]), true, NOW + 1)
            .await
            .unwrap();
        assert!(matches!(a, Admission::Admitted { changed: true, .. }));
        let p = store.staff_get("f.jones").await.unwrap();
        assert_eq!((p.role, p.admin), (Role::Ict, false), "{ts:?}");
        store
            .sso_admit("f.jones", &groups(&["grp-fin"]), true, NOW + 2)
            .await
            .unwrap();
        let p = store.staff_get("f.jones").await.unwrap();
        assert_eq!((p.role, p.admin), (Role::Staff, false), "{ts:?}");
        assert_eq!(
            store.staff_role_source("f.jones").await.unwrap(),
            Some((Role::Staff, None))
        );
        assert_eq!(
            audited(store, "staff.role_from_idp", "f.jones").await.len(),
            3
        );

        // An admin from before roles (is_admin, set by hand) in the ict
        // group: stays admin.
        store
            .sso_admit("a.admin", &groups(&["grp-fin"]), true, NOW)
            .await
            .unwrap();
        sqlx::query("UPDATE staff SET role = 'admin', is_admin = 1 WHERE username = 'a.admin'")
            .execute(store.pool())
            .await
            .unwrap();
        store
            .sso_admit("a.admin", &groups(&["grp-ict"]), true, NOW + 1)
            .await
            .unwrap();
        let p = store.staff_get("a.admin").await.unwrap();
        assert_eq!((p.role, p.admin), (Role::Admin, true), "{ts:?}");
        // A viewer set by hand, raised to ict by the provider, drops back
        // to viewer, not below.
        sqlx::query("UPDATE staff SET role = 'viewer' WHERE username = 'f.jones'")
            .execute(store.pool())
            .await
            .unwrap();
        store
            .sso_admit("f.jones", &groups(&["grp-ict"]), true, NOW + 3)
            .await
            .unwrap();
        assert_eq!(store.staff_get("f.jones").await.unwrap().role, Role::Ict);
        store
            .sso_admit("f.jones", &groups(&["grp-fin"]), true, NOW + 4)
            .await
            .unwrap();
        assert_eq!(
            store.staff_role_source("f.jones").await.unwrap(),
            Some((Role::Viewer, None)),
            "{ts:?}"
        );
        // Made admin by hand over a role the provider gave (as `lanyard
        // staff set --role` does): theirs now, kept when the provider
        // grants less.
        store
            .sso_admit("f.jones", &groups(&["grp-ict"]), true, NOW + 5)
            .await
            .unwrap();
        sqlx::query("UPDATE staff SET role = 'admin', is_admin = 1 WHERE username = 'f.jones'")
            .execute(store.pool())
            .await
            .unwrap();
        store
            .sso_admit("f.jones", &groups(&["grp-fin"]), true, NOW + 6)
            .await
            .unwrap();
        let p = store.staff_get("f.jones").await.unwrap();
        assert_eq!((p.role, p.admin), (Role::Admin, true), "{ts:?}");
        assert_eq!(
            store.staff_role_source("f.jones").await.unwrap(),
            Some((Role::Admin, None)),
            "{ts:?}"
        );
    }
}

/// `lanyard groups set`: the provider groups are replaced (or cleared),
/// the role granted set or cleared; audited; people follow at their next
/// sign-in.
#[tokio::test]
async fn a_groups_mappings_are_changed_and_people_follow_at_sign_in() {
    for ts in stores().await {
        let store = &ts.store;
        setup(store).await;
        let hr = GroupName::parse("hr").unwrap();
        store
            .sso_admit("h.person", &groups(&["grp-hr"]), true, NOW)
            .await
            .unwrap();
        assert_eq!(
            store.staff_get("h.person").await.unwrap().groups,
            groups(&["hr"])
        );

        // hr now comes from another provider group, and grants viewer.
        store
            .group_set_mappings(
                "ict",
                &hr,
                &GroupMappingChange {
                    idp_groups: Some(groups(&["HR-Staff", "hr-managers", "HR-Staff"])),
                    grants_role: Some(Some(Role::Viewer)),
                },
                NOW + 1,
            )
            .await
            .unwrap();
        let listed = store.group_list().await.unwrap();
        let g = listed.iter().find(|g| g.name == "hr").unwrap();
        assert_eq!(g.idp_groups, groups(&["HR-Staff", "hr-managers"]), "{ts:?}");
        assert_eq!(g.grants_role, Some(Role::Viewer));
        let rows = audited(store, "group.set", "hr").await;
        assert_eq!(rows.len(), 1, "{ts:?}");
        assert!(
            rows[0].contains("grp-hr") && rows[0].contains("HR-Staff"),
            "{rows:?}"
        );

        // At the next sign-in the old provider group no longer counts.
        let a = store
            .sso_admit("h.person", &groups(&["grp-hr", "grp-fin"]), true, NOW + 2)
            .await
            .unwrap();
        assert!(matches!(a, Admission::Admitted { .. }));
        let p = store.staff_get("h.person").await.unwrap();
        assert_eq!(p.groups, groups(&["finance"]), "{ts:?}");
        store
            .sso_admit("h.person", &groups(&["hr-managers"]), true, NOW + 3)
            .await
            .unwrap();
        let p = store.staff_get("h.person").await.unwrap();
        assert_eq!(
            (p.groups.clone(), p.role),
            (groups(&["hr"]), Role::Viewer),
            "{ts:?}"
        );

        // Only the role changes: the list stays; then no role.
        store
            .group_set_mappings(
                "ict",
                &hr,
                &GroupMappingChange {
                    idp_groups: None,
                    grants_role: Some(None),
                },
                NOW + 4,
            )
            .await
            .unwrap();
        let listed = store.group_list().await.unwrap();
        let g = listed.iter().find(|g| g.name == "hr").unwrap();
        assert_eq!((g.idp_groups.len(), g.grants_role), (2, None), "{ts:?}");
        store
            .sso_admit("h.person", &groups(&["hr-managers"]), true, NOW + 5)
            .await
            .unwrap();
        assert_eq!(store.staff_get("h.person").await.unwrap().role, Role::Staff);

        // A role with no provider group left is refused, nothing changed;
        // no provider group at all is fine.
        let bad = store
            .group_set_mappings(
                "ict",
                &hr,
                &GroupMappingChange {
                    idp_groups: Some(vec![]),
                    grants_role: Some(Some(Role::Ict)),
                },
                NOW + 6,
            )
            .await;
        assert!(
            matches!(bad, Err(StoreError::Invalid(_))),
            "{ts:?}: {bad:?}"
        );
        store
            .group_set_mappings(
                "ict",
                &hr,
                &GroupMappingChange {
                    idp_groups: Some(vec![]),
                    grants_role: None,
                },
                NOW + 7,
            )
            .await
            .unwrap();
        let listed = store.group_list().await.unwrap();
        assert!(listed
            .iter()
            .find(|g| g.name == "hr")
            .unwrap()
            .idp_groups
            .is_empty());
        // An unknown group, a bad value: refused.
        let none = store
            .group_set_mappings(
                "ict",
                &GroupName::parse("nope").unwrap(),
                &GroupMappingChange::default(),
                NOW,
            )
            .await;
        assert!(matches!(none, Err(StoreError::NotFound(_))), "{ts:?}");
        let bad = store
            .group_set_mappings(
                "ict",
                &hr,
                &GroupMappingChange {
                    idp_groups: Some(groups(&["a\tb"])),
                    grants_role: None,
                },
                NOW,
            )
            .await;
        assert!(matches!(bad, Err(StoreError::Invalid(_))), "{ts:?}");
    }
}
