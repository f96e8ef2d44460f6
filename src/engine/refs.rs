//! Named references (issue 15): a per-experiment name → artifact, set with
//! compare-and-swap, read, listed by prefix, deleted, with a bounded
//! history; and GC of references past their own expiry or whose target is
//! gone.
//!
//! Invariants kept here:
//! - 4 (isolation, names included): a reference exists for a caller only if
//!   it is *live* (present, not past its own expiry, its target served) and
//!   the caller may read its target. Otherwise every answer — get, history,
//!   delete, a listing page, a cursor, a CAS on its target — is what a name
//!   that never existed gets. History entries name only artifacts the
//!   caller may read now (others are `None`). The one signal left is a
//!   refused create-only set of a name a hidden live reference holds
//!   (`docs/design.md`, "References").
//! - No silent overwrite: every set names what it expects (absent, present,
//!   or the current target); a change is decided and written under the
//!   engine's `meta.lock(Artifacts)`, so of two racing sets with the same
//!   expectation exactly one wins and the other is `PreconditionFailed`.
//! - A reference holds its target (`ArtifactRecord::ref_holds`, changed in
//!   the same batch as the reference): the target does not expire while
//!   held. Every change (record, history entry, trimmed history, holds) is
//!   one synced batch.

use std::collections::HashMap;

use super::access::ReadGate;
use super::audit::{AuditEvent, AuditKind};
use super::{Engine, EngineError, blocking};
use crate::auth::{ExperimentId, Principal, can_manage};
use crate::clock::Timestamp;
use crate::ids::ArtifactId;
use crate::meta::records::ArtifactRecord;
use crate::meta::refs::{RefChange, RefRecord};
use crate::meta::{Batch, Meta};
use crate::naming::RefName;

mod gc;

/// History entries kept per reference; older ones are dropped as new ones
/// are written.
pub const REF_HISTORY_MAX: u64 = 100;
/// References read from RocksDB at a time while listing.
const LIST_STEP: usize = 256;

/// What a set or delete expects the reference to be now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefCondition {
    /// Absent (`If-None-Match: *`): create only.
    Absent,
    /// Present, whatever it points at (`If-Match: *`).
    Present,
    /// Pointing at this artifact (`If-Match: "<id>"`).
    Target(ArtifactId),
}

/// A reference change asked for.
#[derive(Clone, Debug)]
pub struct RefUpdate {
    /// The reference.
    pub name: RefName,
    /// What it must be now.
    pub condition: RefCondition,
    /// Its own expiry (`None`: none).
    pub expires_at: Option<Timestamp>,
    /// Who else may move or delete it (`None`: unchanged, none on create).
    pub grants: Option<Vec<crate::auth::MemberId>>,
}

/// A reference as a caller who may see it sees it.
#[derive(Clone, Debug)]
pub struct RefView {
    /// Its name.
    pub name: RefName,
    /// The reference record.
    pub record: RefRecord,
    /// Its target's record.
    pub target: ArtifactRecord,
}

/// One page of a reference listing.
#[derive(Clone, Debug)]
pub struct RefPage {
    /// Visible references, in name order.
    pub items: Vec<RefView>,
    /// The last item's name when another visible reference follows.
    pub next_cursor: Option<RefName>,
}

/// One history entry as a caller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefHistoryEntry {
    /// Sequence number (from 0, per life of the name).
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub by: Principal,
    /// The target before: `None` when created, or when the caller may not
    /// read that artifact now (or it is gone).
    pub from: Option<ArtifactId>,
    /// The target after, `None` under the same rule.
    pub to: Option<ArtifactId>,
}

/// A reference as it stands, for one caller.
struct Current {
    record: Option<RefRecord>,
    /// The target's record when the reference is live.
    target: Option<ArtifactRecord>,
    /// Live, and the caller may read the target.
    visible: bool,
}

fn current(
    meta: &Meta,
    gate: &ReadGate,
    experiment: ExperimentId,
    name: &RefName,
    now: Timestamp,
) -> Result<Current, EngineError> {
    let record = meta.reference(&experiment, name)?;
    let target = match &record {
        Some(r) if !r.expired(now) => meta
            .artifact(&experiment, &r.target)?
            .filter(|t| !t.expired(now)),
        _ => None,
    };
    let visible = target.as_ref().is_some_and(|t| gate.allows(t));
    Ok(Current {
        record,
        target,
        visible,
    })
}

