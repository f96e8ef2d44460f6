//! Framed chunks through the whole engine (real RocksDB, fs blob store):
//! consecutive new chunks of one deposit are encoded together as one frame
//! (pack format 3) and each stays addressable. Reads whole and in ranges
//! inside a frame, a corrupted frame caught on read and by fsck, GC
//! compaction of a frame half of whose chunks died (re-encoded, no dead
//! byte kept), compaction of a whole live frame (copied verbatim) and a
//! reindex from format-3 footers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::support::engine::*;
use eden_cas::engine::fsck::ProblemKind;
use eden_cas::engine::gc::GcOptions;
use eden_cas::engine::{EngineConfig, EngineError};
use eden_cas::hash::Digest;
use eden_cas::ids::ArtifactId;
use eden_cas::meta::records::ChunkLocation;
use eden_cas::pack::FRAME_TARGET_BYTES;
use futures_util::StreamExt;

/// Small chunks (1/4/16 KiB) so one frame holds many; packs larger than a
/// frame.
fn cfg() -> EngineConfig {
    EngineConfig {
        chunker: small_chunker(),
        pack_target_bytes: 4 << 20,
        ..EngineConfig::default()
    }
}

/// Text-like bytes that compress (words from a small vocabulary, chosen by
/// a seeded generator) and that content-defined chunking cuts the same way
/// wherever they occur.
fn text(bytes: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "tensor", "layer", "grad", "epoch", "loss", "adam", "norm", "head", "embed", "token",
        "batch", "warmup", "decay", "scale", "shard", "step",
    ];
    let r = noise(bytes, seed);
    let mut out = Vec::with_capacity(bytes + 16);
    let mut i = 0;
    while out.len() < bytes {
        out.extend_from_slice(WORDS[usize::from(r[i % r.len()] % 16)].as_bytes());
        out.push(if r[(i + 7) % r.len()].is_multiple_of(9) {
            b'\n'
        } else {
            b' '
        });
        i += 1;
    }
    out.truncate(bytes);
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

/// The frames of `data`'s chunks: (pack, frame offset) → members.
fn frames(f: &Fixture, data: &[u8]) -> HashMap<(u128, u64), Vec<(Digest, ChunkLocation)>> {
    let mut out: HashMap<(u128, u64), Vec<(Digest, ChunkLocation)>> = HashMap::new();
    for id in chunk_ids(data, small_chunker()) {
        let loc = f.engine.meta().chunk(&id).unwrap().expect("indexed");
        if loc.frame.is_some() {
            out.entry((loc.pack.0, loc.offset))
                .or_default()
                .push((id, loc));
        }
    }
    out
}

#[test]
fn multi_chunk_frames_round_trip_whole_and_in_ranges_inside_a_frame() {
    let f = Fixture::with(cfg());
    let rt = runtime();
    let data = text(3 * FRAME_TARGET_BYTES + 12_345, 1);
    let id = rt.block_on(deposit(&f.engine, &data));

    let fr = frames(&f, &data);
    let chunks = chunk_ids(&data, small_chunker()).len();
    let framed: usize = fr.values().map(Vec::len).sum();
    assert!(fr.len() >= 3, "{} frames", fr.len());
    assert!(
        framed * 10 >= chunks * 9,
        "{framed} of {chunks} chunks framed"
    );
    for members in fr.values() {
        assert!(members.len() > 1);
        let slot = members[0].1.frame.unwrap();
        // Every member names the same frame bytes, and together they fill
        // the decoded frame exactly.
        assert!(
            members
                .iter()
                .all(|(_, l)| l.frame.unwrap().raw_len == slot.raw_len
                    && (l.stored_len, l.codec) == (members[0].1.stored_len, members[0].1.codec))
        );
        let raw: u64 = members.iter().map(|(_, l)| u64::from(l.raw_len)).sum();
        assert_eq!(raw, u64::from(slot.raw_len));
        assert!((slot.raw_len as usize) < FRAME_TARGET_BYTES + (16 << 10));
    }
    // Frames compress far better than the old per-chunk stored length.
    let stored: u64 = fr.keys().map(|k| u64::from(fr[k][0].1.stored_len)).sum();
    assert!(stored * 3 < data.len() as u64, "{stored} of {}", data.len());

    let n = data.len() as u64;
    assert_eq!(rt.block_on(read(&f, &id, 0, n)).unwrap(), data);
    // Ranges starting and ending in the middle of frames and of chunks.
    let mid = FRAME_TARGET_BYTES as u64 / 2;
    for (a, b) in [
        (mid, mid + 1),
        (mid - 3, mid + 5000),
        (mid, mid + FRAME_TARGET_BYTES as u64),
        (1, 2),
        (n - 17, n),
        (n / 3, 2 * n / 3),
    ] {
        let got = rt.block_on(read(&f, &id, a, b)).unwrap();
        assert!(got[..] == data[a as usize..b as usize], "range {a}..{b}");
    }
}

