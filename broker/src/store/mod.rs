//! The store: one set of SQL that runs on SQLite (the embedded default, in
//! WAL mode) and on PostgreSQL (several broker nodes), chosen by the URL.
//!
//! Every change that matters is made in an [`AuditedTx`]: the change and its
//! audit row commit together or not at all. The transaction's first
//! statement takes the audit chain's head row, which serialises audited
//! writes (the chain needs that) and, on SQLite, takes the write lock up
//! front so that a transaction never has to upgrade a read lock.
//!
//! A transaction that changes who may reach what (people, groups, apps,
//! revocations) says so with [`AuditedTx::access_changed`]; once it has
//! committed, the store's access generation moves on, and whoever holds
//! the rules in memory ([`Store::access_changes`]) reloads them.

#[macro_use]
mod from_row;

pub mod api_tokens;
pub mod apps;
pub mod audit;
pub mod devices;
pub mod enrol;
pub mod groups;
pub mod laptops;
pub mod leavers;
pub mod load;
mod migrations;
pub mod nodes;
pub mod oidc;
pub mod refresh;
pub mod requests;
pub mod staff;

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Transaction};
use tokio::sync::watch;

pub use audit::{AuditEntry, Outcome};

use crate::clock::Millis;

/// The migrations in `migrations/` (see `migrations.rs`), made once.
static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(migrations::migrator);

/// The PostgreSQL channel on which a change to access is announced.
pub const ACCESS_CHANNEL: &str = "lanyard_access";

/// How long a request an agent or admin waits on may wait for the store.
/// A link to the database can go silent (no error, only waiting): sqlx
/// bounds getting a connection (5 s), not a query on one it has, so the
/// request paths bound their store work with this and answer "unavailable".
pub const ANSWER_WITHIN: Duration = Duration::from_secs(8);

/// Runs `work` (store calls on a request path) for at most [`ANSWER_WITHIN`];
/// past that the store counts as unavailable.
pub async fn within<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(ANSWER_WITHIN, work)
        .await
        .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolTimedOut))?
}

/// Which database is behind the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change collides with what is already there.
    #[error("{0}")]
    Conflict(String),
    /// The change refers to something that does not exist or is not allowed.
    #[error("{0}")]
    Invalid(String),
    /// The database cannot be reached or is locked; try again later.
    #[error("the store is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// True for a unique or primary-key violation.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e))
            if e.kind() == sqlx::error::ErrorKind::UniqueViolation)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e),
            sqlx::Error::Database(db) => {
                let msg = db.message();
                // Busy or locked (SQLite), shutting down (PostgreSQL), or a
                // full disk on either: passing, so the caller may retry.
                if msg.contains("database is locked")
                    || msg.contains("database table is locked")
                    || msg.contains("disk is full")
                    || matches!(
                        db.code().as_deref(),
                        Some("5" | "6" | "13" | "517" | "57P01" | "57P03" | "53100")
                    )
                {
                    StoreError::Unavailable(e)
                } else {
                    StoreError::Database(e)
                }
            }
            _ => StoreError::Database(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Moves on after every committed change to access.
    access: std::sync::Arc<watch::Sender<u64>>,
    /// For the PostgreSQL listener (never shown: it may hold a password).
    url: std::sync::Arc<str>,
}

