//! `fsck`: a read-only check of the whole store, reporting each problem with
//! the artifacts it affects.
//!
//! Passes, in order:
//! 1. **packs** — every pack record's object is read whole and each chunk
//!    the index locates in it is decoded and BLAKE3-checked (`packcheck.rs`,
//!    shared with the scrubber);
//! 2. **index** — every chunk index entry names a recorded pack, lies in its
//!    data area (after the header, before the footer) and is not marked bad;
//!    entries that match no footer entry, and packs whose footer is
//!    unreadable, are checked from the index side;
//! 3. **artifacts** — every artifact's manifest row, segments, chunk entries
//!    (indexed, right length) and manifest object in the blob store (needed
//!    for recovery); with `deep`, the whole content is read back and its
//!    BLAKE3 and SHA-256 compared with the recorded ones;
//! 4. **affected** — only if something was found: artifacts are scanned
//!    again, one segment at a time, for the problem chunks, segments and
//!    manifests, so each problem names the artifacts it breaks.
//!
//! Memory stays bounded (invariant 8): per-pack summaries (packs are
//! 64 MiB each), the problems and their chunks, one page of artifacts and
//! one segment; never a map of every chunk. Expired artifacts are checked
//! like the others — they still hold their chunks until GC — and are flagged
//! `expired` where they appear as affected.
//!
//! fsck changes nothing but one thing: a copy it proves bad (hash
//! mismatch, undecodable, missing or truncated pack) is marked bad in the
//! chunk index at once, like the scrubber does (`heal.rs`), so the next
//! upload of that content heals it. On a running server it tolerates concurrent
//! deposits and GC: a pack or artifact that disappears while it is being
//! checked is skipped, not reported.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use super::packcheck::{
    CorruptChunk, PackFault, index_entries_in, read_footer, verify_entries, verify_pack,
};
use super::{Engine, EngineError, blocking};
use crate::blobs::keys;
use crate::hash::Digest;
use crate::ids::PackId;
use crate::meta::Meta;
use crate::meta::records::{Manifest, PackRecord};
use crate::meta::scan::ScannedArtifact;
use crate::pack::{HEADER_LEN, max_data_end};

mod report;

pub use report::{AffectedArtifact, FsckReport, Problem, ProblemKind};
use report::{Collector, Finding};

/// At most this many affected artifacts are listed per problem (all are
/// counted).
pub const AFFECTED_LIMIT: usize = 100;
/// Artifacts read per metadata call.
const ARTIFACT_PAGE: usize = 256;
/// Manifests remembered as already checked (cleared when full), so shared
/// content is checked — and read back — once.
const MANIFEST_MEMO: usize = 65_536;

/// What pass 1 learned about a pack, for pass 2.
#[derive(Debug, Default)]
struct PackSummary {
    bytes: u64,
    data_end: Option<u64>,
    matched: u64,
    footer_ok: bool,
    /// The object is gone (its entries share that one problem).
    missing: bool,
    /// Problems that every index entry into this pack shares.
    shared: Vec<usize>,
}

