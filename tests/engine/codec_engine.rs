//! Byte-plane chunks through the whole engine (real RocksDB, fs blob store):
//! float data is stored with the byte-plane codecs and reads back exactly,
//! whole and in ranges; fsck (deep), the scrubber, GC compaction and a
//! reindex from pack footers all verify or carry such chunks; a corrupt one is
//! caught, marked bad and healed by the next deposit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::support::engine::*;
use eden_cas::engine::fsck::ProblemKind;
use eden_cas::engine::gc::GcOptions;
use eden_cas::engine::{EngineConfig, EngineError};
use eden_cas::hash::Digest;
use eden_cas::ids::ArtifactId;
use eden_cas::meta::records::ChunkLocation;
use eden_cas::pack::Codec;
use futures_util::StreamExt;

/// Small chunks, small packs, compression and byte planes as shipped.
fn cfg() -> EngineConfig {
    EngineConfig {
        chunker: small_chunker(),
        pack_target_bytes: 256 << 10,
        ..EngineConfig::default()
    }
}

/// Float32 values like trained weights: in (-0.04, 0.04), triangular.
fn weights(n: usize, seed: u64) -> Vec<f32> {
    noise(n * 8, seed)
        .chunks_exact(8)
        .map(|q| {
            let u = |b: &[u8]| {
                f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])) / 4_294_967_296.0
            };
            ((u(&q[..4]) + u(&q[4..]) - 1.0) * 0.04) as f32
        })
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes())
        .collect()
}

/// Codec of every indexed chunk of `data`.
fn codecs(f: &Fixture, data: &[u8]) -> HashMap<Codec, usize> {
    let mut out = HashMap::new();
    for id in chunk_ids(data, small_chunker()) {
        let loc = f.engine.meta().chunk(&id).unwrap().expect("indexed");
        *out.entry(loc.codec).or_default() += 1;
    }
    out
}

fn locations(f: &Fixture) -> HashMap<Digest, ChunkLocation> {
    let mut out = HashMap::new();
    f.engine
        .meta()
        .scan_chunks(|id, loc| {
            out.insert(id, loc);
            true
        })
        .unwrap();
    out
}

async fn read(f: &Fixture, id: &ArtifactId, start: u64, end: u64) -> Result<Vec<u8>, EngineError> {
    let rec = f
        .engine
        .readable_artifact(EXP, &eden_cas::auth::Principal::Admin, id)
        .await?;
    let mut out = Vec::new();
    let mut s = f.engine.read_range(&rec, start, end);
    while let Some(part) = s.next().await {
        out.extend_from_slice(&part?);
    }
    Ok(out)
}

#[test]
fn float_data_is_stored_as_byte_planes_and_reads_back_exactly() {
    let f = Fixture::with(cfg());
    let rt = runtime();
    let w = weights(150_000, 1);
    let f32_data = f32_bytes(&w);
    let bf16_data = bf16_bytes(&weights(150_000, 2));
    let text = "def forward(self, x):\n    return self.proj(self.act(self.fc(x)))\n"
        .repeat(3000)
        .into_bytes();
    let random = noise(200_000, 3);
    let inputs = [&f32_data, &bf16_data, &text, &random];
    let ids: Vec<ArtifactId> = inputs
        .iter()
        .map(|d| rt.block_on(deposit(&f.engine, d)))
        .collect();

    let c = codecs(&f, &f32_data);
    assert!(
        c.get(&Codec::BytePlanes4).copied().unwrap_or(0) * 10 >= c.values().sum::<usize>() * 9,
        "{c:?}"
    );
    let c = codecs(&f, &bf16_data);
    assert!(
        c.get(&Codec::BytePlanes2).copied().unwrap_or(0) * 10 >= c.values().sum::<usize>() * 9,
        "{c:?}"
    );
    assert_eq!(
        codecs(&f, &text).keys().collect::<Vec<_>>(),
        vec![&Codec::Zstd]
    );
    assert_eq!(
        codecs(&f, &random).keys().collect::<Vec<_>>(),
        vec![&Codec::Raw]
    );

    // The float data takes clearly less room than raw and than plain zstd
    // would (a framed chunk counts its share of the frame).
    let stored: u64 = chunk_ids(&f32_data, small_chunker())
        .iter()
        .map(|id| f.engine.meta().chunk(id).unwrap().unwrap().stored_share())
        .sum();
    let zstd_alone = zstd::bulk::compress(&f32_data, 3).unwrap().len() as u64;
    assert!(
        stored * 100 < f32_data.len() as u64 * 90,
        "{stored} of {}",
        f32_data.len()
    );
    assert!(stored < zstd_alone, "{stored} vs zstd {zstd_alone}");

    for (data, id) in inputs.iter().zip(&ids) {
        let n = data.len() as u64;
        assert_eq!(&rt.block_on(read(&f, id, 0, n)).unwrap(), *data);
        for (a, b) in [
            (0, 1),
            (1, 7),
            (3, 4099),
            (4095, 20_000),
            (n / 2 - 1, n / 2 + 70_001),
            (n - 5, n),
        ] {
            let got = rt.block_on(read(&f, id, a, b)).unwrap();
            assert!(got[..] == data[a as usize..b as usize], "range {a}..{b}");
        }
    }
}

