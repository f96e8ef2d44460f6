//! Integrity: `fsck` (in process and through the binary's exit codes and
//! the admin endpoint), the scrubber, and self-healing of chunks marked bad
//! — real RocksDB and the fs blob store in temporary directories.

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

use crate::support::engine::{ADMIN_TOKEN, chunks_of, frames, noise, open, req_as, runtime};
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

#[test]
fn clean_store_reports_nothing() {
    let s = Store::new();
    let x = noise(700_000, 1);
    s.deposit(EXP, &x, None);
    s.deposit(EXP2, &x, None); // the same content, deduplicated
    s.deposit(EXP, &noise(300_000, 2), Some(1)); // expired long ago
    s.deposit(EXP, b"", None);
    let r = s.fsck(false);
    assert!(r.is_clean(), "{r}");
    assert_eq!(r.artifacts_checked, 4);
    assert_eq!(r.artifacts_expired, 1);
    assert!(r.packs_checked >= 2);
    assert!(r.chunks_indexed > 10);
    assert_eq!(r.chunks_verified, r.chunks_indexed);
    assert!(r.pack_bytes_verified >= 1_000_000);
    assert_eq!(r.content_bytes_read_back, 0);
    let r = s.fsck(true);
    assert!(r.is_clean(), "{r}");
    // Shared content is read back once.
    assert_eq!(r.content_bytes_read_back, 1_000_000);
    assert!(r.to_string().contains("no problems found"));
}

