//! Writing a pack: [`PackBuilder`] appends stored chunks and ends with the
//! footer and the versioned trailer of the layout in the parent module.

use bytes::Bytes;

use super::{
    Codec, CompressionPolicy, ENTRY_LEN, HEADER_MAGIC, PACK_FORMAT, PackEntry, TRAILER_MAGIC,
};
use crate::hash::Digest;

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
        self.pending.extend_from_slice(&PACK_FORMAT.to_le_bytes());
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
