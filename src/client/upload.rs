//! The second pass of `put`: re-reads the bytes of the chunks the server is
//! missing and packs them into framed batches
//! (`[id: 32 bytes][len: u32 LE][len bytes]`, body ≤ the batch limit).
//!
//! Files are re-read by offset (only the missing chunks are read); bundles are
//! regenerated deterministically and the missing chunks picked out of the
//! stream, so no temporary copy of the tar is ever written. Every chunk is
//! hashed again and compared with the first pass: a source that changed in
//! between is reported ([`ClientError::SourceChanged`]) instead of uploading
//! bytes that would not match the commit. Each missing id is sent once, even
//! if it occurs many times in the content.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use bytes::Bytes;

use super::scan::{ChunkRef, Source};
use super::{ClientError, Result};
use crate::hash::{DIGEST_LEN, Digest};

/// Bytes of frame header before each chunk.
pub const FRAME_HEADER_BYTES: usize = DIGEST_LEN + 4;
/// Default bound on one batch body (the server's `max_batch_bytes` also caps
/// it). The server seals one pack per batch, so bigger batches mean fewer,
/// larger packs; smaller ones bound client memory (queue + in-flight batches).
pub const DEFAULT_BATCH_BYTES: u64 = 16 << 20;

/// One framed request body.
#[derive(Debug)]
pub struct Batch {
    /// The frames.
    pub body: Bytes,
    /// Chunks in it.
    pub chunks: u64,
    /// Chunk bytes in it (body minus frame headers).
    pub raw_bytes: u64,
}

/// Appends one frame to `buf`.
pub fn encode_frame(buf: &mut Vec<u8>, id: &Digest, data: &[u8]) {
    buf.extend_from_slice(id.as_bytes());
    // Chunk lengths are bounded by the chunker maximum (< 4 GiB).
    buf.extend_from_slice(&(data.len() as u32).to_le_bytes());
    buf.extend_from_slice(data);
}

/// Decodes frames (for tests and sanity checks): `(id, bytes)` pairs.
pub fn decode_frames(mut body: &[u8]) -> Option<Vec<(Digest, &[u8])>> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let (head, rest) = body.split_at_checked(FRAME_HEADER_BYTES)?;
        let id = Digest::from_slice(&head[..DIGEST_LEN])?;
        let len = u32::from_le_bytes(head[DIGEST_LEN..].try_into().ok()?) as usize;
        let (data, rest) = rest.split_at_checked(len)?;
        out.push((id, data));
        body = rest;
    }
    Some(out)
}

/// Packs verified chunks into batches of at most `limit` body bytes and hands
/// each full batch to `emit`.
pub struct BatchBuilder<F: FnMut(Batch) -> Result<()>> {
    limit: usize,
    buf: Vec<u8>,
    chunks: u64,
    raw: u64,
    emit: F,
    what: String,
}

impl<F: FnMut(Batch) -> Result<()>> BatchBuilder<F> {
    /// A builder; `what` names the source in errors.
    pub fn new(limit: u64, what: String, emit: F) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        BatchBuilder {
            limit,
            buf: Vec::new(),
            chunks: 0,
            raw: 0,
            emit,
            what,
        }
    }

    /// Adds one chunk after checking that `data` still hashes to `id`.
    pub fn add(&mut self, id: &Digest, data: &[u8]) -> Result<()> {
        if Digest::of(data) != *id {
            return Err(ClientError::SourceChanged(self.what.clone()));
        }
        let frame = FRAME_HEADER_BYTES + data.len();
        if !self.buf.is_empty() && self.buf.len() + frame > self.limit {
            self.flush()?;
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve(self.limit.min(16 << 20).max(frame));
        }
        encode_frame(&mut self.buf, id, data);
        self.chunks += 1;
        self.raw += data.len() as u64;
        Ok(())
    }

    /// Emits the batch being built, if any.
    pub fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let batch = Batch {
            body: Bytes::from(std::mem::take(&mut self.buf)),
            chunks: std::mem::take(&mut self.chunks),
            raw_bytes: std::mem::take(&mut self.raw),
        };
        (self.emit)(batch)
    }
}

/// Produces the batches of the chunks in `missing` (blocking; run it off the
/// async executor). `all` is the full chunk list of the first pass.
pub fn produce(
    source: &Source,
    all: &[ChunkRef],
    missing: &HashSet<Digest>,
    limit: u64,
    emit: impl FnMut(Batch) -> Result<()>,
) -> Result<()> {
    let mut builder = BatchBuilder::new(limit, source.path().display().to_string(), emit);
    match source {
        Source::File(path) => produce_file(path, all, missing, &mut builder)?,
        Source::Bundle(_) => {
            let mut picker = Picker {
                all,
                idx: 0,
                pos: 0,
                want: missing.clone(),
                buf: Vec::new(),
                builder: &mut builder,
                failure: None,
            };
            let streamed = source.stream_into(&mut picker);
            if let Some(e) = picker.failure.take() {
                return Err(e);
            }
            streamed?;
            if picker.idx != all.len() || picker.pos != 0 {
                return Err(ClientError::SourceChanged(
                    source.path().display().to_string(),
                ));
            }
        }
    }
    builder.flush()
}