#[test]
fn a_corrupt_chunk_is_reported_with_the_artifacts_it_breaks() {
    let mut s = Store::new();
    let x = noise(600_000, 3);
    let a = s.deposit(EXP, &x, None);
    let b = s.deposit(EXP2, &[x.clone(), noise(200_000, 4)].concat(), None);
    let c = s.deposit(EXP, &noise(400_000, 5), None);
    let (code, out, err) = {
        s.close();
        let r = fsck_bin(s.data_dir(), &[]);
        s.open();
        r
    };
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("no problems found"), "{out}");

    let first = Digest::of(&chunks_of(&x)[0]);
    let loc = s.corrupt(&first);
    // --deep: the chunk, and the whole-content digests of both artifacts.
    let r = s.fsck(true);
    let corrupt: Vec<_> = r
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::ChunkCorrupt)
        .collect();
    assert_eq!(corrupt.len(), 1, "{r}");
    let p = corrupt[0];
    assert_eq!(p.chunk.as_deref(), Some(first.to_hex().as_str()));
    assert_eq!(p.pack, Some(loc.pack.to_string()));
    assert!(p.detail.contains("BLAKE3"), "{}", p.detail);
    assert_eq!(p.affected_total, 2);
    assert_eq!(
        affected_ids(&r, ProblemKind::ChunkCorrupt),
        sorted(vec![a.clone(), b.clone()])
    );
    assert!(!affected_ids(&r, ProblemKind::ChunkCorrupt).contains(&c));
    let exps: Vec<&str> = p.affected.iter().map(|x| x.experiment.as_str()).collect();
    assert!(exps.contains(&EXP.as_str()) && exps.contains(&EXP2.as_str()));
    let digest: Vec<_> = r
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::ContentDigestMismatch)
        .collect();
    assert_eq!(digest.len(), 2, "{r}");
    let mut hit: Vec<String> = digest
        .iter()
        .flat_map(|p| p.affected.iter().map(|x| x.id.clone()))
        .collect();
    hit.sort();
    assert_eq!(hit, sorted(vec![a.clone(), b.clone()]));

    // fsck marked the copy it proved bad (issue 9 §3): from now on it is
    // reported as marked bad, with the same artifacts, until an upload
    // of the content heals it.
    let r = s.fsck(false);
    assert_eq!(kinds(&r), vec![ProblemKind::ChunkMarkedBad], "{r}");
    assert_eq!(
        r.problems[0].chunk.as_deref(),
        Some(first.to_hex().as_str())
    );
    assert_eq!(
        affected_ids(&r, ProblemKind::ChunkMarkedBad),
        sorted(vec![a.clone(), b.clone()])
    );

    // The binary: exit 1, the chunk and the artifacts named; JSON too.
    s.close();
    let (code, out, err) = fsck_bin(s.data_dir(), &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("chunk_marked_bad"), "{out}");
    assert!(out.contains(&first.to_hex()) && out.contains(&a) && out.contains(&b));
    let (code, out, _) = fsck_bin(s.data_dir(), &["--deep", "--json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["deep"], true);
    let kinds: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"chunk_marked_bad"), "{kinds:?}");
    assert_eq!(v["problems"][0]["affected_total"], 2);
    assert!(v["verify_mb_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_missing_pack_is_reported_with_the_artifacts_it_breaks() {
    let s = Store::new();
    let kept = s.deposit(EXP, &noise(300_000, 6), None);
    let z = noise(500_000, 7);
    let lost = s.deposit(EXP, &z, None);
    let expired = s.deposit(EXP2, &z, Some(1));
    let pack = s.loc(&Digest::of(&chunks_of(&z)[0])).pack;
    std::fs::remove_file(s.pack_path(pack)).unwrap();
    let r = s.fsck(false);
    assert_eq!(kinds(&r), vec![ProblemKind::PackMissing], "{r}");
    let p = &r.problems[0];
    assert_eq!(p.pack, Some(pack.to_string()));
    assert_eq!(p.chunks as usize, chunks_of(&z).len());
    assert_eq!(
        affected_ids(&r, ProblemKind::PackMissing),
        sorted(vec![lost.clone(), expired.clone()])
    );
    assert!(p.affected.iter().any(|a| a.id == expired && a.expired));
    assert!(!affected_ids(&r, ProblemKind::PackMissing).contains(&kept));

    // The scrubber marks the lost chunks bad, so the next deposit heals.
    let e = Arc::clone(s.e());
    let rep =
        s.rt.block_on(async move { e.scrub_pass(u64::MAX).await.unwrap() });
    assert_eq!(rep.marked_bad as usize, chunks_of(&z).len());
    assert!(s.read(EXP, &lost).is_err());
    s.deposit(EXP, &z, None);
    assert_eq!(s.read(EXP, &lost).unwrap(), z);
    // Nothing points into the lost pack any more: its record is garbage for
    // GC, not a problem.
    let r = s.fsck(true);
    assert!(r.is_clean(), "{r}");
}

#[test]
fn scrub_marks_a_corrupt_chunk_bad_and_a_new_deposit_heals_it() {
    let s = Store::new();
    let x = noise(900_000, 8);
    let a = s.deposit(EXP, &x, None);
    let other = s.deposit(EXP, &noise(200_000, 9), None);
    let bad = Digest::of(&chunks_of(&x)[2]);
    let old = s.corrupt(&bad);

    let e = Arc::clone(s.e());
    let rep =
        s.rt.block_on(async move { e.scrub_pass(u64::MAX).await.unwrap() });
    assert_eq!((rep.corrupt_chunks, rep.marked_bad), (1, 1), "{rep:?}");
    assert_eq!(rep.packs, 2);
    let now = s.loc(&bad);
    assert!(now.bad && now.pack == old.pack && now.offset == old.offset);
    assert!(s.e().meta().pack_scrubbed_at(old.pack).unwrap().is_some());
    let stats = &s.e().stats;
    assert_eq!(stats.scrub_corrupt_chunks.load(Ordering::Relaxed), 1);
    assert_eq!(stats.scrub_packs.load(Ordering::Relaxed), 2);
    assert_eq!(
        stats.scrub_bytes.load(Ordering::Relaxed),
        rep.bytes,
        "bytes counted"
    );
    // Marking is conditional: a stale expectation changes nothing.
    let e = Arc::clone(s.e());
    let stale = ChunkLocation {
        offset: old.offset + 1,
        ..old
    };
    assert!(
        !s.rt
            .block_on(async move { e.mark_chunk_bad(bad, stale).await.unwrap() })
    );

    // Reads still fail (never wrong bytes); fsck names the bad chunk.
    assert!(matches!(s.read(EXP, &a), Err(EngineError::Integrity(_))));
    let r = s.fsck(false);
    assert_eq!(kinds(&r), vec![ProblemKind::ChunkMarkedBad], "{r}");
    assert_eq!(
        affected_ids(&r, ProblemKind::ChunkMarkedBad),
        vec![a.clone()]
    );

    // The same content again: only the bad chunk is stored anew.
    let b = s.deposit(EXP2, &x, None);
    let rec = s
        .e()
        .meta()
        .artifact(&EXP2, &parse_artifact_id(&b).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(rec.dedup.new_chunks, 1);
    let healed = s.loc(&bad);
    assert!(!healed.bad && healed.pack != old.pack);
    assert_eq!(
        s.read(EXP, &a).unwrap(),
        x,
        "the old artifact reads the fresh copy"
    );
    assert_eq!(s.read(EXP, &other).unwrap().len(), 200_000);
    // The corrupt copy is now a dead footer entry: not a problem.
    let r = s.fsck(true);
    assert!(r.is_clean(), "{r}");
    let e = Arc::clone(s.e());
    let rep =
        s.rt.block_on(async move { e.scrub_pass(u64::MAX).await.unwrap() });
    assert_eq!((rep.packs, rep.corrupt_chunks), (3, 0));
}

#[test]
fn an_upload_session_heals_a_bad_chunk() {
    let s = Store::new();
    let x = noise(500_000, 10);
    let chunks = chunks_of(&x);
    let a = s.deposit(EXP, &x, None);
    let bad = Digest::of(&chunks[1]);
    s.corrupt(&bad);
    let e = Arc::clone(s.e());
    let content = x.clone();
    s.rt.block_on(async move {
        let x = content;
        let rep = e.scrub_pass(u64::MAX).await.unwrap();
        assert_eq!(rep.marked_bad, 1);
        let admin = Principal::Admin;
        let v = e
            .create_upload(EXP, &admin, SessionRequest::default())
            .await
            .unwrap();
        let sid = v.id;
        let ids: Vec<Digest> = chunks.iter().map(|c| Digest::of(c)).collect();
        // Everything is present for the admin but the bad chunk.
        let missing = e
            .upload_missing(EXP, &admin, &sid, ids.clone())
            .await
            .unwrap();
        assert_eq!(missing, vec![bad]);
        let entries: Vec<ManifestEntry> = chunks
            .iter()
            .map(|c| ManifestEntry {
                id: Digest::of(c),
                len: c.len() as u32,
            })
            .collect();
        let commit = |entries: Vec<ManifestEntry>| CommitRequest {
            chunks: entries,
            blake3: Digest::of(&x),
            content_type: None,
            filename: None,
        };
        match e
            .commit_upload(EXP, &admin, &sid, commit(entries.clone()))
            .await
        {
            Err(EngineError::ChunksMissing { first, total }) => {
                assert_eq!((first, total), (vec![bad], 1));
            }
            other => panic!("expected ChunksMissing, got {other:?}"),
        }
        let mut batch = e.begin_chunk_batch(EXP, &admin, &sid).await.unwrap();
        batch.push(frames(&[&chunks[1]])).await.unwrap();
        let out = batch.finish().await.unwrap();
        assert_eq!(out.received, 1);
        assert!(e.meta().chunk(&bad).unwrap().unwrap().usable());
        assert!(
            e.upload_missing(EXP, &admin, &sid, ids)
                .await
                .unwrap()
                .is_empty()
        );
        let r = e
            .commit_upload(EXP, &admin, &sid, commit(entries))
            .await
            .unwrap();
        assert!(r.record.digest_verified);
    });
    assert_eq!(s.read(EXP, &a).unwrap(), x);
    assert!(s.fsck(true).is_clean());
}

#[test]
fn a_pinned_chunk_marked_bad_is_sent_again() {
    let s = Store::new();
    let y = noise(300_000, 11);
    let chunks = chunks_of(&y);
    let e = Arc::clone(s.e());
    let st = &s;
    s.rt.block_on(async move {
        let admin = Principal::Admin;
        let v = e
            .create_upload(EXP, &admin, SessionRequest::default())
            .await
            .unwrap();
        let sid = v.id;
        let all: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let mut batch = e.begin_chunk_batch(EXP, &admin, &sid).await.unwrap();
        batch.push(frames(&all)).await.unwrap();
        batch.finish().await.unwrap();
        let bad = Digest::of(&chunks[0]);
        st.corrupt(&bad);
        assert_eq!(e.scrub_pass(u64::MAX).await.unwrap().marked_bad, 1);
        let ids: Vec<Digest> = chunks.iter().map(|c| Digest::of(c)).collect();
        assert_eq!(
            e.upload_missing(EXP, &admin, &sid, ids).await.unwrap(),
            vec![bad],
            "pinned by the session, but its stored copy is bad"
        );
        let mut batch = e.begin_chunk_batch(EXP, &admin, &sid).await.unwrap();
        batch.push(frames(&all[..1])).await.unwrap();
        batch.finish().await.unwrap();
        let entries = chunks
            .iter()
            .map(|c| ManifestEntry {
                id: Digest::of(c),
                len: c.len() as u32,
            })
            .collect();
        let r = e
            .commit_upload(
                EXP,
                &admin,
                &sid,
                CommitRequest {
                    chunks: entries,
                    blake3: Digest::of(&y),
                    content_type: None,
                    filename: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(r.record.size, y.len() as u64);
    });
    assert!(s.fsck(false).is_clean());
}

#[test]
fn scrub_passes_share_the_budget_oldest_verified_first() {
    let s = Store::new();
    for seed in 20..23 {
        s.deposit(EXP, &noise(200_000, seed), None);
    }
    let packs: Vec<PackId> = s
        .e()
        .meta()
        .packs()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(packs.len(), 3);
    let mut verified = Vec::new();
    for _ in 0..3 {
        let e = Arc::clone(s.e());
        let rep = s.rt.block_on(async move { e.scrub_pass(1).await.unwrap() });
        assert_eq!(rep.packs, 1, "a small budget verifies one pack per pass");
        let now: Vec<PackId> = s
            .e()
            .meta()
            .pack_scrub_times()
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let new: Vec<PackId> = now
            .iter()
            .copied()
            .filter(|p| !verified.contains(p))
            .collect();
        assert_eq!(
            new.len(),
            1,
            "each pass continues with a never-verified pack"
        );
        verified.extend(new);
    }
    verified.sort();
    let mut all = packs.clone();
    all.sort();
    assert_eq!(verified, all);
    // Stamps older than every other go first: age one artificially.
    let oldest = all[1];
    let mut b = s.e().meta().batch();
    for p in &all {
        let secs = if *p == oldest { 10 } else { 20 };
        b.put_pack_scrub(*p, Timestamp::from_unix_secs(secs));
    }
    b.commit().unwrap();
    let e = Arc::clone(s.e());
    s.rt.block_on(async move { e.scrub_pass(1).await.unwrap() });
    let t = s.e().meta().pack_scrubbed_at(oldest).unwrap().unwrap();
    assert!(
        t > Timestamp::from_unix_secs(20),
        "the least recently verified pack went first"
    );
    let e = Arc::clone(s.e());
    let rep =
        s.rt.block_on(async move { e.scrub_pass(u64::MAX).await.unwrap() });
    assert_eq!(rep.packs, 3);
}

#[test]
fn footer_index_and_manifest_damage_is_reported() {
    let s = Store::new();
    let x = noise(400_000, 40);
    let y = noise(300_000, 41);
    let z = noise(200_000, 42);
    let a = s.deposit(EXP, &x, None);
    let b = s.deposit(EXP, &y, None);
    let c = s.deposit(EXP, &z, None);

    // A damaged footer: the chunks still verify from the index side, but
    // the pack can no longer be re-indexed from the blob store.
    let xpack = s.loc(&Digest::of(&chunks_of(&x)[0])).pack;
    let path = s.pack_path(xpack);
    let footer_at = eden_cas::pack::parse_pack(&std::fs::read(&path).unwrap())
        .unwrap()
        .data_end;
    flip(&path, footer_at + 5);

    // An index entry moved to an offset its footer does not list.
    let ych = Digest::of(&chunks_of(&y)[1]);
    let moved = ChunkLocation {
        offset: s.loc(&ych).offset + 1,
        ..s.loc(&ych)
    };
    let mut batch = s.e().meta().batch();
    batch.put_chunk(&ych, &moved);
    batch.commit().unwrap();

    // A manifest object lost from the blob store.
    let zrec = s
        .e()
        .meta()
        .artifact(&EXP, &parse_artifact_id(&c).unwrap())
        .unwrap()
        .unwrap();
    std::fs::remove_file(
        s.data_dir()
            .join("blobs")
            .join(keys::manifest(&zrec.manifest)),
    )
    .unwrap();

    let r = s.fsck(false);
    let mut k = kinds(&r);
    k.sort_by_key(|k| k.to_string());
    assert_eq!(
        k,
        vec![
            ProblemKind::ChunkCorrupt,
            ProblemKind::ChunkNotInFooter,
            ProblemKind::ManifestObjectMissing,
            ProblemKind::PackFooterCorrupt,
        ],
        "{r}"
    );
    assert_eq!(
        affected_ids(&r, ProblemKind::PackFooterCorrupt),
        vec![a.clone()]
    );
    assert_eq!(
        affected_ids(&r, ProblemKind::ChunkNotInFooter),
        vec![b.clone()]
    );
    assert_eq!(affected_ids(&r, ProblemKind::ChunkCorrupt), vec![b.clone()]);
    assert_eq!(
        affected_ids(&r, ProblemKind::ManifestObjectMissing),
        vec![c.clone()]
    );
    assert_eq!(r.chunks_verified, r.chunks_indexed, "every entry decoded");
    // Reads of the unaffected artifacts still work.
    assert_eq!(s.read(EXP, &a).unwrap(), x);
    assert_eq!(s.read(EXP, &c).unwrap(), z);

    // The scrubber checks the footer-less pack from the index side: its
    // chunks are fine, so nothing is marked bad there.
    let e = Arc::clone(s.e());
    let rep =
        s.rt.block_on(async move { e.scrub_pass(u64::MAX).await.unwrap() });
    assert_eq!(
        (rep.packs, rep.pack_faults, rep.marked_bad),
        (3, 1, 0),
        "{rep:?}"
    );
    assert!(s.loc(&Digest::of(&chunks_of(&x)[0])).usable());
}

#[test]
fn the_admin_endpoint_answers_the_report() {
    let server = Server::start_with(&["--scrub-bytes-per-hour", "0"]);
    let exp = exp_id();
    let admin = server.admin_bearer();
    deposit_ok(&server, &exp, &admin, &noise(100_000, 30), "text/plain");
    let url = format!("{}/cas/v1/admin/fsck", server.base_url());
    let post = |bearer: Option<&str>, query: &str| {
        let mut rb = server.client().post(format!("{url}{query}"));
        if let Some(b) = bearer {
            rb = rb.header("Authorization", format!("Bearer {b}"));
        }
        rb.send().unwrap()
    };
    let resp = post(Some(&admin), "?deep=true");
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = serde_json::from_str(&resp.text().unwrap()).unwrap();
    assert_eq!(v["deep"], true);
    assert_eq!(v["problems"], Value::Array(vec![]));
    assert_eq!(v["artifacts_checked"], 1);
    assert_eq!(v["content_bytes_read_back"], 100_000);
    assert_eq!(post(None, "").status().as_u16(), 401);
    assert_eq!(
        post(Some("admin:wrong-token-000000"), "").status().as_u16(),
        401
    );
    let (_, worker) = register_worker(&server, &exp);
    assert_eq!(post(Some(&worker), "").status().as_u16(), 403);
    assert_eq!(post(Some(&admin), "?deep=maybe").status().as_u16(), 400);
    let metrics = server.metrics_text();
    for name in [
        "eden_cas_scrub_bytes_total",
        "eden_cas_scrub_packs_total",
        "eden_cas_scrub_corrupt_chunks_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
}
