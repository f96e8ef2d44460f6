//! Pack objects: many chunks in one immutable blob, with a footer index.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! header   "EDENPK01"                                   8 bytes
//! chunks   stored bytes of each chunk, back to back      (see `Codec`)
//! footer   entry_count × { id[32] offset u64 stored_len u32 raw_len u32 codec u8
//!                          [format 3: frame_raw_len u32 frame_at u32] }
//! trailer  footer_len u64 | entry_count u32 | blake3(footer)[32] | format u32 | "EDENPKTV"
//! ```
//!
//! **Frames** (format 3): consecutive new chunks of one deposit may be
//! encoded together as one *frame* — the codec applied to their raw bytes
//! concatenated — so zstd sees up to [`FRAME_TARGET_BYTES`] of context
//! instead of one chunk. Every chunk stays individually addressable: its
//! footer entry names the frame's bytes (`offset`, `stored_len`, `codec`,
//! the same for every member), the frame's decoded length and where the
//! chunk starts inside it ([`FrameSlot`]). Reading a chunk decodes its frame
//! (bounded by the frame size) and BLAKE3-checks the chunk's slice. Packs
//! without a framed chunk are still written as format 2, so only packs that
//! need the new entries carry them.
//!
//! The pack format version lives in the trailer, so a reader learns it from
//! the tail alone (readers never need the header). Packs written before the
//! version existed (format 1) end `… | blake3(footer)[32] | "EDENPKFT"`
//! with no version field; the last eight bytes tell the two apart, and
//! both read. A trailer claiming a format newer than [`PACK_FORMAT`] is
//! refused with [`PackError::UnsupportedFormat`].
//!
//! The footer makes the chunk index rebuildable from the blob store alone
//! (design: scale-out). A pack without a valid trailer is an interrupted write
//! and holds nothing that was ever indexed. Decoding a chunk always checks its
//! BLAKE3 against its id (invariant 6). How a chunk is encoded is the
//! business of `codec.rs`; the footer records the codec per chunk. Reading a
//! pack from the blob store — tail, coalesced ranged reads, verified chunks,
//! the chunk cache — is [`reader`]'s, the only place that does it.

pub mod reader;
mod writer;

pub use writer::PackBuilder;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::blobs::BlobError;

pub use crate::codec::CompressionPolicy;
use crate::hash::Digest;

/// First bytes of every pack.
pub const HEADER_MAGIC: &[u8; 8] = b"EDENPK01";
/// Length of the header: chunk bytes start here.
pub const HEADER_LEN: u64 = HEADER_MAGIC.len() as u64;
/// Last bytes of a pack with a versioned trailer (format 2 on).
pub const TRAILER_MAGIC: &[u8; 8] = b"EDENPKTV";
/// Last bytes of a format-1 pack (no version field).
pub const LEGACY_TRAILER_MAGIC: &[u8; 8] = b"EDENPKFT";
/// The newest pack format this binary writes and reads (3: framed chunks;
/// a pack without frames is written as [`UNFRAMED_FORMAT`]).
pub const PACK_FORMAT: u32 = 3;
/// The format of packs without framed chunks (footer entries of
/// [`ENTRY_LEN`] bytes).
pub const UNFRAMED_FORMAT: u32 = 2;
/// Size of one footer entry of formats 1 and 2.
pub const ENTRY_LEN: usize = 32 + 8 + 4 + 4 + 1;
/// Size of one footer entry of format 3 (with its [`FrameSlot`]).
pub const FRAMED_ENTRY_LEN: usize = ENTRY_LEN + 4 + 4;
/// Raw bytes a frame collects before it is encoded (a frame also ends at
/// the end of a run of new chunks). Reading one chunk of a frame decodes
/// at most this much plus one chunk. 1 MiB measured close to whole-file
/// zstd on source tars (docs/performance.md) while keeping a random read
/// bounded.
pub const FRAME_TARGET_BYTES: usize = 1 << 20;

