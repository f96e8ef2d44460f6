//! Model-based property test of the lifecycle: random interleavings of
//! deposits (whole, or split into prepare … commit so they stay in flight),
//! upload-session steps, deletes, expiry, single GC phases and full GC runs,
//! checked against a reference model on real RocksDB + a real fs blob store.
//!
//! After every step every live artifact fetches byte-identical and every
//! deleted or expired one is not served (invariants 1 and 7). After a full
//! GC with nothing in flight (compaction of any pack with a dead byte), the
//! store holds exactly the distinct chunks of live artifacts and live upload
//! sessions, packs hold no dead bytes, and only live manifests remain
//! (invariant 2).

use std::collections::{BTreeSet, HashSet};

use crate::support::engine::*;
use bytes::Bytes;
use eden_cas::auth::Principal;
use eden_cas::engine::PreparedContent;
use eden_cas::engine::gc::{GcOptions, GcRun};
use eden_cas::hash::Digest;
use eden_cas::ids::{ArtifactId, SessionId};
use proptest::prelude::*;

const POOL: usize = 10;

#[derive(Clone, Debug)]
enum Op {
    Deposit(Vec<u8>),
    Start(Vec<u8>),
    Commit(usize),
    Abort(usize),
    Delete(usize),
    Expire(usize),
    Session,
    Batch(usize, Vec<u8>),
    CommitSession(usize, Vec<u8>),
    Abandon(usize),
    GcStep,
    FullGc,
}

fn blocks() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0..POOL as u8, 1..6)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => blocks().prop_map(Op::Deposit),
        2 => blocks().prop_map(Op::Start),
        2 => any::<usize>().prop_map(Op::Commit),
        1 => any::<usize>().prop_map(Op::Abort),
        2 => any::<usize>().prop_map(Op::Delete),
        1 => any::<usize>().prop_map(Op::Expire),
        1 => Just(Op::Session),
        2 => (any::<usize>(), blocks()).prop_map(|(s, b)| Op::Batch(s, b)),
        1 => (any::<usize>(), blocks()).prop_map(|(s, b)| Op::CommitSession(s, b)),
        1 => any::<usize>().prop_map(Op::Abandon),
        3 => Just(Op::GcStep),
        1 => Just(Op::FullGc),
    ]
}

struct Model {
    pool: Vec<Vec<u8>>,
    live: Vec<(ArtifactId, Vec<u8>)>,
    gone: Vec<ArtifactId>,
    inflight: Vec<(PreparedContent, Vec<u8>)>,
    sessions: Vec<(SessionId, BTreeSet<u8>)>,
    gc: Option<GcRun>,
}

impl Model {
    fn content(&self, blocks: &[u8]) -> Vec<u8> {
        blocks
            .iter()
            .flat_map(|&b| self.pool[b as usize].iter().copied())
            .collect()
    }
}

fn full_gc() -> GcOptions {
    GcOptions {
        dry_run: false,
        compact_below: 1.0,
    }
}

