//! Artifacts after ingest: the commit that makes content visible (shared by
//! v0, raw deposits and upload sessions), the per-experiment inverse chunk
//! index behind "missing", listing, grants and delete.
//!
//! Invariants kept here:
//! - 3 (data before metadata): an artifact's chunk refs are written one
//!   segment at a time *before* the synced batch that records the artifact;
//!   a ref whose artifact is absent means nothing, so a crash in between
//!   leaves only harmless dangling refs.
//! - 4 (isolation): [`Presence`] reports a chunk as present only if an
//!   artifact of the same experiment that the asking principal may read holds
//!   it; every ref is checked against the artifact record's ACL, and the
//!   dedup figures shown over the API (`visible_dedup`) are computed the same
//!   way, so they reveal nothing about other principals' content.
//! - 5 (no overwrite): ids are minted fresh; grants and delete change records
//!   under one lock so a grant can never resurrect a deleted artifact.
//! - 8 (bounded memory): refs, figures and delete work one segment at a time;
//!   listing holds one step of records and one page.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::access::ReadGate;
use super::audit::{AuditEvent, AuditKind, GC_PRINCIPAL};
use super::ingest::{DepositReceipt, DepositRequest, PreparedContent, group};
use super::labels::ArtifactFilter;
use super::quota::{Part, session_reservation};
use super::{Engine, EngineError, Stats, blocking};
use crate::auth::{ExperimentId, MemberId, Principal};
use crate::clock::Timestamp;
use crate::hash::Digest;
use crate::ids::{ArtifactId, SessionId};
use crate::meta::Meta;
use crate::meta::records::{ArtifactRecord, EndReason, UploadEnd, VisibleDedup};

/// Refs of one chunk read from RocksDB at a time when deciding presence.
/// Every ref is examined until a readable one is found, so the answer is
/// exact whatever the number of other artifacts holding the chunk (a cap
/// would turn "present" into "missing" once enough *unreadable* artifacts
/// held a chunk — an answer that depends on others' content).
const REFS_STEP: usize = 256;
/// Artifact decisions cached per request before the cache is reset.
const MAX_CACHED_DECISIONS: usize = 65_536;
/// Records read from RocksDB at a time while listing.
const LIST_STEP: usize = 256;

/// Answers "does an artifact of this experiment that the principal may read
/// hold this chunk?" through `chunk-refs-v1`, checking each ref's artifact
/// record against the [`ReadGate`]. Blocking; one per request.
pub(crate) struct Presence {
    meta: Meta,
    experiment: ExperimentId,
    gate: ReadGate,
    decided: HashMap<ArtifactId, bool>,
    now: Timestamp,
}

impl Presence {
    /// An oracle for `principal` in `experiment` (loads its groups).
    pub(crate) fn load(
        meta: &Meta,
        experiment: ExperimentId,
        principal: Principal,
    ) -> Result<Self, EngineError> {
        Ok(Presence {
            gate: ReadGate::load(meta, experiment, principal)?,
            meta: meta.clone(),
            experiment,
            decided: HashMap::new(),
            now: Timestamp::now(),
        })
    }

    /// Whether a readable, unexpired artifact of the experiment holds `chunk`.
    /// Stops at the first one; otherwise examines every ref of the chunk.
    pub(crate) fn readable(&mut self, chunk: &Digest) -> Result<bool, EngineError> {
        let mut after: Option<ArtifactId> = None;
        loop {
            let refs =
                self.meta
                    .chunk_refs_after(&self.experiment, chunk, after.as_ref(), REFS_STEP)?;
            let last_page = refs.len() < REFS_STEP;
            for artifact in refs {
                after = Some(artifact);
                if self.decide(artifact)? {
                    return Ok(true);
                }
            }
            if last_page {
                return Ok(false);
            }
        }
    }

    /// Whether the caller may read `artifact` now (cached per request).
    fn decide(&mut self, artifact: ArtifactId) -> Result<bool, EngineError> {
        if let Some(&ok) = self.decided.get(&artifact) {
            return Ok(ok);
        }
        // A dangling ref (artifact never committed, or deleted) grants nothing.
        let ok = self
            .meta
            .artifact(&self.experiment, &artifact)?
            .is_some_and(|rec| !rec.expired(self.now) && self.gate.allows(&rec));
        if self.decided.len() >= MAX_CACHED_DECISIONS {
            self.decided.clear();
        }
        self.decided.insert(artifact, ok);
        Ok(ok)
    }
}

/// An upload session that ends in the same batch that records the artifact.
pub(crate) struct SessionEnding {
    /// Session id.
    pub id: SessionId,
}