/// Releases one hold on `id` (if its record is still there).
fn release(
    meta: &Meta,
    b: &mut Batch<'_>,
    experiment: ExperimentId,
    id: ArtifactId,
) -> Result<(), EngineError> {
    if let Some(mut rec) = meta.artifact(&experiment, &id)? {
        rec.ref_holds = rec.ref_holds.saturating_sub(1);
        b.put_artifact(&experiment, &id, &rec);
    }
    Ok(())
}

/// A reference change decided and staged in a batch.
pub(crate) struct Staged {
    /// The record as written.
    pub record: RefRecord,
    /// Whether the name was created (not moved).
    pub created: bool,
    /// The target before, when moved.
    pub from: Option<ArtifactId>,
}

/// Decides `upd` for the gate's caller, pointing at `target_id` whose
/// record (as it will be written, served and readable by the caller) is
/// `target`, and stages the change in `b`: reference record, history entry
/// and trimming, the hold released on the old target. `target.ref_holds`
/// is updated here; the caller puts `target` in the same batch. Blocking;
/// run under `meta.lock(Artifacts)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn stage_set(
    meta: &Meta,
    b: &mut Batch<'_>,
    gate: &ReadGate,
    experiment: ExperimentId,
    upd: &RefUpdate,
    target_id: ArtifactId,
    target: &mut ArtifactRecord,
    now: Timestamp,
) -> Result<Staged, EngineError> {
    let caller = *gate.caller();
    let cur = current(meta, gate, experiment, &upd.name, now)?;
    let live = cur.target.is_some();
    let holds = |r: &RefRecord| r.target;
    let expected = match upd.condition {
        RefCondition::Absent => !live,
        RefCondition::Present => cur.visible,
        RefCondition::Target(id) => cur.visible && cur.record.as_ref().map(holds) == Some(id),
    };
    if !expected {
        return Err(EngineError::PreconditionFailed);
    }
    let name = &upd.name;
    let staged = match cur.record {
        Some(old) if live => {
            if !gate.permits(&old.created_by, &old.grants) {
                return Err(EngineError::Forbidden);
            }
            let regrant = upd.grants.as_ref().is_some_and(|g| *g != old.grants);
            if regrant && !can_manage(&caller, &old.created_by) {
                return Err(EngineError::Forbidden);
            }
            if old.target != target_id {
                release(meta, b, experiment, old.target)?;
                target.ref_holds = target.ref_holds.saturating_add(1);
            }
            let seq = old.next_seq;
            let change = RefChange {
                at: now,
                by: caller,
                from: Some(old.target),
                to: target_id,
            };
            b.put_ref_change(&experiment, name, seq, &change);
            if seq >= REF_HISTORY_MAX {
                b.trim_ref_history(&experiment, name, seq + 1 - REF_HISTORY_MAX);
            }
            Staged {
                record: RefRecord {
                    target: target_id,
                    created_by: old.created_by,
                    created_at: old.created_at,
                    updated_by: caller,
                    updated_at: now,
                    expires_at: upd.expires_at,
                    grants: upd.grants.clone().unwrap_or(old.grants),
                    next_seq: seq + 1,
                },
                created: false,
                from: Some(old.target),
            }
        }
        stale => {
            // A dead record (past its expiry, or its target gone) is
            // replaced whole: its history goes with it, so a new owner of
            // the name learns nothing of the old one.
            match stale {
                Some(old) => {
                    b.delete_ref(&experiment, name);
                    if old.target != target_id {
                        release(meta, b, experiment, old.target)?;
                        target.ref_holds = target.ref_holds.saturating_add(1);
                    }
                }
                None => target.ref_holds = target.ref_holds.saturating_add(1),
            }
            let change = RefChange {
                at: now,
                by: caller,
                from: None,
                to: target_id,
            };
            b.put_ref_change(&experiment, name, 0, &change);
            Staged {
                record: RefRecord {
                    target: target_id,
                    created_by: caller,
                    created_at: now,
                    updated_by: caller,
                    updated_at: now,
                    expires_at: upd.expires_at,
                    grants: upd.grants.clone().unwrap_or_default(),
                    next_seq: 1,
                },
                created: true,
                from: None,
            }
        }
    };
    b.put_ref(&experiment, name, &staged.record);
    Ok(staged)
}

