//! The writer lease protocol (`blobs/lease.rs`) on every backend: memory,
//! fs and a real S3 server (SeaweedFS, see `support::blobs`; S3 cases run in
//! a child process holding the credentials, like `blobs_suite.rs`).
//!
//! Cases: a second holder is refused with the holder named; an expired
//! lease is taken over by exactly one of many racing takers and the old
//! holder learns it lost; a heartbeat keeps a lease past its duration; a
//! released lease is free at once; the same host and data directory take a
//! live lease over (their metadata lock proves the earlier holder gone); an
//! empty or torn generation (a process killed while writing it) is taken
//! over at once from the data directory that wrote it, and by another only
//! once it is a lease duration old.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::support::blobs::{in_child, run_in_child, s3_server};
use eden_cas::blobs::backend::S3Options;
use eden_cas::blobs::lease::{self, Holder, Lease, LeaseError, LeaseSettings};
use eden_cas::blobs::{Backend, BlobConfig, BlobStore};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Memory,
    Fs,
    S3,
}

struct Ctx {
    kind: Kind,
    dir: tempfile::TempDir,
}

impl Ctx {
    /// One store handle; clones share the backend (memory included).
    fn store(&self) -> BlobStore {
        let backend = match self.kind {
            Kind::Memory => Backend::Memory,
            Kind::Fs => Backend::Fs {
                root: self.dir.path().join("blobs"),
            },
            Kind::S3 => {
                let s = s3_server().expect("S3 case without a server");
                Backend::S3(S3Options {
                    bucket: s.bucket.clone(),
                    prefix: format!(
                        "lease/{}",
                        ulid::Ulid::new().to_string().to_ascii_lowercase()
                    ),
                    endpoint: Some(s.endpoint.clone()),
                    region: "us-east-1".into(),
                    path_style: true,
                    storage_class: None,
                })
            }
        };
        let mut cfg = BlobConfig::new(backend);
        cfg.timeout = Duration::from_secs(30);
        BlobStore::open(&cfg).expect("open blob store")
    }

    /// A holder with its own data directory.
    fn holder(&self, name: &str) -> Holder {
        let dir: PathBuf = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Holder::this_process("serve", &dir)
    }
}

const SHORT: LeaseSettings = LeaseSettings {
    duration: Duration::from_millis(1500),
    heartbeat: Duration::from_millis(300),
};

/// Lease of the takers in the takeover race: outlasts the whole race.
const TAKER: LeaseSettings = LeaseSettings {
    duration: Duration::from_secs(60),
    heartbeat: Duration::from_secs(10),
};

