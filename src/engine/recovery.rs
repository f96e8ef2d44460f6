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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use super::ingest::MANIFEST_MAGIC;
use super::{EngineError, blocking};
use crate::blobs::{BlobError, BlobStore, keys};
use crate::hash::Digest;
use crate::meta::records::{ChunkLocation, Manifest, ManifestEntry, PackRecord, Segment};
use crate::meta::{Meta, encode};
use crate::pack::{HEADER_MAGIC, PackEntry, TRAILER_LEN, decode_footer, decode_trailer};

/// `system-v1` key present while a reindex is owed (new metadata directory,
/// or a reindex that has not finished).
pub const REINDEX_PENDING: &str = "reindex-pending";

/// Bytes read from the end of a pack in one request: trailer plus a footer
/// of up to ~1300 entries (a 64 MiB pack of 64 KiB chunks has ~1000).
const PACK_TAIL_BYTES: u64 = 64 << 10;
/// Bytes read from a manifest object per request (at least one segment's
/// entries, so most manifests take one request).
const MANIFEST_WINDOW_BYTES: u64 = 256 << 10;
/// Magic + CBOR length at the start of a manifest object.
const MANIFEST_HEAD_LEN: u64 = 12;
/// Chunk id + raw length, per entry of a manifest object.
const MANIFEST_ENTRY_LEN: u64 = 36;
/// Footers of other packs kept while checking existing index entries.
const FOOTER_CACHE: usize = 4;
/// Deletions per batch when dropping stale index entries.
const DROP_BATCH: usize = 10_000;

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
pub fn is_new_metadata(meta: &Meta) -> Result<bool, EngineError> {
    Ok(meta.system(super::TOKEN_KEY)?.is_none())
}

/// Whether a reindex is owed (see [`REINDEX_PENDING`]).
pub fn reindex_pending(meta: &Meta) -> Result<bool, EngineError> {
    Ok(meta.system(REINDEX_PENDING)?.is_some())
}

/// Records, durably, that a reindex is owed.
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

// ---- packs ----

/// A pack object as listed.
struct ListedPack {
    id: u128,
    key: String,
    size: u64,
}

fn find_listed(listed: &[ListedPack], id: u128) -> Option<&ListedPack> {
    listed
        .binary_search_by_key(&id, |p| p.id)
        .ok()
        .map(|i| &listed[i])
}

/// What the end of a pack object says.
enum FooterRead {
    /// A complete pack and its entries.
    Valid(Vec<PackEntry>),
    /// No valid trailer: an interrupted write.
    Partial,
    /// A trailer, but the footer does not check out.
    Corrupt(String),
    /// The object disappeared after it was listed.
    Gone,
}

/// Reads and checks a pack's trailer and footer (usually one ranged read).
async fn read_footer(blobs: &BlobStore, key: &str, size: u64) -> Result<FooterRead, EngineError> {
    let header = HEADER_MAGIC.len() as u64;
    let trailer_len = TRAILER_LEN as u64;
    if size < header + trailer_len {
        return Ok(FooterRead::Partial);
    }
    let tail_len = size.min(PACK_TAIL_BYTES);
    let tail = match blobs.read_range(key, size - tail_len, tail_len).await {
        Ok(t) => t,
        Err(BlobError::NotFound(_)) => return Ok(FooterRead::Gone),
        Err(e) => return Err(e.into()),
    };
    let Ok(trailer) = decode_trailer(&tail[tail.len() - TRAILER_LEN..]) else {
        return Ok(FooterRead::Partial);
    };
    let body_end = size - trailer_len;
    if trailer.footer_len > body_end - header {
        return Ok(FooterRead::Corrupt("footer longer than the pack".into()));
    }
    let footer_start = body_end - trailer.footer_len;
    let footer: Bytes = if trailer.footer_len + trailer_len <= tail_len {
        let from = (tail_len - trailer_len - trailer.footer_len) as usize;
        tail.slice(from..tail.len() - TRAILER_LEN)
    } else {
        match blobs
            .read_range(key, footer_start, trailer.footer_len)
            .await
        {
            Ok(f) => f,
            Err(BlobError::NotFound(_)) => return Ok(FooterRead::Gone),
            Err(e) => return Err(e.into()),
        }
    };
    let Ok(entries) = decode_footer(&footer, &trailer) else {
        return Ok(FooterRead::Corrupt(
            "footer does not match the BLAKE3 in its trailer".into(),
        ));
    };
    if let Some(e) = entries.iter().find(|e| {
        e.offset < header || e.offset.saturating_add(u64::from(e.stored_len)) > footer_start
    }) {
        return Ok(FooterRead::Corrupt(format!(
            "footer entry for chunk {} lies outside the chunk area",
            e.id.to_hex()
        )));
    }
    Ok(FooterRead::Valid(entries))
}

