//! The one pack reader: every read of pack bytes from the blob store goes
//! through here — fetches, upload-commit readback, fsck and the scrubber,
//! GC compaction and sweep, reindex.
//!
//! It owns:
//! - the tail read ([`PackReader::tail`]): one ranged read of the last
//!   [`TAIL_READ_BYTES`] (trailer and, usually, the whole footer), a second
//!   one only for a footer that does not fit;
//! - the window policy ([`coalesce`], [`cover`]): chunks of one pack are
//!   read together while the read stays within [`WINDOW_BYTES`];
//! - the ranged read and how its failures are classified
//!   ([`PackReader::read`]): an absent object is [`PackError::Missing`], a
//!   short one [`PackError::Truncated`], anything else the blob store's
//!   error;
//! - verified chunks ([`SpanBytes::verified`], [`PackReader::read_verified`]):
//!   every chunk is decoded and BLAKE3-checked before its bytes leave here
//!   (invariant 6), and only verified chunks enter the blob store's chunk
//!   cache.
//!
//! What a failure *means* for the store (mark a copy bad, re-resolve a
//! compacted pack, report a fault) is the engine's business.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};

use super::{
    FrameMemo, HEADER_LEN, LEGACY_TRAILER_LEN, PackEntry, PackError, PackTail, decode_entry,
    decode_footer, decode_trailer, footer_start,
};
use crate::blobs::{BlobError, BlobStore, keys};
use crate::ids::PackId;

/// Most bytes one coalesced ranged read of chunk bytes covers (a single
/// chunk larger than this is read alone).
pub const WINDOW_BYTES: u64 = 8 << 20;
/// Bytes read from the end of a pack in the first tail request: trailer
/// plus a footer of up to ~1300 entries (a 64 MiB pack of 64 KiB chunks
/// has ~1000).
pub const TAIL_READ_BYTES: u64 = 64 << 10;

/// Chunks of one pack read with one ranged read: bytes `[start, end)` of
/// the pack, and the chunks inside with what the caller keeps for each.
#[derive(Debug)]
pub struct Span<T> {
    /// Pack id.
    pub pack: PackId,
    /// First byte read.
    pub start: u64,
    /// End of the read (exclusive).
    pub end: u64,
    /// The chunks, in the order given to [`coalesce`].
    pub members: Vec<(PackEntry, T)>,
}

/// Whether a span may skip bytes between its chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gaps {
    /// Only chunks stored back to back join a span (an artifact read, in
    /// artifact order).
    Adjacent,
    /// Chunks in ascending offset order join while the span stays within
    /// [`WINDOW_BYTES`]; the bytes between them are read and ignored.
    Skip,
}

/// Groups chunks, in the order given, into spans of at most
/// [`WINDOW_BYTES`]: a chunk joins the last span when it is in the same
/// pack, starts at or after its end (exactly at it with
/// [`Gaps::Adjacent`]), and the span stays within the window. Another chunk
/// of a frame the span already reads (same stored bytes) always joins.
pub fn coalesce<T>(
    chunks: impl IntoIterator<Item = (PackId, PackEntry, T)>,
    gaps: Gaps,
) -> Vec<Span<T>> {
    let mut spans: Vec<Span<T>> = Vec::new();
    for (pack, e, keep) in chunks {
        let end = e.stored_end();
        match spans.last_mut() {
            Some(s)
                if s.pack == pack
                    && s.members
                        .last()
                        .is_some_and(|(last, _)| last.same_frame(&e)) =>
            {
                s.members.push((e, keep));
            }
            Some(s)
                if s.pack == pack
                    && (e.offset == s.end || (gaps == Gaps::Skip && e.offset > s.end))
                    && end - s.start <= WINDOW_BYTES =>
            {
                s.end = end;
                s.members.push((e, keep));
            }
            _ => spans.push(Span {
                pack,
                start: e.offset,
                end,
                members: vec![(e, keep)],
            }),
        }
    }
    spans
}

/// Stretches `spans` (of one pack, ascending, from [`coalesce`]) so that
/// together they cover `[0, data_end)` without overlap: a whole-pack check
/// then touches every byte of the header and chunk area.
pub fn cover<T>(pack: PackId, mut spans: Vec<Span<T>>, data_end: u64) -> Vec<Span<T>> {
    if spans.is_empty() {
        return if data_end > 0 {
            vec![Span {
                pack,
                start: 0,
                end: data_end,
                members: Vec::new(),
            }]
        } else {
            Vec::new()
        };
    }
    spans[0].start = 0;
    for i in 1..spans.len() {
        let start = spans[i].start;
        spans[i - 1].end = start;
    }
    if let Some(last) = spans.last_mut() {
        last.end = data_end;
    }
    spans
}

