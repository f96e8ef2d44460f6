//! Measures the per-chunk codecs on real files, without HTTP or storage: the
//! files are chunked like a deposit (default FastCDC parameters), duplicate
//! chunks are dropped (as the store would), and every unique chunk is encoded
//! with `CompressionPolicy` at each zstd level given, with and without byte
//! planes. Prints stored bytes, ratio, encode MB/s (one core), decode MB/s
//! and how many chunks took each codec. Used to choose the default level
//! (docs/performance.md).
//!
//! Run: `cargo run --release --example codec_levels -- LEVELS FILE...`
//! with LEVELS like `1,3,6`. With `FRAMES=0,1048576,4194304` in the
//! environment, runs of consecutive unique chunks (cut at a duplicate, as
//! ingest cuts frames) are also encoded together as frames of each size
//! given (0 = per chunk), to choose the frame size (pack format 3).

use std::collections::HashSet;
use std::time::Instant;

use bytes::Bytes;
use eden_cas::chunking::{ChunkerParams, StreamChunker};
use eden_cas::codec::{CodecSettings, CompressionPolicy, decode};
use eden_cas::hash::Digest;
use eden_cas::pack::Codec;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let levels: Vec<i32> = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: codec_levels LEVELS FILE..."))?
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let frames: Vec<usize> = std::env::var("FRAMES")
        .ok()
        .map(|v| v.split(',').map(str::parse).collect::<Result<_, _>>())
        .transpose()?
        .unwrap_or_default();
    let mut seen = HashSet::new();
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    // Runs of consecutive unique chunks (a duplicate ends a run).
    let mut runs: Vec<Vec<usize>> = vec![Vec::new()];
    let mut total = 0u64;
    for path in args {
        let data = std::fs::read(&path)?;
        total += data.len() as u64;
        let mut chunker = StreamChunker::new(ChunkerParams::default())?;
        let mut keep = |c: &[u8]| {
            if seen.insert(Digest::of(c)) {
                runs.last_mut()
                    .into_iter()
                    .for_each(|r| r.push(chunks.len()));
                chunks.push(c.to_vec());
            } else if runs.last().is_some_and(|r| !r.is_empty()) {
                runs.push(Vec::new());
            }
        };
        chunker.push(&data, &mut keep);
        chunker.finish(&mut keep);
        runs.push(Vec::new());
    }
    let unique: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    println!(
        "input {:.1} MB, unique chunks {} ({:.1} MB)",
        total as f64 / 1e6,
        chunks.len(),
        unique as f64 / 1e6
    );
    println!(
        "level\tplanes\tstored_MB\tratio_vs_unique\tencode_MB/s\tdecode_MB/s\traw/zstd/bp2/bp4"
    );
    for &level in &levels {
        for byte_planes in [false, true] {
            let mut policy = CompressionPolicy::new(CodecSettings { level, byte_planes });
            let mut counts = [0usize; 4];
            let mut stored = Vec::with_capacity(chunks.len());
            let t0 = Instant::now();
            for c in &chunks {
                let (codec, bytes) = policy.encode(c);
                counts[codec as usize] += 1;
                stored.push((codec, Bytes::copy_from_slice(bytes), c.len() as u32));
            }
            let enc = t0.elapsed().as_secs_f64();
            let stored_bytes: usize = stored.iter().map(|(_, b, _)| b.len()).sum();
            let t1 = Instant::now();
            for (codec, bytes, raw_len) in stored {
                let raw = decode(codec, bytes, raw_len)?;
                std::hint::black_box(raw);
            }
            let dec = t1.elapsed().as_secs_f64();
            println!(
                "{level}\t{byte_planes}\t{:.2}\t{:.3}\t{:.0}\t{:.0}\t{}/{}/{}/{}",
                stored_bytes as f64 / 1e6,
                unique as f64 / stored_bytes as f64,
                unique as f64 / 1e6 / enc,
                unique as f64 / 1e6 / dec,
                counts[Codec::Raw as usize],
                counts[Codec::Zstd as usize],
                counts[Codec::BytePlanes2 as usize],
                counts[Codec::BytePlanes4 as usize],
            );
        }
    }
    if !frames.is_empty() {
        println!("level\tframe_bytes\tstored_MB\tratio_vs_unique\tencode_MB/s\tframes");
    }
    for &level in &levels {
        for &frame in &frames {
            let mut policy = CompressionPolicy::new(CodecSettings {
                level,
                byte_planes: true,
            });
            let (mut stored, mut count) = (0usize, 0usize);
            let t0 = Instant::now();
            let mut buf = Vec::new();
            for run in &runs {
                for (i, &c) in run.iter().enumerate() {
                    buf.extend_from_slice(&chunks[c]);
                    if buf.len() >= frame.max(1) || i + 1 == run.len() {
                        stored += policy.encode(&buf).1.len();
                        count += 1;
                        buf.clear();
                    }
                }
            }
            let enc = t0.elapsed().as_secs_f64();
            println!(
                "{level}\t{frame}\t{:.2}\t{:.3}\t{:.0}\t{count}",
                stored as f64 / 1e6,
                unique as f64 / stored as f64,
                unique as f64 / 1e6 / enc,
            );
        }
    }
    Ok(())
}
