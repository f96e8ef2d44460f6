//! Garbage collection and retention: expired artifacts are removed, chunks
//! no live artifact, upload session or in-flight operation references are
//! dropped from the index, packs left without live chunks are deleted, and
//! packs whose live bytes fall below a threshold are compacted (their live
//! chunks copied, verified, into new packs) and then deleted.
//!
//! A run is a sequence of phases ([`GcRun::step`]), each safe to interleave
//! with deposits, fetches, deletes and upload sessions, and each leaving a
//! state the next run finishes if the process dies in it:
//!
//! 1. **mark** — open the pin window (`pins.rs`), then collect the live set:
//!    chunks (as 64-bit fingerprints: a collision only keeps garbage),
//!    segments and manifests of unexpired artifacts, upload-session rows,
//!    and every in-flight operation's pins;
//! 2. **plan** — one pass over the chunk index gives each pack's live bytes;
//!    packs with none are doomed, packs below the threshold are compacted;
//!    pack objects the index does not know (crash leftovers) are orphans;
//! 3. **expire** — expired artifact records are removed (they were never
//!    marked, so their chunks are already garbage);
//! 4. **compact** — live chunks of the packs to compact are read, verified
//!    (BLAKE3) and written to new packs, which become durable before their
//!    index entries move, each move conditional on the entry still naming
//!    the old place (under the index lock). A crash leaves either an
//!    unindexed new pack (an orphan) or an old pack with no live chunk (doomed
//!    next time);
//! 5. **sweep** — for each doomed pack, under the pin registry's lock and the
//!    index lock, its dead entries are removed unless pinned since the mark,
//!    and, if none was kept, its record goes in the same synced batch; the
//!    object is deleted after. A read that planned against a deleted pack
//!    re-resolves its chunks (`read.rs`);
//! 6. **orphans** — unindexed pack objects not being written are deleted;
//! 7. **metadata** — segments, manifest rows and manifest objects no live
//!    artifact or operation references are removed; so are audit log
//!    segments past `audit-retention` (`audit.rs`).
//!
//! Memory: the live set (8 bytes per live chunk plus hash-set overhead,
//! about 16 MB per million chunks), one entry per pack, the ids of live
//! segments and manifests, and one pack's footer at a time.

mod compact;
mod mark;
mod sweep;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::timings::Timings;
use super::{Engine, EngineError, Stats, blocking};
use crate::auth::ExperimentId;
use crate::blobs::keys;
use crate::clock::Timestamp;
use crate::hash::Digest;
use crate::ids::{ArtifactId, PackId};
use crate::meta::records::{ChunkLocation, PackRecord};
use crate::pack::PackEntry;
use crate::pack::reader::PackReader;
use compact::Compactor;

/// Default live-bytes ratio under which a pack is compacted.
pub const DEFAULT_COMPACT_BELOW: f64 = 0.8;
/// Index entries removed per locked batch.
const SWEEP_BATCH: usize = 2048;
/// Environment variable naming a crash point (crash tests only).
const CRASH_ENV: &str = "EDEN_CAS_CRASH_AT";

/// How a run behaves.
#[derive(Clone, Copy, Debug)]
pub struct GcOptions {
    /// Plan and report only; change nothing.
    pub dry_run: bool,
    /// Packs whose live bytes are below this fraction of their chunk bytes
    /// are compacted (0 disables compaction, 1 compacts any pack with a dead
    /// byte).
    pub compact_below: f64,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            compact_below: DEFAULT_COMPACT_BELOW,
        }
    }
}

