//! Fault injection against the engine, on the real fs backend and real
//! RocksDB in a tempdir: a [`FaultPlan`] armed under the blob store's layers
//! fails or corrupts one chosen blob operation, and each test proves the
//! failure is detected and reported — never turned into wrong bytes, a
//! visible half-stored artifact, or lost data (invariants 1, 3, 5, 6).
//!
//! [`reads::store_with_one_silently_corrupted_chunk`] builds a store whose pack was
//! corrupted at rest without anyone noticing; it is the starting point for
//! scrub / fsck tests too.
//!
//! The fixtures are here; `writes.rs` holds failed and retried writes
//! (deposits, manifest objects, upload batches), `reads.rs` short and
//! corrupt reads and corruption at rest.

mod reads;
mod writes;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use eden_cas::auth::Principal;
use eden_cas::blobs::{Backend, BlobConfig, BlobStore, Fault, FaultPlan, FaultSpec, keys};
use eden_cas::engine::ingest::{MANIFEST_MAGIC, parse_artifact_id};
use eden_cas::engine::uploads::{CommitRequest, SessionRequest};
use eden_cas::engine::{Engine, EngineConfig, EngineError, ReadableArtifact};
use eden_cas::hash::Digest;
use eden_cas::ids::ArtifactId;
use futures_util::StreamExt;

use crate::support::engine::{EXP, chunks_of, engine_over, frames, manifest_entries, noise, req};

/// Every test body runs under this bound.
const TEST_LIMIT: Duration = Duration::from_secs(60);

/// Retries of the blob store under test (each costs ≥ 50 ms of backoff).
const RETRIES: usize = 2;

/// Pack header: chunk bytes start after it.
const PACK_HEADER_LEN: u64 = eden_cas::pack::HEADER_LEN;

/// An engine over a fresh data dir whose blob store follows `plan`.
pub struct Fixture {
    /// The data dir (`meta/`, `blobs/`), removed when the fixture drops.
    _dir: tempfile::TempDir,
    /// The engine.
    pub engine: Arc<Engine>,
    /// The fault plan under the engine's blob store.
    pub plan: Arc<FaultPlan>,
}

/// A fixture with the given verified-chunk cache size (0: off, the fs default).
pub fn fixture_with_cache(chunk_cache_bytes: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let mut cfg = BlobConfig::new(Backend::Fs {
        root: dir.path().join("blobs"),
    });
    cfg.retries = RETRIES;
    cfg.chunk_cache_bytes = chunk_cache_bytes;
    cfg.faults = Some(Arc::clone(&plan));
    let blobs = BlobStore::open(&cfg).unwrap();
    let ecfg = EngineConfig {
        pack_target_bytes: 2 << 20,
        ..EngineConfig::default()
    };
    let engine = engine_over(&dir.path().join("meta"), blobs, ecfg);
    Fixture {
        _dir: dir,
        engine,
        plan,
    }
}

/// A fixture with the fs defaults.
pub fn fixture() -> Fixture {
    fixture_with_cache(0)
}

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("test exceeded its time bound")
}

/// Deposits `data` in frames of `frame` bytes.
async fn deposit(e: &Arc<Engine>, data: &[u8], frame: usize) -> Result<String, EngineError> {
    let mut ingest = e.begin_ingest()?;
    for part in data.chunks(frame.max(1)) {
        ingest.push(Bytes::copy_from_slice(part)).await?;
    }
    let prepared = ingest.finish().await?;
    Ok(e.commit_artifact(prepared, req()).await?.id.to_string())
}

async fn record(e: &Arc<Engine>, id: &str) -> ReadableArtifact {
    e.readable_artifact(EXP, &Principal::Admin, &parse_artifact_id(id).unwrap())
        .await
        .expect("artifact recorded")
}

