//! Whole-content digests of a segment list, computed by reading every chunk
//! back from its pack through the verified decoder — used by upload commits,
//! whose content the store never saw as one stream.
//!
//! Invariant 6: each chunk is decoded with `pack::decode_chunk`, which checks
//! its BLAKE3 against its id, before a byte of it is hashed. Invariant 8: one
//! segment's plan and at most [`READ_AHEAD`] batches of [`BATCH_BYTES`] are in
//! memory at a time, whatever the artifact size.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use sha2::{Digest as _, Sha256};

use super::heal::{decode_span, is_short_read};
use super::{Engine, EngineError, blocking};
use crate::blobs::{BlobError, keys};
use crate::hash::Digest;
use crate::meta::Meta;
use crate::meta::records::{ChunkLocation, ManifestEntry, SegmentRef};

/// Adjacent chunks of one pack are fetched with one ranged read up to this size.
const BATCH_BYTES: u64 = 8 << 20;
/// Batches fetched ahead of the hasher.
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

/// Chunks read together: consecutive in the content, adjacent in one pack.
struct Batch {
    pack: u128,
    offset: u64,
    len: u64,
    chunks: Vec<(ManifestEntry, ChunkLocation)>,
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
fn plan(meta: &Meta, seg_id: &Digest) -> Result<Vec<Batch>, EngineError> {
    let segment = meta
        .segment(seg_id)?
        .ok_or_else(|| EngineError::Integrity(format!("segment {seg_id} missing")))?;
    let ids: Vec<Digest> = segment.entries.iter().map(|e| e.id).collect();
    let locs = meta.chunks(&ids)?;
    let mut batches: Vec<Batch> = Vec::new();
    for (e, loc) in segment.entries.into_iter().zip(locs) {
        let loc =
            loc.ok_or_else(|| EngineError::Integrity(format!("chunk {} not indexed", e.id)))?;
        if loc.raw_len != e.len {
            return Err(EngineError::Integrity(format!(
                "chunk {} is {} bytes in its pack, {} in the manifest",
                e.id, loc.raw_len, e.len
            )));
        }
        match batches.last_mut() {
            Some(b)
                if b.pack == loc.pack
                    && b.offset + b.len == loc.offset
                    && b.len + u64::from(loc.stored_len) <= BATCH_BYTES =>
            {
                b.len += u64::from(loc.stored_len);
                b.chunks.push((e, loc));
            }
            _ => batches.push(Batch {
                pack: loc.pack,
                offset: loc.offset,
                len: u64::from(loc.stored_len),
                chunks: vec![(e, loc)],
            }),
        }
    }
    Ok(batches)
}

/// One ranged read, then decode + BLAKE3 check of every chunk in it. A copy
/// proved bad (hash, decode, missing or truncated pack) is marked bad at
/// once (`heal.rs`), so the client's retry of the session heals it.
async fn fetch(engine: &Arc<Engine>, b: Batch) -> Result<Vec<Bytes>, EngineError> {
    let key = keys::pack(ulid::Ulid(b.pack));
    let chunks: Vec<(Digest, ChunkLocation)> = b.chunks.iter().map(|(e, l)| (e.id, *l)).collect();
    let bytes = match engine.blobs.read_range(&key, b.offset, b.len).await {
        Ok(bytes) => bytes,
        Err(BlobError::NotFound(_)) => {
            // Compacted away since the plan: read from the new place.
            let ids = chunks.iter().map(|(id, _)| *id).collect();
            return super::read::read_relocated(engine, b.pack, ids).await;
        }
        Err(e) if is_short_read(&e) => {
            engine.condemn_short_pack(b.pack, &chunks).await;
            return Err(EngineError::Integrity(format!("pack {key} truncated")));
        }
        Err(e) => return Err(e.into()),
    };
    decode_span(engine, b.pack, b.offset, bytes, chunks).await
}
