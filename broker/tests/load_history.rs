//! The load history on SQLite and (when configured) PostgreSQL: samples
//! recorded, today's peak per node, old samples pruned.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use lanyard_broker::store::load::LoadSample;
use lanyard_broker::testkit::stores;

const NOW: i64 = 1_800_000_000_000;

fn sample(node: &str, at_ms: i64, agents: i64) -> LoadSample {
    LoadSample {
        node: node.into(),
        at_ms,
        interval_ms: 10_000,
        agents,
        streams: agents * 2,
        capacity: 100,
        handshakes: 5,
        signins: 1,
        bytes_up: 1_000,
        bytes_down: 2_000,
        denials: r#"{"at_capacity":1}"#.into(),
        apps: r#"{"hr":[1000,2000]}"#.into(),
    }
}

#[tokio::test]
async fn samples_are_kept_peaks_found_and_old_ones_pruned() {
    for t in stores().await {
        let store = &t.store;
        for (i, agents) in [3, 9, 9, 4].into_iter().enumerate() {
            store
                .load_record(&sample("n1", NOW + i as i64 * 10_000, agents))
                .await
                .unwrap();
        }
        store.load_record(&sample("n2", NOW, 50)).await.unwrap();
        store
            .load_record(&sample("n1", NOW - 40 * 86_400_000, 99))
            .await
            .unwrap();

        let peak = store.load_peak("n1", NOW).await.unwrap().unwrap();
        assert_eq!(
            (peak.agents, peak.at_ms),
            (9, NOW + 10_000),
            "{}: first of the ties",
            t.label
        );
        assert_eq!(peak, sample("n1", NOW + 10_000, 9));
        assert_eq!(store.load_peak("n3", NOW).await.unwrap(), None);

        let pruned = store.load_prune(NOW - 30 * 86_400_000).await.unwrap();
        assert_eq!(pruned, 1, "{}", t.label);
        let history = store.load_history("n1", 0).await.unwrap();
        assert_eq!(
            history.iter().map(|s| s.agents).collect::<Vec<_>>(),
            [3, 9, 9, 4],
            "{}",
            t.label
        );
        // One sample per node and time.
        assert!(store.load_record(&sample("n1", NOW, 1)).await.is_err());
    }
}
