//! Pack objects: many chunks in one immutable blob, with a footer index.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! header   "EDENPK01"                                   8 bytes
//! chunks   stored bytes of each chunk, back to back      (see `Codec`)
//! footer   entry_count × { id[32] offset u64 stored_len u32 raw_len u32 codec u8 }
//! trailer  footer_len u64 | entry_count u32 | blake3(footer)[32] | "EDENPKFT"
//! ```
//!
//! The footer makes the chunk index rebuildable from the blob store alone
//! (design: scale-out). A pack without a valid trailer is an interrupted write
//! and holds nothing that was ever indexed. Decoding a chunk always checks its
//! BLAKE3 against its id (invariant 6). How a chunk is encoded is the
//! business of `codec.rs`; the footer records the codec per chunk.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use crate::codec::CompressionPolicy;
use crate::hash::Digest;

/// First bytes of every pack.
pub const HEADER_MAGIC: &[u8; 8] = b"EDENPK01";
/// Last bytes of every complete pack.
pub const TRAILER_MAGIC: &[u8; 8] = b"EDENPKFT";
/// Size of one footer entry.
pub const ENTRY_LEN: usize = 32 + 8 + 4 + 4 + 1;
/// Size of the trailer.
pub const TRAILER_LEN: usize = 8 + 4 + 32 + 8;

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

/// Errors decoding a pack or a chunk.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The object does not end with a valid trailer.
    #[error("pack trailer missing or malformed")]
    BadTrailer,
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
}

/// Builds one pack incrementally; bytes are taken out with
/// [`take_pending`](Self::take_pending) so a pack never sits whole in memory.
pub struct PackBuilder {
    pending: Vec<u8>,
    len: u64,
    entries: Vec<PackEntry>,
}

impl Default for PackBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PackBuilder {
    /// An empty pack (header only).
    pub fn new() -> Self {
        let mut pending = Vec::with_capacity(1 << 20);
        pending.extend_from_slice(HEADER_MAGIC);
        PackBuilder {
            pending,
            len: HEADER_MAGIC.len() as u64,
            entries: Vec::new(),
        }
    }

    /// Appends a chunk whose id is already known.
    pub fn add(&mut self, id: Digest, raw: &[u8], policy: &mut CompressionPolicy) -> PackEntry {
        let (codec, stored) = policy.encode(raw);
        let entry = PackEntry {
            id,
            offset: self.len,
            stored_len: stored.len() as u32,
            raw_len: raw.len() as u32,
            codec,
        };
        self.pending.extend_from_slice(stored);
        self.len += stored.len() as u64;
        self.entries.push(entry);
        entry
    }

    /// Appends a chunk's stored bytes as they are (compaction copies chunks
    /// between packs without recompressing them). The caller has verified
    /// them against `id`.
    pub fn add_stored(
        &mut self,
        id: Digest,
        stored: &[u8],
        raw_len: u32,
        codec: Codec,
    ) -> PackEntry {
        let entry = PackEntry {
            id,
            offset: self.len,
            stored_len: stored.len() as u32,
            raw_len,
            codec,
        };
        self.pending.extend_from_slice(stored);
        self.len += stored.len() as u64;
        self.entries.push(entry);
        entry
    }

    /// Total bytes of the pack so far (header and chunks).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no chunk was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes added since the last call and not yet taken.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Takes the bytes added since the last call.
    pub fn take_pending(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.pending))
    }

    /// Entries added so far.
    pub fn entries(&self) -> &[PackEntry] {
        &self.entries
    }

    /// Appends footer and trailer; returns the last bytes to write and the entries.
    pub fn finish(mut self) -> (Bytes, Vec<PackEntry>) {
        let footer = encode_footer(&self.entries);
        self.pending.extend_from_slice(&footer);
        self.pending
            .extend_from_slice(&(footer.len() as u64).to_le_bytes());
        self.pending
            .extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        self.pending
            .extend_from_slice(blake3::hash(&footer).as_bytes());
        self.pending.extend_from_slice(TRAILER_MAGIC);
        (Bytes::from(self.pending), self.entries)
    }
}

fn encode_footer(entries: &[PackEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_LEN);
    for e in entries {
        out.extend_from_slice(e.id.as_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.stored_len.to_le_bytes());
        out.extend_from_slice(&e.raw_len.to_le_bytes());
        out.push(e.codec as u8);
    }
    out
}

/// Parsed trailer: where the footer is and what it must hash to.
#[derive(Clone, Copy, Debug)]
pub struct Trailer {
    /// Footer length in bytes.
    pub footer_len: u64,
    /// Number of entries.
    pub entry_count: u32,
    /// BLAKE3 of the footer.
    pub footer_hash: Digest,
}

/// Parses the last [`TRAILER_LEN`] bytes of a pack.
pub fn decode_trailer(bytes: &[u8]) -> Result<Trailer, PackError> {
    if bytes.len() != TRAILER_LEN || &bytes[TRAILER_LEN - 8..] != TRAILER_MAGIC {
        return Err(PackError::BadTrailer);
    }
    let footer_len = u64::from_le_bytes(bytes[0..8].try_into().map_err(|_| PackError::BadTrailer)?);
    let entry_count =
        u32::from_le_bytes(bytes[8..12].try_into().map_err(|_| PackError::BadTrailer)?);
    let footer_hash = Digest::from_slice(&bytes[12..44]).ok_or(PackError::BadTrailer)?;
    if footer_len != u64::from(entry_count) * ENTRY_LEN as u64 {
        return Err(PackError::BadTrailer);
    }
    Ok(Trailer {
        footer_len,
        entry_count,
        footer_hash,
    })
}

/// Decodes a footer after checking it against the trailer.
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

/// Decodes a chunk's stored bytes and checks them against `id`.
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
        let trailer = decode_trailer(&pack[pack.len() - TRAILER_LEN..]).unwrap();
        let fstart = pack.len() - TRAILER_LEN - trailer.footer_len as usize;
        let decoded = decode_footer(&pack[fstart..pack.len() - TRAILER_LEN], &trailer).unwrap();
        assert_eq!(decoded, entries);
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
        let t = decode_trailer(&pack[n - TRAILER_LEN..]).unwrap();
        let fstart = n - TRAILER_LEN - t.footer_len as usize;
        assert!(decode_footer(&pack[fstart..n - TRAILER_LEN], &t).is_err());
        assert!(decode_trailer(&pack[..TRAILER_LEN]).is_err());
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
