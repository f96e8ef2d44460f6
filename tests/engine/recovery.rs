//! Metadata recovery against real RocksDB and an fs blob store in temporary
//! directories: reindex from pack footers and manifest objects after the
//! RocksDB directory is lost, the duplicate-chunk rule, partial and corrupt
//! packs, backup → restore, the refusal to restore over metadata, the
//! automatic reindex of `open_engine` on a new metadata directory, and one
//! end-to-end run of the binary (`POST /cas/v1/admin/backup`, `restore`,
//! `reindex`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eden_cas::auth::{Credentials, ExperimentId, MemberId, Principal, WorkerId};
use eden_cas::blobs::{BlobStore, keys};
use eden_cas::config::{Config, Settings};
use eden_cas::engine::backup::{self, BACKUP_INDEX};
use eden_cas::engine::recovery::{self, ReindexReport};
use eden_cas::engine::{DepositRequest, Engine, EngineConfig, EngineError, ReadableArtifact};
use eden_cas::hash::Digest;
use eden_cas::ids::{ArtifactId, PackId};
use eden_cas::meta::Meta;
use eden_cas::meta::records::{ArtifactRecord, ChunkLocation, DedupFigures, Manifest, PackRecord};
use eden_cas::pack::parse_pack;
use futures_util::StreamExt;
use serde_json::{Value, json};
use ulid::Ulid;

use crate::support::engine::{engine_over, noise, req_as, runtime};
use crate::support::v1;

const EXP: ExperimentId = ExperimentId::from_static("exp_00000000000000000000000001");

/// A data directory: `meta/` (RocksDB) and `blobs/` (fs blob store).
struct Store {
    _dir: tempfile::TempDir,
    data: PathBuf,
}

impl Store {
    fn new() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Store { _dir: dir, data }
    }

    fn meta_dir(&self) -> PathBuf {
        self.data.join("meta")
    }

    fn blobs_dir(&self) -> PathBuf {
        self.data.join("blobs")
    }

    fn blobs(&self) -> BlobStore {
        BlobStore::fs(&self.blobs_dir()).unwrap()
    }

    fn engine(&self) -> Arc<Engine> {
        let cfg = EngineConfig {
            pack_target_bytes: 256 << 10,
            ..EngineConfig::default()
        };
        engine_over(&self.meta_dir(), self.blobs(), cfg)
    }

    /// Closes the engine (waiting for background tasks to let go of it).
    fn close(&self, engine: Arc<Engine>) {
        let mut engine = engine;
        for _ in 0..500 {
            match Arc::try_unwrap(engine) {
                Ok(e) => {
                    drop(e);
                    return;
                }
                Err(e) => {
                    engine = e;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        panic!("engine still referenced");
    }

    /// Loses the RocksDB directory.
    fn wipe_meta(&self, engine: Arc<Engine>) {
        self.close(engine);
        std::fs::remove_dir_all(self.meta_dir()).unwrap();
    }

    fn path_of(&self, key: &str) -> PathBuf {
        self.blobs_dir().join(key)
    }
}

/// A deposit by `by` with every optional field set, so that a rebuilt
/// record is seen to carry them all.
fn req(by: &str) -> DepositRequest {
    DepositRequest {
        content_type: "application/x-test".into(),
        filename: Some("f.bin".into()),
        expires_at: Some(eden_cas::clock::Timestamp::from_unix_secs(4_000_000_000)),
        ..req_as(EXP, Principal::parse(by).expect("principal"))
    }
}

/// Several artifacts sharing content: a base, the base with more after it,
/// something before the base, an empty one, and the base again.
fn contents() -> Vec<Vec<u8>> {
    let base = noise(600_000, 1);
    let mut longer = base.clone();
    longer.extend(noise(300_000, 2));
    let mut prefixed = noise(150_000, 3);
    prefixed.extend(&base);
    vec![base.clone(), longer, prefixed, Vec::new(), base]
}

/// Deposits `data`; returns the artifact id and its record.
async fn deposit(engine: &Arc<Engine>, by: &str, data: &[u8]) -> (ArtifactId, ArtifactRecord) {
    let r = engine
        .deposit_bytes(req(by), Bytes::copy_from_slice(data))
        .await
        .unwrap();
    (r.id, r.record)
}

async fn read_all(engine: &Arc<Engine>, rec: &ReadableArtifact) -> Vec<u8> {
    let mut s = engine.read_range(rec, 0, rec.size);
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b.unwrap());
    }
    out
}

