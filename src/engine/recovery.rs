//! Metadata recovery from the blob store alone (`eden-cas reindex`; run
//! automatically when the metadata directory is new or a reindex was
//! interrupted, and by `eden-cas restore` after the backup is in place).
//!
//! The blob store holds enough to rebuild the chunk index (`chunks-v1`,
//! `packs-v1`: every complete pack ends with a footer listing its chunks)
//! and the content of every committed artifact (`manifests/`: manifest plus
//! chunk list, hence `segments-v1` and `manifests-v1`). It does not hold
//! artifact records, grants, the registry, the token-hashing key or upload
//! sessions: those come from a backup (`backup.rs`,
//! `docs/operations/recovery.md`).
//!
//! Keeps invariant 3: chunks are indexed only from the footer of a pack
//! with a valid trailer; a pack without one is an interrupted write that was
//! never indexed, and is reported and left alone (GC removes it). Keeps
//! invariant 8: one pack footer at a time plus a few cached ones, one
//! manifest segment at a time, and one small entry per pack and per
//! manifest object listed; every chunk decision is a RocksDB lookup, never a
//! table of chunks in memory. Idempotent: a second run changes nothing. The
//! `reindex-pending` marker is set first and cleared last, after a flush, so
//! a crash part-way makes the next open run it again.
//!
//! Not for a store that is being written to: it runs offline, or while a
//! server opens, before it serves.

mod manifests;
mod packs;

use std::fmt;

use super::{EngineError, blocking};
use crate::blobs::BlobStore;
use crate::hash::Digest;
use crate::meta::Meta;
use manifests::{FoundManifest, restore_manifests};
use packs::{drop_stale, reindex_packs};

/// `system-v1` key present while a reindex is owed (new metadata directory,
/// or a reindex that has not finished).
pub const REINDEX_PENDING: &str = "reindex-pending";

/// An object the reindex could not use, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectProblem {
    /// Blob key.
    pub key: String,
    /// Why it was not used.
    pub reason: String,
}

/// A manifest in the blob store that no artifact record references: the
/// content of an artifact committed after the backup that was restored (or
/// of a deleted artifact not yet collected). Its bytes are intact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnclaimedManifest {
    /// Manifest id.
    pub id: Digest,
    /// Content size in bytes.
    pub size: u64,
    /// BLAKE3 of the content.
    pub blake3: Digest,
    /// Chunks of the content.
    pub chunks: u64,
}

/// What a reindex found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReindexReport {
    /// Pack objects listed.
    pub packs_scanned: u64,
    /// Complete packs whose footers were indexed.
    pub packs_indexed: u64,
    /// Chunk index entries after the run.
    pub chunks_indexed: u64,
    /// Chunk index entries added or corrected.
    pub entries_written: u64,
    /// Chunk index entries removed: their pack is gone or incomplete.
    pub entries_dropped: u64,
    /// Pack records removed: the pack is gone or incomplete.
    pub pack_records_dropped: u64,
    /// Packs without a valid trailer (interrupted writes; GC deletes them).
    pub partial_packs: Vec<String>,
    /// Packs with a valid trailer whose footer does not check out (left as
    /// they are, entries naming them kept; `fsck` examines them).
    pub corrupt_packs: Vec<ObjectProblem>,
    /// Keys under `packs/` or `manifests/` that are not eden-cas objects.
    pub foreign_objects: Vec<String>,
    /// Manifest objects listed.
    pub manifests_scanned: u64,
    /// Manifests whose row or segments had to be (re)written.
    pub manifests_restored: u64,
    /// Manifest objects that do not check out (ignored).
    pub bad_manifests: Vec<ObjectProblem>,
    /// Manifests no artifact record references, by id.
    pub unclaimed_manifests: Vec<UnclaimedManifest>,
    /// Artifact records.
    pub artifacts: u64,
    /// Artifact records whose manifest is neither in the metadata nor in
    /// the blob store (their content cannot be read).
    pub artifacts_without_manifest: u64,
}

impl ReindexReport {
    /// Whether the blob store held anything to recover.
    pub fn found_data(&self) -> bool {
        self.packs_scanned > 0 || self.manifests_scanned > 0
    }
}

