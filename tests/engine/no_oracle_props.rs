//! No existence oracle (issue 9 §1, invariant 4), as a differential
//! property: random principals (workers, groups, `admins` membership),
//! grants and deposits (raw and through upload sessions, plus deposits into
//! another experiment) run on one store; then, for each worker, every figure
//! it observed or observes — its deposit answers, the missing / batch /
//! status answers of its sessions, its listing pages, the `Artifact`
//! objects it is shown, a final "missing" over every chunk of every
//! content — must equal what it observes on a second store that holds only
//! the artifacts it may read, deposited (and granted) the same way in the
//! same order. Ids and times differ between the stores and are compared
//! modulo a renaming.
//!
//! Also the exactness examples: presence past many unreadable references,
//! and listings past many unreadable artifacts.
//!
//! Real RocksDB in temp dirs, memory blob store, small chunks and zstd on.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use eden_cas::auth::{ExperimentId, MemberId, Principal};
use eden_cas::blobs::BlobStore;
use eden_cas::engine::uploads::{CommitRequest, SessionRequest};
use eden_cas::engine::{DepositReceipt, Engine, EngineConfig};
use eden_cas::hash::Digest;
use eden_cas::http::v1::dto::artifact_view;
use proptest::prelude::*;
use serde_json::Value;

use crate::support::engine::{
    chunks_with, engine_over, frames, manifest_entries, noise, req_as, runtime, small_chunker,
};

const EXP: ExperimentId = ExperimentId::from_static("exp_00000000000000000000000001");
const OTHER_EXP: ExperimentId = ExperimentId::from_static("exp_00000000000000000000000002");

struct Store {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
    /// Worker ids, by index.
    workers: Vec<String>,
    /// Group ids, by index (the `admins` group last, if any).
    groups: Vec<String>,
    /// Artifact ids, by deposit index (`None`: not deposited here).
    artifacts: HashMap<usize, eden_cas::ids::ArtifactId>,
}

fn text(n: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut i = seed;
    while out.len() < n {
        out.extend_from_slice(format!("{i} chunks of checkpoint text {}\n", i * 7).as_bytes());
        i += 1;
    }
    out.truncate(n);
    out
}

/// Contents sharing pieces (random and compressible), so deposits dedup
/// against each other and the compression choice matters.
fn contents() -> Vec<Vec<u8>> {
    let p = [
        noise(24_000, 1),
        text(30_000, 2),
        noise(18_000, 3),
        text(22_000, 4),
    ];
    vec![
        p[0].clone(),
        [p[1].clone(), p[0].clone()].concat(),
        [p[0].clone(), p[2].clone(), p[1].clone()].concat(),
        p[3].clone(),
        [p[3].clone(), p[2].clone()].concat(),
        [p[2].clone(), p[1].clone(), p[3].clone()].concat(),
    ]
}

/// `data` cut as the stores cut it (small chunks).
fn chunks_of(data: &[u8]) -> Vec<Vec<u8>> {
    chunks_with(data, small_chunker())
}

#[derive(Clone, Debug)]
struct Setup {
    workers: usize,
    /// Workers in the `admins` group (they read everything).
    admins: Vec<bool>,
    /// Plain groups, as member flags per worker.
    groups: Vec<Vec<bool>>,
}

#[derive(Clone, Copy, Debug)]
enum Target {
    Worker(usize),
    Group(usize),
}

#[derive(Clone, Debug)]
enum Op {
    /// `who` 0 is the admin, else worker `who - 1`.
    Deposit {
        who: usize,
        content: usize,
        session: bool,
    },
    Grant {
        artifact: usize,
        to: Target,
    },
    /// A deposit into another experiment (global dedup, never readable).
    Foreign {
        content: usize,
    },
}

fn setup() -> impl Strategy<Value = Setup> {
    (2..=4usize)
        .prop_flat_map(|n| {
            (
                Just(n),
                proptest::collection::vec(proptest::bool::weighted(0.15), n),
                proptest::collection::vec(proptest::collection::vec(any::<bool>(), n), 0..=2),
            )
        })
        .prop_map(|(workers, admins, groups)| Setup {
            workers,
            admins,
            groups,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..=4usize, 0..6usize, any::<bool>())
            .prop_map(|(who, content, session)| Op::Deposit { who, content, session }),
        3 => (0..16usize, any::<bool>(), 0..4usize).prop_map(|(artifact, group, i)| Op::Grant {
            artifact,
            to: if group { Target::Group(i) } else { Target::Worker(i) },
        }),
        1 => (0..6usize).prop_map(|content| Op::Foreign { content }),
    ]
}

