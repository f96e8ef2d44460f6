//! Healing at once: a verified read that *proves* a stored copy bad marks it
//! bad in the chunk index right away, without waiting for the background
//! scrubber to reach its pack.
//!
//! Proof is a hash mismatch or an undecodable chunk, a pack object that is
//! missing while the index still names it, or a pack that ends before the
//! copy does. Every verified read path reports here: fetches (`read.rs`),
//! upload-commit readback (`readback.rs`), fsck and the scrubber (both
//! through `packcheck.rs`). Marking follows the scrubber's rule
//! ([`Engine::mark_chunk_bad`]): only if the index entry still names the
//! copy that failed, under the index lock, so a copy relocated by GC or
//! already healed by a new upload is never touched.
//!
//! Once marked, every write path treats the chunk as absent (see
//! `scrub.rs`): the next deposit or upload of those bytes stores a fresh
//! copy, its indexing replaces the entry, and every artifact holding the
//! chunk reads correctly again (invariant 6 meanwhile: the read fails, it
//! never returns wrong bytes).
//!
//! A missing or truncated pack usually holds more bad copies than the read
//! touched: the whole pack is then checked in the background (the
//! scrubber's pack check, at most one per pack at a time), which marks the
//! rest.

use std::sync::Arc;

use ulid::Ulid;

use super::scrub::ScrubReport;
use super::{Engine, EngineError};
use crate::blobs::{BlobError, keys};
use crate::hash::Digest;
use crate::meta::records::ChunkLocation;

/// Whether a ranged read failed because the object is shorter than the
/// range: the fs backend says "range not satisfied", others end the body
/// early. [`Engine::condemn_short_pack`] then checks the object's real size
/// before marking anything, so a false positive here costs one `stat`.
pub(crate) fn is_short_read(e: &BlobError) -> bool {
    match e {
        BlobError::Io(io) => io.kind() == std::io::ErrorKind::UnexpectedEof,
        BlobError::Backend(b) => b.kind() == opendal::ErrorKind::RangeNotSatisfied,
        _ => false,
    }
}

impl Engine {
    /// A verified read proved the copy of `id` at `loc` bad (`reason` says
    /// how): mark it at once. Marking failures are logged, not returned —
    /// the read fails with its own error either way.
    pub(crate) async fn condemn(self: &Arc<Self>, id: Digest, loc: ChunkLocation, reason: &str) {
        match self.mark_chunk_bad(id, loc).await {
            Ok(marked) => tracing::error!(
                chunk = %id, pack = %Ulid(loc.pack), offset = loc.offset, %reason, marked_bad = marked,
                "verified read proved a stored copy bad; the next upload of this content heals it"
            ),
            Err(e) => tracing::warn!(
                chunk = %id, pack = %Ulid(loc.pack), %reason, error = %e,
                "a copy proved bad could not be marked; the scrubber will"
            ),
        }
    }

    /// A read of `pack` found the object missing or shorter than the copies
    /// it needed. Marks the copies of `chunks` that the object cannot hold
    /// (all of them if it is gone), then checks the whole pack in the
    /// background to mark the others.
    pub(crate) async fn condemn_short_pack(
        self: &Arc<Self>,
        pack: u128,
        chunks: &[(Digest, ChunkLocation)],
    ) {
        let key = keys::pack(Ulid(pack));
        let size = match self.blobs.size(&key).await {
            Ok(n) => Some(n),
            Err(BlobError::NotFound(_)) => None,
            Err(e) => {
                tracing::warn!(pack = %Ulid(pack), error = %e, "pack size unknown; left to the scrubber");
                return;
            }
        };
        let mut proved = false;
        for (id, loc) in chunks {
            let end = loc.offset + u64::from(loc.stored_len);
            match size {
                None => self.condemn(*id, *loc, "pack object missing").await,
                Some(n) if end > n => self.condemn(*id, *loc, "pack object truncated").await,
                Some(_) => continue,
            }
            proved = true;
        }
        // A short answer from an object of the full size was a transient
        // fault of the read, not of the pack: nothing to check (a background
        // whole-pack read would only add load, and a second transient fault
        // there must not mark healthy copies).
        if proved {
            self.check_pack_in_background(pack);
        }
    }

    /// Runs the scrubber's whole-pack check of `pack` on a task of its own,
    /// unless one is already running for it.
    fn check_pack_in_background(self: &Arc<Self>, pack: u128) {
        {
            let mut running = self.pack_checks.lock().unwrap_or_else(|e| e.into_inner());
            if !running.insert(pack) {
                return;
            }
        }
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            let outcome = engine.check_pack_now(pack).await;
            engine
                .pack_checks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&pack);
            match outcome {
                Ok(r) => tracing::info!(
                    pack = %Ulid(pack), corrupt = r.corrupt_chunks, marked_bad = r.marked_bad,
                    "pack checked after a failed read"
                ),
                Err(e) => {
                    tracing::warn!(pack = %Ulid(pack), error = %e, "pack check after a failed read failed")
                }
            }
        });
    }

    /// The scrubber's check of one recorded pack, now: marks every corrupt
    /// live copy bad. A pack no longer recorded (GC deleted it) is skipped.
    pub(crate) async fn check_pack_now(
        self: &Arc<Self>,
        pack: u128,
    ) -> Result<ScrubReport, EngineError> {
        let meta = self.meta.clone();
        let recorded = super::blocking(move || Ok(meta.pack(pack)?)).await?;
        let mut report = ScrubReport::default();
        if let Some(rec) = recorded {
            self.scrub_pack(pack, rec.bytes, &mut report).await?;
        }
        Ok(report)
    }
}

/// Decodes and BLAKE3-checks the copies `chunks`, whose stored bytes lie in
/// `bytes` (read from offset `base` of `pack`), on a blocking thread. The
/// first copy that fails is condemned and its error returned; a read that
/// came back shorter than asked means a truncated pack.
pub(crate) async fn decode_span(
    engine: &Arc<Engine>,
    pack: u128,
    base: u64,
    bytes: bytes::Bytes,
    chunks: Vec<(Digest, ChunkLocation)>,
) -> Result<Vec<bytes::Bytes>, EngineError> {
    let key = keys::pack(Ulid(pack));
    let all = chunks.clone();
    let outcome = super::blocking(move || {
        let mut out = Vec::with_capacity(chunks.len());
        for (id, loc) in chunks {
            let stored = loc
                .offset
                .checked_sub(base)
                .and_then(|rel| usize::try_from(rel).ok())
                .and_then(|rel| bytes.get(rel..rel + loc.stored_len as usize));
            let Some(stored) = stored else {
                return Ok(Err(None));
            };
            let stored = bytes.slice_ref(stored);
            match crate::pack::decode_chunk(&id, loc.codec, loc.raw_len, stored) {
                Ok(raw) => out.push(raw),
                Err(err) => return Ok(Err(Some((id, loc, format!("{err} (pack {key})"))))),
            }
        }
        Ok(Ok(out))
    })
    .await?;
    match outcome {
        Ok(out) => Ok(out),
        Err(Some((id, loc, why))) => {
            engine.condemn(id, loc, &why).await;
            Err(EngineError::Integrity(why))
        }
        Err(None) => {
            engine.condemn_short_pack(pack, &all).await;
            Err(EngineError::Integrity(format!(
                "pack {} truncated",
                keys::pack(Ulid(pack))
            )))
        }
    }
}
