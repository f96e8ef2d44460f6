//! The writer lease: one exclusive lease object in the blob store, so that
//! two processes with separate metadata never write (and, worse, collect
//! garbage in) the same blob store. Until metadata can be shared between
//! nodes, a second writer is refused with the holder named.
//!
//! Protocol (all keys under `_eden_cas_lease/`):
//!
//! - The lease is a sequence of **generations**, `_eden_cas_lease/<G>.json`
//!   with `G` a zero-padded decimal. The current lease is the highest
//!   generation present. Its JSON names the holder (host, pid, data dir,
//!   command, start time), a random nonce, the last renewal and the expiry
//!   (wall clock, Unix ms), and whether it was released.
//! - **Acquire**: list the generations; if the highest one is live (not
//!   released, not expired), refuse with its holder. Otherwise write
//!   generation `G+1` **create-only** (`If-None-Match: *`, `O_EXCL` on fs).
//!   Of two processes taking over the same expired lease, exactly one
//!   creates `G+1`; the other sees it and is refused. Lower generations are
//!   then deleted (best effort).
//! - A live lease is also taken over when its holder ran on this host with
//!   this data directory: the caller opens the data directory's metadata
//!   (whose lock admits one process) before acquiring, so that holder is
//!   gone (a restart after a crash needs no wait).
//! - A highest generation that **does not parse** (on fs, a process killed
//!   between creating the object and writing it, or mid-renewal, leaves it
//!   empty or torn) is taken over like a dead lease only when it was created
//!   from this data directory (an intent file there names it, written before
//!   the create) or was last modified a lease duration ago; otherwise it is
//!   refused, since another live process may be writing it (`lease/broken.rs`).
//! - **Heartbeat**: every `heartbeat`, the holder checks that no higher
//!   generation exists and that its own object still carries its nonce, then
//!   rewrites it with a new expiry (`now + duration`).
//! - **Self-fencing**: the holder counts itself valid only until
//!   `duration - heartbeat` after the start of its last successful renewal
//!   (a monotonic clock), so it stops before any taker may start even with
//!   clocks a heartbeat apart. A failed or late renewal past that point, a
//!   higher generation or a foreign nonce means the lease is **lost**: the
//!   holder must stop writing (`serve` stops; GC checks [`Lease::check`]
//!   before each destructive phase).
//! - **Release** (clean shutdown): the holder, if it still holds the lease,
//!   rewrites its object as released; the next process takes it at once.
//!
//! Safety rests on create-only writes, which every supported backend
//! enforces (`check-config` reports it); on a service that silently ignores
//! `If-None-Match`, two takers racing for one expired lease could both win.

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{BlobError, BlobStore, PutOutcome, map_err};
use crate::clock::Timestamp;

mod broken;

pub use broken::INTENT_FILE;

/// Prefix of the lease generations.
pub const LEASE_PREFIX: &str = "_eden_cas_lease/";

/// Default lease duration.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(60);
/// Default heartbeat period.
pub const DEFAULT_LEASE_HEARTBEAT: Duration = Duration::from_secs(10);

/// Lease timing (`lease-duration`, `lease-heartbeat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// How long a lease stays valid after its last renewal.
    pub duration: Duration,
    /// How often the holder renews it; less than half the duration.
    pub heartbeat: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            duration: DEFAULT_LEASE_DURATION,
            heartbeat: DEFAULT_LEASE_HEARTBEAT,
        }
    }
}

/// Who holds (or asks for) the lease.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// The holder's data directory (absolute when it exists).
    pub data_dir: String,
    /// `serve`, `gc`, `reindex`, …
    pub command: String,
    /// When the holder process started (RFC 3339).
    pub started_at: String,
}