impl fmt::Display for ReindexReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "packs scanned        {} ({} indexed, {} partial, {} corrupt)",
            self.packs_scanned,
            self.packs_indexed,
            self.partial_packs.len(),
            self.corrupt_packs.len()
        )?;
        writeln!(
            f,
            "chunks indexed       {} ({} entries written, {} dropped; {} pack records dropped)",
            self.chunks_indexed,
            self.entries_written,
            self.entries_dropped,
            self.pack_records_dropped
        )?;
        writeln!(
            f,
            "manifests scanned    {} ({} restored, {} bad)",
            self.manifests_scanned,
            self.manifests_restored,
            self.bad_manifests.len()
        )?;
        writeln!(
            f,
            "artifacts            {} ({} without a manifest)",
            self.artifacts, self.artifacts_without_manifest
        )?;
        writeln!(f, "unclaimed manifests  {}", self.unclaimed_manifests.len())?;
        for k in &self.partial_packs {
            writeln!(f, "partial pack     {k} (interrupted write; gc deletes it)")?;
        }
        for p in &self.corrupt_packs {
            writeln!(f, "corrupt pack     {}: {}", p.key, p.reason)?;
        }
        for p in &self.bad_manifests {
            writeln!(f, "bad manifest     {}: {}", p.key, p.reason)?;
        }
        for k in &self.foreign_objects {
            writeln!(f, "foreign object   {k}")?;
        }
        for m in &self.unclaimed_manifests {
            writeln!(
                f,
                "unclaimed        manifest {} size {} blake3 {} chunks {}",
                m.id.to_hex(),
                m.size,
                m.blake3.to_hex(),
                m.chunks
            )?;
        }
        Ok(())
    }
}

/// Whether `meta` was never used by an engine (it has no token-hashing key
/// yet): a new metadata directory, or one created by a process that died
/// before building its engine.
///
/// # Errors
/// Metadata failures.
pub fn is_new_metadata(meta: &Meta) -> Result<bool, EngineError> {
    Ok(meta.system(super::TOKEN_KEY)?.is_none())
}

/// Whether a reindex is owed (see [`REINDEX_PENDING`]).
///
/// # Errors
/// Metadata failures.
pub fn reindex_pending(meta: &Meta) -> Result<bool, EngineError> {
    Ok(meta.system(REINDEX_PENDING)?.is_some())
}

/// Records, durably, that a reindex is owed.
///
/// # Errors
/// Metadata failures.
pub fn mark_reindex_pending(meta: &Meta) -> Result<(), EngineError> {
    Ok(meta.set_system(REINDEX_PENDING, b"1")?)
}

/// Rebuilds `chunks-v1` and `packs-v1` from the pack footers and
/// `segments-v1` / `manifests-v1` from the manifest objects, drops index
/// entries that name packs that are gone or incomplete, and reports the
/// manifests no artifact record references.
///
/// When a chunk is in several complete packs, the entry the index already
/// has is kept if its pack's footer agrees with it; otherwise the newest
/// pack (largest ULID) wins, so a fresh copy is preferred to an old one.
///
/// # Errors
/// Blob store and metadata failures; [`EngineError::Integrity`] with
/// [`crate::engine::IntegrityError::Corrupt`] for a pack of a format newer
/// than this binary reads (its entries are never dropped).
pub async fn reindex(meta: &Meta, blobs: &BlobStore) -> Result<ReindexReport, EngineError> {
    let m = meta.clone();
    blocking(move || mark_reindex_pending(&m)).await?;
    let mut report = ReindexReport::default();
    let kept = reindex_packs(meta, blobs, &mut report).await?;
    drop_stale(meta, kept, &mut report).await?;
    let found = restore_manifests(meta, blobs, &mut report).await?;
    claim(meta, found, &mut report).await?;
    let m = meta.clone();
    blocking(move || {
        // Everything above was written unsynced: make it durable before the
        // marker goes.
        m.flush()?;
        m.delete_system(REINDEX_PENDING)?;
        Ok(())
    })
    .await?;
    tracing::info!(
        packs = report.packs_indexed,
        partial_packs = report.partial_packs.len(),
        chunks = report.chunks_indexed,
        dropped = report.entries_dropped,
        manifests = report.manifests_scanned,
        unclaimed = report.unclaimed_manifests.len(),
        "reindex finished"
    );
    Ok(report)
}

/// Marks the manifests artifact records reference; reports the others.
async fn claim(
    meta: &Meta,
    found: Vec<FoundManifest>,
    report: &mut ReindexReport,
) -> Result<(), EngineError> {
    let m = meta.clone();
    let (found, artifacts, without) = blocking(move || {
        let mut found = found;
        let (mut artifacts, mut without) = (0u64, 0u64);
        for item in m.all_artifacts() {
            let (_, _, rec) = item?;
            artifacts += 1;
            match found.binary_search_by(|f| f.id.as_bytes().cmp(rec.manifest.as_bytes())) {
                Ok(i) => found[i].claimed = true,
                Err(_) => {
                    if m.manifest(&rec.manifest)?.is_none() {
                        without += 1;
                    }
                }
            }
        }
        Ok((found, artifacts, without))
    })
    .await?;
    report.artifacts = artifacts;
    report.artifacts_without_manifest = without;
    report.unclaimed_manifests = found
        .into_iter()
        .filter(|f| !f.claimed)
        .map(|f| UnclaimedManifest {
            id: f.id,
            size: f.size,
            blake3: f.blake3,
            chunks: f.chunks,
        })
        .collect();
    Ok(())
}
