//! A chunk batch of an upload session: the framed body
//! (`[id 32][len u32 LE][bytes]`…) is cut into frames as it streams in, each
//! frame is BLAKE3-checked against its id, deduplicated against the global
//! chunk index, and packed through the same [`PackSink`] as ingest.
//!
//! Invariants: 3 (the pack is durable and indexed before any session row
//! names its chunks), 4 (`stored_new` counts chunks new *for the session's
//! creator*, not for the store), 6 (no unverified byte is stored), 7 (the
//! session rows written here are the pins of uploaded chunks), 8 (one frame
//! group of [`CPU_BATCH_BYTES`] and one pack part in memory; frames per batch
//! bounded by [`MAX_FRAMES_PER_BATCH`]).

use std::collections::HashSet;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::{FRAME_HEADER_LEN, MAX_FRAMES_PER_BATCH};
use crate::auth::ExperimentId;
use crate::auth::Principal;
use crate::clock::Timestamp;
use crate::engine::artifacts::Presence;
use crate::engine::ingest::PackSink;
use crate::engine::pins::OpPins;
use crate::engine::quota::Part;
use crate::engine::{Engine, EngineError, blocking};
use crate::hash::Digest;
use crate::ids::SessionId;
use crate::meta::Meta;
use crate::meta::records::UploadChunk;
use crate::pack::{CompressionPolicy, PackBuilder};

/// Frames are verified and packed in groups of about this many bytes.
const CPU_BATCH_BYTES: usize = 4 << 20;
/// Pack bytes are handed to the blob writer in parts of about this size.
const PART_BYTES: usize = 8 << 20;

/// What a chunk batch achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkBatchOutcome {
    /// Frames accepted (including chunks the session already had).
    pub received: u64,
    /// Accepted chunks that were not present for the session's creator
    /// before (never store-wide figures: invariant 4).
    pub stored_new: u64,
}

impl Engine {
    /// Starts receiving a chunk batch (checks the session first).
    ///
    /// # Errors
    /// As [`Engine::upload_status`].
    pub async fn begin_chunk_batch(
        self: &Arc<Self>,
        experiment: ExperimentId,
        caller: &Principal,
        id: &SessionId,
    ) -> Result<ChunkBatch, EngineError> {
        let rec = self.open_session(experiment, caller, id, true).await?;
        let (meta, exp, owner) = (self.meta.clone(), rec.experiment, rec.created_by);
        let presence = blocking(move || Presence::load(&meta, exp, owner)).await?;
        Ok(ChunkBatch {
            engine: Arc::clone(self),
            experiment,
            caller: *caller,
            session: *id,
            max_frame: rec.chunker.max_bytes,
            limit: self.max_batch_bytes(),
            received_bytes: 0,
            buf: BytesMut::new(),
            frames: Vec::new(),
            frames_bytes: 0,
            frame_count: 0,
            cpu: Some(Box::new(BatchCpu {
                room: self
                    .session_allowance(&rec)
                    .saturating_sub(rec.received_bytes),
                allowance: self.session_allowance(&rec),
                over: false,
                meta: self.meta.clone(),
                session: *id,
                presence,
                pins: self.pins.begin(),
                policy: CompressionPolicy::new(self.cfg.codec_settings()),
                pack: PackBuilder::new(),
                seen: HashSet::new(),
                rows: Vec::new(),
                outcome: ChunkBatchOutcome::default(),
                failure: None,
            })),
            sink: PackSink::new(Arc::clone(self)),
            failure: None,
        })
    }
}

/// CPU-side state of a chunk batch, moved to a blocking thread per group.
struct BatchCpu {
    meta: Meta,
    session: SessionId,
    presence: Presence,
    /// Pins of the accepted chunks until their session rows are committed.
    pins: OpPins,
    policy: CompressionPolicy,
    pack: PackBuilder,
    /// Chunks accepted by this batch (bounded by `MAX_FRAMES_PER_BATCH`).
    seen: HashSet<Digest>,
    /// Rows to pin once the pack is durable and indexed.
    rows: Vec<(Digest, UploadChunk)>,
    outcome: ChunkBatchOutcome,
    failure: Option<String>,
    /// Bytes the session may still receive (its claim, else the size cap,
    /// less what it received before this batch).
    room: u64,
    /// The session's whole allowance, for the error.
    allowance: u64,
    /// Set when a chunk new to the session did not fit in `room`.
    over: bool,
}

