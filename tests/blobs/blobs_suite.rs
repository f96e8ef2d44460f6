//! One storage suite, every backend: the same cases run against memory, fs,
//! a real S3 server (SeaweedFS), Azure Blob (Azurite) and GCS
//! (gcp-storage-emulator), all on 127.0.0.1 (see `support::blobs`).
//!
//! Cases: blob round trip (single and multipart writes), create-only writes
//! (sequential and racing), ranged reads, the not-found mapping, engine
//! deposit/fetch round trip, dedup, concurrent deposits, the chunk cache,
//! request counts and the startup probe. S3 and Azure cases run in a child
//! process (`s3::<case>` starts `s3_in_child::<case>`, `azblob::<case>`
//! starts `azblob_in_child::<case>`) because eden-cas takes credentials
//! only from the environment; the GCS emulator takes unsigned requests, so
//! `gcs::<case>` runs in this process.
//!
//! Where an emulator lacks what the real service does, [`emulator_gap`]
//! names the cases it cannot run and why; each such case runs
//! [`cases::gap_is_still_there`] instead, which fails once the emulator
//! closes the gap (then remove the entry). Today: the GCS emulator ignores
//! create-only writes, so `gcs::create_only` and `gcs::create_only_races`
//! check that it still does, and `gcs::startup_probe` checks that the probe
//! reports "create-only writes NOT enforced" and goes on.
//!
//! S3-only cases at the end cover what needs a network service: a missing
//! bucket, an unreachable endpoint, and transient failures during a deposit
//! (refused credentials, missing permissions, missing buckets and
//! containers on every service are covered end to end in
//! `blobs_startup.rs`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::support::blobs::counting::CountingProxy;
use crate::support::blobs::emulators::{
    GCS_EMULATOR_GAPS, azurite, gcs_emulator, run_in_azurite_child,
};
use crate::support::blobs::{FlakyProxy, closed_port, in_child, run_in_child, s3_server};
use crate::support::engine::{EXP, engine_over, noise, req, runtime};
use bytes::Bytes;
use eden_cas::blobs::backend::{AzblobOptions, GcsOptions, S3Options};
use eden_cas::blobs::{
    Backend, BlobConfig, BlobError, BlobStore, PutOutcome, keys, part_bytes_for, probe,
};
use eden_cas::engine::ingest::parse_artifact_id;
use eden_cas::engine::{Engine, EngineConfig, EngineError};
use futures_util::StreamExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Memory,
    Fs,
    S3,
    Azblob,
    Gcs,
}

impl Kind {
    /// Whether the service refuses a create-only write over an existing key.
    fn enforces_create_only(self) -> bool {
        self != Kind::Gcs
    }

    /// `(puts, posts)` the service sees for one object of `size` bytes
    /// written with parts of `part` bytes (spelled out here, independently
    /// of the store's own model, which the cases check against it).
    fn write_requests(self, part: u64, size: u64) -> (u64, u64) {
        match self {
            Kind::Memory | Kind::Fs => (1, 0),
            // PutObject, or Create + UploadPart per part + Complete.
            Kind::S3 if size > part => (size.div_ceil(part), 2),
            Kind::S3 => (1, 0),
            // Put Blob, or Put Block per part + Put Block List.
            Kind::Azblob if size > part => (size.div_ceil(part) + 1, 0),
            Kind::Azblob => (1, 0),
            // A resumable session (POST) and one PUT per 8 MiB, whatever the part.
            Kind::Gcs => (size.div_ceil(8 << 20).max(1), 1),
        }
    }
}