fn open_store(rt: &tokio::runtime::Runtime, s: &Setup) -> Store {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EngineConfig {
        chunker: small_chunker(),
        pack_target_bytes: 1 << 20,
        compression_level: 3,
        ..EngineConfig::default()
    };
    let engine = engine_over(&dir.path().join("meta"), BlobStore::memory().unwrap(), cfg);
    rt.block_on(async {
        let mut workers = Vec::new();
        for _ in 0..s.workers {
            let (w, _) = engine
                .register_worker(EXP, None, Default::default())
                .await
                .unwrap();
            workers.push(w.worker_id.to_string());
        }
        let members = |flags: &[bool]| -> Vec<MemberId> {
            flags
                .iter()
                .zip(&workers)
                .filter(|(f, _)| **f)
                .map(|(_, w)| MemberId::parse(w).unwrap())
                .collect()
        };
        let mut groups = Vec::new();
        for g in &s.groups {
            let v = engine
                .create_group(EXP, None, members(g), &Principal::Admin)
                .await
                .unwrap();
            groups.push(v.group_id.to_string());
        }
        if s.admins.iter().any(|a| *a) {
            engine
                .create_group(
                    EXP,
                    Some("admins".into()),
                    members(&s.admins),
                    &Principal::Admin,
                )
                .await
                .unwrap();
        }
        Store {
            _dir: dir,
            engine,
            workers,
            groups,
            artifacts: HashMap::new(),
        }
    })
}

impl Store {
    fn principal(&self, who: usize) -> Principal {
        if who == 0 {
            Principal::Admin
        } else {
            Principal::parse(&self.workers[(who - 1) % self.workers.len()]).unwrap()
        }
    }

    /// Replaces this store's ids by stable names, drops per-store fields.
    fn normalise(&self, mut v: Value) -> Value {
        if let Some(m) = v.as_object_mut() {
            for k in ["id", "uri", "created_at"] {
                m.remove(k);
            }
        }
        let mut s = v.to_string();
        for (i, w) in self.workers.iter().enumerate() {
            s = s.replace(w, &format!("W{i}"));
        }
        for (i, g) in self.groups.iter().enumerate() {
            s = s.replace(g, &format!("G{i}"));
        }
        serde_json::from_str(&s).unwrap()
    }

    fn shown(&self, receipt: &DepositReceipt, viewer: &Principal) -> Value {
        self.normalise(
            serde_json::to_value(artifact_view(&receipt.id, &receipt.record, viewer)).unwrap(),
        )
    }

    /// Deposits content `data` as `who`; returns what the depositor saw.
    async fn deposit(
        &mut self,
        index: usize,
        who: usize,
        data: &[u8],
        session: bool,
    ) -> Vec<Value> {
        let p = self.principal(who);
        let e = &self.engine;
        let req = req_as(EXP, p);
        let mut seen = Vec::new();
        let receipt = if session {
            let chunks = chunks_of(data);
            let v = e
                .create_upload(EXP, &p, SessionRequest::default())
                .await
                .unwrap();
            let sid = v.id;
            let ids: Vec<Digest> = chunks.iter().map(|c| Digest::of(c)).collect();
            let missing = e.upload_missing(EXP, &p, &sid, ids.clone()).await.unwrap();
            seen.push(Value::from(
                missing.iter().map(|d| d.to_hex()).collect::<Vec<_>>(),
            ));
            let mut sent = BTreeSet::new();
            let send: Vec<&Vec<u8>> = chunks
                .iter()
                .filter(|c| {
                    let id = Digest::of(c);
                    missing.contains(&id) && sent.insert(id)
                })
                .collect();
            let mut batch = e.begin_chunk_batch(EXP, &p, &sid).await.unwrap();
            batch.push(frames(&send)).await.unwrap();
            let out = batch.finish().await.unwrap();
            seen.push(serde_json::json!([out.received, out.stored_new]));
            let st = e.upload_status(EXP, &p, &sid, None, 10_000).await.unwrap();
            seen.push(serde_json::json!([
                st.received_chunks,
                st.received_bytes,
                st.received.iter().map(|d| d.to_hex()).collect::<Vec<_>>(),
            ]));
            let entries = manifest_entries(&chunks);
            e.commit_upload(
                EXP,
                &p,
                &sid,
                CommitRequest {
                    chunks: entries,
                    blake3: Digest::of(data),
                    content_type: None,
                    filename: None,
                },
            )
            .await
            .unwrap()
        } else {
            e.deposit_bytes(req, Bytes::copy_from_slice(data))
                .await
                .unwrap()
        };
        seen.push(self.shown(&receipt, &p));
        self.artifacts.insert(index, receipt.id);
        // Ids are ULIDs: a later millisecond keeps the listing order the
        // deposit order on both stores.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        seen
    }

