//! Verifying one pack whole — the check shared by `fsck` and the
//! background scrubber.
//!
//! A pack is read from end to start of its data with ranged reads of at
//! most [`WINDOW_BYTES`] (cut at chunk boundaries), so every stored byte is
//! touched, and each chunk that the index locates in the pack (same id,
//! same offset) is decoded and BLAKE3-checked (invariant 6). Footer entries
//! that no index entry names are dead copies (superseded, or stored twice
//! by racing deposits): read but not decoded, and never a problem. Memory:
//! the footer plus two windows, whatever the store's size (invariant 8).
//!
//! Index entries that point into the pack but match no footer entry, and
//! packs whose footer cannot be read, are checked from the index side with
//! [`verify_entries`] (ranged reads of the located bytes).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, stream};

use super::{Engine, EngineError, blocking};
use crate::blobs::{BlobError, keys};
use crate::hash::Digest;
use crate::meta::Meta;
use crate::meta::records::ChunkLocation;
use crate::pack::{
    HEADER_MAGIC, PackEntry, TRAILER_LEN, decode_chunk, decode_footer, decode_trailer,
};

/// Pack bytes are read in windows of at most this size.
pub(crate) const WINDOW_BYTES: u64 = 8 << 20;
/// Windows read ahead of the decoder.
const READ_AHEAD: usize = 2;
/// Length of the pack header.
pub(crate) const HEADER_LEN: u64 = HEADER_MAGIC.len() as u64;

/// What is wrong with a pack as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PackFault {
    /// The object does not exist.
    Missing,
    /// The object's size differs from its record.
    SizeMismatch {
        /// Size in `packs-v1`.
        recorded: u64,
        /// Size in the blob store.
        actual: u64,
    },
    /// The object ends before the data its footer describes.
    Truncated,
    /// The first bytes are not the pack magic.
    BadHeader,
    /// Trailer or footer missing, malformed or failing its hash: the chunk
    /// index could not be rebuilt from this pack.
    BadFooter(String),
}

/// A chunk located by the index whose stored copy is unusable.
#[derive(Clone, Debug)]
pub(crate) struct CorruptChunk {
    /// Chunk id.
    pub id: Digest,
    /// The index entry, as it was when the pack was checked.
    pub loc: ChunkLocation,
    /// Whether the index entry disagrees with the footer (else the bytes
    /// themselves are bad).
    pub index_mismatch: bool,
    /// Why, for the report and the log.
    pub reason: String,
}

/// The outcome of checking one pack.
#[derive(Debug, Default)]
pub(crate) struct PackCheck {
    /// Bytes read from the blob store.
    pub bytes_read: u64,
    /// Chunks decoded and hash-checked.
    pub chunks_verified: u64,
    /// Index entries that name a footer entry of this pack (same id and
    /// offset), bad ones included.
    pub matched: u64,
    /// Where the footer starts (the end of the data area), once known.
    pub data_end: Option<u64>,
    /// Pack-level faults, in the order found.
    pub faults: Vec<PackFault>,
    /// Whether the footer could be read (else only [`verify_entries`] can
    /// check the pack's chunks).
    pub footer_ok: bool,
    /// Live chunks that failed.
    pub corrupt: Vec<CorruptChunk>,
}

impl PackCheck {
    /// Whether the pack object is gone.
    pub(crate) fn missing(&self) -> bool {
        self.faults.contains(&PackFault::Missing)
    }
}

/// One ranged read and the live chunks inside it.
struct Window {
    start: u64,
    end: u64,
    live: Vec<(PackEntry, ChunkLocation)>,
}

/// Maps a blob read failure: absent → fault, short read → fault, else error.
fn read_fault(e: BlobError) -> Result<PackFault, EngineError> {
    match e {
        BlobError::NotFound(_) => Ok(PackFault::Missing),
        e if super::heal::is_short_read(&e) => Ok(PackFault::Truncated),
        other => Err(other.into()),
    }
}

/// Reads and decodes the footer of a pack of `size` bytes. `Ok(Err(fault))`
/// when the pack cannot be parsed.
pub(crate) async fn read_footer(
    engine: &Arc<Engine>,
    pack: u128,
    size: u64,
) -> Result<Result<(Vec<PackEntry>, u64, u64), PackFault>, EngineError> {
    let key = keys::pack(ulid::Ulid(pack));
    let min = HEADER_LEN + TRAILER_LEN as u64;
    if size < min {
        return Ok(Err(PackFault::BadFooter(format!(
            "{size} bytes is too short for a pack"
        ))));
    }
    let tail = match engine
        .blobs
        .read_range(&key, size - TRAILER_LEN as u64, TRAILER_LEN as u64)
        .await
    {
        Ok(b) => b,
        Err(e) => return Ok(Err(read_fault(e)?)),
    };
    let trailer = match decode_trailer(&tail) {
        Ok(t) => t,
        Err(e) => return Ok(Err(PackFault::BadFooter(e.to_string()))),
    };
    if trailer.footer_len > size - min {
        return Ok(Err(PackFault::BadFooter(
            "trailer names a footer longer than the pack".into(),
        )));
    }
    let data_end = size - TRAILER_LEN as u64 - trailer.footer_len;
    let footer = match engine
        .blobs
        .read_range(&key, data_end, trailer.footer_len)
        .await
    {
        Ok(b) => b,
        Err(e) => return Ok(Err(read_fault(e)?)),
    };
    let read = TRAILER_LEN as u64 + trailer.footer_len;
    match decode_footer(&footer, &trailer) {
        Ok(entries) => Ok(Ok((entries, data_end, read))),
        Err(e) => Ok(Err(PackFault::BadFooter(e.to_string()))),
    }
}

