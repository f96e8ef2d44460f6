//! Cost of the per-chunk codec: the decision alone (`codec::plan`: sampled
//! histograms + entropy) and the whole encode, on a 64 KiB chunk of float32
//! weights, of text and of random bytes; and decoding of the byte-plane form.
//! `frame/…` encodes and decodes the same data as one frame of
//! `FRAME_TARGET_BYTES` (pack format 3): ingest encodes frames instead of
//! chunks, and a read of one chunk decodes its whole frame.
//! Run: `cargo bench --bench codec`.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eden_cas::codec::{CodecSettings, CompressionPolicy, decode, plan};

const CHUNK: usize = 64 << 10;

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Float32 weights, roughly normal with std 0.02 (sum of uniforms).
fn weights(n: usize) -> Vec<u8> {
    noise(n * 2, 7)
        .chunks_exact(8)
        .flat_map(|q| {
            let s: f32 = q.iter().map(|&b| f32::from(b) / 255.0 - 0.5).sum();
            (s * 0.02).to_le_bytes()
        })
        .collect()
}

fn text(n: usize) -> Vec<u8> {
    let words = [
        "fn ", "let ", "self", ".push(", "match ", "=> ", "{\n", "}\n", "    ", "Ok(", "None",
    ];
    let r = noise(n, 9);
    let mut out = Vec::with_capacity(n + 16);
    let mut i = 0;
    while out.len() < n {
        out.extend_from_slice(words[usize::from(r[i % n]) % words.len()].as_bytes());
        i += 1;
    }
    out.truncate(n);
    out
}

fn bench(c: &mut Criterion) {
    let inputs = [
        ("float32", weights(CHUNK / 4)),
        ("text", text(CHUNK)),
        ("random", noise(CHUNK, 3)),
    ];
    let settings = CodecSettings::default();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(CHUNK as u64));
    for (name, data) in &inputs {
        g.bench_function(format!("decide/{name}"), |b| {
            b.iter(|| plan(data, &settings))
        });
        let mut policy = CompressionPolicy::new(settings);
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| policy.encode(data).1.len())
        });
        let (codec, stored) = policy.encode(data);
        let stored = Bytes::copy_from_slice(stored);
        g.bench_function(format!("decode/{name}/{codec:?}"), |b| {
            b.iter(|| decode(codec, stored.clone(), data.len() as u32))
        });
    }
    g.finish();

    let frame = eden_cas::pack::FRAME_TARGET_BYTES;
    let inputs = [
        ("float32", weights(frame / 4)),
        ("text", text(frame)),
        ("random", noise(frame, 3)),
    ];
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Bytes(frame as u64));
    g.sample_size(20);
    for (name, data) in &inputs {
        let mut policy = CompressionPolicy::new(settings);
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| policy.encode(data).1.len())
        });
        let (codec, stored) = policy.encode(data);
        let stored = Bytes::copy_from_slice(stored);
        g.bench_function(format!("decode/{name}/{codec:?}"), |b| {
            b.iter(|| decode(codec, stored.clone(), data.len() as u32))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
