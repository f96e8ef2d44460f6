//! One storage suite, every backend: the same cases run against memory, fs
//! and a real S3 server (SeaweedFS on 127.0.0.1, see `blobs_support`).
//!
//! Cases: blob round trip (single and multipart writes), create-only writes
//! (sequential and racing), ranged reads, the not-found mapping, engine
//! deposit/fetch round trip, dedup, concurrent deposits, the chunk cache,
//! request counts and the startup probe. S3 cases run in a child process
//! (`s3::<case>` starts `s3_in_child::<case>`) because eden-cas takes
//! credentials only from the environment. S3-only cases at the end cover
//! what needs a network service: a missing bucket, an unreachable endpoint,
//! and transient failures during a deposit (refused credentials and missing
//! permissions are covered end to end in `blobs_startup.rs`).

mod blobs_support;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use blobs_support::{FlakyProxy, closed_port, in_child, run_in_child, s3_server};
use bytes::Bytes;
use eden_cas::auth::token::Secret;
use eden_cas::blobs::backend::S3Options;
use eden_cas::blobs::{
    Backend, BlobConfig, BlobError, BlobStore, PutOutcome, keys, part_bytes_for, probe,
};
use eden_cas::engine::ingest::parse_artifact_id;
use eden_cas::engine::{DepositRequest, Engine, EngineConfig, EngineError};
use eden_cas::meta::Meta;
use futures_util::StreamExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Memory,
    Fs,
    S3,
}

/// One case's world: a backend of `kind` under a fresh directory or prefix.
struct Ctx {
    kind: Kind,
    dir: tempfile::TempDir,
    prefix: String,
}

impl Ctx {
    fn s3_options(&self, bucket: &str, endpoint: &str) -> S3Options {
        S3Options {
            bucket: bucket.into(),
            prefix: self.prefix.clone(),
            endpoint: Some(endpoint.into()),
            region: "us-east-1".into(),
            path_style: true,
            storage_class: None,
        }
    }

    fn config(&self) -> BlobConfig {
        let backend = match self.kind {
            Kind::Memory => Backend::Memory,
            Kind::Fs => Backend::Fs {
                root: self.dir.path().join("blobs"),
            },
            Kind::S3 => {
                let s = s3_server().expect("S3 case without a server");
                Backend::S3(self.s3_options(&s.bucket, &s.endpoint))
            }
        };
        let mut cfg = BlobConfig::new(backend);
        cfg.part_bytes = 5 << 20;
        cfg.timeout = Duration::from_secs(30);
        // On by default only for object stores; the suite checks it everywhere.
        cfg.chunk_cache_bytes = 64 << 20;
        cfg
    }

    fn store(&self) -> BlobStore {
        BlobStore::open(&self.config()).expect("open blob store")
    }

