//! The background scrubber and self-healing of corrupt chunks.
//!
//! [`Engine::scrub_pass`] re-verifies packs whole (the same check as fsck's
//! pack pass, `packcheck.rs`), least recently verified first — never
//! verified before all others — and records when each was verified
//! (`pack-scrub-v1`). Each live chunk that fails is **marked bad** in the
//! chunk index ([`Engine::mark_chunk_bad`]) and logged at error level.
//!
//! Verified reads and fsck mark the copies they prove bad at once too
//! (`heal.rs`), so the scrubber is the safety net for data nobody reads.
//!
//! Self-healing: every write path treats a chunk marked bad as absent
//! (ingest's dedup check, upload chunk batches, the "missing" answer and
//! the upload commit check), so the next deposit or upload of that content
//! stores a fresh copy. Indexing the fresh copy's pack overwrites the entry
//! (not bad), and from then on every artifact holding the chunk reads the
//! fresh copy. Until then reads of the chunk still fail verification
//! (invariant 6: never wrong bytes); the bad copy becomes a dead footer
//! entry that GC reclaims.
//!
//! [`Engine::spawn_scrubber`] runs passes forever within a byte budget per
//! hour (`scrub-bytes-per-hour`). GC runs concurrently: a pack deleted
//! meanwhile is skipped silently and its scrub row dropped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::packcheck::{CorruptChunk, index_entries_in, verify_entries, verify_pack};
use super::{Engine, EngineError, Stats, blocking};
use crate::clock::Timestamp;
use crate::hash::Digest;
use crate::ids::PackId;
use crate::meta::records::ChunkLocation;
use crate::pack::PackError;

/// Default `scrub-bytes-per-hour`: 10 GiB.
pub const DEFAULT_SCRUB_BYTES_PER_HOUR: u64 = 10 << 30;
/// A pass is given about a minute's worth of the hourly budget.
const PASSES_PER_HOUR: u64 = 60;
/// The first pass waits this long after startup.
const FIRST_PASS_DELAY: Duration = Duration::from_secs(60);
/// Pause after a pass that verified nothing (empty store) or failed.
const IDLE_PAUSE: Duration = Duration::from_secs(60);

/// What one scrub pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScrubReport {
    /// Packs verified (and stamped).
    pub packs: u64,
    /// Bytes read from packs.
    pub bytes: u64,
    /// Live chunks that failed verification.
    pub corrupt_chunks: u64,
    /// Of those, entries this pass marked bad (the others were changed
    /// meanwhile, e.g. relocated by GC or healed by a new upload).
    pub marked_bad: u64,
    /// Pack-level faults found (missing object, bad size, header, footer).
    pub pack_faults: u64,
    /// Packs deleted meanwhile, skipped.
    pub skipped: u64,
    /// Packs whose check failed for another reason (blob store errors);
    /// retried first by the next pass.
    pub errors: u64,
}

impl Engine {
    /// Marks chunk `id` bad if its index entry still names the same pack
    /// and offset as `expected` (else it was relocated or healed meanwhile
    /// and is left alone). Serialised with indexing and GC by the index
    /// lock; synced. Returns whether the entry was marked.
    ///
    /// # Errors
    /// Metadata failures.
    pub async fn mark_chunk_bad(
        self: &Arc<Self>,
        id: Digest,
        expected: ChunkLocation,
    ) -> Result<bool, EngineError> {
        let engine = Arc::clone(self);
        blocking(move || {
            let meta = &engine.meta;
            let _index = engine.index_lock.lock().unwrap_or_else(|e| e.into_inner());
            let Some(mut loc) = meta.chunk(&id)? else {
                return Ok(false);
            };
            if !loc.is_at(expected.pack, expected.offset) || loc.bad {
                return Ok(false);
            }
            loc.bad = true;
            let mut b = meta.batch();
            b.put_chunk(&id, &loc);
            b.commit()?;
            Ok(true)
        })
        .await
    }

    /// Verifies packs, least recently verified first, until `max_bytes`
    /// have been read (a pass always finishes the pack it started, so it
    /// may read up to one pack more). Marks every corrupt live chunk bad.
    ///
    /// # Errors
    /// Metadata failures listing packs; a pack whose check fails is counted
    /// in [`ScrubReport::errors`] and retried next pass.
    pub async fn scrub_pass(self: &Arc<Self>, max_bytes: u64) -> Result<ScrubReport, EngineError> {
        let started = std::time::Instant::now();
        let meta = self.meta.clone();
        let order = blocking(move || {
            let packs = meta.packs()?;
            let times: HashMap<PackId, Timestamp> = meta.pack_scrub_times()?.into_iter().collect();
            let live: HashSet<PackId> = packs.iter().map(|(id, _)| *id).collect();
            let stale: Vec<PackId> = times
                .keys()
                .filter(|p| !live.contains(p))
                .copied()
                .collect();
            if !stale.is_empty() {
                let mut b = meta.batch();
                for p in stale {
                    b.delete_pack_scrub(p);
                }
                b.commit_unsynced()?;
            }
            let mut order: Vec<(Option<Timestamp>, PackId, u64)> = packs
                .into_iter()
                .map(|(id, rec)| (times.get(&id).copied(), id, rec.bytes))
                .collect();
            order.sort_unstable();
            Ok(order)
        })
        .await?;
        let mut report = ScrubReport::default();
        for (_, pack, recorded) in order {
            if report.bytes >= max_bytes {
                break;
            }
            match self.scrub_pack(pack, recorded, &mut report).await {
                Ok(()) => {}
                Err(e) => {
                    report.errors += 1;
                    tracing::warn!(pack = %pack, error = %e, "scrub: pack check failed; retried next pass");
                }
            }
        }
        super::timings::Timings::observe(&self.stats.timings.scrub, started.elapsed());
        Ok(report)
    }

