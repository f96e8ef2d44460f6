//! Committing an upload session: every listed chunk must be present for
//! the session's creator and have the listed length; segments are built
//! like ingest builds them; the whole content is read back through the
//! verified decoder and hashed; only a matching BLAKE3 lets the artifact be
//! recorded, through the same `Engine::commit_prepared` as every deposit,
//! in the batch that also ends the session.
//!
//! The chunk list is checked as it streams in ([`CommitCheck::push`], in
//! groups), never held whole: a commit's memory does not depend on how long
//! a list the client sends. The listed bytes may not pass the session's
//! allowance (its claim, else the size cap): the list is refused as soon as
//! they do.
//!
//! Invariants: 3 (the artifact is recorded last, its chunks indexed and its
//! refs written first), 4 (presence is decided for the creator, never from
//! the global index alone), 6 (content is verified chunk by chunk and as a
//! whole before it becomes visible), 8 (one group of entries, one segment
//! and a few read batches in memory).

use std::sync::Arc;
use std::time::Duration;

use super::{COMMIT_STEP, CommitRequest, MISSING_NAMED};
use crate::auth::ExperimentId;
use crate::auth::Principal;
use crate::chunking::FASTCDC_2020;
use crate::clock::Timestamp;
use crate::engine::artifacts::{Presence, SessionEnding};
use crate::engine::ingest::{
    DepositReceipt, DepositRequest, PreparedContent, SegmentBuilder, write_manifest_object,
};
use crate::engine::pins::OpPins;
use crate::engine::{Engine, EngineError, blocking};
use crate::hash::Digest;
use crate::ids::SessionId;
use crate::meta::records::{DedupFigures, Manifest, ManifestEntry, UploadRecord};
use crate::meta::{Meta, encode};

/// What the end of a commit body says about the artifact.
#[derive(Clone, Debug)]
pub struct CommitTrailer {
    /// The BLAKE3 the client computed over the whole content.
    pub blake3: Digest,
    /// Content type overriding the session's (sanitised).
    pub content_type: Option<String>,
    /// Filename overriding the session's.
    pub filename: Option<String>,
    /// The artifact's labels (checked by the caller).
    pub labels: std::collections::BTreeMap<String, String>,
    /// A reference set to the artifact in the same commit.
    pub reference: Option<crate::engine::refs::RefUpdate>,
}

/// A commit in progress: feed the chunk list in order with
/// [`push`](Self::push) (blocking; call it off the async executor), then
/// [`finish`](Self::finish). Holds the session's commit lock; dropping it
/// abandons the commit (the session stays open, pins are released).
pub struct CommitCheck {
    engine: Arc<Engine>,
    _lock: tokio::sync::OwnedMutexGuard<()>,
    session: SessionId,
    rec: UploadRecord,
    meta: Meta,
    presence: Presence,
    builder: Option<SegmentBuilder>,
    pins: Arc<OpPins>,
    /// The most bytes the list may name.
    allowance: u64,
    size: u64,
    count: u64,
    missing: u64,
    first_missing: Vec<Digest>,
    bad_len: Option<String>,
}

impl Engine {
    /// Starts committing a session: takes its commit lock and checks that
    /// it is live and the caller's.
    ///
    /// # Errors
    /// `NotFound` (not the caller's), `SessionEnded`, store failures.
    pub async fn begin_commit(
        self: &Arc<Self>,
        experiment: ExperimentId,
        caller: &Principal,
        id: &SessionId,
    ) -> Result<CommitCheck, EngineError> {
        let lock = self.session_lock(id).lock_owned().await;
        let rec = self.open_session(experiment, caller, id, true).await?;
        let (meta, exp, owner) = (self.meta.clone(), rec.experiment, rec.created_by);
        let presence = blocking(move || Presence::load(&meta, exp, owner)).await?;
        // Held until the artifact commit: the listed chunks may be held only
        // by other artifacts, which could be deleted meanwhile.
        let pins = Arc::new(self.pins.begin());
        Ok(CommitCheck {
            engine: Arc::clone(self),
            _lock: lock,
            session: *id,
            allowance: self.session_allowance(&rec),
            rec,
            meta: self.meta.clone(),
            presence,
            builder: Some(SegmentBuilder::new(Arc::clone(&pins))),
            pins,
            size: 0,
            count: 0,
            missing: 0,
            first_missing: Vec::new(),
            bad_len: None,
        })
    }

    /// Commits a session as an artifact from a whole chunk list (see
    /// [`CommitCheck`] for the streaming form).
    ///
    /// # Errors
    /// As [`CommitCheck::push`] and [`CommitCheck::finish`].
    pub async fn commit_upload(
        self: &Arc<Self>,
        experiment: ExperimentId,
        caller: &Principal,
        id: &SessionId,
        req: CommitRequest,
    ) -> Result<DepositReceipt, EngineError> {
        let mut check = self.begin_commit(experiment, caller, id).await?;
        let chunks = req.chunks;
        let check = blocking(move || {
            for group in chunks.chunks(COMMIT_STEP) {
                check.push(group)?;
            }
            Ok(check)
        })
        .await?;
        check
            .finish(CommitTrailer {
                blake3: req.blake3,
                content_type: req.content_type,
                filename: req.filename,
                labels: Default::default(),
                reference: None,
            })
            .await
    }
}