/// Checks pack `pack`, recorded as `recorded_bytes` long, as the module
/// docs describe. Infrastructure failures (other than "object absent" and
/// short reads, which are faults) are errors.
pub(crate) async fn verify_pack(
    engine: &Arc<Engine>,
    pack: u128,
    recorded_bytes: u64,
) -> Result<PackCheck, EngineError> {
    let key = keys::pack(ulid::Ulid(pack));
    let mut check = PackCheck::default();
    let size = match engine.blobs.size(&key).await {
        Ok(n) => n,
        Err(e) => {
            check.faults.push(read_fault(e)?);
            return Ok(check);
        }
    };
    if size != recorded_bytes {
        check.faults.push(PackFault::SizeMismatch {
            recorded: recorded_bytes,
            actual: size,
        });
    }
    let (entries, data_end, footer_read) = match read_footer(engine, pack, size).await? {
        Ok(found) => found,
        Err(fault) => {
            check.faults.push(fault);
            return Ok(check);
        }
    };
    check.footer_ok = true;
    check.data_end = Some(data_end);
    check.bytes_read += footer_read;

    // Which footer entries the index names here; the rest are dead copies.
    let meta = engine.meta.clone();
    let (windows, matched, mut corrupt) =
        blocking(move || plan_windows(&meta, pack, entries, data_end)).await?;
    check.matched = matched;

    let mut reads = stream::iter(windows)
        .map(|w| {
            let (engine, key) = (Arc::clone(engine), key.clone());
            async move {
                let bytes = engine
                    .blobs
                    .read_range(&key, w.start, w.end - w.start)
                    .await;
                (w, bytes)
            }
        })
        .buffered(READ_AHEAD);
    while let Some((w, bytes)) = reads.next().await {
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                check.faults.push(read_fault(e)?);
                break;
            }
        };
        check.bytes_read += bytes.len() as u64;
        if w.start == 0 && !bytes.starts_with(HEADER_MAGIC) {
            check.faults.push(PackFault::BadHeader);
        }
        let (verified, bad) = blocking(move || Ok(decode_window(&w, &bytes))).await?;
        check.chunks_verified += verified;
        corrupt.extend(bad);
    }
    check.corrupt = corrupt;
    Ok(check)
}

/// Matches footer entries against the index and cuts `[0, data_end)` into
/// windows. Returns the windows, the number of matched index entries, and
/// the entries whose index location disagrees with the footer.
fn plan_windows(
    meta: &Meta,
    pack: u128,
    mut entries: Vec<PackEntry>,
    data_end: u64,
) -> Result<(Vec<Window>, u64, Vec<CorruptChunk>), EngineError> {
    entries.sort_by_key(|e| e.offset);
    let ids: Vec<Digest> = entries.iter().map(|e| e.id).collect();
    let locs = meta.chunks(&ids)?;
    let (mut matched, mut mismatched) = (0u64, Vec::new());
    let mut windows: Vec<Window> = Vec::new();
    let mut cur = Window {
        start: 0,
        end: HEADER_LEN.min(data_end),
        live: Vec::new(),
    };
    for (e, loc) in entries.into_iter().zip(locs) {
        let end = e.offset.saturating_add(u64::from(e.stored_len));
        if e.offset < cur.end.max(HEADER_LEN) || end > data_end {
            // A hash-valid footer never says this; report it as a fault of
            // the live chunk, if any (dead entries are not read).
            if let Some(loc) = loc.filter(|l| l.is_at(pack, e.offset)) {
                matched += 1;
                mismatched.push(CorruptChunk {
                    id: e.id,
                    loc,
                    index_mismatch: true,
                    reason: "footer entry overlaps another or leaves the data area".into(),
                });
            }
            continue;
        }
        if end - cur.start > WINDOW_BYTES && cur.end > cur.start {
            let next = Window {
                start: cur.end,
                end: cur.end,
                live: Vec::new(),
            };
            windows.push(std::mem::replace(&mut cur, next));
        }
        cur.end = end;
        let Some(loc) = loc.filter(|l| l.is_at(pack, e.offset)) else {
            continue; // a dead copy
        };
        matched += 1;
        if loc.bad {
            continue; // already marked; fsck reports it from the index
        }
        if (loc.stored_len, loc.raw_len, loc.codec) != (e.stored_len, e.raw_len, e.codec) {
            mismatched.push(CorruptChunk {
                id: e.id,
                loc,
                index_mismatch: true,
                reason: format!(
                    "index entry ({} stored / {} raw bytes, {:?}) disagrees with the pack footer \
                     ({} / {}, {:?})",
                    loc.stored_len, loc.raw_len, loc.codec, e.stored_len, e.raw_len, e.codec
                ),
            });
            continue;
        }
        cur.live.push((e, loc));
    }
    cur.end = data_end;
    if cur.end > cur.start {
        windows.push(cur);
    }
    Ok((windows, matched, mismatched))
}

