//! Pack objects: many chunks in one immutable blob, with a footer index.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! header   "EDENPK01"                                   8 bytes
//! chunks   stored bytes of each chunk, back to back      (see `Codec`)
//! footer   entry_count × { id[32] offset u64 stored_len u32 raw_len u32 codec u8 }
//! trailer  footer_len u64 | entry_count u32 | blake3(footer)[32] | format u32 | "EDENPKTV"
//! ```
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
/// The pack format this binary writes, and the newest it reads.
pub const PACK_FORMAT: u32 = 2;
/// Size of one footer entry.
pub const ENTRY_LEN: usize = 32 + 8 + 4 + 4 + 1;
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

/// One chunk's place in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    /// BLAKE3 of the raw bytes.
    pub id: Digest,
    /// Offset of the stored bytes from the start of the pack.
    pub offset: u64,
    /// Stored (possibly compressed) length.
    pub stored_len: u32,
    /// Raw length.
    pub raw_len: u32,
    /// Storage codec.
    pub codec: Codec,
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
    if footer_len != u64::from(entry_count) * ENTRY_LEN as u64 {
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
    footer
        .chunks_exact(ENTRY_LEN)
        .map(|e| {
            let id = Digest::from_slice(&e[0..32]).ok_or(PackError::BadFooter)?;
            let offset =
                u64::from_le_bytes(e[32..40].try_into().map_err(|_| PackError::BadFooter)?);
            let stored_len =
                u32::from_le_bytes(e[40..44].try_into().map_err(|_| PackError::BadFooter)?);
            let raw_len =
                u32::from_le_bytes(e[44..48].try_into().map_err(|_| PackError::BadFooter)?);
            let codec = Codec::from_u8(e[48]).ok_or(PackError::BadFooter)?;
            Ok(PackEntry {
                id,
                offset,
                stored_len,
                raw_len,
                codec,
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
        assert_eq!(tail.format, PACK_FORMAT);
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
        assert!(err.to_string().contains("pack format 3 is newer"), "{err}");
        // A versioned trailer claiming format 1 (which has none) is malformed.
        pack[n - 12..n - 8].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(parse_pack(&pack), Err(PackError::BadTrailer)));
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
