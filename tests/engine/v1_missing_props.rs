//! Engine-level tests of upload sessions against real RocksDB: the
//! "missing" answer against a reference model under random interleavings of
//! principals, deposits, grants, groups, deletes, uploads and commits
//! (invariant 4: it never reveals chunks of artifacts the caller cannot
//! read, across principals and experiments); session expiry, the reaper and
//! commit verification.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use eden_cas::auth::{ExperimentId, GroupId, MemberId, Principal, is_transitive_member};
use eden_cas::blobs::BlobStore;
use eden_cas::engine::uploads::{CommitRequest, SessionRequest};
use eden_cas::engine::{Engine, EngineConfig, EngineError};
use eden_cas::hash::Digest;
use eden_cas::ids::{ArtifactId, SessionId};
use eden_cas::meta::records::{EndReason, ManifestEntry};
use proptest::prelude::*;

use crate::support::engine::{
    chunks_of, engine_over, frames, manifest_entries, noise, req_as, runtime,
};

const EXPS: [ExperimentId; 2] = [
    ExperimentId::from_static("exp_00000000000000000000000001"),
    ExperimentId::from_static("exp_00000000000000000000000002"),
];

struct Fixture {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    engine: Arc<Engine>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EngineConfig {
        pack_target_bytes: 2 << 20,
        ..EngineConfig::default()
    };
    let engine = engine_over(&dir.path().join("meta"), BlobStore::memory().unwrap(), cfg);
    Fixture {
        _dir: dir,
        rt: runtime(),
        engine,
    }
}

