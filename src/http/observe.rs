//! What every request leaves behind: a request id, a tracing span, one
//! access-log line and its request metrics.
//!
//! [`Observe`] wraps the whole app. For each request it
//!
//! - takes a sane incoming `X-Request-Id` or mints one, returns it in the
//!   `X-Request-Id` header of every answer (problems included) and carries
//!   it in a `request` span around the handler;
//! - counts request body bytes as the handler reads them and response body
//!   bytes as they are sent;
//! - when the answer's body is finished (sent to its end, or dropped
//!   because the client went away), records the request in
//!   [`HttpMetrics`] and writes one access-log line (target
//!   `eden_cas::access`): method, route template, status, bytes in and out,
//!   duration, principal id and request id.
//!
//! Neither the metrics nor the log ever carry a raw path, an artifact or
//! session id, a query or a credential: the route is the *template* actix
//! matched and the principal is `admin`, `metrics`, a worker id (`wkr_…`)
//! or `-`, recorded by `auth.rs` after the bearer was verified.

use std::future::{Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::error::PayloadError;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpMessage, HttpRequest};
use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::LocalBoxFuture;
use tracing::Instrument as _;

use super::metrics::{HttpMetrics, RequestLabels, RouteLabels};

/// The request id header, read and answered.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The tracing target of access-log lines (`RUST_LOG=eden_cas::access=off`
/// silences them).
pub const ACCESS_TARGET: &str = "eden_cas::access";

/// Longest incoming request id taken as is.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of one request, as sent in `X-Request-Id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// The incoming `X-Request-Id` when it is sane (1 to 128 characters of
    /// `A-Z a-z 0-9 - _ . :`), else a fresh ULID. Anything else a client
    /// sends is replaced, so a log line can never be forged through it.
    pub fn from_header(value: Option<&HeaderValue>) -> RequestId {
        let sane = |s: &str| {
            !s.is_empty()
                && s.len() <= MAX_REQUEST_ID_LEN
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        };
        match value.and_then(|v| v.to_str().ok()) {
            Some(s) if sane(s) => RequestId(s.to_owned()),
            _ => RequestId(ulid::Ulid::new().to_string()),
        }
    }
}

/// Who made the request, once `auth.rs` verified the bearer: `admin`,
/// `metrics` or a worker id. Never a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrincipalId(pub String);

/// Records the verified principal of `req` for the access log.
pub fn note_principal(req: &HttpRequest, id: &str) {
    req.extensions_mut().insert(PrincipalId(id.to_owned()));
}

/// The method label: a standard method, or `other` (a client cannot mint
/// label values).
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `2xx` and so on.
pub fn status_class(s: StatusCode) -> &'static str {
    match s.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// The middleware (`App::wrap`).
#[derive(Clone)]
pub struct Observe {
    metrics: HttpMetrics,
}

impl Observe {
    /// Records into `metrics`.
    pub fn new(metrics: HttpMetrics) -> Observe {
        Observe { metrics }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Observe
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + Unpin + 'static,
{
    type Response = ServiceResponse<Observed<B>>;
    type Error = actix_web::Error;
    type Transform = ObserveService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ObserveService {
            service: Rc::new(service),
            metrics: self.metrics.clone(),
        }))
    }
}

/// The middleware's service.
pub struct ObserveService<S> {
    service: Rc<S>,
    metrics: HttpMetrics,
}

impl<S, B> Service<ServiceRequest> for ObserveService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + Unpin + 'static,
{
    type Response = ServiceResponse<Observed<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let id = RequestId::from_header(req.headers().get(REQUEST_ID_HEADER));
        let method = method_label(req.method());
        // Route and status are recorded once routing has answered (an
        // exported trace shows them; the access line has them too).
        let span = tracing::info_span!(
            "request",
            request_id = %id.0,
            method,
            route = tracing::field::Empty,
            status = tracing::field::Empty
        );
        let recorder = span.clone();
        req.extensions_mut().insert(id.clone());
        let bytes_in = Arc::new(AtomicU64::new(0));
        let payload = req.take_payload();
        req.set_payload(Payload::Stream {
            payload: Box::pin(CountIn {
                inner: payload,
                n: bytes_in.clone(),
            }),
        });
        self.metrics.in_flight.inc();
        let metrics = self.metrics.clone();
        let service = self.service.clone();
        Box::pin(async move {
            let mut finish = Finish {
                metrics,
                started,
                method,
                route: "unmatched".to_owned(),
                status: StatusCode::INTERNAL_SERVER_ERROR,
                principal: "-".to_owned(),
                request_id: id.0,
                bytes_in,
                bytes_out: 0,
            };
            // Handlers and extractors turn their errors into answers; an
            // `Err` here comes from the framework itself and is answered
            // by actix-http. It is still counted and logged (on drop).
            let mut res = match service.call(req).instrument(span).await {
                Ok(res) => res,
                Err(e) => {
                    finish.status = e.error_response().status();
                    return Err(e);
                }
            };
            if let Ok(v) = HeaderValue::from_str(&finish.request_id) {
                res.headers_mut()
                    .insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
            }
            let request = res.request();
            if let Some(route) = request.match_pattern() {
                finish.route = route;
            }
            if let Some(p) = request.extensions().get::<PrincipalId>() {
                finish.principal = p.0.clone();
            }
            finish.status = res.status();
            recorder.record("route", finish.route.as_str());
            recorder.record("status", finish.status.as_u16());
            Ok(res.map_body(|_, body| Observed {
                inner: body,
                finish: Some(finish),
            }))
        })
    }
}

/// Counts request body bytes as the handler reads them.
struct CountIn {
    inner: Payload,
    n: Arc<AtomicU64>,
}

impl Stream for CountIn {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(b))) = &polled {
            self.n.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        polled
    }
}

/// What is recorded when the answer's body is done.
struct Finish {
    metrics: HttpMetrics,
    started: Instant,
    method: &'static str,
    route: String,
    status: StatusCode,
    principal: String,
    request_id: String,
    bytes_in: Arc<AtomicU64>,
    bytes_out: u64,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        let m = &self.metrics;
        let labels = RequestLabels {
            method: self.method,
            route: self.route.clone(),
            status: status_class(self.status),
        };
        m.requests.get_or_create(&labels).inc();
        m.duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        let route = RouteLabels {
            method: self.method,
            route: std::mem::take(&mut self.route),
        };
        m.bytes_in.get_or_create(&route).inc_by(bytes_in);
        m.bytes_out.get_or_create(&route).inc_by(self.bytes_out);
        m.in_flight.dec();
        tracing::info!(
            target: ACCESS_TARGET,
            parent: None,
            request_id = %self.request_id,
            method = self.method,
            route = %route.route,
            status = self.status.as_u16(),
            bytes_in,
            bytes_out = self.bytes_out,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            principal = %self.principal,
            "request"
        );
    }
}

/// A response body that counts its bytes and, when finished or dropped,
/// records the request ([`Finish`]).
pub struct Observed<B> {
    inner: B,
    finish: Option<Finish>,
}

impl<B: MessageBody + Unpin> MessageBody for Observed<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(b))) => {
                if let Some(f) = this.finish.as_mut() {
                    f.bytes_out += b.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => drop(this.finish.take()),
            Poll::Pending => {}
        }
        polled
    }
}
