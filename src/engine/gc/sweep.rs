//! The destructive phases of a GC run (5–7 of the module docs): dead index
//! entries and the packs they emptied, orphan pack objects, and unreferenced
//! segments and manifests. Every removal is decided under the pin
//! registry's lock (and, for index entries, the index lock) and applies only
//! to what was not pinned since the mark.

use std::collections::HashSet;
use std::sync::Arc;

use super::{GcRun, SWEEP_BATCH, crash_point, fp, read_footer};
use crate::blobs::{BlobError, keys};
use crate::engine::{Engine, EngineError, blocking};
use crate::hash::Digest;
use crate::ids::PackId;
use crate::meta::{CF_MANIFESTS, CF_SEGMENTS};

impl GcRun {
    /// Phase 5: drop the dead entries of doomed packs, then the packs.
    pub(super) async fn sweep(&mut self) -> Result<(), EngineError> {
        let mut doomed = std::mem::take(&mut self.doomed);
        doomed.sort_unstable();
        doomed.dedup();
        for pack in doomed {
            let Some(rec) = self.records.get(&pack).cloned() else {
                continue;
            };
            let entries = match read_footer(&self.engine, pack, &rec).await {
                Ok(e) => Some(e),
                Err(EngineError::Integrity(why)) => {
                    tracing::warn!(pack = %pack, %why, "pack footer unreadable; finding its entries in the index");
                    None
                }
                Err(e) => return Err(e),
            };
            let ids: Vec<Digest> = match entries {
                Some(e) => e.into_iter().map(|e| e.id).collect(),
                None => self.indexed_in(pack).await?,
            };
            let (removed, kept) = self.remove_entries(pack, ids).await?;
            self.report.chunks_removed += removed;
            self.report.chunks_kept_pinned += kept;
            if kept > 0 {
                continue;
            }
            crash_point("gc-swept");
            delete_object(&self.engine, &keys::pack(pack)).await?;
            self.report.packs_deleted += 1;
            self.report.bytes_deleted += rec.bytes;
        }
        Ok(())
    }

    /// Chunk ids whose index entry names `pack` (fallback when its footer
    /// cannot be read).
    async fn indexed_in(&self, pack: PackId) -> Result<Vec<Digest>, EngineError> {
        let meta = self.engine.meta.clone();
        blocking(move || {
            let mut ids = Vec::new();
            meta.scan_chunks(|id, loc| {
                if loc.pack == pack {
                    ids.push(id);
                }
                true
            })?;
            Ok(ids)
        })
        .await
    }

    /// Removes the entries among `ids` that still name `pack`, are not live
    /// and were not pinned since the mark; removes the pack record too when
    /// none had to be kept. Returns (removed, kept).
    async fn remove_entries(
        &self,
        pack: PackId,
        ids: Vec<Digest>,
    ) -> Result<(u64, u64), EngineError> {
        let engine = Arc::clone(&self.engine);
        let live = self.live_check(&ids);
        blocking(move || {
            let (mut removed, mut kept) = (0u64, 0u64);
            let groups: Vec<&[Digest]> = ids.chunks(SWEEP_BATCH).collect();
            let last = groups.len().saturating_sub(1);
            for (n, group) in groups.into_iter().enumerate() {
                let view = engine.pins.view();
                let _index = engine.index_lock.lock().unwrap_or_else(|e| e.into_inner());
                let meta = &engine.meta;
                let current = meta.chunks(group)?;
                let mut b = meta.batch();
                for (id, loc) in group.iter().zip(current) {
                    if loc.is_none_or(|l| l.pack != pack) {
                        continue;
                    }
                    if live.contains(id) || view.pinned_since_window(id) {
                        kept += 1;
                    } else {
                        b.delete_chunk(id);
                        removed += 1;
                    }
                }
                if n == last && kept == 0 {
                    b.delete_pack(pack);
                    b.delete_pack_scrub(pack);
                }
                b.commit()?;
            }
            if ids.is_empty() {
                let mut b = engine.meta.batch();
                b.delete_pack(pack);
                b.delete_pack_scrub(pack);
                b.commit()?;
            }
            Ok((removed, kept))
        })
        .await
    }

    /// The ids among `ids` that are in the live set.
    fn live_check(&self, ids: &[Digest]) -> HashSet<Digest> {
        ids.iter()
            .filter(|id| self.live.contains(&fp(id)))
            .copied()
            .collect()
    }

