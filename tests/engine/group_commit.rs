//! Group commit of small deposits (`engine/ingest/group.rs`): concurrent
//! small deposits share one pack object, one manifest bundle and one
//! synced batch; a failure fails the whole group and records nothing;
//! GC, fsck and reindex follow manifests into bundles.
//!
//! Groups are built deterministically: commits are held while a burst of
//! deposits queues up, then released, so the object-store request counts
//! asserted here are exact, not a matter of timing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eden_cas::blobs::{Fault, FaultSpec, keys};
use eden_cas::engine::gc::GcOptions;
use eden_cas::engine::ingest::{DepositReceipt, MANIFEST_MAGIC};
use eden_cas::engine::{Engine, EngineError};
use eden_cas::hash::Digest;
use eden_cas::ids::ArtifactId;

use crate::support::engine::{
    EXP, Fixture, delete, engine_over, fetch, indexed, noise, req, stored,
};

/// Deposits of the bursts below.
const BURST: usize = 32;
/// Size of each small deposit.
const SMALL: usize = 4096;

/// Runs `body` under a time bound, so a lost wake-up fails instead of hanging.
async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test exceeded its time bound")
}

/// Deposits every item of `data` concurrently while commits are held, waits
/// until all of them queue, then releases them as one group.
async fn burst(e: &Arc<Engine>, data: &[Vec<u8>]) -> Vec<Result<DepositReceipt, EngineError>> {
    e.hold_group_commits(true);
    let tasks: Vec<_> = data
        .iter()
        .map(|d| {
            let (e, d) = (Arc::clone(e), Bytes::copy_from_slice(d));
            tokio::spawn(async move { e.deposit_bytes(req(), d).await })
        })
        .collect();
    while e.queued_group_deposits() < data.len() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    e.hold_group_commits(false);
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("deposit task"));
    }
    out
}

fn distinct(n: usize, seed: u64) -> Vec<Vec<u8>> {
    (0..n).map(|i| noise(SMALL, seed + i as u64)).collect()
}

