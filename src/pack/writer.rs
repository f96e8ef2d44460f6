//! Writing a pack: [`PackBuilder`] appends stored chunks — one at a time,
//! or runs of new chunks encoded together as frames — and ends with the
//! footer and the versioned trailer of the layout in the parent module.

use bytes::Bytes;

use super::{
    Codec, CompressionPolicy, FRAME_TARGET_BYTES, FrameSlot, HEADER_MAGIC, PACK_FORMAT, PackEntry,
    TRAILER_MAGIC, UNFRAMED_FORMAT, entry_len,
};
use crate::hash::Digest;

/// Builds one pack incrementally; bytes are taken out with
/// [`take_pending`](Self::take_pending) so a pack never sits whole in memory.
pub struct PackBuilder {
    pending: Vec<u8>,
    len: u64,
    entries: Vec<PackEntry>,
    /// Raw bytes of the frame being collected, and its chunks (id, raw
    /// length) in order.
    frame: Vec<u8>,
    members: Vec<(Digest, u32)>,
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
            frame: Vec::new(),
            members: Vec::new(),
        }
    }

    /// Appends a chunk whose id is already known, encoded on its own.
    pub fn add(&mut self, id: Digest, raw: &[u8], policy: &mut CompressionPolicy) -> PackEntry {
        self.spill_frame();
        let (codec, stored) = policy.encode(raw);
        let entry = PackEntry {
            id,
            offset: self.len,
            stored_len: stored.len() as u32,
            raw_len: raw.len() as u32,
            codec,
            frame: None,
        };
        self.pending.extend_from_slice(stored);
        self.len += stored.len() as u64;
        self.entries.push(entry);
        entry
    }

    /// Adds a chunk to the frame being collected; encodes the frame once it
    /// holds [`FRAME_TARGET_BYTES`]. Returns the stored bytes this call
    /// wrote (0 while the frame is still open). The caller ends the frame
    /// with [`end_frame`](Self::end_frame) where the run of chunks ends;
    /// [`finish`](Self::finish) ends an open frame uncompressed.
    pub fn add_framed(&mut self, id: Digest, raw: &[u8], policy: &mut CompressionPolicy) -> u64 {
        self.frame.extend_from_slice(raw);
        self.members.push((id, raw.len() as u32));
        if self.frame.len() >= FRAME_TARGET_BYTES {
            self.end_frame(policy)
        } else {
            0
        }
    }

    /// Raw bytes in the open frame.
    pub fn open_frame_len(&self) -> usize {
        self.frame.len()
    }

    /// Encodes the open frame, if any, and appends it; returns the stored
    /// bytes written. A frame that does not compress is written as its
    /// chunks, raw; a frame of one chunk as that chunk (no frame entry).
    pub fn end_frame(&mut self, policy: &mut CompressionPolicy) -> u64 {
        if self.members.is_empty() {
            return 0;
        }
        let frame = std::mem::take(&mut self.frame);
        let members = std::mem::take(&mut self.members);
        let before = self.len;
        let (codec, stored) = policy.encode(&frame);
        if codec == Codec::Raw || members.len() == 1 {
            // Nothing gained by a frame: the same bytes, one entry each.
            if members.len() == 1 {
                let (id, raw_len) = members[0];
                self.push_stored(id, stored, raw_len, codec, None);
            } else {
                let mut at = 0usize;
                for (id, raw_len) in members {
                    let end = at + raw_len as usize;
                    self.push_stored(id, &frame[at..end], raw_len, Codec::Raw, None);
                    at = end;
                }
            }
        } else {
            let offset = self.len;
            let stored_len = stored.len() as u32;
            self.pending.extend_from_slice(stored);
            self.len += stored.len() as u64;
            let mut at = 0u32;
            for (id, raw_len) in members {
                self.entries.push(PackEntry {
                    id,
                    offset,
                    stored_len,
                    raw_len,
                    codec,
                    frame: Some(FrameSlot {
                        raw_len: frame.len() as u32,
                        at,
                    }),
                });
                at += raw_len;
            }
        }
        // Keep the frame buffer's allocation for the next frame.
        self.frame = frame;
        self.frame.clear();
        self.len - before
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
        self.spill_frame();
        self.push_stored(id, stored, raw_len, codec, None)
    }

    /// Appends a whole frame's stored bytes as they are, with its chunks
    /// (id, raw length, slot) — compaction of a frame whose chunks are all
    /// live. The caller has verified every chunk.
    pub fn add_stored_frame(
        &mut self,
        stored: &[u8],
        codec: Codec,
        members: &[(Digest, u32, FrameSlot)],
    ) {
        self.spill_frame();
        let offset = self.len;
        self.pending.extend_from_slice(stored);
        self.len += stored.len() as u64;
        for &(id, raw_len, slot) in members {
            self.entries.push(PackEntry {
                id,
                offset,
                stored_len: stored.len() as u32,
                raw_len,
                codec,
                frame: Some(slot),
            });
        }
    }

    fn push_stored(
        &mut self,
        id: Digest,
        stored: &[u8],
        raw_len: u32,
        codec: Codec,
        frame: Option<FrameSlot>,
    ) -> PackEntry {
        let entry = PackEntry {
            id,
            offset: self.len,
            stored_len: stored.len() as u32,
            raw_len,
            codec,
            frame,
        };
        self.pending.extend_from_slice(stored);
        self.len += stored.len() as u64;
        self.entries.push(entry);
        entry
    }

    /// Writes an open frame's chunks raw, one entry each, so entries stay
    /// in the order chunks were added (a caller that forgot
    /// [`end_frame`](Self::end_frame) loses compression, never a chunk).
    fn spill_frame(&mut self) {
        if self.members.is_empty() {
            return;
        }
        let frame = std::mem::take(&mut self.frame);
        let mut at = 0usize;
        for (id, raw_len) in std::mem::take(&mut self.members) {
            let end = at + raw_len as usize;
            self.push_stored(id, &frame[at..end], raw_len, Codec::Raw, None);
            at = end;
        }
        self.frame = frame;
        self.frame.clear();
    }

    /// Total bytes of the pack so far (header and chunks, not the open
    /// frame).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no chunk was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.members.is_empty()
    }

    /// Bytes added since the last call and not yet taken.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Takes the bytes added since the last call.
    pub fn take_pending(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.pending))
    }

    /// Entries added so far (not those of the open frame).
    pub fn entries(&self) -> &[PackEntry] {
        &self.entries
    }

    /// Appends footer and trailer; returns the last bytes to write and the
    /// entries. The format is [`PACK_FORMAT`] when a chunk is framed, else
    /// [`UNFRAMED_FORMAT`] (which older binaries read too).
    pub fn finish(mut self) -> (Bytes, Vec<PackEntry>) {
        self.spill_frame();
        let format = if self.entries.iter().any(|e| e.frame.is_some()) {
            PACK_FORMAT
        } else {
            UNFRAMED_FORMAT
        };
        let footer = encode_footer(&self.entries, format);
        self.pending.extend_from_slice(&footer);
        self.pending
            .extend_from_slice(&(footer.len() as u64).to_le_bytes());
        self.pending
            .extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        self.pending
            .extend_from_slice(blake3::hash(&footer).as_bytes());
        self.pending.extend_from_slice(&format.to_le_bytes());
        self.pending.extend_from_slice(TRAILER_MAGIC);
        (Bytes::from(self.pending), self.entries)
    }
}

fn encode_footer(entries: &[PackEntry], format: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * entry_len(format));
    for e in entries {
        out.extend_from_slice(e.id.as_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.stored_len.to_le_bytes());
        out.extend_from_slice(&e.raw_len.to_le_bytes());
        out.push(e.codec as u8);
        if format >= 3 {
            let slot = e.frame.unwrap_or(FrameSlot { raw_len: 0, at: 0 });
            out.extend_from_slice(&slot.raw_len.to_le_bytes());
            out.extend_from_slice(&slot.at.to_le_bytes());
        }
    }
    out
}