/// Footer entry size of pack `format`.
pub fn entry_len(format: u32) -> usize {
    if format >= 3 {
        FRAMED_ENTRY_LEN
    } else {
        ENTRY_LEN
    }
}
/// Size of the trailer this binary writes.
pub const TRAILER_LEN: usize = 8 + 4 + 32 + 4 + 8;
/// Size of a format-1 trailer; no trailer is shorter.
pub const LEGACY_TRAILER_LEN: usize = 8 + 4 + 32 + 8;
/// Bytes of a pack that are not chunk bytes, for a pack of `entry_count`
/// chunks in the current format (header, footer, trailer). Format-1 packs
/// have 4 bytes less.
pub fn overhead_bytes(entry_count: u32) -> u64 {
    HEADER_LEN + u64::from(entry_count) * ENTRY_LEN as u64 + TRAILER_LEN as u64
}

/// How a chunk's bytes are stored inside a pack (the footer's codec byte).
/// Values are never reused: packs written by any version stay readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Codec {
    /// Stored as is.
    Raw = 0,
    /// zstd frame.
    Zstd = 1,
    /// Two byte planes (bf16/fp16), each raw or a zstd frame
    /// (`codec::planes`).
    BytePlanes2 = 2,
    /// Four byte planes (float32), each raw or a zstd frame.
    BytePlanes4 = 3,
}

impl Codec {
    fn from_u8(v: u8) -> Option<Codec> {
        match v {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            2 => Some(Codec::BytePlanes2),
            3 => Some(Codec::BytePlanes4),
            _ => None,
        }
    }

    /// The byte-plane codec of `width` (2 or 4).
    pub fn planes(width: usize) -> Codec {
        if width == 2 {
            Codec::BytePlanes2
        } else {
            Codec::BytePlanes4
        }
    }
}

/// Where a framed chunk lies inside its decoded frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FrameSlot {
    /// Decoded length of the whole frame.
    pub raw_len: u32,
    /// Offset of the chunk's raw bytes inside the decoded frame.
    pub at: u32,
}

/// One chunk's place in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    /// BLAKE3 of the raw bytes.
    pub id: Digest,
    /// Offset of the stored bytes from the start of the pack (of the
    /// frame's, for a framed chunk).
    pub offset: u64,
    /// Stored (possibly compressed) length (of the whole frame, for a
    /// framed chunk).
    pub stored_len: u32,
    /// Raw length of the chunk.
    pub raw_len: u32,
    /// Storage codec (of the frame, for a framed chunk).
    pub codec: Codec,
    /// For a framed chunk, its place in the decoded frame.
    pub frame: Option<FrameSlot>,
}

impl PackEntry {
    /// Stored bytes charged to this chunk: its stored length, or for a
    /// framed chunk its share of the frame's in proportion to raw bytes
    /// (the shares of a frame add up to its stored length). For figures and
    /// GC's live-byte estimate.
    pub fn stored_share(&self) -> u64 {
        stored_share(self.stored_len, self.raw_len, self.frame)
    }

    /// The byte range `[offset, offset + stored_len)` this entry reads.
    pub fn stored_end(&self) -> u64 {
        self.offset.saturating_add(u64::from(self.stored_len))
    }

    /// Whether `other` is another chunk of the same frame (same stored
    /// bytes, both framed).
    pub fn same_frame(&self, other: &PackEntry) -> bool {
        self.frame.is_some()
            && other.frame.is_some()
            && (self.offset, self.stored_len, self.codec)
                == (other.offset, other.stored_len, other.codec)
    }
}