/// What a run found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Unexpired artifacts.
    pub artifacts_live: u64,
    /// Expired artifacts (removed unless `dry_run`).
    pub artifacts_expired: u64,
    /// Distinct live chunks.
    pub chunks_live: u64,
    /// Chunk index entries at the plan.
    pub chunks_indexed: u64,
    /// Index entries removed.
    pub chunks_removed: u64,
    /// Live chunks copied into new packs.
    pub chunks_moved: u64,
    /// Dead entries kept because an operation referenced them during the run.
    pub chunks_kept_pinned: u64,
    /// Pack records at the plan.
    pub packs: u64,
    /// Bytes of those packs.
    pub pack_bytes: u64,
    /// Live chunk bytes (stored) in them.
    pub live_bytes: u64,
    /// Packs with no live chunk (deleted unless `dry_run`).
    pub packs_dead: u64,
    /// Packs below the threshold (compacted unless `dry_run`).
    pub packs_to_compact: u64,
    /// Pack objects the index does not know (crash leftovers).
    pub orphan_packs: u64,
    /// Packs (and orphans) deleted.
    pub packs_deleted: u64,
    /// Packs written by compaction.
    pub packs_written: u64,
    /// Bytes of deleted pack objects.
    pub bytes_deleted: u64,
    /// Bytes written by compaction.
    pub bytes_written: u64,
    /// `bytes_deleted - bytes_written` (for a dry run: the estimate).
    pub bytes_reclaimed: u64,
    /// Segments removed.
    pub segments_deleted: u64,
    /// Manifests (rows and objects) removed.
    pub manifests_deleted: u64,
    /// Audit log segments past `audit-retention` deleted.
    pub audit_segments_deleted: u64,
    /// Wall time of the run, in milliseconds.
    pub elapsed_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Mark,
    Plan,
    Expire,
    Compact,
    Sweep,
    Orphans,
    Metadata,
    Done,
}

/// Live bytes of one pack, from the index pass.
#[derive(Clone, Copy, Debug, Default)]
struct PackUse {
    live_bytes: u64,
    live_chunks: u64,
}

/// A run in progress; holds the engine's GC lock. Dropping it closes the pin
/// window; whatever it did so far is consistent (see the module docs).
pub struct GcRun {
    engine: Arc<Engine>,
    opts: GcOptions,
    _guard: tokio::sync::OwnedMutexGuard<()>,
    started: Instant,
    phase: Phase,
    report: GcReport,
    live: HashSet<u64>,
    live_ids: HashSet<Digest>,
    expired: Vec<(ExperimentId, ArtifactId)>,
    records: HashMap<PackId, PackRecord>,
    doomed: Vec<PackId>,
    compact: Vec<PackId>,
    orphans: Vec<(PackId, String, u64)>,
}

impl Drop for GcRun {
    fn drop(&mut self) {
        self.engine.pins.close_window();
    }
}

/// The 64-bit fingerprint of a chunk id in the live set.
pub(crate) fn fp(id: &Digest) -> u64 {
    let b = id.as_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Aborts the process at a named point when `EDEN_CAS_CRASH_AT` names it:
/// the crash tests' stand-in for `kill -9` at an exact step.
fn crash_point(name: &str) {
    if std::env::var(CRASH_ENV).is_ok_and(|v| v == name) {
        eprintln!("eden-cas: crash point {name} reached, aborting");
        std::process::abort();
    }
}

impl Engine {
    /// Starts a GC run, waiting for any other run to finish.
    pub async fn gc_begin(self: &Arc<Self>, opts: GcOptions) -> GcRun {
        let guard = Arc::clone(&self.gc_lock).lock_owned().await;
        GcRun {
            engine: Arc::clone(self),
            opts,
            _guard: guard,
            started: Instant::now(),
            phase: Phase::Mark,
            report: GcReport {
                dry_run: opts.dry_run,
                ..GcReport::default()
            },
            live: HashSet::new(),
            live_ids: HashSet::new(),
            expired: Vec::new(),
            records: HashMap::new(),
            doomed: Vec::new(),
            compact: Vec::new(),
            orphans: Vec::new(),
        }
    }

    /// Runs a whole GC and reports it (log line and metrics too).
    ///
    /// # Errors
    /// As [`GcRun::step`].
    pub async fn gc(self: &Arc<Self>, opts: GcOptions) -> Result<GcReport, EngineError> {
        let mut run = self.gc_begin(opts).await;
        while run.step().await? {}
        Ok(run.finish())
    }

    /// Runs [`Engine::gc`] every `every` until the engine is dropped.
    pub fn spawn_gc(
        self: &Arc<Self>,
        every: Duration,
        compact_below: f64,
    ) -> tokio::task::JoinHandle<()> {
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(engine) = engine.upgrade() else {
                    break;
                };
                let opts = GcOptions {
                    dry_run: false,
                    compact_below,
                };
                if let Err(e) = engine.gc(opts).await {
                    tracing::error!(error = %e, "scheduled garbage collection failed");
                }
                // A sample for the dashboard's history after each run.
                if let Err(e) = engine.store_stats(compact_below).await {
                    tracing::warn!(error = %e, "store statistics after GC failed");
                }
            }
        })
    }
}

