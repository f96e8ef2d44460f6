//! Ingest: a byte stream becomes chunks, new chunks become packs, and a
//! manifest plus an artifact record are committed last.
//!
//! Order of durability (invariant 3):
//! 1. chunk bytes go into a pack, written create-only and fsynced;
//! 2. only then are that pack's chunks indexed (one `WriteBatch` per pack);
//! 3. manifest segments are written as they fill (content-addressed, unreferenced
//!    until step 5), the manifest object goes to the blob store;
//! 4. nothing is visible yet: [`Ingest::finish`] returns [`PreparedContent`];
//! 5. [`Engine::commit_artifact`] writes the chunk refs of the artifact (one
//!    unsynced batch per segment, see `artifacts.rs`), then manifest +
//!    artifact record in one synced `WriteBatch`.
//!
//! A crash or an error anywhere before step 5 leaves no visible artifact,
//! only unreferenced packs/segments that GC reclaims. Memory is bounded by the
//! pipeline (one input batch in flight, one pack part pending, one segment),
//! never by the artifact size (invariant 8).
//!
//! Steps 1–2 live in [`PackSink`] (`ingest/sink.rs`) and step 3's segments in [`SegmentBuilder`],
//! which upload sessions (`uploads.rs`) use too, so both write paths share
//! one durability order.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

pub(crate) mod group;
mod sink;

pub(crate) use super::manifest_object::write_manifest_object;
pub use super::manifest_object::{BUNDLE_MAGIC, BundledManifest, MANIFEST_MAGIC, split_bundle};
use super::pins::OpPins;
use super::{Engine, EngineError};
use crate::auth::{ExperimentId, Principal};
use crate::chunking::{FASTCDC_2020, StreamChunker};
use crate::clock::Timestamp;
use crate::hash::Digest;
use crate::ids::ArtifactId;
use crate::meta::records::{
    ArtifactRecord, DedupFigures, Manifest, ManifestEntry, SEGMENT_ENTRIES, Segment, SegmentRef,
};
use crate::meta::{Meta, encode};
use crate::pack::{CompressionPolicy, PackBuilder};
pub(crate) use sink::PackSink;

/// Input is handed to the CPU stage in batches of about this size.
const BATCH_BYTES: usize = 4 << 20;
/// Pack bytes are handed to the blob writer in parts of about this size.
const PART_BYTES: usize = 8 << 20;

/// Who deposits what, recorded with the artifact.
#[derive(Clone, Debug)]
pub struct DepositRequest {
    /// Experiment id.
    pub experiment: ExperimentId,
    /// The admin or the depositing worker.
    pub created_by: Principal,
    /// Sanitised content type.
    pub content_type: String,
    /// Original filename, if any.
    pub filename: Option<String>,
    /// When the artifact expires (else the retention default applies).
    pub expires_at: Option<Timestamp>,
    /// `key=value` labels (checked by the caller with
    /// `naming::check_labels`).
    pub labels: std::collections::BTreeMap<String, String>,
    /// A reference to set to the new artifact in the same commit (a cache
    /// key): the artifact is recorded only if the reference is as expected.
    pub reference: Option<super::refs::RefUpdate>,
}

/// Content that is stored and indexed but not yet visible as an artifact.
#[derive(Clone, Debug)]
pub struct PreparedContent {
    /// Manifest id.
    pub manifest_id: Digest,
    /// The manifest.
    pub manifest: Manifest,
    /// Dedup figures.
    pub figures: DedupFigures,
    /// Pins of the operation that prepared it, held until the commit that
    /// makes its references durable (invariant 7).
    pub(crate) pins: Option<Arc<OpPins>>,
    /// The new chunks of a small deposit, not written yet: the commit
    /// writes them, with the manifest, in a group (`ingest/group.rs`).
    /// `None`: every chunk is indexed and the manifest object written.
    pub(crate) staged: Option<Arc<group::Staged>>,
}

/// What a committed deposit answers.
#[derive(Clone, Debug)]
pub struct DepositReceipt {
    /// The new artifact's id.
    pub id: ArtifactId,
    /// The stored record.
    pub record: ArtifactRecord,
}

/// Parses an artifact id (32 lowercase hex characters); [`ArtifactId::parse`].
pub fn parse_artifact_id(s: &str) -> Option<ArtifactId> {
    ArtifactId::parse(s)
}