type FooterMap = HashMap<Digest, PackEntry>;

fn footer_map(entries: &[PackEntry]) -> FooterMap {
    let mut map = HashMap::with_capacity(entries.len());
    for e in entries {
        map.entry(e.id).or_insert(*e);
    }
    map
}

/// The last few footers read, `None` for a pack that is not complete.
#[derive(Default)]
struct FooterCache {
    recent: VecDeque<(u128, Option<Arc<FooterMap>>)>,
}

impl FooterCache {
    fn insert(&mut self, id: u128, footer: Option<Arc<FooterMap>>) {
        if self.recent.len() >= FOOTER_CACHE {
            self.recent.pop_front();
        }
        self.recent.push_back((id, footer));
    }

    async fn load(
        &mut self,
        blobs: &BlobStore,
        listed: &[ListedPack],
        id: u128,
    ) -> Result<Option<Arc<FooterMap>>, EngineError> {
        if let Some((_, f)) = self.recent.iter().find(|(p, _)| *p == id) {
            return Ok(f.clone());
        }
        let footer = match find_listed(listed, id) {
            None => None,
            Some(p) => match read_footer(blobs, &p.key, p.size).await? {
                FooterRead::Valid(entries) => Some(Arc::new(footer_map(&entries))),
                FooterRead::Partial | FooterRead::Corrupt(_) | FooterRead::Gone => None,
            },
        };
        self.insert(id, footer.clone());
        Ok(footer)
    }
}

/// The index entry a footer entry of `pack` stands for.
fn location(pack: u128, e: &PackEntry) -> ChunkLocation {
    ChunkLocation {
        pack,
        offset: e.offset,
        stored_len: e.stored_len,
        raw_len: e.raw_len,
        codec: e.codec,
    }
}

/// Unix seconds of a pack id's ULID timestamp.
fn ulid_secs(id: u128) -> i64 {
    (ulid::Ulid(id).timestamp_ms() / 1000) as i64
}

/// Indexes every complete pack, newest first. Returns the sorted ids of the
/// packs whose index entries stay valid (complete ones, and corrupt ones
/// left for fsck).
async fn reindex_packs(
    meta: &Meta,
    blobs: &BlobStore,
    report: &mut ReindexReport,
) -> Result<Vec<u128>, EngineError> {
    let mut listed = Vec::new();
    for (key, size) in blobs.list(keys::PACKS).await? {
        match keys::parse_pack(&key) {
            Some(id) => listed.push(ListedPack {
                id: id.0,
                key,
                size,
            }),
            None => report.foreign_objects.push(key),
        }
    }
    listed.sort_by_key(|p| p.id);
    listed.dedup_by_key(|p| p.id);
    report.packs_scanned = listed.len() as u64;
    let mut kept = Vec::new();
    let mut cache = FooterCache::default();
    // Newest first: the first complete pack to offer a chunk is the newest
    // holding it, which is what an unusable existing entry is replaced by.
    for pack in listed.iter().rev() {
        match read_footer(blobs, &pack.key, pack.size).await? {
            FooterRead::Valid(entries) => {
                let map = Arc::new(footer_map(&entries));
                index_pack(meta, blobs, &listed, &mut cache, pack, entries, report).await?;
                cache.insert(pack.id, Some(map));
                kept.push(pack.id);
                report.packs_indexed += 1;
            }
            FooterRead::Partial => {
                tracing::info!(key = %pack.key, "partial pack (no valid trailer): not indexed");
                cache.insert(pack.id, None);
                report.partial_packs.push(pack.key.clone());
            }
            FooterRead::Corrupt(reason) => {
                tracing::warn!(key = %pack.key, %reason, "corrupt pack footer: not indexed");
                cache.insert(pack.id, None);
                kept.push(pack.id);
                report.corrupt_packs.push(ObjectProblem {
                    key: pack.key.clone(),
                    reason,
                });
            }
            FooterRead::Gone => {
                tracing::info!(key = %pack.key, "pack vanished while reindexing");
                cache.insert(pack.id, None);
            }
        }
    }
    kept.sort_unstable();
    Ok(kept)
}

