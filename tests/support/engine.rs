//! Shared fixtures for engine-level integration tests: an engine over real
//! RocksDB and a real blob store ([`engine_over`]; [`Fixture`] puts both in
//! a temp dir on fs), plus deposit, fetch, session and storage-inspection
//! helpers. Re-exports the test data helpers of [`super`].

#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use eden_cas::auth::token::Secret;
use eden_cas::auth::{ExperimentId, Principal};
use eden_cas::blobs::{BlobStore, keys};
use eden_cas::chunking::ChunkerParams;
use eden_cas::engine::uploads::{CommitRequest, SessionRequest};
use eden_cas::engine::{DepositRequest, Engine, EngineConfig, EngineError};
use eden_cas::hash::Digest;
use eden_cas::ids::{ArtifactId, SessionId};
use eden_cas::meta::Meta;
use eden_cas::meta::records::ManifestEntry;
use eden_cas::pack::reader::PackReader;
use futures_util::StreamExt;

pub use super::{chunks_of, chunks_with, frames, noise, runtime};

/// The experiment every fixture deposits into.
pub const EXP: ExperimentId = ExperimentId::from_static("exp_00000000000000000000000001");

/// The admin token of every engine opened here.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123";

/// Small chunks (1/4/16 KiB), so small test data spans many chunks.
pub fn small_chunker() -> ChunkerParams {
    ChunkerParams {
        min_bytes: 1024,
        avg_bytes: 4096,
        max_bytes: 16384,
        normalization: 1,
    }
}

/// An engine in a temp dir, with its runtime.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub engine: Arc<Engine>,
}

impl Fixture {
    /// Small chunks, 256 KiB packs, no compression (stored = raw bytes).
    pub fn new() -> Fixture {
        Fixture::with(EngineConfig {
            chunker: small_chunker(),
            pack_target_bytes: 256 << 10,
            compression_level: 0,
            ..EngineConfig::default()
        })
    }

    /// An engine with `cfg` over fresh stores.
    pub fn with(cfg: EngineConfig) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = open(dir.path(), cfg);
        Fixture { dir, engine }
    }

    /// The blob store's root directory.
    pub fn blob_root(&self) -> PathBuf {
        self.dir.path().join("blobs")
    }
}

/// Opens the engine of a data dir (`meta/`, `blobs/` on fs).
pub fn open(dir: &Path, cfg: EngineConfig) -> Arc<Engine> {
    let blobs = BlobStore::fs(&dir.join("blobs")).expect("open blobs");
    engine_over(&dir.join("meta"), blobs, cfg)
}

/// An engine over the metadata of `meta_dir` ([`open_meta`]) and `blobs`,
/// with [`ADMIN_TOKEN`] as its admin token.
pub fn engine_over(meta_dir: &Path, blobs: BlobStore, cfg: EngineConfig) -> Arc<Engine> {
    Engine::new(open_meta(meta_dir), blobs, cfg, Secret::new(ADMIN_TOKEN)).expect("engine")
}

/// Whether the suite runs over PostgreSQL (`EDEN_CAS_TEST_META=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("EDEN_CAS_TEST_META").as_deref() == Ok("postgres")
}

/// The environment an `eden-cas` process needs to open the metadata of
/// `meta_dir` as [`open_meta`] does (nothing on RocksDB).
pub fn meta_env(meta_dir: &Path) -> Vec<(String, String)> {
    if on_postgres() {
        super::pg::schema_for_dir(meta_dir).env()
    } else {
        Vec::new()
    }
}

/// The metadata store of `meta_dir`, on the engine the suite runs against:
/// RocksDB in the directory, or, with `EDEN_CAS_TEST_META=postgres`, a
/// PostgreSQL schema of its own whose name the directory holds (a deleted
/// directory is lost metadata on both engines: a new schema is made).
pub fn open_meta(meta_dir: &Path) -> Meta {
    match std::env::var("EDEN_CAS_TEST_META").as_deref() {
        Ok("postgres") => super::pg::schema_for_dir(meta_dir).meta(),
        Ok("rocksdb") | Err(_) => Meta::open(meta_dir).expect("open meta"),
        Ok(other) => panic!("EDEN_CAS_TEST_META={other}: rocksdb or postgres"),
    }
}

/// A deposit request by the admin into [`EXP`].
pub fn req() -> DepositRequest {
    req_as(EXP, Principal::Admin)
}

/// A deposit request by `by` (a principal's name) into `exp`: opaque bytes,
/// no filename, no expiry.
pub fn req_as(exp: ExperimentId, by: Principal) -> DepositRequest {
    DepositRequest {
        experiment: exp,
        created_by: by,
        content_type: "application/octet-stream".into(),
        filename: None,
        expires_at: None,
        labels: Default::default(),
        reference: None,
    }
}

