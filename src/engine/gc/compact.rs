//! Compaction output of a GC run: live chunks of sparse packs are read
//! through the pack reader (coalesced ranged reads, BLAKE3-verified) and
//! appended verbatim (no recompression) to a new pack, one window at a time
//! — except the live chunks of a frame that lost some of its chunks, which
//! are encoded again as a new frame (a frame cannot be cut without
//! decoding it, and keeping it whole would keep dead bytes forever).

use std::sync::Arc;

use bytes::Bytes;

use crate::codec::{CodecSettings, CompressionPolicy};
use crate::engine::ingest::PackSink;
use crate::engine::{Engine, EngineError, blocking};
use crate::hash::Digest;
use crate::ids::PackId;
use crate::meta::records::ChunkLocation;
use crate::pack::reader::{Gaps, PackReader, SpanBytes, WINDOW_BYTES, coalesce};
use crate::pack::{Codec, FrameMemo, FrameSlot, HEADER_LEN, PackBuilder, PackEntry};

/// The compaction output being filled.
pub(super) struct Compactor {
    engine: Arc<Engine>,
    pub(super) sink: PackSink,
    pub(super) builder: PackBuilder,
    /// (chunk, location it was copied from), in output order.
    pub(super) moves: Vec<(Digest, ChunkLocation)>,
    /// Packs whose live chunks are all in the output.
    pub(super) sources: Vec<PackId>,
}