/// Bytes of one span as read.
#[derive(Clone, Debug)]
pub struct SpanBytes {
    start: u64,
    bytes: Bytes,
}

impl SpanBytes {
    /// Bytes read.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Whether nothing was read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether the read starts with the pack header magic (only meaningful
    /// for a span starting at 0).
    pub fn starts_with_header(&self) -> bool {
        self.start == 0 && self.bytes.starts_with(super::HEADER_MAGIC)
    }

    /// The stored bytes of `e`, unverified (compaction copies them as they
    /// are after [`verified`](Self::verified) passed).
    ///
    /// # Errors
    /// [`PackError::Truncated`] when the read does not hold them.
    pub fn stored(&self, e: &PackEntry) -> Result<Bytes, PackError> {
        let end = e.stored_end();
        let have = self.start + self.len();
        let range = e
            .offset
            .checked_sub(self.start)
            .and_then(|rel| usize::try_from(rel).ok())
            .and_then(|rel| self.bytes.get(rel..rel + e.stored_len as usize));
        match range {
            Some(b) => Ok(self.bytes.slice_ref(b)),
            None => Err(PackError::Truncated {
                expected: end.saturating_sub(self.start),
                got: have.saturating_sub(self.start),
            }),
        }
    }

    /// The raw bytes of `e`, decoded and BLAKE3-checked (CPU work: call
    /// off the async executor). A framed chunk decodes its whole frame.
    ///
    /// # Errors
    /// [`PackError::Truncated`], [`PackError::Undecodable`] or
    /// [`PackError::HashMismatch`].
    pub fn verified(&self, e: &PackEntry) -> Result<Bytes, PackError> {
        self.verified_with(e, &mut FrameMemo::default())
    }

    /// As [`verified`](Self::verified), decoding a frame once for the
    /// chunks of it read in a row (`memo` serves one span).
    ///
    /// # Errors
    /// As [`verified`](Self::verified).
    pub fn verified_with(&self, e: &PackEntry, memo: &mut FrameMemo) -> Result<Bytes, PackError> {
        decode_entry(e, self.stored(e)?, memo)
    }
}

/// Whether [`PackReader::read_verified`] uses the verified-chunk cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheUse {
    /// Serve hits from the cache; insert chunks read (after verification).
    ReadThrough,
    /// Neither look up nor insert (a read that must touch the pack).
    Bypass,
}

/// Raw bytes of a span's chunks, in member order.
#[derive(Debug, Default)]
pub struct Verified {
    /// One per member.
    pub chunks: Vec<Bytes>,
    /// Members served from the cache.
    pub cache_hits: u64,
    /// Members read from the pack.
    pub cache_misses: u64,
}

/// A stream of spans with their bytes, in order.
pub type SpanStream<T> =
    Pin<Box<dyn Stream<Item = (Span<T>, Result<SpanBytes, PackError>)> + Send>>;

/// Reads packs of one blob store; cheap to clone.
#[derive(Clone, Debug)]
pub struct PackReader {
    blobs: BlobStore,
}

impl PackReader {
    /// A reader over `blobs`.
    pub fn new(blobs: &BlobStore) -> Self {
        PackReader {
            blobs: blobs.clone(),
        }
    }

    /// Size of pack `pack` in the blob store.
    ///
    /// # Errors
    /// [`PackError::Missing`] when absent; [`PackError::Blob`] otherwise.
    pub async fn size(&self, pack: PackId) -> Result<u64, PackError> {
        self.blobs.size(&keys::pack(pack)).await.map_err(classify)
    }

    /// `len` bytes at `offset` of pack `pack`, with one ranged read.
    ///
    /// # Errors
    /// [`PackError::Missing`], [`PackError::Truncated`] (the object ends
    /// before `offset + len`), or [`PackError::Blob`].
    pub async fn read(&self, pack: PackId, offset: u64, len: u64) -> Result<Bytes, PackError> {
        self.blobs
            .read_range(&keys::pack(pack), offset, len)
            .await
            .map_err(classify)
    }