/// Reads content by manifest alone, as nothing but the blob store knows it.
async fn read_manifest(engine: &Arc<Engine>, id: &Digest) -> Vec<u8> {
    let m = engine.meta().manifest(id).unwrap().expect("manifest");
    let rec = ArtifactRecord {
        manifest: *id,
        size: m.size,
        content_type: String::new(),
        filename: None,
        created_by: Principal::Admin,
        created_at: eden_cas::clock::Timestamp::UNIX_EPOCH,
        blake3: m.blake3,
        sha256: m.sha256,
        grants: Vec::new(),
        expires_at: None,
        dedup: DedupFigures::default(),
        digest_verified: true,
        visible_dedup: None,
    };
    // Reads go through a readable artifact only: record one for the
    // manifest under a fresh id, read it as the admin, drop it again.
    let scratch = ArtifactId::from_bytes([0xee; 16]);
    let mut b = engine.meta().batch();
    b.put_artifact(&EXP, &scratch, &rec);
    b.commit().unwrap();
    let readable = engine
        .readable_artifact(EXP, &Principal::Admin, &scratch)
        .await
        .unwrap();
    let out = read_all(engine, &readable).await;
    let mut b = engine.meta().batch();
    b.delete_artifact(&EXP, &scratch);
    b.commit().unwrap();
    out
}

/// The tables a reindex rebuilds.
#[derive(Debug, PartialEq)]
struct Tables {
    chunks: Vec<(Digest, ChunkLocation)>,
    packs: Vec<(PackId, PackRecord)>,
    manifests: Vec<(Digest, Manifest)>,
}

fn tables(meta: &Meta) -> Tables {
    let t = Tables {
        chunks: meta.chunk_entries().collect::<Result<_, _>>().unwrap(),
        packs: meta.packs().unwrap(),
        manifests: meta.manifest_entries().collect::<Result<_, _>>().unwrap(),
    };
    for (_, m) in &t.manifests {
        for s in &m.segments {
            assert!(meta.has_segment(&s.id).unwrap(), "segment {} missing", s.id);
        }
    }
    t
}

/// Equal, except that a rebuilt pack record's `created_at` comes from the
/// pack id's ULID time (minted just before the pack was written).
fn assert_same_tables(got: &Tables, want: &Tables) {
    assert_eq!(got.chunks, want.chunks, "chunk index");
    assert_eq!(got.manifests, want.manifests, "manifests");
    assert_eq!(got.packs.len(), want.packs.len(), "pack records");
    for ((gi, g), (wi, w)) in got.packs.iter().zip(&want.packs) {
        assert_eq!(gi, wi);
        assert_eq!(
            (g.bytes, g.chunks, g.raw_bytes),
            (w.bytes, w.chunks, w.raw_bytes)
        );
        let apart = g
            .created_at
            .max(w.created_at)
            .since(g.created_at.min(w.created_at));
        assert!(apart.as_secs() <= 5, "{g:?} vs {w:?}");
    }
}

