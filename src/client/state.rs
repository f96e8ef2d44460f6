//! Resume files: one small JSON file per unfinished `put`, so that running
//! the same command again continues the upload session instead of starting
//! over.
//!
//! A file is keyed by experiment, principal and the content's BLAKE3 and
//! size — not by path or server URL: the same bytes put again resume wherever
//! they come from, and a session id unknown to the server (another server, a
//! session that expired) just answers 404 and a new session is made. The file
//! lives in `$EDEN_CAS_STATE_DIR`, else `$XDG_STATE_HOME/eden-cas`, else
//! `~/.local/state/eden-cas`; it is written atomically (temp file + rename)
//! with mode 0600 and removed once the commit succeeds. It holds no secret.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ClientError, Result};
use crate::chunking::ChunkerParams;
use crate::hash::Digest;

/// Format version of resume files.
const VERSION: u32 = 1;

/// What identifies one upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateKey {
    /// Experiment id.
    pub experiment: String,
    /// Principal part of the bearer.
    pub principal: String,
    /// BLAKE3 of the content.
    pub blake3: Digest,
    /// Content length.
    pub size: u64,
}

impl StateKey {
    /// `upload-<32 hex>.json`, from a hash of every key field.
    pub fn file_name(&self) -> String {
        let mut h = blake3::Hasher::new();
        for part in [
            "eden-cas-resume-v1".as_bytes(),
            self.experiment.as_bytes(),
            self.principal.as_bytes(),
            self.blake3.as_bytes(),
            &self.size.to_le_bytes(),
        ] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        format!("upload-{}.json", &h.finalize().to_hex()[..32])
    }
}

/// The content of a resume file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    /// Format version.
    pub version: u32,
    /// Server URL the session was made on (informational).
    pub server: String,
    /// Experiment id.
    pub experiment: String,
    /// Principal part of the bearer.
    pub principal: String,
    /// `blake3:<hex>` of the content.
    pub blake3: String,
    /// Content length.
    pub size_bytes: u64,
    /// The upload session.
    pub session_id: String,
    /// Chunker the server asked for.
    pub chunker: ChunkerParams,
    /// Largest chunk batch the server accepts.
    pub max_batch_bytes: u64,
    /// The path that was put (informational).
    pub source: String,
}

impl UploadState {
    fn matches(&self, key: &StateKey) -> bool {
        self.version == VERSION
            && self.experiment == key.experiment
            && self.principal == key.principal
            && self.blake3 == format!("blake3:{}", key.blake3)
            && self.size_bytes == key.size
    }
}

/// Where resume files live; `None` when no directory could be found (resume
/// is then off).
#[derive(Clone, Debug)]
pub struct StateStore {
    dir: Option<PathBuf>,
}

impl StateStore {
    /// The directory from the environment (see the module docs).
    pub fn from_env() -> StateStore {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let dir = var("EDEN_CAS_STATE_DIR")
            .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("eden-cas")))
            .or_else(|| var("HOME").map(|h| h.join(".local/state/eden-cas")));
        StateStore { dir }
    }

    /// A store in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> StateStore {
        StateStore {
            dir: Some(dir.into()),
        }
    }

    /// The directory, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn path(&self, key: &StateKey) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(key.file_name()))
    }

    /// The saved state for `key`; unreadable or foreign files count as none.
    pub fn load(&self, key: &StateKey) -> Option<UploadState> {
        let bytes = fs::read(self.path(key)?).ok()?;
        let state: UploadState = serde_json::from_slice(&bytes).ok()?;
        state.matches(key).then_some(state)
    }

    /// Saves `state` for `key`, atomically.
    pub fn save(&self, key: &StateKey, state: &UploadState) -> Result<()> {
        let (Some(dir), Some(path)) = (self.dir.as_ref(), self.path(key)) else {
            return Ok(());
        };
        let ctx = |e| ClientError::io(format!("cannot write resume state in {}", dir.display()), e);
        fs::create_dir_all(dir).map_err(ctx)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let body = serde_json::to_vec_pretty(state).unwrap_or_default();
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(ctx)?;
        f.write_all(&body).map_err(ctx)?;
        f.sync_all().map_err(ctx)?;
        drop(f);
        fs::rename(&tmp, &path).map_err(ctx)
    }

    /// Forgets `key` (after a commit, or when its session is gone).
    pub fn remove(&self, key: &StateKey) {
        if let Some(p) = self.path(key) {
            let _ = fs::remove_file(p);
        }
    }

    /// Builds the state to save for a new session.
    pub fn new_state(
        key: &StateKey,
        server: &str,
        session_id: &str,
        chunker: ChunkerParams,
        max_batch_bytes: u64,
        source: &Path,
    ) -> UploadState {
        UploadState {
            version: VERSION,
            server: server.to_string(),
            experiment: key.experiment.clone(),
            principal: key.principal.clone(),
            blake3: format!("blake3:{}", key.blake3),
            size_bytes: key.size,
            session_id: session_id.to_string(),
            chunker,
            max_batch_bytes,
            source: source.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> StateKey {
        StateKey {
            experiment: "exp_a".into(),
            principal: "wkr_b".into(),
            blake3: Digest::of(b"content"),
            size: 7,
        }
    }

    #[test]
    fn keying_separates_every_field() {
        let k = key();
        let name = k.file_name();
        assert!(name.starts_with("upload-") && name.ends_with(".json"));
        assert_eq!(name, key().file_name(), "stable");
        let variants = [
            StateKey {
                experiment: "exp_b".into(),
                ..key()
            },
            StateKey {
                principal: "admin".into(),
                ..key()
            },
            StateKey {
                blake3: Digest::of(b"other"),
                ..key()
            },
            StateKey { size: 8, ..key() },
        ];
        for v in variants {
            assert_ne!(v.file_name(), name, "{v:?}");
        }
        // Length-prefixed parts: moving bytes between fields changes the name.
        let a = StateKey {
            experiment: "ab".into(),
            principal: "c".into(),
            ..key()
        };
        let b = StateKey {
            experiment: "a".into(),
            principal: "bc".into(),
            ..key()
        };
        assert_ne!(a.file_name(), b.file_name());
    }

    #[test]
    fn save_load_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::at(dir.path().join("nested"));
        let k = key();
        assert!(store.load(&k).is_none());
        let st = StateStore::new_state(
            &k,
            "http://x",
            "s1",
            ChunkerParams::default(),
            1 << 20,
            Path::new("f"),
        );
        store.save(&k, &st).unwrap();
        assert_eq!(store.load(&k), Some(st.clone()));
        let other = StateKey { size: 8, ..key() };
        assert!(store.load(&other).is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let p = store.dir().unwrap().join(k.file_name());
            assert_eq!(fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        store.remove(&k);
        assert!(store.load(&k).is_none());
        // A corrupt file is ignored, not an error.
        fs::write(store.dir().unwrap().join(k.file_name()), b"{").unwrap();
        assert!(store.load(&k).is_none());
    }
}
