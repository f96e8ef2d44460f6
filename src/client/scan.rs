//! The local side of dedup: what `put` uploads ([`Source`]: a file, or a
//! directory as a deterministic tar stream) and the streaming pass that cuts
//! it into chunks and hashes it ([`scan`]).
//!
//! Memory stays bounded whatever the size: content flows through in 1 MiB
//! blocks, the chunker keeps at most two maximum chunks, and only the chunk
//! list (40 bytes per chunk) is kept. Chunking uses [`crate::chunking`], the
//! server's own code, so chunk ids agree with the server's. The whole-content
//! BLAKE3 runs on a second thread while this one chunks.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bytes::{Bytes, BytesMut};
use indicatif::ProgressBar;

use super::{ClientError, Result, bundle};
use crate::chunking::{ChunkerParams, StreamChunker};
use crate::hash::Digest;

/// Size of the blocks content is read and hashed in.
pub const BLOCK_BYTES: usize = 1 << 20;

/// What a `put` stores.
#[derive(Clone, Debug)]
pub enum Source {
    /// A regular file (symlinks to one are followed).
    File(PathBuf),
    /// A directory, stored as one bundle (a deterministic tar stream).
    Bundle(PathBuf),
}

impl Source {
    /// Classifies `path`: a regular file or a directory; anything else is an error.
    pub fn open(path: &Path) -> Result<Source> {
        let meta = std::fs::metadata(path)
            .map_err(|e| ClientError::io(format!("cannot read {}", path.display()), e))?;
        if meta.is_file() {
            Ok(Source::File(path.to_path_buf()))
        } else if meta.is_dir() {
            Ok(Source::Bundle(path.to_path_buf()))
        } else {
            Err(ClientError::Local(format!(
                "{} is neither a regular file nor a directory",
                path.display()
            )))
        }
    }

    /// The path given on the command line.
    pub fn path(&self) -> &Path {
        match self {
            Source::File(p) | Source::Bundle(p) => p,
        }
    }

    /// Size in bytes if known before streaming (files only).
    pub fn size_hint(&self) -> Option<u64> {
        match self {
            Source::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            Source::Bundle(_) => None,
        }
    }

    /// Writes the whole content into `out`, returning its length.
    pub fn stream_into(&self, out: &mut dyn Write) -> Result<u64> {
        match self {
            Source::File(p) => {
                let mut f = File::open(p)
                    .map_err(|e| ClientError::io(format!("cannot open {}", p.display()), e))?;
                copy_blocks(&mut f, out)
                    .map_err(|e| ClientError::io(format!("cannot read {}", p.display()), e))
            }
            Source::Bundle(root) => {
                let mut counter = CountingWriter { inner: out, n: 0 };
                bundle::write_bundle(root, &mut counter)?;
                Ok(counter.n)
            }
        }
    }
}

/// Copies `r` into `w` in [`BLOCK_BYTES`] blocks.
pub fn copy_blocks(r: &mut dyn Read, w: &mut dyn Write) -> io::Result<u64> {
    let mut buf = vec![0u8; BLOCK_BYTES];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

struct CountingWriter<'a> {
    inner: &'a mut dyn Write,
    n: u64,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One chunk of the content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    /// BLAKE3 of the chunk's bytes.
    pub id: Digest,
    /// Offset in the content.
    pub offset: u64,
    /// Length (at most the chunker's maximum).
    pub len: u32,
}

/// Result of the hashing pass.
#[derive(Clone, Debug)]
pub struct Scan {
    /// Every chunk, in content order (ids may repeat).
    pub chunks: Vec<ChunkRef>,
    /// Content length.
    pub size: u64,
    /// BLAKE3 of the whole content.
    pub blake3: Digest,
    /// Parameters the chunks were cut with.
    pub params: ChunkerParams,
}

