//! Helpers for the test suites: stores on every backend the machine has.
//!
//! SQLite always; PostgreSQL when `LANYARD_TEST_DATABASE_URL` is set, each
//! test in a schema of its own that is dropped afterwards. When the variable
//! is not set, a line says that the PostgreSQL half was skipped.

use crate::store::Store;

pub const PG_ENV: &str = "LANYARD_TEST_DATABASE_URL";

/// A store for one test, cleaned up when dropped.
pub struct TestStore {
    pub store: Store,
    pub label: &'static str,
    cleanup: Cleanup,
}

enum Cleanup {
    File(std::path::PathBuf),
    Schema { base_url: String, schema: String },
}

impl std::fmt::Debug for TestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label)
    }
}

impl TestStore {
    pub async fn sqlite() -> Self {
        let path =
            std::env::temp_dir().join(format!("lanyard-test-{}.db", crate::secrets::new_id()));
        let store = Store::connect(&Store::sqlite_url(&path))
            .await
            .expect("sqlite store");
        store.migrate().await.expect("migrations apply on SQLite");
        Self {
            store,
            label: "sqlite",
            cleanup: Cleanup::File(path),
        }
    }

    /// A fresh schema on the PostgreSQL named by the environment, if any.
    pub async fn postgres() -> Option<Self> {
        let base_url = std::env::var(PG_ENV).ok().filter(|u| !u.is_empty())?;
        let schema = format!("lt_{}", crate::secrets::new_id());
        let admin = Store::connect(&base_url)
            .await
            .expect("connect to LANYARD_TEST_DATABASE_URL");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(admin.pool())
            .await
            .expect("create test schema");
        admin.close().await;
        let url = schema_url(&base_url, &schema);
        let store = Store::connect(&url).await.expect("connect to test schema");
        store
            .migrate()
            .await
            .expect("migrations apply on PostgreSQL");
        Some(Self {
            store,
            label: "postgres",
            cleanup: Cleanup::Schema { base_url, schema },
        })
    }

    /// The database URL this store was opened with (for a broker in a test).
    pub fn url(&self) -> String {
        match &self.cleanup {
            Cleanup::File(p) => Store::sqlite_url(p),
            Cleanup::Schema { base_url, schema } => schema_url(base_url, schema),
        }
    }
}

/// Says on the terminal that part of a test did not run. Written to stderr
/// directly: the test harness would swallow `eprintln!` from a passing test.
pub fn say_skipped(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {what}");
}

/// The base URL with the schema as search path, and as application name so
/// that cleanup can find this test's connections.
fn schema_url(base_url: &str, schema: &str) -> String {
    let sep = if base_url.contains('?') { '&' } else { '?' };
    format!("{base_url}{sep}options=-c%20search_path%3D{schema}&application_name={schema}")
}

/// SQLite, plus PostgreSQL when configured (saying so when it is not).
pub async fn stores() -> Vec<TestStore> {
    let mut all = vec![TestStore::sqlite().await];
    match TestStore::postgres().await {
        Some(pg) => all.push(pg),
        None => say_skipped(&format!(
            "the PostgreSQL half of this test ({PG_ENV} is not set)"
        )),
    }
    all
}

impl Drop for TestStore {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Schema { base_url, schema } => {
                let (base_url, schema) = (base_url.clone(), schema.clone());
                // Drop runs outside async; a short-lived runtime on its own
                // thread drops the schema.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                    rt.block_on(async {
                        let admin = Store::connect(&base_url).await.ok()?;
                        let mut conn = admin.pool().acquire().await.ok()?;
                        // The test's own pool may still hold a transaction whose
                        // rollback has not been flushed: end those sessions first.
                        let _ = sqlx::query(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                        )
                        .bind(&schema)
                        .execute(&mut *conn)
                        .await;
                        let _ = sqlx::query("SET lock_timeout = '10s'").execute(&mut *conn).await;
                        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .execute(&mut *conn)
                            .await;
                        drop(conn);
                        admin.close().await;
                        Some(())
                    })
                })
                .join();
            }
        }
    }
}

/// What someone who can write to the database would do after editing rows:
/// computes every row's link and hash again from the first, and moves the
/// head to the last row. Afterwards the chain agrees with itself.
pub async fn rechain(store: &Store) {
    use crate::store::audit::AuditRow;
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT seq, at_ms, actor, action, target, outcome, detail, prev_hash, hash
         FROM audit_log ORDER BY seq",
    )
    .fetch_all(store.pool())
    .await
    .expect("read the audit log");
    let mut prev = "0".repeat(64);
    let mut last = 0;
    for mut row in rows {
        row.prev_hash = prev.clone();
        row.hash = row.expected_hash();
        sqlx::query("UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE seq = $3")
            .bind(&row.prev_hash)
            .bind(&row.hash)
            .bind(row.seq)
            .execute(store.pool())
            .await
            .expect("rewrite a row");
        prev = row.hash;
        last = row.seq;
    }
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(last)
        .bind(&prev)
        .execute(store.pool())
        .await
        .expect("move the head");
}
