//! Inventory benchmark: `cargo bench -p lanyard-broker --bench inventory`.
//!
//! On SQLite (a temporary file) and, when LANYARD_TEST_DATABASE_URL is set,
//! PostgreSQL (a schema of its own), it measures:
//! - importing 10,000 laptops (one all-or-nothing import),
//! - `requests fulfil` of 350 requests against 400 in-stock laptops,
//! - assigns per second, one client and eight at once (each its own transaction),
//! - list, search and filter over 10,000 laptops (median and p95 of 30 runs).
//!
//! It prints one table. Numbers are for comparing stores and changes on the
//! same machine in the same run, not absolute promises.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::{Duration, Instant};

use lanyard_broker::model::LaptopStatus;
use lanyard_broker::model::{AssetTag, Priority, Username};
use lanyard_broker::store::laptops::{LaptopFilter, NewLaptop};
use lanyard_broker::store::staff::NewStaff;
use lanyard_broker::store::Store;
use lanyard_broker::testkit::TestStore;

const LAPTOPS: usize = 10_000;
const NOW: i64 = 1_800_000_000_000;

struct Row {
    store: &'static str,
    import_s: f64,
    fulfil_ms: f64,
    fulfilled: usize,
    assign_1: f64,
    assign_8: f64,
    list: (f64, f64),
    search: (f64, f64),
    filter: (f64, f64),
}

fn laptop(i: usize, status: &str) -> NewLaptop {
    let model = [
        "ThinkPad T14",
        "Latitude 5440",
        "EliteBook 840",
        "Surface Laptop 5",
    ][i % 4];
    NewLaptop {
        asset_tag: AssetTag::parse(&format!("LT-{i:06}")).unwrap(),
        serial: format!("SN{i:08X}"),
        model: model.into(),
        status: LaptopStatus::parse(status).unwrap(),
        notes: String::new(),
        purchase_date: Some("2025-04-01".into()),
        warranty_end: None,
    }
}

fn staff(i: usize) -> NewStaff {
    NewStaff {
        username: Username::parse(&format!("u{i:05}")).unwrap(),
        name: format!("Person {i}"),
        email: String::new(),
        department: ["Revenues", "Housing", "Contact Centre", "Parks"][i % 4].into(),
        priority: Priority::parse(&(1 + i % 3).to_string()).unwrap(),
        groups: vec![],
        role: lanyard_broker::model::Role::Staff,
        password_hash: None,
    }
}

fn median_p95(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(v[v.len() / 2]),
        ms(v[(v.len() * 95 / 100).min(v.len() - 1)]),
    )
}

async fn timed_list(store: &Store, filter: &LaptopFilter, runs: usize) -> ((f64, f64), usize) {
    let mut times = Vec::with_capacity(runs);
    let mut n = 0;
    for _ in 0..runs {
        let t = Instant::now();
        n = store.device_list(filter).await.unwrap().len();
        times.push(t.elapsed());
    }
    (median_p95(times), n)
}

