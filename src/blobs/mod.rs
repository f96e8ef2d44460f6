//! The blob store: an opendal `Operator` with retry, timeout, concurrency and
//! tracing layers, plus the key layout of packs and manifests.
//!
//! Keeps invariant 5 (no overwrite): every object is written create-only, and
//! a collision is an error, never a silent replace. On the fs backend a
//! completed write is fsynced, file and directory, before it counts as durable
//! (invariant 3 relies on that).

pub mod keys;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer, TracingLayer};
use opendal::{ErrorKind, Operator};

/// Errors of the blob layer. "Object absent" is the only not-found.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The object does not exist.
    #[error("blob {0} not found")]
    NotFound(String),
    /// A create-only write found the object already there.
    #[error("blob {0} already exists")]
    AlreadyExists(String),
    /// Anything else the backend reported (permission, network, disk).
    #[error("blob store: {0}")]
    Backend(#[from] opendal::Error),
    /// Local I/O around the backend (directory fsync).
    #[error("blob store I/O: {0}")]
    Io(#[from] std::io::Error),
}

fn map_err(key: &str, e: opendal::Error) -> BlobError {
    match e.kind() {
        ErrorKind::NotFound => BlobError::NotFound(key.to_string()),
        ErrorKind::AlreadyExists | ErrorKind::ConditionNotMatch => {
            BlobError::AlreadyExists(key.to_string())
        }
        _ => BlobError::Backend(e),
    }
}

/// Outcome of a create-only put.
#[derive(Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written.
    Created,
    /// An object with that key already existed and was left untouched.
    AlreadyPresent,
}

/// The blob store handle; cheap to clone.
#[derive(Clone)]
pub struct BlobStore {
    op: Operator,
    /// Root directory when the backend is the local file system.
    fs_root: Option<PathBuf>,
    /// Short description for logs (`fs:/path`, `memory`).
    describe: String,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

fn layered(op: Operator) -> Operator {
    op.layer(
        RetryLayer::new()
            .with_jitter()
            .with_max_times(4)
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(5)),
    )
    .layer(
        TimeoutLayer::new()
            .with_timeout(Duration::from_secs(120))
            .with_io_timeout(Duration::from_secs(60)),
    )
    .layer(ConcurrentLimitLayer::new(64))
    .layer(TracingLayer::new())
}

impl BlobStore {
    /// Local directory backend; creates the directory if needed.
    pub fn fs(root: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        let builder = opendal::services::Fs::default().root(&root.to_string_lossy());
        let op = Operator::new(builder)?;
        Ok(BlobStore {
            op: layered(op),
            describe: format!("fs:{}", root.display()),
            fs_root: Some(root),
        })
    }

    /// In-memory backend: nothing is durable. Tests only.
    pub fn memory() -> Result<Self, BlobError> {
        let op = Operator::new(opendal::services::Memory::default())?;
        Ok(BlobStore {
            op: layered(op),
            fs_root: None,
            describe: "memory".into(),
        })
    }

    /// Short description for logs.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Opens a create-only streaming writer for `key`. A collision may be
    /// reported here or on the first write (backends open lazily).
    pub async fn create(&self, key: &str) -> Result<BlobWriter, BlobError> {
        let w = self
            .op
            .writer_with(key)
            .if_not_exists(true)
            .await
            .map_err(|e| map_err(key, e))?;
        Ok(BlobWriter {
            inner: w,
            key: key.to_string(),
            store: self.clone(),
            written: 0,
        })
    }

    /// Writes `bytes` to `key` unless an object is already there.
    pub async fn put_new(&self, key: &str, bytes: Bytes) -> Result<PutOutcome, BlobError> {
        let mut w = match self.create(key).await {
            Ok(w) => w,
            Err(BlobError::AlreadyExists(_)) => return Ok(PutOutcome::AlreadyPresent),
            Err(e) => return Err(e),
        };
        match w.write(bytes).await {
            Ok(()) => {}
            Err(BlobError::AlreadyExists(_)) => return Ok(PutOutcome::AlreadyPresent),
            Err(e) => return Err(e),
        }
        match w.close().await {
            Ok(_) => Ok(PutOutcome::Created),
            Err(BlobError::AlreadyExists(_)) => Ok(PutOutcome::AlreadyPresent),
            Err(e) => Err(e),
        }
    }

    /// Reads `len` bytes at `offset` of `key`.
    pub async fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes, BlobError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let buf = self
            .op
            .read_with(key)
            .range(offset..offset + len)
            .await
            .map_err(|e| map_err(key, e))?;
        let bytes = buf.to_bytes();
        if bytes.len() as u64 != len {
            return Err(BlobError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("short read of {key}: {} of {len} bytes", bytes.len()),
            )));
        }
        Ok(bytes)
    }

    /// Reads a whole object.
    pub async fn read(&self, key: &str) -> Result<Bytes, BlobError> {
        Ok(self
            .op
            .read(key)
            .await
            .map_err(|e| map_err(key, e))?
            .to_bytes())
    }

    /// Size of an object.
    pub async fn size(&self, key: &str) -> Result<u64, BlobError> {
        Ok(self
            .op
            .stat(key)
            .await
            .map_err(|e| map_err(key, e))?
            .content_length())
    }

    /// Keys and sizes of every object under `prefix` (recursive).
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, BlobError> {
        let entries = self
            .op
            .list_with(prefix)
            .recursive(true)
            .await
            .map_err(|e| map_err(prefix, e))?;
        let mut out = Vec::new();
        for e in entries {
            if e.metadata().is_file() {
                let size = match e.metadata().content_length() {
                    0 => self.size(e.path()).await.unwrap_or(0),
                    n => n,
                };
                out.push((e.path().to_string(), size));
            }
        }
        Ok(out)
    }

    /// Deletes an object (absent is fine).
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.op.delete(key).await.map_err(|e| map_err(key, e))
    }

    async fn sync_parent_dir(&self, key: &str) -> Result<(), BlobError> {
        let Some(root) = &self.fs_root else {
            return Ok(());
        };
        let path = root.join(key);
        let Some(dir) = path.parent().map(Path::to_path_buf) else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))??;
        Ok(())
    }
}

/// A create-only streaming write; the object exists at its key only after
/// [`close`](Self::close) returns, durable.
pub struct BlobWriter {
    inner: opendal::Writer,
    key: String,
    store: BlobStore,
    written: u64,
}

impl BlobWriter {
    /// Appends bytes.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), BlobError> {
        self.written += bytes.len() as u64;
        self.inner
            .write(bytes)
            .await
            .map_err(|e| map_err(&self.key, e))
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Key being written.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Completes the write and makes it durable.
    pub async fn close(mut self) -> Result<(), BlobError> {
        self.inner
            .close()
            .await
            .map_err(|e| map_err(&self.key, e))?;
        self.store.sync_parent_dir(&self.key).await
    }

    /// Gives up the write. On fs the partial file may remain; it has no
    /// trailer, is never indexed, and GC removes it.
    pub async fn abort(mut self) {
        if let Err(e) = self.inner.abort().await {
            tracing::debug!(key = %self.key, error = %e, "abort of blob write not supported");
        }
    }
}