impl CommitCheck {
    /// Checks the next entries of the list (present for the session's
    /// creator, indexed, right length) and cuts them into segments.
    /// Blocking (RocksDB).
    ///
    /// # Errors
    /// `TooLarge` as soon as the listed bytes pass the session's allowance;
    /// store failures. Missing chunks and wrong lengths are reported by
    /// [`finish`](Self::finish), after the whole list.
    pub fn push(&mut self, group: &[ManifestEntry]) -> Result<(), EngineError> {
        for e in group {
            self.size = self.size.saturating_add(u64::from(e.len));
        }
        if self.size > self.allowance {
            return Err(EngineError::TooLarge {
                limit: self.allowance,
            });
        }
        self.count += group.len() as u64;
        let ids: Vec<Digest> = group.iter().map(|e| e.id).collect();
        // Pinned before they are looked up (see `pins.rs`); the builder's
        // segment of this group releases them.
        self.pins.chunks(&ids);
        let rows = self.meta.upload_chunks(&self.session, &ids)?;
        let locs = self.meta.chunks(&ids)?;
        for ((e, row), loc) in group.iter().zip(rows).zip(locs) {
            // A copy marked bad counts as missing, so the client re-sends it.
            let loc = loc.filter(|l| l.usable());
            let present = loc.is_some() && (row.is_some() || self.presence.readable(&e.id)?);
            match loc {
                Some(loc) if present => {
                    if loc.raw_len != e.len && self.bad_len.is_none() {
                        self.bad_len = Some(format!(
                            "chunk {} is {} bytes, not {}",
                            e.id, loc.raw_len, e.len
                        ));
                    }
                }
                _ => {
                    self.missing += 1;
                    if self.first_missing.len() < MISSING_NAMED {
                        self.first_missing.push(e.id);
                    }
                }
            }
        }
        // A list already known to fail stores no more segments, and holds
        // no pins (nothing will reference them).
        if self.missing > 0 || self.bad_len.is_some() {
            self.pins.release_loose();
        } else {
            let builder = self
                .builder
                .as_mut()
                .ok_or_else(|| EngineError::Internal("commit state lost".into()))?;
            for e in group {
                builder.push(&self.meta, *e)?;
            }
        }
        Ok(())
    }

    /// Ends the list: every entry must have been present (else
    /// `ChunksMissing`) with its listed length (else `ChunkMismatch`); the
    /// content is read back and hashed, and a BLAKE3 other than the claim is
    /// `DigestMismatch` with nothing recorded. On success the session ends
    /// in the artifact's commit batch.
    ///
    /// # Errors
    /// As above, plus `SessionEnded` and store failures.
    pub async fn finish(mut self, trailer: CommitTrailer) -> Result<DepositReceipt, EngineError> {
        if self.missing > 0 {
            return Err(EngineError::ChunksMissing {
                first: std::mem::take(&mut self.first_missing),
                total: self.missing,
            });
        }
        if let Some(why) = self.bad_len.take() {
            return Err(EngineError::ChunkMismatch(why));
        }
        let builder = self
            .builder
            .take()
            .ok_or_else(|| EngineError::Internal("commit state lost".into()))?;
        let (meta, sid) = (self.meta.clone(), self.session);
        let (segments, global) = blocking(move || {
            let segments = builder.finish(&meta)?;
            let mut global = DedupFigures::default();
            meta.scan_upload_chunks(&sid, None, |_, row| {
                if row.new_global {
                    global.new_chunks += 1;
                    global.new_raw_bytes += u64::from(row.raw_len);
                    global.new_stored_bytes += u64::from(row.stored_len);
                }
                true
            })?;
            Ok((segments, global))
        })
        .await?;
        let engine = Arc::clone(&self.engine);
        let (size, count) = (self.size, self.count);
        let digests = engine.digest_segments(&segments).await?;
        if digests.bytes != size {
            return Err(EngineError::inconsistent(format!(
                "read back {} bytes, expected {size}",
                digests.bytes
            )));
        }
        if digests.blake3 != trailer.blake3 {
            return Err(EngineError::DigestMismatch {
                claimed: trailer.blake3,
                actual: digests.blake3,
            });
        }
        let rec = self.rec.clone();
        let manifest = Manifest {
            chunker: FASTCDC_2020.to_string(),
            params: rec.chunker,
            size,
            chunks: count,
            blake3: digests.blake3,
            sha256: digests.sha256,
            segments,
        };
        let manifest_id = Digest::of(&encode(&manifest)?);
        self.pins.sealed(manifest_id);
        write_manifest_object(&engine, &manifest_id, &manifest).await?;
        // Lifetimes count whole seconds, as expiries always have.
        let expires_at = rec
            .artifact_ttl_s
            .map(|s| Timestamp::now().whole_secs().plus(Duration::from_secs(s)));
        let prepared = PreparedContent {
            manifest_id,
            manifest,
            figures: DedupFigures {
                logical_bytes: size,
                chunks: count,
                ..global
            },
            pins: Some(Arc::clone(&self.pins)),
            staged: None,
        };
        let deposit = DepositRequest {
            experiment: rec.experiment,
            created_by: rec.created_by,
            content_type: trailer.content_type.unwrap_or(rec.content_type),
            filename: trailer.filename.or(rec.filename),
            expires_at,
            labels: trailer.labels,
            reference: trailer.reference,
        };
        let id = self.session;
        // The commit lock (in `self`) is held until the artifact is recorded.
        let receipt = engine
            .commit_prepared(prepared, deposit, Some(SessionEnding { id }))
            .await;
        drop(self);
        receipt
    }
}