/// One page of a listing.
#[derive(Clone, Debug)]
pub struct ArtifactPage {
    /// (artifact id, record), newest first.
    pub items: Vec<(ArtifactId, ArtifactRecord)>,
    /// Where the next page starts (an artifact id, exclusive), if the scan
    /// stopped before the end.
    pub next_cursor: Option<ArtifactId>,
}

impl Engine {
    /// The commit shared by every write path: refs and visible dedup figures
    /// per segment, then manifest + artifact record (+ the end of an upload
    /// session) in one synced batch.
    pub(crate) async fn commit_prepared(
        self: &Arc<Self>,
        prepared: PreparedContent,
        req: DepositRequest,
        ending: Option<SessionEnding>,
    ) -> Result<DepositReceipt, EngineError> {
        // The preparing operation's pins stay until the record is durable.
        let _pins = prepared.pins.clone();
        self.check_writer()?;
        let now = Timestamp::now();
        let id = ArtifactId::mint(now);
        // Default lifetimes count whole seconds, as expiries always have.
        let expires_at = req.expires_at.or_else(|| {
            self.cfg
                .retention
                .ttl_for(req.experiment.as_str())
                .map(|ttl| now.whole_secs().plus(Duration::from_secs(ttl.as_secs())))
        });
        let visible = self
            .write_refs(req.experiment, &id, &prepared, req.created_by)
            .await?;
        let record = ArtifactRecord {
            manifest: prepared.manifest_id,
            size: prepared.manifest.size,
            content_type: req.content_type,
            filename: req.filename,
            created_by: req.created_by,
            created_at: now,
            blake3: prepared.manifest.blake3,
            sha256: prepared.manifest.sha256,
            grants: Vec::new(),
            expires_at,
            dedup: prepared.figures,
            digest_verified: true,
            visible_dedup: Some(visible),
            labels: req.labels,
            ref_holds: 0,
        };
        let meta = self.meta.clone();
        let experiment = req.experiment;
        let mut rec = record;
        let manifest_id = prepared.manifest_id;
        let manifest = prepared.manifest;
        let staged = match (prepared.staged, &ending, &req.reference) {
            (Some(staged), None, Some(_)) => {
                group::write_alone(self, &staged, &manifest_id, &manifest).await?;
                None
            }
            (staged, _, _) => staged,
        };
        if let (Some(staged), None) = (staged, &ending) {
            // A small deposit: its chunks, manifest object and record are
            // written with those of concurrent small deposits. (One that
            // sets a reference decides it under the reference lock below.)
            let item = group::GroupItem::prepare(
                self,
                staged,
                manifest_id,
                manifest,
                experiment,
                id,
                rec.clone(),
            )
            .await?;
            group::submit(self, item).await?;
            return Ok(self.committed(req.experiment, id, rec, 0, None));
        }
        // Ending a session checks it is still live under the upload lock, so
        // an abandon or expiry racing this commit wins or loses atomically.
        let _guard = match &ending {
            Some(_) => Some(self.meta.lock(crate::meta::lock::LockKind::Uploads).await?),
            None => None,
        };
        // A reference is decided and written with the artifact, under the
        // lock every reference change takes (`refs.rs`).
        let _ref_guard = match &req.reference {
            Some(_) => Some(
                self.meta
                    .lock(crate::meta::lock::LockKind::Artifacts)
                    .await?,
            ),
            None => None,
        };
        let end_id = ending.map(|e| e.id);
        let reference = req.reference;
        let (released, record, staged) = blocking(move || {
            let mut b = meta.batch();
            let mut released = 0;
            let staged = match &reference {
                Some(upd) => {
                    let gate = super::access::ReadGate::load(&meta, experiment, rec.created_by)?;
                    let s = super::refs::stage_set(
                        &meta, &mut b, &gate, experiment, upd, id, &mut rec, now,
                    )?;
                    Some((upd.name.clone(), s))
                }
                None => None,
            };
            if let Some(sid) = end_id {
                let sid = &sid;
                let mut session =
                    meta.upload(sid)?
                        .filter(|s| s.ended.is_none())
                        .ok_or_else(|| {
                            EngineError::SessionEnded("the session ended during the commit".into())
                        })?;
                session.ended = Some(UploadEnd {
                    at: now,
                    reason: EndReason::Committed(id),
                });
                b.put_upload(sid, &session);
                b.delete_upload_chunks(sid);
                released = session_reservation(&session);
            }
            b.put_manifest(&manifest_id, &manifest);
            b.put_artifact(&experiment, &id, &rec);
            b.commit()?;
            Ok((released, rec, staged))
        })
        .await?;
        drop(_ref_guard);
        Ok(self.committed(req.experiment, id, record, released, staged))
    }