impl Engine {
    /// Records the audit event of a reference change.
    pub(crate) fn audit_ref(
        &self,
        kind: AuditKind,
        by: &str,
        experiment: ExperimentId,
        name: &RefName,
        to: Option<(ArtifactId, &ArtifactRecord)>,
        from: Option<ArtifactId>,
    ) {
        let mut ev = AuditEvent::new(kind, by, experiment.as_str());
        if let Some((id, rec)) = to {
            ev = ev.artifact(id, &rec.blake3);
        }
        ev.reference = Some(name.to_string());
        ev.from = from.map(|f| f.to_string());
        self.audit(ev);
    }

    /// Sets reference `upd.name` to `target` if it is in the state
    /// `upd.condition` names. Returns the reference and whether it was
    /// created.
    ///
    /// # Errors
    /// `NotFound` / `Forbidden` when the target is not a served artifact
    /// the caller may read; `PreconditionFailed` when the reference is not
    /// as expected (a name the caller cannot see counts as absent, except
    /// that create-only fails on any live reference); `Forbidden` when the
    /// caller may see it but not move it (or change its grants); `Meta`.
    pub async fn set_ref(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        upd: RefUpdate,
        target_id: ArtifactId,
    ) -> Result<(RefView, bool), EngineError> {
        self.check_writer()?;
        let _guard = self
            .meta
            .lock(crate::meta::lock::LockKind::Artifacts)
            .await?;
        let (meta, who) = (self.meta.clone(), *caller);
        let (view, staged) = blocking(move || {
            let gate = ReadGate::load(&meta, experiment, who)?;
            let now = Timestamp::now();
            let mut target = meta
                .artifact(&experiment, &target_id)?
                .filter(|t| !t.expired(now))
                .ok_or(EngineError::NotFound)?;
            if !gate.allows(&target) {
                return Err(EngineError::Forbidden);
            }
            let mut b = meta.batch();
            let staged = stage_set(
                &meta,
                &mut b,
                &gate,
                experiment,
                &upd,
                target_id,
                &mut target,
                now,
            )?;
            b.put_artifact(&experiment, &target_id, &target);
            b.commit()?;
            let view = RefView {
                name: upd.name,
                record: staged.record.clone(),
                target,
            };
            Ok((view, staged))
        })
        .await?;
        self.audit_ref(
            AuditKind::SetRef,
            caller.as_str(),
            experiment,
            &view.name,
            Some((target_id, &view.target)),
            staged.from,
        );
        Ok((view, staged.created))
    }

    /// A reference the caller may see.
    ///
    /// # Errors
    /// `NotFound` when it is absent, dead, or its target is not readable
    /// by the caller (the same answer); `Meta`.
    pub async fn get_ref(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        name: &RefName,
    ) -> Result<RefView, EngineError> {
        let (meta, who, name) = (self.meta.clone(), *caller, name.clone());
        blocking(move || {
            let gate = ReadGate::load(&meta, experiment, who)?;
            let cur = current(&meta, &gate, experiment, &name, Timestamp::now())?;
            match (cur.visible, cur.record, cur.target) {
                (true, Some(record), Some(target)) => Ok(RefView {
                    name,
                    record,
                    target,
                }),
                _ => Err(EngineError::NotFound),
            }
        })
        .await
    }

