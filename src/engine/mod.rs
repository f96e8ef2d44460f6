//! The engine: the only layer that combines blobs, metadata and auth.
//!
//! It owns ingest (stream → chunks → dedup → packs → commit), verified reads,
//! artifact management (listing, grants, delete), resumable upload sessions,
//! the worker/group registry, metadata recovery (`recovery.rs`: reindex
//! from the blob store; `backup.rs`: backups and restore), garbage
//! collection and retention (`gc.rs`, with in-flight pins in `pins.rs`), and
//! integrity checking (`fsck`, the scrubber and self-healing of chunks marked
//! bad), per-experiment quotas (`quota.rs`), and the audit log (`audit.rs`). It knows nothing of HTTP: callers get values or an [`EngineError`],
//! and `http/` decides what status that is.

mod access;
pub mod artifacts;
pub mod audit;
pub mod backup;
pub mod fsck;
pub mod gc;
mod heal;
pub mod ingest;
pub mod labels;
mod manifest_object;
mod packcheck;
mod pins;
pub mod quota;
pub mod read;
mod readback;
pub mod recovery;
pub mod refs;
pub mod registry;
pub mod scrub;
pub mod stats;
pub mod timings;
pub mod uploads;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::auth::token::{Secret, TokenHasher};
use crate::blobs::{BlobError, BlobStore};
use crate::chunking::ChunkerParams;
use crate::hash::Digest;
use crate::ids::PackId;
use crate::meta::{Meta, MetaError};
use crate::pack::PackError;

pub use access::ReadableArtifact;
pub use fsck::FsckReport;
pub use ingest::{DepositReceipt, DepositRequest, Ingest, PreparedContent};
pub use quota::{DepositReservation, InFlight, QuotaConfig, QuotaView, Usage};
pub use read::ChunkStream;
pub use scrub::{DEFAULT_SCRUB_BYTES_PER_HOUR, ScrubReport};
pub use uploads::DEFAULT_UPLOAD_IDLE_TIMEOUT;

/// Tunables of the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Chunker parameters for new deposits.
    pub chunker: ChunkerParams,
    /// A pack is closed once it reaches this size.
    pub pack_target_bytes: u64,
    /// zstd level for chunks (0 = never compress).
    pub compression_level: i32,
    /// Whether chunks of float-like data may be stored as byte planes.
    pub byte_planes: bool,
    /// Largest artifact accepted, inclusive.
    pub max_artifact_bytes: u64,
    /// Default lifetimes of artifacts deposited without an expiry.
    pub retention: Retention,
    /// Per-experiment quotas on logical bytes held.
    pub quotas: QuotaConfig,
    /// The audit log's retention and batching (`audit.rs`).
    pub audit: audit::AuditConfig,
}

impl EngineConfig {
    /// The chunk codec settings of new deposits.
    pub fn codec_settings(&self) -> crate::codec::CodecSettings {
        crate::codec::CodecSettings {
            level: self.compression_level,
            byte_planes: self.byte_planes,
        }
    }
}

/// Default artifact lifetimes: per experiment, else store-wide, else none.
/// Applied at deposit when the depositor gave no expiry; an artifact past
/// its expiry is no longer served and GC removes it.
#[derive(Clone, Debug, Default)]
pub struct Retention {
    /// Lifetime of artifacts of experiments not listed below.
    pub default_ttl: Option<Duration>,
    /// Lifetime per experiment id.
    pub per_experiment: HashMap<String, Duration>,
}

impl Retention {
    /// The default lifetime for an artifact of `experiment`.
    pub fn ttl_for(&self, experiment: &str) -> Option<Duration> {
        self.per_experiment
            .get(experiment)
            .copied()
            .or(self.default_ttl)
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            chunker: ChunkerParams::default(),
            pack_target_bytes: 64 << 20,
            compression_level: crate::codec::DEFAULT_LEVEL,
            byte_planes: true,
            max_artifact_bytes: 100 << 20,
            retention: Retention::default(),
            quotas: QuotaConfig::default(),
            audit: audit::AuditConfig::default(),
        }
    }
}

