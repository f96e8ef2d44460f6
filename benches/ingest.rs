//! Engine ingest throughput without HTTP: new data and already-stored data,
//! on the memory and fs blob backends (RocksDB real, in a temp directory).
//! Run: `cargo bench --bench ingest`.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eden_cas::auth::token::Secret;
use eden_cas::blobs::BlobStore;
use eden_cas::engine::{DepositRequest, Engine, EngineConfig};
use eden_cas::meta::Meta;

const SIZE: usize = 128 << 20;

fn data(n: usize, seed: u64) -> Vec<u8> {
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

fn request() -> DepositRequest {
    DepositRequest {
        experiment: eden_cas::auth::ExperimentId::from_static("exp_000000000000000000000bench"),
        created_by: eden_cas::auth::Principal::Admin,
        content_type: "application/octet-stream".into(),
        filename: None,
        expires_at: None,
        labels: Default::default(),
        reference: None,
    }
}

async fn deposit(engine: &Arc<Engine>, bytes: &Bytes) {
    let mut ingest = engine.begin_ingest().unwrap();
    // Feed in network-sized frames, as the HTTP layer does.
    for frame in 0..bytes.len().div_ceil(64 << 10) {
        let s = frame * (64 << 10);
        ingest
            .push(bytes.slice(s..(s + (64 << 10)).min(bytes.len())))
            .await
            .unwrap();
    }
    let prepared = ingest.finish().await.unwrap();
    engine.commit_artifact(prepared, request()).await.unwrap();
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(10);
    for backend in ["memory", "fs"] {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(&dir.path().join("meta")).unwrap();
        let blobs = match backend {
            "memory" => BlobStore::memory().unwrap(),
            _ => BlobStore::fs(&dir.path().join("blobs")).unwrap(),
        };
        let cfg = EngineConfig {
            max_artifact_bytes: u64::MAX,
            ..EngineConfig::default()
        };
        let engine = Engine::new(meta, blobs, cfg, Secret::new("bench-admin-token")).unwrap();
        let mut seed = 1u64;
        g.bench_function(format!("new-data/{backend}"), |b| {
            b.iter_batched(
                || {
                    seed += 1;
                    Bytes::from(data(SIZE, seed))
                },
                |bytes| rt.block_on(deposit(&engine, &bytes)),
                criterion::BatchSize::PerIteration,
            )
        });
        let stored = Bytes::from(data(SIZE, 1));
        rt.block_on(deposit(&engine, &stored));
        g.bench_function(format!("stored-data/{backend}"), |b| {
            b.iter(|| rt.block_on(deposit(&engine, &stored)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
