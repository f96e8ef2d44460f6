//! S3-only cases: what needs a network service (see `blobs_suite.rs`).

use super::*;

fn store_at(ctx: &Ctx, bucket: &str, endpoint: &str, retries: usize) -> BlobStore {
    let mut cfg = BlobConfig::new(Backend::S3(ctx.s3_options(bucket, endpoint)));
    cfg.retries = retries;
    cfg.part_bytes = 5 << 20;
    cfg.timeout = Duration::from_secs(10);
    BlobStore::open(&cfg).unwrap()
}

pub async fn missing_bucket_is_not_a_not_found(ctx: Ctx) {
    let server = s3_server().unwrap();
    let s = store_at(&ctx, "eden-no-such-bucket", &server.endpoint, 0);
    // Reads (GET) carry the error code, so a pack read never mistakes a
    // missing bucket for a missing object. (A HEAD has no body to tell
    // them apart; the startup probe rules a missing bucket out.)
    let res = s.read("packs/aa/x.pack").await;
    assert!(matches!(res, Err(BlobError::Backend(_))), "{res:?}");
    let res = s.read_range("packs/aa/x.pack", 0, 10).await;
    assert!(matches!(res, Err(BlobError::Backend(_))), "{res:?}");
    let res = s.put_new("packs/aa/x.pack", Bytes::from_static(b"x")).await;
    assert!(matches!(res, Err(BlobError::Backend(_))), "{res:?}");
    let err = probe::probe(&s).await.unwrap_err().to_string();
    assert!(
        err.contains("bucket `eden-no-such-bucket` does not exist") && err.contains("blob-store"),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
}

pub async fn unreachable_endpoint_is_not_a_not_found(ctx: Ctx) {
    let server = s3_server().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let s = store_at(&ctx, &server.bucket, &endpoint, 1);
    let res = s.read("packs/aa/x.pack").await;
    assert!(matches!(res, Err(BlobError::Backend(_))), "{res:?}");
    let err = probe::probe(&s).await.unwrap_err().to_string();
    assert!(
        err.contains("cannot reach") && err.contains("s3-endpoint"),
        "{err}"
    );
}

pub async fn transient_failures_are_retried(ctx: Ctx) {
    // Connections are cut in the middle of uploads, every `step` bytes of
    // request traffic; the retry layer reconnects and resends, and each
    // deposit succeeds, byte for byte. Run 1: ~4 MiB packs written with
    // one PUT each, cut every 5 MiB. Run 2: ~10 MiB packs written as
    // multipart uploads of 5 MiB parts, cut every 6 MiB (each attempt is
    // smaller than the step, so a retry always has room to finish).
    let server = s3_server().unwrap();
    for (pack_target, step, seed) in [(2u64 << 20, 5u64 << 20, 11u64), (8 << 20, 6 << 20, 13)] {
        let proxy = FlakyProxy::start(&server.endpoint, step);
        let mut cfg = BlobConfig::new(Backend::S3(ctx.s3_options(&server.bucket, &proxy.endpoint)));
        cfg.retries = 8;
        cfg.part_bytes = part_bytes_for(pack_target);
        let engine = ctx.engine_with(BlobStore::open(&cfg).unwrap(), pack_target);
        let data = noise(20 << 20, seed);
        let id = deposit(&engine, &data).await.unwrap();
        assert_eq!(fetch(&engine, &id, 0, data.len() as u64).await, data);
        let r = engine.blobs().requests();
        assert!(
            proxy.cuts.load(std::sync::atomic::Ordering::Relaxed) > 0 && r.retries > 0,
            "the proxy cut connections and the store retried: {r:?}"
        );
        if pack_target > 5 << 20 {
            assert!(r.post > 0, "multipart uploads were exercised: {r:?}");
        }
    }
}

pub async fn a_deposit_that_cannot_finish_leaves_nothing_visible(ctx: Ctx) {
    // A connection is cut every 64 KiB: no pack can be uploaded.
    let server = s3_server().unwrap();
    let proxy = FlakyProxy::start(&server.endpoint, 64 << 10);
    let mut cfg = BlobConfig::new(Backend::S3(ctx.s3_options(&server.bucket, &proxy.endpoint)));
    cfg.retries = 2;
    cfg.part_bytes = part_bytes_for(2 << 20);
    let engine = ctx.engine_with(BlobStore::open(&cfg).unwrap(), 2 << 20);
    let data = noise(6 << 20, 12);
    let res = deposit(&engine, &data).await;
    assert!(res.is_err(), "the deposit fails cleanly");
    // Nothing was committed, and no object is visible under the prefix.
    let deposits = engine
        .stats
        .deposits
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(deposits, 0, "no artifact recorded");
    let direct = store_at(&ctx, &server.bucket, &server.endpoint, 0);
    let left = direct.list("").await.unwrap();
    assert!(left.is_empty(), "no pack or manifest visible: {left:?}");
}
