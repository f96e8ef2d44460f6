//! Fault injection: an opendal [`Layer`] that fails or corrupts one chosen
//! kind of blob operation, driven by a shared, runtime-armable
//! [`FaultPlan`]. Tests only — a plan reaches a store through
//! [`BlobConfig::faults`](super::BlobConfig::faults), which no config file,
//! environment variable or flag can set.
//!
//! It exists to prove invariants 3 and 6 from below: a failed write is
//! reported and leaves no visible artifact, a short or corrupt read is an
//! error and never wrong bytes, and silent corruption at rest is caught when
//! the data is read.
//!
//! Faults ([`Fault`]) and the operation each one counts:
//!
//! | fault | counted operation (on a key under the prefix) | effect |
//! |---|---|---|
//! | [`Fault::WriteError`] | each `write` call of a writer | the call fails; nothing reaches the backend |
//! | [`Fault::CloseError`] | each `close` of a writer | the close fails; the object is not completed |
//! | [`Fault::ShortRead`] | each read (ranged or whole) | the read returns half the bytes, then ends |
//! | [`Fault::ReadBitFlip`] | each read | one bit of the returned bytes is flipped |
//! | [`Fault::WriteBitFlip`] | each object written | one bit of the stored bytes is flipped |
//!
//! A [`FaultSpec`] skips the first `n` counted operations, then fires once
//! (or every time), and marks its errors permanent (default) or transient.
//! Everything else — other keys, other operations (stat, list, delete) —
//! passes through untouched.
//!
//! The layer is applied innermost, directly on the backend, so an injected
//! fault travels through the same stack as a real backend failure: timeout,
//! retry, concurrency limit, tracing and [`BlobStore`](super::BlobStore)'s
//! error mapping. A permanent error is not retried (one failed request is a
//! failed operation); a transient one is retried by the `RetryLayer`, so a
//! transient fault that fires once is absorbed by a retry, and one that fires
//! every time exhausts the retries.

//!
//! This file holds the plan (what to break, counted how); `layer.rs` holds
//! the opendal layer, service, reader and writer that apply it.

mod layer;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};

pub use layer::FaultLayer;
#[doc(hidden)]
pub use layer::{FaultReader, FaultService, FaultWriter};

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A `write` call of a writer fails before reaching the backend.
    WriteError,
    /// The `close` of a writer fails before reaching the backend: every byte
    /// was handed over, but the object is never completed (on fs it may stay
    /// as a partial file, as after a crash; object stores show nothing).
    CloseError,
    /// A read returns half the bytes it was asked for (rounded down), then
    /// ends as if the object were shorter, without an error.
    ShortRead,
    /// The lowest bit of byte `at` of what a read returns (counted from the
    /// start of the range read; the last byte if the read returns fewer) is
    /// flipped.
    ReadBitFlip {
        /// Offset in the bytes returned by the read.
        at: u64,
    },
    /// The lowest bit of byte `at` of an object being written (counted from
    /// the start of the object) is flipped on its way to the backend, so the
    /// object is stored silently corrupt. An object that ends before `at`
    /// is stored intact and the fault does not fire.
    WriteBitFlip {
        /// Offset in the object.
        at: u64,
    },
}

impl Fault {
    fn point(self) -> Point {
        match self {
            Fault::WriteError => Point::Write,
            Fault::CloseError => Point::Close,
            Fault::ShortRead | Fault::ReadBitFlip { .. } => Point::Read,
            Fault::WriteBitFlip { .. } => Point::Object,
        }
    }
}

/// Where in the layer a fault is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    /// A `write` call.
    Write,
    /// A `close` call.
    Close,
    /// A read (`open` of a range stream, or a one-shot `read`).
    Read,
    /// The creation of a writer (one object).
    Object,
}

/// One fault to arm: what, on which keys, when, how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    fault: Fault,
    prefix: String,
    skip: u64,
    every_time: bool,
    transient: bool,
}

impl FaultSpec {
    /// `fault` on keys starting with `prefix` (as the store names them:
    /// `packs/`, `manifests/`, or a whole key), firing on the first counted
    /// operation, once, with a permanent error.
    pub fn new(fault: Fault, prefix: impl Into<String>) -> Self {
        FaultSpec {
            fault,
            prefix: prefix.into(),
            skip: 0,
            every_time: false,
            transient: false,
        }
    }

