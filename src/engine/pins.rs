//! In-flight pins: what deposits, chunk batches and upload commits reference
//! before their references are durable, so garbage collection never deletes
//! it (invariant 7).
//!
//! A committed artifact protects its chunks through its manifest, and an
//! upload session through its `upload-chunks-v1` rows. The gap is the time
//! between "this operation looked the chunk up and found it stored" and "the
//! row that references it is committed". Every operation that references
//! chunks holds an [`OpPins`] and pins each chunk *before* it looks the chunk
//! up in the index:
//!
//! - an operation's *loose* pins are the chunks of its current, unsealed
//!   segment (or chunk batch): at most a segment's or a batch's worth;
//! - a sealed segment, and the manifest of a finished stream, are pinned by
//!   id (their chunks are expanded from RocksDB when GC needs them), so
//!   memory does not grow with artifact size (invariant 8).
//!
//! A GC run opens a *window*: at that moment it takes a snapshot of every
//! operation's pins (to mark them live) and, while the window is open, every
//! new pin is also recorded in the window set. GC deletes an index entry,
//! segment or manifest only under this registry's lock and only if the
//! window set lacks it. So either the pin came first (and GC keeps the
//! thing) or the deletion did (and the operation's index lookup, which
//! follows its pin, finds nothing and stores a fresh copy).
//!
//! Packs being written are registered too, from before their object is
//! created until they are indexed or abandoned, so GC never mistakes a pack
//! in progress for the leftover of a crash.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::hash::Digest;
use crate::ids::PackId;

/// The registry; one per engine.
#[derive(Debug, Default)]
pub(crate) struct Pins {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_op: u64,
    ops: HashMap<u64, OpState>,
    open_packs: HashSet<PackId>,
    window: Option<HashSet<Digest>>,
}

#[derive(Debug, Default)]
struct OpState {
    /// Chunks referenced since the last sealed segment.
    loose: HashSet<Digest>,
    /// Sealed segments and manifests, by id.
    sealed: Vec<Digest>,
}

/// What was pinned when a GC window opened.
#[derive(Debug, Default)]
pub(crate) struct PinSnapshot {
    /// Loose chunk pins of every operation.
    pub chunks: Vec<Digest>,
    /// Sealed segment and manifest ids of every operation.
    pub sealed: Vec<Digest>,
}

/// The registry, locked: GC's view while it decides what to delete.
pub(crate) struct PinView<'a> {
    state: MutexGuard<'a, State>,
}

impl PinView<'_> {
    /// Whether `id` (a chunk, segment or manifest) was pinned since the
    /// window opened. Always true when no window is open (nothing may be
    /// deleted outside a window).
    pub(crate) fn pinned_since_window(&self, id: &Digest) -> bool {
        self.state.window.as_ref().is_none_or(|w| w.contains(id))
    }

    /// Whether a pack is being written right now.
    pub(crate) fn pack_open(&self, pack: PackId) -> bool {
        self.state.open_packs.contains(&pack)
    }
}

impl Pins {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new operation.
    pub(crate) fn begin(self: &Arc<Self>) -> OpPins {
        let mut s = self.lock();
        s.next_op += 1;
        let id = s.next_op;
        s.ops.insert(id, OpState::default());
        OpPins {
            registry: Arc::clone(self),
            id,
        }
    }

    /// Registers a pack about to be created.
    pub(crate) fn pack_opened(&self, pack: PackId) {
        self.lock().open_packs.insert(pack);
    }

    /// The pack is indexed or abandoned.
    pub(crate) fn pack_closed(&self, pack: PackId) {
        self.lock().open_packs.remove(&pack);
    }

    /// Opens the GC window and returns every operation's pins at this moment.
    pub(crate) fn open_window(&self) -> PinSnapshot {
        let mut s = self.lock();
        s.window = Some(HashSet::new());
        let mut snap = PinSnapshot::default();
        for op in s.ops.values() {
            snap.chunks.extend(op.loose.iter().copied());
            snap.sealed.extend(op.sealed.iter().copied());
        }
        snap
    }

    /// Closes the GC window, dropping its set.
    pub(crate) fn close_window(&self) {
        self.lock().window = None;
    }

    /// (operations registered, loose chunk pins, packs being written):
    /// what in-flight work holds right now (operator figure).
    pub(crate) fn activity(&self) -> (u64, u64, u64) {
        let s = self.lock();
        let loose = s.ops.values().map(|o| o.loose.len() as u64).sum();
        (s.ops.len() as u64, loose, s.open_packs.len() as u64)
    }

    /// Locks the registry for a deletion decision. Pins wait meanwhile, so
    /// hold it only for one bounded batch.
    pub(crate) fn view(&self) -> PinView<'_> {
        PinView { state: self.lock() }
    }
}

/// One operation's pins; dropping it releases them. Hold it until the rows
/// that reference what it pinned are committed.
#[derive(Debug)]
pub(crate) struct OpPins {
    registry: Arc<Pins>,
    id: u64,
}

impl OpPins {
    /// Pins chunks the operation is about to reference.
    pub(crate) fn chunks(&self, ids: &[Digest]) {
        let mut s = self.registry.lock();
        let State { ops, window, .. } = &mut *s;
        if let Some(w) = window.as_mut() {
            w.extend(ids.iter().copied());
        }
        if let Some(op) = ops.get_mut(&self.id) {
            op.loose.extend(ids.iter().copied());
        }
    }

    /// Pins a sealed segment or a manifest by id. Call it *before* the
    /// segment or manifest is written.
    pub(crate) fn sealed(&self, id: Digest) {
        let mut s = self.registry.lock();
        let State { ops, window, .. } = &mut *s;
        if let Some(w) = window.as_mut() {
            w.insert(id);
        }
        if let Some(op) = ops.get_mut(&self.id) {
            op.sealed.push(id);
        }
    }

    /// Drops the loose pins once a sealed segment (already pinned and
    /// written) covers them.
    pub(crate) fn release_loose(&self) {
        let mut s = self.registry.lock();
        if let Some(op) = s.ops.get_mut(&self.id) {
            op.loose.clear();
        }
    }
}

impl Drop for OpPins {
    fn drop(&mut self) {
        self.registry.lock().ops.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_records_pins_and_snapshot_sees_earlier_ones() {
        let pins = Arc::new(Pins::default());
        let (a, b, s) = (Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"s"));
        let op = pins.begin();
        op.chunks(&[a]);
        op.sealed(s);
        // Outside a window nothing may be deleted.
        assert!(pins.view().pinned_since_window(&b));
        let snap = pins.open_window();
        assert_eq!(snap.chunks, vec![a]);
        assert_eq!(snap.sealed, vec![s]);
        assert!(!pins.view().pinned_since_window(&b));
        op.chunks(&[b]);
        assert!(pins.view().pinned_since_window(&b));
        op.release_loose();
        drop(op);
        // Released by the operation, still protected for this window.
        assert!(pins.view().pinned_since_window(&b));
        pins.close_window();
        let snap = pins.open_window();
        assert!(snap.chunks.is_empty() && snap.sealed.is_empty());
    }

    #[test]
    fn open_packs_are_visible() {
        let pins = Pins::default();
        let p = PackId::from_u128(7);
        pins.pack_opened(p);
        assert!(pins.view().pack_open(p));
        pins.pack_closed(p);
        assert!(!pins.view().pack_open(p));
    }
}
