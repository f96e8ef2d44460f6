//! Healing at once: a verified read that *proves* a stored copy bad marks it
//! bad in the chunk index right away, without waiting for the background
//! scrubber to reach its pack.
//!
//! Proof is a hash mismatch or an undecodable chunk, a pack object that is
//! missing while the index still names it, or a pack that ends before the
//! copy does. Every verified read path reports here: fetches (`read.rs`)
//! and upload-commit readback (`readback.rs`) through [`read_checked`],
//! fsck and the scrubber (both through `packcheck.rs`). Marking follows the scrubber's rule
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

use super::scrub::ScrubReport;
use super::{Engine, EngineError};
use crate::blobs::keys;
use crate::hash::Digest;
use crate::ids::PackId;
use crate::meta::records::ChunkLocation;
use crate::pack::PackError;
use crate::pack::reader::{CacheUse, PackReader, Span, Verified};

impl Engine {
    /// A verified read proved the copy of `id` at `loc` bad (`reason` says
    /// how): mark it at once. Marking failures are logged, not returned —
    /// the read fails with its own error either way.
    pub(crate) async fn condemn(self: &Arc<Self>, id: Digest, loc: ChunkLocation, reason: &str) {
        match self.mark_chunk_bad(id, loc).await {
            Ok(marked) => tracing::error!(
                chunk = %id, pack = %loc.pack, offset = loc.offset, %reason, marked_bad = marked,
                "verified read proved a stored copy bad; the next upload of this content heals it"
            ),
            Err(e) => tracing::warn!(
                chunk = %id, pack = %loc.pack, %reason, error = %e,
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
        pack: PackId,
        chunks: &[(Digest, ChunkLocation)],
    ) {
        let size = match PackReader::new(&self.blobs).size(pack).await {
            Ok(n) => Some(n),
            Err(PackError::Missing) => None,
            Err(e) => {
                tracing::warn!(pack = %pack, error = %e, "pack size unknown; left to the scrubber");
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
    fn check_pack_in_background(self: &Arc<Self>, pack: PackId) {
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
                    pack = %pack, corrupt = r.corrupt_chunks, marked_bad = r.marked_bad,
                    "pack checked after a failed read"
                ),
                Err(e) => {
                    tracing::warn!(pack = %pack, error = %e, "pack check after a failed read failed")
                }
            }
        });
    }

    /// The scrubber's check of one recorded pack, now: marks every corrupt
    /// live copy bad. A pack no longer recorded (GC deleted it) is skipped.
    pub(crate) async fn check_pack_now(
        self: &Arc<Self>,
        pack: PackId,
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

/// Reads `span` verified through the pack reader and turns what a failure
/// proves into marks: a copy that fails its hash or decode is condemned, and
/// so are the copies a truncated pack cannot hold. A missing pack is left to
/// the caller (it may have been compacted since the read was planned).
pub(crate) async fn read_checked<T>(
    engine: &Arc<Engine>,
    span: &Span<T>,
    cache: CacheUse,
) -> Result<Verified, PackError> {
    let reader = PackReader::new(&engine.blobs);
    let err = match reader.read_verified(span, cache).await {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let copies = || {
        span.members
            .iter()
            .map(|(e, _)| (e.id, ChunkLocation::in_pack(span.pack, e)))
    };
    if let Some(bad) = err.bad_chunk()
        && let Some((id, loc)) = copies().find(|(id, _)| *id == bad)
    {
        let why = format!("{err} (pack {})", keys::pack(span.pack));
        engine.condemn(id, loc, &why).await;
    } else if matches!(err, PackError::Truncated { .. }) {
        let all: Vec<(Digest, ChunkLocation)> = copies().collect();
        engine.condemn_short_pack(span.pack, &all).await;
    }
    Err(err)
}
