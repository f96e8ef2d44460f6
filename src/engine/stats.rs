//! Store statistics for the operator: logical, unique and stored bytes per
//! experiment and store-wide, pack fill, what GC could reclaim, quota use,
//! and a bounded history of the store-wide figures.
//!
//! These are store-wide figures (invariant 4): they say which content is
//! shared across experiments, so only the deployment admin sees them
//! (`GET /cas/v1/admin/stats` and the dashboard page).
//!
//! Definitions (bytes):
//! - `logical`: the sum of the sizes of unexpired artifacts;
//! - `unique`: raw bytes of the distinct chunks those artifacts hold (after
//!   dedup, before compression);
//! - `stored`: what those chunks take in packs (after compression);
//! - dedup saving = logical − unique; compression saving = unique − stored.
//!
//! Per experiment the same figures count that experiment's own distinct
//! chunks, so a chunk two experiments share counts in both: the per-experiment
//! `unique`/`stored` add up to more than the store-wide ones. Chunks held only
//! by in-flight uploads are not live here (GC keeps them through pins).
//!
//! Computing the figures scans the artifact records, their manifests and
//! segments, and the chunk index once (like GC's mark and plan phases);
//! memory is one 8-byte fingerprint per distinct live chunk plus one per
//! distinct chunk of each experiment.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::gc::{data_bytes, fp};
use super::{Engine, EngineError, blocking};
use crate::auth::ExperimentId;
use crate::clock::Timestamp;
use crate::hash::Digest;
use crate::meta::records::PackRecord;

/// `system-v1` key of the store-wide history ([`HistoryPoint`]s, CBOR).
pub const HISTORY_KEY: &str = "stats-history";
/// Most history points kept; when full, every second point of the older
/// half is dropped, so the history thins out but keeps its whole span.
pub const HISTORY_POINTS: usize = 1000;
/// A new history point is recorded only this long after the previous one.
pub const HISTORY_SPACING: std::time::Duration = std::time::Duration::from_secs(600);
/// Buckets of the pack fill histogram: live share of a pack's chunk bytes in
/// tenths (bucket 9 also holds full packs).
pub const FILL_BUCKETS: usize = 10;

/// Byte figures of a set of artifacts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    /// Unexpired artifacts.
    pub artifacts: u64,
    /// Sum of their sizes.
    pub logical_bytes: u64,
    /// Distinct chunks they hold.
    pub chunks: u64,
    /// Raw bytes of those chunks (after dedup).
    pub unique_bytes: u64,
    /// Bytes those chunks take in packs (after compression).
    pub stored_bytes: u64,
    /// `logical_bytes − unique_bytes`.
    pub dedup_saved_bytes: u64,
    /// `unique_bytes − stored_bytes` (0 when compression grew nothing).
    pub compression_saved_bytes: u64,
}

impl Figures {
    fn finish(mut self) -> Self {
        self.dedup_saved_bytes = self.logical_bytes.saturating_sub(self.unique_bytes);
        self.compression_saved_bytes = self.unique_bytes.saturating_sub(self.stored_bytes);
        self
    }
}

/// Figures of one experiment, with its quota.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExperimentStats {
    /// The experiment.
    pub experiment: String,
    /// Its figures (distinct chunks counted within the experiment).
    #[serde(flatten)]
    pub figures: Figures,
    /// Its quota on logical bytes held, if any.
    pub quota_bytes: Option<u64>,
    /// Logical bytes counted against the quota (committed artifacts, open
    /// sessions, deposits in flight).
    pub quota_used_bytes: u64,
}

/// Pack figures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PackStats {
    /// Pack objects recorded.
    pub packs: u64,
    /// Their total size, footers included.
    pub pack_bytes: u64,
    /// Stored bytes of live chunks in them.
    pub live_bytes: u64,
    /// Stored bytes of chunks no unexpired artifact holds, plus footers of
    /// packs that hold no live chunk.
    pub dead_bytes: u64,
    /// Bytes a GC run at the configured `gc-compact-below` would free:
    /// whole packs without live chunks, and the dead bytes of packs it
    /// compacts.
    pub reclaimable_bytes: u64,
    /// Chunk index entries.
    pub index_entries: u64,
    /// Packs by live share of their chunk bytes, in tenths: `[0]` holds
    /// packs under 10 % live, `[9]` packs at 90 % or more.
    pub fill_histogram: [u64; FILL_BUCKETS],
}

/// One sample of the store-wide figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// When it was taken (RFC 3339 on the wire and in the stored history).
    #[serde(serialize_with = "rfc3339")]
    pub at: Timestamp,
    /// Store-wide logical bytes.
    pub logical_bytes: u64,
    /// Store-wide unique bytes.
    pub unique_bytes: u64,
    /// Store-wide stored bytes of live chunks.
    pub stored_bytes: u64,
    /// All pack bytes (live, dead and footers).
    pub pack_bytes: u64,
}

