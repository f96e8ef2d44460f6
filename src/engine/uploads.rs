//! Resumable upload sessions: create, "which chunks are missing", framed
//! chunk batches, commit with whole-content verification, status, abandon,
//! and expiry after an idle time.
//!
//! State lives in RocksDB (`uploads-v1`, `upload-chunks-v1`), so sessions
//! survive restarts. A session belongs to one experiment and its creator;
//! anyone else (but the admin) gets `NotFound`. An ended session stays as a
//! tombstone answering `SessionEnded` until the reaper drops it.
//!
//! Invariants kept here:
//! - 3: a received chunk's pack is durable and indexed (`PackSink`) before
//!   the session row naming it is written; the artifact commit goes through
//!   `Engine::commit_prepared` like every other deposit.
//! - 4: "missing" and `stored_new` are answered for the session's creator by
//!   [`Presence`]: a chunk is present only if this session received it or a
//!   readable artifact of this experiment holds it. Storage dedup stays global
//!   and silent.
//! - 6: every frame is BLAKE3-checked against its id before it is stored;
//!   the commit reads the content back through the verified decoder.
//! - 7: session rows are the pins of chunks uploaded but not yet committed;
//!   they are removed in the same batch that ends the session.
//! - 8: a batch holds at most one frame batch and one pack part in memory.

mod batch;
mod commit;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

pub use batch::{ChunkBatch, ChunkBatchOutcome};
pub use commit::{CommitCheck, CommitTrailer};

use super::artifacts::Presence;
use super::quota::{Part, session_reservation};
use super::{Engine, EngineError, blocking};
use crate::auth::{ExperimentId, Principal};
use crate::clock::Timestamp;
use crate::hash::Digest;
use crate::ids::SessionId;
use crate::meta::records::{EndReason, ManifestEntry, UploadEnd, UploadRecord};

/// Default `upload-idle-timeout`.
pub const DEFAULT_UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Most chunk ids one "missing" query may carry.
pub const MAX_MISSING_QUERY: usize = 10_000;
/// Most frames one chunk batch may carry (bounds the rows it pins at once).
pub const MAX_FRAMES_PER_BATCH: usize = 16_384;
/// Frame header: 32-byte id + u32 LE length.
pub const FRAME_HEADER_LEN: usize = 36;
/// Most chunk ids a session status lists per page.
pub const MAX_STATUS_IDS: usize = 10_000;
/// Commit entries are checked in groups of this many.
const COMMIT_STEP: usize = 4096;
/// At most this many missing ids are named in a `ChunksMissing` error.
const MISSING_NAMED: usize = 16;

/// What a new session records for its artifact.
#[derive(Clone, Debug, Default)]
pub struct SessionRequest {
    /// Sanitised content type.
    pub content_type: String,
    /// Filename, if any.
    pub filename: Option<String>,
    /// Artifact lifetime after commit.
    pub artifact_ttl: Option<Duration>,
    /// The artifact size the client claims (bytes), if it says.
    pub claimed_size: Option<u64>,
}

/// A live session as the API shows it.
#[derive(Clone, Debug)]
pub struct SessionView {
    /// The session id.
    pub id: SessionId,
    /// The stored record.
    pub record: UploadRecord,
    /// When it expires if left idle.
    pub expires_at: Timestamp,
    /// Largest chunk batch body accepted, in bytes.
    pub max_batch_bytes: u64,
    /// Most bytes the session may receive: its claimed size, else the cap.
    pub max_bytes: u64,
}

/// A session with what it received so far.
#[derive(Clone, Debug)]
pub struct SessionStatus {
    /// The session.
    pub view: SessionView,
    /// Chunks received.
    pub received_chunks: u64,
    /// Raw bytes of those chunks.
    pub received_bytes: u64,
    /// One page of received chunk ids, in id order.
    pub received: Vec<Digest>,
    /// The last id of this page, if more follow.
    pub next: Option<Digest>,
}

/// A commit: the content as an ordered chunk list plus its claimed BLAKE3.
#[derive(Clone, Debug)]
pub struct CommitRequest {
    /// Chunks in content order with their raw lengths.
    pub chunks: Vec<ManifestEntry>,
    /// The BLAKE3 the client computed over the whole content.
    pub blake3: Digest,
    /// Content type overriding the session's (sanitised).
    pub content_type: Option<String>,
    /// Filename overriding the session's.
    pub filename: Option<String>,
}

