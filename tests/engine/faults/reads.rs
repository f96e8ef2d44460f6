//! Failed and corrupt reads: a short read ends the fetch with an error, a
//! bit flipped on the way back or at rest is an integrity error — never
//! wrong bytes.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_read_ends_the_fetch_with_an_error() {
    bounded(async {
        let fx = fixture();
        let e = &fx.engine;
        let small = noise(300_000, 6);
        let small_id = deposit(e, &small, 64 << 10).await.unwrap();
        // Several packs (sealed at 4 MiB ingest batches past the 2 MiB
        // target), so a fetch is several ranged reads.
        let large = noise(10 << 20, 7);
        let large_id = deposit(e, &large, 1 << 20).await.unwrap();
        assert!(fx.engine.meta().packs().unwrap().len() >= 3);

        let cases: [(&str, &[u8], u64, u64, u64); 4] = [
            (&small_id, &small, 0, small.len() as u64, 0),
            (&small_id, &small, 1000, 250_000, 0),
            (&large_id, &large, 0, large.len() as u64, 0),
            (&large_id, &large, 0, large.len() as u64, 1),
        ];
        for (id, data, start, end, skip) in cases {
            fx.plan
                .arm(FaultSpec::new(Fault::ShortRead, keys::PACKS).skip(skip));
            let f = fetch(e, id, start, end).await;
            assert_eq!(fx.plan.disarm(), 1);
            let want = &data[start as usize..end as usize];
            assert_eq!(f.errors.len(), 1, "exactly one error ends the stream");
            assert!(is_integrity(&f.errors[0]), "{}", f.errors[0]);
            assert_eq!(f.after_error, 0);
            assert!(f.bytes.len() < want.len());
            assert!(f.bytes[..] == want[..f.bytes.len()], "wrong bytes yielded");
        }
        assert_identical(e, &small_id, &small).await;
        assert_identical(e, &large_id, &large).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bit_flip_on_read_is_an_integrity_error() {
    bounded(async {
        // With the verified-chunk cache off (fs default) and on: a corrupt
        // read must not poison the cache either.
        for cache in [0, 16 << 20] {
            let fx = fixture_with_cache(cache);
            let e = &fx.engine;
            let data = noise(600_000, 8);
            let id = deposit(e, &data, 64 << 10).await.unwrap();
            let failures = e.stats.integrity_failures.load(Ordering::Relaxed);

            fx.plan
                .arm(FaultSpec::new(Fault::ReadBitFlip { at: 100 }, keys::PACKS));
            let f = fetch(e, &id, 0, data.len() as u64).await;
            assert_eq!(fx.plan.disarm(), 1, "cache {cache}");
            assert_eq!(f.errors.len(), 1, "cache {cache}");
            assert!(is_integrity(&f.errors[0]), "{}", f.errors[0]);
            assert!(f.bytes[..] == data[..f.bytes.len()], "wrong bytes yielded");
            assert!(f.bytes.len() < data.len());
            assert_eq!(
                e.stats.integrity_failures.load(Ordering::Relaxed),
                failures + 1,
                "cache {cache}"
            );
            // The stored data was never damaged.
            assert_identical(e, &id, &data).await;
        }
    })
    .await
}

/// A store with one artifact whose pack was silently corrupted at rest (one
/// bit of one chunk flipped on its way to the disk), next to an intact one.
pub struct CorruptStore {
    /// The engine, its data dir and its (disarmed) fault plan.
    pub fx: Fixture,
    /// The artifact holding the corrupt chunk, and its bytes as deposited.
    pub id: String,
    /// See [`CorruptStore::id`].
    pub data: Vec<u8>,
    /// An artifact deposited before, sharing no chunk with `data`: intact.
    pub good_id: String,
    /// See [`CorruptStore::good_id`].
    pub good: Vec<u8>,
    /// The corrupt chunk.
    pub chunk: Digest,
    /// Its byte range in `data`.
    pub chunk_range: (u64, u64),
    /// Key of the pack holding it.
    pub pack_key: String,
    /// Offset in that pack of the flipped byte.
    pub flipped_at: u64,
}

/// Builds a [`CorruptStore`]: the deposit succeeds (nothing can know yet)
/// and the plan is disarmed again on return.
pub async fn store_with_one_silently_corrupted_chunk() -> CorruptStore {
    let fx = fixture();
    let e = &fx.engine;
    let good = noise(300_000, 9);
    let good_id = deposit(e, &good, 64 << 10).await.unwrap();
    let data = noise(400_000, 10);
    // Random data is stored raw: this is byte 1000 of the first chunk.
    let flipped_at = PACK_HEADER_LEN + 1000;
    fx.plan.arm(FaultSpec::new(
        Fault::WriteBitFlip { at: flipped_at },
        keys::PACKS,
    ));
    let id = deposit(e, &data, 64 << 10).await.unwrap();
    assert_eq!(fx.plan.disarm(), 1, "the pack was corrupted");

    let rec = record(e, &id).await;
    let m = e.meta().manifest(&rec.manifest).unwrap().unwrap();
    let mut pos = 0u64;
    let mut hit = None;
    for seg in &m.segments {
        for en in e.meta().segment(&seg.id).unwrap().unwrap().entries {
            let loc = e.meta().chunk(&en.id).unwrap().unwrap();
            let end = pos + u64::from(en.len);
            if (loc.offset..loc.offset + u64::from(loc.stored_len)).contains(&flipped_at) {
                hit = Some((en.id, (pos, end), keys::pack(loc.pack)));
            }
            pos = end;
        }
    }
    let (chunk, chunk_range, pack_key) = hit.expect("a chunk covers the flipped byte");
    CorruptStore {
        fx,
        id,
        data,
        good_id,
        good,
        chunk,
        chunk_range,
        pack_key,
        flipped_at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bit_flip_at_rest_fails_every_fetch_touching_the_chunk() {
    bounded(async {
        let cs = store_with_one_silently_corrupted_chunk().await;
        let e = &cs.fx.engine;
        let (lo, hi) = cs.chunk_range;
        let len = cs.data.len() as u64;
        assert!(hi < len, "the corrupt chunk is not the last one");
        let failures = e.stats.integrity_failures.load(Ordering::Relaxed);

        // The pack on disk really differs from what was deposited.
        let stored = e
            .blobs()
            .read_range(&cs.pack_key, cs.flipped_at, 1)
            .await
            .unwrap();
        let original = cs.data[(lo + cs.flipped_at - PACK_HEADER_LEN) as usize];
        assert_eq!(stored[0], original ^ 0x01);

        let touching = [
            (0, len),
            (lo, hi),
            (lo + 500, lo + 501),
            (hi - 1, len),
            (0, lo + 1),
        ];
        for (start, end) in touching {
            let f = fetch(e, &cs.id, start, end).await;
            assert!(
                f.errors.iter().any(is_integrity),
                "[{start}, {end}): {:?}",
                f.errors
            );
            assert_fails(e, &cs.id, &cs.data, start, end).await;
        }
        assert!(
            e.stats.integrity_failures.load(Ordering::Relaxed) >= failures + touching.len() as u64
        );
        // Ranges clear of the chunk, and the other artifact, are intact.
        let f = fetch(e, &cs.id, hi, len).await;
        assert!(f.errors.is_empty() && f.bytes[..] == cs.data[hi as usize..]);
        if lo > 0 {
            let f = fetch(e, &cs.id, 0, lo).await;
            assert!(f.errors.is_empty() && f.bytes[..] == cs.data[..lo as usize]);
        }
        assert_identical(e, &cs.good_id, &cs.good).await;
        assert_eq!(cs.chunk, Digest::of(&cs.data[lo as usize..hi as usize]));
    })
    .await
}
