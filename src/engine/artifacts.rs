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
use std::time::{SystemTime, UNIX_EPOCH};

use super::ingest::{DepositReceipt, DepositRequest, PreparedContent, mint_artifact_id};
use super::quota::{Part, session_reservation};
use super::{Engine, EngineError, Stats, blocking};
use crate::auth::{GroupId, MemberId, Principal, can_manage, can_read};
use crate::hash::Digest;
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

/// Unix seconds now.
pub(crate) fn now_unix_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Whether a record is past its expiry at `now_s`.
fn expired(rec: &ArtifactRecord, now_s: i64) -> bool {
    rec.expires_at.is_some_and(|t| t <= now_s)
}

/// The read rule of `Engine::check_read`, loaded once (groups of one
/// experiment) and applied to many records without further I/O.
pub(crate) struct ReadGate {
    caller: Principal,
    graph: HashMap<GroupId, Vec<String>>,
    admins: Vec<GroupId>,
}

impl ReadGate {
    /// Loads the experiment's groups (blocking). The admin needs none.
    pub(crate) fn load(
        meta: &Meta,
        experiment: &str,
        caller: Principal,
    ) -> Result<Self, EngineError> {
        let groups = if caller.is_admin() {
            Vec::new()
        } else {
            meta.groups(experiment)?
        };
        let admins = groups
            .iter()
            .filter(|(_, g)| g.name == "admins")
            .filter_map(|(id, _)| GroupId::parse(id))
            .collect();
        let graph = groups
            .into_iter()
            .filter_map(|(id, g)| GroupId::parse(&id).map(|gid| (gid, g.members)))
            .collect();
        Ok(ReadGate {
            caller,
            graph,
            admins,
        })
    }

    /// Whether the caller may read `rec` (expiry is checked separately).
    pub(crate) fn allows(&self, rec: &ArtifactRecord) -> bool {
        let Some(owner) = Principal::parse(&rec.created_by) else {
            return false;
        };
        if self.caller.is_admin() || self.caller == owner {
            return true;
        }
        if self.admins.is_empty() {
            return can_read(&self.caller, &owner, &rec.grants, &self.graph, None).is_allowed();
        }
        self.admins
            .iter()
            .any(|a| can_read(&self.caller, &owner, &rec.grants, &self.graph, Some(a)).is_allowed())
    }
}

/// Answers "does an artifact of this experiment that the principal may read
/// hold this chunk?" through `chunk-refs-v1`, checking each ref's artifact
/// record against the [`ReadGate`]. Blocking; one per request.
pub(crate) struct Presence {
    meta: Meta,
    experiment: String,
    gate: ReadGate,
    decided: HashMap<[u8; 16], bool>,
    now_s: i64,
}

impl Presence {
    /// An oracle for `principal` in `experiment` (loads its groups).
    pub(crate) fn load(
        meta: &Meta,
        experiment: &str,
        principal: Principal,
    ) -> Result<Self, EngineError> {
        Ok(Presence {
            gate: ReadGate::load(meta, experiment, principal)?,
            meta: meta.clone(),
            experiment: experiment.to_string(),
            decided: HashMap::new(),
            now_s: now_unix_s(),
        })
    }

    /// Whether a readable, unexpired artifact of the experiment holds `chunk`.
    /// Stops at the first one; otherwise examines every ref of the chunk.
    pub(crate) fn readable(&mut self, chunk: &Digest) -> Result<bool, EngineError> {
        let mut after: Option<[u8; 16]> = None;
        loop {
            let refs =
                self.meta
                    .chunk_refs_after(&self.experiment, chunk, after.as_ref(), REFS_STEP)?;
            let last_page = refs.len() < REFS_STEP;
            for artifact in refs {
                after = Some(artifact);
                if self.decide(&artifact)? {
                    return Ok(true);
                }
            }
            if last_page {
                return Ok(false);
            }
        }
    }

