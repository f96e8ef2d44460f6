//! Request bodies under bounds: the [`Body`] extractor every handler that
//! reads a body takes instead of `web::Payload`.
//!
//! - Every read has an idle deadline (`body-idle-timeout`): a client that
//!   stops sending mid-body gets a 400 and the connection is closed, so a
//!   stalled upload cannot hold a handler, its ingest state, pins or
//!   buffers.
//! - A declared `Content-Length` above the route's limit is refused before
//!   a byte of the body is read ([`Body::check_declared`]).
//! - An answer given before the body was read to its end closes the
//!   connection ([`closing`]): the answer goes out at once and the server
//!   never waits on the rest of a body it will not use. (actix-http then
//!   lingers for `CLIENT_DISCONNECT` discarding what is still in flight, so
//!   a client that is still sending can read the answer.)

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpRequest, web};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use super::AppState;
use super::problem::{ApiError, ProblemType};

/// Default `body-idle-timeout`.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Marks an error answer as ending the connection (`Connection: close`):
/// for answers given before the request body was read to its end.
pub fn closing(e: ApiError) -> ApiError {
    e.with_header(header::CONNECTION, HeaderValue::from_static("close"))
}

/// The 400 a stalled body answers.
fn stalled(idle: Duration) -> ApiError {
    closing(ApiError::bad_request(format!(
        "the request body stalled: no byte arrived for {} (body-idle-timeout)",
        humantime::format_duration(idle)
    )))
}

/// A request body whose every read has an idle deadline.
pub struct Body {
    inner: IdleStream,
    declared: Option<u64>,
}

impl FromRequest for Body {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let idle = req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.body_idle_timeout)
            .unwrap_or(DEFAULT_BODY_IDLE_TIMEOUT);
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        ready(Ok(Body {
            inner: IdleStream::new(payload.take(), idle),
            declared,
        }))
    }
}

impl Body {
    /// The declared `Content-Length`, if any.
    pub fn declared_len(&self) -> Option<u64> {
        self.declared
    }

    /// Refuses a declared `Content-Length` above `limit` before any of the
    /// body is read.
    ///
    /// # Errors
    /// `kind` (413 `payload-too-large` or 400 `bad-request`), closing the
    /// connection.
    pub fn check_declared(&self, limit: u64, kind: ProblemType) -> Result<(), ApiError> {
        match self.declared {
            Some(n) if n > limit => Err(closing(ApiError::new(
                kind,
                format!("the declared body of {n} bytes exceeds the limit of {limit} bytes"),
            ))),
            _ => Ok(()),
        }
    }

    /// The next piece of the body; `None` at its end.
    ///
    /// # Errors
    /// 400 when the body stalls past the idle timeout or cannot be read;
    /// both close the connection.
    pub async fn next(&mut self) -> Option<Result<Bytes, ApiError>> {
        let item = self.inner.next().await?;
        Some(item.map_err(|_| self.error()))
    }

    /// The error answer for a failed read: a stall or a broken body.
    pub fn error(&self) -> ApiError {
        if self.inner.tripped.load(Ordering::Relaxed) {
            stalled(self.inner.idle)
        } else {
            closing(ApiError::bad_request("request body could not be read"))
        }
    }

    /// The body as a stream (for `Multipart`), with a handle that tells
    /// afterwards whether it stalled.
    pub fn into_stream(self) -> (IdleStream, StallFlag) {
        let flag = StallFlag {
            tripped: Arc::clone(&self.inner.tripped),
            idle: self.inner.idle,
        };
        (self.inner, flag)
    }

    /// Reads the whole (small) body; more than `limit` bytes (declared or
    /// received) is an error of type `oversize`.
    ///
    /// # Errors
    /// `oversize` past `limit`; 400 on a stall or a broken body.
    pub async fn read_all(
        mut self,
        limit: usize,
        oversize: ProblemType,
    ) -> Result<Vec<u8>, ApiError> {
        self.check_declared(limit as u64, oversize)?;
        let mut out = Vec::new();
        while let Some(chunk) = self.next().await {
            let chunk = chunk?;
            if out.len() + chunk.len() > limit {
                return Err(closing(ApiError::new(
                    oversize,
                    format!("request body exceeds {limit} bytes"),
                )));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// Tells whether an [`IdleStream`] given away stalled.
#[derive(Clone, Debug)]
pub struct StallFlag {
    tripped: Arc<AtomicBool>,
    idle: Duration,
}

impl StallFlag {
    /// The stall answer, if the stream stalled.
    pub fn error(&self) -> Option<ApiError> {
        self.tripped
            .load(Ordering::Relaxed)
            .then(|| stalled(self.idle))
    }
}

/// The payload with an idle deadline: a read that waits longer than `idle`
/// for the next byte ends the stream with an error.
pub struct IdleStream {
    inner: Payload,
    idle: Duration,
    /// Armed at the first read, so work the handler does before reading
    /// (authentication, session checks) is not counted against the client.
    sleep: Option<Pin<Box<Sleep>>>,
    tripped: Arc<AtomicBool>,
}

impl IdleStream {
    fn new(inner: Payload, idle: Duration) -> Self {
        IdleStream {
            inner,
            idle,
            sleep: None,
            tripped: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Stream for IdleStream {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.tripped.load(Ordering::Relaxed) {
            return Poll::Ready(None);
        }
        let idle = this.idle;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(item) => {
                sleep.as_mut().reset(Instant::now() + idle);
                Poll::Ready(item)
            }
            Poll::Pending => match sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.tripped.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "request body idle timeout",
                    )))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// A commit entry is at most ~80 bytes of JSON (with spaces).
const COMMIT_ENTRY_JSON: u64 = 80;

/// Largest commit body: enough JSON for an artifact at the size cap cut
/// into minimum-size chunks (the list is streamed, never held whole, so
/// this bounds work, not memory).
pub fn commit_body_limit(engine: &crate::engine::Engine) -> u64 {
    let cfg = engine.config();
    let max_entries = cfg.max_artifact_bytes / u64::from(cfg.chunker.min_bytes.max(1)) + 16;
    max_entries.saturating_mul(COMMIT_ENTRY_JSON).max(1 << 20)
}