/// See [`PackEntry::stored_share`]. The shares of a frame's chunks add up
/// to its stored length exactly: each chunk gets the stored bytes between
/// the proportional positions of its start and its end in the frame.
pub fn stored_share(stored_len: u32, raw_len: u32, frame: Option<FrameSlot>) -> u64 {
    match frame {
        Some(f) if f.raw_len > 0 => {
            let at = |raw: u64| {
                u64::from(stored_len) * raw.min(u64::from(f.raw_len)) / u64::from(f.raw_len)
            };
            let start = u64::from(f.at);
            at(start + u64::from(raw_len)) - at(start)
        }
        _ => u64::from(stored_len),
    }
}

/// Errors reading a pack or a chunk. Every variant but [`PackError::Blob`]
/// and [`PackError::Interrupted`] is a fault of the stored pack (a proof
/// that it is missing, truncated or corrupt); see [`PackError::is_fault`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// The pack object does not exist.
    #[error("pack object missing")]
    Missing,
    /// The pack object ends before bytes a reader needed.
    #[error("pack object truncated ({got} of {expected} bytes read)")]
    Truncated {
        /// Bytes asked for.
        expected: u64,
        /// Bytes the object had (0 when the backend refused the range).
        got: u64,
    },
    /// The object is too short to hold a header and a trailer.
    #[error("{bytes} bytes is too short for a pack")]
    TooShort {
        /// The object's size.
        bytes: u64,
    },
    /// The object does not end with a valid trailer (an interrupted write).
    #[error("pack trailer missing or malformed")]
    BadTrailer,
    /// The trailer claims a format this binary does not know.
    #[error(
        "pack format {found} is newer than this binary reads (up to {supported}); upgrade eden-cas"
    )]
    UnsupportedFormat {
        /// Format in the trailer.
        found: u32,
        /// Newest format this binary reads ([`PACK_FORMAT`]).
        supported: u32,
    },
    /// The trailer names a footer longer than the pack.
    #[error("trailer names a footer longer than the pack")]
    FooterTooLong,
    /// The footer does not match its recorded hash or length.
    #[error("pack footer corrupt")]
    BadFooter,
    /// A chunk decompressed to the wrong size or failed to decompress.
    #[error("chunk {id:?} does not decode: {source}")]
    Undecodable {
        /// The chunk.
        id: Digest,
        /// What is wrong with its stored bytes.
        source: crate::codec::CodecError,
    },
    /// A chunk's bytes do not hash to its id.
    #[error("chunk {0:?} fails its BLAKE3 check")]
    HashMismatch(Digest),
    /// The blob store failed (not a fault of the pack).
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// A decoding task did not finish (runtime shutting down).
    #[error("pack decoding interrupted")]
    Interrupted,
}

impl PackError {
    /// Whether this proves the stored pack missing, truncated or corrupt
    /// (rather than the blob store or the process failing).
    pub fn is_fault(&self) -> bool {
        !matches!(self, PackError::Blob(_) | PackError::Interrupted)
    }

    /// The chunk whose stored copy failed verification, if that is what
    /// this says.
    pub fn bad_chunk(&self) -> Option<Digest> {
        match self {
            PackError::Undecodable { id, .. } | PackError::HashMismatch(id) => Some(*id),
            _ => None,
        }
    }
}

/// Parsed trailer: where the footer is and what it must hash to.
#[derive(Clone, Copy, Debug)]
pub struct Trailer {
    /// Pack format (1 for packs without a version field).
    pub format: u32,
    /// Length of the trailer itself, in bytes.
    pub len: u64,
    /// Footer length in bytes.
    pub footer_len: u64,
    /// Number of entries.
    pub entry_count: u32,
    /// BLAKE3 of the footer.
    pub footer_hash: Digest,
}