/// Chunks and hashes `source` in one streaming pass (blocking; run it off
/// the async executor). `progress` advances by the bytes hashed.
pub fn scan(source: &Source, params: ChunkerParams, progress: &ProgressBar) -> Result<Scan> {
    let chunker = StreamChunker::new(params).map_err(|e| ClientError::Local(e.to_string()))?;
    let (tx, rx) = mpsc::sync_channel::<Bytes>(4);
    let hasher = std::thread::spawn(move || {
        let mut h = blake3::Hasher::new();
        for block in rx {
            h.update(&block);
        }
        Digest::from(h.finalize())
    });
    let mut sink = ScanSink {
        chunker,
        block: BytesMut::with_capacity(BLOCK_BYTES),
        tx: Some(tx),
        chunks: Vec::new(),
        offset: 0,
        progress,
    };
    let streamed = source.stream_into(&mut sink);
    let finished = streamed.and_then(|_| sink.finish());
    drop(sink.tx.take());
    let blake3 = hasher
        .join()
        .map_err(|_| ClientError::Local("the hashing thread panicked".into()))?;
    finished?;
    Ok(Scan {
        size: sink.offset,
        chunks: sink.chunks,
        blake3,
        params,
    })
}

/// BLAKE3 and length of `source`, without chunking (for `verify`).
pub fn hash_only(source: &Source) -> Result<(Digest, u64)> {
    let mut sink = HashSink(blake3::Hasher::new());
    let n = source.stream_into(&mut sink)?;
    Ok((Digest::from(sink.0.finalize()), n))
}

struct HashSink(blake3::Hasher);

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `Write` end of the scan: gathers blocks, hands each to the hashing thread
/// and to the chunker.
struct ScanSink<'a> {
    chunker: StreamChunker,
    block: BytesMut,
    tx: Option<mpsc::SyncSender<Bytes>>,
    chunks: Vec<ChunkRef>,
    /// Bytes cut into chunks so far.
    offset: u64,
    progress: &'a ProgressBar,
}

impl ScanSink<'_> {
    fn flush_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let block = self.block.split().freeze();
        if let Some(tx) = &self.tx {
            tx.send(block.clone())
                .map_err(|_| io::Error::other("the hashing thread stopped"))?;
        }
        let (chunks, offset) = (&mut self.chunks, &mut self.offset);
        self.chunker.push(&block, |c| record(chunks, offset, c));
        self.progress.inc(block.len() as u64);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.flush_block()
            .map_err(|e| ClientError::Local(e.to_string()))?;
        let (chunks, offset) = (&mut self.chunks, &mut self.offset);
        self.chunker.finish(|c| record(chunks, offset, c));
        Ok(())
    }
}

fn record(chunks: &mut Vec<ChunkRef>, offset: &mut u64, c: &[u8]) {
    chunks.push(ChunkRef {
        id: Digest::of(c),
        offset: *offset,
        // A chunk is at most the chunker's maximum, far below u32::MAX.
        len: c.len() as u32,
    });
    *offset += c.len() as u64;
}

impl Write for ScanSink<'_> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            let room = BLOCK_BYTES - self.block.len();
            let take = room.min(buf.len());
            self.block.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.block.len() == BLOCK_BYTES {
                self.flush_block()?;
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
    use crate::chunking::chunk_all;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn scan_matches_server_chunking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data = pseudo_random(3 * BLOCK_BYTES + 12345, 3);
        std::fs::write(&path, &data).unwrap();
        let p = ChunkerParams::default();
        let s = scan(&Source::open(&path).unwrap(), p, &ProgressBar::hidden()).unwrap();
        let want = chunk_all(p, &data).unwrap();
        assert_eq!(s.size, data.len() as u64);
        assert_eq!(s.blake3, Digest::of(&data));
        assert_eq!(s.chunks.len(), want.len());
        for (c, (off, len)) in s.chunks.iter().zip(want) {
            assert_eq!((c.offset, c.len as usize), (off as u64, len));
            assert_eq!(c.id, Digest::of(&data[off..off + len]));
        }
        assert_eq!(hash_only(&Source::File(path)).unwrap(), (s.blake3, s.size));
    }

    #[test]
    fn empty_file_has_no_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        std::fs::write(&path, b"").unwrap();
        let s = scan(
            &Source::open(&path).unwrap(),
            ChunkerParams::default(),
            &ProgressBar::hidden(),
        )
        .unwrap();
        assert!(s.chunks.is_empty());
        assert_eq!(s.size, 0);
        assert_eq!(s.blake3, Digest::of(b""));
    }
}