    /// Phase 6: delete pack objects the index does not know.
    pub(super) async fn delete_orphans(&mut self) -> Result<(), EngineError> {
        for (id, key, size) in std::mem::take(&mut self.orphans) {
            let meta = self.engine.meta.clone();
            let engine = Arc::clone(&self.engine);
            let orphan = blocking(move || {
                let view = engine.pins.view();
                Ok(!view.pack_open(id) && meta.pack(id)?.is_none())
            })
            .await?;
            if orphan {
                delete_object(&self.engine, &key).await?;
                self.report.packs_deleted += 1;
                self.report.bytes_deleted += size;
                tracing::debug!(%key, size, "orphan pack deleted");
            }
        }
        Ok(())
    }

    /// Phase 7: segments, manifest rows and manifest objects nothing live
    /// references.
    pub(super) async fn sweep_metadata(&mut self) -> Result<(), EngineError> {
        let live_ids = std::mem::take(&mut self.live_ids);
        let mut objects = HashSet::new();
        let mut bundles = Vec::new();
        for (key, _) in self.engine.blobs.list(keys::MANIFESTS).await? {
            if let Some(id) = keys::parse_manifest(&key) {
                objects.insert(id);
            } else if let Some(id) = keys::parse_manifest_bundle(&key) {
                bundles.push((key, id));
            }
        }
        let engine = Arc::clone(&self.engine);
        let (segments, manifests, live_ids, redundant) = blocking(move || {
            let meta = &engine.meta;
            let mut dead_segments = Vec::new();
            meta.scan_digest_keys(CF_SEGMENTS, |id| {
                if !live_ids.contains(&id) {
                    dead_segments.push(id);
                }
            })?;
            let mut dead_manifests = Vec::new();
            meta.scan_digest_keys(CF_MANIFESTS, |id| {
                if !live_ids.contains(&id) {
                    dead_manifests.push(id);
                }
            })?;
            let mut redundant = Vec::new();
            for id in &objects {
                if !live_ids.contains(id) && meta.manifest(id)?.is_none() {
                    dead_manifests.push(*id);
                } else if meta.manifest_bundle(id)?.is_some() {
                    // The recorded copy is in a bundle: this object is the
                    // leftover of a failed write (the retry was committed
                    // in a group) or a second copy.
                    redundant.push(*id);
                }
            }
            let segments = remove_unpinned(&engine, &dead_segments, |b, id| b.delete_segment(id))?;
            let manifests = remove_unpinned(&engine, &dead_manifests, |b, id| {
                b.delete_manifest(id);
                b.delete_manifest_bundle(id);
            })?;
            Ok((segments, manifests, live_ids, redundant))
        })
        .await?;
        self.live_ids = live_ids;
        for id in redundant {
            delete_object(&self.engine, &keys::manifest(&id)).await?;
        }
        self.report.segments_deleted = segments.len() as u64;
        self.report.manifests_deleted = manifests.len() as u64;
        for id in manifests {
            delete_object(&self.engine, &keys::manifest(&id)).await?;
        }
        self.sweep_bundles(bundles).await
    }

    /// Deletes the manifest bundles that no `manifest-bundles-v1` row names
    /// any more. Which bundles are being written is read *before* the rows:
    /// a group commit records its rows before it stops registering its
    /// bundle as open, so a bundle found closed here has all the rows it
    /// will ever have.
    async fn sweep_bundles(&mut self, bundles: Vec<(String, PackId)>) -> Result<(), EngineError> {
        let closed: Vec<(String, PackId)> = {
            let view = self.engine.pins.view();
            bundles
                .into_iter()
                .filter(|(_, id)| !view.pack_open(*id))
                .collect()
        };
        if closed.is_empty() {
            return Ok(());
        }
        let meta = self.engine.meta.clone();
        let named = blocking(move || {
            let mut named = HashSet::new();
            meta.scan_manifest_bundles(|_, bundle| {
                named.insert(bundle);
            })?;
            Ok(named)
        })
        .await?;
        for (key, id) in closed {
            if !named.contains(&id) {
                delete_object(&self.engine, &key).await?;
                tracing::debug!(%key, "manifest bundle deleted");
            }
        }
        Ok(())
    }
}

/// Removes `ids` not pinned since the mark (under the registry lock, in
/// bounded batches); returns those removed.
fn remove_unpinned(
    engine: &Engine,
    ids: &[Digest],
    delete: impl Fn(&mut crate::meta::Batch<'_>, &Digest),
) -> Result<Vec<Digest>, EngineError> {
    let mut removed = Vec::new();
    for group in ids.chunks(SWEEP_BATCH) {
        let view = engine.pins.view();
        let mut b = engine.meta.batch();
        for id in group {
            if !view.pinned_since_window(id) {
                delete(&mut b, id);
                removed.push(*id);
            }
        }
        b.commit()?;
    }
    Ok(removed)
}

/// Deletes an object; one already gone is fine.
async fn delete_object(engine: &Engine, key: &str) -> Result<(), EngineError> {
    match engine.blobs.delete(key).await {
        Ok(()) | Err(BlobError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
