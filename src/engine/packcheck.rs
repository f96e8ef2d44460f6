//! Verifying one pack whole — the check shared by `fsck` and the
//! background scrubber.
//!
//! A pack is read through the pack reader (`pack::reader`): its tail, then
//! from start to end of its data with ranged reads of at most the reader's
//! window (cut at chunk boundaries), so every stored byte is
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

use futures_util::StreamExt;

use super::{Engine, EngineError, blocking};
use crate::hash::Digest;
use crate::ids::PackId;
use crate::meta::Meta;
use crate::meta::records::ChunkLocation;
use crate::pack::reader::{Gaps, PackReader, Span, SpanBytes, coalesce, cover};
use crate::pack::{FrameMemo, HEADER_LEN, PackEntry, PackError, PackTail};

/// Windows read ahead of the decoder.
const READ_AHEAD: usize = 2;

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
    /// Trailer or footer missing, malformed, of an unknown format or
    /// failing its hash: the chunk index could not be rebuilt from this
    /// pack. The text is the reader's [`PackError`].
    BadFooter(String),
}

impl PackFault {
    /// The one classification of a failed pack read: a fault of the pack,
    /// or (blob store failures) an error.
    pub(crate) fn of(pack: PackId, e: PackError) -> Result<PackFault, EngineError> {
        match e {
            PackError::Missing => Ok(PackFault::Missing),
            PackError::Truncated { .. } => Ok(PackFault::Truncated),
            e if e.is_fault() => Ok(PackFault::BadFooter(e.to_string())),
            e => Err(EngineError::from_pack(pack, e)),
        }
    }
}

impl std::fmt::Display for PackFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PackFault::Missing => write!(f, "{}", PackError::Missing),
            PackFault::SizeMismatch { recorded, actual } => {
                write!(
                    f,
                    "pack object is {actual} bytes, its record says {recorded}"
                )
            }
            PackFault::Truncated => write!(f, "pack object ends before the data it describes"),
            PackFault::BadHeader => write!(f, "pack object does not start with the pack magic"),
            PackFault::BadFooter(why) => write!(f, "pack footer unreadable: {why}"),
        }
    }
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

/// A window of a whole-pack check: every footer entry inside it, with the
/// index entry of the live ones (`None`: a dead copy, or one not to decode).
type Window = Span<Option<ChunkLocation>>;

/// Reads the tail of a pack of `size` bytes through the pack reader.
/// `Ok(Err(fault))` when the pack cannot be parsed.
pub(crate) async fn read_footer(
    engine: &Arc<Engine>,
    pack: PackId,
    size: u64,
) -> Result<Result<PackTail, PackFault>, EngineError> {
    match PackReader::new(&engine.blobs).tail(pack, size).await {
        Ok(tail) => Ok(Ok(tail)),
        Err(e) => Ok(Err(PackFault::of(pack, e)?)),
    }
}