/// Everything `GET /cas/v1/admin/stats` answers.
#[derive(Clone, Debug, Serialize)]
pub struct StoreStats {
    /// When the figures were computed (RFC 3339).
    #[serde(serialize_with = "rfc3339")]
    pub computed_at: Timestamp,
    /// Store-wide figures.
    pub store: Figures,
    /// Per experiment, by experiment id.
    pub experiments: Vec<ExperimentStats>,
    /// Packs.
    pub packs: PackStats,
    /// Store-wide figures over time, oldest first (this computation
    /// included when it was recorded).
    pub history: Vec<HistoryPoint>,
}

fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339())
}

/// Per-experiment accumulation.
#[derive(Default)]
struct Tally {
    figures: Figures,
    manifests: HashSet<Digest>,
    /// Distinct chunks of the experiment → raw length.
    chunks: HashMap<u64, u32>,
}

impl Engine {
    /// Computes the store statistics now (one scan of the metadata) and
    /// records a history point unless one was recorded within
    /// [`HISTORY_SPACING`]. `compact_below` is the GC threshold the
    /// reclaimable figure is computed for.
    ///
    /// # Errors
    /// [`EngineError::Meta`] when the metadata cannot be read or the
    /// history not written; [`EngineError::Integrity`] when a live
    /// artifact's manifest or segment is missing (as GC refuses to run).
    pub async fn store_stats(
        self: &Arc<Self>,
        compact_below: f64,
    ) -> Result<StoreStats, EngineError> {
        let engine = self.clone();
        let now = Timestamp::now();
        let (store, tallies, packs) = blocking(move || scan(&engine, now, compact_below)).await?;
        let experiments = tallies
            .into_iter()
            .map(|(experiment, t)| {
                let quota = ExperimentId::parse(&experiment).map(|e| self.quota(e));
                ExperimentStats {
                    experiment,
                    figures: t.figures.finish(),
                    quota_bytes: quota.as_ref().and_then(|q| q.quota_bytes),
                    quota_used_bytes: quota.map_or(0, |q| q.used_bytes),
                }
            })
            .collect();
        let point = HistoryPoint {
            at: now,
            logical_bytes: store.logical_bytes,
            unique_bytes: store.unique_bytes,
            stored_bytes: store.stored_bytes,
            pack_bytes: packs.pack_bytes,
        };
        let engine = self.clone();
        let history = blocking(move || record(&engine, point)).await?;
        Ok(StoreStats {
            computed_at: now,
            store,
            experiments,
            packs,
            history,
        })
    }
}

type Scan = (Figures, BTreeMap<String, Tally>, PackStats);

fn scan(engine: &Engine, now: Timestamp, compact_below: f64) -> Result<Scan, EngineError> {
    let meta = &engine.meta;
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut store = Figures::default();
    meta.scan_artifacts(|exp, _id, rec| {
        if !rec.expired(now) {
            let t = tallies.entry(exp.to_string()).or_default();
            t.figures.artifacts += 1;
            t.figures.logical_bytes += rec.size;
            t.manifests.insert(rec.manifest);
            store.artifacts += 1;
            store.logical_bytes += rec.size;
        }
        true
    })?;
    // Distinct live chunks store-wide → stored length (filled from the index).
    let mut live: HashMap<u64, u32> = HashMap::new();
    for t in tallies.values_mut() {
        for id in std::mem::take(&mut t.manifests) {
            let Some(manifest) = meta.manifest(&id)? else {
                return Err(EngineError::missing(super::Record::Manifest(id)));
            };
            for seg in &manifest.segments {
                let Some(segment) = meta.segment(&seg.id)? else {
                    return Err(EngineError::missing(super::Record::Segment(seg.id)));
                };
                for e in &segment.entries {
                    let key = fp(&e.id);
                    if t.chunks.insert(key, e.len).is_none() {
                        t.figures.chunks += 1;
                        t.figures.unique_bytes += u64::from(e.len);
                    }
                    if let std::collections::hash_map::Entry::Vacant(v) = live.entry(key) {
                        v.insert(0);
                        store.chunks += 1;
                        store.unique_bytes += u64::from(e.len);
                    }
                }
            }
        }
    }
    let mut pack_live: HashMap<crate::ids::PackId, (u64, u64)> = HashMap::new();
    let mut packs = PackStats::default();
    meta.scan_chunks(|id, loc| {
        packs.index_entries += 1;
        if let Some(stored) = live.get_mut(&fp(&id)) {
            // A framed chunk is charged its share of the frame.
            *stored = u32::try_from(loc.stored_share()).unwrap_or(u32::MAX);
            let u = pack_live.entry(loc.pack).or_default();
            u.0 += loc.stored_share();
            u.1 += 1;
        }
        true
    })?;
    store.stored_bytes = live.values().map(|&s| u64::from(s)).sum();
    for t in tallies.values_mut() {
        t.figures.stored_bytes = t
            .chunks
            .keys()
            .map(|k| live.get(k).map_or(0, |&s| u64::from(s)))
            .sum();
        t.chunks = HashMap::new();
    }
    for (id, rec) in meta.packs()? {
        let (live_bytes, live_chunks) = pack_live.get(&id).copied().unwrap_or_default();
        add_pack(&mut packs, &rec, live_bytes, live_chunks, compact_below);
    }
    Ok((store.finish(), tallies, packs))
}

