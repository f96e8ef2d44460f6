//! The cases every backend runs (see `blobs_suite.rs`).

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
    // S3: 3 parts + 2 POSTs; Azure: 3 blocks + the block list; GCS: one
    // session, two 8 MiB chunks; fs and memory: one write.
    assert_eq!(
        (r.put, r.post),
        ctx.kind.write_requests(5 << 20, 12 << 20),
        "{r:?}"
    );
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
        matches!(
            past_end,
            Err(BlobError::ShortRead { .. }) | Err(BlobError::Io(_)) | Err(BlobError::Backend(_))
        ),
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
    // At most the manifest's create-only write (refused: it is there; fs
    // refuses it before any write).
    let (put, post) = ctx.kind.write_requests(5 << 20, 1);
    assert!(
        cost.put <= put && cost.post <= post,
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
    // 30 MiB of new data in 8 MiB packs, 5 MiB parts on object stores. A
    // service is reached through a proxy that counts what it receives.
    let proxy = ctx.endpoint().map(|e| CountingProxy::start(&e));
    let part = part_bytes_for(8 << 20) as u64;
    let mut cfg = ctx.config_via(proxy.as_ref().map(|p| p.endpoint.as_str()));
    cfg.part_bytes = part as usize;
    let engine = ctx.engine_with(BlobStore::open(&cfg).unwrap(), 8 << 20);
    let data = noise(30 << 20, 10);
    let before = engine.blobs().requests();
    let seen = proxy.as_ref().map(|p| (p.count("PUT"), p.count("POST")));
    let id = deposit(&engine, &data).await.unwrap();
    let cost = engine.blobs().requests().since(&before);
    if let (Some(p), Some((put0, post0))) = (&proxy, seen) {
        assert_eq!(cost.retries, 0, "no retries on loopback: {cost:?}");
        assert_eq!(
            (p.count("PUT") - put0, p.count("POST") - post0),
            (cost.put, cost.post),
            "the service received exactly the writes eden-cas counted: {:?}",
            p.counts()
        );
    }
    let packs = engine.blobs().list(keys::PACKS).await.unwrap();
    assert!(packs.len() >= 2, "{packs:?}");
    // The manifest is one small object.
    let (mut puts, mut posts) = ctx.kind.write_requests(part, 1);
    for (_, size) in &packs {
        let (put, post) = ctx.kind.write_requests(part, *size);
        puts += put;
        posts += post;
    }
    assert_eq!(
        (cost.put, cost.post),
        (puts, posts),
        "{cost:?} for {packs:?}"
    );
    if matches!(ctx.kind, Kind::S3 | Kind::Azblob | Kind::Gcs) {
        assert!(
            puts > packs.len() as u64 + 1,
            "8 MiB packs exercise multipart, block and resumable uploads: {puts}"
        );
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
    // On a service that ignores create-only writes (the GCS emulator) the
    // probe says so and passes: its overwrite lands, and nothing it reads
    // afterwards assumes the first bytes are still there.
    let report = probe::check(&ctx.config()).await.unwrap();
    assert_eq!(
        report.conditional_writes,
        ctx.kind.enforces_create_only(),
        "{report:?}"
    );
    assert!(report.delete_allowed, "{report:?}");
    if ctx.kind != Kind::Memory {
        let left = ctx.store().list(probe::PROBE_PREFIX).await.unwrap();
        assert!(left.is_empty(), "probe objects are deleted: {left:?}");
    }
}

/// Run instead of a case the emulator cannot pass (see `emulator_gap`):
/// checks that the gap is still there, so that the skip goes once the
/// emulator closes it. Today that is the GCS emulator accepting an
/// overwrite of an existing object despite `ifGenerationMatch=0`.
pub async fn gap_is_still_there(ctx: Ctx) {
    let s = ctx.store();
    let key = "packs/gg/gap.pack";
    let first = s.put_new(key, Bytes::from_static(b"first")).await.unwrap();
    assert_eq!(first, PutOutcome::Created);
    let second = s.put_new(key, Bytes::from_static(b"second")).await.unwrap();
    assert_eq!(
        second,
        PutOutcome::Created,
        "the emulator now refuses the overwrite: remove its entry in emulator_gap and run the \
         create-only cases on it"
    );
    assert_eq!(&s.read(key).await.unwrap()[..], b"second");
}