impl Holder {
    /// This process, running `command` over `data_dir`.
    pub fn this_process(command: &str, data_dir: &Path) -> Holder {
        let data_dir = data_dir
            .canonicalize()
            .unwrap_or_else(|_| data_dir.to_path_buf());
        Holder {
            host: hostname(),
            pid: std::process::id(),
            data_dir: data_dir.display().to_string(),
            command: command.to_string(),
            started_at: humantime::format_rfc3339_seconds(Timestamp::now().into()).to_string(),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// The JSON of one lease generation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Format version (1).
    pub version: u32,
    /// The generation (also in the key).
    pub generation: u64,
    /// The holder.
    pub holder: Holder,
    /// Random; proves that an object is still the holder's own.
    pub nonce: String,
    /// Last renewal, Unix ms.
    pub renewed_at_ms: u64,
    /// Expiry, Unix ms: free after this unless renewed.
    pub expires_at_ms: u64,
    /// Released on a clean shutdown: free at once.
    pub released: bool,
}

impl LeaseRecord {
    fn is_live(&self, now_ms: u64) -> bool {
        !self.released && self.expires_at_ms > now_ms
    }
}

/// Why a lease could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another process holds the lease.
    #[error(
        "the blob store {store} is in use by another eden-cas: `{}` on host {}, pid {}, data \
         directory {}, started {} (lease generation {}, expires in {}s unless renewed). Two \
         processes with separate metadata on one blob store lose data (one's GC deletes the \
         other's packs): stop that process, or point this one at a blob store of its own. If that \
         process is gone, its lease expires by itself; see docs/operations/lifecycle.md",
        .record.holder.command, .record.holder.host, .record.holder.pid,
        .record.holder.data_dir, .record.holder.started_at, .record.generation, .expires_in_s
    )]
    Held {
        /// The store, safe to print.
        store: String,
        /// The current lease.
        record: Box<LeaseRecord>,
        /// Seconds until it expires.
        expires_in_s: u64,
    },
    /// The lease was taken over, expired or could not be renewed in time.
    #[error("the blob store lease was lost: {0}")]
    Lost(String),
    /// A lease object does not parse, and may still be being written (it
    /// is taken over once it is a lease duration old).
    #[error(
        "lease object {key} in {store} is unreadable ({detail}) and was not written from this \
         data directory: another eden-cas may be writing it. It is taken over once it is a \
         lease duration old; if no eden-cas uses this blob store, delete that object"
    )]
    Unreadable {
        /// The store.
        store: String,
        /// The key.
        key: String,
        /// Parser message.
        detail: String,
    },
    /// The blob store failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// A held lease.
pub struct Lease {
    store: BlobStore,
    settings: LeaseSettings,
    key: String,
    record: Mutex<LeaseRecord>,
    /// Monotonic end of validity (self-fencing).
    valid_until: Mutex<Instant>,
    lost: AtomicBool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lease({})", self.key)
    }
}

/// Unix milliseconds now, from the one clock (the lease record's unit).
fn now_ms() -> u64 {
    Timestamp::now().unix_millis()
}

fn key_of(generation: u64) -> String {
    format!("{LEASE_PREFIX}{generation:020}.json")
}

