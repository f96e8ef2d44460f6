//! The audit log: an append-only record of who did what (deposit, read,
//! grant, revoke, expiry, delete, worker and group changes), kept in the
//! blob store so that losing the metadata directory does not lose it.
//!
//! One mechanism: the engine's entry points call [`Engine::audit`] after
//! their change is durable (or, for reads, when bytes start to be served).
//! The [`Recorder`] stamps the event with this run's id, the next sequence
//! number and the time, and appends it to an in-memory batch — a mutex and
//! a push, no I/O, so fetches are not slowed down. The batch is cut into a
//! *segment* (`event.rs` format, JSON lines) and written as one
//! create-only object (`blobs::keys::audit_segment`) every
//! `audit-flush-events` events, every `audit-flush-interval`, before an
//! export over HTTP, and at graceful shutdown.
//!
//! Guarantees:
//! - **append-only**: a segment is written once under a fresh key and never
//!   changed; GC deletes whole segments older than `audit-retention`;
//! - **ordered**: segments are written one at a time, in sequence order; a
//!   segment that failed to write is retried, byte for byte under the same
//!   key, before any later one, so the keys' order is the log's order;
//! - **crash**: a killed process loses at most the events not yet written
//!   (the open batch and a segment whose write failed) — a tail of its
//!   run, never a middle part;
//! - **bounded memory**: at most [`MAX_BUFFERED_EVENTS`] events wait in
//!   the batch, and one segment beside it; past
//!   that (the blob store refusing writes for a long time) events are
//!   dropped and counted, and their sequence numbers stay unused, so the
//!   gap shows in the export.

mod event;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, stream};
use ulid::Ulid;

pub use event::{
    AuditEvent, AuditFilter, AuditKind, GC_PRINCIPAL, decode_segment, encode_segment, parse_since,
};

use super::{Engine, EngineError};
use crate::blobs::{BlobStore, PutOutcome, keys};
use crate::clock::Timestamp;

/// Events held in memory at most; later ones are dropped (and counted).
pub const MAX_BUFFERED_EVENTS: usize = 1 << 20;
/// Default of `audit-flush-events`.
pub const DEFAULT_FLUSH_EVENTS: usize = 1000;
/// Default of `audit-flush-interval`.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// Audit tunables (`audit-*` settings).
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// Segments whose newest event is older than this are deleted by GC;
    /// `None` keeps them forever.
    pub retention: Option<Duration>,
    /// A batch this large is written at once.
    pub flush_events: usize,
    /// A non-empty batch is written at least this often (by the flusher
    /// task `serve` runs).
    pub flush_interval: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention: Some(Duration::from_secs(400 * 86_400)),
            flush_events: DEFAULT_FLUSH_EVENTS,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
        }
    }
}

/// Counters of the recorder (for tests, logs and metrics).
#[derive(Debug, Default)]
pub struct AuditCounts {
    /// Events recorded (sequence numbers handed out).
    pub recorded: AtomicU64,
    /// Events written in segments.
    pub written: AtomicU64,
    /// Segments written.
    pub segments: AtomicU64,
    /// Events dropped because the buffer was full.
    pub dropped: AtomicU64,
}

/// A cut segment waiting to be written.
struct Segment {
    key: String,
    bytes: Bytes,
    events: u64,
}

#[derive(Default)]
struct Batch {
    next_seq: u64,
    events: Vec<AuditEvent>,
}

/// The in-memory side of the log (see the module docs).
pub(crate) struct Recorder {
    run: Ulid,
    run_text: String,
    cfg: AuditConfig,
    /// Events held at most ([`MAX_BUFFERED_EVENTS`]).
    capacity: usize,
    batch: std::sync::Mutex<Batch>,
    /// A cut segment not yet written (at most one, see `flush`); its lock
    /// also makes flushes one at a time.
    pending: tokio::sync::Mutex<std::collections::VecDeque<Segment>>,
    wake: tokio::sync::Notify,
    counts: AuditCounts,
}

impl Recorder {
    /// A recorder for a new run.
    pub(crate) fn new(cfg: AuditConfig) -> Self {
        let run = Ulid::new();
        Recorder {
            run,
            run_text: run.to_string().to_ascii_lowercase(),
            cfg,
            capacity: MAX_BUFFERED_EVENTS,
            batch: std::sync::Mutex::new(Batch {
                next_seq: 1,
                events: Vec::new(),
            }),
            pending: tokio::sync::Mutex::new(std::collections::VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            counts: AuditCounts::default(),
        }
    }

    /// Stamps and buffers `e`; wakes the flusher when the batch is full.
    fn record(&self, mut e: AuditEvent) {
        e.run.clone_from(&self.run_text);
        let full = {
            let mut b = self.batch.lock().unwrap_or_else(|p| p.into_inner());
            e.seq = b.next_seq;
            b.next_seq += 1;
            // The time is read under the lock: sequence order is time order.
            e.time = Timestamp::now();
            AuditCounts::bump(&self.counts.recorded);
            if b.events.len() >= self.capacity {
                let n = self.counts.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::error!(
                        dropped = n,
                        "audit events dropped: the blob store has refused audit segments for too long"
                    );
                }
                return;
            }
            b.events.push(e);
            b.events.len() >= self.cfg.flush_events
        };
        if full {
            self.wake.notify_one();
        }
    }