/// Indexes one complete pack in one batch (see [`reindex`] for the rule).
async fn index_pack(
    meta: &Meta,
    blobs: &BlobStore,
    listed: &[ListedPack],
    cache: &mut FooterCache,
    pack: &ListedPack,
    entries: Vec<PackEntry>,
    report: &mut ReindexReport,
) -> Result<(), EngineError> {
    let ids: Vec<Digest> = entries.iter().map(|e| e.id).collect();
    let m = meta.clone();
    let current = blocking(move || Ok(m.chunks(&ids)?)).await?;
    // An entry naming another pack that still exists stays only if that
    // pack's footer agrees with it: check those, one footer at a time.
    let mut checks: BTreeMap<u128, Vec<(Digest, ChunkLocation)>> = BTreeMap::new();
    for (e, cur) in entries.iter().zip(&current) {
        if let Some(x) = cur
            && x.pack != pack.id
            && find_listed(listed, x.pack).is_some()
        {
            checks.entry(x.pack).or_default().push((e.id, *x));
        }
    }
    let mut agrees: HashSet<Digest> = HashSet::new();
    for (other, list) in checks {
        let footer = cache.load(blobs, listed, other).await?;
        for (chunk, x) in list {
            if footer
                .as_ref()
                .and_then(|f| f.get(&chunk))
                .is_some_and(|fe| location(other, fe) == x)
            {
                agrees.insert(chunk);
            }
        }
    }
    let (m, id, size) = (meta.clone(), pack.id, pack.size);
    let written = blocking(move || {
        let mut b = m.batch();
        let mut seen = HashSet::with_capacity(entries.len());
        let mut written = 0u64;
        for (e, cur) in entries.iter().zip(current) {
            if !seen.insert(e.id) {
                continue;
            }
            let want = location(id, e);
            // When `ChunkLocation` gains a scrubber's `bad` flag: an entry
            // marked bad never equals `want` nor agrees with another footer
            // (so a fresh copy in any complete pack replaces it), but with
            // no other copy it must stay as it is, not be rewritten as good
            // from this footer.
            let keep = match cur {
                None => false,
                Some(x) if x == want => true,
                // Names this pack but disagrees with its footer: the footer
                // is the truth.
                Some(x) if x.pack == id => false,
                Some(_) => agrees.contains(&e.id),
            };
            if !keep {
                b.put_chunk(&e.id, &want);
                written += 1;
            }
        }
        let existing = m.pack(id)?;
        let rec = PackRecord {
            bytes: size,
            chunks: entries.len() as u32,
            raw_bytes: entries.iter().map(|e| u64::from(e.raw_len)).sum(),
            created_at: existing
                .as_ref()
                .map_or_else(|| ulid_secs(id), |r| r.created_at),
        };
        if existing.as_ref() != Some(&rec) {
            b.put_pack(id, &rec);
        }
        b.commit_unsynced()?;
        Ok(written)
    })
    .await?;
    report.entries_written += written;
    Ok(())
}

