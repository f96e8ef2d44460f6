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

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use opendal::raw::oio;
use opendal::raw::{
    Layer, OpCompose, OpCopy, OpCreateDir, OpList, OpPresign, OpRead, OpRename, OpRestore, OpStat,
    OpWrite, RpCreateDir, RpPresign, RpRead, RpRename, RpRestore, RpStat, Service, ServiceInfo,
    Servicer,
};
use opendal::{
    Buffer, BytesRange, Capability, Error, ErrorKind, Metadata, OperationContext, Result,
};

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

fn injected(t: &Ticket, op: &'static str, path: &str) -> Error {
    let e = Error::new(
        ErrorKind::Unexpected,
        format!("injected fault: {:?}", t.fault),
    )
    .with_operation(op)
    .with_context("path", path);
    if t.transient { e.set_temporary() } else { e }
}

/// A copy of `buf` with the lowest bit of byte `i` flipped (`i < len`).
fn flipped(buf: &Buffer, i: usize) -> Buffer {
    let mut v = buf.to_vec();
    if let Some(b) = v.get_mut(i) {
        *b ^= 0x01;
    }
    Buffer::from(v)
}

/// The opendal layer that applies a [`FaultPlan`]. Apply it directly on the
/// backend operator, under the retry layer (see the module docs).
#[derive(Clone)]
pub struct FaultLayer {
    plan: Arc<FaultPlan>,
}

impl fmt::Debug for FaultLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultLayer").finish_non_exhaustive()
    }
}

impl FaultLayer {
    /// A layer following `plan`.
    pub fn new(plan: Arc<FaultPlan>) -> Self {
        FaultLayer { plan }
    }
}

impl Layer for FaultLayer {
    fn apply_service(&self, inner: Servicer) -> Servicer {
        Arc::new(FaultService {
            inner,
            plan: Arc::clone(&self.plan),
        })
    }
}

/// The service stack under a [`FaultLayer`].
#[doc(hidden)]
#[derive(Debug)]
pub struct FaultService {
    inner: Servicer,
    plan: Arc<FaultPlan>,
}

impl Service for FaultService {
    type Reader = FaultReader;
    type Writer = FaultWriter;
    type Lister = oio::Lister;
    type Deleter = oio::Deleter;
    type Copier = oio::Copier;
    type Composer = oio::Composer;

    fn info(&self) -> ServiceInfo {
        self.inner.info()
    }

    fn capability(&self) -> Capability {
        self.inner.capability()
    }

    async fn create_dir(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpCreateDir,
    ) -> Result<RpCreateDir> {
        self.inner.create_dir(ctx, path, args).await
    }

    async fn stat(&self, ctx: &OperationContext, path: &str, args: OpStat) -> Result<RpStat> {
        self.inner.stat(ctx, path, args).await
    }

    fn read(&self, ctx: &OperationContext, path: &str, args: OpRead) -> Result<Self::Reader> {
        Ok(FaultReader {
            inner: self.inner.read(ctx, path, args)?,
            plan: Arc::clone(&self.plan),
            path: path.into(),
        })
    }

    fn write(&self, ctx: &OperationContext, path: &str, args: OpWrite) -> Result<Self::Writer> {
        let inner = self.inner.write(ctx, path, args)?;
        Ok(FaultWriter {
            flip: self.plan.ticket(Point::Object, path),
            inner,
            plan: Arc::clone(&self.plan),
            path: path.into(),
            pos: 0,
        })
    }

    fn delete(&self, ctx: &OperationContext) -> Result<Self::Deleter> {
        self.inner.delete(ctx)
    }

    fn list(&self, ctx: &OperationContext, path: &str, args: OpList) -> Result<Self::Lister> {
        self.inner.list(ctx, path, args)
    }

    fn copy(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpCopy,
    ) -> Result<Self::Copier> {
        self.inner.copy(ctx, from, to, args)
    }

    fn compose(&self, ctx: &OperationContext, to: &str, args: OpCompose) -> Result<Self::Composer> {
        self.inner.compose(ctx, to, args)
    }

    async fn rename(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpRename,
    ) -> Result<RpRename> {
        self.inner.rename(ctx, from, to, args).await
    }

    async fn restore(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpRestore,
    ) -> Result<RpRestore> {
        self.inner.restore(ctx, path, args).await
    }

