//! Signed checkpoints anchor the audit chain outside the database: an edit
//! whose chain was computed again, and a tail cut with the head moved back,
//! both pass the chain's own check and both are named against the
//! checkpoints.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use lanyard_broker::checkpoint::Checkpoints;
use lanyard_broker::datadir::DataDir;
use lanyard_broker::store::{AuditEntry, Store};
use lanyard_broker::testkit::{rechain, stores};

async fn rows(store: &Store, n: usize) {
    for i in 0..n {
        store
            .audit_only(
                1_000 + i as i64,
                AuditEntry::ok("a.admin", "staff.add", &format!("p.{i}")),
            )
            .await
            .unwrap();
    }
}

/// A checkpoint of the head as it is now.
async fn sign_head(store: &Store, checkpoints: &Checkpoints, at: i64) {
    let (seq, hash) = store.audit_head().await.unwrap();
    assert!(checkpoints.record(seq, &hash, at).unwrap());
}

#[tokio::test]
async fn a_recomputed_edit_and_a_rewound_tail_are_named() {
    for ts in stores().await {
        let store = &ts.store;
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(&tmp.path().join("data")).unwrap();
        let checkpoints =
            Checkpoints::open(&dir, tmp.path().join("checkpoints.log"), "node-a").unwrap();
        rows(store, 5).await;
        sign_head(store, &checkpoints, 10_000).await;
        rows(store, 3).await;
        sign_head(store, &checkpoints, 20_000).await;
        let signed = checkpoints.read().unwrap();
        assert_eq!(signed.checkpoints.len(), 2, "{}", ts.label);

        let report = store
            .audit_verify_against(&signed.checkpoints)
            .await
            .unwrap();
        assert!(report.ok, "{}: {report:?}", ts.label);
        assert_eq!(report.checkpoints_checked, 2);

        // Row 2 edited, every hash after it computed again.
        sqlx::query("UPDATE audit_log SET target = 'someone-else' WHERE seq = 2")
            .execute(store.pool())
            .await
            .unwrap();
        rechain(store).await;
        let alone = store.audit_verify().await.unwrap();
        assert!(
            alone.ok,
            "{}: the chain alone cannot tell: {alone:?}",
            ts.label
        );
        let report = store
            .audit_verify_against(&signed.checkpoints)
            .await
            .unwrap();
        assert!(!report.ok, "{}: a re-computed edit passed", ts.label);
        assert_eq!(report.bad_seq, Some(5), "{}: {report:?}", ts.label);
        let problem = report.problem.unwrap();
        assert!(problem.contains("re-computed"), "{problem}");

        // Put the row back, then cut the last two rows and move the head.
        sqlx::query("UPDATE audit_log SET target = 'p.1' WHERE seq = 2")
            .execute(store.pool())
            .await
            .unwrap();
        rechain(store).await;
        let report = store
            .audit_verify_against(&signed.checkpoints)
            .await
            .unwrap();
        assert!(report.ok, "{}: restored: {report:?}", ts.label);
        sqlx::query("DELETE FROM audit_log WHERE seq > 6")
            .execute(store.pool())
            .await
            .unwrap();
        rechain(store).await;
        assert!(store.audit_verify().await.unwrap().ok, "{}", ts.label);
        let report = store
            .audit_verify_against(&signed.checkpoints)
            .await
            .unwrap();
        assert!(!report.ok, "{}: a rewound tail passed", ts.label);
        let problem = report.problem.unwrap();
        assert!(
            problem.contains("rewound") && problem.contains("row 8") && problem.contains("row 6"),
            "{problem}"
        );
    }
}

/// The quick check run every checkpoint interval (and behind
/// `lanyard_audit_chain_ok`) names the same tampering from two reads.
#[tokio::test]
async fn the_quick_check_sees_a_recomputed_edit_a_cut_tail_and_a_rewind() {
    for ts in stores().await {
        let store = &ts.store;
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(&tmp.path().join("data")).unwrap();
        let checkpoints =
            Checkpoints::open(&dir, tmp.path().join("checkpoints.log"), "node-a").unwrap();
        assert_eq!(
            store.audit_quick_check(None).await.unwrap(),
            None,
            "{}",
            ts.label
        );
        rows(store, 5).await;
        sign_head(store, &checkpoints, 10_000).await;
        rows(store, 3).await;
        let quick = |signed: Option<(i64, String)>| async move {
            store
                .audit_quick_check(signed.as_ref().map(|(s, h)| (*s, h.as_str())))
                .await
                .unwrap()
        };
        let signed = checkpoints.last_signed();
        assert_eq!(signed.as_ref().map(|s| s.0), Some(5));
        assert_eq!(quick(signed.clone()).await, None, "{}", ts.label);

        // Row 2 edited, every hash after it computed again.
        sqlx::query("UPDATE audit_log SET target = 'someone-else' WHERE seq = 2")
            .execute(store.pool())
            .await
            .unwrap();
        rechain(store).await;
        let problem = quick(signed.clone())
            .await
            .expect("a re-computed edit passed");
        assert!(
            problem.contains("row 5") && problem.contains("re-computed"),
            "{problem}"
        );
        sqlx::query("UPDATE audit_log SET target = 'p.1' WHERE seq = 2")
            .execute(store.pool())
            .await
            .unwrap();
        rechain(store).await;
        assert_eq!(quick(signed.clone()).await, None, "{}", ts.label);

        // The last two rows cut, the head left alone.
        sign_head(store, &checkpoints, 20_000).await;
        let signed = checkpoints.last_signed();
        sqlx::query("DELETE FROM audit_log WHERE seq > 6")
            .execute(store.pool())
            .await
            .unwrap();
        let problem = quick(signed.clone()).await.expect("a cut tail passed");
        assert!(problem.contains("rows 7..=8 are missing"), "{problem}");
        // And with the head moved back too: rewound past the checkpoint.
        rechain(store).await;
        let problem = quick(signed.clone()).await.expect("a rewound log passed");
        assert!(
            problem.contains("rewound") && problem.contains("row 8") && problem.contains("row 6"),
            "{problem}"
        );
        // Reopened, the signer remembers what it signed last.
        let again = Checkpoints::open(&dir, tmp.path().join("checkpoints.log"), "node-a").unwrap();
        assert_eq!(again.last_signed(), signed);
    }
}
