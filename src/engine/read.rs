//! Verified reads: manifest → chunk locations → coalesced range reads of
//! packs → decompress → BLAKE3 check of every chunk → stream out.
//!
//! Invariant 6: a chunk's bytes are hash-checked before they are sent; a
//! mismatch or a missing chunk ends the stream with an error and a log line,
//! never with wrong bytes. Read-ahead is bounded (a few batches of at most
//! [`BATCH_BYTES`]), so memory does not grow with artifact size. Verified
//! chunks are kept in the blob store's bounded chunk cache and served from
//! it on later reads, without a request.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use tokio::sync::mpsc;

use super::access::ReadableArtifact;
use super::heal::{decode_span, is_short_read};
use super::{Engine, EngineError, Stats, blocking};
use crate::blobs::{BlobError, keys};
use crate::hash::Digest;
use crate::meta::records::{ChunkLocation, ManifestEntry};

/// Adjacent chunks of one pack are fetched with one ranged read up to this size.
const BATCH_BYTES: u64 = 8 << 20;
/// Batches fetched ahead of the consumer.
const READ_AHEAD: usize = 3;

/// A stream of verified bytes.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Bytes, EngineError>> + Send>>;

/// Chunks read together: consecutive in the artifact and adjacent in one pack.
struct Batch {
    pack: u128,
    offset: u64,
    len: u64,
    /// (entry, location, trim start, trim end) in raw coordinates of the chunk.
    chunks: Vec<(ManifestEntry, ChunkLocation, usize, usize)>,
}

impl Engine {
    /// Streams bytes `[start, end)` of an artifact the caller may read
    /// (`access.rs`), verified.
    pub fn read_range(
        self: &Arc<Self>,
        artifact: &ReadableArtifact,
        start: u64,
        end: u64,
    ) -> ChunkStream {
        let record = artifact.record();
        let end = end.min(record.size);
        if start >= end {
            return Box::pin(stream::empty());
        }
        let (tx, rx) = mpsc::channel::<Result<Vec<Bytes>, EngineError>>(2);
        let engine = Arc::clone(self);
        let manifest = record.manifest;
        tokio::spawn(async move {
            if let Err(e) = produce(&engine, manifest, start, end, &tx).await {
                if let EngineError::Integrity(detail) = &e {
                    Stats::add(&engine.stats.integrity_failures, 1);
                    tracing::error!(manifest = %manifest.short(), %detail, "verified read failed");
                } else {
                    tracing::error!(manifest = %manifest.short(), error = %e, "read failed");
                }
                let _ = tx.send(Err(e)).await;
            }
        });
        let s = stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .flat_map(|item| match item {
            Ok(parts) => stream::iter(parts.into_iter().map(Ok).collect::<Vec<_>>()),
            Err(e) => stream::iter(vec![Err(e)]),
        });
        Box::pin(s)
    }
}

async fn produce(
    engine: &Arc<Engine>,
    manifest_id: Digest,
    start: u64,
    end: u64,
    tx: &mpsc::Sender<Result<Vec<Bytes>, EngineError>>,
) -> Result<(), EngineError> {
    let meta = engine.meta.clone();
    let manifest = blocking(move || {
        meta.manifest(&manifest_id)?
            .ok_or_else(|| EngineError::Integrity(format!("manifest {manifest_id} missing")))
    })
    .await?;
    let mut pos = 0u64;
    for seg in manifest.segments {
        let seg_end = pos + seg.bytes;
        if seg_end <= start {
            pos = seg_end;
            continue;
        }
        if pos >= end {
            break;
        }
        let meta = engine.meta.clone();
        let seg_start = pos;
        let batches = blocking(move || plan_segment(&meta, &seg.id, seg_start, start, end)).await?;
        pos = seg_end;
        let mut results = stream::iter(batches)
            .map(|b| fetch_batch(engine, b))
            .buffered(READ_AHEAD);
        while let Some(parts) = results.next().await {
            let parts = parts?;
            let n: u64 = parts.iter().map(|p| p.len() as u64).sum();
            if tx.send(Ok(parts)).await.is_err() {
                return Ok(()); // the reader went away
            }
            Stats::add(&engine.stats.bytes_served, n);
        }
    }
    Ok(())
}

/// Locates the chunks of one segment that overlap `[start, end)` and groups
/// them into ranged reads.
fn plan_segment(
    meta: &crate::meta::Meta,
    seg_id: &Digest,
    seg_start: u64,
    start: u64,
    end: u64,
) -> Result<Vec<Batch>, EngineError> {
    let segment = meta
        .segment(seg_id)?
        .ok_or_else(|| EngineError::Integrity(format!("segment {seg_id} missing")))?;
    let mut wanted = Vec::new();
    let mut pos = seg_start;
    for e in segment.entries {
        let (c_start, c_end) = (pos, pos + u64::from(e.len));
        pos = c_end;
        if c_end <= start || c_start >= end {
            continue;
        }
        let lo = start.saturating_sub(c_start) as usize;
        let hi = (end.min(c_end) - c_start) as usize;
        wanted.push((e, lo, hi));
    }
    let ids: Vec<Digest> = wanted.iter().map(|(e, _, _)| e.id).collect();
    let locs = meta.chunks(&ids)?;
    let mut batches: Vec<Batch> = Vec::new();
    for ((e, lo, hi), loc) in wanted.into_iter().zip(locs) {
        let loc =
            loc.ok_or_else(|| EngineError::Integrity(format!("chunk {} not indexed", e.id)))?;
        match batches.last_mut() {
            Some(b)
                if b.pack == loc.pack
                    && b.offset + b.len == loc.offset
                    && b.len + u64::from(loc.stored_len) <= BATCH_BYTES =>
            {
                b.len += u64::from(loc.stored_len);
                b.chunks.push((e, loc, lo, hi));
            }
            _ => batches.push(Batch {
                pack: loc.pack,
                offset: loc.offset,
                len: u64::from(loc.stored_len),
                chunks: vec![(e, loc, lo, hi)],
            }),
        }
    }
    Ok(batches)
}