    /// What follows a durable commit: quotas, audit (of the reference set
    /// with it too), counters, the log line.
    fn committed(
        &self,
        experiment: ExperimentId,
        id: ArtifactId,
        record: ArtifactRecord,
        released: u64,
        reference: Option<(crate::naming::RefName, super::refs::Staged)>,
    ) -> DepositReceipt {
        // The session's (or the deposit's) reservation becomes committed bytes.
        self.quotas.add(&experiment, Part::Committed, record.size);
        self.quotas.sub(&experiment, Part::Session, released);
        let mut ev = AuditEvent::new(
            AuditKind::Deposit,
            record.created_by.as_str(),
            experiment.as_str(),
        )
        .artifact(id, &record.blake3);
        ev.size = Some(record.size);
        ev.expires_at = record.expires_at;
        self.audit(ev);
        if let Some((name, staged)) = reference {
            self.audit_ref(
                AuditKind::SetRef,
                record.created_by.as_str(),
                experiment,
                &name,
                Some((id, &record)),
                staged.from,
            );
        }
        let s = &self.stats;
        Stats::add(&s.deposits, 1);
        Stats::add(&s.logical_bytes, record.size);
        Stats::add(&s.new_raw_bytes, record.dedup.new_raw_bytes);
        tracing::info!(
            experiment = %experiment, artifact = %id, size = record.size,
            new_bytes = record.dedup.new_stored_bytes, chunks = record.dedup.chunks,
            new_chunks = record.dedup.new_chunks, created_by = %record.created_by, "artifact committed"
        );
        DepositReceipt { id, record }
    }

    /// Writes `experiment \0 chunk artifact` refs for every chunk, one
    /// segment per batch, and measures the dedup figures the depositor may
    /// see: a chunk is new unless a readable artifact already held it or it
    /// occurred earlier in this artifact.
    async fn write_refs(
        &self,
        experiment: ExperimentId,
        id: &ArtifactId,
        prepared: &PreparedContent,
        depositor: Principal,
    ) -> Result<VisibleDedup, EngineError> {
        let meta = self.meta.clone();
        let mut presence = Some(Box::new(
            blocking(move || Presence::load(&meta, experiment, depositor)).await?,
        ));
        let mut figures = VisibleDedup {
            logical_bytes: prepared.manifest.size,
            chunks: prepared.manifest.chunks,
            ..VisibleDedup::default()
        };
        for seg in &prepared.manifest.segments {
            let Some(mut p) = presence.take() else {
                return Err(EngineError::Internal("presence state lost".into()));
            };
            let (meta, exp, id, sid) = (self.meta.clone(), experiment, *id, seg.id);
            let (p, add) = blocking(move || {
                let segment = meta
                    .segment(&sid)?
                    .ok_or_else(|| EngineError::missing(super::Record::Segment(sid)))?;
                let ids: Vec<Digest> = segment.entries.iter().map(|e| e.id).collect();
                let mut add = VisibleDedup::default();
                let mut seen = HashSet::with_capacity(ids.len());
                for e in &segment.entries {
                    if !seen.insert(e.id) || meta.has_chunk_ref(&exp, &e.id, &id)? {
                        continue; // earlier in this artifact
                    }
                    if p.readable(&e.id)? {
                        continue;
                    }
                    // Raw bytes only: the stored length of the copy in the
                    // index may come from another principal's deposit.
                    add.new_chunks += 1;
                    add.new_raw_bytes += u64::from(e.len);
                }
                meta.put_chunk_refs(&exp, &id, &ids)?;
                Ok((p, add))
            })
            .await?;
            figures.new_chunks += add.new_chunks;
            figures.new_raw_bytes += add.new_raw_bytes;
            presence = Some(p);
        }
        Ok(figures)
    }

    /// A page of the artifacts of `experiment` that `caller` may read, newest
    /// first, optionally only those created by `created_by`, starting after
    /// the artifact `cursor`.
    ///
    /// The page is a function of the readable artifacts alone (invariant 4):
    /// it holds `limit` items unless fewer readable ones remain, and
    /// `next_cursor` is the id of its last item exactly when another
    /// readable item follows. Records the caller cannot read are skipped
    /// however many there are — a bounded scan would answer short pages and
    /// hand out cursors naming unreadable artifacts. The cost of skipping
    /// them is time only (see the timing note in `docs/design.md`).
    ///
    /// # Errors
    /// [`EngineError::Meta`] when the metadata store fails.
    pub async fn list_artifacts(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        created_by: Option<Principal>,
        cursor: Option<ArtifactId>,
        limit: usize,
    ) -> Result<ArtifactPage, EngineError> {
        let filter = ArtifactFilter {
            created_by,
            ..ArtifactFilter::default()
        };
        self.list_artifacts_where(experiment, caller, filter, cursor, limit)
            .await
    }