    async fn presign(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpPresign,
    ) -> Result<RpPresign> {
        self.inner.presign(ctx, path, args).await
    }
}

/// A reader that may cut or corrupt what it returns.
#[doc(hidden)]
pub struct FaultReader {
    inner: oio::Reader,
    plan: Arc<FaultPlan>,
    path: Arc<str>,
}

impl oio::Read for FaultReader {
    async fn open(&self, range: BytesRange) -> Result<(RpRead, Box<dyn oio::ReadStreamDyn>)> {
        let ticket = self.plan.ticket(Point::Read, &self.path);
        let (rp, stream) = self.inner.open(range).await?;
        let Some(ticket) = ticket else {
            return Ok((rp, stream));
        };
        let stream = FaultReadStream {
            inner: stream,
            plan: Arc::clone(&self.plan),
            ticket: Some(ticket),
            size: range.size(),
            delivered: 0,
            ended: false,
        };
        Ok((rp, Box::new(stream) as Box<dyn oio::ReadStreamDyn>))
    }

    async fn read(&self, range: BytesRange) -> Result<(RpRead, Buffer)> {
        let ticket = self.plan.ticket(Point::Read, &self.path);
        let (rp, buf) = self.inner.read(range).await?;
        let Some(t) = ticket else {
            return Ok((rp, buf));
        };
        let buf = match t.fault {
            Fault::ShortRead if !buf.is_empty() && self.plan.fire(&t) => buf.slice(..buf.len() / 2),
            Fault::ReadBitFlip { at } if !buf.is_empty() && self.plan.fire(&t) => {
                let i = usize::try_from(at).unwrap_or(usize::MAX).min(buf.len() - 1);
                flipped(&buf, i)
            }
            _ => buf,
        };
        Ok((rp, buf))
    }
}

/// A range stream that may end early or carry one flipped bit.
struct FaultReadStream {
    inner: Box<dyn oio::ReadStreamDyn>,
    plan: Arc<FaultPlan>,
    ticket: Option<Ticket>,
    /// Bytes the range asked for, when bounded.
    size: Option<u64>,
    delivered: u64,
    /// The stream was cut short: it answers end-of-data from now on.
    ended: bool,
}

impl oio::ReadStream for FaultReadStream {
    async fn read(&mut self) -> Result<Buffer> {
        if self.ended {
            return Ok(Buffer::new());
        }
        let mut buf = self.inner.read().await?;
        if let Some(t) = self.ticket
            && !buf.is_empty()
        {
            let len = buf.len() as u64;
            match t.fault {
                Fault::ShortRead => {
                    // Half of a bounded range; half of the first piece of an
                    // unbounded one.
                    let keep = self.size.map_or(len / 2, |n| n / 2);
                    let room = keep.saturating_sub(self.delivered);
                    if len > room {
                        self.ticket = None;
                        if self.plan.fire(&t) {
                            self.ended = true;
                            buf = buf.slice(..room as usize);
                        }
                    }
                }
                Fault::ReadBitFlip { at } => {
                    let target = self.size.map_or(at, |n| at.min(n.saturating_sub(1)));
                    if (self.delivered..self.delivered + len).contains(&target) {
                        self.ticket = None;
                        if self.plan.fire(&t) {
                            buf = flipped(&buf, (target - self.delivered) as usize);
                        }
                    }
                }
                _ => self.ticket = None,
            }
        }
        self.delivered += buf.len() as u64;
        Ok(buf)
    }
}

/// A writer that may fail a call or corrupt one byte of its object.
#[doc(hidden)]
pub struct FaultWriter {
    inner: oio::Writer,
    plan: Arc<FaultPlan>,
    path: Arc<str>,
    /// A [`Fault::WriteBitFlip`] ticket for this object, until spent.
    flip: Option<Ticket>,
    /// Bytes the backend accepted so far.
    pos: u64,
}

impl oio::Write for FaultWriter {
    async fn write(&mut self, bs: Buffer) -> Result<()> {
        if let Some(t) = self.plan.error_now(Point::Write, &self.path) {
            return Err(injected(&t, "write", &self.path));
        }
        let len = bs.len() as u64;
        let mut spent = None;
        let bs = match self.flip {
            Some(
                t @ Ticket {
                    fault: Fault::WriteBitFlip { at },
                    ..
                },
            ) if (self.pos..self.pos + len).contains(&at) && self.plan.live(&t) => {
                spent = Some(t);
                flipped(&bs, (at - self.pos) as usize)
            }
            _ => bs,
        };
        self.inner.write(bs).await?;
        // Spent only once the backend took the corrupt bytes: a retried
        // call is corrupted again.
        if let Some(t) = spent {
            self.plan.fire(&t);
            self.flip = None;
        }
        self.pos += len;
        Ok(())
    }