/// Reads chunks whose planned pack is gone (GC compacted it after the read
/// looked the chunks up): each is looked up again and read, verified, from
/// where the index names it now. Still the old pack, or no entry at all,
/// means the data is really gone: an integrity error — and copies the index
/// still places in the missing pack are marked bad at once (`heal.rs`).
pub(crate) async fn read_relocated(
    engine: &Arc<Engine>,
    gone: u128,
    ids: Vec<Digest>,
) -> Result<Vec<Bytes>, EngineError> {
    let missing = |pack: u128| {
        EngineError::Integrity(format!("pack {} missing", keys::pack(ulid::Ulid(pack))))
    };
    let meta = engine.meta.clone();
    let lookup = ids.clone();
    let locs = blocking(move || Ok(meta.chunks(&lookup)?)).await?;
    let stranded: Vec<(Digest, ChunkLocation)> = ids
        .iter()
        .zip(&locs)
        .filter_map(|(id, loc)| loc.filter(|l| l.pack == gone).map(|l| (*id, l)))
        .collect();
    if !stranded.is_empty() {
        // The index still names the pack the read found missing.
        engine.condemn_short_pack(gone, &stranded).await;
        return Err(missing(gone));
    }
    let mut out = Vec::with_capacity(ids.len());
    for (id, loc) in ids.into_iter().zip(locs) {
        let loc = loc.ok_or_else(|| missing(gone))?;
        let key = keys::pack(ulid::Ulid(loc.pack));
        let stored = match engine
            .blobs
            .read_range(&key, loc.offset, u64::from(loc.stored_len))
            .await
        {
            Ok(b) => b,
            Err(BlobError::NotFound(_)) => {
                engine.condemn_short_pack(loc.pack, &[(id, loc)]).await;
                return Err(missing(loc.pack));
            }
            Err(e) if is_short_read(&e) => {
                engine.condemn_short_pack(loc.pack, &[(id, loc)]).await;
                return Err(EngineError::Integrity(format!("pack {key} truncated")));
            }
            Err(e) => return Err(e.into()),
        };
        let mut raw = decode_span(engine, loc.pack, loc.offset, stored, vec![(id, loc)]).await?;
        out.append(&mut raw);
    }
    Stats::add(&engine.stats.read_relocations, 1);
    Ok(out)
}

/// Reads one batch with a single ranged read and verifies every chunk.
///
/// Chunks found in the verified-chunk cache are served from it; the ranged
/// read then covers only the span from the first to the last chunk the cache
/// lacks (none at all when every chunk is cached). Chunks read from the pack
/// go into the cache after their BLAKE3 check, never before. A copy proved
/// bad (hash, decode, truncated pack) is marked bad at once (`heal.rs`).
async fn fetch_batch(engine: &Arc<Engine>, b: Batch) -> Result<Vec<Bytes>, EngineError> {
    let key = keys::pack(ulid::Ulid(b.pack));
    let blobs = engine.blobs.clone();
    let cached: Vec<Option<Bytes>> = b
        .chunks
        .iter()
        .map(|(e, ..)| blobs.chunk_cache().get(&e.id))
        .collect();
    let misses = cached.iter().filter(|c| c.is_none()).count() as u64;
    Stats::add(
        &engine.stats.chunk_cache_hits,
        b.chunks.len() as u64 - misses,
    );
    Stats::add(&engine.stats.chunk_cache_misses, misses);
    let wanted: Vec<(Digest, ChunkLocation)> = b
        .chunks
        .iter()
        .zip(&cached)
        .filter(|(_, hit)| hit.is_none())
        .map(|((e, loc, ..), _)| (e.id, *loc))
        .collect();
    let mut fresh = match (wanted.first(), wanted.last()) {
        (Some((_, first)), Some((_, last))) => {
            let start = first.offset;
            let end = last.offset + u64::from(last.stored_len);
            match engine.blobs.read_range(&key, start, end - start).await {
                Ok(bytes) => decode_span(engine, b.pack, start, bytes, wanted).await?,
                Err(BlobError::NotFound(_)) => {
                    // Compacted away since the plan: read from the new place.
                    let ids = b.chunks.iter().map(|(e, ..)| e.id).collect();
                    let raws = read_relocated(engine, b.pack, ids).await?;
                    return Ok(b
                        .chunks
                        .into_iter()
                        .zip(raws)
                        .map(|((_, _, lo, hi), raw)| raw.slice(lo..hi))
                        .collect());
                }
                Err(e) if is_short_read(&e) => {
                    engine.condemn_short_pack(b.pack, &wanted).await;
                    return Err(EngineError::Integrity(format!("pack {key} truncated")));
                }
                Err(e) => return Err(e.into()),
            }
        }
        _ => Vec::new(),
    }
    .into_iter();
    let mut out = Vec::with_capacity(b.chunks.len());
    for ((e, _, lo, hi), hit) in b.chunks.into_iter().zip(cached) {
        let raw = match hit {
            Some(raw) => raw,
            None => {
                let raw = fresh
                    .next()
                    .ok_or_else(|| EngineError::Internal("decoded chunks lost".into()))?;
                blobs.chunk_cache().insert(e.id, &raw);
                raw
            }
        };
        out.push(raw.slice(lo..hi));
    }
    Ok(out)
}