async fn run(ops: Vec<Op>) {
    let fx = Fixture::new();
    let e = &fx.engine;
    let mut m = Model {
        pool: (0..POOL)
            .map(|i| noise(3000 + 700 * i, i as u64 + 1))
            .collect(),
        live: Vec::new(),
        gone: Vec::new(),
        inflight: Vec::new(),
        sessions: Vec::new(),
        gc: None,
    };
    for op in ops {
        match op {
            Op::Deposit(b) => {
                let data = m.content(&b);
                m.live.push((deposit(e, &data).await, data));
            }
            Op::Start(b) => {
                let data = m.content(&b);
                let mut ingest = e.begin_ingest().unwrap();
                ingest.push(Bytes::from(data.clone())).await.unwrap();
                m.inflight.push((ingest.finish().await.unwrap(), data));
            }
            Op::Commit(i) if !m.inflight.is_empty() => {
                let (prepared, data) = m.inflight.remove(i % m.inflight.len());
                let r = e.commit_artifact(prepared, req()).await.unwrap();
                m.live.push((r.id, data));
            }
            Op::Abort(i) if !m.inflight.is_empty() => {
                m.inflight.remove(i % m.inflight.len());
            }
            Op::Delete(i) if !m.live.is_empty() => {
                let (id, _) = m.live.remove(i % m.live.len());
                delete(e, &id).await;
                m.gone.push(id);
            }
            Op::Expire(i) if !m.live.is_empty() => {
                let (id, _) = m.live.remove(i % m.live.len());
                e.set_expiry(
                    EXP,
                    &Principal::Admin,
                    &id,
                    Some(eden_cas::clock::Timestamp::from_unix_secs(1)),
                )
                .await
                .unwrap();
                m.gone.push(id);
            }
            Op::Session => {
                m.sessions.push((open_session(e).await, BTreeSet::new()));
            }
            Op::Batch(s, b) if !m.sessions.is_empty() => {
                let k = s % m.sessions.len();
                let chunks: Vec<&[u8]> = b.iter().map(|&i| &m.pool[i as usize][..]).collect();
                send_chunks(e, &m.sessions[k].0, &chunks).await;
                m.sessions[k].1.extend(b);
            }
            Op::CommitSession(s, b) if !m.sessions.is_empty() => {
                let k = s % m.sessions.len();
                let (sid, sent) = m.sessions[k].clone();
                // Only what the session received (a readable artifact could
                // also supply a chunk, but its cut differs from the pool's).
                let b: Vec<u8> = b.into_iter().filter(|i| sent.contains(i)).collect();
                if b.is_empty() {
                    continue;
                }
                let data = m.content(&b);
                let chunks: Vec<&[u8]> = b.iter().map(|&i| &m.pool[i as usize][..]).collect();
                let id = commit_chunks(e, &sid, &chunks).await;
                m.sessions.remove(k);
                m.live.push((id, data));
            }
            Op::Abandon(s) if !m.sessions.is_empty() => {
                let (sid, _) = m.sessions.remove(s % m.sessions.len());
                e.abandon_upload(EXP, &Principal::Admin, &sid)
                    .await
                    .unwrap();
            }
            Op::GcStep => {
                let mut run = match m.gc.take() {
                    Some(r) => r,
                    None => e.gc_begin(full_gc()).await,
                };
                if run.step().await.unwrap() {
                    m.gc = Some(run);
                } else {
                    run.finish();
                }
            }
            Op::FullGc => {
                if let Some(mut run) = m.gc.take() {
                    while run.step().await.unwrap() {}
                    run.finish();
                }
                e.gc(full_gc()).await.unwrap();
                if m.inflight.is_empty() {
                    check_exact(&fx, &m).await;
                }
            }
            _ => {}
        }
        for (id, data) in &m.live {
            let got = fetch(e, id).await.expect("live artifact reads");
            assert_eq!(got.as_deref(), Some(&data[..]), "live artifact differs");
        }
        for id in &m.gone {
            assert_eq!(fetch(e, id).await.unwrap(), None, "gone artifact served");
        }
    }
    // Whatever was in flight commits and reads back after everything.
    if let Some(mut run) = m.gc.take() {
        while run.step().await.unwrap() {}
        run.finish();
    }
    for (prepared, data) in std::mem::take(&mut m.inflight) {
        let r = e.commit_artifact(prepared, req()).await.unwrap();
        let id = r.id;
        assert_eq!(fetch(e, &id).await.unwrap().as_deref(), Some(&data[..]));
    }
}

/// After a full GC with nothing in flight: exactly the live chunks, no dead
/// bytes in any pack, only live manifests.
async fn check_exact(fx: &Fixture, m: &Model) {
    let e = &fx.engine;
    let mut expected: HashSet<Digest> = HashSet::new();
    let mut manifests = HashSet::new();
    for (id, data) in &m.live {
        let rec = e
            .readable_artifact(EXP, &Principal::Admin, id)
            .await
            .unwrap();
        manifests.insert(rec.manifest);
        // The artifact's own chunk list (deposits and sessions cut differently).
        let manifest = e.meta().manifest(&rec.manifest).unwrap().unwrap();
        for seg in &manifest.segments {
            for entry in e.meta().segment(&seg.id).unwrap().unwrap().entries {
                expected.insert(entry.id);
            }
        }
        assert_eq!(rec.size, data.len() as u64);
    }
    for (_, sent) in &m.sessions {
        for &i in sent {
            expected.insert(Digest::of(&m.pool[i as usize]));
        }
    }
    let index = indexed(e);
    let got: HashSet<Digest> = index.iter().map(|(id, _)| *id).collect();
    assert_eq!(got, expected, "index holds exactly the live chunks");
    let s = stored(e).await;
    let live_bytes: u64 = index.iter().map(|(_, n)| u64::from(*n)).sum();
    assert_eq!(s.chunk_bytes, live_bytes, "packs hold no dead bytes");
    assert_eq!(s.manifests, manifests.len(), "only live manifests remain");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn lifecycle_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        runtime().block_on(run(ops));
    }
}