/// Parses a session id (32 lowercase hex characters); [`SessionId::parse`].
pub fn parse_session_id(s: &str) -> Option<SessionId> {
    SessionId::parse(s)
}

fn end_reason_text(reason: &EndReason) -> String {
    match reason {
        EndReason::Committed(a) => format!("the upload session was committed as artifact {a}"),
        EndReason::Abandoned => "the upload session was abandoned".into(),
        EndReason::Expired => "the upload session expired without activity".into(),
    }
}

/// Ends a session in `b`: tombstone plus removal of its pins. Returns
/// the quota it held, to release once `b` is committed.
fn end_in_batch(
    b: &mut crate::meta::Batch<'_>,
    id: &SessionId,
    rec: &mut UploadRecord,
    reason: EndReason,
    at: Timestamp,
) -> u64 {
    rec.ended = Some(UploadEnd { at, reason });
    b.put_upload(id, rec);
    b.delete_upload_chunks(id);
    session_reservation(rec)
}

impl Engine {
    /// Largest chunk batch body accepted: the pack target (one batch makes
    /// at most about one pack), at most 64 MiB, at least one largest frame.
    pub fn max_batch_bytes(&self) -> u64 {
        let frame = FRAME_HEADER_LEN as u64 + u64::from(self.cfg.chunker.max_bytes);
        self.cfg.pack_target_bytes.min(64 << 20).max(frame)
    }

    /// The most bytes a session may receive: its claim, at most the cap.
    pub(crate) fn session_allowance(&self, rec: &UploadRecord) -> u64 {
        let cap = self.cfg.max_artifact_bytes;
        rec.claimed_size.map_or(cap, |c| c.min(cap))
    }

    fn view(&self, id: &SessionId, record: UploadRecord) -> SessionView {
        SessionView {
            id: *id,
            expires_at: record.last_active.plus(self.upload_idle_timeout()),
            max_batch_bytes: self.max_batch_bytes(),
            max_bytes: self.session_allowance(&record),
            record,
        }
    }

