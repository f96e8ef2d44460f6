//! Pack objects: many chunks in one immutable blob, with a footer index.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! header   "EDENPK01"                                   8 bytes
//! chunks   stored bytes of each chunk, back to back      (raw or zstd)
//! footer   entry_count × { id[32] offset u64 stored_len u32 raw_len u32 codec u8 }
//! trailer  footer_len u64 | entry_count u32 | blake3(footer)[32] | "EDENPKFT"
//! ```
//!
//! The footer makes the chunk index rebuildable from the blob store alone
//! (design: scale-out). A pack without a valid trailer is an interrupted write
//! and holds nothing that was ever indexed. Decoding a chunk always checks its
//! BLAKE3 against its id (invariant 6).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::hash::Digest;

/// First bytes of every pack.
pub const HEADER_MAGIC: &[u8; 8] = b"EDENPK01";
/// Last bytes of every complete pack.
pub const TRAILER_MAGIC: &[u8; 8] = b"EDENPKFT";
/// Size of one footer entry.
pub const ENTRY_LEN: usize = 32 + 8 + 4 + 4 + 1;
/// Size of the trailer.
pub const TRAILER_LEN: usize = 8 + 4 + 32 + 8;

/// How a chunk's bytes are stored inside a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Codec {
    /// Stored as is.
    Raw = 0,
    /// zstd frame.
    Zstd = 1,
}

impl Codec {
    fn from_u8(v: u8) -> Option<Codec> {
        match v {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            _ => None,
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
    #[error("chunk {0:?} does not decode")]
    Undecodable(Digest),
    /// A chunk's bytes do not hash to its id.
    #[error("chunk {0:?} fails its BLAKE3 check")]
    HashMismatch(Digest),
}

/// Chunks at most this long are tried whole; longer ones are judged first
/// from a sample of [`SAMPLE_WINDOW`] bytes at a quarter and at three
/// quarters of their length.
const SAMPLE_WHOLE_BELOW: usize = 16 << 10;
/// Size of each of the two sample windows.
const SAMPLE_WINDOW: usize = 2 << 10;

/// How each chunk is stored: the codec is a function of the chunk's bytes
/// (and of the configured level) alone, never of other chunks, of the order
/// they arrive in or of what the store already holds. A copy's stored length
/// therefore reveals nothing about other deposits (invariant 4), and the same
/// chunk stored twice — by two principals, or again after being marked bad —
/// gets the same codec.
///
/// It stays cheap on incompressible data: a chunk longer than 16 KiB is
/// first judged from a 4 KiB sample of its own bytes, and compressed whole
/// only when the sample compresses.
pub struct CompressionPolicy {
    compressor: Option<zstd::bulk::Compressor<'static>>,
    scratch: Vec<u8>,
    sample: Vec<u8>,
}

impl CompressionPolicy {
    /// `level` 0 disables compression.
    pub fn new(level: i32) -> Self {
        let compressor = if level == 0 {
            None
        } else {
            zstd::bulk::Compressor::new(level).ok()
        };
        CompressionPolicy {
            compressor,
            scratch: Vec::new(),
            sample: Vec::with_capacity(2 * SAMPLE_WINDOW),
        }
    }

    /// The codec decision: compressed bytes if zstd saves at least 1/16 of
    /// the chunk, else `None` (stored raw). Depends on `raw` only: each zstd
    /// frame is compressed independently with the same parameters.
    fn try_compress(&mut self, raw: &[u8]) -> Option<&[u8]> {
        let compressor = self.compressor.as_mut()?;
        if raw.len() > SAMPLE_WHOLE_BELOW {
            // The sample must save at least 1/32 (a small window compresses
            // worse than the whole chunk) before the whole chunk is tried.
            self.sample.clear();
            for at in [raw.len() / 4, raw.len() * 3 / 4] {
                self.sample.extend_from_slice(&raw[at..at + SAMPLE_WINDOW]);
            }
            let budget = self.sample.len() - self.sample.len() / 32;
            self.scratch.clear();
            self.scratch.reserve(budget);
            match compressor.compress_to_buffer(&self.sample, &mut self.scratch) {
                Ok(n) if n <= budget => {}
                _ => return None,
            }
        }
        let budget = raw.len() - raw.len() / 16;
        self.scratch.clear();
        self.scratch.reserve(budget);
        match compressor.compress_to_buffer(raw, &mut self.scratch) {
            Ok(n) if n <= budget => Some(&self.scratch[..n]),
            _ => None,
        }
    }
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
        let (stored, codec) = match policy.try_compress(raw) {
            Some(c) => (c, Codec::Zstd),
            None => (raw, Codec::Raw),
        };
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
    let raw = match codec {
        Codec::Raw => stored,
        Codec::Zstd => {
            let v = zstd::bulk::decompress(&stored, raw_len as usize)
                .map_err(|_| PackError::Undecodable(*id))?;
            Bytes::from(v)
        }
    };
    if raw.len() != raw_len as usize {
        return Err(PackError::Undecodable(*id));
    }
    if Digest::of(&raw) != *id {
        return Err(PackError::HashMismatch(*id));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(chunks: &[Vec<u8>], level: i32) -> (Vec<u8>, Vec<PackEntry>) {
        let mut policy = CompressionPolicy::new(level);
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

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 33) as u8
            })
            .collect()
    }

    /// The codec of a chunk depends on its bytes alone: not on how many
    /// incompressible chunks came before it, nor on a shared policy's past.
    #[test]
    fn codec_is_a_function_of_the_chunk_alone() {
        let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog; "
            .iter()
            .cycle()
            .take(12 << 10)
            .copied()
            .collect();
        let big_text: Vec<u8> = text.iter().cycle().take(64 << 10).copied().collect();
        let fresh = |c: &[u8]| {
            let mut p = CompressionPolicy::new(3);
            p.try_compress(c).map(<[u8]>::to_vec)
        };
        let alone = (fresh(&text), fresh(&big_text));
        assert!(alone.0.is_some() && alone.1.is_some());
        let mut shared = CompressionPolicy::new(3);
        for i in 0..40 {
            assert!(shared.try_compress(&noise(12 << 10, i)).is_none());
            assert!(shared.try_compress(&noise(64 << 10, i)).is_none());
        }
        assert_eq!(shared.try_compress(&text).map(<[u8]>::to_vec), alone.0);
        assert_eq!(shared.try_compress(&big_text).map(<[u8]>::to_vec), alone.1);
        assert!(CompressionPolicy::new(0).try_compress(&text).is_none());
    }
}
