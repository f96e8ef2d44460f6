//! Compaction output of a GC run: live chunks of sparse packs are read with
//! coalesced ranged reads, verified (BLAKE3), and appended verbatim (no
//! recompression) to a new pack, one read span at a time.

use std::sync::Arc;

use ulid::Ulid;

use super::READ_SPAN;
use crate::blobs::keys;
use crate::engine::ingest::PackSink;
use crate::engine::{Engine, EngineError, blocking};
use crate::hash::Digest;
use crate::meta::records::ChunkLocation;
use crate::pack::{PackBuilder, PackEntry, decode_chunk};

/// The compaction output being filled.
pub(super) struct Compactor {
    engine: Arc<Engine>,
    pub(super) sink: PackSink,
    pub(super) builder: PackBuilder,
    /// (chunk, location it was copied from), in output order.
    pub(super) moves: Vec<(Digest, ChunkLocation)>,
    /// Packs whose live chunks are all in the output.
    pub(super) sources: Vec<u128>,
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

    /// Reads the chunks to move from `pack` with coalesced ranged reads of
    /// at most [`READ_SPAN`], verifies each, and appends its stored bytes to
    /// the output, one span at a time (memory: a span and a part). On a chunk
    /// that does not verify it stops with an error: the chunks copied so far
    /// still move, but the pack is not emptied, so it stays.
    pub(super) async fn copy(
        &mut self,
        pack: u128,
        mut moves: Vec<(PackEntry, ChunkLocation)>,
    ) -> Result<(), EngineError> {
        moves.sort_by_key(|(e, _)| e.offset);
        let key = keys::pack(Ulid(pack));
        let mut i = 0;
        while i < moves.len() {
            // One ranged read for the chunks that fit in READ_SPAN (at least one).
            let start = moves[i].0.offset;
            let mut end = start + u64::from(moves[i].0.stored_len);
            let mut j = i + 1;
            while j < moves.len() {
                let e_end = moves[j].0.offset + u64::from(moves[j].0.stored_len);
                if e_end - start > READ_SPAN {
                    break;
                }
                end = e_end;
                j += 1;
            }
            let span = self
                .engine
                .blobs
                .read_range(&key, start, end - start)
                .await?;
            let group: Vec<(PackEntry, ChunkLocation)> = moves[i..j].to_vec();
            let (verified, failure) = blocking(move || {
                let mut ok = Vec::with_capacity(group.len());
                for (e, loc) in group {
                    let rel = (e.offset - start) as usize;
                    let stored = span.slice(rel..rel + e.stored_len as usize);
                    if let Err(err) = decode_chunk(&e.id, e.codec, e.raw_len, stored.clone()) {
                        let why = format!("{err} (pack {})", Ulid(pack));
                        return Ok((ok, Some(EngineError::Integrity(why))));
                    }
                    ok.push((e, loc, stored));
                }
                Ok((ok, None))
            })
            .await?;
            for (e, loc, stored) in verified {
                self.builder.add_stored(e.id, &stored, e.raw_len, e.codec);
                self.moves.push((e.id, loc));
            }
            if self.builder.pending_len() >= READ_SPAN as usize {
                let part = self.builder.take_pending();
                self.sink.write_part(part).await?;
            }
            if let Some(e) = failure {
                return Err(e);
            }
            i = j;
        }
        Ok(())
    }
}
