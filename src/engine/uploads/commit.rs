//! Committing an upload session: every listed chunk must be present for
//! the session's creator and have the listed length; segments are built
//! like ingest builds them; the whole content is read back through the
//! verified decoder and hashed; only a matching BLAKE3 lets the artifact be
//! recorded, through the same `Engine::commit_prepared` as every deposit,
//! in the batch that also ends the session.
//!
//! Invariants: 3 (the artifact is recorded last, its chunks indexed and its
//! refs written first), 4 (presence is decided for the creator, never from
//! the global index alone), 6 (content is verified chunk by chunk and as a
//! whole before it becomes visible), 8 (one segment and a few read batches
//! in memory; the chunk list itself is the request's).

use std::sync::Arc;

use super::{COMMIT_STEP, CommitRequest, MISSING_NAMED};
use crate::auth::Principal;
use crate::chunking::FASTCDC_2020;
use crate::engine::artifacts::{Presence, SessionEnding, now_unix_s};
use crate::engine::ingest::{
    DepositReceipt, DepositRequest, PreparedContent, SegmentBuilder, write_manifest_object,
};
use crate::engine::pins::OpPins;
use crate::engine::{Engine, EngineError, blocking};
use crate::hash::Digest;
use crate::meta::records::{DedupFigures, Manifest, ManifestEntry, SegmentRef};
use crate::meta::{Meta, encode};

impl Engine {
    /// Commits a session as an artifact: every listed chunk must be present
    /// for the creator (else `ChunksMissing`) with the listed length (else
    /// `ChunkMismatch`); the content is read back and hashed, and a BLAKE3
    /// other than the claim is `DigestMismatch` with nothing recorded. On
    /// success the session ends in the artifact's commit batch.
    pub async fn commit_upload(
        self: &Arc<Self>,
        experiment: &str,
        caller: &Principal,
        id: &[u8; 16],
        req: CommitRequest,
    ) -> Result<DepositReceipt, EngineError> {
        let limit = self.cfg.max_artifact_bytes;
        let listed: u64 = req.chunks.iter().map(|e| u64::from(e.len)).sum();
        if listed > limit {
            return Err(EngineError::TooLarge { limit });
        }
        let lock = self.session_lock(id);
        let _commit = lock.lock().await;
        let rec = self.open_session(experiment, caller, id, true).await?;
        let owner = Principal::parse(&rec.created_by)
            .ok_or_else(|| EngineError::Internal("session has an invalid creator".into()))?;
        let (meta, sid, exp) = (self.meta.clone(), *id, rec.experiment.clone());
        let chunks = req.chunks;
        // Held until the artifact commit: the listed chunks may be held only
        // by other artifacts, which could be deleted meanwhile.
        let pins = Arc::new(self.pins.begin());
        let op = Arc::clone(&pins);
        let (segments, size, count, global) =
            blocking(move || check_and_segment(&meta, &sid, &exp, owner, &chunks, op)).await?;
        let digests = self.digest_segments(&segments).await?;
        if digests.bytes != size {
            return Err(EngineError::Integrity(format!(
                "read back {} bytes, expected {size}",
                digests.bytes
            )));
        }
        if digests.blake3 != req.blake3 {
            return Err(EngineError::DigestMismatch {
                claimed: req.blake3,
                actual: digests.blake3,
            });
        }
        let manifest = Manifest {
            chunker: FASTCDC_2020.to_string(),
            params: rec.chunker,
            size,
            chunks: count,
            blake3: digests.blake3,
            sha256: digests.sha256,
            segments,
        };
        let manifest_id = Digest::of(&encode(&manifest));
        pins.sealed(manifest_id);
        write_manifest_object(self, &manifest_id, &manifest).await?;
        let expires_at = rec
            .artifact_ttl_s
            .map(|s| now_unix_s().saturating_add(i64::try_from(s).unwrap_or(i64::MAX)));
        let prepared = PreparedContent {
            manifest_id,
            manifest,
            figures: DedupFigures {
                logical_bytes: size,
                chunks: count,
                ..global
            },
            pins: Some(pins),
        };
        let deposit = DepositRequest {
            experiment: rec.experiment.clone(),
            created_by: rec.created_by.clone(),
            content_type: req.content_type.unwrap_or(rec.content_type),
            filename: req.filename.or(rec.filename),
            expires_at,
        };
        self.commit_prepared(prepared, deposit, Some(SessionEnding { id: *id }))
            .await
    }
}

/// Checks every commit entry (present for `owner`, indexed, right length)
/// and cuts the list into segments. Returns (segments, size, chunk count,
/// store-wide figures of what this session stored first).
fn check_and_segment(
    meta: &Meta,
    session: &[u8; 16],
    experiment: &str,
    owner: Principal,
    chunks: &[ManifestEntry],
    pins: Arc<OpPins>,
) -> Result<(Vec<SegmentRef>, u64, u64, DedupFigures), EngineError> {
    let mut presence = Presence::load(meta, experiment, owner)?;
    let mut builder = SegmentBuilder::new(Arc::clone(&pins));
    let (mut size, mut missing, mut first_missing) = (0u64, 0u64, Vec::new());
    let mut bad_len: Option<String> = None;
    for group in chunks.chunks(COMMIT_STEP) {
        let ids: Vec<Digest> = group.iter().map(|e| e.id).collect();
        // Pinned before they are looked up (see `pins.rs`); the builder's
        // segment of this group releases them.
        pins.chunks(&ids);
        let rows = meta.upload_chunks(session, &ids)?;
        let locs = meta.chunks(&ids)?;
        for ((e, row), loc) in group.iter().zip(rows).zip(locs) {
            // A copy marked bad counts as missing, so the client re-sends it.
            let loc = loc.filter(|l| l.usable());
            let present = loc.is_some() && (row.is_some() || presence.readable(&e.id)?);
            match loc {
                Some(loc) if present => {
                    if loc.raw_len != e.len && bad_len.is_none() {
                        bad_len = Some(format!(
                            "chunk {} is {} bytes, not {}",
                            e.id, loc.raw_len, e.len
                        ));
                    }
                }
                _ => {
                    missing += 1;
                    if first_missing.len() < MISSING_NAMED {
                        first_missing.push(e.id);
                    }
                }
            }
            size += u64::from(e.len);
            builder.push(meta, *e)?;
        }
    }
    if missing > 0 {
        return Err(EngineError::ChunksMissing {
            first: first_missing,
            total: missing,
        });
    }
    if let Some(why) = bad_len {
        return Err(EngineError::ChunkMismatch(why));
    }
    let segments = builder.finish(meta)?;
    let mut global = DedupFigures::default();
    meta.scan_upload_chunks(session, None, |_, row| {
        if row.new_global {
            global.new_chunks += 1;
            global.new_raw_bytes += u64::from(row.raw_len);
            global.new_stored_bytes += u64::from(row.stored_len);
        }
        true
    })?;
    Ok((segments, size, chunks.len() as u64, global))
}
