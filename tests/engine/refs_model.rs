//! References against a reference model (issue 15): random sets (create
//! only, `If-Match` on a target or `*`), deletes and reads by the admin and
//! two workers, over artifacts only some of them may read. Every outcome —
//! success, 412, 404, 403 — and every target must be what the model says,
//! and at the end each name's history (read by the admin) is the model's
//! list of changes, newest first.
//!
//! The model states the rules of `docs/api.md` in a few lines: a caller
//! sees a reference iff it may read the target; a name it cannot see is
//! absent to it, except that create-only fails on any existing reference;
//! moving needs the creator or the admin (no grants here).

use std::collections::BTreeMap;

use bytes::Bytes;
use eden_cas::auth::{MemberId, Principal};
use eden_cas::engine::EngineError;
use eden_cas::engine::refs::{RefCondition, RefUpdate};
use eden_cas::ids::ArtifactId;
use eden_cas::naming::RefName;
use proptest::prelude::*;

use crate::support::engine::*;

#[derive(Clone, Debug)]
enum Cond {
    Absent,
    Present,
    Target(usize),
}

#[derive(Clone, Debug)]
enum Op {
    Set {
        who: usize,
        name: usize,
        target: usize,
        cond: Cond,
    },
    Delete {
        who: usize,
        name: usize,
        expected: Option<usize>,
    },
    Get {
        who: usize,
        name: usize,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok(Option<ArtifactId>),
    Precondition,
    NotFound,
    Forbidden,
}

fn outcome<T>(r: Result<T, EngineError>, target: impl FnOnce(T) -> Option<ArtifactId>) -> Outcome {
    match r {
        Ok(v) => Outcome::Ok(target(v)),
        Err(EngineError::PreconditionFailed) => Outcome::Precondition,
        Err(EngineError::NotFound) => Outcome::NotFound,
        Err(EngineError::Forbidden) => Outcome::Forbidden,
        Err(e) => panic!("unexpected error {e}"),
    }
}

const ARTIFACTS: usize = 6;
const NAMES: [&str; 2] = ["r/a", "r/b"];

fn op() -> impl Strategy<Value = Op> {
    let cond = prop_oneof![
        Just(Cond::Absent),
        Just(Cond::Present),
        (0..ARTIFACTS).prop_map(Cond::Target),
    ];
    prop_oneof![
        4 => (0..3usize, 0..2usize, 0..ARTIFACTS, cond)
            .prop_map(|(who, name, target, cond)| Op::Set { who, name, target, cond }),
        1 => (0..3usize, 0..2usize, proptest::option::of(0..ARTIFACTS))
            .prop_map(|(who, name, expected)| Op::Delete { who, name, expected }),
        2 => (0..3usize, 0..2usize).prop_map(|(who, name)| Op::Get { who, name }),
    ]
}

/// A reference in the model: target index, creator index, changes.
#[derive(Clone, Debug)]
struct ModelRef {
    target: usize,
    creator: usize,
    changes: Vec<(Option<usize>, usize)>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn references_match_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let f = Fixture::new();
        let rt = runtime();
        rt.block_on(async {
            let e = &f.engine;
            // Principals: 0 admin, 1 and 2 workers.
            let mut who = vec![Principal::Admin];
            for _ in 0..2 {
                let (w, _) = e.register_worker(EXP, None, BTreeMap::new()).await.unwrap();
                who.push(Principal::Worker(w.worker_id));
            }
            // Artifacts: two per principal; worker 1's first is granted to worker 2.
            let mut ids = Vec::new();
            let mut owner = Vec::new();
            for i in 0..ARTIFACTS {
                let by = i / 2;
                let r = e.deposit_bytes(req_as(EXP, who[by]), Bytes::from(vec![i as u8; 100])).await.unwrap();
                ids.push(r.id);
                owner.push(by);
            }
            let grantee = MemberId::parse(who[2].as_str()).unwrap();
            e.grant(EXP, &who[1], &ids[2], &grantee).await.unwrap();
            let reads = |p: usize, a: usize| p == 0 || owner[a] == p || (p == 2 && a == 2);

            let mut model: [Option<ModelRef>; 2] = [None, None];
            for op in ops {
                match op {
                    Op::Set { who: p, name, target, cond } => {
                        let upd = RefUpdate {
                            name: RefName::parse(NAMES[name]).unwrap(),
                            condition: match cond {
                                Cond::Absent => RefCondition::Absent,
                                Cond::Present => RefCondition::Present,
                                Cond::Target(t) => RefCondition::Target(ids[t]),
                            },
                            expires_at: None,
                            grants: None,
                        };
                        let got = outcome(e.set_ref(EXP, &who[p], upd, ids[target]).await, |(v, _)| Some(v.record.target));
                        let cur = model[name].clone();
                        let visible = cur.as_ref().is_some_and(|r| reads(p, r.target));
                        let holds = match cond {
                            Cond::Absent => cur.is_none(),
                            Cond::Present => visible,
                            Cond::Target(t) => visible && cur.as_ref().is_some_and(|r| r.target == t),
                        };
                        let expected = if !reads(p, target) {
                            Outcome::Forbidden
                        } else if !holds {
                            Outcome::Precondition
                        } else if cur.as_ref().is_some_and(|r| !(p == 0 || r.creator == p)) {
                            Outcome::Forbidden
                        } else {
                            let mut r = cur.unwrap_or(ModelRef { target, creator: p, changes: Vec::new() });
                            let from = if r.changes.is_empty() { None } else { Some(r.target) };
                            r.target = target;
                            r.changes.push((from, target));
                            model[name] = Some(r);
                            Outcome::Ok(Some(ids[target]))
                        };
                        prop_assert_eq!(got, expected, "set {} by {} to {}", NAMES[name], p, target);
                    }
                    Op::Delete { who: p, name, expected } => {
                        let n = RefName::parse(NAMES[name]).unwrap();
                        let got = outcome(e.delete_ref(EXP, &who[p], &n, expected.map(|t| ids[t])).await, |()| None);
                        let want = match &model[name] {
                            Some(r) if reads(p, r.target) => {
                                if expected.is_some_and(|t| t != r.target) {
                                    Outcome::Precondition
                                } else if !(p == 0 || r.creator == p) {
                                    Outcome::Forbidden
                                } else {
                                    model[name] = None;
                                    Outcome::Ok(None)
                                }
                            }
                            _ => Outcome::NotFound,
                        };
                        prop_assert_eq!(got, want, "delete {} by {}", NAMES[name], p);
                    }
                    Op::Get { who: p, name } => {
                        let n = RefName::parse(NAMES[name]).unwrap();
                        let got = outcome(e.get_ref(EXP, &who[p], &n).await, |v| Some(v.record.target));
                        let want = match &model[name] {
                            Some(r) if reads(p, r.target) => Outcome::Ok(Some(ids[r.target])),
                            _ => Outcome::NotFound,
                        };
                        prop_assert_eq!(got, want, "get {} by {}", NAMES[name], p);
                    }
                }
            }
            // Histories, complete and newest first, as the admin reads them.
            for (name, m) in NAMES.iter().zip(&model) {
                let n = RefName::parse(name).unwrap();
                let got = e.ref_history(EXP, &Principal::Admin, &n).await;
                match m {
                    None => prop_assert!(matches!(got, Err(EngineError::NotFound))),
                    Some(r) => {
                        let got: Vec<(Option<ArtifactId>, Option<ArtifactId>)> =
                            got.unwrap().into_iter().map(|c| (c.from, c.to)).collect();
                        let want: Vec<(Option<ArtifactId>, Option<ArtifactId>)> = r
                            .changes
                            .iter()
                            .rev()
                            .map(|(from, to)| (from.map(|f| ids[f]), Some(ids[*to])))
                            .collect();
                        prop_assert_eq!(got, want);
                    }
                }
            }
            Ok(())
        })?;
    }
}