impl Engine {
    /// Checks the whole store (see the module docs); `deep` also reads every
    /// artifact's content back. Read-only.
    ///
    /// # Errors
    /// Blob store and metadata failures (faults of the stored data are
    /// findings in the report, not errors).
    pub async fn fsck(self: &Arc<Self>, deep: bool) -> Result<FsckReport, EngineError> {
        let started = Instant::now();
        let mut report = FsckReport {
            deep,
            ..FsckReport::default()
        };
        let mut c = Collector::default();
        // Copies proved bad, marked once the report is complete (so this
        // report lists each once, as corrupt).
        let mut proved_bad: Vec<CorruptChunk> = Vec::new();

        // Pass 1: packs.
        let meta = self.meta.clone();
        let packs = blocking(move || Ok(meta.packs()?)).await?;
        let mut summaries: HashMap<PackId, PackSummary> = HashMap::with_capacity(packs.len());
        for (pack, rec) in &packs {
            let (pack, rec) = (*pack, rec.clone());
            let check = verify_pack(self, pack, rec.bytes).await?;
            if check.missing() && !self.pack_recorded(pack).await? {
                continue; // deleted by GC meanwhile
            }
            report.packs_checked += 1;
            report.pack_bytes_verified += check.bytes_read;
            report.chunks_verified += check.chunks_verified;
            let mut s = PackSummary {
                bytes: rec.bytes,
                data_end: check.data_end,
                matched: check.matched,
                footer_ok: check.footer_ok,
                missing: check.missing(),
                shared: Vec::new(),
            };
            for fault in &check.faults {
                let (kind, shares) = fault_kind(fault);
                let idx = c.pack_problem(kind, pack, fault_detail(pack, fault));
                if shares {
                    s.shared.push(idx);
                }
            }
            for bad in &check.corrupt {
                c.corrupt_chunk(bad);
            }
            proved_bad.extend(check.corrupt.iter().cloned());
            summaries.insert(pack, s);
        }
        report.pack_pass_ms = started.elapsed().as_millis() as u64;

        // Pass 2: the chunk index.
        let meta = self.meta.clone();
        let (mut c, summaries, indexed, flagged) =
            blocking(move || index_pass(&meta, c, summaries)).await?;
        report.chunks_indexed = indexed;
        self.check_flagged(&mut c, &mut report, &summaries, flagged, &mut proved_bad)
            .await?;
        drop(summaries);

        // Pass 3: artifacts.
        let c = self.artifact_pass(c, &mut report).await?;

        // Pass 4: who is affected.
        let c = self.affected_pass(c).await?;
        report.problems = c.into_problems();
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        report.verify_mb_per_s = mb_per_s(report.pack_bytes_verified, report.pack_pass_ms);
        for b in proved_bad {
            self.condemn(b.id, b.loc, &b.reason).await;
        }
        Ok(report)
    }

    /// Checks packs flagged by the index pass from the index side: entries
    /// matching no footer entry, and every entry of a pack whose footer is
    /// unreadable.
    async fn check_flagged(
        self: &Arc<Self>,
        c: &mut Collector,
        report: &mut FsckReport,
        summaries: &HashMap<PackId, PackSummary>,
        flagged: HashSet<PackId>,
        proved_bad: &mut Vec<CorruptChunk>,
    ) -> Result<(), EngineError> {
        let meta = self.meta.clone();
        let by_pack = blocking(move || index_entries_in(&meta, &flagged)).await?;
        for (pack, mut entries) in by_pack {
            let Some(s) = summaries.get(&pack) else {
                continue;
            };
            if s.footer_ok {
                let footer = match read_footer(self, pack, s.bytes).await? {
                    Ok(tail) => tail.entries,
                    Err(_) => continue, // changed meanwhile; pass 1 judged it
                };
                let listed: HashSet<(Digest, u64)> =
                    footer.iter().map(|e| (e.id, e.offset)).collect();
                entries.retain(|(id, loc)| !listed.contains(&(*id, loc.offset)));
                for (id, loc) in &entries {
                    c.chunk_problem(
                        ProblemKind::ChunkNotInFooter,
                        *id,
                        Some(pack),
                        format!(
                            "index entry names offset {} of the pack, where its footer lists \
                             no such chunk (the index cannot be rebuilt to this location)",
                            loc.offset
                        ),
                    );
                }
            }
            let (read, checked, bad) = verify_entries(self, pack, entries).await?;
            report.pack_bytes_verified += read;
            report.chunks_verified += checked;
            for b in &bad {
                c.corrupt_chunk(b);
            }
            proved_bad.extend(bad);
        }
        Ok(())
    }