/// Parses the trailer at the end of `tail` (the last bytes of a pack: at
/// least the trailer, possibly more). The last eight bytes say which
/// format's trailer it is.
///
/// # Errors
/// [`PackError::BadTrailer`] when `tail` does not end with a well-formed
/// trailer, [`PackError::UnsupportedFormat`] for a format newer than
/// [`PACK_FORMAT`].
pub fn decode_trailer(tail: &[u8]) -> Result<Trailer, PackError> {
    let magic = tail.len().checked_sub(8).map(|at| &tail[at..]);
    let (format, len) = if magic == Some(&LEGACY_TRAILER_MAGIC[..]) {
        (1, LEGACY_TRAILER_LEN)
    } else if magic == Some(&TRAILER_MAGIC[..]) && tail.len() >= TRAILER_LEN {
        let at = tail.len() - 12;
        let format = u32::from_le_bytes(le(&tail[at..at + 4])?);
        if format > PACK_FORMAT {
            return Err(PackError::UnsupportedFormat {
                found: format,
                supported: PACK_FORMAT,
            });
        }
        if format < 2 {
            return Err(PackError::BadTrailer);
        }
        (format, TRAILER_LEN)
    } else {
        return Err(PackError::BadTrailer);
    };
    let Some(t) = tail.len().checked_sub(len).map(|at| &tail[at..]) else {
        return Err(PackError::BadTrailer);
    };
    let footer_len = u64::from_le_bytes(le(&t[0..8])?);
    let entry_count = u32::from_le_bytes(le(&t[8..12])?);
    let footer_hash = Digest::from_slice(&t[12..44]).ok_or(PackError::BadTrailer)?;
    if footer_len != u64::from(entry_count) * entry_len(format) as u64 {
        return Err(PackError::BadTrailer);
    }
    Ok(Trailer {
        format,
        len: len as u64,
        footer_len,
        entry_count,
        footer_hash,
    })
}

fn le<const N: usize>(b: &[u8]) -> Result<[u8; N], PackError> {
    b.try_into().map_err(|_| PackError::BadTrailer)
}

/// Decodes a footer after checking it against the trailer.
///
/// # Errors
/// [`PackError::BadFooter`] when its length or BLAKE3 differs from the
/// trailer's, or an entry names an unknown codec.
pub fn decode_footer(footer: &[u8], trailer: &Trailer) -> Result<Vec<PackEntry>, PackError> {
    if footer.len() as u64 != trailer.footer_len || Digest::of(footer) != trailer.footer_hash {
        return Err(PackError::BadFooter);
    }
    let u32_at = |e: &[u8], at: usize| -> Result<u32, PackError> {
        Ok(u32::from_le_bytes(
            e[at..at + 4].try_into().map_err(|_| PackError::BadFooter)?,
        ))
    };
    footer
        .chunks_exact(entry_len(trailer.format))
        .map(|e| {
            let id = Digest::from_slice(&e[0..32]).ok_or(PackError::BadFooter)?;
            let offset =
                u64::from_le_bytes(e[32..40].try_into().map_err(|_| PackError::BadFooter)?);
            let stored_len =
                u32::from_le_bytes(e[40..44].try_into().map_err(|_| PackError::BadFooter)?);
            let raw_len =
                u32::from_le_bytes(e[44..48].try_into().map_err(|_| PackError::BadFooter)?);
            let codec = Codec::from_u8(e[48]).ok_or(PackError::BadFooter)?;
            let frame = if e.len() >= FRAMED_ENTRY_LEN {
                let frame_raw = u32_at(e, 49)?;
                let at = u32_at(e, 53)?;
                // 0 = not framed; a slot must lie inside its frame, and a
                // frame is never stored raw (a raw frame is written as its
                // chunks).
                match frame_raw {
                    0 => None,
                    _ if codec == Codec::Raw
                        || u64::from(at) + u64::from(raw_len) > u64::from(frame_raw) =>
                    {
                        return Err(PackError::BadFooter);
                    }
                    _ => Some(FrameSlot {
                        raw_len: frame_raw,
                        at,
                    }),
                }
            } else {
                None
            };
            Ok(PackEntry {
                id,
                offset,
                stored_len,
                raw_len,
                codec,
                frame,
            })
        })
        .collect()
}