    /// Whether the caller may read `artifact` now (cached per request).
    fn decide(&mut self, artifact: &[u8; 16]) -> Result<bool, EngineError> {
        if let Some(&ok) = self.decided.get(artifact) {
            return Ok(ok);
        }
        // A dangling ref (artifact never committed, or deleted) grants nothing.
        let ok = self
            .meta
            .artifact(&self.experiment, artifact)?
            .is_some_and(|rec| !expired(&rec, self.now_s) && self.gate.allows(&rec));
        if self.decided.len() >= MAX_CACHED_DECISIONS {
            self.decided.clear();
        }
        self.decided.insert(*artifact, ok);
        Ok(ok)
    }
}

/// An upload session that ends in the same batch that records the artifact.
pub(crate) struct SessionEnding {
    /// Session id.
    pub id: [u8; 16],
}

/// One page of a listing.
#[derive(Clone, Debug)]
pub struct ArtifactPage {
    /// (artifact id, record), newest first.
    pub items: Vec<(String, ArtifactRecord)>,
    /// Where the next page starts (an artifact id, exclusive), if the scan
    /// stopped before the end.
    pub next_cursor: Option<String>,
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
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let id = mint_artifact_id(now.as_millis() as u64);
        let expires_at = req.expires_at.or_else(|| {
            self.cfg.retention.ttl_for(&req.experiment).map(|ttl| {
                let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
                (now.as_secs() as i64).saturating_add(secs)
            })
        });
        let depositor = Principal::parse(&req.created_by)
            .ok_or_else(|| EngineError::Internal("invalid depositor".into()))?;
        let visible = self
            .write_refs(&req.experiment, &id, &prepared, depositor)
            .await?;
        let record = ArtifactRecord {
            manifest: prepared.manifest_id,
            size: prepared.manifest.size,
            content_type: req.content_type,
            filename: req.filename,
            created_by: req.created_by,
            created_at_ns: now.as_nanos() as i64,
            blake3: prepared.manifest.blake3,
            sha256: prepared.manifest.sha256,
            grants: Vec::new(),
            expires_at,
            dedup: prepared.figures,
            digest_verified: true,
            visible_dedup: Some(visible),
        };
        let meta = self.meta.clone();
        let experiment = req.experiment.clone();
        let rec = record.clone();
        let manifest_id = prepared.manifest_id;
        let manifest = prepared.manifest;
        let hex_id = super::ingest::format_artifact_id(&id);
        // Ending a session checks it is still live under the upload lock, so
        // an abandon or expiry racing this commit wins or loses atomically.
        let _guard = match &ending {
            Some(_) => Some(self.upload_lock.lock().await),
            None => None,
        };
        let end_id = ending.map(|e| e.id);
        let artifact_hex = hex_id.clone();
        let released = blocking(move || {
            let mut b = meta.batch();
            let mut released = 0;
            if let Some(sid) = end_id {
                let mut session = meta
                    .upload(&sid)?
                    .filter(|s| s.ended.is_none())
                    .ok_or_else(|| {
                        EngineError::SessionEnded("the session ended during the commit".into())
                    })?;
                session.ended = Some(UploadEnd {
                    at_ns: now.as_nanos() as i64,
                    reason: EndReason::Committed(artifact_hex),
                });
                b.put_upload(&sid, &session);
                b.delete_upload_chunks(&sid);
                released = session_reservation(&session);
            }
            b.put_manifest(&manifest_id, &manifest);
            b.put_artifact(&experiment, &id, &rec);
            b.commit()?;
            Ok(released)
        })
        .await?;
        // The session's (or the deposit's) reservation becomes committed bytes.
        self.quotas
            .add(&req.experiment, Part::Committed, record.size);
        self.quotas.sub(&req.experiment, Part::Session, released);
        let s = &self.stats;
        Stats::add(&s.deposits, 1);
        Stats::add(&s.logical_bytes, record.size);
        Stats::add(&s.new_raw_bytes, record.dedup.new_raw_bytes);
        tracing::info!(
            experiment = %req.experiment, artifact = %hex_id, size = record.size,
            new_bytes = record.dedup.new_stored_bytes, chunks = record.dedup.chunks,
            new_chunks = record.dedup.new_chunks, created_by = %record.created_by, "artifact committed"
        );
        Ok(DepositReceipt { id: hex_id, record })
    }

    /// Writes `experiment \0 chunk artifact` refs for every chunk, one
    /// segment per batch, and measures the dedup figures the depositor may
    /// see: a chunk is new unless a readable artifact already held it or it
    /// occurred earlier in this artifact.
    async fn write_refs(
        &self,
        experiment: &str,
        id: &[u8; 16],
        prepared: &PreparedContent,
        depositor: Principal,
    ) -> Result<VisibleDedup, EngineError> {
        let meta = self.meta.clone();
        let exp = experiment.to_string();
        let mut presence = Some(Box::new(
            blocking(move || Presence::load(&meta, &exp, depositor)).await?,
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
            let (meta, exp, id, sid) = (self.meta.clone(), experiment.to_string(), *id, seg.id);
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
    pub async fn list_artifacts(
        &self,
        experiment: &str,
        caller: &Principal,
        created_by: Option<String>,
        cursor: Option<[u8; 16]>,
        limit: usize,
    ) -> Result<ArtifactPage, EngineError> {
        let limit = limit.max(1);
        let meta = self.meta.clone();
        let (exp, caller) = (experiment.to_string(), caller.clone());
        blocking(move || {
            let gate = ReadGate::load(&meta, &exp, caller)?;
            let now_s = now_unix_s();
            let mut items = Vec::new();
            let mut before = cursor;
            loop {
                let batch = meta.artifacts_newest_first(&exp, before.as_ref(), LIST_STEP)?;
                let exhausted = batch.len() < LIST_STEP;
                for (id, rec) in batch {
                    before = Some(id);
                    let wanted = created_by.as_ref().is_none_or(|c| *c == rec.created_by);
                    if !(wanted && !expired(&rec, now_s) && gate.allows(&rec)) {
                        continue;
                    }
                    if items.len() == limit {
                        // A readable item follows the page: hand out the
                        // page's last (readable) id as the cursor.
                        let next = items
                            .last()
                            .map(|(last, _): &(String, ArtifactRecord)| last.clone());
                        return Ok(ArtifactPage {
                            items,
                            next_cursor: next,
                        });
                    }
                    items.push((super::ingest::format_artifact_id(&id), rec));
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

    /// Loads an artifact for a management change: 404 if absent or expired,
    /// 403 unless `caller` is its depositor or the admin.
    async fn managed(
        &self,
        experiment: &str,
        caller: &Principal,
        id: &[u8; 16],
    ) -> Result<ArtifactRecord, EngineError> {
        let rec = self
            .artifact(experiment, id)
            .await?
            .ok_or(EngineError::NotFound)?;
        let owner = Principal::parse(&rec.created_by)
            .ok_or_else(|| EngineError::Internal("artifact has an invalid created_by".into()))?;
        if can_manage(caller, &owner) {
            Ok(rec)
        } else {
            Err(EngineError::Forbidden)
        }
    }

    /// Grants read access to `principal` (`wkr_…` or `grp_…`, need not
    /// exist); idempotent. Depositor or admin only.
    pub async fn grant(
        &self,
        experiment: &str,
        caller: &Principal,
        id: &[u8; 16],
        principal: &str,
    ) -> Result<ArtifactRecord, EngineError> {
        if MemberId::parse(principal).is_none() {
            return Err(EngineError::BadRequest(
                "principal must be a wkr_ or grp_ id".into(),
            ));
        }
        self.change_grants(experiment, caller, id, |g| {
            if !g.iter().any(|x| x == principal) {
                g.push(principal.to_string());
            }
        })
        .await
    }

    /// Revokes a grant; idempotent. Depositor or admin only.
    pub async fn revoke(
        &self,
        experiment: &str,
        caller: &Principal,
        id: &[u8; 16],
        principal: &str,
    ) -> Result<ArtifactRecord, EngineError> {
        if MemberId::parse(principal).is_none() {
            return Err(EngineError::BadRequest(
                "principal must be a wkr_ or grp_ id".into(),
            ));
        }
        self.change_grants(experiment, caller, id, |g| g.retain(|x| x != principal))
            .await
    }

    /// Sets (or clears, with `None`) when an artifact expires, in Unix
    /// seconds; a time in the past expires it at once (it stops being
    /// served; GC removes it). Depositor or admin only.
    pub async fn set_expiry(
        &self,
        experiment: &str,
        caller: &Principal,
        id: &[u8; 16],
        expires_at: Option<i64>,
    ) -> Result<ArtifactRecord, EngineError> {
        let _guard = self.artifact_lock.lock().await;
        let mut rec = self.managed(experiment, caller, id).await?;
        rec.expires_at = expires_at;
        let (meta, exp, id, r) = (self.meta.clone(), experiment.to_string(), *id, rec.clone());
        blocking(move || {
            let mut b = meta.batch();
            b.put_artifact(&exp, &id, &r);
            Ok(b.commit()?)
        })
        .await?;
        Ok(rec)
    }

    async fn change_grants(
        &self,
        experiment: &str,
        caller: &Principal,
        id: &[u8; 16],
        change: impl FnOnce(&mut Vec<String>),
    ) -> Result<ArtifactRecord, EngineError> {
        let _guard = self.artifact_lock.lock().await;
        let mut rec = self.managed(experiment, caller, id).await?;
        let before = rec.grants.clone();
        change(&mut rec.grants);
        if rec.grants != before {
            let (meta, exp, id, r) = (self.meta.clone(), experiment.to_string(), *id, rec.clone());
            blocking(move || {
                let mut b = meta.batch();
                b.put_artifact(&exp, &id, &r);
                Ok(b.commit()?)
            })
            .await?;
        }
        Ok(rec)
    }

    /// Removes an artifact record if it is (still) expired at `now_s`, then
    /// its chunk refs. Returns whether it was removed.
    pub(crate) async fn remove_expired(
        &self,
        experiment: &str,
        id: &[u8; 16],
        now_s: i64,
    ) -> Result<bool, EngineError> {
        let rec = {
            let _guard = self.artifact_lock.lock().await;
            let (meta, exp, aid) = (self.meta.clone(), experiment.to_string(), *id);
            blocking(move || {
                let Some(rec) = meta.artifact(&exp, &aid)? else {
                    return Ok(None);
                };
                if rec.expires_at.is_none_or(|t| t > now_s) {
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
        self.quotas.sub(experiment, Part::Committed, rec.size);
        self.remove_refs(experiment, id, rec.manifest).await;
        tracing::info!(experiment, artifact = %super::ingest::format_artifact_id(id), "expired artifact removed");
        Ok(true)
    }

    /// Removes the chunk refs of an artifact whose record is gone, one
    /// segment at a time. Best effort: leftover refs dangle harmlessly (a
    /// ref without its artifact record grants nothing).
    pub(crate) async fn remove_refs(&self, experiment: &str, id: &[u8; 16], manifest: Digest) {
        let (meta, exp, aid) = (self.meta.clone(), experiment.to_string(), *id);
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
            tracing::warn!(experiment, error = %e, "chunk refs of a removed artifact not removed");
        }
    }

    /// Deletes an artifact (depositor or admin): the record goes first, in
    /// one synced batch, so the id answers 404 at once on both surfaces;
    /// then its chunk refs, one segment at a time. Storage is GC's business.
    pub async fn delete_artifact(
        &self,
        experiment: &str,
        caller: &Principal,
        id: &[u8; 16],
    ) -> Result<(), EngineError> {
        let rec = {
            let _guard = self.artifact_lock.lock().await;
            let rec = self.managed(experiment, caller, id).await?;
            let (meta, exp, aid) = (self.meta.clone(), experiment.to_string(), *id);
            blocking(move || {
                let mut b = meta.batch();
                b.delete_artifact(&exp, &aid);
                Ok(b.commit()?)
            })
            .await?;
            self.quotas.sub(experiment, Part::Committed, rec.size);
            rec
        };
        self.remove_refs(experiment, id, rec.manifest).await;
        tracing::info!(experiment, artifact = %super::ingest::format_artifact_id(id), by = %caller, "artifact deleted");
        Ok(())
    }
}