    /// Pass 3 (see the module docs).
    async fn artifact_pass(
        self: &Arc<Self>,
        mut c: Collector,
        report: &mut FsckReport,
    ) -> Result<Collector, EngineError> {
        let now = crate::clock::Timestamp::now();
        let mut memo: HashSet<Digest> = HashSet::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let meta = self.meta.clone();
            let cursor = after.clone();
            let page = blocking(move || Ok(meta.artifacts_page(cursor.as_deref(), ARTIFACT_PAGE)?))
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(last.key());
            for a in page {
                report.artifacts_checked += 1;
                let expired = a.record.expired(now);
                if expired {
                    report.artifacts_expired += 1;
                }
                if memo.len() >= MANIFEST_MEMO {
                    memo.clear();
                }
                let first = memo.insert(a.record.manifest);
                let findings = self.check_artifact(&a, first, report).await?;
                if findings.is_empty() {
                    continue;
                }
                if !self.still_exists(&a).await? {
                    // Deleted meanwhile: another holder of the content
                    // must still get its own check.
                    memo.remove(&a.record.manifest);
                    continue;
                }
                let who = AffectedArtifact::of(&a, expired);
                for f in findings {
                    c.apply(f, &who, a.record.manifest);
                }
            }
        }
        Ok(c)
    }

    async fn still_exists(&self, a: &ScannedArtifact) -> Result<bool, EngineError> {
        let (meta, exp, id) = (self.meta.clone(), a.experiment, a.id);
        blocking(move || Ok(meta.artifact(&exp, &id)?.is_some())).await
    }

    /// Checks one artifact; `first` when its manifest was not checked yet
    /// (else only the record is compared with the manifest).
    async fn check_artifact(
        self: &Arc<Self>,
        a: &ScannedArtifact,
        first: bool,
        report: &mut FsckReport,
    ) -> Result<Vec<Finding>, EngineError> {
        let meta = self.meta.clone();
        let rec = a.record.clone();
        let (manifest, mut findings) = blocking(move || check_metadata(&meta, &rec, first)).await?;
        let Some(manifest) = manifest.filter(|_| first) else {
            return Ok(findings);
        };
        let mid = a.record.manifest;
        match super::manifest_object::manifest_copy_key(self, &mid).await? {
            Some(_) => {}
            None => findings.push(Finding::Manifest(
                ProblemKind::ManifestObjectMissing,
                format!(
                    "manifest object {} is missing from the blob store (metadata could not be \
                     rebuilt for this content)",
                    keys::manifest(&mid)
                ),
            )),
        }
        if report.deep {
            match self.digest_segments(&manifest.segments).await {
                Ok(d) => {
                    report.content_bytes_read_back += d.bytes;
                    if d.blake3 != manifest.blake3
                        || d.sha256 != manifest.sha256
                        || d.bytes != manifest.size
                    {
                        findings.push(Finding::Manifest(
                            ProblemKind::ContentDigestMismatch,
                            format!(
                                "content read back ({} bytes, blake3 {}) differs from the \
                                 recorded digests ({} bytes, blake3 {})",
                                d.bytes, d.blake3, manifest.size, manifest.blake3
                            ),
                        ));
                    }
                }
                Err(EngineError::Integrity(detail)) => findings.push(Finding::Manifest(
                    ProblemKind::ContentDigestMismatch,
                    format!("content could not be read back to check its digests: {detail}"),
                )),
                Err(e) => return Err(e),
            }
        }
        Ok(findings)
    }

    /// Pass 4: attributes problems to the artifacts they break.
    async fn affected_pass(&self, mut c: Collector) -> Result<Collector, EngineError> {
        if !c.needs_attribution() {
            return Ok(c);
        }
        let now = crate::clock::Timestamp::now();
        let mut after: Option<Vec<u8>> = None;
        let mut memo: HashMap<Digest, Vec<usize>> = HashMap::new();
        loop {
            let meta = self.meta.clone();
            let cursor = after.clone();
            let (page, c2, memo2) = blocking(move || {
                let page = meta.artifacts_page(cursor.as_deref(), ARTIFACT_PAGE)?;
                for a in &page {
                    if memo.len() >= MANIFEST_MEMO {
                        memo.clear();
                    }
                    let m = a.record.manifest;
                    if let std::collections::hash_map::Entry::Vacant(slot) = memo.entry(m) {
                        slot.insert(c.hits(&meta, &m)?);
                    }
                    let expired = a.record.expired(now);
                    let who = AffectedArtifact::of(a, expired);
                    for &idx in memo.get(&m).map(Vec::as_slice).unwrap_or_default() {
                        c.affect(idx, &who);
                    }
                }
                Ok((page, c, memo))
            })
            .await?;
            c = c2;
            memo = memo2;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(last.key());
        }
        Ok(c)
    }
}