    pub(crate) async fn scrub_pack(
        self: &Arc<Self>,
        pack: PackId,
        recorded: u64,
        report: &mut ScrubReport,
    ) -> Result<(), EngineError> {
        let id = pack;
        let check = verify_pack(self, pack, recorded).await?;
        let mut corrupt: Vec<CorruptChunk> = check.corrupt.clone();
        let mut bytes = check.bytes_read;
        if check.missing() || !check.footer_ok {
            if !self.pack_recorded(pack).await? {
                report.skipped += 1;
                self.drop_scrub_row(pack).await?;
                return Ok(()); // deleted by GC meanwhile
            }
            // Find the chunks from the index side (one index scan: rare).
            let meta = self.meta.clone();
            let entries = blocking(move || {
                let one = HashSet::from([pack]);
                Ok(index_entries_in(&meta, &one)?
                    .remove(&pack)
                    .unwrap_or_default())
            })
            .await?;
            if check.missing() {
                corrupt.extend(
                    entries
                        .into_iter()
                        .filter(|(_, l)| !l.bad)
                        .map(|(cid, loc)| CorruptChunk {
                            id: cid,
                            loc,
                            index_mismatch: false,
                            reason: PackError::Missing.to_string(),
                        }),
                );
            } else {
                let (read, _, bad) = verify_entries(self, pack, entries).await?;
                bytes += read;
                corrupt.extend(bad);
            }
        }
        for fault in &check.faults {
            report.pack_faults += 1;
            let what = fault.to_string();
            tracing::error!(pack = %id, fault = %what, "scrub: pack fault (run `eden-cas fsck` for the affected artifacts)");
        }
        for c in &corrupt {
            report.corrupt_chunks += 1;
            let marked = self.mark_chunk_bad(c.id, c.loc).await?;
            if marked {
                report.marked_bad += 1;
            }
            tracing::error!(
                pack = %id, chunk = %c.id, reason = %c.reason, marked_bad = marked,
                "scrub: corrupt chunk; the next upload of this content heals it \
                 (run `eden-cas fsck` for the affected artifacts)"
            );
        }
        let meta = self.meta.clone();
        let now = Timestamp::now();
        blocking(move || {
            let mut b = meta.batch();
            b.put_pack_scrub(pack, now);
            Ok(b.commit_unsynced()?)
        })
        .await?;
        report.packs += 1;
        report.bytes += bytes;
        let s = &self.stats;
        Stats::add(&s.scrub_packs, 1);
        Stats::add(&s.scrub_bytes, bytes);
        Stats::add(&s.scrub_corrupt_chunks, corrupt.len() as u64);
        Ok(())
    }

    pub(crate) async fn pack_recorded(&self, pack: PackId) -> Result<bool, EngineError> {
        let meta = self.meta.clone();
        blocking(move || Ok(meta.pack(pack)?.is_some())).await
    }

    async fn drop_scrub_row(&self, pack: PackId) -> Result<(), EngineError> {
        let meta = self.meta.clone();
        blocking(move || {
            let mut b = meta.batch();
            b.delete_pack_scrub(pack);
            Ok(b.commit_unsynced()?)
        })
        .await
    }

    /// Runs scrub passes until the engine is dropped, reading at most about
    /// `bytes_per_hour` per hour: each pass gets a minute's share of the
    /// budget and is followed by a pause proportional to what it read. 0
    /// disables the scrubber (returns `None`). The first pass starts a
    /// minute after the call.
    pub fn spawn_scrubber(
        self: &Arc<Self>,
        bytes_per_hour: u64,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if bytes_per_hour == 0 {
            tracing::info!("scrubber disabled (scrub-bytes-per-hour = 0)");
            return None;
        }
        tracing::info!(scrub_bytes_per_hour = bytes_per_hour, "scrubber started");
        let engine = Arc::downgrade(self);
        let slice = (bytes_per_hour / PASSES_PER_HOUR).max(1);
        Some(tokio::spawn(async move {
            tokio::time::sleep(FIRST_PASS_DELAY).await;
            loop {
                let Some(e) = engine.upgrade() else {
                    break;
                };
                let pause = match e.scrub_pass(slice).await {
                    Ok(r) => {
                        tracing::debug!(
                            packs = r.packs,
                            bytes = r.bytes,
                            corrupt = r.corrupt_chunks,
                            "scrub pass done"
                        );
                        pace(r.bytes, bytes_per_hour)
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "scrub pass failed");
                        IDLE_PAUSE
                    }
                };
                drop(e);
                tokio::time::sleep(pause).await;
            }
        }))
    }
}

/// The pause after reading `bytes` that keeps the rate at `per_hour`.
fn pace(bytes: u64, per_hour: u64) -> Duration {
    if bytes == 0 || per_hour == 0 {
        return IDLE_PAUSE;
    }
    Duration::from_secs_f64(bytes as f64 * 3600.0 / per_hour as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_keeps_the_hourly_budget() {
        assert_eq!(pace(0, 1 << 30), IDLE_PAUSE);
        assert_eq!(pace(1 << 30, 1 << 30), Duration::from_secs(3600));
        assert_eq!(pace(10 << 20, 10 << 30), Duration::from_secs_f64(3.515625));
    }
}
