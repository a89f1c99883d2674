//! Signed checkpoints of the audit chain, kept outside the database.
//!
//! The chain alone proves only that the rows agree with each other: someone
//! who can write to the database can edit a row and compute every later
//! hash and the head again, or cut the tail and move the head back. So at
//! intervals the node signs the chain head (sequence number and hash) with
//! an Ed25519 key from its data dir and appends it, one line, to a file
//! outside the database. `audit verify` checks the chain against every
//! checkpoint: a row whose hash differs from a signed one was re-computed;
//! a checkpoint past the end of the log means the log was rewound.
//!
//! A line: `lanyard-audit-checkpoint v1 node=NAME at=MS seq=N hash=HEX
//! sig=BASE64`, the signature over `v1|NAME|MS|N|HEX`.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::Serialize;

use crate::clock::Millis;
use crate::datadir::{DataDir, DataDirError};

/// The signing key's file in the data dir (PKCS#8).
pub const KEY_FILE: &str = "audit-signing.key";
/// The checkpoints' file in the data dir, unless configured elsewhere.
pub const DEFAULT_FILE: &str = "audit-checkpoints.log";

const PREFIX: &str = "lanyard-audit-checkpoint v1";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("the audit signing key {0} is unreadable; restore it from a backup or move it away to make a new one")]
    BadKey(PathBuf),
    #[error("cannot write the audit checkpoint file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the audit checkpoint file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One signed checkpoint, as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    pub node: String,
    pub at_ms: Millis,
    pub seq: i64,
    pub hash: String,
}

/// What reading the file found: good checkpoints, and lines that are not.
#[derive(Debug, Default)]
pub struct Read {
    pub checkpoints: Vec<Checkpoint>,
    /// `line N: why`, for lines that do not parse or whose signature does
    /// not verify under this node's key.
    pub bad_lines: Vec<String>,
}

/// This node's signer and its file.
#[derive(Debug)]
pub struct Checkpoints {
    key: Ed25519KeyPair,
    path: PathBuf,
    node: String,
    /// The last head this node signed: (seq, hash); (0, "") before any.
    last: std::sync::Mutex<(i64, String)>,
}

impl Checkpoints {
    /// Opens (or makes) the signing key in `dir`; checkpoints go to `path`.
    pub fn open(dir: &DataDir, path: PathBuf, node: &str) -> Result<Self, CheckpointError> {
        let (pkcs8, _) = dir.read_or_create(KEY_FILE, || {
            let rng = ring::rand::SystemRandom::new();
            Ed25519KeyPair::generate_pkcs8(&rng)
                .map(|k| k.as_ref().to_vec())
                .map_err(|_| CheckpointError::BadKey(dir.file(KEY_FILE)))
        })?;
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| CheckpointError::BadKey(dir.file(KEY_FILE)))?;
        let this = Self {
            key,
            path,
            node: node.to_owned(),
            last: Default::default(),
        };
        let last = this
            .read()?
            .checkpoints
            .into_iter()
            .filter(|c| c.node == this.node)
            .max_by_key(|c| c.seq)
            .map(|c| (c.seq, c.hash))
            .unwrap_or_default();
        *this.last.lock().unwrap_or_else(|p| p.into_inner()) = last;
        Ok(this)
    }

    /// The last head this node signed (seq, hash), if any.
    pub fn last_signed(&self) -> Option<(i64, String)> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        (last.0 > 0).then(|| last.clone())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The public key's hex, to check the file elsewhere.
    pub fn public_key_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(self.key.public_key().as_ref())
    }

    /// Signs and appends the head (`seq`, `hash`) if it moved since the
    /// last checkpoint; whether a line was written.
    pub fn record(&self, seq: i64, hash: &str, now: Millis) -> Result<bool, CheckpointError> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if seq <= last.0 {
            return Ok(false);
        }
        let signed = signed_text(&self.node, now, seq, hash);
        let sig = data_encoding::BASE64.encode(self.key.sign(signed.as_bytes()).as_ref());
        let line = format!(
            "{PREFIX} node={} at={now} seq={seq} hash={hash} sig={sig}\n",
            self.node
        );
        let write = |path: &Path| -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            file.write_all(line.as_bytes())?;
            file.sync_data()
        };
        write(&self.path).map_err(|source| CheckpointError::Write {
            path: self.path.clone(),
            source,
        })?;
        *last = (seq, hash.to_owned());
        Ok(true)
    }

    /// Every checkpoint in the file whose signature verifies under this
    /// node's key (all nodes of a deployment share it), oldest first.
    pub fn read(&self) -> Result<Read, CheckpointError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Read::default()),
            Err(source) => {
                return Err(CheckpointError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let public = UnparsedPublicKey::new(&ED25519, self.key.public_key().as_ref().to_vec());
        let mut read = Read::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match parse(line) {
                Some((c, sig)) => {
                    let signed = signed_text(&c.node, c.at_ms, c.seq, &c.hash);
                    if public.verify(signed.as_bytes(), &sig).is_ok() {
                        read.checkpoints.push(c);
                    } else {
                        read.bad_lines.push(format!(
                            "line {}: its signature does not verify under this broker's key",
                            i + 1
                        ));
                    }
                }
                None => read
                    .bad_lines
                    .push(format!("line {}: not a checkpoint line", i + 1)),
            }
        }
        Ok(read)
    }
}

fn signed_text(node: &str, at: Millis, seq: i64, hash: &str) -> String {
    format!("v1|{node}|{at}|{seq}|{hash}")
}

/// A line's checkpoint and signature, if it is well formed.
fn parse(line: &str) -> Option<(Checkpoint, Vec<u8>)> {
    let rest = line.strip_prefix(PREFIX)?.trim();
    let mut fields = std::collections::HashMap::new();
    for part in rest.split(' ') {
        let (k, v) = part.split_once('=')?;
        fields.insert(k, v);
    }
    let hash = fields.get("hash")?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let c = Checkpoint {
        node: fields.get("node")?.to_string(),
        at_ms: fields.get("at")?.parse().ok()?,
        seq: fields.get("seq")?.parse().ok()?,
        hash: hash.to_string(),
    };
    let sig = data_encoding::BASE64
        .decode(fields.get("sig")?.as_bytes())
        .ok()?;
    Some((c, sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (tempfile::TempDir, Checkpoints) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(&tmp.path().join("data")).unwrap();
        let path = tmp.path().join("checkpoints.log");
        let c = Checkpoints::open(&dir, path, "node-a").unwrap();
        (tmp, c)
    }

    #[test]
    fn a_written_checkpoint_reads_back_and_a_forged_one_does_not() {
        let (_tmp, c) = fresh();
        let hash = "ab".repeat(32);
        assert_eq!(c.last_signed(), None);
        assert!(c.record(7, &hash, 1_000).unwrap());
        assert_eq!(c.last_signed(), Some((7, hash.clone())));
        // The head has not moved: nothing new.
        assert!(!c.record(7, &hash, 2_000).unwrap());
        let read = c.read().unwrap();
        assert_eq!(read.checkpoints.len(), 1);
        assert_eq!(read.checkpoints[0].seq, 7);
        assert!(read.bad_lines.is_empty());
        // An edited line (another seq) no longer verifies.
        let text = std::fs::read_to_string(c.path()).unwrap();
        std::fs::write(c.path(), text.replace("seq=7", "seq=5")).unwrap();
        let read = c.read().unwrap();
        assert!(read.checkpoints.is_empty());
        assert_eq!(read.bad_lines.len(), 1, "{:?}", read.bad_lines);
    }
}