    /// Cuts the open batch into a segment (if it holds events).
    fn cut(&self) -> Option<Segment> {
        let events = {
            let mut b = self.batch.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut b.events)
        };
        let first = events.first()?.seq;
        let cut_ms = Timestamp::now().unix_millis();
        Some(Segment {
            key: keys::audit_segment(self.run, first, cut_ms),
            bytes: Bytes::from(encode_segment(&events)),
            events: events.len() as u64,
        })
    }

    /// Writes the pending segment (one whose write failed), then the open
    /// batch, in order. The batch is cut only once nothing is pending, so
    /// while the blob store refuses writes at most one segment waits beside
    /// the (capped) batch.
    async fn flush(&self, blobs: &BlobStore) -> Result<u64, EngineError> {
        let mut pending = self.pending.lock().await;
        let mut written = 0;
        let mut cut = false;
        loop {
            if pending.is_empty() && !cut {
                cut = true;
                if let Some(s) = self.cut() {
                    pending.push_back(s);
                }
            }
            let Some(s) = pending.front_mut() else {
                break;
            };
            // A retried segment keeps its key and bytes: already present
            // with these bytes means an earlier, seemingly failed, attempt
            // got through. Other bytes (a write cut short, on a backend
            // that leaves partial objects) are left as they are and the
            // segment goes under the next free key of the same sequence
            // number; export skips the events it has already seen.
            while blobs.put_new(&s.key, s.bytes.clone()).await? == PutOutcome::AlreadyPresent {
                if blobs.read(&s.key).await? == s.bytes {
                    break;
                }
                let (run, first, cut_ms) = keys::parse_audit_segment(&s.key)
                    .ok_or_else(|| EngineError::Internal("audit key does not parse".into()))?;
                tracing::warn!(key = %s.key, "a partial audit segment is in the way; writing the segment again under a new key");
                s.key = keys::audit_segment(run, first, cut_ms + 1);
            }
            written += s.events;
            AuditCounts::bump(&self.counts.segments);
            self.counts.written.fetch_add(s.events, Ordering::Relaxed);
            pending.pop_front();
        }
        Ok(written)
    }
}

impl AuditCounts {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Keys of the segments under `audit/` that may hold events `filter`
/// keeps, in log order.
///
/// # Errors
/// The blob store's listing failure.
pub async fn segment_keys(
    blobs: &BlobStore,
    filter: &AuditFilter,
) -> Result<Vec<String>, EngineError> {
    let mut keys: Vec<String> = blobs
        .list(keys::AUDIT)
        .await?
        .into_iter()
        .filter_map(|(k, _)| {
            let (_, _, cut) = keys::parse_audit_segment(&k)?;
            filter.may_keep_segment(cut).then_some(k)
        })
        .collect();
    keys.sort();
    Ok(keys)
}

/// The events of one segment that `filter` keeps, as JSON lines. `seen`
/// holds the highest sequence number exported per run: an event at or
/// below it (a segment written twice, see [`Recorder`]'s flush) is skipped.
/// A last line without its newline is a write cut short and is skipped.
///
/// # Errors
/// The blob store's read failure; [`EngineError::Integrity`] when a
/// complete line of the segment does not parse.
pub async fn export_segment(
    blobs: &BlobStore,
    key: &str,
    filter: &AuditFilter,
    seen: &mut HashMap<String, u64>,
) -> Result<Bytes, EngineError> {
    let mut bytes = blobs.read(key).await?;
    if let Some(end) = bytes.iter().rposition(|b| *b == b'\n') {
        bytes.truncate(end + 1);
    } else {
        bytes.clear();
    }
    let events = decode_segment(&bytes).map_err(|(line, why)| {
        EngineError::inconsistent(format!("audit segment {key}, line {line}: {why}"))
    })?;
    let mut kept = Vec::with_capacity(events.len());
    for e in events {
        let last = seen.entry(e.run.clone()).or_insert(0);
        if e.seq <= *last {
            continue;
        }
        *last = e.seq;
        if filter.keeps(&e) {
            kept.push(e);
        }
    }
    Ok(Bytes::from(encode_segment(&kept)))
}

/// The log as JSON lines, one segment read at a time (memory: one
/// segment), over `keys` from [`segment_keys`].
pub fn export_stream(
    blobs: BlobStore,
    keys: Vec<String>,
    filter: AuditFilter,
) -> impl Stream<Item = Result<Bytes, EngineError>> + Send + 'static {
    let state = (blobs, keys.into_iter(), filter, HashMap::new(), false);
    stream::unfold(
        state,
        |(blobs, mut keys, filter, mut seen, failed)| async move {
            if failed {
                return None;
            }
            let key = keys.next()?;
            let item = export_segment(&blobs, &key, &filter, &mut seen).await;
            let failed = item.is_err();
            Some((item, (blobs, keys, filter, seen, failed)))
        },
    )
}