    /// Lets the first `n` counted operations pass untouched.
    #[must_use]
    pub fn skip(mut self, n: u64) -> Self {
        self.skip = n;
        self
    }

    /// Fires on every counted operation after the skipped ones, not once.
    #[must_use]
    pub fn every_time(mut self) -> Self {
        self.every_time = true;
        self
    }

    /// Marks injected errors temporary, so the retry layer retries them
    /// (no effect on corruption faults, which are not errors).
    #[must_use]
    pub fn transient(mut self) -> Self {
        self.transient = true;
        self
    }

    /// The fault.
    pub fn fault(&self) -> Fault {
        self.fault
    }
}

#[derive(Debug, Default)]
struct PlanState {
    armed: Option<FaultSpec>,
    /// Bumped by every arm and disarm; a ticket of an older generation is void.
    generation: u64,
    /// Counted operations seen since arming (skipped ones included).
    matched: u64,
    /// Times the fault took effect since arming.
    fired: u64,
}

/// The permission to apply a fault to one operation, taken when the
/// operation starts and spent when the fault takes effect.
#[derive(Debug, Clone, Copy)]
struct Ticket {
    fault: Fault,
    transient: bool,
    generation: u64,
}

/// The shared plan a [`FaultLayer`] follows: at most one armed
/// [`FaultSpec`], re-armable at run time, with counters. Share it as
/// `Arc<FaultPlan>` between the test and the store.
#[derive(Debug, Default)]
pub struct FaultPlan {
    state: Mutex<PlanState>,
}

impl FaultPlan {
    /// A plan with nothing armed.
    pub fn new() -> Arc<Self> {
        Arc::new(FaultPlan::default())
    }

    fn lock(&self) -> MutexGuard<'_, PlanState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Arms `spec`, replacing whatever was armed, with counters at zero.
    pub fn arm(&self, spec: FaultSpec) {
        let mut s = self.lock();
        s.generation += 1;
        s.armed = Some(spec);
        s.matched = 0;
        s.fired = 0;
    }

    /// Disarms: from now on every operation passes through untouched,
    /// including those that started while the fault was armed. Returns how
    /// many times the fault fired; counters restart at zero.
    pub fn disarm(&self) -> u64 {
        let mut s = self.lock();
        let fired = s.fired;
        s.generation += 1;
        s.armed = None;
        s.matched = 0;
        s.fired = 0;
        fired
    }

    /// Times the armed fault took effect so far.
    pub fn fired(&self) -> u64 {
        self.lock().fired
    }

    /// Counted operations seen on matching keys since arming, skipped ones
    /// included.
    pub fn matched(&self) -> u64 {
        self.lock().matched
    }

    /// Counts an operation at `point` on `key`; a ticket if the armed fault
    /// applies to it (past the skipped ones, not yet spent if it fires once).
    fn ticket(&self, point: Point, key: &str) -> Option<Ticket> {
        let mut s = self.lock();
        let spec = s.armed.as_ref()?;
        if spec.fault.point() != point || !key.starts_with(&spec.prefix) {
            return None;
        }
        let (fault, transient, skip, every_time) =
            (spec.fault, spec.transient, spec.skip, spec.every_time);
        s.matched += 1;
        if s.matched <= skip || (!every_time && s.fired > 0) {
            return None;
        }
        Some(Ticket {
            fault,
            transient,
            generation: s.generation,
        })
    }

    /// Whether `t` may still take effect (same arming, not spent).
    fn live(&self, t: &Ticket) -> bool {
        let s = self.lock();
        s.generation == t.generation
            && s.armed
                .as_ref()
                .is_some_and(|spec| spec.every_time || s.fired == 0)
    }

    /// Records that `t` takes effect, if it still may; false if it is void.
    fn fire(&self, t: &Ticket) -> bool {
        let mut s = self.lock();
        let live = s.generation == t.generation
            && s.armed
                .as_ref()
                .is_some_and(|spec| spec.every_time || s.fired == 0);
        if live {
            s.fired += 1;
        }
        live
    }

    /// A ticket for an error fault at `point`, spent at once.
    fn error_now(&self, point: Point, key: &str) -> Option<Ticket> {
        self.ticket(point, key).filter(|t| self.fire(t))
    }
}
