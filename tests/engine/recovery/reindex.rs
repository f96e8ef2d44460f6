//! Reindex from pack footers and manifest objects after the RocksDB
//! directory is lost: the rebuilt tables equal the lost ones, duplicate
//! chunks keep the agreeing entry (else the newest pack), partial and
//! corrupt packs are reported and never indexed, and a previous release's
//! store still reads while a newer pack format is refused.

use super::*;

fn pack_keys(store: &Store) -> Vec<(PackId, String)> {
    let mut out = Vec::new();
    let root = store.blobs_dir().join("packs");
    for shard in std::fs::read_dir(&root).unwrap() {
        for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let path = f.unwrap().path();
            let key = path
                .strip_prefix(store.blobs_dir())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((keys::parse_pack(&key).unwrap(), key));
        }
    }
    out.sort();
    out
}

/// Writes `bytes` as a pack newer than every existing one; returns its key.
fn add_newer_pack(store: &Store, like: PackId, bytes: &[u8]) -> (PackId, String) {
    let id = Ulid::from_parts(like.ulid().timestamp_ms() + 60_000, rand::random::<u128>());
    let id = PackId::from_u128(id.0);
    let key = keys::pack(id);
    let path = store.path_of(&key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    (id, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_rebuilds_index_and_manifests_after_meta_loss() {
    let store = Store::new();
    let engine = store.engine();
    let mut deposited = Vec::new();
    for data in contents() {
        let (_, rec) = deposit(&engine, "admin", &data).await;
        deposited.push((rec.manifest, data));
    }
    let before = tables(engine.meta());
    assert!(
        before.packs.len() >= 3,
        "want several packs: {}",
        before.packs.len()
    );
    assert_eq!(
        before.manifests.len(),
        4,
        "identical content shares a manifest"
    );

    store.wipe_meta(engine);
    let engine = store.engine();
    let report = reindex(&engine).await;
    assert_same_tables(&tables(engine.meta()), &before);
    assert_eq!(report.packs_scanned, before.packs.len() as u64);
    assert_eq!(report.packs_indexed, before.packs.len() as u64);
    assert_eq!(report.chunks_indexed, before.chunks.len() as u64);
    assert_eq!(report.entries_written, before.chunks.len() as u64);
    assert_eq!(report.entries_dropped, 0);
    assert!(report.partial_packs.is_empty() && report.corrupt_packs.is_empty());
    assert_eq!(
        (report.manifests_scanned, report.manifests_restored),
        (4, 4)
    );
    assert!(report.bad_manifests.is_empty() && report.foreign_objects.is_empty());
    // No artifact records survive a lost RocksDB: every manifest is unclaimed.
    assert_eq!(report.artifacts, 0);
    assert_eq!(report.unclaimed_manifests.len(), 4);
    for (manifest, data) in &deposited {
        assert_eq!(&read_manifest(&engine, manifest).await, data);
        let u = report
            .unclaimed_manifests
            .iter()
            .find(|u| u.id == *manifest)
            .expect("listed as unclaimed");
        assert_eq!((u.size, u.blake3), (data.len() as u64, Digest::of(data)));
    }
    assert!(!recovery::reindex_pending(engine.meta()).unwrap());
    let text = report.to_string();
    assert!(text.contains("unclaimed manifests  4"), "{text}");

    // Idempotent: a second run changes nothing.
    let again = reindex(&engine).await;
    assert_eq!(
        (
            again.entries_written,
            again.entries_dropped,
            again.manifests_restored
        ),
        (0, 0, 0)
    );
    assert_same_tables(&tables(engine.meta()), &before);

    // New deposits dedup against the rebuilt index: no new pack.
    let packs = before.packs.len();
    deposit(&engine, "admin", &deposited[0].1).await;
    assert_eq!(engine.meta().packs().unwrap().len(), packs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_chunks_keep_the_agreeing_entry_else_the_newest_pack() {
    let store = Store::new();
    let engine = store.engine();
    let data = noise(500_000, 7);
    deposit(&engine, "admin", &data).await;
    let before = tables(engine.meta());
    let originals = pack_keys(&store);
    // Byte-identical copies under newer pack ids: every chunk in two packs.
    let mut copies = Vec::new();
    for (id, key) in &originals {
        let bytes = std::fs::read(store.path_of(key)).unwrap();
        copies.push(add_newer_pack(&store, *id, &bytes));
    }
    let copy_of = |pack: PackId| -> PackId {
        let i = originals.iter().position(|(id, _)| *id == pack).unwrap();
        copies[i].0
    };

    // The index names the originals and their footers agree: kept.
    let report = reindex(&engine).await;
    assert_eq!(report.entries_written, 0);
    assert_eq!(report.packs_indexed, (originals.len() * 2) as u64);
    assert_eq!(tables(engine.meta()).chunks, before.chunks);

    // An entry that disagrees with its pack's footer is corrected.
    let (bad_id, good) = before.chunks[0];
    let mut b = engine.meta().batch();
    b.put_chunk(
        &bad_id,
        &ChunkLocation {
            offset: good.offset + 1,
            ..good
        },
    );
    b.commit().unwrap();
    let report = reindex(&engine).await;
    assert_eq!(report.entries_written, 1);
    let fixed = engine.meta().chunk(&bad_id).unwrap().unwrap();
    assert_eq!(
        (fixed.offset, fixed.stored_len, fixed.raw_len),
        (good.offset, good.stored_len, good.raw_len)
    );
    assert_eq!(
        fixed.pack,
        copy_of(good.pack),
        "no agreeing entry: newest wins"
    );

    // Without an index the newest copy wins everywhere.
    store.wipe_meta(engine);
    let engine = store.engine();
    reindex(&engine).await;
    let rebuilt = tables(engine.meta()).chunks;
    assert_eq!(rebuilt.len(), before.chunks.len());
    for ((id, got), (want_id, want)) in rebuilt.iter().zip(&before.chunks) {
        assert_eq!(id, want_id);
        assert_eq!(
            *got,
            ChunkLocation {
                pack: copy_of(want.pack),
                ..*want
            }
        );
    }

    // The copies disappear: entries move back to the originals, records go.
    for (_, key) in &copies {
        std::fs::remove_file(store.path_of(key)).unwrap();
    }
    let report = reindex(&engine).await;
    assert_eq!(report.entries_written, before.chunks.len() as u64);
    assert_eq!(report.entries_dropped, 0);
    assert_eq!(report.pack_records_dropped, copies.len() as u64);
    assert_same_tables(&tables(engine.meta()), &before);
    assert_eq!(read_manifest(&engine, &before.manifests[0].0).await, data);
    store.close(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_and_corrupt_packs_are_reported_and_never_indexed() {
    let store = Store::new();
    let engine = store.engine();
    let data = noise(400_000, 11);
    deposit(&engine, "admin", &data).await;
    let before = tables(engine.meta());
    let (id, key) = pack_keys(&store).remove(0);
    let bytes = std::fs::read(store.path_of(&key)).unwrap();
    // An interrupted write: the trailer never made it.
    let (_, partial) = add_newer_pack(&store, id, &bytes[..bytes.len() - 20]);
    // A complete-looking pack whose footer was damaged.
    let mut damaged = bytes.clone();
    let at = parse_pack(&damaged).unwrap().data_end as usize + 5;
    damaged[at] ^= 0x55;
    let (_, corrupt) = add_newer_pack(&store, id, &damaged);
    // Not eden-cas objects at all.
    std::fs::write(store.blobs_dir().join("packs").join("README"), b"x").unwrap();

    let check = |report: &ReindexReport| {
        assert_eq!(report.partial_packs, vec![partial.clone()]);
        assert_eq!(report.corrupt_packs.len(), 1);
        assert_eq!(report.corrupt_packs[0].key, corrupt);
        assert_eq!(report.foreign_objects, vec!["packs/README".to_string()]);
        assert_eq!(report.packs_scanned, before.packs.len() as u64 + 2);
        assert_eq!(report.packs_indexed, before.packs.len() as u64);
        assert!(
            report
                .to_string()
                .contains(&format!("partial pack     {partial}"))
        );
    };
    // Over the existing index, then over none.
    check(&reindex(&engine).await);
    assert_same_tables(&tables(engine.meta()), &before);
    store.wipe_meta(engine);
    let engine = store.engine();
    check(&reindex(&engine).await);
    assert_same_tables(&tables(engine.meta()), &before);
    assert_eq!(read_manifest(&engine, &before.manifests[0].0).await, data);
    store.close(engine);
    // Left for GC: reindex deletes nothing.
    assert!(store.path_of(&partial).exists());
}

/// A store of the previous release: packs with format-1 trailers (no
/// version) and no store-format stamp. It opens (and is stamped), reindexes,
/// reads back byte for byte and checks clean; a pack claiming a newer format
/// stops the reindex with an error naming it, rather than being dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_release_store_still_reads_and_a_newer_pack_is_refused() {
    use eden_cas::engine::IntegrityError;
    use eden_cas::meta::{STORE_FORMAT, STORE_FORMAT_KEY};
    use eden_cas::pack::{LEGACY_TRAILER_MAGIC, PACK_FORMAT, PackError};

    let store = Store::new();
    let engine = store.engine();
    let data = noise(700_000, 21);
    let (id, _) = deposit(&engine, "admin", &data).await;
    engine.meta().delete_system(STORE_FORMAT_KEY).unwrap();
    store.close(engine);
    let packs = pack_keys(&store);
    for (_, key) in &packs {
        let path = store.path_of(key);
        let b = std::fs::read(&path).unwrap();
        let n = b.len();
        // The format-2 trailer less its version field and magic.
        let mut old = b[..n - 12].to_vec();
        old.extend_from_slice(LEGACY_TRAILER_MAGIC);
        assert_eq!(parse_pack(&old).unwrap().format, 1);
        std::fs::write(&path, old).unwrap();
    }

    let engine = store.engine();
    assert_eq!(
        engine.meta().system(STORE_FORMAT_KEY).unwrap(),
        Some(STORE_FORMAT.to_le_bytes().to_vec()),
        "adopted"
    );
    // Pack records follow the objects (4 bytes shorter each).
    let report = reindex(&engine).await;
    assert_eq!(report.packs_indexed, packs.len() as u64);
    let rec = engine
        .readable_artifact(EXP, &Principal::Admin, &id)
        .await
        .unwrap();
    assert_eq!(read_all(&engine, &rec).await, data);
    let fsck = engine.fsck(true).await.unwrap();
    assert!(fsck.problems.is_empty(), "{fsck}");

    let mut newer = std::fs::read(store.path_of(&packs[0].1)).unwrap();
    newer.truncate(newer.len() - 8);
    newer.extend_from_slice(&(PACK_FORMAT + 1).to_le_bytes());
    newer.extend_from_slice(b"EDENPKTV");
    let (_, key) = add_newer_pack(&store, packs[0].0, &newer);
    let err = recovery::reindex(engine.meta(), engine.blobs())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            EngineError::Integrity(IntegrityError::Corrupt {
                source: PackError::UnsupportedFormat { .. },
                ..
            })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("pack format 4 is newer"), "{err}");
    assert!(store.path_of(&key).exists());
    store.close(engine);
}
