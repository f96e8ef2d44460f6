//! The pack sink: steps 1–2 of ingest's durability order (see the parent
//! module). Pack bytes stream to a fresh create-only key; the pack is made
//! durable; only then are its chunks indexed and the pack recorded, in one
//! synced batch. Ingest, upload sessions and GC's compaction all write
//! packs through [`PackSink`], so they keep invariant 3 the same way, and a
//! pack in progress is registered with the pins so GC never takes it for a
//! crash leftover.

use std::sync::Arc;

use bytes::Bytes;

use crate::blobs::{BlobWriter, keys};
use crate::clock::Timestamp;
use crate::engine::{Engine, EngineError, Stats, blocking};
use crate::ids::PackId;
use crate::meta::records::{ChunkLocation, PackRecord};
use crate::pack::{PackBuilder, PackEntry};

/// A pack being streamed to the blob store.
struct OpenPack {
    id: PackId,
    writer: BlobWriter,
}

/// A pack that is durable but not yet indexed.
pub(crate) struct SealedPack {
    /// Pack id.
    pub id: PackId,
    /// Object size.
    pub bytes: u64,
    /// Its chunks.
    pub entries: Vec<PackEntry>,
}

/// The durable half of pack writing (steps 1–2 of the module docs): streams
/// a [`PackBuilder`]'s bytes to a fresh create-only key, makes the pack
/// durable, and only then indexes its chunks. Shared by ingest and upload
/// sessions so both keep invariant 3 the same way.
pub(crate) struct PackSink {
    engine: Arc<Engine>,
    open_pack: Option<OpenPack>,
}

impl PackSink {
    /// A sink with no pack open yet.
    pub(crate) fn new(engine: Arc<Engine>) -> Self {
        PackSink {
            engine,
            open_pack: None,
        }
    }

    /// Whether no pack object is open (nothing of the current pack was
    /// written yet).
    pub(crate) fn is_idle(&self) -> bool {
        self.open_pack.is_none()
    }

    /// Appends pack bytes, opening a new create-only pack object first if needed.
    pub(crate) async fn write_part(&mut self, part: Bytes) -> Result<(), EngineError> {
        if self.open_pack.is_none() {
            let id = PackId::mint();
            // Registered before the object exists, so GC never takes a pack
            // in progress for a crash leftover.
            self.engine.pins.pack_opened(id);
            let writer = match self.engine.blobs.create(&keys::pack(id)).await {
                Ok(w) => w,
                Err(e) => {
                    self.engine.pins.pack_closed(id);
                    return Err(e.into());
                }
            };
            self.open_pack = Some(OpenPack { id, writer });
        }
        if let Some(p) = self.open_pack.as_mut() {
            p.writer.write(part).await?;
        }
        Ok(())
    }

    /// Closes the pack of `builder`: footer, fsync, then index its chunks.
    /// Returns the entries now indexed (none for an empty builder).
    pub(crate) async fn seal(
        &mut self,
        builder: PackBuilder,
    ) -> Result<Vec<PackEntry>, EngineError> {
        let Some(sealed) = self.close(builder).await? else {
            return Ok(Vec::new());
        };
        let indexed = index_pack(
            &self.engine,
            sealed.id,
            sealed.bytes,
            sealed.entries.clone(),
        )
        .await;
        self.engine.pins.pack_closed(sealed.id);
        indexed?;
        tracing::debug!(pack = %sealed.id, bytes = sealed.bytes, chunks = sealed.entries.len(), "pack sealed");
        Ok(sealed.entries)
    }

    /// Writes the footer and makes the pack durable, without indexing it
    /// (`None` for an empty builder). The pack stays registered as open
    /// until the caller indexes it and calls `Pins::pack_closed`.
    pub(crate) async fn close(
        &mut self,
        builder: PackBuilder,
    ) -> Result<Option<SealedPack>, EngineError> {
        if builder.is_empty() {
            return Ok(None);
        }
        let (tail, entries) = builder.finish();
        self.write_part(tail).await?;
        let Some(open) = self.open_pack.take() else {
            return Err(EngineError::Internal("pack writer missing".into()));
        };
        let bytes = open.writer.written();
        if let Err(e) = open.writer.close().await {
            self.engine.pins.pack_closed(open.id);
            return Err(e.into());
        }
        let stats = &self.engine.stats;
        Stats::add(&stats.packs_written, 1);
        Stats::add(&stats.pack_bytes_written, bytes);
        Ok(Some(SealedPack {
            id: open.id,
            bytes,
            entries,
        }))
    }

    /// Gives up the open pack, if any (it has no trailer and is never indexed).
    pub(crate) async fn abort(&mut self) {
        if let Some(p) = self.open_pack.take() {
            p.writer.abort().await;
            self.engine.pins.pack_closed(p.id);
        }
    }
}

impl Drop for PackSink {
    fn drop(&mut self) {
        // A sink dropped mid-pack (client gone): the partial object is garbage.
        if let Some(p) = &self.open_pack {
            self.engine.pins.pack_closed(p.id);
        }
    }
}

/// Indexes a durable pack's chunks and records the pack, in one synced batch
/// (under the index lock, so no conditional index change interleaves).
async fn index_pack(
    engine: &Arc<Engine>,
    id: PackId,
    bytes: u64,
    entries: Vec<PackEntry>,
) -> Result<(), EngineError> {
    let engine = Arc::clone(engine);
    blocking(move || {
        let meta = &engine.meta;
        let pack = id;
        let mut b = meta.batch();
        let raw_bytes = entries.iter().map(|e| u64::from(e.raw_len)).sum();
        // Stored as whole Unix seconds (`PackRecord::created_at`).
        let created_at = Timestamp::now();
        b.put_pack(
            pack,
            &PackRecord {
                bytes,
                chunks: entries.len() as u32,
                raw_bytes,
                created_at,
            },
        );
        for e in &entries {
            b.put_chunk(&e.id, &ChunkLocation::in_pack(pack, e));
        }
        let _index = engine.index_lock.lock().unwrap_or_else(|e| e.into_inner());
        b.commit()?;
        Ok(())
    })
    .await
}