impl Store {
    /// Connects to `url` (`sqlite://PATH?mode=rwc` or `postgres://...`).
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        let mut options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            });
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                    Ok(())
                })
            });
            // A transaction that fails at the wrong moment (a COMMIT on a
            // full disk, which SQLite may roll back itself) can leave a
            // connection inside a transaction, or sqlx believing it is:
            // reused, it would hold the write lock, or commit nothing, for
            // good. Such a connection is closed instead of going back to
            // the pool.
            options = options.after_release(|conn, _meta| {
                Box::pin(async move {
                    // Runs after any rollback a dropped transaction queued.
                    conn.execute("SELECT 1").await?;
                    if sqlx::Connection::is_in_transaction(conn) {
                        return Ok(false);
                    }
                    if conn.execute("BEGIN").await.is_err() {
                        return Ok(false);
                    }
                    conn.execute("ROLLBACK").await?;
                    Ok(true)
                })
            });
        }
        let pool = options.connect(url).await?;
        Ok(Self {
            pool,
            backend,
            access: std::sync::Arc::new(watch::channel(0).0),
            url: url.into(),
        })
    }

    /// The SQLite URL for a data dir's database file.
    pub fn sqlite_url(path: &std::path::Path) -> String {
        format!("sqlite://{}?mode=rwc", path.display())
    }

    /// Applies any migrations not yet applied; returns how many were.
    pub async fn migrate(&self) -> Result<usize> {
        let before = self.applied_migrations().await.unwrap_or(0);
        MIGRATOR.run(&self.pool).await?;
        let after = self.applied_migrations().await.unwrap_or(0);
        Ok(after.saturating_sub(before))
    }

    async fn applied_migrations(&self) -> Result<usize> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.pool)
                .await?;
        Ok(n as usize)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins a transaction whose changes are recorded in the audit log.
    pub async fn begin_audited(&self, now: Millis) -> Result<AuditedTx> {
        let mut tx = self.pool.begin().await?;
        // First statement: a write, so SQLite takes its write lock now and
        // PostgreSQL locks the chain head until commit.
        let (seq, hash): (i64, String) =
            sqlx::query_as("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash")
                .fetch_one(&mut *tx)
                .await?;
        Ok(AuditedTx {
            tx,
            head_seq: seq,
            head_hash: hash,
            appended: false,
            access_changed: false,
            access: self.access.clone(),
            backend: self.backend,
            now,
        })
    }

    /// Changes each time a change to access has committed.
    pub fn access_changes(&self) -> watch::Receiver<u64> {
        self.access.subscribe()
    }

    /// How many changes to access have committed so far.
    pub fn access_generation(&self) -> u64 {
        *self.access.borrow()
    }

    /// Records one audit row on its own (a denied attempt, a failed sign-in).
    pub async fn audit_only(&self, now: Millis, entry: AuditEntry) -> Result<()> {
        let mut tx = self.begin_audited(now).await?;
        tx.audit(entry).await?;
        tx.commit().await
    }

    /// Audits a refusal now; a failure to audit is logged, not returned
    /// (the refusal stands either way), and bounded by [`ANSWER_WITHIN`].
    pub async fn audit_denial(&self, actor: &str, action: &'static str, target: &str, why: &str) {
        let entry = AuditEntry::denied(actor, action, target, why);
        if let Err(e) = within(self.audit_only(crate::clock::now_ms(), entry)).await {
            tracing::warn!(error = %e, "could not audit a denial");
        }
    }
}

/// A transaction that carries audit rows with it.
pub struct AuditedTx {
    tx: Transaction<'static, Any>,
    head_seq: i64,
    head_hash: String,
    appended: bool,
    access_changed: bool,
    access: std::sync::Arc<watch::Sender<u64>>,
    backend: Backend,
    now: Millis,
}

impl AuditedTx {
    pub fn now(&self) -> Millis {
        self.now
    }

    /// The connection, for the change's own statements.
    pub fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }

    /// Appends an audit row, chained to the one before.
    pub async fn audit(&mut self, entry: AuditEntry) -> Result<()> {
        let seq = self.head_seq + 1;
        let hash = audit::append(&mut self.tx, seq, self.now, &self.head_hash, &entry).await?;
        self.head_seq = seq;
        self.head_hash = hash;
        self.appended = true;
        Ok(())
    }

    /// Marks this change as one to who may reach what: the rules in memory
    /// are reloaded once it commits.
    pub fn access_changed(&mut self) {
        self.access_changed = true;
    }

    /// Abandons the change; the chain head is released at once.
    pub async fn rollback(self) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }

    pub async fn commit(mut self) -> Result<()> {
        if self.appended {
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(self.head_seq)
                .bind(&self.head_hash)
                .execute(&mut *self.tx)
                .await?;
        }
        if self.access_changed {
            // Other nodes see the generation move (and, on PostgreSQL,
            // hear of it at once: a notification is sent at commit).
            sqlx::query("UPDATE access_state SET generation = generation + 1 WHERE id = 1")
                .execute(&mut *self.tx)
                .await?;
            if self.backend == Backend::Postgres {
                sqlx::query("SELECT pg_notify($1, '')")
                    .bind(ACCESS_CHANNEL)
                    .execute(&mut *self.tx)
                    .await?;
            }
        }
        self.tx.commit().await?;
        if self.access_changed {
            self.access.send_modify(|g| *g += 1);
        }
        Ok(())
    }
}