    /// [`Engine::list_artifacts`] with every filter (`labels.rs`): the same
    /// page rules, applied to the readable artifacts that pass `filter`.
    ///
    /// # Errors
    /// [`EngineError::Meta`] when the metadata store fails.
    pub async fn list_artifacts_where(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        filter: ArtifactFilter,
        cursor: Option<ArtifactId>,
        limit: usize,
    ) -> Result<ArtifactPage, EngineError> {
        let limit = limit.max(1);
        let (meta, caller) = (self.meta.clone(), *caller);
        blocking(move || {
            let gate = ReadGate::load(&meta, experiment, caller)?;
            let now = Timestamp::now();
            let mut items: Vec<(ArtifactId, ArtifactRecord)> = Vec::new();
            let mut before = cursor;
            loop {
                let batch = meta.artifacts_newest_first(&experiment, before.as_ref(), LIST_STEP)?;
                let exhausted = batch.len() < LIST_STEP;
                for (id, rec) in batch {
                    before = Some(id);
                    let wanted = filter.admits(&rec);
                    if !(wanted && !rec.expired(now) && gate.allows(&rec)) {
                        continue;
                    }
                    if items.len() == limit {
                        // A readable item follows the page: hand out the
                        // page's last (readable) id as the cursor.
                        let next = items.last().map(|(last, _)| *last);
                        return Ok(ArtifactPage {
                            items,
                            next_cursor: next,
                        });
                    }
                    items.push((id, rec));
                }
                if exhausted {
                    return Ok(ArtifactPage {
                        items,
                        next_cursor: None,
                    });
                }
            }
        })
        .await
    }

    /// Grants read access to `principal` (a worker or group, which need not
    /// exist); idempotent. Depositor or admin only.
    ///
    /// # Errors
    /// [`EngineError::NotFound`] when the artifact is absent or expired;
    /// [`EngineError::Forbidden`] when `caller` is neither its depositor nor the
    /// admin; [`EngineError::Meta`] when the metadata store fails.
    pub async fn grant(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        id: &ArtifactId,
        principal: &MemberId,
    ) -> Result<ArtifactRecord, EngineError> {
        let rec = self
            .change_grants(experiment, caller, id, |g| {
                if !g.contains(principal) {
                    g.push(*principal);
                }
            })
            .await?;
        let mut ev = AuditEvent::new(AuditKind::Grant, caller.as_str(), experiment.as_str())
            .artifact(id, &rec.blake3);
        ev.grantee = Some(principal.to_string());
        self.audit(ev);
        Ok(rec)
    }

    /// Revokes a grant; idempotent. Depositor or admin only.
    ///
    /// # Errors
    /// As [`Engine::grant`].
    pub async fn revoke(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        id: &ArtifactId,
        principal: &MemberId,
    ) -> Result<ArtifactRecord, EngineError> {
        let rec = self
            .change_grants(experiment, caller, id, |g| g.retain(|x| x != principal))
            .await?;
        let mut ev = AuditEvent::new(AuditKind::Revoke, caller.as_str(), experiment.as_str())
            .artifact(id, &rec.blake3);
        ev.grantee = Some(principal.to_string());
        self.audit(ev);
        Ok(rec)
    }

    /// Sets (or clears, with `None`) when an artifact expires; a time in
    /// the past expires it at once (it stops being served; GC removes it).
    /// Depositor or admin only.
    ///
    /// # Errors
    /// As [`Engine::grant`].
    pub async fn set_expiry(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        id: &ArtifactId,
        expires_at: Option<Timestamp>,
    ) -> Result<ArtifactRecord, EngineError> {
        let _guard = self
            .meta
            .lock(crate::meta::lock::LockKind::Artifacts)
            .await?;
        let mut rec = self.managed(experiment, caller, id).await?;
        rec.expires_at = expires_at;
        self.put_record(experiment, id, &rec).await?;
        let mut ev = AuditEvent::new(AuditKind::SetExpiry, caller.as_str(), experiment.as_str())
            .artifact(id, &rec.blake3);
        ev.expires_at = expires_at;
        self.audit(ev);
        Ok(rec)
    }