async fn bench(label: &'static str, store: Store) -> Row {
    eprintln!("[{label}] importing {LAPTOPS} laptops and 1,200 staff ...");
    let people: Vec<(u64, NewStaff)> = (0..1200).map(|i| (i as u64 + 2, staff(i))).collect();
    store.staff_import("bench", &people, NOW).await.unwrap();
    // 400 in stock for the queue, 500 for the assign runs, the rest in repair.
    let rows: Vec<(u64, NewLaptop)> = (0..LAPTOPS)
        .map(|i| {
            (
                i as u64 + 2,
                laptop(i, if i < 900 { "in-stock" } else { "in-repair" }),
            )
        })
        .collect();
    let t = Instant::now();
    store.laptop_import("bench", &rows, NOW).await.unwrap();
    let import_s = t.elapsed().as_secs_f64();

    eprintln!("[{label}] 350 requests, fulfil ...");
    for i in 0..350 {
        store
            .request_add(
                "bench",
                &Username::parse(&format!("u{i:05}")).unwrap(),
                "",
                NOW + i as i64,
            )
            .await
            .unwrap();
    }
    // Take 500 laptops out of stock first so exactly 400 remain for the queue.
    let assign_pool: Vec<usize> = (400..900).collect();
    for &i in &assign_pool {
        store
            .laptop_mark(
                "bench",
                &laptop(i, "").asset_tag,
                LaptopStatus::InRepair,
                "",
                NOW,
            )
            .await
            .unwrap();
    }
    let t = Instant::now();
    let report = store
        .requests_fulfil("bench", None, NOW + 1_000_000)
        .await
        .unwrap();
    let fulfil_ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(report.allocated.len(), 350);
    assert_eq!(report.in_stock, 50);

    eprintln!("[{label}] assigns ...");
    for &i in &assign_pool {
        store
            .laptop_mark(
                "bench",
                &laptop(i, "").asset_tag,
                LaptopStatus::InStock,
                "",
                NOW,
            )
            .await
            .unwrap();
    }
    let (one, eight) = assign_pool.split_at(200);
    let t = Instant::now();
    for (k, &i) in one.iter().enumerate() {
        let who = Username::parse(&format!("u{:05}", 400 + k)).unwrap();
        store
            .laptop_assign("bench", &laptop(i, "").asset_tag, &who, "", NOW)
            .await
            .unwrap();
    }
    let assign_1 = one.len() as f64 / t.elapsed().as_secs_f64();
    let store_arc = Arc::new(store.clone());
    let t = Instant::now();
    let mut tasks = Vec::new();
    for chunk in eight.chunks(eight.len().div_ceil(8)) {
        let store = store_arc.clone();
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            for i in chunk {
                let who = Username::parse(&format!("u{i:05}")).unwrap();
                store
                    .laptop_assign("bench", &laptop(i, "").asset_tag, &who, "", NOW)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let assign_8 = eight.len() as f64 / t.elapsed().as_secs_f64();

    eprintln!("[{label}] list, search, filter over {LAPTOPS} ...");
    let (list, n) = timed_list(&store, &LaptopFilter::default(), 30).await;
    assert_eq!(n, LAPTOPS);
    let (search, n) = timed_list(
        &store,
        &LaptopFilter {
            search: Some("sn000012a".into()),
            ..Default::default()
        },
        30,
    )
    .await;
    assert_eq!(n, 16, "serials SN000012A0..SN000012AF");
    let (filter, n) = timed_list(
        &store,
        &LaptopFilter {
            status: Some(LaptopStatus::Allocated),
            department: Some("Housing".into()),
            ..Default::default()
        },
        30,
    )
    .await;
    assert!(n > 0);
    Row {
        store: label,
        import_s,
        fulfil_ms,
        fulfilled: report.allocated.len(),
        assign_1,
        assign_8,
        list,
        search,
        filter,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut rows = Vec::new();
        let sqlite = TestStore::sqlite().await;
        rows.push(bench("sqlite", sqlite.store.clone()).await);
        match TestStore::postgres().await {
            Some(pg) => rows.push(bench("postgres", pg.store.clone()).await),
            None => eprintln!("postgres: skipped (LANYARD_TEST_DATABASE_URL is not set)"),
        }
        println!("\n## inventory benchmark ({LAPTOPS} laptops, 1,200 staff)\n");
        println!("| store | import 10k laptops | fulfil 350 of 400 | assigns/s, 1 client | assigns/s, 8 clients | list 10k p50 / p95 | search p50 / p95 | filter p50 / p95 |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for r in &rows {
            println!(
                "| {} | {:.2} s | {:.0} ms ({} allocated) | {:.0} | {:.0} | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.1} / {:.1} ms |",
                r.store, r.import_s, r.fulfil_ms, r.fulfilled, r.assign_1, r.assign_8, r.list.0, r.list.1, r.search.0, r.search.1, r.filter.0, r.filter.1
            );
        }
    });
}