/// What the tail of a complete pack says: its format, its footer, and
/// where its chunk area ends.
#[derive(Clone, Debug)]
pub struct PackTail {
    /// Pack format of the trailer.
    pub format: u32,
    /// Footer entries, in footer order.
    pub entries: Vec<PackEntry>,
    /// Where the footer starts: the end of the chunk area
    /// `[HEADER_LEN, data_end)`.
    pub data_end: u64,
    /// Bytes of footer and trailer.
    pub tail_len: u64,
    /// Bytes read to learn this (the reader reads a little more than the
    /// tail in one request).
    pub bytes_read: u64,
}

impl PackTail {
    /// Bytes of the chunk area.
    pub fn chunk_bytes(&self) -> u64 {
        self.data_end.saturating_sub(HEADER_LEN)
    }

    /// The first footer entry whose bytes lie outside the chunk area (a
    /// hash-valid footer never has one; only a faulty writer could).
    pub fn entry_outside_data(&self) -> Option<&PackEntry> {
        self.entries.iter().find(|e| {
            e.offset < HEADER_LEN
                || e.offset.saturating_add(u64::from(e.stored_len)) > self.data_end
        })
    }
}

/// The furthest the chunk area of a pack of `pack_bytes` can reach, when
/// its footer is unknown (unreadable): no trailer is shorter than a
/// format-1 one.
pub fn max_data_end(pack_bytes: u64) -> u64 {
    pack_bytes.saturating_sub(LEGACY_TRAILER_LEN as u64)
}

/// Where the footer described by `trailer` starts in a pack of `size`
/// bytes.
///
/// # Errors
/// [`PackError::TooShort`] or [`PackError::FooterTooLong`] when the pack
/// cannot hold it.
pub fn footer_start(trailer: &Trailer, size: u64) -> Result<u64, PackError> {
    let room = size
        .checked_sub(HEADER_LEN + trailer.len)
        .ok_or(PackError::TooShort { bytes: size })?;
    if trailer.footer_len > room {
        return Err(PackError::FooterTooLong);
    }
    Ok(size - trailer.len - trailer.footer_len)
}

/// Parses the footer of a whole pack held in memory (tools and tests; the
/// engine reads tails with [`reader::PackReader::tail`]).
///
/// # Errors
/// As [`decode_trailer`], [`footer_start`] and [`decode_footer`].
pub fn parse_pack(pack: &[u8]) -> Result<PackTail, PackError> {
    let size = pack.len() as u64;
    if size < HEADER_LEN + LEGACY_TRAILER_LEN as u64 {
        return Err(PackError::TooShort { bytes: size });
    }
    let trailer = decode_trailer(pack)?;
    let data_end = footer_start(&trailer, size)?;
    let footer = &pack[data_end as usize..(size - trailer.len) as usize];
    Ok(PackTail {
        format: trailer.format,
        entries: decode_footer(footer, &trailer)?,
        data_end,
        tail_len: size - data_end,
        bytes_read: size,
    })
}

/// Decodes a chunk's stored bytes and checks them against `id`.
///
/// # Errors
/// [`PackError::Undecodable`] or [`PackError::HashMismatch`].
pub fn decode_chunk(
    id: &Digest,
    codec: Codec,
    raw_len: u32,
    stored: Bytes,
) -> Result<Bytes, PackError> {
    let raw = crate::codec::decode(codec, stored, raw_len)
        .map_err(|source| PackError::Undecodable { id: *id, source })?;
    if Digest::of(&raw) != *id {
        return Err(PackError::HashMismatch(*id));
    }
    Ok(raw)
}

