//! Fault injection against the engine, on the real fs backend and real
//! RocksDB in a tempdir: a [`FaultPlan`] armed under the blob store's layers
//! fails or corrupts one chosen blob operation, and each test proves the
//! failure is detected and reported — never turned into wrong bytes, a
//! visible half-stored artifact, or lost data (invariants 1, 3, 5, 6).
//!
//! [`store_with_one_silently_corrupted_chunk`] builds a store whose pack was
//! corrupted at rest without anyone noticing; it is the starting point for
//! scrub / fsck tests too.

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
use eden_cas::meta::records::ManifestEntry;
use futures_util::StreamExt;

use crate::support::engine::{EXP, chunks_of, engine_over, frames, noise, req};

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
/// The manifest object of `rec` in the blob store is complete: magic, the
/// CBOR head hashing to the manifest id, then every entry of the manifest.
async fn assert_manifest_object_complete(e: &Arc<Engine>, rec: &ReadableArtifact) {
    let key = keys::manifest(&rec.manifest);
    let obj = e.blobs().read(&key).await.unwrap();
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

/// A write fault armed during a deposit: the deposit fails, nothing new
/// becomes visible, an artifact stored before is intact; disarmed, the same
/// deposit succeeds and reads back byte-identical. Returns the new id.
async fn deposit_survives(fx: &Fixture, spec: FaultSpec, new_chunks_unindexed: bool) -> String {
    let e = &fx.engine;
    let before = noise(300_000, 1);
    let before_id = deposit(e, &before, 64 << 10).await.unwrap();
    let visible = artifacts(e);
    let data = noise(700_000, 2);

    fx.plan.arm(spec.clone());
    let err = deposit(e, &data, 64 << 10).await.unwrap_err();
    assert!(
        matches!(err, EngineError::Blob(_)),
        "{spec:?}: a blob error, got {err}"
    );
    assert_eq!(fx.plan.fired(), 1, "{spec:?} fired once");
    assert_eq!(artifacts(e), visible, "{spec:?}: nothing new visible");
    if new_chunks_unindexed {
        for c in chunks_of(&data) {
            assert!(
                e.meta().chunk(&Digest::of(&c)).unwrap().is_none(),
                "{spec:?}: a chunk of a failed pack is indexed (invariant 3)"
            );
        }
    }
    assert_identical(e, &before_id, &before).await;

    assert_eq!(fx.plan.disarm(), 1);
    let id = deposit(e, &data, 64 << 10).await.unwrap();
    assert_identical(e, &id, &data).await;
    assert_identical(e, &before_id, &before).await;
    assert_eq!(artifacts(e).len(), visible.len() + 1);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_error_in_a_pack_fails_the_deposit_and_loses_nothing() {
    bounded(async {
        for spec in [
            FaultSpec::new(Fault::WriteError, keys::PACKS),
            FaultSpec::new(Fault::CloseError, keys::PACKS),
        ] {
            let fx = fixture();
            deposit_survives(&fx, spec, true).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_error_on_the_manifest_object_fails_the_deposit_and_loses_nothing() {
    bounded(async {
        // The first write call fails before a byte reaches the backend.
        let fx = fixture();
        let id = deposit_survives(
            &fx,
            FaultSpec::new(Fault::WriteError, keys::MANIFESTS),
            false,
        )
        .await;
        assert_manifest_object_complete(&fx.engine, &record(&fx.engine, &id).await).await;
    })
    .await
}

/// A manifest write that fails once the backend has created the object (a
/// later write call, or the close) must not leave a partial object that the
/// next deposit of the same content takes for the complete manifest: the
/// blob store's manifests are what rebuilds the metadata.
async fn no_partial_manifest_object_after(spec: FaultSpec) {
    let fx = fixture();
    let id = deposit_survives(&fx, spec, false).await;
    let rec = record(&fx.engine, &id).await;
    assert_manifest_object_complete(&fx.engine, &rec).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_write_failing_midway_leaves_no_partial_object() {
    bounded(no_partial_manifest_object_after(
        FaultSpec::new(Fault::WriteError, keys::MANIFESTS).skip(1),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_close_failing_leaves_no_partial_object() {
    bounded(no_partial_manifest_object_after(FaultSpec::new(
        Fault::CloseError,
        keys::MANIFESTS,
    )))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_write_error_is_retried_and_absorbed() {
    bounded(async {
        let fx = fixture();
        let e = &fx.engine;
        let data = noise(500_000, 3);
        let retries = e.blobs().requests().retries;
        fx.plan
            .arm(FaultSpec::new(Fault::WriteError, keys::PACKS).transient());
        let id = deposit(e, &data, 64 << 10).await.unwrap();
        assert_eq!(fx.plan.disarm(), 1);
        assert_eq!(e.blobs().requests().retries - retries, 1);
        assert_identical(e, &id, &data).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_write_error_that_persists_exhausts_the_retries() {
    bounded(async {
        let fx = fixture();
        let spec = FaultSpec::new(Fault::WriteError, keys::PACKS)
            .transient()
            .every_time();
        let e = &fx.engine;
        let data = noise(300_000, 4);
        fx.plan.arm(spec);
        let err = deposit(e, &data, 64 << 10).await.unwrap_err();
        assert!(matches!(err, EngineError::Blob(_)), "{err}");
        assert_eq!(fx.plan.disarm(), 1 + RETRIES as u64, "each attempt failed");
        assert!(artifacts(e).is_empty());
        let id = deposit(e, &data, 64 << 10).await.unwrap();
        assert_identical(e, &id, &data).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_error_in_an_upload_batch_keeps_the_session_usable() {
    bounded(async {
        let fx = fixture();
        let e = &fx.engine;
        let admin = Principal::Admin;
        let data = noise(400_000, 5);
        let chunks = chunks_of(&data);
        let ids: Vec<Digest> = chunks.iter().map(|c| Digest::of(c)).collect();
        let view = e
            .create_upload(EXP, &admin, SessionRequest::default())
            .await
            .unwrap();
        let sid = view.id;

        for spec in [
            FaultSpec::new(Fault::WriteError, keys::PACKS),
            FaultSpec::new(Fault::CloseError, keys::PACKS),
        ] {
            fx.plan.arm(spec.clone());
            let mut batch = e.begin_chunk_batch(EXP, &admin, &sid).await.unwrap();
            let res = match batch.push(frames(&chunks)).await {
                Ok(()) => batch.finish().await,
                Err(err) => Err(err),
            };
            let err = res.unwrap_err();
            assert!(matches!(err, EngineError::Blob(_)), "{spec:?}: {err}");
            assert_eq!(fx.plan.disarm(), 1, "{spec:?}");
            // The session lives on and received nothing.
            let missing = e.upload_missing(EXP, &admin, &sid, ids.clone()).await;
            assert_eq!(missing.unwrap(), ids, "{spec:?}: all chunks still missing");
            assert!(
                e.meta()
                    .upload_chunks(&sid, &ids)
                    .unwrap()
                    .iter()
                    .all(Option::is_none),
                "{spec:?}: no chunk pinned"
            );
            for id in &ids {
                assert!(e.meta().chunk(id).unwrap().is_none(), "{spec:?}: indexed");
            }
        }

        let mut batch = e.begin_chunk_batch(EXP, &admin, &sid).await.unwrap();
        batch.push(frames(&chunks)).await.unwrap();
        let outcome = batch.finish().await.unwrap();
        assert_eq!(outcome.received, chunks.len() as u64);
        assert!(
            e.upload_missing(EXP, &admin, &sid, ids.clone())
                .await
                .unwrap()
                .is_empty()
        );

        let commit = || CommitRequest {
            chunks: chunks
                .iter()
                .map(|c| ManifestEntry {
                    id: Digest::of(c),
                    len: c.len() as u32,
                })
                .collect(),
            blake3: Digest::of(&data),
            content_type: None,
            filename: None,
        };
        // The commit reads the content back (verified) and writes the
        // manifest: a fault in either fails it and records nothing.
        for spec in [
            FaultSpec::new(Fault::ReadBitFlip { at: 100 }, keys::PACKS),
            FaultSpec::new(Fault::ShortRead, keys::PACKS),
            FaultSpec::new(Fault::WriteError, keys::MANIFESTS),
        ] {
            fx.plan.arm(spec.clone());
            let err = e
                .commit_upload(EXP, &admin, &sid, commit())
                .await
                .unwrap_err();
            assert!(
                matches!(err, EngineError::Integrity(_) | EngineError::Blob(_)),
                "{spec:?}: {err}"
            );
            assert_eq!(fx.plan.disarm(), 1, "{spec:?}");
            assert!(artifacts(e).is_empty(), "{spec:?}: nothing recorded");
            e.upload_status(EXP, &admin, &sid, None, 10)
                .await
                .expect("the session is still live");
            // A readback that proved a copy bad marked it at once (heal at
            // once): the session reports it missing, and sending it again
            // stores a fresh copy — what a client does after a failed commit.
            let missing = e
                .upload_missing(EXP, &admin, &sid, ids.clone())
                .await
                .unwrap();
            if !missing.is_empty() {
                let again: Vec<Vec<u8>> = chunks
                    .iter()
                    .filter(|c| missing.contains(&Digest::of(c)))
                    .cloned()
                    .collect();
                let mut batch = e.begin_chunk_batch(EXP, &admin, &sid).await.unwrap();
                batch.push(frames(&again)).await.unwrap();
                batch.finish().await.unwrap();
            }
        }

        let receipt = e.commit_upload(EXP, &admin, &sid, commit()).await.unwrap();
        assert_identical(e, &receipt.id.to_string(), &data).await;
        assert_manifest_object_complete(e, &record(e, &receipt.id.to_string()).await).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_read_ends_the_fetch_with_an_error() {
    bounded(async {
        let fx = fixture();
        let e = &fx.engine;
        let small = noise(300_000, 6);
        let small_id = deposit(e, &small, 64 << 10).await.unwrap();
        // Several packs (sealed at 4 MiB ingest batches past the 2 MiB
        // target), so a fetch is several ranged reads.
        let large = noise(10 << 20, 7);
        let large_id = deposit(e, &large, 1 << 20).await.unwrap();
        assert!(fx.engine.meta().packs().unwrap().len() >= 3);

        let cases: [(&str, &[u8], u64, u64, u64); 4] = [
            (&small_id, &small, 0, small.len() as u64, 0),
            (&small_id, &small, 1000, 250_000, 0),
            (&large_id, &large, 0, large.len() as u64, 0),
            (&large_id, &large, 0, large.len() as u64, 1),
        ];
        for (id, data, start, end, skip) in cases {
            fx.plan
                .arm(FaultSpec::new(Fault::ShortRead, keys::PACKS).skip(skip));
            let f = fetch(e, id, start, end).await;
            assert_eq!(fx.plan.disarm(), 1);
            let want = &data[start as usize..end as usize];
            assert_eq!(f.errors.len(), 1, "exactly one error ends the stream");
            assert!(is_integrity(&f.errors[0]), "{}", f.errors[0]);
            assert_eq!(f.after_error, 0);
            assert!(f.bytes.len() < want.len());
            assert!(f.bytes[..] == want[..f.bytes.len()], "wrong bytes yielded");
        }
        assert_identical(e, &small_id, &small).await;
        assert_identical(e, &large_id, &large).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bit_flip_on_read_is_an_integrity_error() {
    bounded(async {
        // With the verified-chunk cache off (fs default) and on: a corrupt
        // read must not poison the cache either.
        for cache in [0, 16 << 20] {
            let fx = fixture_with_cache(cache);
            let e = &fx.engine;
            let data = noise(600_000, 8);
            let id = deposit(e, &data, 64 << 10).await.unwrap();
            let failures = e.stats.integrity_failures.load(Ordering::Relaxed);

            fx.plan
                .arm(FaultSpec::new(Fault::ReadBitFlip { at: 100 }, keys::PACKS));
            let f = fetch(e, &id, 0, data.len() as u64).await;
            assert_eq!(fx.plan.disarm(), 1, "cache {cache}");
            assert_eq!(f.errors.len(), 1, "cache {cache}");
            assert!(is_integrity(&f.errors[0]), "{}", f.errors[0]);
            assert!(f.bytes[..] == data[..f.bytes.len()], "wrong bytes yielded");
            assert!(f.bytes.len() < data.len());
            assert_eq!(
                e.stats.integrity_failures.load(Ordering::Relaxed),
                failures + 1,
                "cache {cache}"
            );
            // The stored data was never damaged.
            assert_identical(e, &id, &data).await;
        }
    })
    .await
}

/// A store with one artifact whose pack was silently corrupted at rest (one
/// bit of one chunk flipped on its way to the disk), next to an intact one.
pub struct CorruptStore {
    /// The engine, its data dir and its (disarmed) fault plan.
    pub fx: Fixture,
    /// The artifact holding the corrupt chunk, and its bytes as deposited.
    pub id: String,
    /// See [`CorruptStore::id`].
    pub data: Vec<u8>,
    /// An artifact deposited before, sharing no chunk with `data`: intact.
    pub good_id: String,
    /// See [`CorruptStore::good_id`].
    pub good: Vec<u8>,
    /// The corrupt chunk.
    pub chunk: Digest,
    /// Its byte range in `data`.
    pub chunk_range: (u64, u64),
    /// Key of the pack holding it.
    pub pack_key: String,
    /// Offset in that pack of the flipped byte.
    pub flipped_at: u64,
}

/// Builds a [`CorruptStore`]: the deposit succeeds (nothing can know yet)
/// and the plan is disarmed again on return.
pub async fn store_with_one_silently_corrupted_chunk() -> CorruptStore {
    let fx = fixture();
    let e = &fx.engine;
    let good = noise(300_000, 9);
    let good_id = deposit(e, &good, 64 << 10).await.unwrap();
    let data = noise(400_000, 10);
    // Random data is stored raw: this is byte 1000 of the first chunk.
    let flipped_at = PACK_HEADER_LEN + 1000;
    fx.plan.arm(FaultSpec::new(
        Fault::WriteBitFlip { at: flipped_at },
        keys::PACKS,
    ));
    let id = deposit(e, &data, 64 << 10).await.unwrap();
    assert_eq!(fx.plan.disarm(), 1, "the pack was corrupted");

    let rec = record(e, &id).await;
    let m = e.meta().manifest(&rec.manifest).unwrap().unwrap();
    let mut pos = 0u64;
    let mut hit = None;
    for seg in &m.segments {
        for en in e.meta().segment(&seg.id).unwrap().unwrap().entries {
            let loc = e.meta().chunk(&en.id).unwrap().unwrap();
            let end = pos + u64::from(en.len);
            if (loc.offset..loc.offset + u64::from(loc.stored_len)).contains(&flipped_at) {
                hit = Some((en.id, (pos, end), keys::pack(loc.pack)));
            }
            pos = end;
        }
    }
    let (chunk, chunk_range, pack_key) = hit.expect("a chunk covers the flipped byte");
    CorruptStore {
        fx,
        id,
        data,
        good_id,
        good,
        chunk,
        chunk_range,
        pack_key,
        flipped_at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bit_flip_at_rest_fails_every_fetch_touching_the_chunk() {
    bounded(async {
        let cs = store_with_one_silently_corrupted_chunk().await;
        let e = &cs.fx.engine;
        let (lo, hi) = cs.chunk_range;
        let len = cs.data.len() as u64;
        assert!(hi < len, "the corrupt chunk is not the last one");
        let failures = e.stats.integrity_failures.load(Ordering::Relaxed);

        // The pack on disk really differs from what was deposited.
        let stored = e
            .blobs()
            .read_range(&cs.pack_key, cs.flipped_at, 1)
            .await
            .unwrap();
        let original = cs.data[(lo + cs.flipped_at - PACK_HEADER_LEN) as usize];
        assert_eq!(stored[0], original ^ 0x01);

        let touching = [
            (0, len),
            (lo, hi),
            (lo + 500, lo + 501),
            (hi - 1, len),
            (0, lo + 1),
        ];
        for (start, end) in touching {
            let f = fetch(e, &cs.id, start, end).await;
            assert!(
                f.errors.iter().any(is_integrity),
                "[{start}, {end}): {:?}",
                f.errors
            );
            assert_fails(e, &cs.id, &cs.data, start, end).await;
        }
        assert!(
            e.stats.integrity_failures.load(Ordering::Relaxed) >= failures + touching.len() as u64
        );
        // Ranges clear of the chunk, and the other artifact, are intact.
        let f = fetch(e, &cs.id, hi, len).await;
        assert!(f.errors.is_empty() && f.bytes[..] == cs.data[hi as usize..]);
        if lo > 0 {
            let f = fetch(e, &cs.id, 0, lo).await;
            assert!(f.errors.is_empty() && f.bytes[..] == cs.data[..lo as usize]);
        }
        assert_identical(e, &cs.good_id, &cs.good).await;
        assert_eq!(cs.chunk, Digest::of(&cs.data[lo as usize..hi as usize]));
    })
    .await
}