    async fn grant(&self, index: usize, to: Target) {
        let id = self.artifacts[&index];
        let principal = match to {
            Target::Group(g) if !self.groups.is_empty() => {
                self.groups[g % self.groups.len()].clone()
            }
            Target::Group(w) | Target::Worker(w) => self.workers[w % self.workers.len()].clone(),
        };
        self.engine
            .grant(
                EXP,
                &Principal::Admin,
                &id,
                &MemberId::parse(&principal).unwrap(),
            )
            .await
            .unwrap();
    }

    async fn foreign(&self, data: &[u8]) {
        let req = req_as(OTHER_EXP, Principal::Admin);
        self.engine
            .deposit_bytes(req, Bytes::copy_from_slice(data))
            .await
            .unwrap();
    }

    /// What worker `w` observes at the end: listing pages of 2 (items and
    /// whether a cursor came), and "missing" over every chunk of `pool`.
    async fn final_view(&self, w: usize, pool: &[Vec<u8>]) -> Vec<Value> {
        let p = self.principal(w + 1);
        let e = &self.engine;
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = e.list_artifacts(EXP, &p, None, cursor, 2).await.unwrap();
            let items: Vec<Value> = page
                .items
                .iter()
                .map(|(id, rec)| {
                    self.normalise(serde_json::to_value(artifact_view(id, rec, &p)).unwrap())
                })
                .collect();
            out.push(serde_json::json!([items, page.next_cursor.is_some()]));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let v = e
            .create_upload(EXP, &p, SessionRequest::default())
            .await
            .unwrap();
        let sid = v.id;
        let mut all = BTreeSet::new();
        for c in pool {
            for chunk in chunks_of(c) {
                all.insert(Digest::of(&chunk));
            }
        }
        let all: Vec<Digest> = all.into_iter().collect();
        let missing = e.upload_missing(EXP, &p, &sid, all).await.unwrap();
        out.push(Value::from(
            missing.iter().map(|d| d.to_hex()).collect::<Vec<_>>(),
        ));
        out
    }
}

/// Runs `ops` on `store`, keeping deposit `i` only if `keep(i)` (grants
/// follow their artifact). Returns each deposit's observations by index.
async fn run(
    store: &mut Store,
    ops: &[Op],
    pool: &[Vec<u8>],
    keep: &dyn Fn(usize) -> bool,
) -> HashMap<usize, (usize, Vec<Value>)> {
    let mut seen = HashMap::new();
    let mut deposits = 0usize;
    for op in ops {
        match op {
            Op::Deposit {
                who,
                content,
                session,
            } => {
                let index = deposits;
                deposits += 1;
                if keep(index) {
                    let obs = store.deposit(index, *who, &pool[*content], *session).await;
                    seen.insert(index, (*who, obs));
                }
            }
            Op::Grant { artifact, to } => {
                if deposits > 0 {
                    let index = artifact % deposits;
                    if keep(index) {
                        store.grant(index, *to).await;
                    }
                }
            }
            Op::Foreign { content } => {
                if keep(usize::MAX) {
                    store.foreign(&pool[*content]).await;
                }
            }
        }
    }
    seen
}

