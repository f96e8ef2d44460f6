//! Whole-content digests of a segment list, computed by reading every chunk
//! back from its pack through the verified decoder — used by upload commits,
//! whose content the store never saw as one stream.
//!
//! Invariant 6: each chunk is read through the pack reader, which checks its
//! BLAKE3 against its id, before a byte of it is hashed. Invariant 8: one
//! segment's plan and at most [`READ_AHEAD`] spans of the reader's window
//! are in memory at a time, whatever the artifact size. The chunk cache is
//! bypassed: a commit's readback proves what the packs hold.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use sha2::{Digest as _, Sha256};

use super::heal::read_checked;
use super::{Engine, EngineError, Record, blocking};
use crate::hash::Digest;
use crate::meta::Meta;
use crate::meta::records::SegmentRef;
use crate::pack::PackError;
use crate::pack::reader::{CacheUse, Gaps, Span, coalesce};

/// Spans fetched ahead of the hasher.
const READ_AHEAD: usize = 3;

/// BLAKE3 and SHA-256 of a whole content, and its length.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ContentDigests {
    /// BLAKE3.
    pub blake3: Digest,
    /// SHA-256.
    pub sha256: [u8; 32],
    /// Bytes hashed.
    pub bytes: u64,
}

type Hashers = Box<(blake3::Hasher, Sha256, u64)>;

impl Engine {
    /// Reads the content of `segments` back, verified, and hashes it.
    pub(crate) async fn digest_segments(
        self: &Arc<Self>,
        segments: &[SegmentRef],
    ) -> Result<ContentDigests, EngineError> {
        let mut hashers: Option<Hashers> =
            Some(Box::new((blake3::Hasher::new(), Sha256::new(), 0)));
        for seg in segments {
            let (meta, sid) = (self.meta.clone(), seg.id);
            let batches = blocking(move || plan(&meta, &sid)).await?;
            let mut parts = stream::iter(batches)
                .map(|b| fetch(self, b))
                .buffered(READ_AHEAD);
            while let Some(chunks) = parts.next().await {
                let chunks = chunks?;
                let Some(mut h) = hashers.take() else {
                    return Err(EngineError::Internal("hasher state lost".into()));
                };
                h = blocking(move || {
                    let (b3, sha, n) = &mut *h;
                    std::thread::scope(|s| {
                        s.spawn(|| {
                            for c in &chunks {
                                sha.update(c);
                            }
                        });
                        for c in &chunks {
                            b3.update(c);
                            *n += c.len() as u64;
                        }
                    });
                    Ok(h)
                })
                .await?;
                hashers = Some(h);
            }
        }
        let Some(h) = hashers else {
            return Err(EngineError::Internal("hasher state lost".into()));
        };
        let (b3, sha, bytes) = *h;
        Ok(ContentDigests {
            blake3: b3.finalize().into(),
            sha256: sha.finalize().into(),
            bytes,
        })
    }
}

/// Locates every chunk of a segment and groups them into ranged reads.
fn plan(meta: &Meta, seg_id: &Digest) -> Result<Vec<Span<()>>, EngineError> {
    let segment = meta
        .segment(seg_id)?
        .ok_or_else(|| EngineError::missing(Record::Segment(*seg_id)))?;
    let ids: Vec<Digest> = segment.entries.iter().map(|e| e.id).collect();
    let locs = meta.chunks(&ids)?;
    let mut located = Vec::with_capacity(ids.len());
    for (e, loc) in segment.entries.into_iter().zip(locs) {
        let loc = loc.ok_or_else(|| EngineError::missing(Record::ChunkIndex(e.id)))?;
        if loc.raw_len != e.len {
            return Err(EngineError::inconsistent(format!(
                "chunk {} is {} bytes in its pack, {} in the manifest",
                e.id, loc.raw_len, e.len
            )));
        }
        located.push((loc.pack, loc.entry(e.id), ()));
    }
    Ok(coalesce(located, Gaps::Adjacent))
}

/// One span, verified. A copy proved bad (hash, decode, missing or
/// truncated pack) is marked bad at once (`heal.rs`), so the client's retry
/// of the session heals it.
async fn fetch(engine: &Arc<Engine>, span: Span<()>) -> Result<Vec<Bytes>, EngineError> {
    match read_checked(engine, &span, CacheUse::Bypass).await {
        Ok(v) => Ok(v.chunks),
        Err(PackError::Missing) => {
            // Compacted away since the plan: read from the new place.
            let ids = span.members.iter().map(|(e, _)| e.id).collect();
            super::read::read_relocated(engine, span.pack, ids).await
        }
        Err(e) => Err(EngineError::from_pack(span.pack, e)),
    }
}