#[test]
fn fsck_scrub_gc_and_reindex_carry_byte_plane_chunks() {
    let f = Fixture::with(cfg());
    let rt = runtime();
    let a = f32_bytes(&weights(120_000, 4));
    let b = f32_bytes(&weights(120_000, 5));
    let ida = rt.block_on(deposit(&f.engine, &a));
    let idb = rt.block_on(deposit(&f.engine, &b));
    let e = Arc::clone(&f.engine);
    let r = rt.block_on(async move { e.fsck(true).await.unwrap() });
    assert!(r.is_clean(), "{r}");
    assert_eq!(r.chunks_verified, r.chunks_indexed);
    assert_eq!(r.content_bytes_read_back, (a.len() + b.len()) as u64);
    let e = Arc::clone(&f.engine);
    let s = rt.block_on(async move { e.scrub_pass(u64::MAX).await.unwrap() });
    assert_eq!(
        (s.corrupt_chunks, s.pack_faults, s.errors),
        (0, 0, 0),
        "{s:?}"
    );
    assert!(s.packs >= 2);

    // Delete one series member; compaction copies the other's byte-plane
    // chunks verbatim (verified) into new packs.
    rt.block_on(delete(&f.engine, &ida));
    let e = Arc::clone(&f.engine);
    let g = rt
        .block_on(async move {
            e.gc(GcOptions {
                dry_run: false,
                compact_below: 1.0,
            })
            .await
        })
        .unwrap();
    assert!(g.packs_deleted > 0, "{g:?}");
    let c = codecs(&f, &b);
    assert!(c.contains_key(&Codec::BytePlanes4), "{c:?}");
    assert_eq!(rt.block_on(read(&f, &idb, 0, b.len() as u64)).unwrap(), b);

    // A reindex from the pack footers restores the same codecs.
    let before = locations(&f);
    let (meta, blobs) = (f.engine.meta().clone(), f.engine.blobs().clone());
    rt.block_on(async move { eden_cas::engine::recovery::reindex(&meta, &blobs).await })
        .unwrap();
    assert_eq!(locations(&f), before);
    let e = Arc::clone(&f.engine);
    let r = rt.block_on(async move { e.fsck(true).await.unwrap() });
    assert!(r.is_clean(), "{r}");
}

#[test]
fn a_corrupt_byte_plane_chunk_is_caught_marked_bad_and_healed() {
    let f = Fixture::with(cfg());
    let rt = runtime();
    let x = f32_bytes(&weights(100_000, 6));
    let id = rt.block_on(deposit(&f.engine, &x));
    let loc = chunk_ids(&x, small_chunker())
        .into_iter()
        .map(|c| f.engine.meta().chunk(&c).unwrap().unwrap())
        .find(|l| l.codec == Codec::BytePlanes4)
        .expect("a byte-plane chunk");
    let pack = f.blob_root().join(eden_cas::blobs::keys::pack(loc.pack));
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[(loc.offset + u64::from(loc.stored_len) / 2) as usize] ^= 0x01;
    std::fs::write(&pack, bytes).unwrap();

    // The flipped byte lies in one plane of the frame holding the chunk: in
    // a zstd-coded plane it breaks every chunk of the frame, in a raw plane
    // (low mantissa bytes) only the chunk it belongs to. Either way only
    // chunks stored in those bytes are corrupt.
    let sharing: HashSet<String> = chunk_ids(&x, small_chunker())
        .into_iter()
        .filter(|c| {
            let l = f.engine.meta().chunk(c).unwrap().unwrap();
            (l.pack, l.offset) == (loc.pack, loc.offset)
        })
        .map(|c| c.to_hex())
        .collect();
    let e = Arc::clone(&f.engine);
    let r = rt.block_on(async move { e.fsck(false).await.unwrap() });
    assert!(!r.problems.is_empty(), "{r}");
    assert!(
        r.problems
            .iter()
            .all(|p| p.kind == ProblemKind::ChunkCorrupt),
        "{r}"
    );
    let named: HashSet<String> = r.problems.iter().filter_map(|p| p.chunk.clone()).collect();
    assert!(named.is_subset(&sharing), "{r}");
    // Follow the first chunk fsck proved bad.
    let bad = chunk_ids(&x, small_chunker())
        .into_iter()
        .find(|c| r.problems[0].chunk.as_deref() == Some(c.to_hex().as_str()))
        .expect("a named chunk of this content");
    assert!(matches!(
        rt.block_on(read(&f, &id, 0, x.len() as u64)),
        Err(EngineError::Integrity(_))
    ));
    // fsck marked the copy it proved bad at once (heal at once); the
    // scrubber then finds the corrupt chunk already marked.
    assert!(f.engine.meta().chunk(&bad).unwrap().unwrap().bad);
    let e = Arc::clone(&f.engine);
    let s = rt.block_on(async move { e.scrub_pass(u64::MAX).await.unwrap() });
    assert_eq!(s.marked_bad, 0, "{s:?}");
    // The same content again stores a fresh copy of that chunk only.
    rt.block_on(deposit(&f.engine, &x));
    let healed = f.engine.meta().chunk(&bad).unwrap().unwrap();
    assert!(!healed.bad && healed.pack != loc.pack && healed.codec == Codec::BytePlanes4);
    assert_eq!(rt.block_on(read(&f, &id, 0, x.len() as u64)).unwrap(), x);
}