async fn reindex(engine: &Arc<Engine>) -> ReindexReport {
    recovery::reindex(engine.meta(), engine.blobs())
        .await
        .unwrap()
}

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
    assert!(err.to_string().contains("pack format 3 is newer"), "{err}");
    assert!(store.path_of(&key).exists());
    store.close(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_then_restore_brings_records_back_and_reports_later_content() {
    let store = Store::new();
    let engine = store.engine();
    let (worker, token) = engine
        .register_worker(EXP, Some("trainer".into()), BTreeMap::new())
        .await
        .unwrap();
    let w = worker.worker_id.to_string();
    let all = contents();
    let (a1, _) = deposit(&engine, "admin", &all[0]).await;
    let r1 = engine
        .grant(EXP, &Principal::Admin, &a1, &MemberId::parse(&w).unwrap())
        .await
        .unwrap();
    let (a2, r2) = deposit(&engine, &w, &all[1]).await;

    let made = engine.backup().await.unwrap();
    assert!(made.files > 0 && made.bytes > 0, "{made:?}");
    let index = store.path_of(&keys::backup_file(&made.name, BACKUP_INDEX));
    let index: Value = serde_json::from_slice(&std::fs::read(index).unwrap()).unwrap();
    assert_eq!(index["name"], Value::from(made.name.clone()));
    assert_eq!(index["files"].as_array().unwrap().len() as u64, made.files);
    // The checkpoint directory is gone.
    assert!(!store.data.join("meta.backup-checkpoint").exists());

    // Committed after the backup: overlapping content plus new bytes.
    let (a3, r3) = deposit(&engine, &w, &all[2]).await;
    // A backup that never completed is ignored.
    let stray = store.path_of(&keys::backup_file("29991231T235959Z", "000001.sst"));
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, b"half").unwrap();

    store.wipe_meta(engine);
    let listing = backup::list_backups(&store.blobs()).await.unwrap();
    assert_eq!(listing.complete, vec![made.name.clone()]);
    assert_eq!(listing.incomplete, vec!["29991231T235959Z".to_string()]);
    let restored = backup::restore_backup(&store.blobs(), &store.meta_dir(), &made.name)
        .await
        .unwrap();
    assert_eq!((restored.files, restored.bytes), (made.files, made.bytes));
    assert!(!store.data.join("meta.restoring").exists());

    let engine = store.engine();
    // Whoever opens restored metadata first owes it a reindex.
    assert!(recovery::reindex_pending(engine.meta()).unwrap());
    let report = reindex(&engine).await;
    assert!(!recovery::reindex_pending(engine.meta()).unwrap());
    // Records from before the backup, with their grants and digests.
    let admin = Principal::Admin;
    let back1 = engine.readable_artifact(EXP, &admin, &a1).await.unwrap();
    let back2 = engine.readable_artifact(EXP, &admin, &a2).await.unwrap();
    assert_eq!((back1.record(), back2.record()), (&r1, &r2));
    assert_eq!(read_all(&engine, &back1).await, all[0]);
    assert_eq!(read_all(&engine, &back2).await, all[1]);
    assert_eq!(r1.grants, vec![w.clone()]);
    // The registry and the token-hashing key came back: the token works.
    let creds = Credentials {
        principal: Principal::Worker(WorkerId::parse(&w).unwrap()),
        secret: token,
    };
    assert!(engine.authenticate(EXP, &creds).await.is_ok());
    // The later artifact has no record, but its content is intact and listed.
    assert!(matches!(
        engine.readable_artifact(EXP, &admin, &a3).await,
        Err(EngineError::NotFound)
    ));
    assert_eq!(report.artifacts, 2);
    assert_eq!(report.artifacts_without_manifest, 0);
    assert_eq!(report.unclaimed_manifests.len(), 1);
    let u = &report.unclaimed_manifests[0];
    assert_eq!(
        (u.id, u.size, u.blake3),
        (r3.manifest, all[2].len() as u64, r3.blake3)
    );
    assert_eq!(read_manifest(&engine, &u.id).await, all[2]);
    // Its packs, written after the backup, were indexed: nothing is missing.
    let m = engine.meta().manifest(&u.id).unwrap().unwrap();
    for s in &m.segments {
        let seg = engine.meta().segment(&s.id).unwrap().unwrap();
        let ids: Vec<Digest> = seg.entries.iter().map(|e| e.id).collect();
        assert!(
            engine
                .meta()
                .chunks(&ids)
                .unwrap()
                .iter()
                .all(Option::is_some)
        );
    }
    store.close(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_non_empty_meta_dir() {
    let store = Store::new();
    let engine = store.engine();
    deposit(&engine, "admin", &noise(10_000, 5)).await;
    let made = engine.backup().await.unwrap();
    store.close(engine);
    let before = std::fs::read_dir(store.meta_dir()).unwrap().count();
    let err = backup::restore_backup(&store.blobs(), &store.meta_dir(), &made.name)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::AlreadyExists), "{err:?}");
    assert_eq!(std::fs::read_dir(store.meta_dir()).unwrap().count(), before);
    // An empty directory is fine.
    std::fs::remove_dir_all(store.meta_dir()).unwrap();
    std::fs::create_dir(store.meta_dir()).unwrap();
    backup::restore_backup(&store.blobs(), &store.meta_dir(), &made.name)
        .await
        .unwrap();
    // A damaged backup file is refused, and nothing is left behind.
    std::fs::remove_dir_all(store.meta_dir()).unwrap();
    let idx: Value = serde_json::from_slice(
        &std::fs::read(store.path_of(&keys::backup_file(&made.name, BACKUP_INDEX))).unwrap(),
    )
    .unwrap();
    let largest = idx["files"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|f| f["bytes"].as_u64().unwrap())
        .unwrap();
    let path = store.path_of(&keys::backup_file(
        &made.name,
        largest["name"].as_str().unwrap(),
    ));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = backup::restore_backup(&store.blobs(), &store.meta_dir(), &made.name)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Integrity(_)), "{err:?}");
    assert!(!store.meta_dir().exists());
    assert!(!store.data.join("meta.restoring").exists());
}

fn config(data: &Path) -> Config {
    let mut settings = Settings::default();
    settings.server.data_dir = Some(data.to_path_buf());
    Config::from_settings(&settings).unwrap()
}