fn generation_of(key: &str) -> Option<u64> {
    key.strip_prefix(LEASE_PREFIX)?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

fn nonce() -> String {
    let mut b = [0u8; 16];
    crate::auth::fill_random(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl BlobStore {
    /// Writes `bytes` at `key`, replacing what is there (lease renewals only:
    /// everything else is create-only).
    async fn overwrite(&self, key: &str, bytes: Bytes) -> Result<(), BlobError> {
        super::BlobCounters::add(&self.counters.put, 1);
        self.op
            .write(key, bytes)
            .await
            .map_err(|e| map_err(key, e))?;
        self.sync_parent_dir(key).await
    }
}

/// The generations present, ascending.
async fn generations(store: &BlobStore) -> Result<Vec<u64>, BlobError> {
    let mut g: Vec<u64> = store
        .list(LEASE_PREFIX)
        .await?
        .iter()
        .filter_map(|(k, _)| generation_of(k))
        .collect();
    g.sort_unstable();
    Ok(g)
}

/// Reads one generation; `None` when it vanished (a taker cleaned it up).
/// A torn read of a renewal in progress is retried once.
async fn read_record(
    store: &BlobStore,
    generation: u64,
) -> Result<Option<LeaseRecord>, LeaseError> {
    let key = key_of(generation);
    let mut last = String::new();
    for attempt in 0..3 {
        match store.read(&key).await {
            Ok(b) => match serde_json::from_slice::<LeaseRecord>(&b) {
                Ok(r) => return Ok(Some(r)),
                Err(e) => last = e.to_string(),
            },
            Err(BlobError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
    }
    Err(LeaseError::Unreadable {
        store: store.describe(),
        key,
        detail: last,
    })
}

impl Lease {
    /// Takes the lease for `holder`, or says who holds it.
    ///
    /// A live lease held by this host with the same data directory is taken
    /// over: call this only after opening that directory's metadata, whose
    /// lock proves the earlier holder gone.
    ///
    /// # Errors
    /// [`LeaseError::Held`] when another process holds it;
    /// [`LeaseError::Unreadable`] when the highest generation does not parse
    /// and may not be taken over yet (`lease/broken.rs`); blob errors.
    pub async fn acquire(
        store: &BlobStore,
        holder: Holder,
        settings: LeaseSettings,
    ) -> Result<Arc<Lease>, LeaseError> {
        for _ in 0..5 {
            let gens = generations(store).await?;
            let top = gens.last().copied();
            let current = match top {
                Some(g) => match broken::read_top(store, g, &holder.data_dir, settings).await? {
                    broken::Top::Record(r) => Some(r),
                    broken::Top::Broken => None, // a dead process's: free
                    broken::Top::Vanished => continue, // cleaned up under us: look again
                },
                None => None,
            };
            let now = now_ms();
            if let Some(r) = &current
                && r.is_live(now)
                && !(r.holder.host == holder.host && r.holder.data_dir == holder.data_dir)
            {
                return Err(LeaseError::Held {
                    store: store.describe(),
                    expires_in_s: (r.expires_at_ms - now).div_ceil(1000),
                    record: Box::new(r.clone()),
                });
            }
            let generation = top.map_or(1, |g| g + 1);
            let started = Instant::now();
            let record = LeaseRecord {
                version: 1,
                generation,
                holder: holder.clone(),
                nonce: nonce(),
                renewed_at_ms: now,
                expires_at_ms: now + settings.duration.as_millis() as u64,
                released: false,
            };
            let key = key_of(generation);
            let body = Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
            // Before the create: a crash between it and the body leaves an
            // object only this data directory may take over at once.
            broken::record_intent(&holder.data_dir, store, &key).await;
            match store.put_new(&key, body).await? {
                PutOutcome::AlreadyPresent => {
                    // Another taker won: the generation is not ours.
                    broken::clear_intent(&holder.data_dir).await;
                    continue;
                }
                PutOutcome::Created => {}
            }
            for old in gens.iter().filter(|&&g| g < generation) {
                if let Err(e) = store.delete(&key_of(*old)).await {
                    tracing::debug!(error = %e, generation = old, "old lease generation not deleted");
                }
            }
            if let Some(prev) = current.filter(|r| r.is_live(now)) {
                tracing::warn!(
                    previous_pid = prev.holder.pid,
                    data_dir = %prev.holder.data_dir,
                    "took over the blob store lease of an earlier process on this data directory \
                     (it is gone: this process holds the directory's lock)"
                );
            }
            tracing::info!(generation, key = %key, "blob store lease acquired");
            return Ok(Arc::new(Lease {
                store: store.clone(),
                settings,
                key,
                record: Mutex::new(record),
                valid_until: Mutex::new(started + valid_for(settings)),
                lost: AtomicBool::new(false),
            }));
        }
        Err(LeaseError::Lost(
            "the lease changed hands repeatedly while acquiring it".into(),
        ))
    }

    /// The held generation.
    pub fn generation(&self) -> u64 {
        self.lock_record().generation
    }

    /// The object key of the held generation.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the lease is known lost (no I/O).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst) || Instant::now() >= *self.lock_valid()
    }

    fn lock_record(&self) -> std::sync::MutexGuard<'_, LeaseRecord> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_valid(&self) -> std::sync::MutexGuard<'_, Instant> {
        self.valid_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lose(&self, why: String) -> LeaseError {
        self.lost.store(true, Ordering::SeqCst);
        LeaseError::Lost(why)
    }

    /// Checks, against the blob store, that this process still holds the
    /// lease: still within its validity, no higher generation, its own
    /// object still carrying its nonce. Call before destructive work.
    ///
    /// # Errors
    /// [`LeaseError::Lost`] (then forever), or a blob error (not lost yet).
    pub async fn check(&self) -> Result<(), LeaseError> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(LeaseError::Lost("lost earlier".into()));
        }
        if Instant::now() >= *self.lock_valid() {
            return Err(self.lose("not renewed within the lease duration".into()));
        }
        let (generation, nonce) = {
            let r = self.lock_record();
            (r.generation, r.nonce.clone())
        };
        if let Some(&top) = generations(&self.store).await?.last()
            && top > generation
        {
            return Err(self.lose(format!(
                "generation {top} was taken by another process (this one held {generation})"
            )));
        }
        match read_record(&self.store, generation).await? {
            Some(r) if r.nonce == nonce && !r.released => Ok(()),
            Some(_) => Err(self.lose("the lease object now belongs to another process".into())),
            None => Err(self.lose("the lease object was deleted".into())),
        }
    }

    /// Renews the lease once: [`check`](Self::check), then a new expiry.
    ///
    /// # Errors
    /// As [`check`](Self::check); a failed write is a blob error.
    pub async fn renew(&self) -> Result<(), LeaseError> {
        let started = Instant::now();
        self.check().await?;
        let body = {
            let mut r = self.lock_record();
            let now = now_ms();
            r.renewed_at_ms = now;
            r.expires_at_ms = now + self.settings.duration.as_millis() as u64;
            serde_json::to_vec(&*r).unwrap_or_default()
        };
        self.store.overwrite(&self.key, Bytes::from(body)).await?;
        if !self.lost.load(Ordering::SeqCst) {
            *self.lock_valid() = started + valid_for(self.settings);
        }
        Ok(())
    }

    /// Renews every `heartbeat` until the lease is lost (then calls
    /// `on_lost` once and stops) or the task is aborted.
    pub fn spawn_heartbeat(
        self: &Arc<Self>,
        on_lost: impl FnOnce(LeaseError) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let lease = Arc::clone(self);
        tokio::spawn(async move {
            let every = lease.settings.heartbeat;
            loop {
                tokio::time::sleep(every).await;
                // A slow renewal may take until the validity ends (a loaded
                // service is not a lost lease); past that it is lost anyway.
                let left = lease
                    .lock_valid()
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                let attempt = tokio::time::timeout(left, lease.renew()).await;
                let err = match attempt {
                    Ok(Ok(())) => continue,
                    Ok(Err(e @ LeaseError::Lost(_))) => e,
                    Ok(Err(e)) if lease.is_lost() => lease.lose(format!("renewal failed: {e}")),
                    Err(_) if lease.is_lost() => lease.lose("renewal timed out".into()),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "blob store lease renewal failed; retrying");
                        continue;
                    }
                    Err(_) => {
                        tracing::warn!("blob store lease renewal timed out; retrying");
                        continue;
                    }
                };
                tracing::error!(error = %err, "blob store lease lost: this process stops writing");
                on_lost(err);
                return;
            }
        })
    }

    /// Gives the lease up (clean shutdown) if this process still holds it;
    /// the next process takes it at once. Failures are logged: the lease
    /// then expires by itself.
    pub async fn release(&self) {
        if self.check().await.is_err() {
            return;
        }
        let body = {
            let mut r = self.lock_record();
            r.released = true;
            r.expires_at_ms = now_ms();
            serde_json::to_vec(&*r).unwrap_or_default()
        };
        self.lost.store(true, Ordering::SeqCst);
        match self.store.overwrite(&self.key, Bytes::from(body)).await {
            Ok(()) => {
                // Released: nothing of this directory's is left to take over.
                let data_dir = self.lock_record().holder.data_dir.clone();
                broken::clear_intent(&data_dir).await;
                tracing::info!(key = %self.key, "blob store lease released");
            }
            Err(e) => {
                tracing::warn!(error = %e, "blob store lease not released; it expires by itself")
            }
        }
    }
}

/// How long after the start of a successful renewal the holder counts
/// itself valid: one heartbeat less than the duration takers wait.
fn valid_for(s: LeaseSettings) -> Duration {
    s.duration.saturating_sub(s.heartbeat)
}

/// The current lease of `store`, if any (for reports and tests).
///
/// # Errors
/// Blob errors; an unreadable object.
pub async fn current(store: &BlobStore) -> Result<Option<LeaseRecord>, LeaseError> {
    match generations(store).await?.last() {
        Some(&g) => read_record(store, g).await,
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort() {
        assert_eq!(generation_of(&key_of(42)), Some(42));
        assert!(key_of(9) < key_of(10));
        assert_eq!(generation_of("_eden_cas_lease/x.json"), None);
        assert_eq!(generation_of("packs/00/1.json"), None);
    }
}
