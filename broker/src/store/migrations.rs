//! The migrations in `migrations/`, embedded in the binary. Each file's
//! name gives its version and description (`0003_tunnels.sql`: 3,
//! "tunnels"), read as sqlx reads a migrations directory, so a store
//! migrated by an older build (which used sqlx's `migrate!`) sees the same
//! versions and checksums. A file added there must be added here too; a
//! test says so.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

/// Every migration file, oldest first.
const FILES: &[(&str, &str)] = &[
    file(
        "0001_foundation.sql",
        include_str!("../../../migrations/0001_foundation.sql"),
    ),
    file(
        "0002_inventory.sql",
        include_str!("../../../migrations/0002_inventory.sql"),
    ),
    file(
        "0003_tunnels.sql",
        include_str!("../../../migrations/0003_tunnels.sql"),
    ),
    file(
        "0004_load.sql",
        include_str!("../../../migrations/0004_load.sql"),
    ),
    file(
        "0005_code_cancel.sql",
        include_str!("../../../migrations/0005_code_cancel.sql"),
    ),
    file(
        "0006_laptop_pool.sql",
        include_str!("../../../migrations/0006_laptop_pool.sql"),
    ),
    file(
        "0007_tokens_valid_after.sql",
        include_str!("../../../migrations/0007_tokens_valid_after.sql"),
    ),
    file(
        "0008_nodes.sql",
        include_str!("../../../migrations/0008_nodes.sql"),
    ),
    file(
        "0009_app_hosts.sql",
        include_str!("../../../migrations/0009_app_hosts.sql"),
    ),
    file(
        "0010_oidc.sql",
        include_str!("../../../migrations/0010_oidc.sql"),
    ),
    file(
        "0011_roles.sql",
        include_str!("../../../migrations/0011_roles.sql"),
    ),
    file(
        "0012_idp_roles.sql",
        include_str!("../../../migrations/0012_idp_roles.sql"),
    ),
    file(
        "0013_leavers.sql",
        include_str!("../../../migrations/0013_leavers.sql"),
    ),
];

const fn file(name: &'static str, sql: &'static str) -> (&'static str, &'static str) {
    (name, sql)
}

/// The migrator for [`FILES`]: applied in order, each in a transaction
/// (unless it starts `-- no-transaction`), under the database's lock.
pub fn migrator() -> Migrator {
    let migrations = FILES
        .iter()
        .map(|(name, sql)| {
            let (version, rest) = name.split_once('_').unwrap_or((name, ""));
            let version = version.parse().unwrap_or_else(|_| {
                // FILES is a constant checked by the tests below.
                unreachable!("migration file {name} has no version number")
            });
            let description = rest.trim_end_matches(".sql").replace('_', " ");
            Migration::new(
                version,
                Cow::Owned(description),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                sql.starts_with("-- no-transaction"),
            )
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

    use super::*;

    fn dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations")
    }

    /// Every file in migrations/ is embedded, and nothing else.
    #[test]
    fn every_migration_file_is_embedded() {
        let mut on_disk: Vec<String> = std::fs::read_dir(dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = FILES.iter().map(|(n, _)| *n).collect();
        assert_eq!(embedded, on_disk, "add the new file to FILES");
    }

    /// The same versions, descriptions, checksums and transaction choice as
    /// sqlx's own reading of the directory (what `migrate!` embedded), so
    /// stores migrated before are not taken for modified.
    #[tokio::test]
    async fn the_migrator_matches_sqlx_reading_the_directory() {
        let ours = migrator();
        let theirs = Migrator::new(dir()).await.unwrap();
        let view = |m: &Migrator| {
            m.iter()
                .map(|m| {
                    (
                        m.version,
                        m.description.to_string(),
                        m.checksum.to_vec(),
                        m.no_tx,
                        format!("{:?}", m.migration_type),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(view(&ours), view(&theirs));
        assert_eq!(view(&ours).len(), FILES.len());
    }
}