/// Decodes the raw bytes of `e` from its stored bytes (the whole frame's,
/// for a framed chunk) and checks them against its id. `memo` keeps the
/// last decoded frame, so the chunks of one frame read together decode it
/// once; pass a fresh [`FrameMemo`] when there is nothing to share.
///
/// # Errors
/// [`PackError::Undecodable`] (the frame does not decode, or the slot lies
/// outside it) or [`PackError::HashMismatch`].
pub fn decode_entry(
    e: &PackEntry,
    stored: Bytes,
    memo: &mut FrameMemo,
) -> Result<Bytes, PackError> {
    let Some(slot) = e.frame else {
        return decode_chunk(&e.id, e.codec, e.raw_len, stored);
    };
    let key = (e.offset, e.stored_len, e.codec, slot.raw_len);
    let frame = match &memo.last {
        Some((k, frame)) if *k == key => frame.clone(),
        _ => {
            let frame = crate::codec::decode(e.codec, stored, slot.raw_len)
                .map_err(|source| PackError::Undecodable { id: e.id, source })?;
            memo.last = Some((key, frame.clone()));
            frame
        }
    };
    let at = slot.at as usize;
    let raw = frame
        .get(at..at + e.raw_len as usize)
        .map(|b| frame.slice_ref(b))
        .ok_or(PackError::Undecodable {
            id: e.id,
            source: crate::codec::CodecError::WrongLength,
        })?;
    if Digest::of(&raw) != e.id {
        return Err(PackError::HashMismatch(e.id));
    }
    Ok(raw)
}

/// The last frame [`decode_entry`] decoded, keyed by where its stored bytes
/// are; holds one decoded frame (≤ [`FRAME_TARGET_BYTES`] plus a chunk).
#[derive(Debug, Default)]
pub struct FrameMemo {
    last: Option<((u64, u32, Codec, u32), Bytes)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(chunks: &[Vec<u8>], level: i32) -> (Vec<u8>, Vec<PackEntry>) {
        let mut policy = CompressionPolicy::new(crate::codec::CodecSettings {
            level,
            byte_planes: true,
        });
        let mut b = PackBuilder::new();
        let mut out = Vec::new();
        for c in chunks {
            b.add(Digest::of(c), c, &mut policy);
            out.extend_from_slice(&b.take_pending());
        }
        let (tail, entries) = b.finish();
        out.extend_from_slice(&tail);
        (out, entries)
    }

    #[test]
    fn round_trip_with_compression() {
        let chunks = vec![
            vec![7u8; 5000],
            (0..=255u8).cycle().take(9000).collect(),
            vec![],
        ];
        let (pack, entries) = build(&chunks, 3);
        assert_eq!(entries[0].codec, Codec::Zstd);
        let tail = parse_pack(&pack).unwrap();
        // No frame: written as format 2, which older binaries read.
        assert_eq!(tail.format, UNFRAMED_FORMAT);
        assert_eq!(tail.entries, entries);
        assert_eq!(
            pack.len() as u64,
            tail.chunk_bytes() + overhead_bytes(entries.len() as u32)
        );
        for (e, c) in entries.iter().zip(&chunks) {
            let stored = Bytes::copy_from_slice(
                &pack[e.offset as usize..e.offset as usize + e.stored_len as usize],
            );
            assert_eq!(
                &decode_chunk(&e.id, e.codec, e.raw_len, stored).unwrap()[..],
                &c[..]
            );
        }
    }

    #[test]
    fn corruption_is_detected() {
        let chunks = vec![vec![1u8; 4000], vec![2u8; 100]];
        let (mut pack, entries) = build(&chunks, 0);
        let e = entries[1];
        pack[e.offset as usize] ^= 0x40;
        let stored = Bytes::copy_from_slice(&pack[e.offset as usize..][..e.stored_len as usize]);
        assert!(matches!(
            decode_chunk(&e.id, e.codec, e.raw_len, stored),
            Err(PackError::HashMismatch(_))
        ));
        let n = pack.len();
        pack[n - TRAILER_LEN - 3] ^= 1;
        assert!(matches!(parse_pack(&pack), Err(PackError::BadFooter)));
        assert!(matches!(
            decode_trailer(&pack[..TRAILER_LEN]),
            Err(PackError::BadTrailer)
        ));
    }