    fn engine_with(&self, blobs: BlobStore, pack_target_bytes: u64) -> Arc<Engine> {
        let meta = Meta::open(&self.dir.path().join(format!(
            "meta-{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        )))
        .expect("open meta");
        let cfg = EngineConfig {
            pack_target_bytes,
            max_artifact_bytes: 1 << 30,
            ..EngineConfig::default()
        };
        Engine::new(meta, blobs, cfg, Secret::new("suite-admin-token-0123")).expect("engine")
    }

    fn engine(&self, pack_target_bytes: u64) -> Arc<Engine> {
        let mut cfg = self.config();
        cfg.part_bytes = part_bytes_for(pack_target_bytes);
        self.engine_with(
            BlobStore::open(&cfg).expect("open blob store"),
            pack_target_bytes,
        )
    }
}

fn run<F: Future<Output = ()>>(kind: Kind, case: fn(Ctx) -> F) {
    if kind == Kind::S3 {
        assert!(
            in_child(),
            "s3_in_child::* run in a child started by the matching s3::* test, which supplies \
             the server and its credentials; run `cargo test --test blobs_suite s3::` instead"
        );
    }
    let ctx = Ctx {
        kind,
        dir: tempfile::tempdir().expect("temp dir"),
        prefix: format!(
            "suite/{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        ),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(case(ctx));
}

/// Generates `memory::<case>`, `fs::<case>`, `s3::<case>` (which runs
/// `s3_in_child::<case>` in a child process) for every case.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod memory { $( #[test] fn $case() { super::run(super::Kind::Memory, super::cases::$case) } )* }
        mod fs { $( #[test] fn $case() { super::run(super::Kind::Fs, super::cases::$case) } )* }
        mod s3 { $( #[test] fn $case() { super::run_in_child(concat!("s3_in_child::", stringify!($case))) } )* }
        mod s3_in_child {
            $(
                #[test]
                #[ignore = "run by s3::<case> in a child process holding the S3 credentials"]
                fn $case() { super::run(super::Kind::S3, super::cases::$case) }
            )*
        }
    };
}

suite!(
    blob_round_trip,
    multipart_round_trip,
    create_only,
    create_only_races,
    ranged_reads,
    not_found_mapping,
    deposit_round_trip_and_ranges,
    dedup,
    concurrent_deposits,
    chunk_cache,
    request_counts,
    startup_probe,
);

/// Deterministic pseudo-random bytes (xorshift).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 29) as u8
        })
        .collect()
}

const EXP: &str = "exp_00000000000000000000000001";

fn req() -> DepositRequest {
    DepositRequest {
        experiment: EXP.into(),
        created_by: "admin".into(),
        content_type: "application/octet-stream".into(),
        filename: None,
        expires_at: None,
    }
}

async fn deposit(engine: &Arc<Engine>, data: &[u8]) -> Result<String, EngineError> {
    let mut ingest = engine.begin_ingest()?;
    for part in data.chunks(1 << 20) {
        ingest.push(Bytes::copy_from_slice(part)).await?;
    }
    let prepared = ingest.finish().await?;
    Ok(engine.commit_artifact(prepared, req()).await?.id)
}

async fn fetch(engine: &Arc<Engine>, id: &str, start: u64, end: u64) -> Vec<u8> {
    let rec = engine
        .artifact(EXP, &parse_artifact_id(id).expect("id"))
        .await
        .expect("artifact lookup")
        .expect("artifact exists");
    let mut s = engine.read_range(&rec, start, end);
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b.expect("verified bytes"));
    }
    out
}

async fn pack_bytes(store: &BlobStore) -> u64 {
    store
        .list(keys::PACKS)
        .await
        .expect("list packs")
        .iter()
        .map(|(_, n)| n)
        .sum()
}

mod cases {
    use super::*;

    pub async fn blob_round_trip(ctx: Ctx) {
        let s = ctx.store();
        let body = Bytes::from(noise(100_000, 1));
        assert_eq!(
            s.put_new("packs/aa/one.pack", body.clone()).await.unwrap(),
            PutOutcome::Created
        );
        assert_eq!(s.read("packs/aa/one.pack").await.unwrap(), body);
        assert_eq!(s.size("packs/aa/one.pack").await.unwrap(), 100_000);
        assert_eq!(
            s.read_range("packs/aa/one.pack", 99_990, 10).await.unwrap(),
            body.slice(99_990..)
        );
        let empty = Bytes::new();
        assert_eq!(
            s.put_new("manifests/00/empty.manifest", empty)
                .await
                .unwrap(),
            PutOutcome::Created
        );
        assert_eq!(s.size("manifests/00/empty.manifest").await.unwrap(), 0);
        let listed = s.list(keys::PACKS).await.unwrap();
        assert_eq!(listed, vec![("packs/aa/one.pack".to_string(), 100_000)]);
        s.delete("packs/aa/one.pack").await.unwrap();
        s.delete("packs/aa/one.pack").await.unwrap(); // absent is fine
        assert!(matches!(
            s.read("packs/aa/one.pack").await,
            Err(BlobError::NotFound(_))
        ));
    }

    pub async fn multipart_round_trip(ctx: Ctx) {
        // 12 MiB in 1 MiB writes with 5 MiB parts: three parts on S3.
        let s = ctx.store();
        let data = noise(12 << 20, 2);
        let mut w = s.create("packs/bb/big.pack").await.unwrap();
        for piece in data.chunks(1 << 20) {
            w.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        assert_eq!(w.written(), 12 << 20);
        w.close().await.unwrap();
        assert_eq!(s.size("packs/bb/big.pack").await.unwrap(), 12 << 20);
        assert_eq!(&s.read("packs/bb/big.pack").await.unwrap()[..], &data[..]);
        let r = s.requests();
        if ctx.kind == Kind::S3 {
            assert_eq!((r.put, r.post), (3, 2), "{r:?}");
        } else {
            assert_eq!((r.put, r.post), (1, 0), "{r:?}");
        }
    }

    pub async fn create_only(ctx: Ctx) {
        let s = ctx.store();
        let first = Bytes::from_static(b"first version");
        assert_eq!(
            s.put_new("packs/cc/x.pack", first.clone()).await.unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            s.put_new("packs/cc/x.pack", Bytes::from_static(b"second"))
                .await
                .unwrap(),
            PutOutcome::AlreadyPresent
        );
        // A streaming write over an existing key is refused by close at the
        // latest, and leaves the object alone.
        let res = async {
            let mut w = s.create("packs/cc/x.pack").await?;
            w.write(Bytes::from_static(b"third")).await?;
            w.close().await
        }
        .await;
        assert!(matches!(res, Err(BlobError::AlreadyExists(_))), "{res:?}");
        // Same for a multipart write (S3 checks at completion).
        let big = noise(11 << 20, 3);
        s.put_new("packs/cc/big.pack", Bytes::from(big.clone()))
            .await
            .unwrap();
        let res = async {
            let mut w = s.create("packs/cc/big.pack").await?;
            for piece in noise(11 << 20, 4).chunks(1 << 20) {
                w.write(Bytes::copy_from_slice(piece)).await?;
            }
            w.close().await
        }
        .await;
        assert!(matches!(res, Err(BlobError::AlreadyExists(_))), "{res:?}");
        assert_eq!(s.read("packs/cc/x.pack").await.unwrap(), first);
        assert_eq!(&s.read("packs/cc/big.pack").await.unwrap()[..], &big[..]);
    }

    pub async fn create_only_races(ctx: Ctx) {
        let s = ctx.store();
        for round in 0..5 {
            let key = format!("packs/dd/race-{round}.pack");
            let tasks: Vec<_> = (0..8u8)
                .map(|i| {
                    let (s, key) = (s.clone(), key.clone());
                    tokio::spawn(async move {
                        let body = Bytes::from(vec![i; 4096]);
                        (i, s.put_new(&key, body).await.unwrap())
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for t in tasks {
                let (i, outcome) = t.await.unwrap();
                if outcome == PutOutcome::Created {
                    winners.push(i);
                }
            }
            assert_eq!(winners.len(), 1, "round {round}: exactly one writer wins");
            assert_eq!(
                s.read(&key).await.unwrap(),
                Bytes::from(vec![winners[0]; 4096])
            );
        }
    }

    pub async fn ranged_reads(ctx: Ctx) {
        let s = ctx.store();
        let data = noise(1 << 20, 5);
        s.put_new("packs/ee/r.pack", Bytes::from(data.clone()))
            .await
            .unwrap();
        for (off, len) in [(0u64, 1u64), (1, 4095), (4096, 65536), (1_000_000, 48_576)] {
            let got = s.read_range("packs/ee/r.pack", off, len).await.unwrap();
            assert_eq!(&got[..], &data[off as usize..(off + len) as usize]);
        }
        assert!(
            s.read_range("packs/ee/r.pack", 5, 0)
                .await
                .unwrap()
                .is_empty()
        );
        let before = s.requests().get;
        let past_end = s.read_range("packs/ee/r.pack", (1 << 20) - 10, 20).await;
        assert!(
            matches!(past_end, Err(BlobError::Io(_)) | Err(BlobError::Backend(_))),
            "a range past the end is an error, never a not-found: {past_end:?}"
        );
        assert_eq!(s.requests().get, before + 1, "one request per ranged read");
    }

    pub async fn not_found_mapping(ctx: Ctx) {
        let s = ctx.store();
        assert!(matches!(
            s.read("packs/ff/missing.pack").await,
            Err(BlobError::NotFound(_))
        ));
        assert!(matches!(
            s.read_range("packs/ff/missing.pack", 0, 10).await,
            Err(BlobError::NotFound(_))
        ));
        assert!(matches!(
            s.size("packs/ff/missing.pack").await,
            Err(BlobError::NotFound(_))
        ));
        assert!(s.list("packs/ff/").await.unwrap().is_empty());
    }

    pub async fn deposit_round_trip_and_ranges(ctx: Ctx) {
        let engine = ctx.engine(2 << 20);
        for size in [0usize, 1, 65_536, 7 << 20] {
            let data = noise(size, size as u64 + 6);
            let id = deposit(&engine, &data).await.unwrap();
            assert_eq!(fetch(&engine, &id, 0, size as u64).await, data);
            if size > 1 {
                let n = size as u64;
                for (a, b) in [(0, n / 3), (n / 3, n / 3 + 1), (n / 2, n), (n - 1, n)] {
                    assert_eq!(
                        fetch(&engine, &id, a, b).await,
                        &data[a as usize..b as usize],
                        "range {a}..{b} of {size}"
                    );
                }
            }
        }
        assert!(pack_bytes(engine.blobs()).await >= 7 << 20);
    }

    pub async fn dedup(ctx: Ctx) {
        let engine = ctx.engine(2 << 20);
        let data = noise(5 << 20, 7);
        let a = deposit(&engine, &data).await.unwrap();
        let stored = pack_bytes(engine.blobs()).await;
        let before = engine.blobs().requests();
        let b = deposit(&engine, &data).await.unwrap();
        let cost = engine.blobs().requests().since(&before);
        assert_ne!(a, b, "two deposits, two ids");
        assert_eq!(
            pack_bytes(engine.blobs()).await,
            stored,
            "no new pack bytes"
        );
        // At most the manifest's create-only PUT (refused: it is there; fs
        // refuses it before any write).
        assert!(
            cost.put <= 1 && cost.post == 0,
            "a stored deposit writes no pack: {cost:?}"
        );
        assert_eq!(fetch(&engine, &b, 0, data.len() as u64).await, data);
    }

    pub async fn concurrent_deposits(ctx: Ctx) {
        let engine = ctx.engine(2 << 20);
        let shared = noise(3 << 20, 8);
        // The shared part is stored once first; racing deposits may each
        // store a chunk none of them has finished yet (GC reclaims that), so
        // dedup is measured against content already stored.
        deposit(&engine, &shared).await.unwrap();
        let tasks: Vec<_> = (0..4u64)
            .map(|i| {
                let engine = Arc::clone(&engine);
                let mut data = shared.clone();
                data.extend_from_slice(&noise(1 << 20, 100 + i));
                tokio::spawn(async move {
                    let id = deposit(&engine, &data).await.unwrap();
                    (id, data)
                })
            })
            .collect();
        let mut total = shared.len() as u64;
        for t in tasks {
            let (id, data) = t.await.unwrap();
            total += data.len() as u64;
            assert_eq!(fetch(&engine, &id, 0, data.len() as u64).await, data);
        }
        let stored = pack_bytes(engine.blobs()).await;
        assert!(
            stored < total / 2,
            "the shared 3 MiB is stored once, not five times ({stored} of {total})"
        );
    }

    pub async fn chunk_cache(ctx: Ctx) {
        let engine = ctx.engine(2 << 20);
        let data = noise(3 << 20, 9);
        let id = deposit(&engine, &data).await.unwrap();
        assert_eq!(fetch(&engine, &id, 0, data.len() as u64).await, data);
        let before = engine.blobs().requests();
        let hits = engine
            .stats
            .chunk_cache_hits
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(fetch(&engine, &id, 0, data.len() as u64).await, data);
        let cost = engine.blobs().requests().since(&before);
        assert_eq!(
            cost.get, 0,
            "a cached artifact is served without a read: {cost:?}"
        );
        assert!(
            engine
                .stats
                .chunk_cache_hits
                .load(std::sync::atomic::Ordering::Relaxed)
                > hits
        );
        assert!(engine.blobs().chunk_cache().bytes() <= 64 << 20);
    }

    pub async fn request_counts(ctx: Ctx) {
        // 30 MiB of new data in 8 MiB packs, 5 MiB parts on object stores.
        let engine = ctx.engine(8 << 20);
        let part = part_bytes_for(8 << 20) as u64;
        let data = noise(30 << 20, 10);
        let before = engine.blobs().requests();
        let id = deposit(&engine, &data).await.unwrap();
        let cost = engine.blobs().requests().since(&before);
        let packs = engine.blobs().list(keys::PACKS).await.unwrap();
        assert!(packs.len() >= 2, "{packs:?}");
        let (mut puts, mut posts) = (1, 0); // the manifest: one small PUT
        for (_, size) in &packs {
            if ctx.kind == Kind::S3 && *size > part {
                puts += size.div_ceil(part);
                posts += 2;
            } else {
                puts += 1;
            }
        }
        assert_eq!(
            (cost.put, cost.post),
            (puts, posts),
            "{cost:?} for {packs:?}"
        );
        if ctx.kind == Kind::S3 {
            assert!(posts > 0, "8 MiB packs exercise multipart uploads");
        }
        let before = engine.blobs().requests();
        assert_eq!(fetch(&engine, &id, 0, data.len() as u64).await, data);
        let read = engine.blobs().requests().since(&before);
        // Deposits do not fill the chunk cache, so this fetch reads all of
        // it, in coalesced ranges of up to 8 MiB, not one request per chunk
        // (30 MiB is ~480 chunks).
        assert!(
            read.get >= packs.len() as u64 && read.get <= 12,
            "ranged reads, not one per chunk: {read:?} for {} packs",
            packs.len()
        );
    }

    pub async fn startup_probe(ctx: Ctx) {
        let report = probe::check(&ctx.config()).await.unwrap();
        assert!(report.conditional_writes, "{report:?}");
        assert!(report.delete_allowed, "{report:?}");
        if ctx.kind != Kind::Memory {
            let left = ctx.store().list(probe::PROBE_PREFIX).await.unwrap();
            assert!(left.is_empty(), "probe objects are deleted: {left:?}");
        }
    }
}

// ---- S3-only cases: what needs a network service. ----

macro_rules! s3_only {
    ($($case:ident),* $(,)?) => {
        mod s3_only { $( #[test] fn $case() { super::run_in_child(concat!("s3_only_in_child::", stringify!($case))) } )* }
        mod s3_only_in_child {
            $(
                #[test]
                #[ignore = "run by s3_only::<case> in a child process holding the S3 credentials"]
                fn $case() { super::run(super::Kind::S3, super::s3_cases::$case) }
            )*
        }
    };
}

s3_only!(
    missing_bucket_is_not_a_not_found,
    unreachable_endpoint_is_not_a_not_found,
    transient_failures_are_retried,
    a_deposit_that_cannot_finish_leaves_nothing_visible,
);

mod s3_cases {
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
            err.contains("bucket `eden-no-such-bucket` does not exist")
                && err.contains("blob-store"),
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
            let mut cfg =
                BlobConfig::new(Backend::S3(ctx.s3_options(&server.bucket, &proxy.endpoint)));
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
}
