//! Lease generations that do not parse: when one may be taken over.
//!
//! On the fs backend an object is created empty and then written (and a
//! renewal truncates, then writes), so a process killed in between leaves
//! an empty or torn generation; the next start must not be stuck on it.
//! A broken generation is free only when that is safe:
//!
//! - **Ours**: this data directory's *intent file* names that generation of
//!   that store. The file is written (and fsynced) before the generation is
//!   created, and removed when the create finds the generation taken, so it
//!   names a generation created by a process on this data directory; the
//!   caller holds the directory's metadata lock (see [`super::Lease::acquire`]),
//!   so that process is gone.
//! - **Abandoned**: its last modification is at least one lease duration
//!   (plus a second of timestamp rounding) old. A live holder rewrites its object on every heartbeat, and one
//!   whose object no longer parses cannot renew and fences itself within
//!   the duration (self-fencing, `lease.rs`); a creator mid-write has just
//!   modified it.
//!
//! Anything else — a fresh unparseable object written by another data
//! directory, or a backend that reports no modification time — is refused
//! (`LeaseError::Unreadable`): another live process may be writing it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::super::{BlobError, BlobStore, map_err};
use super::{LeaseError, LeaseRecord, LeaseSettings, read_record};
use crate::clock::Timestamp;

/// Added to the lease duration before a broken generation counts as
/// abandoned: object stores report modification times in whole seconds
/// (`Last-Modified`), which can make an object look up to a second older.
const MTIME_SLACK: Duration = Duration::from_secs(1);

/// Name of the intent file in the holder's data directory.
pub const INTENT_FILE: &str = "blob-lease-intent.json";

/// What the intent file holds: the generation this data directory's
/// process created (or was about to create) last, and in which store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Intent {
    /// [`BlobStore::describe`] of the store.
    store: String,
    /// The generation's key.
    key: String,
}

/// Why a broken generation may be taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takeover {
    /// A process on this data directory created it (and is gone).
    Ours,
    /// It was last modified this long ago, at least a lease duration.
    Abandoned(Duration),
}

impl std::fmt::Display for Takeover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ours => f.write_str("created from this data directory"),
            Self::Abandoned(age) => write!(f, "unchanged for {}s", age.as_secs()),
        }
    }
}

fn intent_path(data_dir: &str) -> PathBuf {
    Path::new(data_dir).join(INTENT_FILE)
}

/// Records, durably, that this data directory's process is about to create
/// `key` in `store`. Failure only costs the fast takeover after a crash
/// (the age rule remains), so it is logged, not returned.
pub(super) async fn record_intent(data_dir: &str, store: &BlobStore, key: &str) {
    let path = intent_path(data_dir);
    let intent = Intent {
        store: store.describe(),
        key: key.to_string(),
    };
    let written = tokio::task::spawn_blocking(move || write_durably(&path, &intent)).await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "lease intent not recorded"),
        Err(e) => tracing::warn!(error = %e, "lease intent not recorded"),
    }
}

/// Forgets the intent: the generation it named belongs to someone else.
pub(super) async fn clear_intent(data_dir: &str) {
    let path = intent_path(data_dir);
    let removed = tokio::task::spawn_blocking(move || match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    })
    .await;
    if !matches!(removed, Ok(Ok(()))) {
        tracing::warn!("lease intent not cleared");
    }
}

/// Writes the intent through a temporary file, fsynced and renamed, so a
/// crash leaves the old intent or the new one, never a torn one.
fn write_durably(path: &Path, intent: &Intent) -> std::io::Result<()> {
    use std::io::Write;
    let body = serde_json::to_vec(intent).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

async fn names_ours(data_dir: &str, store: &BlobStore, key: &str) -> bool {
    let path = intent_path(data_dir);
    let Ok(Ok(bytes)) = tokio::task::spawn_blocking(move || std::fs::read(path)).await else {
        return false;
    };
    serde_json::from_slice::<Intent>(&bytes)
        .is_ok_and(|i| i.store == store.describe() && i.key == key)
}

/// Last modification of `key`, if the backend reports one (`memory://`
/// does not).
async fn last_modified(store: &BlobStore, key: &str) -> Result<Option<SystemTime>, BlobError> {
    super::super::BlobCounters::add(&store.counters.head, 1);
    let meta = store.op.stat(key).await.map_err(|e| map_err(key, e))?;
    Ok(meta.last_modified().map(SystemTime::from))
}

/// The highest generation as the acquiring process sees it.
pub(super) enum Top {
    /// Its record.
    Record(LeaseRecord),
    /// It does not parse and may be taken over (a dead process's).
    Broken,
    /// It vanished (a taker cleaned it up): look again.
    Vanished,
}

/// Reads generation `generation` for a process on `data_dir` acquiring
/// with `settings`.
///
/// # Errors
/// [`LeaseError::Unreadable`] for an unparseable generation that may not be
/// taken over; blob errors.
pub(super) async fn read_top(
    store: &BlobStore,
    generation: u64,
    data_dir: &str,
    settings: LeaseSettings,
) -> Result<Top, LeaseError> {
    let (described, key, detail) = match read_record(store, generation).await {
        Ok(Some(r)) => return Ok(Top::Record(r)),
        Ok(None) => return Ok(Top::Vanished),
        Err(LeaseError::Unreadable { store, key, detail }) => (store, key, detail),
        Err(e) => return Err(e),
    };
    match judge(store, &key, data_dir, settings.duration).await {
        Ok(Some(why)) => {
            tracing::warn!(
                key = %key,
                reason = %why,
                "taking over an unreadable blob store lease generation (left by a process \
                 that died while writing it)"
            );
            Ok(Top::Broken)
        }
        Ok(None) => Err(LeaseError::Unreadable {
            store: described,
            key,
            detail,
        }),
        Err(BlobError::NotFound(_)) => Ok(Top::Vanished),
        Err(e) => Err(e.into()),
    }
}

/// Whether the unparseable generation `key` may be taken over by a process
/// on `data_dir` whose lease lasts `duration`; `None` means refuse.
async fn judge(
    store: &BlobStore,
    key: &str,
    data_dir: &str,
    duration: Duration,
) -> Result<Option<Takeover>, BlobError> {
    if names_ours(data_dir, store, key).await {
        return Ok(Some(Takeover::Ours));
    }
    let Some(modified) = last_modified(store, key).await? else {
        return Ok(None);
    };
    let now: SystemTime = Timestamp::now().into();
    // A modification time ahead of our clock reads as age 0 (not yet free).
    let age = now.duration_since(modified).unwrap_or(Duration::ZERO);
    Ok((age >= duration + MTIME_SLACK).then_some(Takeover::Abandoned(age)))
}
