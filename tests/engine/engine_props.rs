//! Property tests of the engine against real RocksDB and a real opendal
//! backend: byte identity (invariant 1), dedup measured in the blob store
//! (invariant 2) and isolation against a reference model (invariant 4).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use eden_cas::auth::{ExperimentId, GroupId, MemberId, Principal, WorkerId};
use eden_cas::blobs::{BlobStore, keys};
use eden_cas::engine::ingest::parse_artifact_id;
use eden_cas::engine::{Engine, EngineConfig, EngineError};
use eden_cas::hash::Digest;
use eden_cas::pack::reader::PackReader;
use futures_util::StreamExt;
use proptest::prelude::*;

use crate::support::engine::{engine_over, noise, req_as, runtime};

struct Fixture {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    engine: Arc<Engine>,
}

fn fixture(fs: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let blobs = if fs {
        BlobStore::fs(&dir.path().join("blobs")).unwrap()
    } else {
        BlobStore::memory().unwrap()
    };
    let cfg = EngineConfig {
        pack_target_bytes: 2 << 20,
        ..EngineConfig::default()
    };
    let engine = engine_over(&dir.path().join("meta"), blobs, cfg);
    Fixture {
        _dir: dir,
        rt: runtime(),
        engine,
    }
}

const EXP1: ExperimentId = ExperimentId::from_static("exp_00000000000000000000000001");
const EXP2: ExperimentId = ExperimentId::from_static("exp_00000000000000000000000002");

/// Deposits `data` in frames of the given sizes (cycled).
async fn deposit(
    engine: &Arc<Engine>,
    exp: ExperimentId,
    by: &str,
    data: &[u8],
    frames: &[usize],
) -> String {
    let mut ingest = engine.begin_ingest().unwrap();
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let n = frames
            .get(i % frames.len().max(1))
            .copied()
            .unwrap_or(1 << 16)
            .max(1);
        let end = (pos + n).min(data.len());
        ingest
            .push(Bytes::copy_from_slice(&data[pos..end]))
            .await
            .unwrap();
        pos = end;
        i += 1;
    }
    let prepared = ingest.finish().await.unwrap();
    engine
        .commit_artifact(
            prepared,
            req_as(exp, Principal::parse(by).expect("principal")),
        )
        .await
        .unwrap()
        .id
        .to_string()
}

async fn read(
    engine: &Arc<Engine>,
    exp: ExperimentId,
    id: &str,
    start: u64,
    end: u64,
) -> Result<Vec<u8>, EngineError> {
    let rec = engine
        .readable_artifact(exp, &Principal::Admin, &parse_artifact_id(id).unwrap())
        .await?;
    let mut s = engine.read_range(&rec, start, end);
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b?);
    }
    Ok(out)
}

/// Every chunk id found in the footers of the packs in the blob store, with
/// the number of packs holding it, and the total pack bytes.
async fn stored_chunks(engine: &Arc<Engine>) -> (HashMap<Digest, usize>, u64) {
    let mut seen = HashMap::new();
    let mut total = 0;
    for (key, size) in engine.blobs().list(keys::PACKS).await.unwrap() {
        total += size;
        let id = keys::parse_pack(&key).unwrap();
        let tail = PackReader::new(engine.blobs())
            .tail(id, size)
            .await
            .unwrap();
        for e in tail.entries {
            *seen.entry(e.id).or_insert(0) += 1;
        }
    }
    (seen, total)
}