/// Errors of the engine. Variants are outcomes a caller can act on; the
/// wrapped lower-layer errors are internal and never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No such artifact, worker or group (in this experiment).
    #[error("not found")]
    NotFound,
    /// The caller is authenticated but may not do this.
    #[error("forbidden")]
    Forbidden,
    /// The bearer is missing, malformed or wrong.
    #[error("unauthorized")]
    Unauthorized,
    /// The upload exceeds the size cap.
    #[error("payload exceeds {limit} bytes")]
    TooLarge {
        /// The cap, in bytes.
        limit: u64,
    },
    /// Input that cannot be accepted, with a client-safe reason.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A name failed validation.
    #[error("invalid name: {0}")]
    InvalidName(&'static str),
    /// A reserved identifier was used.
    #[error("reserved identifier")]
    Reserved,
    /// The change would create a membership cycle.
    #[error("cycle detected")]
    Cycle,
    /// The thing to create already exists.
    #[error("already exists")]
    AlreadyExists,
    /// A conditional change of a reference found it in another state than
    /// the condition named (a lost compare-and-swap); nothing changed.
    #[error("precondition failed")]
    PreconditionFailed,
    /// Stored data failed verification, or data that committed records
    /// depend on is gone; [`IntegrityError`] says which.
    #[error("integrity failure: {0}")]
    Integrity(#[from] IntegrityError),
    /// The upload session expired or ended; the reason is client-safe.
    #[error("upload session ended: {0}")]
    SessionEnded(String),
    /// An uploaded chunk frame is malformed or does not hash to its id;
    /// the reason is client-safe.
    #[error("chunk mismatch: {0}")]
    ChunkMismatch(String),
    /// A commit names chunks that are not present for the caller.
    #[error("{total} chunks missing")]
    ChunksMissing {
        /// The first missing chunk ids, in commit order (at most 16).
        first: Vec<crate::hash::Digest>,
        /// How many listed chunks are missing in all.
        total: u64,
    },
    /// The content's BLAKE3 differs from the one the client claimed.
    #[error("digest mismatch")]
    DigestMismatch {
        /// What the client claimed.
        claimed: crate::hash::Digest,
        /// What the content hashes to.
        actual: crate::hash::Digest,
    },
    /// A chunk batch exceeds what one request may carry.
    #[error("chunk batch exceeds {limit}")]
    BatchTooLarge {
        /// The limit, with its unit (client-safe).
        limit: String,
    },
    /// The experiment's quota cannot hold the bytes asked for.
    #[error("quota of {limit} bytes exceeded ({used} used, {wanted} more asked)")]
    QuotaExceeded {
        /// The experiment's quota, in bytes.
        limit: u64,
        /// Bytes held or reserved already.
        used: u64,
        /// Bytes this operation asked for.
        wanted: u64,
    },
    /// Metadata store failure.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// Blob store failure.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// This process no longer holds the blob store's writer lease
    /// (`blobs/lease.rs`): it must not write.
    #[error("blob store lease lost: {0}")]
    LeaseLost(String),
    /// A background task failed.
    #[error("internal: {0}")]
    Internal(String),
}

/// What is wrong with stored data. Callers branch on the variant (fsck,
/// GC, the read path); the text is for logs and operator reports only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityError {
    /// A pack object the index still names is gone.
    #[error("pack {} missing", pack_key(*pack))]
    PackMissing {
        /// Pack id.
        pack: PackId,
    },
    /// A pack object ends before bytes the index places in it.
    #[error("pack {} truncated ({got} of {expected} bytes read)", pack_key(*pack))]
    Truncated {
        /// Pack id.
        pack: PackId,
        /// Bytes asked for.
        expected: u64,
        /// Bytes the object had.
        got: u64,
    },
    /// A pack's trailer or footer, or a chunk copy in it, fails
    /// verification.
    #[error("{source} (pack {})", pack_key(*pack))]
    Corrupt {
        /// Pack id.
        pack: PackId,
        /// What failed.
        #[source]
        source: PackError,
    },
    /// A record that committed data depends on is absent from metadata.
    #[error("{0} missing")]
    MissingRecord(Record),
    /// Stored records disagree with each other or with the objects they
    /// describe (sizes, digests, lengths).
    #[error("{0}")]
    Inconsistent(String),
}