impl BatchCpu {
    /// Verifies, dedups and packs frames in order; stops at the first bad one.
    fn process(&mut self, frames: Vec<(Digest, Bytes)>) -> Result<(), EngineError> {
        for (n, (id, bytes)) in frames.into_iter().enumerate() {
            if self.failure.is_some() || self.over {
                break;
            }
            if Digest::of(&bytes) != id {
                self.failure = Some(format!(
                    "a frame's bytes do not hash to its id {id} (frame {} of this group)",
                    n + 1
                ));
                break;
            }
            self.outcome.received += 1;
            if !self.seen.insert(id) {
                continue;
            }
            // Pinned before the index lookups below (see `pins.rs`).
            self.pins.chunks(&[id]);
            let pinned = self.meta.upload_chunks(&self.session, &[id])?[0].is_some();
            // A copy marked bad counts as absent: it is stored afresh even
            // if this session already pinned it (self-healing).
            let stored = self.meta.chunk(&id)?.filter(|l| l.usable());
            if pinned && stored.is_some() {
                continue; // already pinned by this session
            }
            let raw_len = bytes.len() as u32;
            if !pinned {
                // Counted as it arrives: a session never receives more than
                // it claimed (else the size cap).
                if u64::from(raw_len) > self.room {
                    self.over = true;
                    break;
                }
                self.room -= u64::from(raw_len);
            }
            if !pinned && !self.presence.readable(&id)? {
                self.outcome.stored_new += 1;
            }
            let row = match stored {
                Some(loc) => UploadChunk {
                    raw_len,
                    stored_len: u32::try_from(loc.stored_share()).unwrap_or(u32::MAX),
                    new_global: false,
                },
                None => {
                    let entry = self.pack.add(id, &bytes, &mut self.policy);
                    UploadChunk {
                        raw_len,
                        stored_len: entry.stored_len,
                        new_global: true,
                    }
                }
            };
            self.rows.push((id, row));
        }
        Ok(())
    }
}

/// One chunk batch in progress: feed body bytes with [`push`](Self::push),
/// then [`finish`](Self::finish). A bad frame stops intake; `finish` still
/// stores and pins the frames before it, then reports the failure.
pub struct ChunkBatch {
    engine: Arc<Engine>,
    experiment: ExperimentId,
    caller: Principal,
    session: SessionId,
    max_frame: u32,
    limit: u64,
    received_bytes: u64,
    buf: BytesMut,
    frames: Vec<(Digest, Bytes)>,
    frames_bytes: usize,
    frame_count: usize,
    cpu: Option<Box<BatchCpu>>,
    sink: PackSink,
    failure: Option<EngineError>,
}

impl ChunkBatch {
    /// Whether intake stopped (bad frame or batch too large).
    pub fn failed(&self) -> bool {
        self.failure.is_some()
            || self
                .cpu
                .as_ref()
                .is_some_and(|c| c.failure.is_some() || c.over)
    }

    /// Abandons the batch (the body broke or stalled): nothing is pinned
    /// for the session, the open pack writer is aborted, and the
    /// operation's pins and buffers are released.
    pub async fn abort(mut self) {
        self.sink.abort().await;
    }

    /// Feeds body bytes; cuts frames and verifies/packs them in groups.
    ///
    /// # Errors
    /// [`EngineError::Blob`] when writing pack bytes fails;
    /// [`EngineError::Internal`] when the verifying task fails. A malformed or
    /// oversized body is not an error here: intake stops and [`ChunkBatch::finish`]
    /// reports it.
    pub async fn push(&mut self, bytes: Bytes) -> Result<(), EngineError> {
        if self.failed() {
            return Ok(());
        }
        // Take bytes up to the limit, so every frame that ends within it
        // still counts; anything beyond fails the batch once those are cut.
        let room = self.limit.saturating_sub(self.received_bytes);
        let over = bytes.len() as u64 > room;
        let take = if over {
            bytes.slice(..room as usize)
        } else {
            bytes
        };
        self.received_bytes += take.len() as u64;
        self.buf.extend_from_slice(&take);
        self.cut_frames().await?;
        if over && self.failure.is_none() {
            self.failure = Some(EngineError::BatchTooLarge {
                limit: format!("{} bytes", self.limit),
            });
        }
        Ok(())
    }

    /// Cuts every complete frame out of the buffer.
    async fn cut_frames(&mut self) -> Result<(), EngineError> {
        while self.buf.len() >= FRAME_HEADER_LEN {
            let mut len_bytes = [0u8; 4];
            len_bytes.copy_from_slice(&self.buf[32..FRAME_HEADER_LEN]);
            let len = u32::from_le_bytes(len_bytes);
            if len == 0 || len > self.max_frame {
                self.failure = Some(EngineError::ChunkMismatch(format!(
                    "frame length {len} is outside 1..={}",
                    self.max_frame
                )));
                return Ok(());
            }
            if self.buf.len() < FRAME_HEADER_LEN + len as usize {
                break;
            }
            let header = self.buf.split_to(FRAME_HEADER_LEN);
            let Some(id) = Digest::from_slice(&header[..32]) else {
                return Err(EngineError::Internal("frame header split".into()));
            };
            let body = self.buf.split_to(len as usize).freeze();
            self.frame_count += 1;
            if self.frame_count > MAX_FRAMES_PER_BATCH {
                self.failure = Some(EngineError::BatchTooLarge {
                    limit: format!("{MAX_FRAMES_PER_BATCH} frames"),
                });
                return Ok(());
            }
            self.frames_bytes += body.len();
            self.frames.push((id, body));
            if self.frames_bytes >= CPU_BATCH_BYTES {
                self.process().await?;
            }
        }
        Ok(())
    }