fn run<F: Future<Output = ()>>(kind: Kind, case: fn(Ctx) -> F) {
    if kind == Kind::S3 {
        assert!(
            in_child(),
            "run `cargo test --test blobs blobs_lease::s3::` instead"
        );
    }
    let ctx = Ctx {
        kind,
        dir: tempfile::tempdir().expect("temp dir"),
    };
    crate::support::runtime().block_on(case(ctx));
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod memory { $( #[test] fn $case() { super::run(super::Kind::Memory, super::cases::$case) } )* }
        mod fs { $( #[test] fn $case() { super::run(super::Kind::Fs, super::cases::$case) } )* }
        mod s3 { $( #[test] fn $case() { super::run_in_child(concat!("blobs_lease::s3_in_child::", stringify!($case))) } )* }
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
    second_holder_is_refused_with_the_holder_named,
    expired_lease_goes_to_exactly_one_taker,
    heartbeat_keeps_the_lease,
    release_frees_it_at_once,
    same_data_directory_takes_over,
    broken_generation_of_this_data_directory_is_taken_over_at_once,
    broken_generation_of_another_directory_waits_for_its_age,
);

/// The object key of a lease generation.
fn key(generation: u64) -> String {
    format!("{}{generation:020}.json", lease::LEASE_PREFIX)
}

/// Leaves `bytes` at `key`, as a process killed between creating the
/// object and writing its body (or mid-renewal) does on fs.
async fn tear(s: &BlobStore, key: &str, bytes: &'static [u8]) {
    s.delete(key).await.unwrap();
    s.put_new(key, Bytes::from_static(bytes)).await.unwrap();
}

/// Keys under the lease prefix.
async fn lease_keys(s: &BlobStore) -> Vec<String> {
    let mut keys: Vec<String> = s
        .list(lease::LEASE_PREFIX)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    keys
}

mod cases {
    use super::*;

    pub async fn second_holder_is_refused_with_the_holder_named(ctx: Ctx) {
        let s = ctx.store();
        let a = Lease::acquire(&s, ctx.holder("a"), SHORT).await.unwrap();
        assert_eq!(a.generation(), 1);
        let err = Lease::acquire(&s, ctx.holder("b"), SHORT)
            .await
            .unwrap_err();
        let LeaseError::Held { record, .. } = &err else {
            panic!("not refused for the lease: {err}");
        };
        assert_eq!(record.holder, ctx.holder("a"));
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains(&ctx.holder("a").data_dir), "{msg}");
        a.check().await.unwrap();
    }

    pub async fn expired_lease_goes_to_exactly_one_taker(ctx: Ctx) {
        let s = ctx.store();
        let old = Lease::acquire(&s, ctx.holder("old"), SHORT).await.unwrap();
        tokio::time::sleep(SHORT.duration + Duration::from_millis(200)).await;
        assert!(
            old.is_lost(),
            "the holder fences itself before takers may start"
        );
        let takers: Vec<_> = (0..6)
            .map(|i| {
                let s = s.clone();
                let h = ctx.holder(&format!("taker-{i}"));
                // The takers' own lease is long: on a loaded machine the
                // losers' attempts may outlast a short one, and then a
                // second takeover would be legitimate, not a double win.
                tokio::spawn(async move { Lease::acquire(&s, h, TAKER).await })
            })
            .collect();
        let mut won = Vec::new();
        for t in takers {
            match t.await.unwrap() {
                Ok(l) => won.push(l),
                Err(LeaseError::Held { .. }) => {}
                Err(e) => panic!("unexpected: {e}"),
            }
        }
        assert_eq!(won.len(), 1, "exactly one taker wins");
        assert_eq!(won[0].generation(), 2);
        assert!(matches!(old.check().await, Err(LeaseError::Lost(_))));
        assert!(matches!(old.renew().await, Err(LeaseError::Lost(_))));
        won[0].check().await.unwrap();
        let current = lease::current(&s).await.unwrap().unwrap();
        assert_eq!(current.generation, 2);
    }

    pub async fn heartbeat_keeps_the_lease(ctx: Ctx) {
        let s = ctx.store();
        // Roomier than SHORT: a loaded test machine may answer slowly.
        let settings = LeaseSettings {
            duration: Duration::from_secs(3),
            heartbeat: Duration::from_millis(500),
        };
        let a = Lease::acquire(&s, ctx.holder("a"), settings).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let beat = a.spawn_heartbeat(move |e| {
            let _ = tx.send(e.to_string());
        });
        tokio::time::sleep(settings.duration * 2).await;
        if let Ok(why) = rx.try_recv() {
            panic!("lost while renewing: {why}");
        }
        assert!(!a.is_lost());
        a.check().await.unwrap();
        assert!(matches!(
            Lease::acquire(&s, ctx.holder("b"), SHORT).await,
            Err(LeaseError::Held { .. })
        ));
        beat.abort();
    }

    pub async fn release_frees_it_at_once(ctx: Ctx) {
        let s = ctx.store();
        let a = Lease::acquire(&s, ctx.holder("a"), SHORT).await.unwrap();
        a.release().await;
        assert!(a.is_lost(), "a released lease is not held");
        let b = Lease::acquire(&s, ctx.holder("b"), SHORT).await.unwrap();
        assert_eq!(b.generation(), 2);
        assert!(a.check().await.is_err());
    }

    pub async fn same_data_directory_takes_over(ctx: Ctx) {
        let s = ctx.store();
        let a = Lease::acquire(&s, ctx.holder("same"), SHORT).await.unwrap();
        let b = Lease::acquire(&s, ctx.holder("same"), SHORT).await.unwrap();
        assert_eq!(b.generation(), 2);
        assert!(matches!(a.check().await, Err(LeaseError::Lost(_))));
        b.check().await.unwrap();
    }

    pub async fn broken_generation_of_this_data_directory_is_taken_over_at_once(ctx: Ctx) {
        let s = ctx.store();
        let torn: [&'static [u8]; 2] = [b"", br#"{"version":1,"generation":"#];
        for bytes in torn {
            let a = Lease::acquire(&s, ctx.holder("same"), SHORT).await.unwrap();
            let generation = a.generation();
            // The process dies (no release) with its generation half written.
            drop(a);
            tear(&s, &key(generation), bytes).await;
            // Another data directory may not take it: for all it knows, a
            // live process is still writing it.
            let err = Lease::acquire(&s, ctx.holder("other"), SHORT)
                .await
                .unwrap_err();
            let LeaseError::Unreadable { key: named, .. } = &err else {
                panic!("not refused as unreadable: {err}");
            };
            assert_eq!(named, &key(generation));
            // The next start on the data directory that wrote it (its
            // metadata lock proves that process gone) takes it over at once.
            let started = Instant::now();
            let b = Lease::acquire(&s, ctx.holder("same"), SHORT).await.unwrap();
            assert!(started.elapsed() < SHORT.duration, "waited for expiry");
            assert_eq!(b.generation(), generation + 1);
            assert_eq!(lease_keys(&s).await, [key(generation + 1)]);
            b.check().await.unwrap();
            b.release().await;
        }
    }

    pub async fn broken_generation_of_another_directory_waits_for_its_age(ctx: Ctx) {
        let s = ctx.store();
        // Written by a process on another data directory that died, or that
        // is still writing it: nothing here tells which.
        s.put_new(&key(1), Bytes::new()).await.unwrap();
        let err = Lease::acquire(&s, ctx.holder("b"), SHORT)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, LeaseError::Unreadable { key: k, .. } if *k == key(1)),
            "{err}"
        );
        assert!(err.to_string().contains("lease duration old"), "{err}");
        // A lease duration (plus a second of timestamp rounding) later, no
        // live holder can be behind it any more.
        tokio::time::sleep(SHORT.duration + Duration::from_millis(1500)).await;
        let after = Lease::acquire(&s, ctx.holder("b"), SHORT).await;
        if ctx.kind == Kind::Memory {
            // No modification time to judge the age by: still refused.
            assert!(matches!(after, Err(LeaseError::Unreadable { .. })));
        } else {
            let b = after.unwrap();
            assert_eq!(b.generation(), 2);
            assert_eq!(lease_keys(&s).await, [key(2)]);
        }
    }
}
