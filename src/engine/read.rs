//! Verified reads: manifest → chunk locations → coalesced range reads of
//! packs → decompress → BLAKE3 check of every chunk → stream out.
//!
//! Invariant 6: a chunk's bytes are hash-checked before they are sent; a
//! mismatch or a missing chunk ends the stream with an error and a log line,
//! never with wrong bytes. Read-ahead is bounded ([`READ_AHEAD`] spans of
//! at most the pack reader's window), so memory does not grow with artifact
//! size. Verified chunks are kept in the blob store's bounded chunk cache
//! and served from it on later reads, without a request (the pack reader's
//! `CacheUse::ReadThrough`).

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use tokio::sync::mpsc;

use super::access::ReadableArtifact;
use super::audit::{AuditEvent, AuditKind};
use super::heal::read_checked;
use super::{Engine, EngineError, Record, Stats, blocking};
use crate::hash::Digest;
use crate::ids::PackId;
use crate::meta::records::ChunkLocation;
use crate::pack::PackError;
use crate::pack::reader::{CacheUse, Gaps, Span, coalesce};

/// Spans fetched ahead of the consumer.
const READ_AHEAD: usize = 3;

/// A stream of verified bytes.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Bytes, EngineError>> + Send>>;

/// What a read keeps per chunk: the bytes of the chunk it wants, in raw
/// coordinates `[lo, hi)`.
type Trim = (usize, usize);

impl Engine {
    /// Streams bytes `[start, end)` of an artifact the caller may read
    /// (`access.rs`), verified. Each call is one `read` event in the audit
    /// log (buffered: no I/O on this path).
    ///
    /// # Errors
    /// The stream ends with an error after the bytes verified so far:
    /// [`EngineError::Integrity`] when stored data fails verification or is
    /// gone (the copy is marked bad, see `heal.rs`), else the blob or
    /// metadata store's failure.
    pub fn read_range(
        self: &Arc<Self>,
        artifact: &ReadableArtifact,
        start: u64,
        end: u64,
    ) -> ChunkStream {
        let record = artifact.record();
        let end = end.min(record.size);
        let mut ev = AuditEvent::new(
            AuditKind::Read,
            artifact.reader().as_str(),
            artifact.experiment().as_str(),
        )
        .artifact(artifact.id(), &record.blake3);
        ev.range = Some([start.min(end), end]);
        self.audit(ev);
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
            .ok_or_else(|| EngineError::missing(Record::Manifest(manifest_id)))
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
        let spans = blocking(move || plan_segment(&meta, &seg.id, seg_start, start, end)).await?;
        pos = seg_end;
        let mut results = stream::iter(spans)
            .map(|s| fetch_span(engine, s))
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
/// them into ranged reads (chunks adjacent in one pack, in artifact order).
fn plan_segment(
    meta: &crate::meta::Meta,
    seg_id: &Digest,
    seg_start: u64,
    start: u64,
    end: u64,
) -> Result<Vec<Span<Trim>>, EngineError> {
    let segment = meta
        .segment(seg_id)?
        .ok_or_else(|| EngineError::missing(Record::Segment(*seg_id)))?;
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
        wanted.push((e.id, (lo, hi)));
    }
    let ids: Vec<Digest> = wanted.iter().map(|(id, _)| *id).collect();
    let locs = meta.chunks(&ids)?;
    let located = wanted
        .into_iter()
        .zip(locs)
        .map(|((id, trim), loc)| {
            let loc = loc.ok_or_else(|| EngineError::missing(Record::ChunkIndex(id)))?;
            Ok((loc.pack, loc.entry(id), trim))
        })
        .collect::<Result<Vec<_>, EngineError>>()?;
    Ok(coalesce(located, Gaps::Adjacent))
}

/// Reads chunks whose planned pack is gone (GC compacted it after the read
/// looked the chunks up): each is looked up again and read, verified, from
/// where the index names it now. Still the old pack, or no entry at all,
/// means the data is really gone: an integrity error — and copies the index
/// still places in the missing pack are marked bad at once (`heal.rs`).
pub(crate) async fn read_relocated(
    engine: &Arc<Engine>,
    gone: PackId,
    ids: Vec<Digest>,
) -> Result<Vec<Bytes>, EngineError> {
    let missing = |pack: PackId| EngineError::from_pack(pack, PackError::Missing);
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
        let span = Span {
            pack: loc.pack,
            start: loc.offset,
            end: loc.offset + u64::from(loc.stored_len),
            members: vec![(loc.entry(id), ())],
        };
        match read_checked(engine, &span, CacheUse::Bypass).await {
            Ok(mut v) => out.append(&mut v.chunks),
            Err(PackError::Missing) => {
                engine.condemn_short_pack(loc.pack, &[(id, loc)]).await;
                return Err(missing(loc.pack));
            }
            Err(e) => return Err(EngineError::from_pack(loc.pack, e)),
        }
    }
    Stats::add(&engine.stats.read_relocations, 1);
    Ok(out)
}

/// Reads the chunks of one span, verified, through the chunk cache, and
/// trims each to the bytes wanted. A copy proved bad (hash, decode,
/// truncated pack) is marked bad at once (`heal.rs`); a pack gone since the
/// plan is read from where its chunks are now.
async fn fetch_span(engine: &Arc<Engine>, span: Span<Trim>) -> Result<Vec<Bytes>, EngineError> {
    let raws = match read_checked(engine, &span, CacheUse::ReadThrough).await {
        Ok(v) => {
            Stats::add(&engine.stats.chunk_cache_hits, v.cache_hits);
            Stats::add(&engine.stats.chunk_cache_misses, v.cache_misses);
            v.chunks
        }
        Err(PackError::Missing) => {
            // Compacted away since the plan: read from the new place.
            let ids = span.members.iter().map(|(e, _)| e.id).collect();
            read_relocated(engine, span.pack, ids).await?
        }
        Err(e) => return Err(EngineError::from_pack(span.pack, e)),
    };
    Ok(span
        .members
        .into_iter()
        .zip(raws)
        .map(|((_, (lo, hi)), raw)| raw.slice(lo..hi))
        .collect())
}