impl Compactor {
    pub(super) fn new(engine: &Arc<Engine>) -> Self {
        Compactor {
            engine: Arc::clone(engine),
            sink: PackSink::new(Arc::clone(engine)),
            builder: PackBuilder::new(),
            moves: Vec::new(),
            sources: Vec::new(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.builder.is_empty()
    }

    /// Reads the chunks to move from `pack` with coalesced ranged reads
    /// (the pack reader's window policy), verifies each, and appends its
    /// stored bytes to the output, one window at a time (memory: a window
    /// and a part). A frame whose chunks are all live is copied verbatim;
    /// the live chunks of a frame with dead ones are encoded again as a new
    /// frame, so no dead byte survives compaction. On a chunk that does not
    /// verify it stops with an error: the chunks copied so far still move,
    /// but the pack is not emptied, so it stays.
    pub(super) async fn copy(
        &mut self,
        pack: PackId,
        mut moves: Vec<(PackEntry, ChunkLocation)>,
    ) -> Result<(), EngineError> {
        moves.sort_by_key(|(e, _)| e.offset);
        let reader = PackReader::new(&self.engine.blobs);
        let spans = coalesce(moves.into_iter().map(|(e, loc)| (pack, e, loc)), Gaps::Skip);
        let settings = self.engine.cfg.codec_settings();
        for span in spans {
            let bytes = reader
                .read_span(&span)
                .await
                .map_err(|e| EngineError::from_pack(pack, e))?;
            let (pieces, failure) =
                blocking(move || Ok(verify_span(pack, span.members, &bytes, settings))).await?;
            for piece in pieces {
                match piece {
                    Piece::Chunk(e, loc, stored) => {
                        self.builder.add_stored(e.id, &stored, e.raw_len, e.codec);
                        self.moves.push((e.id, loc));
                    }
                    Piece::Frame(codec, stored, members) => {
                        let slots: Vec<_> = members
                            .iter()
                            .map(|(id, raw_len, slot, _)| (*id, *raw_len, *slot))
                            .collect();
                        self.builder.add_stored_frame(&stored, codec, &slots);
                        self.moves
                            .extend(members.into_iter().map(|(id, _, _, loc)| (id, loc)));
                    }
                }
            }
            if self.builder.pending_len() >= WINDOW_BYTES as usize {
                let part = self.builder.take_pending();
                self.sink.write_part(part).await?;
            }
            if let Some(e) = failure {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// What compaction appends for verified chunks: one chunk's stored bytes,
/// or a frame's stored bytes with its members (id, raw length, slot, the
/// location copied from).
enum Piece {
    Chunk(PackEntry, ChunkLocation, Bytes),
    Frame(Codec, Bytes, Vec<(Digest, u32, FrameSlot, ChunkLocation)>),
}

/// Verifies the chunks of one span and turns them into [`Piece`]s: chunks
/// and whole frames as stored, the live chunks of a partly dead frame
/// encoded again (through a pack builder, so the frame rule is the
/// writer's). Stops at the first chunk that fails, returning what came
/// before it.
fn verify_span(
    pack: PackId,
    members: Vec<(PackEntry, ChunkLocation)>,
    bytes: &SpanBytes,
    settings: CodecSettings,
) -> (Vec<Piece>, Option<EngineError>) {
    let mut pieces = Vec::new();
    let mut memo = FrameMemo::default();
    let mut members = members.into_iter().peekable();
    while let Some((e, loc)) = members.next() {
        let Some(slot) = e.frame else {
            match bytes.verified(&e).and_then(|_| bytes.stored(&e)) {
                Ok(stored) => pieces.push(Piece::Chunk(e, loc, stored)),
                Err(err) => return (pieces, Some(EngineError::from_pack(pack, err))),
            }
            continue;
        };
        // The live chunks of this frame (consecutive: same offset).
        let mut group = vec![(e, loc)];
        while let Some(next) = members.next_if(|(n, _)| n.same_frame(&e)) {
            group.push(next);
        }
        let mut raw = Vec::with_capacity(group.len());
        let mut failure = None;
        for (m, _) in &group {
            match bytes.verified_with(m, &mut memo) {
                Ok(r) => raw.push(r),
                Err(err) => {
                    failure = Some(EngineError::from_pack(pack, err));
                    break;
                }
            }
        }
        let live_raw: u64 = group.iter().map(|(m, _)| u64::from(m.raw_len)).sum();
        if failure.is_none() && live_raw == u64::from(slot.raw_len) {
            match bytes.stored(&e) {
                Ok(stored) => {
                    let members = group
                        .into_iter()
                        .filter_map(|(m, loc)| m.frame.map(|s| (m.id, m.raw_len, s, loc)))
                        .collect();
                    pieces.push(Piece::Frame(e.codec, stored, members));
                }
                Err(err) => return (pieces, Some(EngineError::from_pack(pack, err))),
            }
            continue;
        }
        // Dead chunks in the frame (or a failure after some verified ones):
        // encode the verified live ones again.
        let mut policy = CompressionPolicy::new(settings);
        let mut builder = PackBuilder::new();
        let mut locs = Vec::with_capacity(raw.len());
        for ((m, loc), r) in group.into_iter().zip(&raw) {
            builder.add_framed(m.id, r, &mut policy);
            locs.push(loc);
        }
        builder.end_frame(&mut policy);
        let (stored, entries) = (builder.take_pending(), builder.entries().to_vec());
        let body = stored.slice(HEADER_LEN as usize..);
        let mut entries = entries.into_iter().zip(locs).peekable();
        while let Some((n, loc)) = entries.next() {
            let at = (n.offset - HEADER_LEN) as usize;
            let piece = body.slice(at..at + n.stored_len as usize);
            match n.frame {
                None => pieces.push(Piece::Chunk(n, loc, piece)),
                Some(s) => {
                    let mut members = vec![(n.id, n.raw_len, s, loc)];
                    while let Some((m, loc)) = entries.next_if(|(m, _)| m.same_frame(&n)) {
                        if let Some(s) = m.frame {
                            members.push((m.id, m.raw_len, s, loc));
                        }
                    }
                    pieces.push(Piece::Frame(n.codec, piece, members));
                }
            }
        }
        if failure.is_some() {
            return (pieces, failure);
        }
    }
    (pieces, None)
}