impl GcRun {
    /// Runs the next phase; false once the run is complete.
    ///
    /// # Errors
    /// [`EngineError::LeaseLost`] when the blob store lease is gone;
    /// [`EngineError::Integrity`] with [`crate::engine::IntegrityError::MissingRecord`]
    /// when a live artifact's manifest or segment is missing (nothing is
    /// collected); blob store and metadata failures.
    pub async fn step(&mut self) -> Result<bool, EngineError> {
        // Every phase after the plan changes the store: re-check the writer
        // lease first (another process may have taken the blob store over).
        if !matches!(self.phase, Phase::Mark | Phase::Plan | Phase::Done) {
            self.engine.check_lease().await?;
        }
        match self.phase {
            Phase::Mark => {
                self.mark().await?;
                self.phase = Phase::Plan;
            }
            Phase::Plan => {
                self.plan().await?;
                self.phase = if self.opts.dry_run {
                    Phase::Done
                } else {
                    Phase::Expire
                };
            }
            Phase::Expire => {
                self.expire().await?;
                self.phase = Phase::Compact;
            }
            Phase::Compact => {
                let started = Instant::now();
                self.compact().await?;
                if !self.report.dry_run {
                    Timings::observe(&self.engine.stats.timings.compaction, started.elapsed());
                }
                self.phase = Phase::Sweep;
            }
            Phase::Sweep => {
                self.sweep().await?;
                self.phase = Phase::Orphans;
            }
            Phase::Orphans => {
                self.delete_orphans().await?;
                self.phase = Phase::Metadata;
            }
            Phase::Metadata => {
                self.sweep_metadata().await?;
                self.report.audit_segments_deleted =
                    self.engine.audit_prune(Timestamp::now()).await?;
                self.phase = Phase::Done;
            }
            Phase::Done => return Ok(false),
        }
        Ok(self.phase != Phase::Done)
    }

    /// Ends the run: closes the window, logs, counts; returns the report.
    pub fn finish(mut self) -> GcReport {
        self.engine.pins.close_window();
        let r = &mut self.report;
        r.elapsed_ms = self.started.elapsed().as_millis() as u64;
        if !r.dry_run {
            r.bytes_reclaimed = r.bytes_deleted.saturating_sub(r.bytes_written);
            let s = &self.engine.stats;
            Stats::add(&s.gc_runs, 1);
            Stats::add(&s.gc_bytes_reclaimed, r.bytes_reclaimed);
            Stats::add(&s.gc_packs_deleted, r.packs_deleted);
            Stats::add(&s.gc_chunks_removed, r.chunks_removed);
            Stats::add(&s.artifacts_expired, r.artifacts_expired);
            s.gc_last_duration_ms.store(r.elapsed_ms, Ordering::Relaxed);
            s.gc_last_reclaimed_bytes
                .store(r.bytes_reclaimed, Ordering::Relaxed);
            Timings::observe(&s.timings.gc, self.started.elapsed());
        }
        tracing::info!(
            dry_run = r.dry_run,
            elapsed_ms = r.elapsed_ms,
            bytes_reclaimed = r.bytes_reclaimed,
            packs_deleted = r.packs_deleted,
            packs_written = r.packs_written,
            chunks_removed = r.chunks_removed,
            chunks_moved = r.chunks_moved,
            artifacts_expired = r.artifacts_expired,
            live_chunks = r.chunks_live,
            "garbage collection finished"
        );
        std::mem::take(&mut self.report)
    }

