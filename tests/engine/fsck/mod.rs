//! Integrity: `fsck` (in process and through the binary's exit codes and
//! the admin endpoint), the scrubber, and self-healing of chunks marked bad
//! — real RocksDB and the fs blob store in temporary directories.
//!
//! The fixtures are here; `report.rs` holds the fsck reports (in process,
//! through the binary and the admin endpoint), `scrub_heal.rs` the
//! scrubber and self-healing.

mod report;
mod scrub_heal;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use eden_cas::auth::{ExperimentId, Principal};
use eden_cas::blobs::keys;
use eden_cas::clock::Timestamp;
use eden_cas::engine::fsck::ProblemKind;
use eden_cas::engine::ingest::parse_artifact_id;
use eden_cas::engine::uploads::{CommitRequest, SessionRequest};
use eden_cas::engine::{DepositRequest, Engine, EngineConfig, EngineError, FsckReport};
use eden_cas::hash::Digest;
use eden_cas::ids::PackId;
use eden_cas::meta::records::{ChunkLocation, ManifestEntry};
use futures_util::StreamExt;
use serde_json::Value;

use crate::support::engine::{
    ADMIN_TOKEN, chunks_of, frames, manifest_entries, noise, open, req_as, runtime,
};
use crate::support::packs::flip;
use crate::support::server::{Server, deposit_ok, exp_id, register_worker};
const EXP: ExperimentId = ExperimentId::from_static("exp_00000000000000000000000001");
const EXP2: ExperimentId = ExperimentId::from_static("exp_00000000000000000000000002");

/// A store laid out as `serve` lays it out: `<dir>/meta`, `<dir>/blobs`.
struct Store {
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    engine: Option<Arc<Engine>>,
}

impl Store {
    fn new() -> Store {
        let mut s = Store {
            dir: tempfile::tempdir().unwrap(),
            rt: runtime(),
            engine: None,
        };
        s.open();
        s
    }

    fn open(&mut self) {
        let cfg = EngineConfig {
            pack_target_bytes: 1 << 20,
            compression_level: 0,
            ..EngineConfig::default()
        };
        self.engine = Some(open(self.dir.path(), cfg));
    }

    /// Drops the engine (and its RocksDB lock) so the binary can open it.
    fn close(&mut self) {
        self.engine = None;
    }

    fn e(&self) -> &Arc<Engine> {
        self.engine.as_ref().unwrap()
    }

    fn deposit(&self, exp: ExperimentId, data: &[u8], expires_at: Option<i64>) -> String {
        let expires_at = expires_at.map(eden_cas::clock::Timestamp::from_unix_secs);
        let e = Arc::clone(self.e());
        let data = Bytes::copy_from_slice(data);
        self.rt.block_on(async move {
            let req = DepositRequest {
                expires_at,
                labels: Default::default(),
                reference: None,
                ..req_as(exp, Principal::Admin)
            };
            e.deposit_bytes(req, data).await.unwrap().id.to_string()
        })
    }

    fn read(&self, exp: ExperimentId, id: &str) -> Result<Vec<u8>, EngineError> {
        let e = Arc::clone(self.e());
        let id = parse_artifact_id(id).unwrap();
        self.rt.block_on(async move {
            let rec = e
                .readable_artifact(exp, &Principal::Admin, &id)
                .await
                .expect("artifact");
            let mut s = e.read_range(&rec, 0, rec.size);
            let mut out = Vec::new();
            while let Some(part) = s.next().await {
                out.extend_from_slice(&part?);
            }
            Ok(out)
        })
    }

    fn fsck(&self, deep: bool) -> FsckReport {
        let e = Arc::clone(self.e());
        self.rt.block_on(async move { e.fsck(deep).await.unwrap() })
    }

    fn loc(&self, id: &Digest) -> ChunkLocation {
        self.e().meta().chunk(id).unwrap().unwrap()
    }

    fn pack_path(&self, pack: PackId) -> PathBuf {
        self.dir.path().join("blobs").join(keys::pack(pack))
    }

    /// Flips one byte inside the stored copy of chunk `id`.
    fn corrupt(&self, id: &Digest) -> ChunkLocation {
        let loc = self.loc(id);
        flip(
            &self.pack_path(loc.pack),
            loc.offset + u64::from(loc.stored_len) / 2,
        );
        loc
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

fn kinds(r: &FsckReport) -> Vec<ProblemKind> {
    r.problems.iter().map(|p| p.kind).collect()
}

fn affected_ids(r: &FsckReport, kind: ProblemKind) -> Vec<String> {
    let p = r
        .problems
        .iter()
        .find(|p| p.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} problem in {:#?}", r.problems));
    let mut ids: Vec<String> = p.affected.iter().map(|a| a.id.clone()).collect();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Runs `eden-cas fsck` on a data directory.
fn fsck_bin(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eden-cas"))
        .arg("fsck")
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .envs(crate::support::engine::meta_env(&dir.join("meta")))
        .env("EDEN_CAS_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