/// What pass 2 hands on: the collector, the summaries, the number of index
/// entries and the packs to check from the index side.
type IndexPass = (
    Collector,
    HashMap<PackId, PackSummary>,
    u64,
    HashSet<PackId>,
);

/// Pass 2 over the chunk index.
fn index_pass(
    meta: &Meta,
    mut c: Collector,
    summaries: HashMap<PackId, PackSummary>,
) -> Result<IndexPass, EngineError> {
    let mut counts: HashMap<PackId, u64> = HashMap::new();
    let mut recent: HashMap<PackId, Option<PackRecord>> = HashMap::new();
    let mut indexed = 0u64;
    let mut failure: Option<EngineError> = None;
    meta.scan_chunks(|id, loc| {
        indexed += 1;
        let Some(s) = summaries.get(&loc.pack) else {
            // Not among the packs listed at the start: written since, or
            // unrecorded.
            let rec = match recent.get(&loc.pack) {
                Some(r) => r.clone(),
                None => match meta.pack(loc.pack) {
                    Ok(r) => {
                        recent.insert(loc.pack, r.clone());
                        r
                    }
                    Err(e) => {
                        failure = Some(e.into());
                        return false;
                    }
                },
            };
            if rec.is_none() {
                let idx = c.pack_problem(
                    ProblemKind::PackRecordMissing,
                    loc.pack,
                    format!(
                        "index entries name pack {} which has no pack record",
                        loc.pack
                    ),
                );
                c.attach(idx, id);
            }
            return true;
        };
        *counts.entry(loc.pack).or_default() += 1;
        for &idx in &s.shared {
            c.attach(idx, id);
        }
        let hi = s
            .data_end
            .unwrap_or_else(|| max_data_end(s.bytes));
        let end = loc.offset.saturating_add(u64::from(loc.stored_len));
        if loc.offset < HEADER_LEN || end > hi {
            c.chunk_problem(
                ProblemKind::ChunkOutOfRange,
                id,
                Some(loc.pack),
                format!(
                    "index entry [{}, {end}) lies outside the pack's data area [{HEADER_LEN}, {hi})",
                    loc.offset
                ),
            );
        }
        if loc.bad {
            c.chunk_problem(
                ProblemKind::ChunkMarkedBad,
                id,
                Some(loc.pack),
                "marked bad (a verified read, fsck or the scrubber proved the copy bad); the \
                 next upload of this content stores a fresh copy and heals every artifact that \
                 holds it"
                    .into(),
            );
        }
        true
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    for p in summaries.keys() {
        if !counts.contains_key(p) {
            c.dismiss_pack(*p);
        }
    }
    let flagged = summaries
        .iter()
        .filter(|(p, s)| {
            let n = counts.get(p).copied().unwrap_or(0);
            if s.missing {
                false
            } else if s.footer_ok {
                n > s.matched
            } else {
                n > 0
            }
        })
        .map(|(p, _)| *p)
        .collect();
    Ok((c, summaries, indexed, flagged))
}

/// The metadata half of checking one artifact: manifest row, record vs
/// manifest, and (when `full`) segments and chunk entries.
fn check_metadata(
    meta: &Meta,
    rec: &crate::meta::records::ArtifactRecord,
    full: bool,
) -> Result<(Option<Manifest>, Vec<Finding>), EngineError> {
    let mut out = Vec::new();
    let Some(m) = meta.manifest(&rec.manifest)? else {
        out.push(Finding::Manifest(
            ProblemKind::ManifestMissing,
            "the artifact's manifest row is missing".into(),
        ));
        return Ok((None, out));
    };
    if rec.size != m.size || rec.blake3 != m.blake3 || rec.sha256 != m.sha256 {
        out.push(Finding::Artifact(
            ProblemKind::RecordMismatch,
            format!(
                "artifact record ({} bytes, blake3 {}) disagrees with its manifest ({} bytes, \
                 blake3 {})",
                rec.size, rec.blake3, m.size, m.blake3
            ),
        ));
    }
    if !full {
        return Ok((Some(m), out));
    }
    let (mut size, mut chunks) = (0u64, 0u64);
    for seg in &m.segments {
        let Some(s) = meta.segment(&seg.id)? else {
            out.push(Finding::Segment(
                ProblemKind::SegmentMissing,
                seg.id,
                format!("segment {} of the manifest is missing", seg.id),
            ));
            continue;
        };
        let bytes: u64 = s.entries.iter().map(|e| u64::from(e.len)).sum();
        if s.entries.len() as u64 != u64::from(seg.chunks) || bytes != seg.bytes {
            out.push(Finding::Manifest(
                ProblemKind::ManifestInconsistent,
                format!(
                    "segment {} holds {} chunks / {bytes} bytes, the manifest says {} / {}",
                    seg.id,
                    s.entries.len(),
                    seg.chunks,
                    seg.bytes
                ),
            ));
        }
        size += bytes;
        chunks += s.entries.len() as u64;
        let ids: Vec<Digest> = s.entries.iter().map(|e| e.id).collect();
        for (e, loc) in s.entries.iter().zip(meta.chunks(&ids)?) {
            match loc {
                None => out.push(Finding::Chunk(
                    ProblemKind::ChunkNotIndexed,
                    e.id,
                    None,
                    "named by a manifest but not in the chunk index".into(),
                )),
                Some(loc) if loc.raw_len != e.len => out.push(Finding::Chunk(
                    ProblemKind::ChunkLengthMismatch,
                    e.id,
                    Some(loc.pack),
                    format!(
                        "the manifest says {} bytes, the index {} bytes",
                        e.len, loc.raw_len
                    ),
                )),
                Some(_) => {}
            }
        }
    }
    if size != m.size || chunks != m.chunks {
        out.push(Finding::Manifest(
            ProblemKind::ManifestInconsistent,
            format!(
                "segments hold {chunks} chunks / {size} bytes, the manifest says {} / {}",
                m.chunks, m.size
            ),
        ));
    }
    Ok((Some(m), out))
}

/// The problem kind of a pack fault, and whether every index entry into
/// the pack shares it (so its artifacts are affected).
fn fault_kind(f: &PackFault) -> (ProblemKind, bool) {
    match f {
        PackFault::Missing => (ProblemKind::PackMissing, true),
        PackFault::SizeMismatch { .. } => (ProblemKind::PackSizeMismatch, true),
        PackFault::Truncated => (ProblemKind::PackTruncated, true),
        PackFault::BadHeader => (ProblemKind::PackHeaderCorrupt, false),
        PackFault::BadFooter(_) => (ProblemKind::PackFooterCorrupt, true),
    }
}

fn fault_detail(pack: PackId, f: &PackFault) -> String {
    let key = keys::pack(pack);
    match f {
        PackFault::BadFooter(_) => {
            format!("{key}: {f} (its chunks cannot be re-indexed from the blob store)")
        }
        _ => format!("{key}: {f}"),
    }
}

/// Megabytes (10^6 bytes) per second.
fn mb_per_s(bytes: u64, ms: u64) -> f64 {
    if ms == 0 {
        return 0.0;
    }
    (bytes as f64 / 1e6) / (ms as f64 / 1e3)
}

impl Collector {
    /// Records a chunk whose stored copy failed.
    fn corrupt_chunk(&mut self, b: &CorruptChunk) {
        let kind = if b.index_mismatch {
            ProblemKind::ChunkIndexMismatch
        } else {
            ProblemKind::ChunkCorrupt
        };
        self.chunk_problem(kind, b.id, Some(b.loc.pack), b.reason.clone());
    }
}