fn differential(s: &Setup, ops: &[Op]) -> Result<(), TestCaseError> {
    let rt = runtime();
    let pool = contents();
    let mut full = open_store(&rt, s);
    let all_seen = rt.block_on(run(&mut full, ops, &pool, &|_| true));
    for w in 0..s.workers {
        let p = full.principal(w + 1);
        // What w may read on the full store, by deposit index.
        let readable: BTreeSet<usize> = rt.block_on(async {
            let mut r = BTreeSet::new();
            for (index, id) in &full.artifacts {
                if full.engine.readable_artifact(EXP, &p, id).await.is_ok() {
                    r.insert(*index);
                }
            }
            r
        });
        let mut alone = open_store(&rt, s);
        let keep = |i: usize| readable.contains(&i);
        let alone_seen = rt.block_on(run(&mut alone, ops, &pool, &keep));
        for (index, (who, obs)) in &all_seen {
            if *who != w + 1 {
                continue;
            }
            prop_assert_eq!(
                obs,
                &alone_seen[index].1,
                "worker {} deposit {}: answers differ from a store of what it may read",
                w,
                index
            );
        }
        let a = rt.block_on(full.final_view(w, &pool));
        let b = rt.block_on(alone.final_view(w, &pool));
        prop_assert_eq!(a, b, "worker {}: listing or missing differs", w);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn every_figure_is_a_function_of_what_the_caller_may_read(
        s in setup(),
        ops in proptest::collection::vec(op(), 3..12),
    ) {
        differential(&s, &ops)?;
    }
}

/// A chunk held by many artifacts the caller cannot read and one it can:
/// "missing" says present however many unreadable references come first.
#[test]
fn presence_is_exact_past_many_unreadable_references() {
    let rt = runtime();
    let s = Setup {
        workers: 3,
        admins: vec![false, false, false],
        groups: Vec::new(),
    };
    let mut store = open_store(&rt, &s);
    let data = text(3000, 5);
    rt.block_on(async {
        // 300 unreadable references (more than one page of refs) ...
        for i in 0..300 {
            store.deposit(i, 1, &data, false).await;
        }
        // ... then one of B's own.
        store.deposit(300, 2, &data, false).await;
        let b = store.principal(2);
        let e = &store.engine;
        let v = e
            .create_upload(EXP, &b, SessionRequest::default())
            .await
            .unwrap();
        let sid = v.id;
        let ids: Vec<Digest> = chunks_of(&data).iter().map(|c| Digest::of(c)).collect();
        let missing = e.upload_missing(EXP, &b, &sid, ids).await.unwrap();
        assert!(missing.is_empty(), "B's own artifact holds every chunk");
        // A worker who can read none of them is told all are missing.
        let none = store.principal(3);
        let v = e
            .create_upload(EXP, &none, SessionRequest::default())
            .await
            .unwrap();
        let sid = v.id;
        let ids: Vec<Digest> = chunks_of(&data).iter().map(|c| Digest::of(c)).collect();
        assert_eq!(
            e.upload_missing(EXP, &none, &sid, ids.clone())
                .await
                .unwrap(),
            ids
        );
    });
}

/// Many newer artifacts the caller cannot read: its listing still returns
/// full pages of its own, and no cursor names an artifact it cannot read.
#[test]
fn listing_pages_are_full_and_cursors_name_readable_artifacts() {
    let rt = runtime();
    let s = Setup {
        workers: 2,
        admins: vec![false, false],
        groups: Vec::new(),
    };
    let mut store = open_store(&rt, &s);
    rt.block_on(async {
        let mut index = 0;
        let mut own = Vec::new();
        for round in 0..3u64 {
            store.deposit(index, 2, &text(500, round), false).await;
            own.push(store.artifacts[&index]);
            index += 1;
            for i in 0..100u64 {
                store
                    .deposit(index, 1, &text(200, 1000 * round + i), false)
                    .await;
                index += 1;
            }
        }
        let b = store.principal(2);
        let mut cursor = None;
        let mut pages = Vec::new();
        loop {
            let page = store
                .engine
                .list_artifacts(EXP, &b, None, cursor, 1)
                .await
                .unwrap();
            assert_eq!(
                page.items.len(),
                1,
                "a full page while readable items remain"
            );
            if let Some(c) = &page.next_cursor {
                assert_eq!(c, &page.items[0].0, "the cursor is the page's last item");
            }
            pages.push(page.items[0].0);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let mut expected = own.clone();
        expected.reverse();
        assert_eq!(pages, expected);
    });
}