    /// One ranged read of `span`.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub async fn read_span<T>(&self, span: &Span<T>) -> Result<SpanBytes, PackError> {
        let bytes = self
            .read(span.pack, span.start, span.end - span.start)
            .await?;
        Ok(SpanBytes {
            start: span.start,
            bytes,
        })
    }

    /// Reads `spans` in order, `read_ahead` requests in flight.
    pub fn stream<T: Send + Sync + 'static>(
        &self,
        spans: Vec<Span<T>>,
        read_ahead: usize,
    ) -> SpanStream<T> {
        let reader = self.clone();
        Box::pin(
            stream::iter(spans)
                .map(move |s| {
                    let reader = reader.clone();
                    async move {
                        let bytes = reader.read_span(&s).await;
                        (s, bytes)
                    }
                })
                .buffered(read_ahead.max(1)),
        )
    }

    /// The tail of pack `pack`, `size` bytes long: format, footer entries
    /// (hash-checked against the trailer) and the end of the chunk area.
    /// One ranged read when the footer fits in [`TAIL_READ_BYTES`].
    ///
    /// # Errors
    /// [`PackError::TooShort`] / [`PackError::BadTrailer`] for an object
    /// that is not a complete pack (an interrupted write),
    /// [`PackError::UnsupportedFormat`], [`PackError::FooterTooLong`] /
    /// [`PackError::BadFooter`] for a corrupt footer, and the errors of
    /// [`read`](Self::read).
    pub async fn tail(&self, pack: PackId, size: u64) -> Result<PackTail, PackError> {
        if size < HEADER_LEN + LEGACY_TRAILER_LEN as u64 {
            return Err(PackError::TooShort { bytes: size });
        }
        let tail_len = size.min(TAIL_READ_BYTES);
        let tail = self.read(pack, size - tail_len, tail_len).await?;
        let trailer = decode_trailer(&tail)?;
        let data_end = footer_start(&trailer, size)?;
        let mut bytes_read = tail_len;
        let footer = if trailer.footer_len + trailer.len <= tail_len {
            let from = (tail_len - trailer.len - trailer.footer_len) as usize;
            tail.slice(from..tail.len() - trailer.len as usize)
        } else {
            bytes_read += trailer.footer_len;
            self.read(pack, data_end, trailer.footer_len).await?
        };
        Ok(PackTail {
            format: trailer.format,
            entries: decode_footer(&footer, &trailer)?,
            data_end,
            tail_len: size - data_end,
            bytes_read,
        })
    }

    /// The verified raw bytes of every member of `span`. With
    /// [`CacheUse::ReadThrough`], members in the chunk cache are served from
    /// it and the ranged read covers only the first to the last member the
    /// cache lacks (none when all are cached); chunks read enter the cache
    /// after their BLAKE3 check, never before. Decoding runs on a blocking
    /// thread.
    ///
    /// # Errors
    /// The first failure: as [`read`](Self::read) and
    /// [`SpanBytes::verified`] ([`PackError::bad_chunk`] names the chunk).
    pub async fn read_verified<T>(
        &self,
        span: &Span<T>,
        cache: CacheUse,
    ) -> Result<Verified, PackError> {
        let cached: Vec<Option<Bytes>> = span
            .members
            .iter()
            .map(|(e, _)| match cache {
                CacheUse::ReadThrough => self.blobs.chunk_cache().get(&e.id),
                CacheUse::Bypass => None,
            })
            .collect();
        let wanted: Vec<PackEntry> = span
            .members
            .iter()
            .zip(&cached)
            .filter(|(_, hit)| hit.is_none())
            .map(|((e, _), _)| *e)
            .collect();
        let misses = wanted.len() as u64;
        let start = wanted.iter().map(|e| e.offset).min();
        let end = wanted.iter().map(PackEntry::stored_end).max();
        let mut fresh = match (start, end) {
            (Some(start), Some(end)) => {
                let bytes = SpanBytes {
                    start,
                    bytes: self.read(span.pack, start, end - start).await?,
                };
                tokio::task::spawn_blocking(move || {
                    let mut memo = FrameMemo::default();
                    wanted
                        .iter()
                        .map(|e| bytes.verified_with(e, &mut memo))
                        .collect::<Result<Vec<_>, _>>()
                })
                .await
                .map_err(|_| PackError::Interrupted)??
            }
            _ => Vec::new(),
        }
        .into_iter();
        let mut out = Verified {
            chunks: Vec::with_capacity(span.members.len()),
            cache_hits: span.members.len() as u64 - misses,
            cache_misses: misses,
        };
        for ((e, _), hit) in span.members.iter().zip(cached) {
            let raw = match hit {
                Some(raw) => raw,
                None => {
                    let raw = fresh.next().ok_or(PackError::Interrupted)?;
                    if cache == CacheUse::ReadThrough {
                        self.blobs.chunk_cache().insert(e.id, &raw);
                    }
                    raw
                }
            };
            out.chunks.push(raw);
        }
        Ok(out)
    }
}