/// A metadata record, by id, for [`IntegrityError::MissingRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Record {
    /// A manifest (`manifests-v1`).
    Manifest(Digest),
    /// A segment (`segments-v1`).
    Segment(Digest),
    /// A chunk's index entry (`chunks-v1`).
    ChunkIndex(Digest),
}

impl std::fmt::Display for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Record::Manifest(id) => write!(f, "manifest {id}"),
            Record::Segment(id) => write!(f, "segment {id}"),
            Record::ChunkIndex(id) => write!(f, "index entry of chunk {id}"),
        }
    }
}

fn pack_key(pack: PackId) -> String {
    crate::blobs::keys::pack(pack)
}

impl EngineError {
    /// The engine's error for a failed read of pack `pack`: a fault of the
    /// pack is an [`IntegrityError`], a blob store failure stays one.
    pub fn from_pack(pack: PackId, e: PackError) -> Self {
        let integrity = match e {
            PackError::Blob(b) => return EngineError::Blob(b),
            PackError::Interrupted => return EngineError::Internal(e.to_string()),
            PackError::Missing => IntegrityError::PackMissing { pack },
            PackError::Truncated { expected, got } => IntegrityError::Truncated {
                pack,
                expected,
                got,
            },
            source => IntegrityError::Corrupt { pack, source },
        };
        EngineError::Integrity(integrity)
    }

    /// A committed record's dependency `record` is missing.
    pub fn missing(record: Record) -> Self {
        EngineError::Integrity(IntegrityError::MissingRecord(record))
    }

    /// Records disagree; `detail` says how (operator-facing).
    pub fn inconsistent(detail: impl Into<String>) -> Self {
        EngineError::Integrity(IntegrityError::Inconsistent(detail.into()))
    }

    /// Whether stored data failed verification or is gone.
    pub fn is_integrity(&self) -> bool {
        matches!(self, EngineError::Integrity(_))
    }
}

/// Runs a blocking closure (RocksDB, hashing) off the async executor.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, EngineError>
where
    F: FnOnce() -> Result<T, EngineError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Internal(format!("blocking task failed: {e}")))?
}

/// Store-wide counters, exported on `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Artifacts committed since start.
    pub deposits: AtomicU64,
    /// Bytes received by committed deposits.
    pub logical_bytes: AtomicU64,
    /// Raw bytes of chunks stored for the first time.
    pub new_raw_bytes: AtomicU64,
    /// Pack bytes written.
    pub pack_bytes_written: AtomicU64,
    /// Packs written.
    pub packs_written: AtomicU64,
    /// Bytes served by verified reads.
    pub bytes_served: AtomicU64,
    /// Chunks that failed verification.
    pub integrity_failures: AtomicU64,
    /// Chunks served from the verified-chunk cache.
    pub chunk_cache_hits: AtomicU64,
    /// Chunks read from the blob store because the cache lacked them.
    pub chunk_cache_misses: AtomicU64,
    /// Garbage collections completed.
    pub gc_runs: AtomicU64,
    /// Pack bytes reclaimed by garbage collection (deleted minus rewritten).
    pub gc_bytes_reclaimed: AtomicU64,
    /// Packs deleted by garbage collection.
    pub gc_packs_deleted: AtomicU64,
    /// Chunk index entries removed by garbage collection.
    pub gc_chunks_removed: AtomicU64,
    /// Expired artifacts removed.
    pub artifacts_expired: AtomicU64,
    /// Duration of the last garbage collection, in milliseconds (gauge).
    pub gc_last_duration_ms: AtomicU64,
    /// Bytes reclaimed by the last garbage collection (gauge).
    pub gc_last_reclaimed_bytes: AtomicU64,
    /// Reads that found a pack gone (compacted) and re-resolved its chunks.
    pub read_relocations: AtomicU64,
    /// Pack bytes read by the scrubber.
    pub scrub_bytes: AtomicU64,
    /// Packs verified by the scrubber.
    pub scrub_packs: AtomicU64,
    /// Chunks the scrubber found corrupt (and marked bad).
    pub scrub_corrupt_chunks: AtomicU64,
    /// Durations of GC runs, their compaction phase and scrub passes.
    pub timings: timings::Timings,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The engine handle; share it as `Arc<Engine>`.
