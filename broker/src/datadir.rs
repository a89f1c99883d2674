//! The broker's data directory: keys, the CA and the bootstrap admin token.
//!
//! Files here are created once, with mode 0600, and never overwritten: a
//! file is written under a temporary name and then hard-linked into place,
//! which fails if the name already exists, so two brokers starting on the
//! same directory cannot clobber each other's keys.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data dir {path} is not writable ({source}); choose another with --data-dir or fix its permissions")]
    NotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged: {reason}; restore it from a backup (it is never regenerated over an existing file)")]
    Damaged { path: PathBuf, reason: String },
}

#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    /// Opens (creating if needed, mode 0700) and checks that it is writable.
    pub fn open(path: &Path) -> Result<Self, DataDirError> {
        let not_writable = |source| DataDirError::NotWritable {
            path: path.to_owned(),
            source,
        };
        if !path.exists() {
            fs::create_dir_all(path).map_err(not_writable)?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(not_writable)?;
        }
        let probe = path.join(format!(".write-probe-{}", std::process::id()));
        fs::write(&probe, b"").map_err(not_writable)?;
        let _ = fs::remove_file(&probe);
        Ok(Self {
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Reads `name` if it exists.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, DataDirError> {
        let path = self.file(name);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(DataDirError::Read { path, source }),
        }
    }

    /// Returns the contents of `name`, first creating it from `make` if it
    /// does not exist. An existing file is never replaced, and if `make`
    /// fails nothing is written. The bool is true when this call created
    /// the file.
    pub fn read_or_create<E: From<DataDirError>>(
        &self,
        name: &str,
        make: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<(Vec<u8>, bool), E> {
        if let Some(bytes) = self.read(name)? {
            return Ok((bytes, false));
        }
        let bytes = make()?;
        match self.create_new(name, &bytes) {
            Ok(()) => Ok((bytes, true)),
            // Someone else made it between our read and our link: theirs wins.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let bytes = self.read(name)?.unwrap_or_default();
                Ok((bytes, false))
            }
            Err(source) => Err(DataDirError::NotWritable {
                path: self.file(name),
                source,
            }
            .into()),
        }
    }

    fn create_new(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.file(&format!(".{name}.tmp-{}", crate::secrets::new_id()));
        let result = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::hard_link(&tmp, self.file(name))
        })();
        let _ = fs::remove_file(&tmp);
        result
    }
}

/// PEM armour for DER bytes.
pub fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = data_encoding::BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_with_0600_and_never_overwrites() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(&tmp.path().join("d")).unwrap();
        let (a, created) = dir
            .read_or_create("k", || Ok::<_, DataDirError>(b"first".to_vec()))
            .unwrap();
        assert!(created);
        assert_eq!(a, b"first");
        let (b, created) = dir
            .read_or_create("k", || Ok::<_, DataDirError>(b"second".to_vec()))
            .unwrap();
        assert!(!created);
        assert_eq!(b, b"first");
        let mode = fs::metadata(dir.file("k")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_failed_maker_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let err = dir.read_or_create("k", || {
            Err(DataDirError::Damaged {
                path: "k".into(),
                reason: "no".into(),
            })
        });
        assert!(err.is_err());
        assert!(dir.read("k").unwrap().is_none());
    }

    #[test]
    fn unwritable_dir_is_a_clear_error() {
        // A path under a file cannot be a directory, even for root.
        let err = DataDir::open(Path::new("/dev/null/lanyard")).unwrap_err();
        assert!(matches!(err, DataDirError::NotWritable { .. }), "{err}");
        assert!(err.to_string().contains("not writable"), "{err}");
    }
}