/// The one classification of a failed pack read.
fn classify(e: BlobError) -> PackError {
    match e {
        BlobError::NotFound(_) => PackError::Missing,
        BlobError::ShortRead { expected, got, .. } => PackError::Truncated { expected, got },
        other => PackError::Blob(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{CodecSettings, CompressionPolicy};
    use crate::hash::Digest;
    use crate::pack::{Codec, LEGACY_TRAILER_MAGIC, PACK_FORMAT, PackBuilder, TRAILER_LEN};

    /// A pack of `chunks` in the current format, and its entries.
    fn pack_of(chunks: &[Vec<u8>]) -> (Vec<u8>, Vec<PackEntry>) {
        let mut policy = CompressionPolicy::new(CodecSettings {
            level: 3,
            byte_planes: false,
        });
        let mut b = PackBuilder::new();
        for c in chunks {
            b.add(Digest::of(c), c, &mut policy);
        }
        let mut out = b.take_pending().to_vec();
        let (tail, entries) = b.finish();
        out.extend_from_slice(&tail);
        (out, entries)
    }

    /// The same pack with a format-1 trailer (no version), as the previous
    /// release wrote it.
    fn as_format_1(pack: &[u8]) -> Vec<u8> {
        let n = pack.len();
        let mut out = pack[..n - TRAILER_LEN].to_vec();
        out.extend_from_slice(&pack[n - TRAILER_LEN..n - 12]);
        out.extend_from_slice(LEGACY_TRAILER_MAGIC);
        out
    }

    #[tokio::test]
    async fn format_1_and_2_packs_read_and_a_newer_one_is_refused() {
        let blobs = BlobStore::memory().unwrap();
        let reader = PackReader::new(&blobs);
        let chunks = vec![vec![9u8; 20_000], (0..=255u8).cycle().take(7000).collect()];
        let (v2, entries) = pack_of(&chunks);
        let v1 = as_format_1(&v2);
        let mut v3 = v2.clone();
        let n = v3.len();
        v3[n - 12..n - 8].copy_from_slice(&(PACK_FORMAT + 1).to_le_bytes());
        let p = PackId::from_u128;
        for (id, bytes, format) in [
            (p(1), &v1, Some(1)),
            (p(2), &v2, Some(2)),
            (p(3), &v3, None),
        ] {
            blobs
                .put_new(&keys::pack(id), Bytes::from(bytes.clone()))
                .await
                .unwrap();
            let tail = reader.tail(id, bytes.len() as u64).await;
            let Some(format) = format else {
                let err = tail.unwrap_err();
                assert!(
                    matches!(
                        err,
                        PackError::UnsupportedFormat {
                            found: 4,
                            supported: 3
                        }
                    ),
                    "{err}"
                );
                continue;
            };
            let tail = tail.unwrap();
            assert_eq!((tail.format, &tail.entries), (format, &entries));
            let spans = coalesce(tail.entries.iter().map(|e| (id, *e, ())), Gaps::Adjacent);
            assert_eq!(spans.len(), 1);
            let got = reader
                .read_verified(&spans[0], CacheUse::Bypass)
                .await
                .unwrap();
            assert_eq!(
                got.chunks.iter().map(|c| c.to_vec()).collect::<Vec<_>>(),
                chunks
            );
        }
        // Reading past the end is a typed truncation; an absent pack is
        // missing.
        let short = Span {
            pack: p(2),
            start: 0,
            end: v2.len() as u64 + 10,
            members: Vec::<(PackEntry, ())>::new(),
        };
        assert!(matches!(
            reader.read_span(&short).await,
            Err(PackError::Truncated { expected, .. }) if expected == v2.len() as u64 + 10
        ));
        assert!(matches!(reader.size(p(99)).await, Err(PackError::Missing)));
    }

    #[tokio::test]
    async fn framed_chunks_read_one_by_one_and_together() {
        let blobs = BlobStore::memory().unwrap();
        let reader = PackReader::new(&blobs);
        let mut policy = CompressionPolicy::new(CodecSettings {
            level: 3,
            byte_planes: true,
        });
        let chunks: Vec<Vec<u8>> = (0..6u8)
            .map(|i| {
                format!("chunk {i}: ")
                    .repeat(500 + 37 * usize::from(i))
                    .into_bytes()
            })
            .collect();
        let mut b = PackBuilder::new();
        for c in &chunks {
            b.add_framed(Digest::of(c), c, &mut policy);
        }
        b.end_frame(&mut policy);
        let mut bytes = b.take_pending().to_vec();
        let (tail, entries) = b.finish();
        bytes.extend_from_slice(&tail);
        let id = PackId::from_u128(7);
        blobs
            .put_new(&keys::pack(id), Bytes::from(bytes.clone()))
            .await
            .unwrap();
        let tail = reader.tail(id, bytes.len() as u64).await.unwrap();
        assert_eq!((tail.format, &tail.entries), (PACK_FORMAT, &entries));
        assert!(entries.iter().all(|e| e.frame.is_some()));
        // All together: one span, one read of the frame.
        let spans = coalesce(entries.iter().map(|e| (id, *e, ())), Gaps::Adjacent);
        assert_eq!(spans.len(), 1);
        assert_eq!(
            spans[0].end - spans[0].start,
            u64::from(entries[0].stored_len)
        );
        let got = reader
            .read_verified(&spans[0], CacheUse::Bypass)
            .await
            .unwrap();
        assert_eq!(
            got.chunks.iter().map(|c| c.to_vec()).collect::<Vec<_>>(),
            chunks
        );
        // One from the middle alone, and out of order (another chunk of
        // the frame a span reads joins it).
        for order in [vec![3usize], vec![4, 1, 5]] {
            let spans = coalesce(order.iter().map(|&i| (id, entries[i], ())), Gaps::Adjacent);
            assert_eq!(spans.len(), 1);
            let got = reader
                .read_verified(&spans[0], CacheUse::Bypass)
                .await
                .unwrap();
            let want: Vec<Vec<u8>> = order.iter().map(|&i| chunks[i].clone()).collect();
            assert_eq!(
                got.chunks.iter().map(|c| c.to_vec()).collect::<Vec<_>>(),
                want
            );
        }
    }

    fn at(offset: u64, len: u32) -> PackEntry {
        PackEntry {
            id: Digest::of(&offset.to_le_bytes()),
            offset,
            stored_len: len,
            raw_len: len,
            codec: Codec::Raw,
            frame: None,
        }
    }

    #[test]
    fn one_window_policy() {
        let mib = 1u32 << 20;
        let (p1, p2) = (PackId::from_u128(1), PackId::from_u128(2));
        // Adjacent chunks join up to the window; a gap, another pack or
        // the window's end starts a new span.
        let chunks = [
            (p1, at(8, mib), ()),
            (p1, at(8 + u64::from(mib), 6 * mib), ()),
            (p1, at(8 + 7 * u64::from(mib), 2 * mib), ()),
            (p1, at(8 + 9 * u64::from(mib) + 5, 10), ()),
            (p2, at(8 + 9 * u64::from(mib) + 15, 10), ()),
        ];
        let adj = coalesce(chunks, Gaps::Adjacent);
        let shape: Vec<(PackId, u64, usize)> = adj
            .iter()
            .map(|s| (s.pack, s.start, s.members.len()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (p1, 8, 2),
                (p1, 8 + 7 * u64::from(mib), 1),
                (p1, 8 + 9 * u64::from(mib) + 5, 1),
                (p2, 8 + 9 * u64::from(mib) + 15, 1)
            ]
        );
        let skip = coalesce(chunks, Gaps::Skip);
        assert_eq!(skip.len(), 3);
        assert!(skip.iter().all(|s| s.end - s.start <= WINDOW_BYTES));
        let covered = cover(
            p1,
            coalesce(
                skip.into_iter()
                    .take(2)
                    .flat_map(|s| s.members.into_iter().map(|(e, k)| (p1, e, k))),
                Gaps::Skip,
            ),
            100 << 20,
        );
        assert_eq!(covered[0].start, 0);
        assert_eq!(covered[0].end, covered[1].start);
        assert_eq!(covered[1].end, 100 << 20);
    }
}