/// Artifact ids of the experiment, newest first.
fn artifacts(e: &Arc<Engine>) -> Vec<ArtifactId> {
    e.meta()
        .artifacts_newest_first(&EXP, None, 1000)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// What a verified read stream yielded.
pub struct Fetched {
    /// The bytes of the `Ok` items, in order.
    pub bytes: Vec<u8>,
    /// The `Err` items.
    pub errors: Vec<EngineError>,
    /// Items that came after the first error (must be none).
    pub after_error: usize,
}

/// Collects `read_range(start, end)` of artifact `id` to its end.
pub async fn fetch(e: &Arc<Engine>, id: &str, start: u64, end: u64) -> Fetched {
    let rec = record(e, id).await;
    let mut s = e.read_range(&rec, start, end);
    let mut out = Fetched {
        bytes: Vec::new(),
        errors: Vec::new(),
        after_error: 0,
    };
    while let Some(item) = s.next().await {
        if !out.errors.is_empty() {
            out.after_error += 1;
        }
        match item {
            Ok(b) => out.bytes.extend_from_slice(&b),
            Err(err) => out.errors.push(err),
        }
    }
    out
}

/// The whole artifact comes back byte-identical, without an error.
pub async fn assert_identical(e: &Arc<Engine>, id: &str, data: &[u8]) {
    let f = fetch(e, id, 0, data.len() as u64).await;
    assert!(f.errors.is_empty(), "fetch failed: {:?}", f.errors);
    assert_eq!(f.bytes.len(), data.len());
    assert!(f.bytes == data, "fetched bytes differ");
}

/// Range `[start, end)` of `data` fails: the stream ends with exactly one
/// error, and what it yielded before is a strict prefix of the range —
/// never fewer bytes passed off as complete, never a wrong byte.
pub async fn assert_fails(e: &Arc<Engine>, id: &str, data: &[u8], start: u64, end: u64) {
    let f = fetch(e, id, start, end).await;
    let want = &data[start as usize..end as usize];
    assert_eq!(f.errors.len(), 1, "exactly one error ends the stream");
    assert_eq!(f.after_error, 0, "nothing after the error");
    assert!(f.bytes.len() < want.len(), "a failed read yielded it all");
    assert!(f.bytes[..] == want[..f.bytes.len()], "wrong bytes yielded");
}

fn is_integrity(err: &EngineError) -> bool {
    matches!(err, EngineError::Integrity(_))
}

/// Chunks of `data` as the engine's default chunker cuts them.
/// The recorded copy of `rec`'s manifest in the blob store (its own object,
/// or its place in the manifest bundle of a group commit: a retry whose
/// chunks were all stored by the failed attempt is a small deposit) is
/// complete: magic, the CBOR head hashing to the manifest id, then every
/// entry of the manifest.
async fn assert_manifest_object_complete(e: &Arc<Engine>, rec: &ReadableArtifact) {
    let key = keys::manifest(&rec.manifest);
    let obj = e
        .manifest_copy(&rec.manifest)
        .await
        .unwrap()
        .expect("a manifest copy");
    assert!(
        obj.len() >= 12,
        "manifest object {key}: {} bytes",
        obj.len()
    );
    assert_eq!(&obj[..8], MANIFEST_MAGIC);
    let head_len = u32::from_le_bytes(obj[8..12].try_into().unwrap()) as usize;
    assert!(
        obj.len() >= 12 + head_len,
        "manifest object {key} cut in its head"
    );
    assert_eq!(Digest::of(&obj[12..12 + head_len]), rec.manifest);
    let m = e.meta().manifest(&rec.manifest).unwrap().unwrap();
    let mut entries = Vec::new();
    for seg in &m.segments {
        for en in e.meta().segment(&seg.id).unwrap().unwrap().entries {
            entries.extend_from_slice(en.id.as_bytes());
            entries.extend_from_slice(&en.len.to_le_bytes());
        }
    }
    assert_eq!(
        obj.len() - 12 - head_len,
        entries.len(),
        "manifest object {key}: entry bytes"
    );
    assert!(
        obj[12 + head_len..] == entries[..],
        "manifest object {key}: entries"
    );
}
