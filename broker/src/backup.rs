//! `lanyard-broker backup FILE`: a consistent copy of the SQLite store,
//! taken from another process while the broker serves.
//!
//! `VACUUM INTO` reads the database in one read transaction (WAL lets the
//! broker go on writing meanwhile) and writes a compact copy of it as it
//! was when that transaction began. The target is created first, empty and
//! 0600 (it holds password hashes), with `create_new`, so an existing file
//! is never overwritten.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the store is PostgreSQL: back it up with pg_dump (e.g. pg_dump --format=custom --file FILE URL) and restore with pg_restore")]
    Postgres,
    #[error("{0} already exists; give a new file name (a backup never overwrites)")]
    Exists(PathBuf),
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no SQLite store at {0}; pass the broker's --data-dir or --database-url")]
    NoStore(String),
    #[error("backing up the store failed: {0}")]
    Sqlite(#[from] sqlx::Error),
    #[error("the copy in {path} fails SQLite's integrity check: {report}")]
    Damaged { path: PathBuf, report: String },
}

/// What a backup wrote.
#[derive(Debug)]
pub struct Backup {
    pub bytes: u64,
    /// The audit chain's last sequence number in the copy.
    pub audit_seq: i64,
    pub took: Duration,
}

/// Copies the SQLite store at `url` into the new file `to`. On an error
/// the half-written file is removed.
pub async fn sqlite(url: &str, to: &Path) -> Result<Backup, BackupError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(BackupError::Postgres);
    }
    let started = Instant::now();
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|_| BackupError::NoStore(crate::store::redact_url(url)))?
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(10));
    let db = options.get_filename().to_owned();
    if !db.is_file() {
        return Err(BackupError::NoStore(db.display().to_string()));
    }
    create_empty(to)?;
    let result = copy(options, to).await;
    if result.is_err() {
        let _ = std::fs::remove_file(to);
    }
    let audit_seq = result?;
    let bytes = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    Ok(Backup {
        bytes,
        audit_seq,
        took: started.elapsed(),
    })
}

fn create_empty(to: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(BackupError::Exists(to.to_owned()))
        }
        Err(source) => Err(BackupError::Create {
            path: to.to_owned(),
            source,
        }),
    }
}

/// `VACUUM INTO`, then the copy checked; its audit head.
async fn copy(options: SqliteConnectOptions, to: &Path) -> Result<i64, BackupError> {
    let mut conn: SqliteConnection = options.connect().await?;
    sqlx::query("VACUUM INTO ?1")
        .bind(to.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let mut copy = SqliteConnectOptions::new()
        .filename(to)
        .read_only(true)
        .connect()
        .await?;
    let report: String = sqlx::query("PRAGMA integrity_check")
        .fetch_one(&mut copy)
        .await?
        .try_get(0)?;
    if report != "ok" {
        return Err(BackupError::Damaged {
            path: to.to_owned(),
            report,
        });
    }
    let seq: i64 = sqlx::query("SELECT seq FROM audit_head")
        .fetch_optional(&mut copy)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?
        .unwrap_or(0);
    copy.close().await?;
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_once_and_never_overwrites() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("lanyard.db");
        let store = crate::store::Store::connect(&crate::store::Store::sqlite_url(&db))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let url = crate::store::Store::sqlite_url(&db);
        let to = tmp.path().join("copy.db");
        let done = sqlite(&url, &to).await.unwrap();
        assert!(done.bytes > 0);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&to).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let before = std::fs::read(&to).unwrap();
        let err = sqlite(&url, &to).await.unwrap_err();
        assert!(matches!(err, BackupError::Exists(_)), "{err}");
        assert_eq!(std::fs::read(&to).unwrap(), before, "left as it was");
        let err = sqlite("postgres://u:secret@h/db", &tmp.path().join("pg.db"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("pg_dump"), "{err}");
        let missing = crate::store::Store::sqlite_url(&tmp.path().join("none.db"));
        let err = sqlite(&missing, &tmp.path().join("x.db"))
            .await
            .unwrap_err();
        assert!(matches!(err, BackupError::NoStore(_)), "{err}");
        assert!(!tmp.path().join("x.db").exists());
        store.close().await;
    }
}
