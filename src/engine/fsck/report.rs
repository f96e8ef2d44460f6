//! The fsck report (serde-serialisable; its JSON is what `fsck --json` and
//! `POST /cas/v1/admin/fsck` print), its text form, and the collector that
//! deduplicates problems and attributes them to artifacts.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Serialize;

use super::AFFECTED_LIMIT;
use crate::engine::EngineError;
use crate::hash::Digest;
use crate::ids::PackId;
use crate::meta::Meta;
use crate::meta::scan::ScannedArtifact;

/// What fsck found and how much it checked.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FsckReport {
    /// Whether whole-content digests were checked too.
    pub deep: bool,
    /// Problems, in the order found; empty when the store is sound.
    pub problems: Vec<Problem>,
    /// Packs read whole.
    pub packs_checked: u64,
    /// Bytes read from packs to verify them.
    pub pack_bytes_verified: u64,
    /// Chunk index entries checked.
    pub chunks_indexed: u64,
    /// Chunks decoded and BLAKE3-checked in their packs.
    pub chunks_verified: u64,
    /// Artifact records checked (expired ones included).
    pub artifacts_checked: u64,
    /// Of those, expired ones awaiting GC.
    pub artifacts_expired: u64,
    /// Content bytes read back and hashed (`deep`).
    pub content_bytes_read_back: u64,
    /// Time spent reading and verifying packs, in milliseconds.
    pub pack_pass_ms: u64,
    /// Total time, in milliseconds.
    pub elapsed_ms: u64,
    /// Pack verification throughput, in MB/s (10^6 bytes): what the
    /// scrubber achieves when it is not throttled.
    pub verify_mb_per_s: f64,
}

impl FsckReport {
    /// Whether no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Kinds of problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Index entries name a pack that has no record.
    PackRecordMissing,
    /// A recorded pack's object is absent from the blob store.
    PackMissing,
    /// A pack object's size differs from its record.
    PackSizeMismatch,
    /// A pack object ends before the data it describes.
    PackTruncated,
    /// A pack object does not start with the pack magic (harmless to reads).
    PackHeaderCorrupt,
    /// A pack's trailer or footer is unreadable: its chunks cannot be
    /// re-indexed from the blob store.
    PackFooterCorrupt,
    /// An index entry lies outside its pack's data area.
    ChunkOutOfRange,
    /// An index entry names a pack offset its footer does not list.
    ChunkNotInFooter,
    /// An index entry disagrees with the footer entry at its offset.
    ChunkIndexMismatch,
    /// A stored chunk does not decode or fails its BLAKE3 check.
    ChunkCorrupt,
    /// A chunk marked bad by the scrubber and not yet healed.
    ChunkMarkedBad,
    /// A manifest names a chunk the index lacks.
    ChunkNotIndexed,
    /// A manifest's length for a chunk differs from the index.
    ChunkLengthMismatch,
    /// An artifact's manifest row is missing.
    ManifestMissing,
    /// A manifest's object is missing from the blob store.
    ManifestObjectMissing,
    /// A manifest's segment row is missing.
    SegmentMissing,
    /// A manifest's totals disagree with its segments.
    ManifestInconsistent,
    /// An artifact record disagrees with its manifest (size, digests).
    RecordMismatch,
    /// `deep`: the content read back does not match the recorded digests,
    /// or could not be read back.
    ContentDigestMismatch,
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(s)) => f.write_str(&s),
            _ => write!(f, "{self:?}"),
        }
    }
}

/// An artifact a problem breaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AffectedArtifact {
    /// Experiment id.
    pub experiment: String,
    /// Artifact id (32 hex).
    pub id: String,
    /// Expired and awaiting GC (nobody can fetch it any more).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
}

impl AffectedArtifact {
    pub(super) fn of(a: &ScannedArtifact, expired: bool) -> Self {
        AffectedArtifact {
            experiment: a.experiment.to_string(),
            id: a.id.to_string(),
            expired,
        }
    }
}

/// One problem.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// What kind.
    pub kind: ProblemKind,
    /// What exactly, for a human.
    pub detail: String,
    /// The chunk concerned (64 hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk: Option<String>,
    /// The pack concerned (ULID).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack: Option<String>,
    /// The manifest concerned (64 hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// The segment concerned (64 hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// Index entries concerned, for a problem of a whole pack.
    #[serde(skip_serializing_if = "is_zero")]
    pub chunks: u64,
    /// Artifacts it breaks (at most [`AFFECTED_LIMIT`]).
    pub affected: Vec<AffectedArtifact>,
    /// How many artifacts it breaks in all.
    pub affected_total: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Problem {
    fn new(kind: ProblemKind, detail: String) -> Self {
        Problem {
            kind,
            detail,
            chunk: None,
            pack: None,
            manifest: None,
            segment: None,
            chunks: 0,
            affected: Vec::new(),
            affected_total: 0,
        }
    }
}