pub struct Engine {
    // Private to the engine: `http/` reaches storage only through methods.
    meta: Meta,
    blobs: BlobStore,
    pub(crate) cfg: EngineConfig,
    pub(crate) tokens: TokenHasher,
    pub(crate) admin_token: Secret,
    /// One commit (or abandon) at a time per upload session.
    pub(crate) session_locks:
        std::sync::Mutex<HashMap<crate::ids::SessionId, Weak<tokio::sync::Mutex<()>>>>,
    /// Serialises conditional changes of chunk index entries (GC removal and
    /// relocation, scrub marking a chunk bad) with each other and with
    /// indexing new packs, so each change applies only if the entry still
    /// names the location it was decided for.
    pub(crate) index_lock: std::sync::Mutex<()>,
    /// What in-flight operations reference (GC's protection, `pins.rs`).
    pub(crate) pins: Arc<pins::Pins>,
    /// Packs being checked in the background after a read found them
    /// missing or truncated (`heal.rs`), one check per pack at a time.
    pub(crate) pack_checks: std::sync::Mutex<std::collections::HashSet<PackId>>,
    /// One garbage collection at a time.
    pub(crate) gc_lock: Arc<tokio::sync::Mutex<()>>,
    /// Idle time after which an upload session expires, in milliseconds.
    pub(crate) upload_idle_ms: AtomicU64,
    /// Per-experiment quota usage (`quota.rs`).
    pub(crate) quotas: Arc<quota::Quotas>,
    /// The blob store's writer lease, when this process took one.
    pub(crate) lease: std::sync::OnceLock<Arc<crate::blobs::lease::Lease>>,
    /// Serialises updates of the stats history (`stats.rs`).
    pub(crate) history_lock: std::sync::Mutex<()>,
    /// The audit log's recorder (`audit.rs`).
    pub(crate) audit: Arc<audit::Recorder>,
    /// Group commit of small deposits (`ingest/group.rs`).
    pub(crate) group: ingest::group::GroupCommitter,
    /// Counters.
    pub stats: Stats,
}

const TOKEN_KEY: &str = "token-hash-key";