/// CPU-side state, moved to a blocking thread for each batch.
struct CpuState {
    meta: Meta,
    chunker: StreamChunker,
    whole_b3: blake3::Hasher,
    whole_sha: Sha256,
    policy: CompressionPolicy,
    pack: PackBuilder,
    /// Pack size at which the open frame is ended at the end of a batch, so
    /// the pack can be sealed between batches.
    pack_target_bytes: u64,
    /// Chunks stored by this ingest in packs not yet indexed.
    unindexed: HashSet<Digest>,
    segments: SegmentBuilder,
    figures: DedupFigures,
}

impl CpuState {
    fn process(&mut self, batch: &[Bytes], last: bool) -> Result<(), EngineError> {
        let CpuState {
            meta,
            chunker,
            whole_b3,
            whole_sha,
            policy,
            pack,
            pack_target_bytes,
            unindexed,
            segments,
            figures,
        } = self;
        let mut failure: Option<EngineError> = None;
        std::thread::scope(|s| {
            // Whole-content digests on a second core while this one chunks.
            s.spawn(|| {
                for b in batch {
                    whole_b3.update(b);
                    whole_sha.update(b);
                }
            });
            let mut on_chunk = |c: &[u8]| {
                if failure.is_some() {
                    return;
                }
                let id = Digest::of(c);
                figures.chunks += 1;
                let entry = ManifestEntry {
                    id,
                    len: c.len() as u32,
                };
                if let Err(e) = segments.push(meta, entry) {
                    failure = Some(e);
                    return;
                }
                let known = unindexed.contains(&id)
                    || match meta.chunk(&id) {
                        // A copy marked bad counts as absent (self-healing).
                        Ok(found) => found.is_some_and(|l| l.usable()),
                        Err(e) => {
                            failure = Some(e.into());
                            return;
                        }
                    };
                if known {
                    // A frame holds a contiguous run of this deposit's new
                    // bytes (docs/design.md, "Frames").
                    figures.new_stored_bytes += pack.end_frame(policy);
                } else {
                    figures.new_stored_bytes += pack.add_framed(id, c, policy);
                    unindexed.insert(id);
                    figures.new_chunks += 1;
                    figures.new_raw_bytes += c.len() as u64;
                }
            };
            for b in batch {
                figures.logical_bytes += b.len() as u64;
                chunker.push(b, &mut on_chunk);
            }
            if last {
                chunker.finish(&mut on_chunk);
            }
            // The pack is sealed between batches only with no frame open.
            if last || pack.len() + pack.open_frame_len() as u64 >= *pack_target_bytes {
                figures.new_stored_bytes += pack.end_frame(policy);
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        if last {
            segments.seal(meta)?;
        }
        Ok(())
    }
}

/// Cuts an ordered stream of manifest entries into content-addressed
/// segments of [`SEGMENT_ENTRIES`], storing each as it fills, so a manifest
/// never sits whole in memory. Shared by ingest and upload commits.
///
/// It also pins what it references (see `pins.rs`): each entry's chunk
/// before the caller looks the chunk up, and each segment by id before it
/// is stored, after which the segment's loose chunk pins are released.
pub(crate) struct SegmentBuilder {
    segment: Segment,
    segments: Vec<SegmentRef>,
    pins: Arc<OpPins>,
}

impl SegmentBuilder {
    /// An empty builder pinning through `pins`.
    pub(crate) fn new(pins: Arc<OpPins>) -> Self {
        SegmentBuilder {
            segment: Segment::default(),
            segments: Vec::new(),
            pins,
        }
    }

    /// Appends an entry (pinning its chunk); stores the segment when it is full.
    pub(crate) fn push(&mut self, meta: &Meta, entry: ManifestEntry) -> Result<(), EngineError> {
        self.pins.chunks(&[entry.id]);
        self.segment.entries.push(entry);
        if self.segment.entries.len() >= SEGMENT_ENTRIES {
            self.seal(meta)?;
        }
        Ok(())
    }

    /// Stores the current partial segment, if any.
    pub(crate) fn seal(&mut self, meta: &Meta) -> Result<(), EngineError> {
        if self.segment.entries.is_empty() {
            return Ok(());
        }
        let encoded = encode(&self.segment)?;
        let id = Digest::of(&encoded);
        self.pins.sealed(id);
        meta.put_segment(&id, &encoded)?;
        self.pins.release_loose();
        self.segments.push(SegmentRef {
            id,
            chunks: self.segment.entries.len() as u32,
            bytes: self.segment.entries.iter().map(|e| u64::from(e.len)).sum(),
        });
        self.segment.entries.clear();
        Ok(())
    }

    /// Stores the last partial segment and returns the segment list.
    pub(crate) fn finish(mut self, meta: &Meta) -> Result<Vec<SegmentRef>, EngineError> {
        self.seal(meta)?;
        Ok(self.segments)
    }
}

/// The CPU state handed back by a batch, with the batch's result.
type CpuOutcome = (Box<CpuState>, Result<(), EngineError>);

/// One deposit in progress. Feed it with [`push`](Self::push), then call
/// [`finish`](Self::finish). Dropping it abandons the deposit safely.
pub struct Ingest {
    engine: Arc<Engine>,
    pins: Arc<OpPins>,
    state: Option<Box<CpuState>>,
    job: Option<tokio::task::JoinHandle<CpuOutcome>>,
    batch: Vec<Bytes>,
    batch_bytes: usize,
    received: u64,
    sink: PackSink,
}

impl Engine {
    /// Starts a deposit.
    ///
    /// # Errors
    /// [`EngineError::LeaseLost`] once this process lost the blob store's
    /// writer lease; [`EngineError::Internal`] for chunker parameters the
    /// chunker refuses (validated at startup, so a bug).
    pub fn begin_ingest(self: &Arc<Self>) -> Result<Ingest, EngineError> {
        self.check_writer()?;
        let chunker = StreamChunker::new(self.cfg.chunker)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        let pins = Arc::new(self.pins.begin());
        Ok(Ingest {
            engine: Arc::clone(self),
            pins: Arc::clone(&pins),
            state: Some(Box::new(CpuState {
                meta: self.meta.clone(),
                chunker,
                whole_b3: blake3::Hasher::new(),
                whole_sha: Sha256::new(),
                policy: CompressionPolicy::new(self.cfg.codec_settings()),
                pack: PackBuilder::new(),
                pack_target_bytes: self.cfg.pack_target_bytes,
                unindexed: HashSet::new(),
                segments: SegmentBuilder::new(pins),
                figures: DedupFigures::default(),
            })),
            job: None,
            batch: Vec::new(),
            batch_bytes: 0,
            received: 0,
            sink: PackSink::new(Arc::clone(self)),
        })
    }

    /// Stores `bytes` as a whole and commits it as an artifact.
    ///
    /// # Errors
    /// As [`Engine::begin_ingest`], [`Ingest::push`], [`Ingest::finish`] and
    /// [`Engine::commit_artifact`].
    pub async fn deposit_bytes(
        self: &Arc<Self>,
        req: DepositRequest,
        bytes: Bytes,
    ) -> Result<DepositReceipt, EngineError> {
        let mut ingest = self.begin_ingest()?;
        ingest.push(bytes).await?;
        let prepared = ingest.finish().await?;
        self.commit_artifact(prepared, req).await
    }

    /// Records prepared content as a new artifact (the visibility point):
    /// chunk refs per segment, then manifest + artifact record in one synced
    /// batch. The digests were computed while streaming, so they are
    /// recorded as verified.
    ///
    /// # Errors
    /// [`EngineError::Integrity`] when a segment the manifest names is missing
    /// from metadata; [`EngineError::SessionEnded`] when the upload session being
    /// committed ended meanwhile; [`EngineError::Meta`] when the metadata store
    /// fails (nothing is visible then).
    pub async fn commit_artifact(
        self: &Arc<Self>,
        prepared: PreparedContent,
        req: DepositRequest,
    ) -> Result<DepositReceipt, EngineError> {
        self.commit_prepared(prepared, req, None).await
    }
}

impl Ingest {
    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Feeds bytes. Fails with [`EngineError::TooLarge`] as soon as the
    /// total passes the configured cap, before storing anything more.
    ///
    /// # Errors
    /// [`EngineError::TooLarge`] past the size cap; [`EngineError::Blob`] when
    /// writing pack bytes fails; [`EngineError::Meta`] when indexing a sealed
    /// pack fails; [`EngineError::Internal`] when the chunking task fails.
    pub async fn push(&mut self, bytes: Bytes) -> Result<(), EngineError> {
        let limit = self.engine.cfg.max_artifact_bytes;
        self.received += bytes.len() as u64;
        if self.received > limit {
            return Err(EngineError::TooLarge { limit });
        }
        if bytes.is_empty() {
            return Ok(());
        }
        self.batch_bytes += bytes.len();
        self.batch.push(bytes);
        if self.batch_bytes >= BATCH_BYTES {
            self.dispatch(false).await?;
        }
        Ok(())
    }

    /// Waits for the batch in flight and writes what it produced.
    async fn settle(&mut self) -> Result<(), EngineError> {
        if let Some(job) = self.job.take() {
            let (state, res) = job
                .await
                .map_err(|e| EngineError::Internal(format!("ingest task failed: {e}")))?;
            self.state = Some(state);
            res?;
        }
        Ok(())
    }

    /// Sends the current batch to the CPU stage; writes finished pack bytes.
    async fn dispatch(&mut self, last: bool) -> Result<(), EngineError> {
        self.settle().await?;
        let Some(mut state) = self.state.take() else {
            return Err(EngineError::Internal("ingest state lost".into()));
        };
        // Pack bytes produced by the previous batch, written while the next
        // batch is chunked.
        let seal = state.pack.len() >= self.engine.cfg.pack_target_bytes;
        let part =
            (!seal && state.pack.pending_len() >= PART_BYTES).then(|| state.pack.take_pending());
        if seal {
            self.state = Some(state);
            self.seal_pack().await?;
            let Some(s) = self.state.take() else {
                return Err(EngineError::Internal("ingest state lost".into()));
            };
            state = s;
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        self.job = Some(tokio::task::spawn_blocking(move || {
            let res = state.process(&batch, last);
            (state, res)
        }));
        if let Some(part) = part.filter(|p| !p.is_empty()) {
            self.write_part(part).await?;
        }
        if last {
            self.settle().await?;
        }
        Ok(())
    }

    async fn write_part(&mut self, part: Bytes) -> Result<(), EngineError> {
        self.sink.write_part(part).await
    }

    /// Closes the current pack: footer, fsync, then index its chunks.
    async fn seal_pack(&mut self) -> Result<(), EngineError> {
        let Some(state) = self.state.as_mut() else {
            return Err(EngineError::Internal("ingest state lost".into()));
        };
        if state.pack.is_empty() {
            return Ok(());
        }
        let builder = std::mem::take(&mut state.pack);
        let entries = self.sink.seal(builder).await?;
        if let Some(state) = self.state.as_mut() {
            for e in &entries {
                state.unindexed.remove(&e.id);
            }
        }
        Ok(())
    }

    /// Ends the stream: last chunks, last pack, manifest. Nothing is visible
    /// until [`Engine::commit_artifact`].
    ///
    /// A small deposit (new chunks within `SMALL_DEPOSIT_BYTES`, none
    /// written yet, a manifest of at most `SMALL_MANIFEST_CHUNKS`) keeps
    /// its new chunks in memory instead: its commit writes them, and its
    /// manifest object, together with concurrent small deposits
    /// (`ingest/group.rs`).
    ///
    /// # Errors
    /// As [`Ingest::push`], and [`EngineError::Blob`] when the manifest object
    /// cannot be written.
    pub async fn finish(mut self) -> Result<PreparedContent, EngineError> {
        self.dispatch(true).await?;
        let Some(state) = self.state.as_mut() else {
            return Err(EngineError::Internal("ingest state lost".into()));
        };
        let p = self.engine.cfg.chunker;
        let manifest = Manifest {
            chunker: FASTCDC_2020.to_string(),
            params: p,
            size: state.figures.logical_bytes,
            chunks: state.figures.chunks,
            blake3: std::mem::take(&mut state.whole_b3).finalize().into(),
            sha256: std::mem::take(&mut state.whole_sha).finalize().into(),
            // `process(last = true)` sealed the last partial segment.
            segments: std::mem::replace(
                &mut state.segments,
                SegmentBuilder::new(Arc::clone(&self.pins)),
            )
            .finish(&state.meta)?,
        };
        let small = self.sink.is_idle()
            && state.pack.len() <= group::SMALL_DEPOSIT_BYTES
            && manifest.chunks <= group::SMALL_MANIFEST_CHUNKS
            && manifest.segments.len() <= 1;
        let staged = if small {
            let builder = std::mem::take(&mut state.pack);
            Some(Arc::new(group::Staged::from_builder(builder)))
        } else {
            self.seal_pack().await?;
            None
        };
        let Some(state) = self.state.take() else {
            return Err(EngineError::Internal("ingest state lost".into()));
        };
        let manifest_id = Digest::of(&encode(&manifest)?);
        self.pins.sealed(manifest_id);
        if staged.is_none() {
            write_manifest_object(&self.engine, &manifest_id, &manifest).await?;
        }
        Ok(PreparedContent {
            manifest_id,
            manifest,
            figures: state.figures,
            pins: Some(Arc::clone(&self.pins)),
            staged,
        })
    }

    /// Abandons the deposit, releasing the open pack writer.
    pub async fn abort(mut self) {
        let _ = self.settle().await;
        self.sink.abort().await;
    }
}