/// Drops chunk entries and pack records that name packs not in `kept`;
/// counts the entries left.
async fn drop_stale(
    meta: &Meta,
    kept: Vec<u128>,
    report: &mut ReindexReport,
) -> Result<(), EngineError> {
    let m = meta.clone();
    let (left, dropped, packs_dropped) = blocking(move || {
        let (mut left, mut dropped, mut packs_dropped) = (0u64, 0u64, 0u64);
        let mut b = m.batch();
        for item in m.chunk_entries() {
            let (id, loc) = item?;
            if kept.binary_search(&loc.pack).is_ok() {
                left += 1;
                continue;
            }
            b.delete_chunk_entry(&id);
            dropped += 1;
            if b.len() >= DROP_BATCH {
                std::mem::replace(&mut b, m.batch()).commit_unsynced()?;
            }
        }
        for (id, _) in m.packs()? {
            if kept.binary_search(&id).is_err() {
                b.delete_pack_record(id);
                packs_dropped += 1;
            }
        }
        b.commit_unsynced()?;
        Ok((left, dropped, packs_dropped))
    })
    .await?;
    report.chunks_indexed = left;
    report.entries_dropped = dropped;
    report.pack_records_dropped = packs_dropped;
    Ok(())
}

// ---- manifests ----

/// A manifest object that checked out.
struct FoundManifest {
    id: Digest,
    size: u64,
    blake3: Digest,
    chunks: u64,
    claimed: bool,
}

/// Ranged reads of one object through a window, so that small objects take
/// one request.
struct WindowReader<'a> {
    blobs: &'a BlobStore,
    key: &'a str,
    size: u64,
    start: u64,
    buf: Bytes,
}

impl WindowReader<'_> {
    async fn read(&mut self, offset: u64, len: u64) -> Result<Bytes, BlobError> {
        let end = offset.saturating_add(len);
        if end > self.size {
            return Err(BlobError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{}: read past the end of the object", self.key),
            )));
        }
        let held = self.start + self.buf.len() as u64;
        if offset < self.start || end > held {
            let n = len.max(MANIFEST_WINDOW_BYTES).min(self.size - offset);
            self.buf = self.blobs.read_range(self.key, offset, n).await?;
            self.start = offset;
        }
        let from = (offset - self.start) as usize;
        Ok(self.buf.slice(from..from + len as usize))
    }
}

/// Rebuilds every manifest found under `manifests/`; returns those that
/// checked out, sorted by id.
async fn restore_manifests(
    meta: &Meta,
    blobs: &BlobStore,
    report: &mut ReindexReport,
) -> Result<Vec<FoundManifest>, EngineError> {
    let mut found = Vec::new();
    for (key, size) in blobs.list(keys::MANIFESTS).await? {
        let Some(id) = keys::parse_manifest(&key) else {
            report.foreign_objects.push(key);
            continue;
        };
        report.manifests_scanned += 1;
        match restore_manifest(meta, blobs, &key, id, size).await {
            Ok(Ok((manifest, restored))) => {
                report.manifests_restored += u64::from(restored);
                found.push(FoundManifest {
                    id,
                    size: manifest.size,
                    blake3: manifest.blake3,
                    chunks: manifest.chunks,
                    claimed: false,
                });
            }
            Ok(Err(reason)) => {
                tracing::warn!(%key, %reason, "manifest object not restored");
                report.bad_manifests.push(ObjectProblem { key, reason });
            }
            Err(EngineError::Blob(BlobError::NotFound(_))) => {
                tracing::info!(%key, "manifest object vanished while reindexing");
            }
            Err(e) => return Err(e),
        }
    }
    found.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
    found.dedup_by(|a, b| a.id == b.id);
    Ok(found)
}

