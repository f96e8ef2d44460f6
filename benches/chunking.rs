//! Chunking and hashing throughput (criterion, `Throughput::Bytes`,
//! deterministic data). Target on the 2-core dev machine: chunk + hash
//! ≥ 1 GiB/s. Run: `cargo bench --bench chunking`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use eden_cas::chunking::{ChunkerParams, StreamChunker};
use eden_cas::hash::Digest;
use sha2::Digest as _;

fn data(n: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let input = data(64 << 20);
    let mut g = c.benchmark_group("chunking");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.sample_size(10);
    for (name, params) in [
        ("16k-64k-256k", ChunkerParams::default()),
        (
            "4k-16k-64k",
            ChunkerParams {
                min_bytes: 4096,
                avg_bytes: 16384,
                max_bytes: 65536,
                normalization: 1,
            },
        ),
    ] {
        g.bench_with_input(BenchmarkId::new("cdc", name), &params, |b, p| {
            b.iter(|| {
                let mut ch = StreamChunker::new(*p).unwrap();
                let mut n = 0usize;
                for piece in input.chunks(1 << 20) {
                    ch.push(piece, |c| n += c.len());
                }
                ch.finish(|c| n += c.len());
                n
            })
        });
        g.bench_with_input(BenchmarkId::new("cdc+blake3", name), &params, |b, p| {
            b.iter(|| {
                let mut ch = StreamChunker::new(*p).unwrap();
                let mut last = Digest([0; 32]);
                for piece in input.chunks(1 << 20) {
                    ch.push(piece, |c| last = Digest::of(c));
                }
                ch.finish(|c| last = Digest::of(c));
                last
            })
        });
    }
    // What one deposit pays on one core: chunk ids, then both whole-content
    // digests (the engine runs these two on separate cores).
    g.bench_function("whole-blake3+sha256", |b| {
        b.iter(|| {
            let mut b3 = blake3::Hasher::new();
            let mut sha = sha2::Sha256::new();
            for piece in input.chunks(4 << 20) {
                b3.update(piece);
                sha.update(piece);
            }
            (b3.finalize(), sha.finalize())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