fn produce_file<F: FnMut(Batch) -> Result<()>>(
    path: &Path,
    all: &[ChunkRef],
    missing: &HashSet<Digest>,
    builder: &mut BatchBuilder<F>,
) -> Result<()> {
    let file = File::open(path)
        .map_err(|e| ClientError::io(format!("cannot open {}", path.display()), e))?;
    let mut want = missing.clone();
    let mut buf = Vec::new();
    for c in all {
        if !want.remove(&c.id) {
            continue;
        }
        buf.resize(c.len as usize, 0);
        read_at(&file, &mut buf, c.offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                ClientError::SourceChanged(path.display().to_string())
            } else {
                ClientError::io(format!("cannot read {}", path.display()), e)
            }
        })?;
        builder.add(&c.id, &buf)?;
    }
    Ok(())
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(not(unix))]
fn read_at(mut file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// `Write` end of a regenerated stream: keeps the bytes of wanted chunks.
struct Picker<'a, F: FnMut(Batch) -> Result<()>> {
    all: &'a [ChunkRef],
    /// Index of the chunk being filled.
    idx: usize,
    /// Bytes of that chunk seen so far.
    pos: usize,
    want: HashSet<Digest>,
    buf: Vec<u8>,
    builder: &'a mut BatchBuilder<F>,
    failure: Option<ClientError>,
}

impl<F: FnMut(Batch) -> Result<()>> Write for Picker<'_, F> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        let mut rest = data;
        while !rest.is_empty() {
            let Some(c) = self.all.get(self.idx) else {
                self.failure = Some(ClientError::SourceChanged(self.builder.what.clone()));
                return Err(io::Error::other("stream longer than on the first pass"));
            };
            let take = (c.len as usize - self.pos).min(rest.len());
            let wanted = self.want.contains(&c.id);
            if wanted {
                self.buf.extend_from_slice(&rest[..take]);
            }
            self.pos += take;
            rest = &rest[take..];
            if self.pos == c.len as usize {
                if wanted {
                    self.want.remove(&c.id);
                    if let Err(e) = self.builder.add(&c.id, &self.buf) {
                        self.failure = Some(e);
                        return Err(io::Error::other("upload stopped"));
                    }
                    self.buf.clear();
                }
                self.idx += 1;
                self.pos = 0;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunking::ChunkerParams;
    use crate::client::scan::scan;
    use indicatif::ProgressBar;

    #[test]
    fn frame_layout() {
        let id = Digest::of(b"abc");
        let mut buf = Vec::new();
        encode_frame(&mut buf, &id, b"abc");
        assert_eq!(buf.len(), 32 + 4 + 3);
        assert_eq!(&buf[..32], id.as_bytes());
        assert_eq!(&buf[32..36], &[3, 0, 0, 0]);
        assert_eq!(&buf[36..], b"abc");
        assert_eq!(decode_frames(&buf).unwrap(), vec![(id, &b"abc"[..])]);
        assert!(decode_frames(&buf[..38]).is_none());
    }

    #[test]
    fn batches_respect_limit_and_detect_changes() {
        let mut got = Vec::new();
        let mut b = BatchBuilder::new(100, "f".into(), |batch: Batch| {
            got.push(batch);
            Ok(())
        });
        for i in 0..5u8 {
            let data = vec![i; 30];
            b.add(&Digest::of(&data), &data).unwrap();
        }
        assert!(matches!(
            b.add(&Digest::of(b"x"), b"y"),
            Err(ClientError::SourceChanged(_))
        ));
        b.flush().unwrap();
        drop(b);
        assert_eq!(got.iter().map(|b| b.chunks).sum::<u64>(), 5);
        assert!(got.iter().all(|b| b.body.len() <= 100));
        assert_eq!(got.len(), 5, "two 66-byte frames do not fit in 100");
    }

    fn collect(source: &Source, missing: &HashSet<Digest>) -> Vec<(Digest, Vec<u8>)> {
        let s = scan(source, ChunkerParams::default(), &ProgressBar::hidden()).unwrap();
        let mut frames = Vec::new();
        produce(source, &s.chunks, missing, 1 << 20, |b: Batch| {
            assert!(b.body.len() <= 1 << 20);
            for (id, data) in decode_frames(&b.body).unwrap() {
                frames.push((id, data.to_vec()));
            }
            Ok(())
        })
        .unwrap();
        frames
    }

    #[test]
    fn produces_each_missing_chunk_once_for_files_and_bundles() {
        let dir = tempfile::tempdir().unwrap();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut data: Vec<u8> = (0..3_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let copy = data.clone();
        data.extend_from_slice(&copy); // every chunk of the first half repeats
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("a"), &data).unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, &data).unwrap();
        for source in [Source::File(file), Source::Bundle(tree)] {
            let s = scan(&source, ChunkerParams::default(), &ProgressBar::hidden()).unwrap();
            let missing: HashSet<Digest> = s.chunks.iter().step_by(3).map(|c| c.id).collect();
            let frames = collect(&source, &missing);
            let ids: HashSet<Digest> = frames.iter().map(|f| f.0).collect();
            assert_eq!(ids, missing);
            assert_eq!(frames.len(), missing.len(), "each id once");
            assert!(frames.iter().all(|(id, d)| Digest::of(d) == *id));
        }
    }
}