/// Sizes around chunking limits are where off-by-ones live.
fn interesting_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(16 * 1024 - 1),
        Just(16 * 1024),
        Just(16 * 1024 + 1),
        Just(256 * 1024 - 1),
        Just(256 * 1024),
        Just(256 * 1024 + 1),
        Just(4 << 20),
        0usize..(6 << 20),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Invariant 1: any bytes, any framing, any range come back exactly.
    #[test]
    fn round_trip(size in interesting_size(), seed in any::<u64>(), compressible in any::<bool>(),
                  frames in proptest::collection::vec(1usize..300_000, 1..6),
                  r in (any::<u64>(), any::<u64>())) {
        let f = fixture(false);
        let mut data = noise(size, seed);
        if compressible {
            for (i, b) in data.iter_mut().enumerate() { if i % 7 != 0 { *b = b'a'; } }
        }
        f.rt.block_on(async {
            let id = deposit(&f.engine, EXP1, "admin", &data, &frames).await;
            let back = read(&f.engine, EXP1, &id, 0, data.len() as u64).await.unwrap();
            prop_assert_eq!(back.len(), data.len());
            prop_assert!(back == data);
            let rec = f.engine.readable_artifact(EXP1, &Principal::Admin, &parse_artifact_id(&id).unwrap()).await.unwrap();
            prop_assert_eq!(rec.blake3, Digest::of(&data));
            if !data.is_empty() {
                let a = r.0 % data.len() as u64;
                let b = a + r.1 % (data.len() as u64 - a + 1);
                let part = read(&f.engine, EXP1, &id, a, b).await.unwrap();
                prop_assert!(part == data[a as usize..b as usize]);
            }
            Ok(())
        })?;
    }

    /// Invariant 2: repeated and overlapping deposits store each distinct
    /// chunk once — counted in the pack footers of the blob store itself.
    #[test]
    fn dedup_stores_each_chunk_once(seed in any::<u64>(), edits in proptest::collection::vec((0usize..3_000_000, any::<u8>()), 0..8),
                                    repeats in 2usize..5) {
        let f = fixture(true);
        let base = noise(3 << 20, seed);
        let mut edited = base.clone();
        for (pos, v) in &edits { edited[*pos] = *v; }
        let mut shifted = noise(5000, seed ^ 1);
        shifted.extend_from_slice(&base[1 << 20..]);
        f.rt.block_on(async {
            let mut ids = Vec::new();
            for i in 0..repeats {
                let exp = if i % 2 == 0 { EXP1 } else { EXP2 };
                ids.push((exp, deposit(&f.engine, exp, "admin", &base, &[1 << 16]).await));
            }
            let (_, bytes_after_base) = stored_chunks(&f.engine).await;
            ids.push((EXP1, deposit(&f.engine, EXP1, "admin", &edited, &[100_000]).await));
            ids.push((EXP2, deposit(&f.engine, EXP2, "admin", &shifted, &[7777]).await));
            let (seen, total) = stored_chunks(&f.engine).await;
            for (id, n) in &seen {
                prop_assert_eq!(*n, 1, "chunk {:?} stored {} times", id, n);
            }
            // Re-deposits of `base` added nothing: storage is at most one
            // copy of base plus the changed regions (each edit dirties at most
            // two max-size chunks; the shifted copy a few at its start).
            let budget = bytes_after_base + (edits.len() as u64 * 2 + 4) * (256 << 10) + 64 * 1024;
            prop_assert!(total <= budget, "stored {} > budget {}", total, budget);
            for (exp, id) in &ids {
                let rec = f.engine.readable_artifact(*exp, &Principal::Admin, &parse_artifact_id(id).unwrap()).await.unwrap();
                let back = read(&f.engine, *exp, id, 0, rec.size).await.unwrap();
                prop_assert_eq!(Digest::of(&back), rec.blake3);
            }
            Ok(())
        })?;
    }
}

/// Operations of the isolation model.
#[derive(Clone, Debug)]
enum Op {
    Register {
        exp: usize,
    },
    Deposit {
        exp: usize,
        by: usize,
    },
    CreateGroup {
        exp: usize,
        admins: bool,
        members: Vec<usize>,
    },
    AddMember {
        exp: usize,
        group: usize,
        member: usize,
        member_is_group: bool,
    },
    Check {
        exp: usize,
        who: usize,
        artifact: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..2usize).prop_map(|exp| Op::Register { exp }),
        3 => (0..2usize, 0..8usize).prop_map(|(exp, by)| Op::Deposit { exp, by }),
        1 => (0..2usize, any::<bool>(), proptest::collection::vec(0..8usize, 0..3))
            .prop_map(|(exp, admins, members)| Op::CreateGroup { exp, admins, members }),
        2 => (0..2usize, 0..4usize, 0..8usize, any::<bool>())
            .prop_map(|(exp, group, member, member_is_group)| Op::AddMember { exp, group, member, member_is_group }),
        6 => (0..2usize, 0..9usize, 0..12usize).prop_map(|(exp, who, artifact)| Op::Check { exp, who, artifact }),
    ]
}

#[derive(Default)]
struct ModelExp {
    workers: Vec<String>,
    groups: Vec<(String, bool)>,
    members: BTreeMap<String, Vec<String>>,
    /// (artifact id, created_by)
    artifacts: Vec<(String, String)>,
}