/// Adds one pack to the pack figures, with GC's rule for what it reclaims.
fn add_pack(
    packs: &mut PackStats,
    rec: &PackRecord,
    live_bytes: u64,
    live_chunks: u64,
    compact_below: f64,
) {
    let chunk_bytes = data_bytes(rec);
    packs.packs += 1;
    packs.pack_bytes += rec.bytes;
    packs.live_bytes += live_bytes;
    let dead = rec.bytes.saturating_sub(live_bytes);
    if live_chunks == 0 {
        packs.dead_bytes += rec.bytes;
        packs.reclaimable_bytes += rec.bytes;
    } else {
        packs.dead_bytes += chunk_bytes.saturating_sub(live_bytes);
        if (live_bytes as f64) < compact_below * chunk_bytes as f64 {
            packs.reclaimable_bytes += dead;
        }
    }
    let share = if chunk_bytes == 0 {
        0.0
    } else {
        live_bytes as f64 / chunk_bytes as f64
    };
    let bucket = ((share * FILL_BUCKETS as f64) as usize).min(FILL_BUCKETS - 1);
    packs.fill_histogram[bucket] += 1;
}

fn read_history(engine: &Engine) -> Result<Vec<HistoryPoint>, EngineError> {
    match engine.meta.system(HISTORY_KEY)? {
        None => Ok(Vec::new()),
        Some(bytes) => ciborium::from_reader(&bytes[..]).map_err(|e| {
            EngineError::Meta(crate::meta::MetaError::Corrupt {
                cf: crate::meta::CF_SYSTEM,
                detail: format!("{HISTORY_KEY}: {e}"),
            })
        }),
    }
}

/// Appends `point` unless the last point is younger than
/// [`HISTORY_SPACING`]; returns the history with `point` as its last entry
/// either way (not stored then).
fn record(engine: &Engine, point: HistoryPoint) -> Result<Vec<HistoryPoint>, EngineError> {
    let _guard = engine
        .history_lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut history = read_history(engine)?;
    let due = history
        .last()
        .is_none_or(|last| point.at.since(last.at) >= HISTORY_SPACING);
    history.push(point);
    if due {
        thin(&mut history);
        engine
            .meta
            .set_system(HISTORY_KEY, &crate::meta::encode(&history)?)?;
    }
    Ok(history)
}

/// Keeps at most [`HISTORY_POINTS`]: drops every second point of the older
/// half while over.
fn thin(history: &mut Vec<HistoryPoint>) {
    while history.len() > HISTORY_POINTS {
        let half = history.len() / 2;
        let mut i = 0;
        history.retain(|_| {
            i += 1;
            i > half || i % 2 == 1
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(secs: i64) -> HistoryPoint {
        HistoryPoint {
            at: Timestamp::from_unix_secs(secs),
            logical_bytes: secs as u64,
            unique_bytes: 0,
            stored_bytes: 0,
            pack_bytes: 0,
        }
    }

    #[test]
    fn thinning_keeps_the_span_and_the_newest_points() {
        let mut h: Vec<_> = (0..=HISTORY_POINTS as i64).map(point).collect();
        thin(&mut h);
        assert!(h.len() <= HISTORY_POINTS, "{}", h.len());
        assert_eq!(h.first(), Some(&point(0)), "the oldest point stays");
        assert_eq!(h.last(), Some(&point(HISTORY_POINTS as i64)));
        let newer: Vec<_> = h.iter().rev().take(HISTORY_POINTS / 2 - 1).collect();
        assert!(
            newer
                .windows(2)
                .all(|w| w[0].at.since(w[1].at).as_secs() == 1),
            "the newer half keeps every point"
        );
        assert!(h.windows(2).all(|w| w[0].at < w[1].at), "still in order");
    }

    fn rec(bytes: u64, chunks: u32) -> PackRecord {
        PackRecord {
            bytes,
            chunks,
            raw_bytes: bytes,
            created_at: Timestamp::from_unix_secs(0),
        }
    }

    #[test]
    fn packs_follow_gcs_rule() {
        let overhead = crate::pack::overhead_bytes(4);
        let mut p = PackStats::default();
        // Full pack: nothing reclaimable, top bucket.
        add_pack(&mut p, &rec(1000 + overhead, 4), 1000, 4, 0.8);
        // Half live: compacted at 0.8, its dead half reclaimable.
        add_pack(&mut p, &rec(1000 + overhead, 4), 500, 2, 0.8);
        // No live chunk: the whole object goes.
        add_pack(&mut p, &rec(1000 + overhead, 4), 0, 0, 0.8);
        assert_eq!(p.packs, 3);
        assert_eq!(p.live_bytes, 1500);
        assert_eq!(p.dead_bytes, 500 + 1000 + overhead);
        assert_eq!(p.reclaimable_bytes, (500 + overhead) + (1000 + overhead));
        assert_eq!(p.fill_histogram[9], 1);
        assert_eq!(p.fill_histogram[5], 1);
        assert_eq!(p.fill_histogram[0], 1);
    }
}