/// Decodes the live chunks of one window; returns (checked, failures).
fn decode_window(w: &Window, bytes: &Bytes) -> (u64, Vec<CorruptChunk>) {
    let mut bad = Vec::new();
    for (e, loc) in &w.live {
        let rel = (e.offset - w.start) as usize;
        let stored = bytes.slice(rel..rel + e.stored_len as usize);
        if let Err(err) = decode_chunk(&e.id, e.codec, e.raw_len, stored) {
            bad.push(CorruptChunk {
                id: e.id,
                loc: *loc,
                index_mismatch: false,
                reason: err.to_string(),
            });
        }
    }
    (w.live.len() as u64, bad)
}

/// Index entries read together: start, end, members.
type EntryGroup = (u64, u64, Vec<(Digest, ChunkLocation)>);

/// Every index entry that points into one of `packs`, by pack. One full
/// scan of the chunk index; memory grows only with the entries found
/// (callers pass packs that need it: a handful).
pub(crate) fn index_entries_in(
    meta: &Meta,
    packs: &HashSet<u128>,
) -> Result<HashMap<u128, Vec<(Digest, ChunkLocation)>>, EngineError> {
    let mut out: HashMap<u128, Vec<(Digest, ChunkLocation)>> = HashMap::new();
    if packs.is_empty() {
        return Ok(out);
    }
    meta.scan_chunks(|id, loc| {
        if packs.contains(&loc.pack) {
            out.entry(loc.pack).or_default().push((id, loc));
        }
        true
    })?;
    Ok(out)
}

/// Checks chunks of one pack from their index entries alone (no footer):
/// coalesced ranged reads of at most [`WINDOW_BYTES`], each chunk decoded
/// and BLAKE3-checked. Returns (bytes read, chunks checked, failures); a
/// missing or short object fails the chunks it should hold. Entries marked
/// bad are skipped.
pub(crate) async fn verify_entries(
    engine: &Arc<Engine>,
    pack: u128,
    mut entries: Vec<(Digest, ChunkLocation)>,
) -> Result<(u64, u64, Vec<CorruptChunk>), EngineError> {
    let key = keys::pack(ulid::Ulid(pack));
    entries.retain(|(_, l)| !l.bad);
    entries.sort_by_key(|(_, l)| l.offset);
    let mut groups: Vec<EntryGroup> = Vec::new();
    for (id, loc) in entries {
        let end = loc.offset.saturating_add(u64::from(loc.stored_len));
        match groups.last_mut() {
            Some((start, g_end, members))
                if loc.offset >= *g_end && end - *start <= WINDOW_BYTES =>
            {
                *g_end = end;
                members.push((id, loc));
            }
            _ => groups.push((loc.offset, end, vec![(id, loc)])),
        }
    }
    let (mut read, mut checked, mut bad) = (0u64, 0u64, Vec::new());
    for (start, end, members) in groups {
        checked += members.len() as u64;
        let bytes = match engine.blobs.read_range(&key, start, end - start).await {
            Ok(b) => b,
            Err(e) => {
                let why = match read_fault(e)? {
                    PackFault::Missing => "pack object missing",
                    _ => "pack object too short",
                };
                bad.extend(members.into_iter().map(|(id, loc)| CorruptChunk {
                    id,
                    loc,
                    index_mismatch: false,
                    reason: why.into(),
                }));
                continue;
            }
        };
        read += bytes.len() as u64;
        let found = blocking(move || {
            let mut out = Vec::new();
            for (id, loc) in members {
                let rel = (loc.offset - start) as usize;
                let stored = bytes.slice(rel..rel + loc.stored_len as usize);
                if let Err(err) = decode_chunk(&id, loc.codec, loc.raw_len, stored) {
                    out.push(CorruptChunk {
                        id,
                        loc,
                        index_mismatch: false,
                        reason: err.to_string(),
                    });
                }
            }
            Ok(out)
        })
        .await?;
        bad.extend(found);
    }
    Ok((read, checked, bad))
}
