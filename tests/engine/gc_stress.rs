//! Stress: concurrent deposits of overlapping content (streamed and through
//! upload sessions), deletes, reads and GC loops on one engine, for a
//! bounded time. Readers must never see an error or wrong bytes for an
//! artifact nobody deletes; afterwards every surviving artifact reads back
//! byte-identical and a final GC leaves no dead bytes (invariants 1, 2, 7).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::engine::*;
use bytes::Bytes;
use eden_cas::engine::gc::GcOptions;
use eden_cas::ids::ArtifactId;

const RUN_FOR: Duration = Duration::from_secs(6);
const POOL: usize = 24;

/// (id, content, may be deleted)
type Live = Vec<(ArtifactId, Vec<u8>, bool)>;

struct Shared {
    pool: Vec<Vec<u8>>,
    live: Mutex<Live>,
    stop: AtomicBool,
    deposits: AtomicU64,
    deletes: AtomicU64,
    reads: AtomicU64,
    gcs: AtomicU64,
}

fn pick(seed: &mut u64, n: usize) -> usize {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    (*seed % n as u64) as usize
}

fn content(s: &Shared, seed: &mut u64) -> (Vec<usize>, Vec<u8>) {
    let n = 1 + pick(seed, 6);
    let blocks: Vec<usize> = (0..n).map(|_| pick(seed, POOL)).collect();
    let data = blocks.iter().flat_map(|&b| s.pool[b].clone()).collect();
    (blocks, data)
}

async fn depositor(
    e: Arc<eden_cas::engine::Engine>,
    s: Arc<Shared>,
    mut seed: u64,
    sessions: bool,
) {
    while !s.stop.load(Ordering::Relaxed) {
        let (blocks, data) = content(&s, &mut seed);
        let id = if sessions && pick(&mut seed, 2) == 0 {
            let sid = open_session(&e).await;
            let chunks: Vec<&[u8]> = blocks.iter().map(|&b| &s.pool[b][..]).collect();
            send_chunks(&e, &sid, &chunks).await;
            tokio::task::yield_now().await;
            commit_chunks(&e, &sid, &chunks).await
        } else {
            let mut ingest = e.begin_ingest().unwrap();
            for part in data.chunks(5000) {
                ingest.push(Bytes::copy_from_slice(part)).await.unwrap();
                tokio::task::yield_now().await;
            }
            let prepared = ingest.finish().await.unwrap();
            tokio::task::yield_now().await;
            let r = e.commit_artifact(prepared, req()).await.unwrap();
            r.id
        };
        let deletable = pick(&mut seed, 3) != 0;
        s.live.lock().unwrap().push((id, data, deletable));
        s.deposits.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn concurrent_deposits_deletes_reads_and_gc() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let fx = Fixture::new();
    let e = Arc::clone(&fx.engine);
    let s = Arc::new(Shared {
        pool: (0..POOL)
            .map(|i| noise(2000 + 450 * i, 100 + i as u64))
            .collect(),
        live: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        deposits: AtomicU64::new(0),
        deletes: AtomicU64::new(0),
        reads: AtomicU64::new(0),
        gcs: AtomicU64::new(0),
    });
    rt.block_on(async {
        let mut tasks = Vec::new();
        for k in 0..3u64 {
            tasks.push(tokio::spawn(depositor(e.clone(), s.clone(), 7 + k, k > 0)));
        }
        let (e2, s2) = (e.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            let mut seed = 99u64;
            while !s2.stop.load(Ordering::Relaxed) {
                let victim = {
                    let mut live = s2.live.lock().unwrap();
                    let candidates: Vec<usize> = (0..live.len()).filter(|&i| live[i].2).collect();
                    if candidates.len() < 3 {
                        None
                    } else {
                        Some(live.remove(candidates[pick(&mut seed, candidates.len())]).0)
                    }
                };
                if let Some(id) = victim {
                    delete(&e2, &id).await;
                    s2.deletes.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
        let (e3, s3) = (e.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            let mut seed = 5u64;
            while !s3.stop.load(Ordering::Relaxed) {
                let target = {
                    let live = s3.live.lock().unwrap();
                    let keep: Vec<_> = live.iter().filter(|a| !a.2).cloned().collect();
                    (!keep.is_empty()).then(|| keep[pick(&mut seed, keep.len())].clone())
                };
                if let Some((id, data, _)) = target {
                    let got = fetch(&e3, &id).await.expect("a kept artifact always reads");
                    assert_eq!(got.as_deref(), Some(&data[..]), "wrong bytes under GC");
                    s3.reads.fetch_add(1, Ordering::Relaxed);
                }
                tokio::task::yield_now().await;
            }
        }));
        let (e4, s4) = (e.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            while !s4.stop.load(Ordering::Relaxed) {
                let opts = GcOptions {
                    dry_run: false,
                    compact_below: 0.9,
                };
                e4.gc(opts).await.expect("gc");
                s4.gcs.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
        let start = Instant::now();
        while start.elapsed() < RUN_FOR {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s.stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("task panicked");
        }
        // Everything that survived reads back, before and after a full GC.
        let live = s.live.lock().unwrap().clone();
        for (id, data, _) in &live {
            assert_eq!(fetch(&e, id).await.unwrap().as_deref(), Some(&data[..]));
        }
        let opts = GcOptions {
            dry_run: false,
            compact_below: 1.0,
        };
        e.gc(opts).await.unwrap();
        for (id, data, _) in &live {
            assert_eq!(fetch(&e, id).await.unwrap().as_deref(), Some(&data[..]));
        }
        let index = indexed(&e);
        let live_bytes: u64 = index.iter().map(|(_, n)| u64::from(*n)).sum();
        assert_eq!(
            stored(&e).await.chunk_bytes,
            live_bytes,
            "no dead bytes after a full GC"
        );
    });
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "stress: {} deposits, {} deletes, {} verified reads, {} GC runs",
        n(&s.deposits),
        n(&s.deletes),
        n(&s.reads),
        n(&s.gcs)
    );
    assert!(n(&s.deposits) > 10 && n(&s.gcs) > 2 && n(&s.deletes) > 2);
}
