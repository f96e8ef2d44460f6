//! Failed writes: a pack or manifest write or close that fails loses
//! nothing and leaves no partial object or visible artifact; a transient
//! error is retried and absorbed, a persistent one exhausts the retries;
//! an upload batch that fails keeps its session usable.

use super::*;

/// A write fault armed during a deposit: the deposit fails, nothing new
/// becomes visible, an artifact stored before is intact; disarmed, the same
/// deposit succeeds and reads back byte-identical. Returns the new id.
async fn deposit_survives(fx: &Fixture, spec: FaultSpec, new_chunks_unindexed: bool) -> String {
    let e = &fx.engine;
    let before = noise(300_000, 1);
    let before_id = deposit(e, &before, 64 << 10).await.unwrap();
    let visible = artifacts(e);
    let data = noise(700_000, 2);

    fx.plan.arm(spec.clone());
    let err = deposit(e, &data, 64 << 10).await.unwrap_err();
    assert!(
        matches!(err, EngineError::Blob(_)),
        "{spec:?}: a blob error, got {err}"
    );
    assert_eq!(fx.plan.fired(), 1, "{spec:?} fired once");
    assert_eq!(artifacts(e), visible, "{spec:?}: nothing new visible");
    if new_chunks_unindexed {
        for c in chunks_of(&data) {
            assert!(
                e.meta().chunk(&Digest::of(&c)).unwrap().is_none(),
                "{spec:?}: a chunk of a failed pack is indexed (invariant 3)"
            );
        }
    }
    assert_identical(e, &before_id, &before).await;

    assert_eq!(fx.plan.disarm(), 1);
    let id = deposit(e, &data, 64 << 10).await.unwrap();
    assert_identical(e, &id, &data).await;
    assert_identical(e, &before_id, &before).await;
    assert_eq!(artifacts(e).len(), visible.len() + 1);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_error_in_a_pack_fails_the_deposit_and_loses_nothing() {
    bounded(async {
        for spec in [
            FaultSpec::new(Fault::WriteError, keys::PACKS),
            FaultSpec::new(Fault::CloseError, keys::PACKS),
        ] {
            let fx = fixture();
            deposit_survives(&fx, spec, true).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_error_on_the_manifest_object_fails_the_deposit_and_loses_nothing() {
    bounded(async {
        // The first write call fails before a byte reaches the backend.
        let fx = fixture();
        let id = deposit_survives(
            &fx,
            FaultSpec::new(Fault::WriteError, keys::MANIFESTS),
            false,
        )
        .await;
        assert_manifest_object_complete(&fx.engine, &record(&fx.engine, &id).await).await;
    })
    .await
}

/// A manifest write that fails once the backend has created the object (a
/// later write call, or the close) must not leave a partial object that the
/// next deposit of the same content takes for the complete manifest: the
/// blob store's manifests are what rebuilds the metadata.
async fn no_partial_manifest_object_after(spec: FaultSpec) {
    let fx = fixture();
    let id = deposit_survives(&fx, spec, false).await;
    let rec = record(&fx.engine, &id).await;
    assert_manifest_object_complete(&fx.engine, &rec).await;
    // GC removes whatever partial object the failed write left beside it.
    let e = &fx.engine;
    e.gc(eden_cas::engine::gc::GcOptions::default())
        .await
        .unwrap();
    assert_manifest_object_complete(e, &rec).await;
    if let Ok(obj) = e.blobs().read(&keys::manifest(&rec.manifest)).await {
        let copy = e.manifest_copy(&rec.manifest).await.unwrap().unwrap();
        assert!(obj == copy, "a partial manifest object outlived GC");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_write_failing_midway_leaves_no_partial_object() {
    bounded(no_partial_manifest_object_after(
        FaultSpec::new(Fault::WriteError, keys::MANIFESTS).skip(1),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_close_failing_leaves_no_partial_object() {
    bounded(no_partial_manifest_object_after(FaultSpec::new(
        Fault::CloseError,
        keys::MANIFESTS,
    )))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_write_error_is_retried_and_absorbed() {
    bounded(async {
        let fx = fixture();
        let e = &fx.engine;
        let data = noise(500_000, 3);
        let retries = e.blobs().requests().retries;
        fx.plan
            .arm(FaultSpec::new(Fault::WriteError, keys::PACKS).transient());
        let id = deposit(e, &data, 64 << 10).await.unwrap();
        assert_eq!(fx.plan.disarm(), 1);
        assert_eq!(e.blobs().requests().retries - retries, 1);
        assert_identical(e, &id, &data).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_write_error_that_persists_exhausts_the_retries() {
    bounded(async {
        let fx = fixture();
        let spec = FaultSpec::new(Fault::WriteError, keys::PACKS)
            .transient()
            .every_time();
        let e = &fx.engine;
        let data = noise(300_000, 4);
        fx.plan.arm(spec);
        let err = deposit(e, &data, 64 << 10).await.unwrap_err();
        assert!(matches!(err, EngineError::Blob(_)), "{err}");
        assert_eq!(fx.plan.disarm(), 1 + RETRIES as u64, "each attempt failed");
        assert!(artifacts(e).is_empty());
        let id = deposit(e, &data, 64 << 10).await.unwrap();
        assert_identical(e, &id, &data).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_error_in_an_upload_batch_keeps_the_session_usable() {
    bounded(async {
        let fx = fixture();
        let e = &fx.engine;
        let admin = Principal::Admin;
        let data = noise(400_000, 5);
        let chunks = chunks_of(&data);
        let ids: Vec<Digest> = chunks.iter().map(|c| Digest::of(c)).collect();
        let view = e
            .create_upload(EXP, &admin, SessionRequest::default())
            .await
            .unwrap();
        let sid = view.id;

        for spec in [
            FaultSpec::new(Fault::WriteError, keys::PACKS),
            FaultSpec::new(Fault::CloseError, keys::PACKS),
        ] {
            fx.plan.arm(spec.clone());
            let mut batch = e.begin_chunk_batch(EXP, &admin, &sid).await.unwrap();
            let res = match batch.push(frames(&chunks)).await {
                Ok(()) => batch.finish().await,
                Err(err) => Err(err),
            };
            let err = res.unwrap_err();
            assert!(matches!(err, EngineError::Blob(_)), "{spec:?}: {err}");
            assert_eq!(fx.plan.disarm(), 1, "{spec:?}");
            // The session lives on and received nothing.
            let missing = e.upload_missing(EXP, &admin, &sid, ids.clone()).await;
            assert_eq!(missing.unwrap(), ids, "{spec:?}: all chunks still missing");
            assert!(
                e.meta()
                    .upload_chunks(&sid, &ids)
                    .unwrap()
                    .iter()
                    .all(Option::is_none),
                "{spec:?}: no chunk pinned"
            );
            for id in &ids {
                assert!(e.meta().chunk(id).unwrap().is_none(), "{spec:?}: indexed");
            }
        }

        let mut batch = e.begin_chunk_batch(EXP, &admin, &sid).await.unwrap();
        batch.push(frames(&chunks)).await.unwrap();
        let outcome = batch.finish().await.unwrap();
        assert_eq!(outcome.received, chunks.len() as u64);
        assert!(
            e.upload_missing(EXP, &admin, &sid, ids.clone())
                .await
                .unwrap()
                .is_empty()
        );

        let commit = || CommitRequest {
            chunks: manifest_entries(&chunks),
            blake3: Digest::of(&data),
            content_type: None,
            filename: None,
        };
        // The commit reads the content back (verified) and writes the
        // manifest: a fault in either fails it and records nothing.
        for spec in [
            FaultSpec::new(Fault::ReadBitFlip { at: 100 }, keys::PACKS),
            FaultSpec::new(Fault::ShortRead, keys::PACKS),
            FaultSpec::new(Fault::WriteError, keys::MANIFESTS),
        ] {
            fx.plan.arm(spec.clone());
            let err = e
                .commit_upload(EXP, &admin, &sid, commit())
                .await
                .unwrap_err();
            assert!(
                matches!(err, EngineError::Integrity(_) | EngineError::Blob(_)),
                "{spec:?}: {err}"
            );
            assert_eq!(fx.plan.disarm(), 1, "{spec:?}");
            assert!(artifacts(e).is_empty(), "{spec:?}: nothing recorded");
            e.upload_status(EXP, &admin, &sid, None, 10)
                .await
                .expect("the session is still live");
            // A readback that proved a copy bad marked it at once (heal at
            // once): the session reports it missing, and sending it again
            // stores a fresh copy — what a client does after a failed commit.
            let missing = e
                .upload_missing(EXP, &admin, &sid, ids.clone())
                .await
                .unwrap();
            if !missing.is_empty() {
                let again: Vec<Vec<u8>> = chunks
                    .iter()
                    .filter(|c| missing.contains(&Digest::of(c)))
                    .cloned()
                    .collect();
                let mut batch = e.begin_chunk_batch(EXP, &admin, &sid).await.unwrap();
                batch.push(frames(&again)).await.unwrap();
                batch.finish().await.unwrap();
            }
        }

        let receipt = e.commit_upload(EXP, &admin, &sid, commit()).await.unwrap();
        assert_identical(e, &receipt.id.to_string(), &data).await;
        assert_manifest_object_complete(e, &record(e, &receipt.id.to_string()).await).await;
    })
    .await
}
