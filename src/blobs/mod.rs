//! The blob store: an opendal `Operator` over one backend (fs, memory, s3,
//! gcs, azblob — see [`backend`]) with timeout, retry, concurrency and
//! tracing layers, the key layout of packs and manifests ([`keys`]), the
//! startup probe ([`probe`]), the single-writer lease ([`lease`]), per-kind request counters, a cache of
//! verified chunks ([`cache`]) and, for tests, fault injection (`faults`,
//! compiled only with the `faults` cargo feature, which the test targets
//! enable and release builds never do).
//!
//! Keeps invariant 5 (no overwrite): every object is written create-only
//! (`If-None-Match: *` on object stores, `O_EXCL`-style on fs), and a
//! collision is an error, never a silent replace. On the fs backend a
//! completed write is fsynced, file and directory, before it counts as durable
//! (invariant 3 relies on that); on object stores an object exists only once
//! its single PUT or its multipart completion succeeded. "Object absent" is
//! the only [`BlobError::NotFound`]: a missing bucket, a refused credential or
//! an unreachable service is a [`BlobError::Backend`].

pub mod backend;
pub mod cache;
mod counters;
#[cfg(feature = "faults")]
pub mod faults;
pub mod keys;
pub mod lease;
pub mod probe;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use opendal::layers::{ConcurrentLimitLayer, RetryEvent, RetryLayer, TimeoutLayer, TracingLayer};
use opendal::{ErrorKind, Operator};

pub use backend::{Backend, BlobSettings, SettingError};
pub use cache::ChunkCache;
use counters::WriteModel;
pub use counters::{BlobCounters, RequestCounts};
#[cfg(feature = "faults")]
pub use faults::{Fault, FaultLayer, FaultPlan, FaultSpec};

