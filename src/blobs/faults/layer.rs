//! The opendal side of fault injection: [`FaultLayer`] wraps the backend
//! service so that each read and write asks the shared [`FaultPlan`]
//! whether to fail, cut or corrupt it (see the parent module for the
//! faults and how they are counted).

use std::fmt;
use std::sync::Arc;

use opendal::raw::oio;
use opendal::raw::{
    Layer, OpCompose, OpCopy, OpCreateDir, OpList, OpPresign, OpRead, OpRename, OpRestore, OpStat,
    OpWrite, RpCreateDir, RpPresign, RpRead, RpRename, RpRestore, RpStat, Service, ServiceInfo,
    Servicer,
};
use opendal::{
    Buffer, BytesRange, Capability, Error, ErrorKind, Metadata, OperationContext, Result,
};

use super::{Fault, FaultPlan, Point, Ticket};

pub(super) fn injected(t: &Ticket, op: &'static str, path: &str) -> Error {
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