/// Checks pack `pack`, recorded as `recorded_bytes` long, as the module
/// docs describe. Infrastructure failures (other than "object absent" and
/// short reads, which are faults) are errors.
pub(crate) async fn verify_pack(
    engine: &Arc<Engine>,
    pack: PackId,
    recorded_bytes: u64,
) -> Result<PackCheck, EngineError> {
    let reader = PackReader::new(&engine.blobs);
    let mut check = PackCheck::default();
    let size = match reader.size(pack).await {
        Ok(n) => n,
        Err(e) => {
            check.faults.push(PackFault::of(pack, e)?);
            return Ok(check);
        }
    };
    if size != recorded_bytes {
        check.faults.push(PackFault::SizeMismatch {
            recorded: recorded_bytes,
            actual: size,
        });
    }
    let tail = match read_footer(engine, pack, size).await? {
        Ok(tail) => tail,
        Err(fault) => {
            check.faults.push(fault);
            return Ok(check);
        }
    };
    check.footer_ok = true;
    check.data_end = Some(tail.data_end);
    check.bytes_read += tail.bytes_read;

    // Which footer entries the index names here; the rest are dead copies.
    let meta = engine.meta.clone();
    let data_end = tail.data_end;
    let (windows, matched, mut corrupt) =
        blocking(move || plan_windows(&meta, pack, tail.entries, data_end)).await?;
    check.matched = matched;

    let mut reads = reader.stream(windows, READ_AHEAD);
    while let Some((w, bytes)) = reads.next().await {
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                check.faults.push(PackFault::of(pack, e)?);
                break;
            }
        };
        check.bytes_read += bytes.len();
        if w.start == 0 && !bytes.starts_with_header() {
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
/// windows (the reader's window policy). Returns the windows, the number of
/// matched index entries, and the entries whose index location disagrees
/// with the footer.
fn plan_windows(
    meta: &Meta,
    pack: PackId,
    mut entries: Vec<PackEntry>,
    data_end: u64,
) -> Result<(Vec<Window>, u64, Vec<CorruptChunk>), EngineError> {
    entries.sort_by_key(|e| e.offset);
    let ids: Vec<Digest> = entries.iter().map(|e| e.id).collect();
    let locs = meta.chunks(&ids)?;
    let (mut matched, mut mismatched) = (0u64, Vec::new());
    let mut placed = Vec::with_capacity(entries.len());
    let mut covered_to = HEADER_LEN.min(data_end);
    let mut previous: Option<PackEntry> = None;
    for (e, loc) in entries.into_iter().zip(locs) {
        let end = e.offset.saturating_add(u64::from(e.stored_len));
        let live = loc.filter(|l| l.is_at(pack, e.offset));
        // Chunks of one frame share its bytes; anything else overlapping
        // is a fault.
        let same_frame = previous.is_some_and(|p| p.same_frame(&e));
        previous = Some(e);
        if (!same_frame && e.offset < covered_to.max(HEADER_LEN)) || end > data_end {
            // A hash-valid footer never says this; report it as a fault of
            // the live chunk, if any (dead entries are not read).
            if let Some(loc) = live {
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
        covered_to = end;
        let keep = match live {
            None => None, // a dead copy: read, not decoded
            Some(loc) => {
                matched += 1;
                if loc.bad {
                    None // already marked; fsck reports it from the index
                } else if (loc.stored_len, loc.raw_len, loc.codec, loc.frame)
                    != (e.stored_len, e.raw_len, e.codec, e.frame)
                {
                    mismatched.push(CorruptChunk {
                        id: e.id,
                        loc,
                        index_mismatch: true,
                        reason: format!(
                            "index entry ({} stored / {} raw bytes, {:?}) disagrees with the \
                             pack footer ({} / {}, {:?})",
                            loc.stored_len,
                            loc.raw_len,
                            loc.codec,
                            e.stored_len,
                            e.raw_len,
                            e.codec
                        ),
                    });
                    None
                } else {
                    Some(loc)
                }
            }
        };
        placed.push((pack, e, keep));
    }
    let windows = cover(pack, coalesce(placed, Gaps::Skip), data_end);
    Ok((windows, matched, mismatched))
}

/// Decodes the live chunks of one window; returns (checked, failures).
fn decode_window(w: &Window, bytes: &SpanBytes) -> (u64, Vec<CorruptChunk>) {
    let (mut checked, mut bad) = (0u64, Vec::new());
    let mut memo = FrameMemo::default();
    for (e, loc) in &w.members {
        let Some(loc) = loc else {
            continue;
        };
        checked += 1;
        if let Err(err) = bytes.verified_with(e, &mut memo) {
            bad.push(CorruptChunk {
                id: e.id,
                loc: *loc,
                index_mismatch: false,
                reason: err.to_string(),
            });
        }
    }
    (checked, bad)
}

/// Every index entry that points into one of `packs`, by pack. One full
/// scan of the chunk index; memory grows only with the entries found
/// (callers pass packs that need it: a handful).
pub(crate) fn index_entries_in(
    meta: &Meta,
    packs: &HashSet<PackId>,
) -> Result<HashMap<PackId, Vec<(Digest, ChunkLocation)>>, EngineError> {
    let mut out: HashMap<PackId, Vec<(Digest, ChunkLocation)>> = HashMap::new();
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
/// coalesced ranged reads (the reader's window policy), each chunk decoded
/// and BLAKE3-checked. Returns (bytes read, chunks checked, failures); a
/// missing or short object fails the chunks it should hold. Entries marked
/// bad are skipped.
pub(crate) async fn verify_entries(
    engine: &Arc<Engine>,
    pack: PackId,
    mut entries: Vec<(Digest, ChunkLocation)>,
) -> Result<(u64, u64, Vec<CorruptChunk>), EngineError> {
    let reader = PackReader::new(&engine.blobs);
    entries.retain(|(_, l)| !l.bad);
    entries.sort_by_key(|(_, l)| l.offset);
    let spans = coalesce(
        entries
            .into_iter()
            .map(|(id, loc)| (pack, loc.entry(id), loc)),
        Gaps::Skip,
    );
    let (mut read, mut checked, mut bad) = (0u64, 0u64, Vec::new());
    for span in spans {
        checked += span.members.len() as u64;
        let bytes = match reader.read_span(&span).await {
            Ok(b) => b,
            Err(e) if e.is_fault() => {
                let why = e.to_string();
                bad.extend(span.members.into_iter().map(|(e, loc)| CorruptChunk {
                    id: e.id,
                    loc,
                    index_mismatch: false,
                    reason: why.clone(),
                }));
                continue;
            }
            Err(e) => return Err(EngineError::from_pack(pack, e)),
        };
        read += bytes.len();
        let found = blocking(move || {
            let mut memo = FrameMemo::default();
            Ok(span
                .members
                .into_iter()
                .filter_map(|(e, loc)| {
                    bytes
                        .verified_with(&e, &mut memo)
                        .err()
                        .map(|err| CorruptChunk {
                            id: e.id,
                            loc,
                            index_mismatch: false,
                            reason: err.to_string(),
                        })
                })
                .collect::<Vec<_>>())
        })
        .await?;
        bad.extend(found);
    }
    Ok((read, checked, bad))
}