/// Errors of the blob layer. "Object absent" is the only not-found.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The object does not exist.
    #[error("blob {0} not found")]
    NotFound(String),
    /// A create-only write found the object already there.
    #[error("blob {0} already exists")]
    AlreadyExists(String),
    /// Anything else the backend reported (bucket missing, permission,
    /// network, disk).
    #[error("blob store: {0}")]
    Backend(#[from] opendal::Error),
    /// A ranged read found the object shorter than the range: it ended
    /// early, or the backend refused a range past its end.
    #[error("short read of {key}: {got} of {expected} bytes")]
    ShortRead {
        /// The object.
        key: String,
        /// Bytes asked for.
        expected: u64,
        /// Bytes received (0 when the backend refused the range).
        got: u64,
    },
    /// Local I/O around the backend (directory fsync).
    #[error("blob store I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Services answer 404 for a missing bucket as for a missing object; only
/// the error code in the body tells them apart (S3 `NoSuchBucket` is already
/// `ConfigInvalid` in opendal; GCS and Azure are caught here).
fn is_container_missing(e: &opendal::Error) -> bool {
    let m = e.to_string();
    m.contains("NoSuchBucket")
        || m.contains("ContainerNotFound")
        || m.contains("bucket does not exist")
}

fn map_err(key: &str, e: opendal::Error) -> BlobError {
    match e.kind() {
        ErrorKind::NotFound if !is_container_missing(&e) => BlobError::NotFound(key.to_string()),
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

/// Tunables of the blob store (named settings; see `config.rs`).
#[derive(Debug, Clone)]
pub struct BlobConfig {
    /// The backend (`blob-store` and its per-backend settings).
    pub backend: Backend,
    /// Deadline of one request or one I/O step (`blob-timeout`).
    pub timeout: Duration,
    /// Retries of a transient failure, with exponential backoff and jitter
    /// (`blob-retries`).
    pub retries: usize,
    /// Requests in flight at most, whole process (`blob-concurrency`).
    pub max_concurrency: usize,
    /// Multipart part size on object stores (`blob-part-bytes`).
    pub part_bytes: usize,
    /// Size bound of the verified-chunk cache; 0 disables it
    /// (`chunk-cache-bytes`).
    pub chunk_cache_bytes: u64,
    /// Tests only (`faults` feature): a fault plan applied under every
    /// other layer (see [`faults`]). No setting, variable or flag reaches
    /// it; `None` by default.
    #[cfg(feature = "faults")]
    pub faults: Option<Arc<FaultPlan>>,
}

/// Smallest multipart part S3 accepts (all parts but the last).
pub const MIN_PART_BYTES: usize = 5 << 20;

/// Parts of one object uploaded concurrently on S3 and Azure (GCS uploads
/// sequentially, see [`counters::GCS_RESUMABLE_CHUNK_BYTES`]).
const UPLOADS_IN_FLIGHT: usize = 2;

impl BlobConfig {
    /// Default tunables for `backend`. The chunk cache is on by default
    /// only for remote object stores: on local disk the OS page cache already
    /// serves re-reads, and filling a second cache costs a copy of every chunk
    /// read (it halved fs fetch throughput in `benches/http_bench.sh`).
    pub fn new(backend: Backend) -> Self {
        let chunk_cache_bytes = match backend {
            Backend::Fs { .. } | Backend::Memory => 0,
            _ => 64 << 20,
        };
        BlobConfig {
            backend,
            timeout: Duration::from_secs(60),
            retries: 4,
            max_concurrency: 64,
            part_bytes: part_bytes_for(64 << 20),
            chunk_cache_bytes,
            #[cfg(feature = "faults")]
            faults: None,
        }
    }
}

/// The part size that writes a pack of `pack_target_bytes` in three parts:
/// ≤ 3 PUTs + 2 POSTs per pack. A pack is sealed at the first batch boundary
/// past its target, so it may overshoot; parts cover target + 1/8.
pub fn part_bytes_for(pack_target_bytes: u64) -> usize {
    let covered = pack_target_bytes + pack_target_bytes / 8;
    let third = covered.div_ceil(3).div_ceil(1 << 20) << 20;
    (third as usize).max(MIN_PART_BYTES)
}

/// The blob store handle; cheap to clone.
#[derive(Clone)]
pub struct BlobStore {
    op: Operator,
    backend: Arc<Backend>,
    /// Root directory when the backend is the local file system.
    fs_root: Option<PathBuf>,
    /// Multipart part size; `None` writes through (fs, memory).
    part_bytes: Option<usize>,
    /// How a finished write maps to the service's requests.
    write_model: WriteModel,
    counters: Arc<BlobCounters>,
    cache: Arc<ChunkCache>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.backend)
    }
}

fn layered(op: Operator, cfg: &BlobConfig, counters: &Arc<BlobCounters>) -> Operator {
    let retry_counters = Arc::clone(counters);
    // Injected faults sit directly on the backend, under everything else, so
    // they travel the path of a real backend failure (timeout, retry, error
    // mapping): a permanent one fails the operation at once, a transient one
    // is retried.
    #[cfg(feature = "faults")]
    let op = match &cfg.faults {
        Some(plan) => op.layer(FaultLayer::new(Arc::clone(plan))),
        None => op,
    };
    // Order matters: the timeout sits under the retry, so each attempt has
    // its own deadline and a timed-out attempt is retried (opendal's advice).
    op.layer(
        TimeoutLayer::new()
            .with_timeout(cfg.timeout)
            .with_io_timeout(cfg.timeout),
    )
    .layer(
        RetryLayer::new()
            .with_jitter()
            .with_max_times(cfg.retries)
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(5))
            .with_notify(move |ev: RetryEvent<'_>| {
                BlobCounters::add(&retry_counters.retries, 1);
                tracing::warn!(
                    op = %ev.op,
                    attempt = ev.attempt,
                    retry_after_ms = ev.retry_after.as_millis() as u64,
                    error = %ev.err,
                    "blob store: transient failure, retrying"
                );
            }),
    )
    .layer(ConcurrentLimitLayer::new(cfg.max_concurrency.max(1)))
    .layer(TracingLayer::new())
}