/// Contents that share chunks: three bases, two concatenations, a prefix.
fn contents() -> Vec<Vec<u8>> {
    let base: Vec<Vec<u8>> = (0..3).map(|i| noise(120_000, 100 + i)).collect();
    vec![
        base[0].clone(),
        base[1].clone(),
        base[2].clone(),
        [base[0].clone(), base[1].clone()].concat(),
        [base[2].clone(), base[0].clone()].concat(),
        base[1][..40_000].to_vec(),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Register {
        exp: usize,
    },
    Deposit {
        exp: usize,
        who: usize,
        content: usize,
    },
    Group {
        exp: usize,
        admins: bool,
        members: Vec<usize>,
        nest: Option<usize>,
    },
    Grant {
        exp: usize,
        artifact: usize,
        to: usize,
        to_group: bool,
    },
    Revoke {
        exp: usize,
        artifact: usize,
    },
    Delete {
        exp: usize,
        artifact: usize,
    },
    Upload {
        exp: usize,
        who: usize,
        content: usize,
        chunk: usize,
    },
    Commit {
        exp: usize,
        who: usize,
        content: usize,
    },
    Query {
        exp: usize,
        who: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let e = 0..2usize;
    prop_oneof![
        2 => e.clone().prop_map(|exp| Op::Register { exp }),
        3 => (e.clone(), 0..5usize, 0..6usize).prop_map(|(exp, who, content)| Op::Deposit { exp, who, content }),
        1 => (e.clone(), any::<bool>(), proptest::collection::vec(1..5usize, 0..3), proptest::option::of(0..4usize))
            .prop_map(|(exp, admins, members, nest)| Op::Group { exp, admins, members, nest }),
        2 => (e.clone(), 0..8usize, 0..5usize, any::<bool>()).prop_map(|(exp, artifact, to, to_group)| Op::Grant { exp, artifact, to, to_group }),
        1 => (e.clone(), 0..8usize).prop_map(|(exp, artifact)| Op::Revoke { exp, artifact }),
        1 => (e.clone(), 0..8usize).prop_map(|(exp, artifact)| Op::Delete { exp, artifact }),
        2 => (e.clone(), 0..5usize, 0..6usize, 0..8usize).prop_map(|(exp, who, content, chunk)| Op::Upload { exp, who, content, chunk }),
        1 => (e.clone(), 0..5usize, 0..6usize).prop_map(|(exp, who, content)| Op::Commit { exp, who, content }),
        5 => (e, 0..5usize).prop_map(|(exp, who)| Op::Query { exp, who }),
    ]
}

struct ModelArtifact {
    id: ArtifactId,
    owner: String,
    content: usize,
    grants: Vec<String>,
    alive: bool,
}

#[derive(Default)]
struct ModelExp {
    workers: Vec<String>,
    /// (group id, named admins, members)
    groups: Vec<(String, bool, Vec<MemberId>)>,
    artifacts: Vec<ModelArtifact>,
    /// principal → (session id, chunks received)
    sessions: HashMap<String, (SessionId, HashSet<Digest>)>,
}

impl ModelExp {
    fn principal(&self, who: usize) -> String {
        if who == 0 || self.workers.is_empty() {
            "admin".into()
        } else {
            self.workers[(who - 1) % self.workers.len()].clone()
        }
    }

    fn member(&self, group: &str, who: &str) -> bool {
        let graph: HashMap<GroupId, Vec<MemberId>> = self
            .groups
            .iter()
            .map(|(g, _, m)| (GroupId::parse(g).unwrap(), m.clone()))
            .collect();
        MemberId::parse(who)
            .is_some_and(|who| is_transitive_member(&graph, &GroupId::parse(group).unwrap(), &who))
    }

    fn can_read(&self, who: &str, a: &ModelArtifact) -> bool {
        who == "admin"
            || who == a.owner
            || a.grants
                .iter()
                .any(|g| g == who || (g.starts_with("grp_") && self.member(g, who)))
            || self
                .groups
                .iter()
                .any(|(g, admins, _)| *admins && self.member(g, who))
    }
}

fn principal(p: &str) -> Principal {
    Principal::parse(p).unwrap()
}

async fn session_for(
    engine: &Arc<Engine>,
    m: &mut ModelExp,
    exp: ExperimentId,
    who: &str,
) -> SessionId {
    if let Some((sid, _)) = m.sessions.get(who) {
        return *sid;
    }
    let v = engine
        .create_upload(exp, &principal(who), SessionRequest::default())
        .await
        .unwrap();
    m.sessions.insert(who.to_string(), (v.id, HashSet::new()));
    v.id
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Invariant 4: for every principal, experiment and moment, a chunk is
    /// reported present exactly when the session received it or an artifact
    /// of this experiment that the principal may read holds it.
    #[test]
    fn missing_matches_the_model(ops in proptest::collection::vec(op(), 1..36)) {
        let f = fixture();
        let pool = contents();
        let pool_chunks: Vec<Vec<Vec<u8>>> = pool.iter().map(|c| chunks_of(c)).collect();
        let chunk_ids: Vec<HashSet<Digest>> = pool_chunks.iter().map(|cs| cs.iter().map(|c| Digest::of(c)).collect()).collect();
        let mut universe: Vec<Digest> = chunk_ids.iter().flatten().copied().collect::<HashSet<_>>().into_iter().collect();
        universe.sort();
        let mut model = [ModelExp::default(), ModelExp::default()];
        f.rt.block_on(async {
            for op in ops {
                match op {
                    Op::Register { exp } => {
                        let (w, _) = f.engine.register_worker(EXPS[exp], None, BTreeMap::new()).await.unwrap();
                        model[exp].workers.push(w.worker_id.to_string());
                    }
                    Op::Deposit { exp, who, content } => {
                        let by = model[exp].principal(who);
                        let r = f.engine.deposit_bytes(req_as(EXPS[exp], Principal::parse(&by).expect("principal")), Bytes::from(pool[content].clone())).await.unwrap();
                        model[exp].artifacts.push(ModelArtifact { id: r.id, owner: by, content, grants: vec![], alive: true });
                    }
                    Op::Group { exp, admins, members, nest } => {
                        let m = &model[exp];
                        if admins && m.groups.iter().any(|g| g.1) { continue; }
                        let mut list: Vec<String> = members.iter().map(|&i| m.principal(i)).filter(|p| p != "admin").collect();
                        if let Some(n) = nest.filter(|_| !m.groups.is_empty()) {
                            list.push(m.groups[n % m.groups.len()].0.clone());
                        }
                        list.dedup();
                        let name = admins.then(|| "admins".to_string());
                        let typed = list.iter().map(|m| MemberId::parse(m).unwrap()).collect();
                        let g = f.engine.create_group(EXPS[exp], name, typed, &Principal::Admin).await.unwrap();
                        model[exp].groups.push((g.group_id.to_string(), admins, g.record.members));
                    }
                    Op::Grant { exp, artifact, to, to_group } => {
                        let m = &model[exp];
                        if m.artifacts.is_empty() { continue; }
                        let ai = artifact % m.artifacts.len();
                        let target = if to_group && !m.groups.is_empty() { m.groups[to % m.groups.len()].0.clone() } else { m.principal(to) };
                        if target == "admin" { continue; }
                        let a = &m.artifacts[ai];
                        let res = f.engine.grant(EXPS[exp], &principal(&a.owner), &a.id, &MemberId::parse(&target).unwrap()).await;
                        if a.alive {
                            res.unwrap();
                            let a = &mut model[exp].artifacts[ai];
                            if !a.grants.contains(&target) { a.grants.push(target); }
                        } else {
                            prop_assert!(matches!(res, Err(EngineError::NotFound)));
                        }
                    }
                    Op::Revoke { exp, artifact } => {
                        let m = &model[exp];
                        if m.artifacts.is_empty() { continue; }
                        let ai = artifact % m.artifacts.len();
                        let a = &m.artifacts[ai];
                        let Some(g) = a.grants.first().cloned() else { continue };
                        if !a.alive { continue; }
                        f.engine.revoke(EXPS[exp], &principal(&a.owner), &a.id, &MemberId::parse(&g).unwrap()).await.unwrap();
                        model[exp].artifacts[ai].grants.retain(|x| *x != g);
                    }
                    Op::Delete { exp, artifact } => {
                        let m = &model[exp];
                        if m.artifacts.is_empty() { continue; }
                        let ai = artifact % m.artifacts.len();
                        let a = &m.artifacts[ai];
                        let res = f.engine.delete_artifact(EXPS[exp], &principal(&a.owner), &a.id).await;
                        prop_assert_eq!(res.is_ok(), a.alive);
                        model[exp].artifacts[ai].alive = false;
                    }
                    Op::Upload { exp, who, content, chunk } => {
                        let who = model[exp].principal(who);
                        let sid = session_for(&f.engine, &mut model[exp], EXPS[exp], &who).await;
                        let c = &pool_chunks[content][chunk % pool_chunks[content].len()];
                        let mut batch = f.engine.begin_chunk_batch(EXPS[exp], &principal(&who), &sid).await.unwrap();
                        batch.push(frames(&[c])).await.unwrap();
                        let out = batch.finish().await.unwrap();
                        prop_assert_eq!(out.received, 1);
                        model[exp].sessions.get_mut(&who).unwrap().1.insert(Digest::of(c));
                    }
                    Op::Commit { exp, who, content } => {
                        let who = model[exp].principal(who);
                        let sid = session_for(&f.engine, &mut model[exp], EXPS[exp], &who).await;
                        let s = sid;
                        let ids: Vec<Digest> = pool_chunks[content].iter().map(|c| Digest::of(c)).collect();
                        let missing = f.engine.upload_missing(EXPS[exp], &principal(&who), &s, ids.clone()).await.unwrap();
                        let send: Vec<&[u8]> = pool_chunks[content].iter().filter(|c| missing.contains(&Digest::of(c))).map(Vec::as_slice).collect();
                        if !send.is_empty() {
                            let mut batch = f.engine.begin_chunk_batch(EXPS[exp], &principal(&who), &s).await.unwrap();
                            batch.push(frames(&send)).await.unwrap();
                            batch.finish().await.unwrap();
                        }
                        let entries = manifest_entries(&pool_chunks[content]);
                        let r = f.engine.commit_upload(EXPS[exp], &principal(&who), &s, CommitRequest {
                            chunks: entries, blake3: Digest::of(&pool[content]), content_type: None, filename: None,
                        }).await.unwrap();
                        prop_assert!(r.record.digest_verified);
                        model[exp].sessions.remove(&who);
                        model[exp].artifacts.push(ModelArtifact { id: r.id, owner: who, content, grants: vec![], alive: true });
                    }
                    Op::Query { exp, who } => {
                        let who = model[exp].principal(who);
                        let sid = session_for(&f.engine, &mut model[exp], EXPS[exp], &who).await;
                        let got = f.engine.upload_missing(EXPS[exp], &principal(&who), &sid, universe.clone()).await.unwrap();
                        let m = &model[exp];
                        let received = &m.sessions[&who].1;
                        let expected: Vec<Digest> = universe.iter().copied().filter(|c| {
                            !received.contains(c) && !m.artifacts.iter().any(|a| a.alive && chunk_ids[a.content].contains(c) && m.can_read(&who, a))
                        }).collect();
                        prop_assert_eq!(got, expected, "principal {} in experiment {}", who, exp);
                    }
                }
            }
            Ok(())
        })?;
    }
}

#[test]
fn idle_sessions_expire_and_release_their_pins() {
    let f = fixture();
    f.rt.block_on(async {
        let e = &f.engine;
        e.set_upload_idle_timeout(Duration::from_millis(1000));
        let exp = EXPS[0];
        let admin = Principal::Admin;
        let chunk = noise(30_000, 7);
        let c = Digest::of(&chunk);
        let v = e
            .create_upload(exp, &admin, SessionRequest::default())
            .await
            .unwrap();
        let sid = v.id;
        let mut batch = e.begin_chunk_batch(exp, &admin, &sid).await.unwrap();
        batch.push(frames(&[&chunk])).await.unwrap();
        batch.finish().await.unwrap();
        assert!(
            e.meta().upload_chunks(&sid, &[c]).unwrap()[0].is_some(),
            "pinned"
        );

        assert_eq!(
            e.expire_sessions(SystemTime::now()).await.unwrap(),
            0,
            "not idle yet"
        );
        let later = SystemTime::now() + Duration::from_secs(3);
        assert_eq!(e.expire_sessions(later).await.unwrap(), 1);
        assert!(
            e.meta().upload_chunks(&sid, &[c]).unwrap()[0].is_none(),
            "pins released"
        );
        let rec = e.meta().upload(&sid).unwrap().unwrap();
        assert_eq!(rec.ended.map(|x| x.reason), Some(EndReason::Expired));
        let err = e
            .upload_missing(exp, &admin, &sid, vec![c])
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::SessionEnded(_)), "{err}");
        // The tombstone goes after another idle period; then the id is unknown.
        e.expire_sessions(SystemTime::now() + Duration::from_secs(10))
            .await
            .unwrap();
        let err = e
            .upload_missing(exp, &admin, &sid, vec![c])
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::NotFound), "{err}");

        // Expiry is also noticed lazily, on access.
        let v = e
            .create_upload(exp, &admin, SessionRequest::default())
            .await
            .unwrap();
        let sid = v.id;
        e.upload_missing(exp, &admin, &sid, vec![c]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        e.upload_missing(exp, &admin, &sid, vec![c]).await.unwrap(); // activity keeps it alive
        tokio::time::sleep(Duration::from_millis(600)).await;
        e.upload_missing(exp, &admin, &sid, vec![c]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let err = e.begin_chunk_batch(exp, &admin, &sid).await.err().unwrap();
        assert!(matches!(err, EngineError::SessionEnded(_)), "{err}");
    });
}