/// A problem found while checking one artifact, applied only once the
/// artifact is known to still exist.
pub(super) enum Finding {
    /// Of a chunk (kind, chunk, its pack, detail).
    Chunk(ProblemKind, Digest, Option<PackId>, String),
    /// Of the artifact's manifest.
    Manifest(ProblemKind, String),
    /// Of one segment of the manifest.
    Segment(ProblemKind, Digest, String),
    /// Of this artifact alone.
    Artifact(ProblemKind, String),
}

fn push_once(v: &mut Vec<usize>, idx: usize) {
    if !v.contains(&idx) {
        v.push(idx);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Chunk(Digest),
    Pack(PackId),
    Manifest(Digest),
    Segment(Digest),
}

/// Problems, deduplicated by (kind, subject), with the chunks, segments and
/// manifests whose artifacts they affect.
#[derive(Default)]
pub(super) struct Collector {
    problems: Vec<Problem>,
    keyed: HashMap<(ProblemKind, Key), usize>,
    by_chunk: HashMap<Digest, Vec<usize>>,
    by_segment: HashMap<Digest, Vec<usize>>,
    by_manifest: HashMap<Digest, Vec<usize>>,
    /// Problems withdrawn (faults of packs no index entry points into).
    dismissed: HashSet<usize>,
}

impl Collector {
    fn keyed(&mut self, kind: ProblemKind, key: Key, make: impl FnOnce() -> Problem) -> usize {
        if let Some(&idx) = self.keyed.get(&(kind, key)) {
            return idx;
        }
        let idx = self.problems.len();
        self.problems.push(make());
        self.keyed.insert((kind, key), idx);
        idx
    }

    /// A problem of a whole pack (index entries are attached with
    /// [`attach`](Self::attach)).
    pub(super) fn pack_problem(
        &mut self,
        kind: ProblemKind,
        pack: PackId,
        detail: String,
    ) -> usize {
        self.keyed(kind, Key::Pack(pack), || {
            let mut p = Problem::new(kind, detail);
            p.pack = Some(pack.to_string());
            p
        })
    }

    /// A problem of one chunk.
    pub(super) fn chunk_problem(
        &mut self,
        kind: ProblemKind,
        chunk: Digest,
        pack: Option<PackId>,
        detail: String,
    ) -> usize {
        let idx = self.keyed(kind, Key::Chunk(chunk), || {
            let mut p = Problem::new(kind, detail);
            p.chunk = Some(chunk.to_hex());
            p.pack = pack.map(|p| p.to_string());
            p
        });
        push_once(self.by_chunk.entry(chunk).or_default(), idx);
        idx
    }

    /// Withdraws the problems of a pack that no index entry points into:
    /// a dead pack is garbage for GC, whatever state its object is in.
    pub(super) fn dismiss_pack(&mut self, pack: PackId) {
        let ids: Vec<usize> = self
            .keyed
            .iter()
            .filter(|((_, k), _)| *k == Key::Pack(pack))
            .map(|(_, idx)| *idx)
            .collect();
        self.dismissed.extend(ids);
    }

    /// Attaches an index entry to a pack problem.
    pub(super) fn attach(&mut self, idx: usize, chunk: Digest) {
        if let Some(p) = self.problems.get_mut(idx) {
            p.chunks += 1;
        }
        self.by_chunk.entry(chunk).or_default().push(idx);
    }

    /// Applies a finding of artifact `who`, whose manifest is `manifest`.
    pub(super) fn apply(&mut self, f: Finding, who: &AffectedArtifact, manifest: Digest) {
        match f {
            Finding::Chunk(kind, chunk, pack, detail) => {
                self.chunk_problem(kind, chunk, pack, detail);
            }
            Finding::Manifest(kind, detail) => {
                let idx = self.keyed(kind, Key::Manifest(manifest), || {
                    let mut p = Problem::new(kind, detail);
                    p.manifest = Some(manifest.to_hex());
                    p
                });
                push_once(self.by_manifest.entry(manifest).or_default(), idx);
            }
            Finding::Segment(kind, seg, detail) => {
                let idx = self.keyed(kind, Key::Segment(seg), || {
                    let mut p = Problem::new(kind, detail);
                    p.segment = Some(seg.to_hex());
                    p.manifest = Some(manifest.to_hex());
                    p
                });
                push_once(self.by_segment.entry(seg).or_default(), idx);
            }
            Finding::Artifact(kind, detail) => {
                let mut p = Problem::new(kind, detail);
                p.manifest = Some(manifest.to_hex());
                self.problems.push(p);
                let idx = self.problems.len() - 1;
                self.affect(idx, who);
            }
        }
    }

    /// Whether some problem still needs its affected artifacts found.
    pub(super) fn needs_attribution(&self) -> bool {
        !(self.by_chunk.is_empty() && self.by_segment.is_empty() && self.by_manifest.is_empty())
    }

    /// The problems an artifact with manifest `m` is affected by (one
    /// segment in memory at a time).
    pub(super) fn hits(&self, meta: &Meta, m: &Digest) -> Result<Vec<usize>, EngineError> {
        let mut hits: HashSet<usize> = HashSet::new();
        if let Some(v) = self.by_manifest.get(m) {
            hits.extend(v);
        }
        if self.by_segment.is_empty() && self.by_chunk.is_empty() {
            return Ok(hits.into_iter().collect());
        }
        let Some(manifest) = meta.manifest(m)? else {
            return Ok(hits.into_iter().collect());
        };
        for seg in &manifest.segments {
            if let Some(v) = self.by_segment.get(&seg.id) {
                hits.extend(v);
            }
            if self.by_chunk.is_empty() {
                continue;
            }
            if let Some(s) = meta.segment(&seg.id)? {
                for e in &s.entries {
                    if let Some(v) = self.by_chunk.get(&e.id) {
                        hits.extend(v);
                    }
                }
            }
        }
        let mut out: Vec<usize> = hits.into_iter().collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Counts `who` as affected by problem `idx` (listed up to the limit).
    pub(super) fn affect(&mut self, idx: usize, who: &AffectedArtifact) {
        if let Some(p) = self.problems.get_mut(idx) {
            p.affected_total += 1;
            if p.affected.len() < AFFECTED_LIMIT {
                p.affected.push(who.clone());
            }
        }
    }

    /// The problems, in the order found.
    pub(super) fn into_problems(self) -> Vec<Problem> {
        let dismissed = self.dismissed;
        self.problems
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !dismissed.contains(i))
            .map(|(_, p)| p)
            .collect()
    }
}

/// Bytes with a binary unit, for the text report.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

impl fmt::Display for FsckReport {
    /// The text report of `eden-cas fsck`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "packs      {} checked, {} verified in {:.2} s ({:.1} MB/s)",
            self.packs_checked,
            human_bytes(self.pack_bytes_verified),
            self.pack_pass_ms as f64 / 1e3,
            self.verify_mb_per_s
        )?;
        writeln!(
            f,
            "chunks     {} indexed, {} verified",
            self.chunks_indexed, self.chunks_verified
        )?;
        writeln!(
            f,
            "artifacts  {} checked ({} expired)",
            self.artifacts_checked, self.artifacts_expired
        )?;
        if self.deep {
            writeln!(
                f,
                "deep       {} of content read back and hashed",
                human_bytes(self.content_bytes_read_back)
            )?;
        }
        writeln!(f, "elapsed    {:.2} s", self.elapsed_ms as f64 / 1e3)?;
        if self.problems.is_empty() {
            return writeln!(f, "no problems found");
        }
        writeln!(f, "{} problem(s) found:", self.problems.len())?;
        for p in &self.problems {
            write!(f, "- {}", p.kind)?;
            for (label, v) in [
                ("chunk", &p.chunk),
                ("pack", &p.pack),
                ("manifest", &p.manifest),
                ("segment", &p.segment),
            ] {
                if let Some(v) = v {
                    write!(f, " {label}={v}")?;
                }
            }
            if p.chunks > 0 {
                write!(f, " index-entries={}", p.chunks)?;
            }
            writeln!(f)?;
            writeln!(f, "  {}", p.detail)?;
            if p.affected_total == 0 {
                writeln!(f, "  affects no artifact")?;
                continue;
            }
            writeln!(f, "  affects {} artifact(s):", p.affected_total)?;
            for a in &p.affected {
                let note = if a.expired { " (expired)" } else { "" };
                writeln!(f, "    {} {}{note}", a.experiment, a.id)?;
            }
            let more = p.affected_total.saturating_sub(p.affected.len() as u64);
            if more > 0 {
                writeln!(f, "    … and {more} more")?;
            }
        }
        Ok(())
    }
}