    /// A format-1 pack (trailer without a version, as written before the
    /// version existed), byte for byte.
    fn legacy(chunks: &[Vec<u8>]) -> (Vec<u8>, Vec<PackEntry>) {
        let (pack, entries) = build(chunks, 0);
        let tail = parse_pack(&pack).unwrap();
        let mut out = pack[..tail.data_end as usize].to_vec();
        let footer = &pack[tail.data_end as usize..pack.len() - TRAILER_LEN];
        out.extend_from_slice(footer);
        out.extend_from_slice(&(footer.len() as u64).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        out.extend_from_slice(blake3::hash(footer).as_bytes());
        out.extend_from_slice(LEGACY_TRAILER_MAGIC);
        (out, entries)
    }

    #[test]
    fn format_1_packs_still_read() {
        let (pack, entries) = legacy(&[vec![3u8; 3000], vec![4u8; 700]]);
        let tail = parse_pack(&pack).unwrap();
        assert_eq!((tail.format, tail.entries), (1, entries));
        assert_eq!(tail.tail_len, (LEGACY_TRAILER_LEN + 2 * ENTRY_LEN) as u64);
    }

    #[test]
    fn a_newer_format_is_refused_by_name() {
        let (mut pack, _) = build(&[vec![5u8; 100]], 0);
        let n = pack.len();
        pack[n - 12..n - 8].copy_from_slice(&(PACK_FORMAT + 1).to_le_bytes());
        let err = parse_pack(&pack).unwrap_err();
        assert!(matches!(
            err,
            PackError::UnsupportedFormat { found, supported: PACK_FORMAT } if found == PACK_FORMAT + 1
        ));
        assert!(err.to_string().contains("pack format 4 is newer"), "{err}");
        // A versioned trailer claiming format 1 (which has none) is malformed.
        pack[n - 12..n - 8].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(parse_pack(&pack), Err(PackError::BadTrailer)));
    }

