//! The engine's check-then-write locks (`registry`, `artifacts`,
//! `uploads`): a read of metadata, a decision, and the batch that writes it
//! must not interleave with another such step of the same kind.
//!
//! Within a process each kind is a tokio mutex. On PostgreSQL each kind is
//! also a session-level advisory lock (`pg_advisory_lock`), held by a
//! connection of its own on a thread of its own, so that steps of the same
//! kind on different nodes sharing the schema exclude each other too. The
//! local mutex is taken first, so a node asks the database for a kind at
//! most once at a time; the guard sends the unlock when dropped, before
//! the local mutex is released, and the lock thread handles requests in
//! order, so the unlock always reaches PostgreSQL before the node's next
//! lock of that kind. A lost connection releases the advisory lock on the
//! server side; the next lock reconnects.

use std::sync::Arc;
use std::sync::mpsc;

use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};

use super::MetaError;

/// A kind of check-then-write step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// Workers, groups and memberships (reserved names, cycles).
    Registry,
    /// Artifact records: grants, deletes, labels, references.
    Artifacts,
    /// Upload sessions: activity, chunk rows, ending.
    Uploads,
}

impl LockKind {
    /// Every kind, in [`Remote`]'s order.
    pub const ALL: [LockKind; 3] = [LockKind::Registry, LockKind::Artifacts, LockKind::Uploads];

    fn index(self) -> usize {
        self as usize
    }

    /// The name used in the advisory lock key.
    pub fn name(self) -> &'static str {
        match self {
            LockKind::Registry => "registry",
            LockKind::Artifacts => "artifacts",
            LockKind::Uploads => "uploads",
        }
    }
}

/// A request to a lock thread.
pub enum Request {
    /// Take the kind's advisory lock; answer when held (or why not).
    Lock(oneshot::Sender<Result<(), MetaError>>),
    /// Release it.
    Unlock,
}

/// The lock threads of a shared engine, one per [`LockKind`] in order.
pub type Remote = [mpsc::Sender<Request>; 3];

/// The locks of one metadata store.
pub struct Locks {
    local: [Arc<Mutex<()>>; 3],
    remote: Option<Remote>,
}

/// A held lock; released when dropped.
pub struct LockGuard {
    unlock: Option<mpsc::Sender<Request>>,
    _local: OwnedMutexGuard<()>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(tx) = &self.unlock {
            // Before the local mutex (a field) is released.
            let _ = tx.send(Request::Unlock);
        }
    }
}

impl Locks {
    /// Process-local locks, plus the lock threads of a shared engine.
    pub fn new(remote: Option<Remote>) -> Self {
        Locks {
            local: LockKind::ALL.map(|_| Arc::new(Mutex::new(()))),
            remote,
        }
    }

    /// Takes `kind`: here, then (on a shared engine) across nodes.
    ///
    /// # Errors
    /// [`MetaError::Postgres`] when the advisory lock cannot be taken (the
    /// database is unreachable); nothing is held then.
    pub async fn lock(&self, kind: LockKind) -> Result<LockGuard, MetaError> {
        let local = Arc::clone(&self.local[kind.index()]).lock_owned().await;
        let Some(remote) = &self.remote else {
            return Ok(LockGuard {
                unlock: None,
                _local: local,
            });
        };
        let tx = remote[kind.index()].clone();
        let (reply, answer) = oneshot::channel();
        let gone = || MetaError::Postgres("the lock thread is gone".into());
        tx.send(Request::Lock(reply)).map_err(|_| gone())?;
        // Dropped before the answer (the caller gave up): the thread still
        // takes the lock, so release it in order.
        let guard = LockGuard {
            unlock: Some(tx),
            _local: local,
        };
        match answer.await {
            Ok(Ok(())) => Ok(guard),
            Ok(Err(e)) => {
                // Not held: nothing to release.
                let mut guard = guard;
                guard.unlock = None;
                Err(e)
            }
            Err(_) => Err(gone()),
        }
    }
}