/// Object keys under `prefix` of a fixture's blob store.
async fn keys_under(e: &Arc<Engine>, prefix: &str) -> Vec<String> {
    e.blobs()
        .list(prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bursts_of_small_deposits_cost_at_most_a_tenth_of_a_put_each() {
    bounded(async {
        let fx = Fixture::new();
        let e = &fx.engine;
        let before = e.blob_requests();
        let packs_before = stored(e).await.packs;
        let mut done: Vec<(ArtifactId, Vec<u8>)> = Vec::new();
        for round in 0..4u64 {
            let data = distinct(BURST, 1000 * round);
            for (r, d) in burst(e, &data).await.into_iter().zip(data) {
                done.push((r.expect("deposit").id, d));
            }
        }
        let used = e.blob_requests().since(&before);
        let deposits = done.len() as u64;
        // One pack and one manifest bundle per group of 32.
        assert_eq!(used.put, 2 * 4, "{used:?}");
        assert!(
            used.put * 10 <= deposits,
            "{} PUTs for {deposits} deposits",
            used.put
        );
        assert_eq!(stored(e).await.packs - packs_before, 4);
        assert_eq!(keys_under(e, keys::MANIFEST_BUNDLES).await.len(), 4);
        // Each deposit is durable, readable and has its manifest copy.
        for (id, d) in &done {
            assert_eq!(fetch(e, id).await.unwrap().as_deref(), Some(&d[..]));
            let rec = e.meta().artifact(&EXP, id).unwrap().unwrap();
            let copy = e.manifest_copy(&rec.manifest).await.unwrap().expect("copy");
            assert_eq!(&copy[..8], MANIFEST_MAGIC);
        }
        assert!(e.fsck(false).await.unwrap().is_clean());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_deposits_in_one_group_store_their_chunks_and_manifest_once() {
    bounded(async {
        let fx = Fixture::new();
        let e = &fx.engine;
        let data = vec![noise(20_000, 7); 8];
        let ids: Vec<ArtifactId> = burst(e, &data)
            .await
            .into_iter()
            .map(|r| r.expect("deposit").id)
            .collect();
        let s = stored(e).await;
        assert_eq!(s.chunk_bytes, 20_000, "one copy of each chunk");
        let bundles = keys_under(e, keys::MANIFEST_BUNDLES).await;
        assert_eq!(bundles.len(), 1);
        let body = e.blobs().read(&bundles[0]).await.unwrap();
        let (records, problem) = eden_cas::engine::ingest::split_bundle(&body);
        assert_eq!((records.len(), problem), (1, None), "one manifest copy");
        for id in &ids {
            assert_eq!(fetch(e, id).await.unwrap().as_deref(), Some(&data[0][..]));
        }
        // A later deposit of the same content writes no object at all.
        let before = e.blob_requests();
        burst(e, &data[..1]).await.remove(0).expect("deposit");
        assert_eq!(e.blob_requests().since(&before).put, 0);
    })
    .await
}

/// A group whose `fault` fires: every deposit fails, nothing is visible
/// or indexed, and the same deposits succeed once the fault is gone.
async fn group_fails_whole(spec: FaultSpec) {
    let fx = crate::faults::fixture();
    let e = &fx.engine;
    let data = distinct(8, 77);
    fx.plan.arm(spec.clone());
    for r in burst(e, &data).await {
        let err = r.expect_err("the group failed");
        assert!(
            err.to_string()
                .contains("group commit of 8 deposits failed"),
            "{spec:?}: {err}"
        );
    }
    fx.plan.disarm();
    assert!(
        e.meta()
            .artifacts_newest_first(&EXP, None, 100)
            .unwrap()
            .is_empty(),
        "{spec:?}: a deposit of the failed group is visible"
    );
    assert!(indexed(e).is_empty(), "{spec:?}: chunks indexed");
    for (r, d) in burst(e, &data).await.into_iter().zip(&data) {
        let id = r.expect("deposit after the fault").id;
        assert_eq!(fetch(e, &id).await.unwrap().as_deref(), Some(&d[..]));
    }
    assert!(e.fsck(false).await.unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_pack_write_fails_every_deposit_of_the_group() {
    bounded(group_fails_whole(FaultSpec::new(
        Fault::WriteError,
        keys::PACKS,
    )))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_bundle_write_fails_every_deposit_of_the_group() {
    bounded(group_fails_whole(FaultSpec::new(
        Fault::CloseError,
        keys::MANIFEST_BUNDLES,
    )))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_keeps_a_bundle_while_one_of_its_artifacts_lives() {
    bounded(async {
        let fx = Fixture::new();
        let e = &fx.engine;
        let data = distinct(4, 500);
        let ids: Vec<ArtifactId> = burst(e, &data)
            .await
            .into_iter()
            .map(|r| r.expect("deposit").id)
            .collect();
        for id in &ids[..3] {
            delete(e, id).await;
        }
        e.gc(GcOptions::default()).await.unwrap();
        assert_eq!(keys_under(e, keys::MANIFEST_BUNDLES).await.len(), 1);
        assert_eq!(
            fetch(e, &ids[3]).await.unwrap().as_deref(),
            Some(&data[3][..])
        );
        assert!(e.fsck(false).await.unwrap().is_clean());
        delete(e, &ids[3]).await;
        e.gc(GcOptions::default()).await.unwrap();
        assert!(keys_under(e, keys::MANIFEST_BUNDLES).await.is_empty());
        assert!(keys_under(e, keys::PACKS).await.is_empty());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reindex_restores_bundled_manifests_and_their_rows() {
    bounded(async {
        let fx = Fixture::new();
        let data = distinct(6, 900);
        let mut done = Vec::new();
        for (r, d) in burst(&fx.engine, &data).await.into_iter().zip(data) {
            let id = r.expect("deposit").id;
            let rec = fx.engine.meta().artifact(&EXP, &id).unwrap().unwrap();
            done.push((id, rec.manifest, d));
        }
        // Keep the artifact records (a backup would), lose everything else.
        let records = fx
            .engine
            .meta()
            .artifacts_newest_first(&EXP, None, 100)
            .unwrap();
        let cfg = fx.engine.config().clone();
        drop(fx.engine);
        let blobs = eden_cas::blobs::BlobStore::fs(&fx.dir.path().join("blobs")).unwrap();
        let fresh = fx.dir.path().join("meta-fresh");
        let e = engine_over(&fresh, blobs, cfg);
        let report = e.reindex().await.unwrap();
        assert!(report.bad_manifests.is_empty(), "{report:?}");
        let mut b = e.meta().batch();
        for (id, rec) in &records {
            b.put_artifact(&EXP, id, rec);
        }
        b.commit().unwrap();
        for (id, manifest, d) in &done {
            let m: &Digest = manifest;
            assert!(e.meta().manifest(m).unwrap().is_some(), "manifest restored");
            assert!(
                e.meta().manifest_bundle(m).unwrap().is_some(),
                "bundle row restored"
            );
            assert_eq!(fetch(&e, id).await.unwrap().as_deref(), Some(&d[..]));
        }
        assert!(e.fsck(false).await.unwrap().is_clean());
    })
    .await
}