impl Engine {
    /// Records an audit event (no I/O; see the module docs).
    pub(crate) fn audit(&self, e: AuditEvent) {
        self.audit.record(e);
    }

    /// This run's id, as events carry it.
    pub fn audit_run(&self) -> &str {
        &self.audit.run_text
    }

    /// The recorder's counters.
    pub fn audit_counts(&self) -> &AuditCounts {
        &self.audit.counts
    }

    /// Writes every buffered event to the blob store now; returns how many
    /// were written.
    ///
    /// # Errors
    /// The blob store's write failure (the events stay buffered and are
    /// retried, in order, by the next flush).
    pub async fn audit_flush(&self) -> Result<u64, EngineError> {
        self.audit.flush(&self.blobs).await
    }

    /// Flushes every `audit-flush-interval`, and whenever a batch fills,
    /// until the engine is dropped.
    pub fn spawn_audit_flusher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        // The task holds the recorder, not the engine, so dropping the
        // engine ends it.
        let engine = Arc::downgrade(self);
        let recorder = Arc::clone(&self.audit);
        let blobs = self.blobs.clone();
        let every = recorder.cfg.flush_interval.max(Duration::from_millis(10));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = recorder.wake.notified() => {}
                    () = tokio::time::sleep(every) => {}
                }
                if engine.strong_count() == 0 {
                    break;
                }
                if let Err(err) = recorder.flush(&blobs).await {
                    tracing::warn!(error = %err, "audit segment not written; will retry");
                }
            }
        })
    }

    /// Segment keys of the log that `filter` may keep, in order.
    ///
    /// # Errors
    /// As [`segment_keys`].
    pub async fn audit_segment_keys(
        &self,
        filter: &AuditFilter,
    ) -> Result<Vec<String>, EngineError> {
        segment_keys(&self.blobs, filter).await
    }

    /// The log as JSON lines over `keys` (see [`export_stream`]).
    pub fn audit_export(
        &self,
        keys: Vec<String>,
        filter: AuditFilter,
    ) -> impl Stream<Item = Result<Bytes, EngineError>> + Send + 'static {
        export_stream(self.blobs.clone(), keys, filter)
    }

    /// Deletes the segments cut before `now - audit-retention` (whole
    /// segments: every event in one is older than its cut time); returns
    /// how many. GC calls it under the writer lease.
    ///
    /// # Errors
    /// The blob store's listing or delete failure.
    pub async fn audit_prune(&self, now: Timestamp) -> Result<u64, EngineError> {
        let Some(keep) = self.audit.cfg.retention else {
            return Ok(0);
        };
        let horizon = now.unix_millis().saturating_sub(keep.as_millis() as u64);
        let mut deleted = 0;
        for (key, _) in self.blobs.list(keys::AUDIT).await? {
            let Some((_, _, cut)) = keys::parse_audit_segment(&key) else {
                continue;
            };
            if cut < horizon {
                self.blobs.delete(&key).await?;
                deleted += 1;
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, "audit segments past retention deleted");
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(n: u64) -> AuditEvent {
        let mut e = AuditEvent::new(AuditKind::RegisterWorker, "admin", "exp_01");
        e.name = Some(format!("w{n}"));
        e
    }

    #[test]
    fn a_full_buffer_drops_events_and_the_gap_shows_in_the_sequence() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let blobs = BlobStore::memory().unwrap();
        let mut r = Recorder::new(AuditConfig::default());
        r.capacity = 3;
        for n in 0..5 {
            r.record(registered(n));
        }
        assert_eq!(r.counts.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(rt.block_on(r.flush(&blobs)).unwrap(), 3);
        r.record(registered(5));
        assert_eq!(rt.block_on(r.flush(&blobs)).unwrap(), 1);
        let keys = rt
            .block_on(segment_keys(&blobs, &AuditFilter::default()))
            .unwrap();
        let mut text = Vec::new();
        rt.block_on(async {
            let mut s = std::pin::pin!(export_stream(blobs.clone(), keys, AuditFilter::default()));
            while let Some(part) = futures_util::StreamExt::next(&mut s).await {
                text.extend_from_slice(&part.unwrap());
            }
        });
        let seqs: Vec<u64> = decode_segment(&text)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3, 6], "4 and 5 were dropped, and it shows");
    }

    #[test]
    fn a_full_batch_wakes_the_flusher() {
        let r = Recorder::new(AuditConfig {
            flush_events: 2,
            ..AuditConfig::default()
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        r.record(registered(0));
        let woken = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(50), r.wake.notified()).await
        });
        assert!(woken.is_err(), "one event of two: no wake-up");
        r.record(registered(1));
        let woken = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), r.wake.notified()).await
        });
        assert!(woken.is_ok(), "a full batch wakes the flusher");
    }
}
