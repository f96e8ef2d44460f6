//! Metadata recovery against real RocksDB and an fs blob store in temporary
//! directories: reindex from pack footers and manifest objects after the
//! RocksDB directory is lost, the duplicate-chunk rule, partial and corrupt
//! packs, backup → restore, the refusal to restore over metadata, the
//! automatic reindex of `open_engine` on a new metadata directory, and one
//! end-to-end run of the binary (`POST /cas/v1/admin/backup`, `restore`,
//! `reindex`).
//!
//! The fixtures (a data directory, deposits, whole-table snapshots) are
//! here; the tests are in `reindex.rs` (rebuilding the index from the blob
//! store) and `backup_restore.rs` (backup, restore and the automatic reindex).

mod backup_restore;
mod reindex;

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
        labels: Default::default(),
        reference: None,
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
        labels: Default::default(),
        ref_holds: 0,
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