    fn session_lock(&self, id: &SessionId) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.session_locks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = map.get(id).and_then(std::sync::Weak::upgrade) {
            return l;
        }
        if map.len() >= 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let l = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(*id, Arc::downgrade(&l));
        l
    }

    /// Opens a session for `caller`: scope check (else `NotFound`), ended or
    /// idle too long (else `SessionEnded`, expiring it now), then stamps the
    /// activity when `touch`. Runs under the upload lock.
    async fn open_session(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        id: &SessionId,
        touch: bool,
    ) -> Result<UploadRecord, EngineError> {
        let _guard = self.meta.lock(crate::meta::lock::LockKind::Uploads).await?;
        let (meta, caller, id) = (self.meta.clone(), *caller, *id);
        let idle = self.upload_idle_timeout();
        let quotas = Arc::clone(&self.quotas);
        blocking(move || {
            let mut rec = meta.upload(&id)?.ok_or(EngineError::NotFound)?;
            if rec.experiment != experiment || !(caller.is_admin() || caller == rec.created_by) {
                return Err(EngineError::NotFound);
            }
            if let Some(end) = &rec.ended {
                return Err(EngineError::SessionEnded(end_reason_text(&end.reason)));
            }
            let now = Timestamp::now();
            if now.since(rec.last_active) > idle {
                let mut b = meta.batch();
                let held = end_in_batch(&mut b, &id, &mut rec, EndReason::Expired, now);
                b.commit()?;
                quotas.sub(&rec.experiment, Part::Session, held);
                return Err(EngineError::SessionEnded(end_reason_text(
                    &EndReason::Expired,
                )));
            }
            if touch {
                rec.last_active = now;
                meta.touch_upload(&id, &rec)?;
            }
            Ok(rec)
        })
        .await
    }

    /// Starts an upload session for `caller` in `experiment`.
    ///
    /// # Errors
    /// [`EngineError::TooLarge`] when the claimed size exceeds the artifact
    /// size cap; [`EngineError::QuotaExceeded`] when the experiment cannot
    /// reserve it; [`EngineError::Meta`] when the metadata store fails.
    pub async fn create_upload(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        req: SessionRequest,
    ) -> Result<SessionView, EngineError> {
        let limit = self.cfg.max_artifact_bytes;
        if req.claimed_size.is_some_and(|n| n > limit) {
            return Err(EngineError::TooLarge { limit });
        }
        // Reserved before the session exists: two creations cannot both
        // pass the check and together exceed the quota.
        let claimed = req.claimed_size.unwrap_or(0);
        self.quotas.try_add(&experiment, Part::Session, claimed)?;
        let now = Timestamp::now();
        let id = SessionId::mint(now);
        let record = UploadRecord {
            experiment,
            created_by: *caller,
            created_at: now,
            last_active: now,
            chunker: self.cfg.chunker,
            content_type: req.content_type,
            filename: req.filename,
            artifact_ttl_s: req.artifact_ttl.map(|d| d.as_secs()),
            ended: None,
            claimed_size: req.claimed_size,
            received_bytes: 0,
        };
        let (meta, rec) = (self.meta.clone(), record.clone());
        let written = blocking(move || {
            let mut b = meta.batch();
            b.put_upload(&id, &rec);
            Ok(b.commit()?)
        })
        .await;
        if let Err(e) = written {
            self.quotas.sub(&experiment, Part::Session, claimed);
            return Err(e);
        }
        tracing::info!(%experiment, session = %id, by = %caller, "upload session created");
        Ok(self.view(&id, record))
    }

    /// Of `chunks`, those not present for the session's creator, in request
    /// order: present means received by this session or held by a readable
    /// artifact of this experiment (invariant 4).
    ///
    /// # Errors
    /// [`EngineError::BadRequest`] for more than `MAX_MISSING_QUERY` ids;
    /// [`EngineError::NotFound`] when the session does not exist, is in another
    /// experiment or belongs to another worker (the admin may use any);
    /// [`EngineError::SessionEnded`] when it ended or has been idle too long;
    /// [`EngineError::Meta`] when the metadata store fails.
    pub async fn upload_missing(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        id: &SessionId,
        chunks: Vec<Digest>,
    ) -> Result<Vec<Digest>, EngineError> {
        if chunks.len() > MAX_MISSING_QUERY {
            return Err(EngineError::BadRequest(format!(
                "at most {MAX_MISSING_QUERY} chunk ids per query"
            )));
        }
        let rec = self.open_session(experiment, caller, id, true).await?;
        let (meta, id) = (self.meta.clone(), *id);
        blocking(move || {
            let mut presence = Presence::load(&meta, rec.experiment, rec.created_by)?;
            let rows = meta.upload_chunks(&id, &chunks)?;
            let locs = meta.chunks(&chunks)?;
            let mut missing = Vec::new();
            for ((c, row), loc) in chunks.iter().zip(rows).zip(locs) {
                // Present for the creator, and stored in a copy that is not
                // marked bad (else the client must re-send it: self-healing).
                // The index is consulted only for chunks the creator may
                // see, so the answer reveals nothing else (invariant 4).
                let visible = row.is_some() || presence.readable(c)?;
                if !visible || !loc.is_some_and(|l| l.usable()) {
                    missing.push(*c);
                }
            }
            Ok(missing)
        })
        .await
    }

    /// The session and what it received: counts over all rows, ids in pages
    /// of at most `limit` after `after`.
    ///
    /// # Errors
    /// [`EngineError::NotFound`] when the session does not exist, is in
    /// another experiment or belongs to another worker (the admin may use any);
    /// [`EngineError::SessionEnded`] when it ended or has been idle too long;
    /// [`EngineError::Meta`] when the metadata store fails.
    pub async fn upload_status(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        id: &SessionId,
        after: Option<Digest>,
        limit: usize,
    ) -> Result<SessionStatus, EngineError> {
        let rec = self.open_session(experiment, caller, id, true).await?;
        let limit = limit.clamp(1, MAX_STATUS_IDS);
        let (meta, sid) = (self.meta.clone(), *id);
        let (count, bytes, page, more) = blocking(move || {
            let (mut count, mut bytes, mut page, mut more) = (0u64, 0u64, Vec::new(), false);
            meta.scan_upload_chunks(&sid, None, |c, row| {
                count += 1;
                bytes += u64::from(row.raw_len);
                if after.is_none_or(|a| c > a) {
                    if page.len() < limit {
                        page.push(c);
                    } else {
                        more = true;
                    }
                }
                true
            })?;
            Ok((count, bytes, page, more))
        })
        .await?;
        Ok(SessionStatus {
            view: self.view(id, rec),
            received_chunks: count,
            received_bytes: bytes,
            next: if more { page.last().copied() } else { None },
            received: page,
        })
    }

    /// Abandons a session, releasing its pins. Waits for a commit in flight.
    ///
    /// # Errors
    /// As [`Engine::upload_status`] (a session that ended, abandoned or
    /// committed meanwhile, is [`EngineError::SessionEnded`]).
    pub async fn abandon_upload(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        id: &SessionId,
    ) -> Result<(), EngineError> {
        let lock = self.session_lock(id);
        let _commit = lock.lock().await;
        let mut rec = self.open_session(experiment, caller, id, false).await?;
        let _guard = self.meta.lock(crate::meta::lock::LockKind::Uploads).await?;
        let (meta, sid) = (self.meta.clone(), *id);
        blocking(move || {
            // Re-read under the lock: the session may have ended meanwhile.
            if meta.upload(&sid)?.is_none_or(|r| r.ended.is_some()) {
                return Err(EngineError::SessionEnded(
                    "the upload session already ended".into(),
                ));
            }
            let mut b = meta.batch();
            let held = end_in_batch(
                &mut b,
                &sid,
                &mut rec,
                EndReason::Abandoned,
                Timestamp::now(),
            );
            b.commit()?;
            Ok((rec.experiment, held))
        })
        .await
        .map(|(exp, held)| self.quotas.sub(&exp, Part::Session, held))
    }

    /// Ends sessions idle for longer than the idle timeout at `now` (their
    /// pins are released) and drops tombstones older than the idle timeout.
    /// Sessions with a commit in flight are skipped. Returns how many
    /// sessions expired.
    ///
    /// # Errors
    /// [`EngineError::Meta`] when the metadata store fails (nothing is
    /// expired then).
    pub async fn expire_sessions(&self, now: impl Into<Timestamp>) -> Result<u64, EngineError> {
        let now = now.into();
        let idle = self.upload_idle_timeout();
        let busy: HashSet<SessionId> = {
            let map = self.session_locks.lock().unwrap_or_else(|e| e.into_inner());
            map.iter()
                .filter(|(_, w)| w.upgrade().is_some_and(|l| l.try_lock().is_err()))
                .map(|(id, _)| *id)
                .collect()
        };
        let _guard = self.meta.lock(crate::meta::lock::LockKind::Uploads).await?;
        let (meta, quotas) = (self.meta.clone(), Arc::clone(&self.quotas));
        blocking(move || {
            let mut expired = 0;
            let mut released = Vec::new();
            let mut b = meta.batch();
            for (id, mut rec) in meta.uploads()? {
                match &rec.ended {
                    Some(end) if now.since(end.at) > idle => b.delete_upload(&id),
                    Some(_) => {}
                    None if busy.contains(&id) => {}
                    None if now.since(rec.last_active) > idle => {
                        let held = end_in_batch(&mut b, &id, &mut rec, EndReason::Expired, now);
                        released.push((rec.experiment, held));
                        expired += 1;
                    }
                    None => {}
                }
            }
            b.commit()?;
            for (exp, held) in released {
                quotas.sub(&exp, Part::Session, held);
            }
            if expired > 0 {
                tracing::info!(expired, "upload sessions expired");
            }
            Ok(expired)
        })
        .await
    }

    /// Runs [`Engine::expire_sessions`] every `every` until the engine is
    /// dropped. The server wiring calls this once at startup.
    pub fn spawn_session_reaper(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(engine) = engine.upgrade() else {
                    break;
                };
                if let Err(e) = engine.expire_sessions(Timestamp::now()).await {
                    tracing::warn!(error = %e, "upload session reaper failed");
                }
            }
        })
    }
}