    /// A page of the references of `experiment` whose names start with
    /// `prefix` and that the caller may see, in name order, after `cursor`.
    /// Like artifact listings (invariant 4): `limit` items unless fewer
    /// visible ones remain, and a cursor exactly when another visible
    /// reference follows, naming the page's last (visible) item.
    ///
    /// # Errors
    /// `Meta`.
    pub async fn list_refs(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        prefix: String,
        cursor: Option<RefName>,
        limit: usize,
    ) -> Result<RefPage, EngineError> {
        let limit = limit.max(1);
        let (meta, who) = (self.meta.clone(), *caller);
        blocking(move || {
            let gate = ReadGate::load(&meta, experiment, who)?;
            let now = Timestamp::now();
            let mut items: Vec<RefView> = Vec::new();
            let mut after = cursor;
            loop {
                let batch = meta.refs_after(&experiment, &prefix, after.as_ref(), LIST_STEP)?;
                let exhausted = batch.len() < LIST_STEP;
                for (name, record) in batch {
                    after = Some(name.clone());
                    if record.expired(now) {
                        continue;
                    }
                    let Some(target) = meta
                        .artifact(&experiment, &record.target)?
                        .filter(|t| !t.expired(now) && gate.allows(t))
                    else {
                        continue;
                    };
                    if items.len() == limit {
                        let next = items.last().map(|v| v.name.clone());
                        return Ok(RefPage {
                            items,
                            next_cursor: next,
                        });
                    }
                    items.push(RefView {
                        name,
                        record,
                        target,
                    });
                }
                if exhausted {
                    return Ok(RefPage {
                        items,
                        next_cursor: None,
                    });
                }
            }
        })
        .await
    }

    /// The history of a reference the caller may see, newest first, at
    /// most [`REF_HISTORY_MAX`] entries; targets the caller may not read
    /// now are `None`.
    ///
    /// # Errors
    /// As [`Engine::get_ref`].
    pub async fn ref_history(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        name: &RefName,
    ) -> Result<Vec<RefHistoryEntry>, EngineError> {
        let (meta, who, name) = (self.meta.clone(), *caller, name.clone());
        blocking(move || {
            let gate = ReadGate::load(&meta, experiment, who)?;
            let now = Timestamp::now();
            if !current(&meta, &gate, experiment, &name, now)?.visible {
                return Err(EngineError::NotFound);
            }
            let mut readable: HashMap<ArtifactId, bool> = HashMap::new();
            let mut shown = |id: ArtifactId| -> Result<Option<ArtifactId>, EngineError> {
                let ok = match readable.get(&id) {
                    Some(ok) => *ok,
                    None => {
                        let ok = meta
                            .artifact(&experiment, &id)?
                            .is_some_and(|t| !t.expired(now) && gate.allows(&t));
                        readable.insert(id, ok);
                        ok
                    }
                };
                Ok(ok.then_some(id))
            };
            let mut out = Vec::new();
            for (seq, c) in meta.ref_history(&experiment, &name)?.into_iter().rev() {
                out.push(RefHistoryEntry {
                    seq,
                    at: c.at,
                    by: c.by,
                    from: match c.from {
                        Some(f) => shown(f)?,
                        None => None,
                    },
                    to: shown(c.to)?,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Deletes a reference the caller may see and manage, with its history,
    /// if it points at `expected` (when given).
    ///
    /// # Errors
    /// `NotFound` as [`Engine::get_ref`]; `PreconditionFailed` when it
    /// points elsewhere; `Forbidden` when the caller may see but not manage
    /// it; `Meta`.
    pub async fn delete_ref(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        name: &RefName,
        expected: Option<ArtifactId>,
    ) -> Result<(), EngineError> {
        self.check_writer()?;
        let _guard = self
            .meta
            .lock(crate::meta::lock::LockKind::Artifacts)
            .await?;
        let (meta, who, n) = (self.meta.clone(), *caller, name.clone());
        let (target_id, target) = blocking(move || {
            let gate = ReadGate::load(&meta, experiment, who)?;
            let cur = current(&meta, &gate, experiment, &n, Timestamp::now())?;
            let (true, Some(old), Some(target)) = (cur.visible, cur.record, cur.target) else {
                return Err(EngineError::NotFound);
            };
            if expected.is_some_and(|e| e != old.target) {
                return Err(EngineError::PreconditionFailed);
            }
            if !gate.permits(&old.created_by, &old.grants) {
                return Err(EngineError::Forbidden);
            }
            let mut b = meta.batch();
            b.delete_ref(&experiment, &n);
            release(&meta, &mut b, experiment, old.target)?;
            b.commit()?;
            Ok((old.target, target))
        })
        .await?;
        self.audit_ref(
            AuditKind::DeleteRef,
            caller.as_str(),
            experiment,
            name,
            Some((target_id, &target)),
            None,
        );
        Ok(())
    }
}