    async fn change_grants(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        id: &ArtifactId,
        change: impl FnOnce(&mut Vec<MemberId>),
    ) -> Result<ArtifactRecord, EngineError> {
        let _guard = self
            .meta
            .lock(crate::meta::lock::LockKind::Artifacts)
            .await?;
        let mut rec = self.managed(experiment, caller, id).await?;
        let before = rec.grants.clone();
        change(&mut rec.grants);
        if rec.grants != before {
            self.put_record(experiment, id, &rec).await?;
        }
        Ok(rec)
    }

    /// Writes a changed artifact record (synced).
    pub(crate) async fn put_record(
        &self,
        experiment: ExperimentId,
        id: &ArtifactId,
        rec: &ArtifactRecord,
    ) -> Result<(), EngineError> {
        let (meta, id, r) = (self.meta.clone(), *id, rec.clone());
        blocking(move || {
            let mut b = meta.batch();
            b.put_artifact(&experiment, &id, &r);
            Ok(b.commit()?)
        })
        .await
    }

    /// Removes an artifact record if it is (still) expired at `now`, then
    /// its chunk refs. Returns whether it was removed. Takes the key parts
    /// as GC's scan of `artifacts-v1` found them.
    pub(crate) async fn remove_expired(
        &self,
        experiment: ExperimentId,
        id: &ArtifactId,
        now: Timestamp,
    ) -> Result<bool, EngineError> {
        let rec = {
            let _guard = self
                .meta
                .lock(crate::meta::lock::LockKind::Artifacts)
                .await?;
            let (meta, exp, aid) = (self.meta.clone(), experiment, *id);
            blocking(move || {
                let Some(rec) = meta.artifact(&exp, &aid)? else {
                    return Ok(None);
                };
                if !rec.expired(now) {
                    return Ok(None);
                }
                let mut b = meta.batch();
                b.delete_artifact(&exp, &aid);
                b.commit()?;
                Ok(Some(rec))
            })
            .await?
        };
        let Some(rec) = rec else {
            return Ok(false);
        };
        self.quotas.sub(&experiment, Part::Committed, rec.size);
        let mut ev = AuditEvent::new(AuditKind::Expire, GC_PRINCIPAL, experiment.as_str())
            .artifact(*id, &rec.blake3);
        ev.size = Some(rec.size);
        ev.expires_at = rec.expires_at;
        self.audit(ev);
        self.remove_refs(experiment, id, rec.manifest).await;
        tracing::info!(%experiment, artifact = %id, "expired artifact removed");
        Ok(true)
    }

    /// Removes the chunk refs of an artifact whose record is gone, one
    /// segment at a time. Best effort: leftover refs dangle harmlessly (a
    /// ref without its artifact record grants nothing).
    pub(crate) async fn remove_refs(
        &self,
        experiment: ExperimentId,
        id: &ArtifactId,
        manifest: Digest,
    ) {
        let (meta, exp, aid) = (self.meta.clone(), experiment, *id);
        let cleanup = blocking(move || {
            let Some(manifest) = meta.manifest(&manifest)? else {
                return Ok(());
            };
            for seg in manifest.segments {
                if let Some(segment) = meta.segment(&seg.id)? {
                    let ids: Vec<Digest> = segment.entries.iter().map(|e| e.id).collect();
                    meta.delete_chunk_refs(&exp, &aid, &ids)?;
                }
            }
            Ok(())
        })
        .await;
        if let Err(e) = cleanup {
            tracing::warn!(%experiment, error = %e, "chunk refs of a removed artifact not removed");
        }
    }

    /// Deletes an artifact (depositor or admin): the record goes first, in
    /// one synced batch, so the id answers 404 at once on both surfaces;
    /// then its chunk refs, one segment at a time. Storage is GC's business.
    ///
    /// # Errors
    /// As [`Engine::grant`]. Leftover chunk refs are logged, not returned.
    pub async fn delete_artifact(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        id: &ArtifactId,
    ) -> Result<(), EngineError> {
        let rec = {
            let _guard = self
                .meta
                .lock(crate::meta::lock::LockKind::Artifacts)
                .await?;
            let rec = self.managed(experiment, caller, id).await?;
            let (meta, aid) = (self.meta.clone(), *id);
            blocking(move || {
                let mut b = meta.batch();
                b.delete_artifact(&experiment, &aid);
                Ok(b.commit()?)
            })
            .await?;
            self.quotas.sub(&experiment, Part::Committed, rec.size);
            let mut ev = AuditEvent::new(AuditKind::Delete, caller.as_str(), experiment.as_str())
                .artifact(id, &rec.blake3);
            ev.size = Some(rec.size);
            self.audit(ev);
            rec
        };
        self.remove_refs(experiment, id, rec.manifest).await;
        tracing::info!(%experiment, artifact = %id, by = %caller, "artifact deleted");
        Ok(())
    }
}