/// Deposits `data` as the admin; returns the artifact id.
pub async fn deposit(engine: &Arc<Engine>, data: &[u8]) -> ArtifactId {
    let receipt = engine
        .deposit_bytes(req(), Bytes::copy_from_slice(data))
        .await
        .expect("deposit");
    receipt.id
}

/// Fetches a whole artifact as the admin: `None` if it is not served
/// (absent or expired), `Err` if the read failed.
pub async fn fetch(engine: &Arc<Engine>, id: &ArtifactId) -> Result<Option<Vec<u8>>, EngineError> {
    let rec = match engine.readable_artifact(EXP, &Principal::Admin, id).await {
        Ok(rec) => rec,
        Err(EngineError::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut out = Vec::with_capacity(rec.size as usize);
    let mut s = engine.read_range(&rec, 0, rec.size);
    while let Some(part) = s.next().await {
        out.extend_from_slice(&part?);
    }
    Ok(Some(out))
}

/// Deletes an artifact as the admin.
pub async fn delete(engine: &Arc<Engine>, id: &ArtifactId) {
    engine
        .delete_artifact(EXP, &Principal::Admin, id)
        .await
        .expect("delete");
}

/// What the blob store holds: pack objects, their total size, and the
/// chunk bytes in them (size minus header, footer and trailer).
#[derive(Debug, Default)]
pub struct Stored {
    pub packs: usize,
    pub bytes: u64,
    pub chunk_bytes: u64,
    pub manifests: usize,
}

/// Inspects the blob store.
pub async fn stored(engine: &Arc<Engine>) -> Stored {
    let blobs = engine.blobs();
    let mut s = Stored::default();
    for (key, size) in blobs.list(keys::PACKS).await.expect("list packs") {
        s.packs += 1;
        s.bytes += size;
        let id = keys::parse_pack(&key).expect("a pack key");
        let tail = PackReader::new(blobs)
            .tail(id, size)
            .await
            .expect("complete pack");
        s.chunk_bytes += tail.chunk_bytes();
    }
    s.manifests = blobs
        .list(keys::MANIFESTS)
        .await
        .expect("list manifests")
        .len();
    s
}

/// Every indexed chunk id with its stored length.
pub fn indexed(engine: &Arc<Engine>) -> Vec<(Digest, u32)> {
    let mut out = Vec::new();
    engine
        .meta()
        .scan_chunks(|id, loc| {
            out.push((id, loc.stored_len));
            true
        })
        .expect("scan chunks");
    out
}

/// Chunk ids of content as the engine cuts it with `params`.
pub fn chunk_ids(data: &[u8], params: ChunkerParams) -> HashSet<Digest> {
    chunks_with(data, params)
        .iter()
        .map(|c| Digest::of(c))
        .collect()
}

/// Opens an upload session as the admin in [`EXP`].
pub async fn open_session(engine: &Arc<Engine>) -> SessionId {
    let v = engine
        .create_upload(EXP, &Principal::Admin, SessionRequest::default())
        .await
        .expect("create session");
    v.id
}

/// Sends `chunks` (each taken as one chunk) to a session in one batch.
pub async fn send_chunks(engine: &Arc<Engine>, session: &SessionId, chunks: &[&[u8]]) {
    let mut batch = engine
        .begin_chunk_batch(EXP, &Principal::Admin, session)
        .await
        .expect("begin batch");
    batch.push(frames(chunks)).await.expect("push batch");
    batch.finish().await.expect("finish batch");
}

/// The manifest entries (id, length) of `chunks`, in order: what a commit
/// names.
pub fn manifest_entries<C: AsRef<[u8]>>(chunks: &[C]) -> Vec<ManifestEntry> {
    chunks
        .iter()
        .map(|c| ManifestEntry {
            id: Digest::of(c.as_ref()),
            len: c.as_ref().len() as u32,
        })
        .collect()
}

/// Commits a session as the content `chunks` (in order); returns the
/// artifact id.
pub async fn commit_chunks(
    engine: &Arc<Engine>,
    session: &SessionId,
    chunks: &[&[u8]],
) -> ArtifactId {
    let entries = manifest_entries(chunks);
    let r = engine
        .commit_upload(
            EXP,
            &Principal::Admin,
            session,
            CommitRequest {
                chunks: entries,
                blake3: Digest::of(&chunks.concat()),
                content_type: None,
                filename: None,
            },
        )
        .await
        .expect("commit");
    r.id
}