    async fn process(&mut self) -> Result<(), EngineError> {
        let frames = std::mem::take(&mut self.frames);
        self.frames_bytes = 0;
        let Some(mut cpu) = self.cpu.take() else {
            return Err(EngineError::Internal("chunk batch state lost".into()));
        };
        let (mut cpu, res) = tokio::task::spawn_blocking(move || {
            let res = cpu.process(frames);
            (cpu, res)
        })
        .await
        .map_err(|e| EngineError::Internal(format!("chunk batch task failed: {e}")))?;
        let part = (cpu.pack.pending_len() >= PART_BYTES).then(|| cpu.pack.take_pending());
        self.cpu = Some(cpu);
        res?;
        if let Some(part) = part {
            self.sink.write_part(part).await?;
        }
        Ok(())
    }

    /// Stores and pins what was received (pack durable and indexed first),
    /// then reports the outcome or the failure that stopped intake.
    ///
    /// # Errors
    /// [`EngineError::BatchTooLarge`] when the body exceeded the batch limit;
    /// [`EngineError::ChunkMismatch`] for a malformed frame or one whose bytes do
    /// not hash to its id; [`EngineError::TooLarge`] when the session would
    /// receive more than its claim or the size cap; [`EngineError::QuotaExceeded`]
    /// when the experiment cannot hold what arrived; [`EngineError::SessionEnded`]
    /// when the session ended meanwhile; [`EngineError::Blob`] /
    /// [`EngineError::Meta`] when making the pack durable or indexing it fails.
    pub async fn finish(mut self) -> Result<ChunkBatchOutcome, EngineError> {
        let res = self.store().await;
        if res.is_err() {
            self.sink.abort().await;
        }
        let outcome = res?;
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        if let Some(why) = self.cpu.as_mut().and_then(|c| c.failure.take()) {
            return Err(EngineError::ChunkMismatch(why));
        }
        if let Some(cpu) = self.cpu.as_ref().filter(|c| c.over) {
            return Err(EngineError::TooLarge {
                limit: cpu.allowance,
            });
        }
        Ok(outcome)
    }

    async fn store(&mut self) -> Result<ChunkBatchOutcome, EngineError> {
        if !self.frames.is_empty() {
            self.process().await?;
        }
        if self.failure.is_none() && !self.buf.is_empty() {
            self.failure = Some(EngineError::ChunkMismatch(
                "the body ends inside a frame".into(),
            ));
        }
        let Some(cpu) = self.cpu.as_mut() else {
            return Err(EngineError::Internal("chunk batch state lost".into()));
        };
        let builder = std::mem::take(&mut cpu.pack);
        let rows = std::mem::take(&mut cpu.rows);
        let outcome = cpu.outcome;
        self.sink.seal(builder).await?;
        // Pin under the upload lock, only if the session is still live,
        // counting the bytes new to the session against its allowance (and,
        // for a session without a claim, against the experiment's quota).
        let engine = Arc::clone(&self.engine);
        engine
            .open_session(self.experiment, &self.caller, &self.session, false)
            .await?;
        let _guard = engine
            .meta
            .lock(crate::meta::lock::LockKind::Uploads)
            .await?;
        let (meta, sid) = (engine.meta.clone(), self.session);
        let allowance = cpu.allowance;
        let quotas = Arc::clone(&engine.quotas);
        blocking(move || {
            let Some(mut rec) = meta.upload(&sid)?.filter(|r| r.ended.is_none()) else {
                return Err(EngineError::SessionEnded("the upload session ended".into()));
            };
            let ids: Vec<_> = rows.iter().map(|(id, _)| *id).collect();
            let added: u64 = meta
                .upload_chunks(&sid, &ids)?
                .iter()
                .zip(&rows)
                .filter(|(had, _)| had.is_none())
                .map(|(_, (_, row))| u64::from(row.raw_len))
                .sum();
            let received = rec.received_bytes.saturating_add(added);
            if received > allowance {
                return Err(EngineError::TooLarge { limit: allowance });
            }
            let reserve = if rec.claimed_size.is_none() { added } else { 0 };
            quotas.try_add(&rec.experiment, Part::Session, reserve)?;
            let mut b = meta.batch();
            for (id, row) in &rows {
                b.put_upload_chunk(&sid, id, row);
            }
            rec.last_active = Timestamp::now();
            rec.received_bytes = received;
            b.put_upload(&sid, &rec);
            if let Err(e) = b.commit() {
                quotas.sub(&rec.experiment, Part::Session, reserve);
                return Err(e.into());
            }
            Ok(())
        })
        .await?;
        Ok(outcome)
    }
}