#[test]
fn the_reaper_expires_sessions_in_the_background() {
    let f = fixture();
    f.rt.block_on(async {
        let e = &f.engine;
        e.set_upload_idle_timeout(Duration::from_millis(50));
        let reaper = e.spawn_session_reaper(Duration::from_millis(20));
        let v = e
            .create_upload(EXPS[1], &Principal::Admin, SessionRequest::default())
            .await
            .unwrap();
        let sid = v.id;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let rec = e.meta().upload(&sid).unwrap();
            if rec.is_none_or(|r| r.ended.is_some()) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "reaper did not expire the session"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        reaper.abort();
    });
}

#[test]
fn commit_verifies_the_content_before_recording_anything() {
    let f = fixture();
    f.rt.block_on(async {
        let e = &f.engine;
        let exp = EXPS[0];
        let (w, _) = e.register_worker(exp, None, BTreeMap::new()).await.unwrap();
        let who = Principal::Worker(w.worker_id);
        let data = noise(500_000, 9);
        let chunks = chunks_of(&data);
        let v = e.create_upload(exp, &who, SessionRequest::default()).await.unwrap();
        let sid = v.id;
        let mut batch = e.begin_chunk_batch(exp, &who, &sid).await.unwrap();
        // Frames split across pushes at odd places.
        let body = frames(&chunks.iter().map(Vec::as_slice).collect::<Vec<_>>());
        for part in body.chunks(7777) {
            batch.push(Bytes::copy_from_slice(part)).await.unwrap();
        }
        let out = batch.finish().await.unwrap();
        assert_eq!(out.received, chunks.len() as u64);
        let entries: Vec<ManifestEntry> = manifest_entries(&chunks);
        let commit = |blake3| CommitRequest { chunks: entries.clone(), blake3, content_type: None, filename: Some("x.bin".into()) };
        let err = e.commit_upload(exp, &who, &sid, commit(Digest::of(b"not it"))).await.unwrap_err();
        assert!(matches!(err, EngineError::DigestMismatch { actual, .. } if actual == Digest::of(&data)), "{err}");
        assert!(e.list_artifacts(exp, &Principal::Admin, None, None, 10).await.unwrap().items.is_empty());
        // Reordered chunks are other content: refused too.
        let mut swapped = commit(Digest::of(&data));
        swapped.chunks.swap(0, 1);
        assert!(matches!(e.commit_upload(exp, &who, &sid, swapped).await, Err(EngineError::DigestMismatch { .. })));
        let r = e.commit_upload(exp, &who, &sid, commit(Digest::of(&data))).await.unwrap();
        assert!(r.record.digest_verified);
        assert_eq!(r.record.blake3, Digest::of(&data));
        assert_eq!(r.record.filename.as_deref(), Some("x.bin"));
        let vis = r.record.visible_dedup.unwrap();
        assert_eq!(vis.new_chunks, chunks.len() as u64);
        assert_eq!(r.record.dedup.new_chunks, chunks.len() as u64, "store-wide figures from the session's rows");
        // Chunk refs point at the artifact.
        let refs = e.meta().chunk_refs(&exp, &Digest::of(&chunks[0]), 10).unwrap();
        assert_eq!(refs, vec![r.id]);
        assert!(e.meta().upload_chunks(&sid, &[Digest::of(&chunks[0])]).unwrap()[0].is_none(), "pins released by the commit");
        let again = e.commit_upload(exp, &who, &sid, commit(Digest::of(&data))).await.unwrap_err();
        assert!(matches!(again, EngineError::SessionEnded(_)));
    });
}