    /// Phase 2: live bytes per pack, doomed and compactable packs, orphans.
    async fn plan(&mut self) -> Result<(), EngineError> {
        let meta = self.engine.meta.clone();
        let live = std::mem::take(&mut self.live);
        let (live, uses, indexed, records) = blocking(move || {
            let mut uses: HashMap<PackId, PackUse> = HashMap::new();
            let mut indexed = 0u64;
            meta.scan_chunks(|id, loc| {
                indexed += 1;
                if live.contains(&fp(&id)) {
                    let u = uses.entry(loc.pack).or_default();
                    u.live_bytes += loc.stored_share();
                    u.live_chunks += 1;
                }
                true
            })?;
            Ok((live, uses, indexed, meta.packs()?))
        })
        .await?;
        self.live = live;
        let r = &mut self.report;
        r.chunks_indexed = indexed;
        r.packs = records.len() as u64;
        let mut estimate = 0u64;
        for (id, rec) in records {
            let u = uses.get(&id).copied().unwrap_or_default();
            r.pack_bytes += rec.bytes;
            r.live_bytes += u.live_bytes;
            let chunk_bytes = data_bytes(&rec);
            if u.live_chunks == 0 {
                self.doomed.push(id);
                estimate += rec.bytes;
            } else if (u.live_bytes as f64) < self.opts.compact_below * chunk_bytes as f64
                // A pack whose every entry is live has nothing to reclaim
                // (its footer may be longer than `data_bytes` assumes).
                && u.live_chunks < u64::from(rec.chunks)
            {
                self.compact.push(id);
                estimate += rec.bytes.saturating_sub(u.live_bytes);
            }
            self.records.insert(id, rec);
        }
        r.packs_dead = self.doomed.len() as u64;
        r.packs_to_compact = self.compact.len() as u64;
        for (key, size) in self.engine.blobs.list(keys::PACKS).await? {
            let Some(id) = keys::parse_pack(&key) else {
                continue;
            };
            if !self.records.contains_key(&id) {
                self.orphans.push((id, key, size));
                estimate += size;
            }
        }
        r.orphan_packs = self.orphans.len() as u64;
        if self.opts.dry_run {
            r.bytes_reclaimed = estimate;
        }
        Ok(())
    }

    /// Phase 3: remove expired artifact records (and their chunk refs).
    async fn expire(&mut self) -> Result<(), EngineError> {
        let now = Timestamp::now();
        for (exp, id) in std::mem::take(&mut self.expired) {
            self.engine.remove_expired(exp, &id, now).await?;
        }
        Ok(())
    }