impl ModelExp {
    fn in_admins(&self, worker: &str) -> bool {
        // Naive fixpoint over the membership relation.
        let mut reach: HashSet<String> = self
            .groups
            .iter()
            .filter(|g| g.1)
            .map(|g| g.0.clone())
            .collect();
        loop {
            let before = reach.len();
            let next: Vec<String> = reach
                .iter()
                .flat_map(|g| self.members.get(g).cloned().unwrap_or_default())
                .collect();
            reach.extend(next);
            if reach.len() == before {
                break;
            }
        }
        reach.contains(worker)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Invariant 4: every read decision matches the reference model, and an
    /// artifact never exists through another experiment's path.
    #[test]
    fn isolation_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let f = fixture(false);
        let exps = [EXP1, EXP2];
        let mut model = [ModelExp::default(), ModelExp::default()];
        f.rt.block_on(async {
            for op in ops {
                match op {
                    Op::Register { exp } => {
                        let (w, _) = f.engine.register_worker(exps[exp], None, BTreeMap::new()).await.unwrap();
                        model[exp].workers.push(w.worker_id.to_string());
                    }
                    Op::Deposit { exp, by } => {
                        let m = &model[exp];
                        let by = if by == 0 || m.workers.is_empty() { "admin".to_string() } else { m.workers[by % m.workers.len()].clone() };
                        let id = deposit(&f.engine, exps[exp], &by, b"payload", &[3]).await;
                        model[exp].artifacts.push((id, by));
                    }
                    Op::CreateGroup { exp, admins, members } => {
                        let m = &model[exp];
                        if admins && m.groups.iter().any(|g| g.1) { continue; }
                        let members: Vec<String> = members.iter().filter(|_| !m.workers.is_empty()).map(|i| m.workers[i % m.workers.len()].clone()).collect();
                        let name = admins.then(|| "admins".to_string());
                        let typed = members.iter().map(|m| MemberId::parse(m).unwrap()).collect();
                        let g = f.engine.create_group(exps[exp], name, typed, &Principal::Admin).await.unwrap();
                        let mut uniq = Vec::new();
                        for x in members { if !uniq.contains(&x) { uniq.push(x); } }
                        model[exp].members.insert(g.group_id.to_string(), uniq);
                        model[exp].groups.push((g.group_id.to_string(), admins));
                    }
                    Op::AddMember { exp, group, member, member_is_group } => {
                        let m = &model[exp];
                        if m.groups.is_empty() { continue; }
                        let gid = m.groups[group % m.groups.len()].0.clone();
                        let member = if member_is_group { m.groups[member % m.groups.len()].0.clone() }
                                     else if m.workers.is_empty() { continue } else { m.workers[member % m.workers.len()].clone() };
                        match f.engine.add_member(exps[exp], &GroupId::parse(&gid).unwrap(), &MemberId::parse(&member).unwrap()).await {
                            Ok(_) => {
                                let list = model[exp].members.entry(gid).or_default();
                                if !list.contains(&member) { list.push(member); }
                            }
                            Err(EngineError::Cycle) => {
                                // The model must agree that this closes a cycle.
                                let g = GroupId::parse(&gid).unwrap();
                                let graph: HashMap<GroupId, Vec<MemberId>> = model[exp].members.iter().map(|(k, v)| (GroupId::parse(k).unwrap(), v.iter().map(|m| MemberId::parse(m).unwrap()).collect())).collect();
                                prop_assert!(member == gid || eden_cas::auth::is_transitive_member(&graph, &GroupId::parse(&member).unwrap(), &MemberId::Group(g)));
                            }
                            Err(e) => prop_assert!(false, "unexpected error {e}"),
                        }
                    }
                    Op::Check { exp, who, artifact } => {
                        let m = &model[exp];
                        let all: Vec<(usize, &(String, String))> = model.iter().enumerate().flat_map(|(i, m)| m.artifacts.iter().map(move |a| (i, a))).collect();
                        if all.is_empty() { continue; }
                        let (home, (id, by)) = all[artifact % all.len()];
                        let caller = if who == 0 || m.workers.is_empty() { Principal::Admin } else { Principal::Worker(WorkerId::parse(&m.workers[who % m.workers.len()]).unwrap()) };
                        let got = f.engine.readable_artifact(exps[exp], &caller, &parse_artifact_id(id).unwrap()).await;
                        if home != exp {
                            prop_assert!(matches!(got, Err(EngineError::NotFound)), "artifact visible through another experiment");
                            continue;
                        }
                        let expected = caller.is_admin() || caller.as_str() == by || m.in_admins(caller.as_str());
                        prop_assert_eq!(got.is_ok(), expected, "caller {} artifact by {}", caller, by);
                        if let Err(e) = got { prop_assert!(matches!(e, EngineError::Forbidden)); }
                    }
                }
            }
            Ok(())
        })?;
    }
}