    async fn copy_from(&mut self, path: &str, args: OpRead, range: BytesRange) -> Result<()> {
        self.inner.copy_from(path, args, range).await
    }

    async fn close(&mut self) -> Result<Metadata> {
        if let Some(t) = self.plan.error_now(Point::Close, &self.path) {
            return Err(injected(&t, "close", &self.path));
        }
        self.inner.close().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opendal::Operator;

    fn plan_with(spec: FaultSpec) -> Arc<FaultPlan> {
        let p = FaultPlan::new();
        p.arm(spec);
        p
    }

    /// Fires the plan at `point` on `key` the way the layer does for errors.
    fn hit(p: &FaultPlan, point: Point, key: &str) -> bool {
        p.error_now(point, key).is_some()
    }

    #[test]
    fn matches_by_prefix_and_operation() {
        let p = plan_with(FaultSpec::new(Fault::WriteError, "packs/").every_time());
        assert!(!hit(&p, Point::Write, "manifests/ab/x.manifest"));
        assert!(!hit(&p, Point::Close, "packs/ab/x.pack"), "other operation");
        assert!(!hit(&p, Point::Read, "packs/ab/x.pack"), "other operation");
        assert_eq!(p.matched(), 0, "only matching operations count");
        assert!(hit(&p, Point::Write, "packs/ab/x.pack"));
        assert!(
            !hit(&p, Point::Write, "xpacks/ab/x.pack"),
            "a prefix, not a substring"
        );
        assert_eq!((p.matched(), p.fired()), (1, 1));
    }

    #[test]
    fn skips_then_fires_once() {
        let p = plan_with(FaultSpec::new(Fault::CloseError, "m/").skip(2));
        let got: Vec<bool> = (0..5).map(|_| hit(&p, Point::Close, "m/k")).collect();
        assert_eq!(got, [false, false, true, false, false]);
        assert_eq!((p.matched(), p.fired()), (5, 1));
    }

    #[test]
    fn every_time_fires_after_the_skipped() {
        let p = plan_with(FaultSpec::new(Fault::WriteError, "").skip(1).every_time());
        let got: Vec<bool> = (0..4).map(|_| hit(&p, Point::Write, "any")).collect();
        assert_eq!(got, [false, true, true, true]);
        assert_eq!(p.fired(), 3);
    }

    #[test]
    fn disarm_resets_and_voids_tickets_in_flight() {
        let p = plan_with(FaultSpec::new(Fault::ReadBitFlip { at: 0 }, ""));
        let t = p.ticket(Point::Read, "k").unwrap();
        assert_eq!(p.disarm(), 0);
        assert!(
            !p.live(&t) && !p.fire(&t),
            "a ticket from before disarm is void"
        );
        assert!(p.ticket(Point::Read, "k").is_none());
        assert_eq!((p.matched(), p.fired()), (0, 0));

        p.arm(FaultSpec::new(Fault::ShortRead, "").skip(1));
        assert!(p.ticket(Point::Read, "k").is_none(), "skip counts anew");
        let t = p.ticket(Point::Read, "k").unwrap();
        assert!(p.fire(&t));
        assert_eq!(p.disarm(), 1);
        // Re-arming also voids the previous arming's tickets.
        p.arm(FaultSpec::new(Fault::ShortRead, ""));
        let old = p.ticket(Point::Read, "k").unwrap();
        p.arm(FaultSpec::new(Fault::ShortRead, ""));
        assert!(!p.fire(&old));
        assert_eq!(p.fired(), 0);
    }

    #[test]
    fn once_is_spent_by_the_first_ticket_to_fire() {
        let p = plan_with(FaultSpec::new(Fault::WriteBitFlip { at: 5 }, ""));
        // Two objects take tickets; only the first to reach its byte fires.
        let a = p.ticket(Point::Object, "a").unwrap();
        let b = p.ticket(Point::Object, "b").unwrap();
        assert!(p.fire(&b));
        assert!(!p.live(&a) && !p.fire(&a));
        assert!(p.ticket(Point::Object, "c").is_none());
        assert_eq!(p.fired(), 1);
    }

    #[test]
    fn errors_are_permanent_unless_transient() {
        let t = |transient| Ticket {
            fault: Fault::WriteError,
            transient,
            generation: 0,
        };
        assert!(!injected(&t(false), "write", "k").is_temporary());
        assert!(injected(&t(true), "write", "k").is_temporary());
    }

    fn op(plan: &Arc<FaultPlan>) -> Operator {
        Operator::new(opendal::services::Memory::default())
            .unwrap()
            .layer(FaultLayer::new(Arc::clone(plan)))
    }

    #[tokio::test]
    async fn write_and_close_errors_fail_the_write() {
        let plan = FaultPlan::new();
        let op = op(&plan);
        plan.arm(FaultSpec::new(Fault::WriteError, "p/"));
        assert!(op.write("p/a", vec![1u8; 10]).await.is_err());
        op.write("q/a", vec![1u8; 10]).await.unwrap();
        op.write("p/b", vec![2u8; 10]).await.unwrap();
        assert_eq!(plan.disarm(), 1);

        plan.arm(FaultSpec::new(Fault::CloseError, "p/"));
        let mut w = op.writer("p/c").await.unwrap();
        w.write(vec![3u8; 10]).await.unwrap();
        assert!(w.close().await.is_err());
        assert_eq!(plan.disarm(), 1);
        assert_eq!(op.read("p/b").await.unwrap().to_vec(), vec![2u8; 10]);
    }

    #[tokio::test]
    async fn short_reads_return_half_the_range() {
        let plan = FaultPlan::new();
        let op = op(&plan);
        let data: Vec<u8> = (0..100u8).collect();
        op.write("p/a", data.clone()).await.unwrap();
        plan.arm(FaultSpec::new(Fault::ShortRead, "p/").every_time());
        let got = op.read_with("p/a").range(10..50).await.unwrap().to_vec();
        assert_eq!(got, data[10..30]);
        let got = op.read("p/a").await.unwrap().to_vec();
        assert!(got.len() < data.len() && got[..] == data[..got.len()]);
        assert_eq!(plan.disarm(), 2);
        assert_eq!(op.read("p/a").await.unwrap().to_vec(), data);
    }

    #[tokio::test]
    async fn bit_flips_on_read_leave_the_object_intact() {
        let plan = FaultPlan::new();
        let op = op(&plan);
        let data = vec![0u8; 64];
        op.write("p/a", data.clone()).await.unwrap();
        plan.arm(FaultSpec::new(Fault::ReadBitFlip { at: 7 }, "p/"));
        let got = op.read_with("p/a").range(8..40).await.unwrap().to_vec();
        let mut want = vec![0u8; 32];
        want[7] = 1;
        assert_eq!(got, want);
        assert_eq!(op.read("p/a").await.unwrap().to_vec(), data, "fired once");
        assert_eq!(plan.disarm(), 1);

        // Past the end of the read: its last byte.
        plan.arm(FaultSpec::new(Fault::ReadBitFlip { at: 1000 }, "p/"));
        let got = op.read_with("p/a").range(0..4).await.unwrap().to_vec();
        assert_eq!(got, [0, 0, 0, 1]);
    }

    #[tokio::test]
    async fn bit_flips_on_write_corrupt_the_stored_object() {
        let plan = FaultPlan::new();
        let op = op(&plan);
        plan.arm(FaultSpec::new(Fault::WriteBitFlip { at: 12 }, "p/").skip(1));
        op.write("p/skipped", vec![0u8; 20]).await.unwrap();
        op.write("p/short", vec![0u8; 10]).await.unwrap();
        assert_eq!(
            plan.fired(),
            0,
            "an object ending before the byte is intact"
        );
        let mut w = op.writer("p/a").await.unwrap();
        w.write(vec![0u8; 10]).await.unwrap();
        w.write(vec![0u8; 10]).await.unwrap();
        w.close().await.unwrap();
        assert_eq!(plan.disarm(), 1);
        let mut want = vec![0u8; 20];
        want[12] = 1;
        assert_eq!(op.read("p/a").await.unwrap().to_vec(), want);
        assert_eq!(op.read("p/skipped").await.unwrap().to_vec(), vec![0u8; 20]);
        assert_eq!(op.read("p/short").await.unwrap().to_vec(), vec![0u8; 10]);
    }
}