    /// Phase 4: copy the live chunks of sparse packs into new packs.
    async fn compact(&mut self) -> Result<(), EngineError> {
        let target = self.engine.cfg.pack_target_bytes;
        let mut out = Compactor::new(&self.engine);
        for pack in std::mem::take(&mut self.compact) {
            let Some(rec) = self.records.get(&pack).cloned() else {
                continue;
            };
            let moves = match self.live_entries(pack, &rec).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(pack = %pack, error = %e, "pack not compacted");
                    continue;
                }
            };
            let bytes: u64 = moves.iter().map(|(e, _)| e.stored_share()).sum();
            if !out.is_empty() && out.builder.len() + bytes > target {
                self.flush(&mut out).await?;
            }
            match out.copy(pack, moves).await {
                Ok(()) => out.sources.push(pack),
                Err(e) => {
                    // A chunk that fails verification stays where it is (and
                    // its pack with it); scrub and fsck report it.
                    tracing::warn!(pack = %pack, error = %e, "pack not compacted");
                }
            }
        }
        self.flush(&mut out).await?;
        Ok(())
    }

    /// Makes the compaction output durable, moves the index entries to it
    /// and dooms the packs it emptied.
    async fn flush(&mut self, out: &mut Compactor) -> Result<(), EngineError> {
        let builder = std::mem::take(&mut out.builder);
        let moves = std::mem::take(&mut out.moves);
        let sources = std::mem::take(&mut out.sources);
        let Some(sealed) = out.sink.close(builder).await? else {
            self.doomed.extend(sources);
            return Ok(());
        };
        let engine = Arc::clone(&self.engine);
        let (id, bytes, entries) = (sealed.id, sealed.bytes, sealed.entries);
        let written = bytes;
        let moved = blocking(move || {
            let meta = &engine.meta;
            let mut b = meta.batch();
            let _index = engine.index_lock.lock().unwrap_or_else(|e| e.into_inner());
            let ids: Vec<Digest> = moves.iter().map(|(id, _)| *id).collect();
            let current = meta.chunks(&ids)?;
            let mut moved = 0u64;
            for (((cid, old), now), new) in moves.iter().zip(current).zip(&entries) {
                // Only if the entry still names the copy that was read.
                if now.is_some_and(|n| n.is_at(old.pack, old.offset)) {
                    b.put_chunk(cid, &ChunkLocation::in_pack(id, new));
                    moved += 1;
                }
            }
            b.put_pack(
                id,
                &PackRecord {
                    bytes,
                    chunks: entries.len() as u32,
                    raw_bytes: entries.iter().map(|e| u64::from(e.raw_len)).sum(),
                    created_at: Timestamp::now(),
                },
            );
            b.commit()?;
            Ok(moved)
        })
        .await;
        self.engine.pins.pack_closed(id);
        let moved = moved?;
        crash_point("gc-compacted");
        self.report.chunks_moved += moved;
        self.report.packs_written += 1;
        self.report.bytes_written += written;
        tracing::debug!(pack = %id, bytes = written, moved, sources = sources.len(), "compacted pack written");
        self.doomed.extend(sources);
        Ok(())
    }

    /// The entries of `pack` the index still points at and the mark found
    /// live, with their current locations.
    async fn live_entries(
        &self,
        pack: PackId,
        rec: &PackRecord,
    ) -> Result<Vec<(PackEntry, ChunkLocation)>, EngineError> {
        let entries = read_footer(&self.engine, pack, rec).await?;
        let meta = self.engine.meta.clone();
        let ids: Vec<Digest> = entries.iter().map(|e| e.id).collect();
        let locs = blocking(move || Ok(meta.chunks(&ids)?)).await?;
        Ok(entries
            .into_iter()
            .zip(locs)
            .filter_map(|(e, loc)| {
                let loc = loc?;
                (loc.is_at(pack, e.offset) && self.live.contains(&fp(&e.id))).then_some((e, loc))
            })
            .collect())
    }
}

/// Bytes of a pack's chunk area (without header, footer and trailer; a
/// format-1 pack's is counted 4 bytes short, which only nudges the
/// compaction ratio).
pub(crate) fn data_bytes(rec: &PackRecord) -> u64 {
    rec.bytes
        .saturating_sub(crate::pack::overhead_bytes(rec.chunks))
}

/// A pack's footer entries, read through the pack reader; an unreadable
/// footer or a missing object is an integrity error.
pub(crate) async fn read_footer(
    engine: &Arc<Engine>,
    pack: PackId,
    rec: &PackRecord,
) -> Result<Vec<PackEntry>, EngineError> {
    PackReader::new(&engine.blobs)
        .tail(pack, rec.bytes)
        .await
        .map(|tail| tail.entries)
        .map_err(|e| EngineError::from_pack(pack, e))
}
