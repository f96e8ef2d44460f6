//! The engine: the only layer that combines blobs, metadata and auth.
//!
//! It owns ingest (stream → chunks → dedup → packs → commit), verified reads,
//! and the worker/group registry. It knows nothing of HTTP: callers get
//! values or an [`EngineError`], and `http/` decides what status that is.

pub mod ingest;
pub mod read;
pub mod registry;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::auth::token::{Secret, TokenHasher};
use crate::blobs::{BlobError, BlobStore};
use crate::chunking::ChunkerParams;
use crate::meta::{Meta, MetaError};

pub use ingest::{DepositReceipt, DepositRequest, Ingest, PreparedContent};
pub use read::ChunkStream;

/// Tunables of the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Chunker parameters for new deposits.
    pub chunker: ChunkerParams,
    /// A pack is closed once it reaches this size.
    pub pack_target_bytes: u64,
    /// zstd level for chunks (0 = never compress).
    pub compression_level: i32,
    /// Largest artifact accepted, inclusive.
    pub max_artifact_bytes: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            chunker: ChunkerParams::default(),
            pack_target_bytes: 64 << 20,
            compression_level: 1,
            max_artifact_bytes: 100 << 20,
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
    /// Stored data failed verification (corrupt or missing chunk).
    #[error("integrity failure: {0}")]
    Integrity(String),
    /// Metadata store failure.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// Blob store failure.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// A background task failed.
    #[error("internal: {0}")]
    Internal(String),
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
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The engine handle; share it as `Arc<Engine>`.
pub struct Engine {
    pub(crate) meta: Meta,
    pub(crate) blobs: BlobStore,
    pub(crate) cfg: EngineConfig,
    pub(crate) tokens: TokenHasher,
    pub(crate) admin_token: Secret,
    /// Serialises registry changes that must check-then-write (reserved group
    /// names, cycles) within this process.
    pub(crate) registry_lock: tokio::sync::Mutex<()>,
    /// Counters.
    pub stats: Stats,
}

const TOKEN_KEY: &str = "token-hash-key";

impl Engine {
    /// Builds an engine over opened stores.
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
        Ok(Arc::new(Engine {
            meta,
            blobs,
            cfg,
            tokens: TokenHasher::new(key),
            admin_token,
            registry_lock: tokio::sync::Mutex::new(()),
            stats: Stats::default(),
        }))
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The blob store (tests and tools inspect it).
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The metadata store.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }
}