    /// Text-like chunks that compress well together (shared vocabulary).
    fn wordy(n: usize, seed: u8) -> Vec<u8> {
        let words: [&[u8]; 6] = [
            b"weight ", b"bias ", b"moment ", b"step\n", b"layer ", b"norm ",
        ];
        let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            out.extend_from_slice(words[x as usize % words.len()]);
        }
        out.truncate(n);
        out
    }

    /// A pack holding `chunks` as one frame (plus a trailing raw chunk).
    fn framed(chunks: &[Vec<u8>]) -> (Vec<u8>, Vec<PackEntry>) {
        let mut policy = CompressionPolicy::new(crate::codec::CodecSettings {
            level: 3,
            byte_planes: true,
        });
        let mut b = PackBuilder::new();
        for c in chunks {
            assert_eq!(b.add_framed(Digest::of(c), c, &mut policy), 0);
        }
        assert!(b.end_frame(&mut policy) > 0);
        let random: Vec<u8> = (0..3000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        b.add(Digest::of(&random), &random, &mut policy);
        let mut out = b.take_pending().to_vec();
        let (tail, entries) = b.finish();
        out.extend_from_slice(&tail);
        (out, entries)
    }

    #[test]
    fn multi_chunk_frames_round_trip() {
        // Near-copies of one incompressible block: alone each costs the
        // block, in one frame zstd matches it against the first copy.
        let block: Vec<u8> = (0..4000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        let chunks: Vec<Vec<u8>> = (0..8)
            .map(|i| {
                let mut c = block.clone();
                c[i * 100] ^= 0x5a;
                c.extend_from_slice(&wordy(700 * i, i as u8));
                c
            })
            .collect();
        let (pack, entries) = framed(&chunks);
        let tail = parse_pack(&pack).unwrap();
        assert_eq!(tail.format, PACK_FORMAT);
        assert_eq!(tail.entries, entries);
        let frame_raw: usize = chunks.iter().map(Vec::len).sum();
        let mut at = 0u32;
        for (e, c) in entries.iter().zip(&chunks) {
            assert_eq!(
                e.frame,
                Some(FrameSlot {
                    raw_len: frame_raw as u32,
                    at
                })
            );
            assert!(e.same_frame(&entries[0]));
            at += c.len() as u32;
        }
        assert_eq!(entries[8].frame, None);
        // One frame is much smaller than the chunks compressed alone, and
        // the shares of its chunks add up to its stored length.
        let alone: usize = chunks
            .iter()
            .map(|c| zstd::bulk::compress(c, 3).unwrap().len())
            .sum();
        assert!(
            (entries[0].stored_len as usize) < alone / 2,
            "{} vs {alone}",
            entries[0].stored_len
        );
        let shares: u64 = entries[..8].iter().map(PackEntry::stored_share).sum();
        assert_eq!(shares, u64::from(entries[0].stored_len));
        let mut memo = FrameMemo::default();
        let stored = |e: &PackEntry| {
            Bytes::copy_from_slice(&pack[e.offset as usize..e.stored_end() as usize])
        };
        for (e, c) in entries.iter().zip(chunks.iter().chain([&vec![]])).take(8) {
            assert_eq!(&decode_entry(e, stored(e), &mut memo).unwrap()[..], &c[..]);
            // Without a shared memo too (a range read of one chunk).
            assert_eq!(
                &decode_entry(e, stored(e), &mut FrameMemo::default()).unwrap()[..],
                &c[..]
            );
        }
        // A chunk's slot cannot point outside its frame.
        let mut bad = entries[3];
        bad.frame = Some(FrameSlot {
            raw_len: frame_raw as u32,
            at: frame_raw as u32 - 10,
        });
        assert!(matches!(
            decode_entry(&bad, stored(&bad), &mut FrameMemo::default()),
            Err(PackError::Undecodable { .. })
        ));
    }

    #[test]
    fn a_corrupted_frame_fails_every_chunk_read_from_it() {
        let chunks: Vec<Vec<u8>> = (0..5).map(|i| wordy(6000, 40 + i as u8)).collect();
        let (mut pack, entries) = framed(&chunks);
        let e = entries[2];
        pack[(e.offset + u64::from(e.stored_len) / 2) as usize] ^= 0x08;
        for e in &entries[..5] {
            let stored = Bytes::copy_from_slice(&pack[e.offset as usize..e.stored_end() as usize]);
            let err = decode_entry(e, stored, &mut FrameMemo::default()).unwrap_err();
            assert!(
                matches!(err, PackError::Undecodable { id, .. } | PackError::HashMismatch(id) if id == e.id),
                "{err}"
            );
        }
        // A footer entry whose slot leaves its frame is a corrupt footer.
        let (pack, _) = framed(&chunks);
        let tail = parse_pack(&pack).unwrap();
        let mut footer = pack[tail.data_end as usize..pack.len() - TRAILER_LEN].to_vec();
        footer[FRAMED_ENTRY_LEN + 53..FRAMED_ENTRY_LEN + 57]
            .copy_from_slice(&u32::MAX.to_le_bytes());
        let trailer = decode_trailer(&pack).unwrap();
        let trailer = Trailer {
            footer_hash: Digest::of(&footer),
            ..trailer
        };
        assert!(matches!(
            decode_footer(&footer, &trailer),
            Err(PackError::BadFooter)
        ));
    }

    #[test]
    fn old_codec_values_keep_their_meaning() {
        for (v, c) in [
            (0, Codec::Raw),
            (1, Codec::Zstd),
            (2, Codec::BytePlanes2),
            (3, Codec::BytePlanes4),
        ] {
            assert_eq!(Codec::from_u8(v), Some(c));
            assert_eq!(c as u8, v);
        }
        assert_eq!(Codec::from_u8(4), None);
    }
}