#[test]
fn open_engine_reindexes_a_new_meta_dir_over_an_existing_blob_store() {
    let store = Store::new();
    let cfg = config(&store.data);
    let rt = runtime();
    // A brand-new store: nothing to rebuild, nothing owed.
    let engine = eden_cas::server::open_engine(&cfg).unwrap();
    assert!(!recovery::reindex_pending(engine.meta()).unwrap());
    let data = noise(300_000, 21);
    let (_, rec) = rt.block_on(deposit(&engine, "admin", &data));
    let before = tables(engine.meta());

    // RocksDB lost: reopening rebuilds the index before anything else.
    store.wipe_meta(engine);
    let engine = eden_cas::server::open_engine(&cfg).unwrap();
    assert!(!recovery::reindex_pending(engine.meta()).unwrap());
    assert_same_tables(&tables(engine.meta()), &before);
    assert_eq!(rt.block_on(read_manifest(&engine, &rec.manifest)), data);

    // An interrupted reindex is finished at the next open.
    let (gone, _) = before.chunks[0];
    let mut b = engine.meta().batch();
    b.delete_chunk(&gone);
    b.commit().unwrap();
    recovery::mark_reindex_pending(engine.meta()).unwrap();
    store.close(engine);
    let engine = eden_cas::server::open_engine(&cfg).unwrap();
    assert!(!recovery::reindex_pending(engine.meta()).unwrap());
    assert!(engine.meta().chunk(&gone).unwrap().is_some());
    store.close(engine);
}

/// Runs the binary offline on `data`; returns (success, stdout, stderr).
fn cli(args: &[&str], data: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eden-cas"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .env_remove("EDEN_CAS_BLOB_STORE")
        .env_remove("EDEN_CAS_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn binary_backup_over_http_then_offline_restore_end_to_end() {
    use crate::support::server::*;
    let mut server = Server::start();
    let admin = server.admin_bearer();
    let exp = exp_id();
    let (_, worker) = register_worker(&server, &exp);
    let early = noise(700_000, 31);
    let a = v1::deposit_ok(&server, &exp, &worker, &early);
    let a_id = a["id"].as_str().unwrap().to_string();

    let backup_url = format!("{}/cas/v1/admin/backup", server.base_url());
    let post = |bearer: Option<&str>| {
        let mut rb = server.client().post(&backup_url);
        if let Some(b) = bearer {
            rb = rb.header("Authorization", format!("Bearer {b}"));
        }
        send(rb)
    };
    v1::assert_problem(post(None), 401, "eden://error/unauthorized");
    v1::assert_problem(
        post(Some("admin:wrong-token-0123456")),
        401,
        "eden://error/unauthorized",
    );
    v1::assert_problem(post(Some(&worker)), 403, "eden://error/forbidden");
    let made = expect_json(post(Some(&admin)), 200);
    let name = made["name"].as_str().unwrap().to_string();
    assert!(made["files"].as_u64().unwrap() > 0 && made["bytes"].as_u64().unwrap() > 0);
    assert_eq!(keys(&made), vec!["bytes", "files", "name"]);

    let mut late = early[..300_000].to_vec();
    late.extend(noise(200_000, 32));
    let b = v1::deposit_ok(&server, &exp, &worker, &late);
    let b_id = b["id"].as_str().unwrap().to_string();
    let b_manifest_blake3 = v1::b3(&late);

    // RocksDB lost; the server restarts on the blob store alone and says so.
    server.kill9();
    let data = server.data_dir().to_path_buf();
    std::fs::remove_dir_all(data.join("meta")).unwrap();
    server.restart();
    let tail = server.stderr_tail();
    assert!(tail.contains("`eden-cas restore`"), "{tail}");
    v1::assert_problem(
        v1::get(&server, &exp, &format!("/artifacts/{a_id}"), &admin),
        404,
        "eden://error/not-found",
    );
    server.kill9();

    // Restore never writes over metadata…
    let (ok, _, err) = cli(&["restore"], &data);
    assert!(!ok);
    assert!(err.contains("exists and is not empty"), "{err}");
    // …so the operator moves it aside first.
    std::fs::rename(data.join("meta"), data.join("meta.old")).unwrap();
    let (ok, _, err) = cli(&["restore", "--from", "19700101T000000Z"], &data);
    assert!(!ok && err.contains("no backup named"), "{err}");
    let (ok, out, err) = cli(&["restore"], &data);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains(&format!("restored backup {name}")), "{out}");
    assert!(out.contains("unclaimed manifests  1"), "{out}");
    assert!(out.contains(&b_manifest_blake3), "{out}");
    let (ok, out, err) = cli(&["reindex"], &data);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("packs scanned"), "{out}");

    server.restart();
    // The worker, its token, the artifact and its record are back.
    let got = v1::fetch_bytes(&server, &exp, &worker, &a_id, None, 200);
    assert_eq!(got, early);
    let meta = expect_json(
        v1::get(&server, &exp, &format!("/artifacts/{a_id}/meta"), &worker),
        200,
    );
    assert_eq!(meta, json!(a));
    // The later one has no record: 404, while its bytes stay in the store.
    v1::assert_problem(
        v1::get(&server, &exp, &format!("/artifacts/{b_id}"), &worker),
        404,
        "eden://error/not-found",
    );
}