#[test]
fn a_corrupted_frame_is_detected_on_read_and_by_fsck() {
    let f = Fixture::with(cfg());
    let rt = runtime();
    let data = text(FRAME_TARGET_BYTES / 2, 2);
    let id = rt.block_on(deposit(&f.engine, &data));
    let fr = frames(&f, &data);
    assert_eq!(fr.len(), 1, "one frame");
    let members = fr.into_values().next().unwrap();
    let loc = members[0].1;
    let pack = f.blob_root().join(eden_cas::blobs::keys::pack(loc.pack));
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[(loc.offset + u64::from(loc.stored_len) / 2) as usize] ^= 0x10;
    std::fs::write(&pack, bytes).unwrap();

    // A range in the middle of the frame fails: never wrong bytes.
    let n = data.len() as u64;
    assert!(matches!(
        rt.block_on(read(&f, &id, n / 2, n / 2 + 10)),
        Err(EngineError::Integrity(_))
    ));
    // The read marked the chunk it proved bad at once; fsck proves the
    // rest of the frame's chunks corrupt (the damaged zstd frame decodes
    // for none of them), and nothing outside the frame.
    let e = Arc::clone(&f.engine);
    let r = rt.block_on(async move { e.fsck(false).await.unwrap() });
    assert_eq!(r.problems.len(), members.len(), "{r}");
    assert!(
        r.problems.iter().all(|p| matches!(
            p.kind,
            ProblemKind::ChunkCorrupt | ProblemKind::ChunkMarkedBad
        )),
        "{r}"
    );
    let named: HashSet<String> = r.problems.iter().filter_map(|p| p.chunk.clone()).collect();
    let in_frame: HashSet<String> = members.iter().map(|(c, _)| c.to_hex()).collect();
    assert_eq!(named, in_frame, "{r}");
    // The same content again heals it: fresh copies, readable.
    rt.block_on(deposit(&f.engine, &data));
    assert_eq!(rt.block_on(read(&f, &id, 0, n)).unwrap(), data);
}

#[test]
fn gc_re_encodes_a_frame_half_of_whose_chunks_died_and_copies_whole_ones() {
    let f = Fixture::with(cfg());
    let rt = runtime();
    // `a` is three frames; `b` is its first 1.5 frames, so b's chunks (all
    // but the one at the cut) are a's and dedup stores nothing new for
    // them. Once `a` is deleted, a's first frame is wholly live, its second
    // half live, its third dead.
    let a = text(FRAME_TARGET_BYTES * 5 / 2, 3);
    let b = a[..FRAME_TARGET_BYTES * 3 / 2].to_vec();
    let ida = rt.block_on(deposit(&f.engine, &a));
    let idb = rt.block_on(deposit(&f.engine, &b));
    let mut old: Vec<_> = frames(&f, &a).into_iter().collect();
    old.sort_by_key(|(k, _)| *k);
    assert_eq!(old.len(), 3, "three frames");
    let old_pack = old[0].0.0;
    let live_b = chunk_ids(&b, small_chunker());
    let whole = &old[0].1;
    assert!(whole.iter().all(|(id, _)| live_b.contains(id)));
    let half: Vec<Digest> = old[1]
        .1
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| live_b.contains(id))
        .collect();
    assert!(!half.is_empty() && half.len() < old[1].1.len());

    rt.block_on(delete(&f.engine, &ida));
    let e = Arc::clone(&f.engine);
    let g = rt
        .block_on(async move {
            e.gc(GcOptions {
                dry_run: false,
                compact_below: 0.8,
            })
            .await
        })
        .unwrap();
    assert!(g.packs_deleted > 0, "{g:?}");
    let locs = locations(&f);
    assert!(locs.values().all(|l| l.pack.0 != old_pack));
    assert_eq!(
        locs.len(),
        live_b.len(),
        "dead chunks are gone from the index"
    );

    // The wholly live frame was copied verbatim: same stored length, codec
    // and slots, one frame in the new pack.
    let moved: Vec<ChunkLocation> = whole.iter().map(|(id, _)| locs[id]).collect();
    for ((_, was), now) in whole.iter().zip(&moved) {
        assert_eq!(
            (was.stored_len, was.raw_len, was.codec, was.frame),
            (now.stored_len, now.raw_len, now.codec, now.frame)
        );
        assert_eq!((now.pack, now.offset), (moved[0].pack, moved[0].offset));
    }
    // The half-dead frame's live chunks were encoded again: their new
    // frame holds exactly them (no dead chunk's bytes kept).
    let first = locs[&half[0]];
    let slot = first.frame.expect("still framed");
    let members: Vec<&ChunkLocation> = locs
        .values()
        .filter(|l| (l.pack, l.offset) == (first.pack, first.offset))
        .collect();
    assert_eq!(members.len(), half.len());
    let raw: u64 = members.iter().map(|l| u64::from(l.raw_len)).sum();
    assert_eq!(raw, u64::from(slot.raw_len));
    assert!(first.stored_len < old[1].1[0].1.stored_len);

    assert_eq!(rt.block_on(read(&f, &idb, 0, b.len() as u64)).unwrap(), b);
    let e = Arc::clone(&f.engine);
    let r = rt.block_on(async move { e.fsck(true).await.unwrap() });
    assert!(r.is_clean(), "{r}");
}

#[test]
fn reindex_rebuilds_framed_locations_from_format_3_footers() {
    let f = Fixture::with(cfg());
    let rt = runtime();
    let data = text(2 * FRAME_TARGET_BYTES, 5);
    let random = noise(300_000, 6);
    let id = rt.block_on(deposit(&f.engine, &data));
    rt.block_on(deposit(&f.engine, &random));
    let before = locations(&f);
    assert!(before.values().any(|l| l.frame.is_some()));
    assert!(before.values().any(|l| l.frame.is_none()));
    let (meta, blobs) = (f.engine.meta().clone(), f.engine.blobs().clone());
    rt.block_on(async move { eden_cas::engine::recovery::reindex(&meta, &blobs).await })
        .unwrap();
    assert_eq!(locations(&f), before);
    assert_eq!(
        rt.block_on(read(&f, &id, 0, data.len() as u64)).unwrap(),
        data
    );
    let e = Arc::clone(&f.engine);
    let r = rt.block_on(async move { e.fsck(true).await.unwrap() });
    assert!(r.is_clean(), "{r}");
    assert_eq!(r.chunks_verified, r.chunks_indexed);
}