impl Engine {
    /// Builds an engine over opened stores.
    ///
    /// # Errors
    /// [`EngineError::BadRequest`] for invalid chunker parameters; metadata
    /// failures reading or creating the token key and quota usage.
    pub fn new(
        meta: Meta,
        blobs: BlobStore,
        cfg: EngineConfig,
        admin_token: Secret,
    ) -> Result<Arc<Self>, EngineError> {
        cfg.chunker
            .validate()
            .map_err(|e| EngineError::BadRequest(e.to_string()))?;
        let key = match meta.system(TOKEN_KEY)? {
            Some(k) => <[u8; 32]>::try_from(&k[..])
                .map_err(|_| EngineError::Internal("token key has wrong length".into()))?,
            None => {
                let k = TokenHasher::generate_key();
                meta.set_system(TOKEN_KEY, &k)?;
                k
            }
        };
        let quotas = Arc::new(quota::Quotas::load(cfg.quotas.clone(), &meta)?);
        let audit = Arc::new(audit::Recorder::new(cfg.audit.clone()));
        Ok(Arc::new(Engine {
            audit,
            quotas,
            meta,
            blobs,
            cfg,
            tokens: TokenHasher::new(key),
            admin_token,
            session_locks: std::sync::Mutex::new(HashMap::new()),
            index_lock: std::sync::Mutex::new(()),
            pins: Arc::new(pins::Pins::default()),
            pack_checks: std::sync::Mutex::new(std::collections::HashSet::new()),
            gc_lock: Arc::new(tokio::sync::Mutex::new(())),
            upload_idle_ms: AtomicU64::new(DEFAULT_UPLOAD_IDLE_TIMEOUT.as_millis() as u64),
            lease: std::sync::OnceLock::new(),
            history_lock: std::sync::Mutex::new(()),
            group: ingest::group::GroupCommitter::default(),
            stats: Stats::default(),
        }))
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The blob store, for tests and recovery tools that inspect storage
    /// directly. `http/` never calls it: requests go through the engine's
    /// methods (an architecture test in `http/mod.rs` keeps it so).
    #[doc(hidden)]
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The metadata store, for tests and recovery tools (see [`Engine::blobs`]).
    #[doc(hidden)]
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Whether the metadata store answers reads (`/readyz`).
    pub async fn ready(&self) -> bool {
        let meta = self.meta.clone();
        tokio::task::spawn_blocking(move || meta.system(TOKEN_KEY).is_ok())
            .await
            .unwrap_or(false)
    }

    /// Blob store request counters since start (`/metrics`).
    pub fn blob_requests(&self) -> crate::blobs::RequestCounts {
        self.blobs.requests()
    }

    /// Bytes the verified-chunk cache holds (`/metrics`).
    pub fn chunk_cache_bytes(&self) -> u64 {
        self.blobs.chunk_cache().bytes()
    }

    /// RocksDB's estimate of the chunk index entries (`/metrics`).
    pub fn estimated_chunks(&self) -> u64 {
        self.meta.estimated_chunks()
    }

    /// The blob store as one line for messages (`s3://bucket/prefix`, …).
    pub fn describe_blobs(&self) -> String {
        self.blobs.describe()
    }

    /// Flushes the metadata store's memtables to disk (before a process
    /// exits).
    ///
    /// # Errors
    /// `Meta` when RocksDB refuses; `Internal` when the blocking task fails.
    pub async fn flush(&self) -> Result<(), EngineError> {
        let meta = self.meta.clone();
        blocking(move || Ok(meta.flush()?)).await
    }

    /// Rebuilds the chunk index and manifests from the blob store
    /// (`recovery.rs`) and reports what it found.
    ///
    /// # Errors
    /// Blob or metadata failures while listing, reading or writing.
    pub async fn reindex(&self) -> Result<recovery::ReindexReport, EngineError> {
        recovery::reindex(&self.meta, &self.blobs).await
    }

    /// Sets how long an upload session may stay idle before it expires
    /// (`upload-idle-timeout`, default 24 h). Takes effect at once, for
    /// existing sessions too.
    pub fn set_upload_idle_timeout(&self, idle: Duration) {
        let ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX).max(1);
        self.upload_idle_ms.store(ms, Ordering::Relaxed);
    }

    /// Hands the engine the blob store lease this process holds: from then
    /// on deposits and commits are refused once it is lost, and GC checks it
    /// against the blob store before each destructive phase.
    pub fn set_lease(&self, lease: Arc<crate::blobs::lease::Lease>) {
        let _ = self.lease.set(lease);
    }

    /// Refuses writes once the lease is known lost (no I/O; no lease: ok).
    pub(crate) fn check_writer(&self) -> Result<(), EngineError> {
        match self.lease.get() {
            Some(l) if l.is_lost() => Err(EngineError::LeaseLost(
                "this process no longer holds the blob store lease".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Checks against the blob store that the lease is still held (GC, before
    /// deleting anything). A blob error counts as not held: deleting is
    /// never worth the doubt.
    pub(crate) async fn check_lease(&self) -> Result<(), EngineError> {
        match self.lease.get() {
            Some(l) => l
                .check()
                .await
                .map_err(|e| EngineError::LeaseLost(e.to_string())),
            None => Ok(()),
        }
    }

    /// Holds (`true`) or releases group commits of small deposits: while
    /// held they queue up, so a test can build a group of a known size.
    #[doc(hidden)]
    pub fn hold_group_commits(self: &Arc<Self>, held: bool) {
        ingest::group::GroupCommitter::hold(self, held);
    }

    /// Small deposits waiting for their group commit (tests).
    #[doc(hidden)]
    pub fn queued_group_deposits(&self) -> usize {
        self.group.queued()
    }

    /// The current upload idle timeout.
    pub fn upload_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.upload_idle_ms.load(Ordering::Relaxed))
    }
}
