//! Compaction output of a GC run: live chunks of sparse packs are read
//! through the pack reader (coalesced ranged reads, BLAKE3-verified) and
//! appended verbatim (no recompression) to a new pack, one window at a time.

use std::sync::Arc;

use crate::engine::ingest::PackSink;
use crate::engine::{Engine, EngineError, blocking};
use crate::hash::Digest;
use crate::ids::PackId;
use crate::meta::records::ChunkLocation;
use crate::pack::reader::{Gaps, PackReader, WINDOW_BYTES, coalesce};
use crate::pack::{PackBuilder, PackEntry};

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
    /// and a part). On a chunk that does not verify it stops with an error:
    /// the chunks copied so far still move, but the pack is not emptied, so
    /// it stays.
    pub(super) async fn copy(
        &mut self,
        pack: PackId,
        mut moves: Vec<(PackEntry, ChunkLocation)>,
    ) -> Result<(), EngineError> {
        moves.sort_by_key(|(e, _)| e.offset);
        let reader = PackReader::new(&self.engine.blobs);
        let spans = coalesce(moves.into_iter().map(|(e, loc)| (pack, e, loc)), Gaps::Skip);
        for span in spans {
            let bytes = reader
                .read_span(&span)
                .await
                .map_err(|e| EngineError::from_pack(pack, e))?;
            let (verified, failure) = blocking(move || {
                let mut ok = Vec::with_capacity(span.members.len());
                for (e, loc) in span.members {
                    match bytes.verified(&e).and_then(|_| bytes.stored(&e)) {
                        Ok(stored) => ok.push((e, loc, stored)),
                        Err(err) => return Ok((ok, Some(EngineError::from_pack(pack, err)))),
                    }
                }
                Ok((ok, None))
            })
            .await?;
            for (e, loc, stored) in verified {
                self.builder.add_stored(e.id, &stored, e.raw_len, e.codec);
                self.moves.push((e.id, loc));
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