/// Cases an emulator cannot run as the real service would, and why.
fn emulator_gap(kind: Kind, case: &str) -> Option<&'static str> {
    match (kind, case) {
        (Kind::Gcs, "create_only" | "create_only_races") => Some(GCS_EMULATOR_GAPS),
        _ => None,
    }
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

    /// The backend, reached through `proxy` (`http://127.0.0.1:PORT`)
    /// instead of the server's own endpoint when given.
    fn backend_via(&self, proxy: Option<&str>) -> Backend {
        let via = |endpoint: &str| match proxy {
            // Keep the path (Azurite's account).
            Some(p) => {
                let path = endpoint
                    .trim_start_matches("http://")
                    .split_once('/')
                    .map(|(_, path)| format!("/{path}"))
                    .unwrap_or_default();
                format!("{p}{path}")
            }
            None => endpoint.to_string(),
        };
        match self.kind {
            Kind::Memory => Backend::Memory,
            Kind::Fs => Backend::Fs {
                root: self.dir.path().join("blobs"),
            },
            Kind::S3 => {
                let s = s3_server().expect("S3 case without a server");
                Backend::S3(self.s3_options(&s.bucket, &via(&s.endpoint)))
            }
            Kind::Azblob => {
                let a = azurite().expect("Azure case without Azurite");
                Backend::Azblob(AzblobOptions {
                    container: a.container.clone(),
                    prefix: self.prefix.clone(),
                    endpoint: via(&a.endpoint),
                    account: Some(a.account.clone()),
                })
            }
            Kind::Gcs => {
                let g = gcs_emulator().expect("GCS case without an emulator");
                Backend::Gcs(GcsOptions {
                    bucket: g.bucket.clone(),
                    prefix: self.prefix.clone(),
                    endpoint: Some(via(&g.endpoint)),
                    storage_class: None,
                    unsigned: true,
                })
            }
        }
    }

    /// The server's endpoint, for network kinds.
    fn endpoint(&self) -> Option<String> {
        match self.kind {
            Kind::Memory | Kind::Fs => None,
            Kind::S3 => s3_server().map(|s| s.endpoint.clone()),
            Kind::Azblob => azurite().map(|a| a.endpoint.clone()),
            Kind::Gcs => gcs_emulator().map(|g| g.endpoint.clone()),
        }
    }

    fn config(&self) -> BlobConfig {
        self.config_via(None)
    }

    fn config_via(&self, proxy: Option<&str>) -> BlobConfig {
        let mut cfg = BlobConfig::new(self.backend_via(proxy));
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
        let meta_dir = self.dir.path().join(format!(
            "meta-{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        ));
        let cfg = EngineConfig {
            pack_target_bytes,
            max_artifact_bytes: 1 << 30,
            ..EngineConfig::default()
        };
        engine_over(&meta_dir, blobs, cfg)
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

fn run<F: Future<Output = ()>>(kind: Kind, name: &str, case: fn(Ctx) -> F) {
    if matches!(kind, Kind::S3 | Kind::Azblob) {
        assert!(
            in_child(),
            "s3_in_child::* and azblob_in_child::* run in a child started by the matching \
             s3::* or azblob::* test, which supplies the server and its credentials; run \
             `cargo test --test blobs blobs_suite::s3::` (or `blobs_suite::azblob::`) instead"
        );
    }
    if kind == Kind::Gcs && gcs_emulator().is_none() {
        return;
    }
    let ctx = Ctx {
        kind,
        dir: tempfile::tempdir().expect("temp dir"),
        prefix: format!(
            "suite/{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        ),
    };
    let rt = runtime();
    match emulator_gap(kind, name) {
        Some(why) => {
            eprintln!("SKIPPED {kind:?}::{name}: {why}; checking that the gap is still there");
            rt.block_on(cases::gap_is_still_there(ctx));
        }
        None => rt.block_on(case(ctx)),
    }
}

/// Generates, for every case, `memory::<case>`, `fs::<case>`, `gcs::<case>`,
/// `s3::<case>` (which runs `s3_in_child::<case>` in a child process) and
/// `azblob::<case>` (which runs `azblob_in_child::<case>`).
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod memory { $( #[test] fn $case() { super::run(super::Kind::Memory, stringify!($case), super::cases::$case) } )* }
        mod fs { $( #[test] fn $case() { super::run(super::Kind::Fs, stringify!($case), super::cases::$case) } )* }
        mod gcs { $( #[test] fn $case() { super::run(super::Kind::Gcs, stringify!($case), super::cases::$case) } )* }
        mod s3 { $( #[test] fn $case() { super::run_in_child(concat!("blobs_suite::s3_in_child::", stringify!($case))) } )* }
        mod s3_in_child {
            $(
                #[test]
                #[ignore = "run by s3::<case> in a child process holding the S3 credentials"]
                fn $case() { super::run(super::Kind::S3, stringify!($case), super::cases::$case) }
            )*
        }
        mod azblob { $( #[test] fn $case() { super::run_in_azurite_child(concat!("blobs_suite::azblob_in_child::", stringify!($case))) } )* }
        mod azblob_in_child {
            $(
                #[test]
                #[ignore = "run by azblob::<case> in a child process holding the Azurite key"]
                fn $case() { super::run(super::Kind::Azblob, stringify!($case), super::cases::$case) }
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

async fn deposit(engine: &Arc<Engine>, data: &[u8]) -> Result<String, EngineError> {
    let mut ingest = engine.begin_ingest()?;
    for part in data.chunks(1 << 20) {
        ingest.push(Bytes::copy_from_slice(part)).await?;
    }
    let prepared = ingest.finish().await?;
    Ok(engine
        .commit_artifact(prepared, req())
        .await?
        .id
        .to_string())
}

async fn fetch(engine: &Arc<Engine>, id: &str, start: u64, end: u64) -> Vec<u8> {
    let rec = engine
        .readable_artifact(
            EXP,
            &eden_cas::auth::Principal::Admin,
            &parse_artifact_id(id).expect("id"),
        )
        .await
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

mod cases;

// ---- S3-only cases: what needs a network service. ----

macro_rules! s3_only {
    ($($case:ident),* $(,)?) => {
        mod s3_only { $( #[test] fn $case() { super::run_in_child(concat!("blobs_suite::s3_only_in_child::", stringify!($case))) } )* }
        mod s3_only_in_child {
            $(
                #[test]
                #[ignore = "run by s3_only::<case> in a child process holding the S3 credentials"]
                fn $case() { super::run(super::Kind::S3, stringify!($case), super::s3_cases::$case) }
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

mod s3_cases;