/// Restores one manifest object: `Ok(Err(reason))` when the object does not
/// check out; otherwise the manifest and whether anything was written.
async fn restore_manifest(
    meta: &Meta,
    blobs: &BlobStore,
    key: &str,
    id: Digest,
    size: u64,
) -> Result<Result<(Manifest, bool), String>, EngineError> {
    if size < MANIFEST_HEAD_LEN {
        return Ok(Err("shorter than its header".into()));
    }
    let mut r = WindowReader {
        blobs,
        key,
        size,
        start: 0,
        buf: Bytes::new(),
    };
    let head = r.read(0, MANIFEST_HEAD_LEN).await?;
    if &head[..8] != MANIFEST_MAGIC {
        return Ok(Err("not a manifest object (magic)".into()));
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&head[8..12]);
    let cbor_len = u64::from(u32::from_le_bytes(len));
    if MANIFEST_HEAD_LEN + cbor_len > size {
        return Ok(Err("manifest longer than the object".into()));
    }
    let cbor = r.read(MANIFEST_HEAD_LEN, cbor_len).await?;
    if Digest::of(&cbor) != id {
        return Ok(Err("BLAKE3 of the manifest differs from its name".into()));
    }
    let manifest: Manifest = match ciborium::from_reader(&cbor[..]) {
        Ok(m) => m,
        Err(e) => return Ok(Err(format!("manifest does not decode: {e}"))),
    };
    let seg_chunks: u64 = manifest.segments.iter().map(|s| u64::from(s.chunks)).sum();
    let seg_bytes: u64 = manifest.segments.iter().map(|s| s.bytes).sum();
    if seg_chunks != manifest.chunks || seg_bytes != manifest.size {
        return Ok(Err(
            "segment list disagrees with the manifest's totals".into()
        ));
    }
    let entries_at = MANIFEST_HEAD_LEN + cbor_len;
    if manifest
        .chunks
        .checked_mul(MANIFEST_ENTRY_LEN)
        .and_then(|n| n.checked_add(entries_at))
        != Some(size)
    {
        return Ok(Err("object size disagrees with the chunk count".into()));
    }
    let (m, mf) = (meta.clone(), manifest.clone());
    let present = blocking(move || {
        if m.manifest(&id)?.as_ref() != Some(&mf) {
            return Ok(false);
        }
        for s in &mf.segments {
            if !m.has_segment(&s.id)? {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    if present {
        return Ok(Ok((manifest, false)));
    }
    // One segment in memory at a time. Segments go in unsynced; the final
    // flush of `reindex` makes them durable before the marker is cleared.
    let mut offset = entries_at;
    for (i, seg) in manifest.segments.iter().enumerate() {
        let n = u64::from(seg.chunks) * MANIFEST_ENTRY_LEN;
        let raw = r.read(offset, n).await?;
        offset += n;
        let entries: Vec<ManifestEntry> = raw
            .chunks_exact(MANIFEST_ENTRY_LEN as usize)
            .filter_map(|e| {
                let id = Digest::from_slice(&e[..32])?;
                let mut len = [0u8; 4];
                len.copy_from_slice(&e[32..36]);
                Some(ManifestEntry {
                    id,
                    len: u32::from_le_bytes(len),
                })
            })
            .collect();
        let bytes: u64 = entries.iter().map(|e| u64::from(e.len)).sum();
        let encoded = encode(&Segment { entries });
        if Digest::of(&encoded) != seg.id || bytes != seg.bytes {
            return Ok(Err(format!(
                "segment {i} does not match the manifest's segment reference"
            )));
        }
        let (m, sid) = (meta.clone(), seg.id);
        blocking(move || {
            let mut b = m.batch();
            b.put_segment(&sid, &encoded);
            Ok(b.commit_unsynced()?)
        })
        .await?;
    }
    let (m, mf) = (meta.clone(), manifest.clone());
    blocking(move || {
        let mut b = m.batch();
        b.put_manifest(&id, &mf);
        Ok(b.commit_unsynced()?)
    })
    .await?;
    Ok(Ok((manifest, true)))
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