impl BlobStore {
    /// Opens the store described by `cfg`. Builds the client only: no request
    /// is made (see [`probe::probe`] for the startup check). A local
    /// directory is created if needed.
    pub fn open(cfg: &BlobConfig) -> Result<Self, BlobError> {
        let mut backend = cfg.backend.clone();
        let fs_root = match &mut backend {
            Backend::Fs { root } => {
                std::fs::create_dir_all(&*root)?;
                *root = root.canonicalize()?;
                Some(root.clone())
            }
            _ => None,
        };
        let counters = Arc::new(BlobCounters::default());
        let op = layered(backend::operator(&backend)?, cfg, &counters);
        let part_bytes = backend
            .is_object_store()
            .then_some(cfg.part_bytes.max(MIN_PART_BYTES));
        Ok(BlobStore {
            op,
            part_bytes,
            write_model: WriteModel::for_backend(
                &backend,
                part_bytes.unwrap_or(MIN_PART_BYTES) as u64,
            ),
            backend: Arc::new(backend),
            fs_root,
            counters,
            cache: Arc::new(ChunkCache::new(cfg.chunk_cache_bytes)),
        })
    }

    /// Local directory backend with default tunables; creates the directory.
    pub fn fs(root: &Path) -> Result<Self, BlobError> {
        Self::open(&BlobConfig::new(Backend::Fs { root: root.into() }))
    }

    /// In-memory backend: nothing is durable. Tests only.
    pub fn memory() -> Result<Self, BlobError> {
        Self::open(&BlobConfig::new(Backend::Memory))
    }

    /// The backend, safe to log (`s3://bucket/prefix`, `fs:///path`, …).
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Short description for logs.
    pub fn describe(&self) -> String {
        self.backend.to_string()
    }

    /// Requests issued so far, by kind.
    pub fn requests(&self) -> RequestCounts {
        self.counters.snapshot()
    }

    /// The verified-chunk cache shared by all readers of this store.
    pub fn chunk_cache(&self) -> &ChunkCache {
        &self.cache
    }