/// Hides any password in a database URL before it is shown or logged: the
/// password in the userinfo (`user:***@host`) and the value of every query
/// parameter whose name contains "password" in any case, percent-encoded or
/// not (`?password=***`, `&sslpassword=***`). The rest stays as written.
pub fn redact_url(url: &str) -> String {
    // The query starts at the first '?' after the userinfo's last '@' (a
    // password may hold an unencoded '@' or '/'); without an '@' before the
    // first '?', at the first '?'.
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let first_q = url[after_scheme..]
        .find('?')
        .map_or(url.len(), |i| after_scheme + i);
    let at = url[after_scheme..first_q]
        .rfind('@')
        .map(|i| after_scheme + i);
    let (head, query) = url.split_at(first_q);
    let mut out = String::with_capacity(url.len());
    match at {
        Some(at) => {
            let userinfo = &head[after_scheme..at];
            out.push_str(&head[..after_scheme]);
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&head[at..]);
        }
        None => out.push_str(head),
    }
    // `query` is empty or starts with '?'; a '#' ends it.
    let (query, fragment) = query.split_at(query.find('#').unwrap_or(query.len()));
    for (i, param) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        let (name, has_value) = match param.split_once('=') {
            Some((name, _)) => (name, true),
            None => (param, false),
        };
        if has_value
            && percent_decode_lossy(name)
                .to_ascii_lowercase()
                .contains("password")
        {
            out.push_str(name);
            out.push_str("=***");
        } else {
            out.push_str(param);
        }
    }
    out.push_str(fragment);
    out
}

/// `%XX` decoded and `+` as a space, for matching a query parameter's name.
fn percent_decode_lossy(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let hex = |c: u8| char::from(c).to_digit(16);
        if b == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
                continue;
            }
        }
        out.push(if b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
pub fn like_pattern(term: &str) -> String {
    let mut out = String::with_capacity(term.len() + 2);
    out.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Escapes a term for `LIKE 'term%' ESCAPE '\'` (starts with).
pub fn like_prefix(term: &str) -> String {
    let mut out = like_pattern(term);
    out.remove(0);
    out
}

/// Reads one column, naming it in the error.
pub(crate) fn col<'r, T>(row: &'r AnyRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    use sqlx::Row;
    row.try_get(name).map_err(StoreError::from)
}

pub(crate) fn flag(b: bool) -> i64 {
    i64::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            redact_url("postgres://:secret@h/db"),
            "postgres://:***@h/db"
        );
    }

    #[test]
    fn redacts_userinfo_passwords_with_unencoded_specials() {
        // An '@' or '/' in the password: the last '@' before the query ends it.
        assert_eq!(
            redact_url("postgres://u:p@ss/w0rd@h:5432/db?sslmode=require"),
            "postgres://u:***@h:5432/db?sslmode=require"
        );
        // An '@' in the query does not pull the host into the userinfo.
        assert_eq!(
            redact_url("postgres://u:secret@h/db?application_name=a@b"),
            "postgres://u:***@h/db?application_name=a@b"
        );
    }

    #[test]
    fn redacts_password_query_parameters() {
        assert_eq!(
            redact_url("postgres://u@h/db?password=secret"),
            "postgres://u@h/db?password=***"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=require&password=secret&x=1"),
            "postgres://u@h/db?sslmode=require&password=***&x=1"
        );
        assert_eq!(
            redact_url("postgresql://h/db?PassWord=secret&PASSWORD=again"),
            "postgresql://h/db?PassWord=***&PASSWORD=***"
        );
        assert_eq!(
            redact_url("postgres://h/db?sslcert=c.pem&sslpassword=secret"),
            "postgres://h/db?sslcert=c.pem&sslpassword=***"
        );
        // Percent-encoded names are decoded before they are matched.
        assert_eq!(
            redact_url("postgres://h/db?pass%77ord=secret"),
            "postgres://h/db?pass%77ord=***"
        );
        // A fragment ends the value.
        assert_eq!(
            redact_url("postgres://h/db?password=secret#f"),
            "postgres://h/db?password=***#f"
        );
    }

    #[test]
    fn redacts_both_forms_and_keeps_the_rest() {
        assert_eq!(
            redact_url("postgres://u:one@h:5432/db?user=u&password=two&sslmode=disable"),
            "postgres://u:***@h:5432/db?user=u&password=***&sslmode=disable"
        );
        // No scheme separator: the query is still checked.
        assert_eq!(
            redact_url("sqlite:x.db?mode=rwc&password=secret"),
            "sqlite:x.db?mode=rwc&password=***"
        );
        // Nothing secret: unchanged, even when odd.
        for url in [
            "postgres://u@h/db?sslmode=require",
            "postgres://h/db?password",
            "postgres://h/db?&&=",
            "sqlite::memory:",
            "",
            "%",
            "postgres://h/db?%zz=1&%=x",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn like_escapes_wildcards() {
        assert_eq!(like_pattern("50%_a\\"), "%50\\%\\_a\\\\%");
    }
}