    /// Opens a create-only streaming writer for `key`. A collision may be
    /// reported here, on a write or on close (backends differ; object stores
    /// only know at the final PUT or multipart completion).
    pub async fn create(&self, key: &str) -> Result<BlobWriter, BlobError> {
        let mut w = self.op.writer_with(key).if_not_exists(true);
        match (self.part_bytes, self.write_model) {
            // GCS create-only writes are resumable uploads that opendal sends
            // in 8 MiB chunks, one at a time, whatever the part size; more
            // buffering in front would only hold more memory.
            (_, WriteModel::GcsResumable) | (None, _) => {}
            // Exact parts: a 64 MiB pack goes up as 3 parts, not one per
            // 8 MiB write (request count and per-request cost). Two parts
            // upload at once, so chunking continues while a part is in
            // flight; a failed part is re-sent from its retained buffer.
            (Some(part), _) => w = w.chunk(part).concurrent(UPLOADS_IN_FLIGHT),
        }
        let w = w.await.map_err(|e| map_err(key, e))?;
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
            Err(BlobError::AlreadyExists(_)) => {
                w.abort().await;
                return Ok(PutOutcome::AlreadyPresent);
            }
            Err(e) => {
                w.abort().await;
                return Err(e);
            }
        }
        match w.close().await {
            Ok(_) => Ok(PutOutcome::Created),
            Err(BlobError::AlreadyExists(_)) => Ok(PutOutcome::AlreadyPresent),
            Err(e) => Err(e),
        }
    }

    /// Reads `len` bytes at `offset` of `key`, with one ranged request.
    ///
    /// # Errors
    /// [`BlobError::NotFound`] for an absent object, [`BlobError::ShortRead`]
    /// when it ends before `offset + len` (whether the backend ends the body
    /// early or refuses the range, as fs does), else [`BlobError::Backend`].
    pub async fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes, BlobError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        BlobCounters::add(&self.counters.get, 1);
        let short = |got: u64| BlobError::ShortRead {
            key: key.to_string(),
            expected: len,
            got,
        };
        let buf = match self.op.read_with(key).range(offset..offset + len).await {
            Ok(buf) => buf,
            Err(e) if e.kind() == ErrorKind::RangeNotSatisfied => return Err(short(0)),
            Err(e) => return Err(map_err(key, e)),
        };
        let bytes = buf.to_bytes();
        BlobCounters::add(&self.counters.bytes_read, bytes.len() as u64);
        if bytes.len() as u64 != len {
            return Err(short(bytes.len() as u64));
        }
        Ok(bytes)
    }

    /// Reads a whole object.
    pub async fn read(&self, key: &str) -> Result<Bytes, BlobError> {
        BlobCounters::add(&self.counters.get, 1);
        let bytes = self
            .op
            .read(key)
            .await
            .map_err(|e| map_err(key, e))?
            .to_bytes();
        BlobCounters::add(&self.counters.bytes_read, bytes.len() as u64);
        Ok(bytes)
    }

    /// Size of an object. On object stores a HEAD carries no error body, so a
    /// missing bucket also reads as not-found here; the startup probe rules
    /// that out before serving.
    pub async fn size(&self, key: &str) -> Result<u64, BlobError> {
        BlobCounters::add(&self.counters.head, 1);
        Ok(self
            .op
            .stat(key)
            .await
            .map_err(|e| map_err(key, e))?
            .content_length())
    }

    /// Keys and sizes of every object under `prefix` (recursive).
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, BlobError> {
        BlobCounters::add(&self.counters.list, 1);
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
        BlobCounters::add(&self.counters.delete, 1);
        self.op.delete(key).await.map_err(|e| map_err(key, e))
    }

    /// Counts the requests of one finished object write (see [`WriteModel`]).
    fn count_write(&self, written: u64) {
        let c = &self.counters;
        BlobCounters::add(&c.bytes_written, written);
        let (puts, posts) = self.write_model.requests(written);
        BlobCounters::add(&c.put, puts);
        BlobCounters::add(&c.post, posts);
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
/// [`close`](Self::close) returns, durable. Dropped or aborted, it leaves
/// nothing visible on object stores (the multipart upload is aborted); on fs
/// a partial file may remain, which has no pack trailer and is never indexed.
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
        let res = self.inner.close().await;
        self.store.count_write(self.written);
        res.map_err(|e| map_err(&self.key, e))?;
        self.store.sync_parent_dir(&self.key).await
    }

    /// Gives up the write. On object stores the upload is aborted; on fs the
    /// partial file may remain; it has no trailer, is never indexed, and GC
    /// removes it.
    pub async fn abort(mut self) {
        let aborts = self.store.write_model.abort_requests(self.written);
        BlobCounters::add(&self.store.counters.delete, aborts);
        if let Err(e) = self.inner.abort().await {
            tracing::debug!(key = %self.key, error = %e, "abort of blob write not supported");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_pack_is_three_parts() {
        let part = part_bytes_for(64 << 20) as u64;
        assert_eq!(part, 24 << 20);
        // A pack closes past its target (up to one 4 MiB ingest batch).
        let pack: u64 = (68 << 20) + (512 << 10);
        assert_eq!(pack.div_ceil(part), 3);
        assert_eq!(part_bytes_for(1 << 20), MIN_PART_BYTES);
    }

    #[tokio::test]
    async fn memory_round_trip_and_counts() {
        let s = BlobStore::memory().unwrap();
        assert_eq!(
            s.put_new("a/b", Bytes::from_static(b"hello"))
                .await
                .unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            s.put_new("a/b", Bytes::from_static(b"other"))
                .await
                .unwrap(),
            PutOutcome::AlreadyPresent
        );
        assert_eq!(&s.read("a/b").await.unwrap()[..], b"hello");
        assert_eq!(&s.read_range("a/b", 1, 3).await.unwrap()[..], b"ell");
        assert!(matches!(s.read("nope").await, Err(BlobError::NotFound(_))));
        let r = s.requests();
        assert_eq!((r.put, r.get), (2, 3));
    }
}
