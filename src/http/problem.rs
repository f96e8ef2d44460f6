//! problem+json errors (RFC 9457) and the mapping from engine errors to
//! HTTP statuses. The only place that decides statuses.
//!
//! On `/v0/` only the closed EDEN vocabulary appears; `/cas/v1/` adds the
//! `eden-cas://error/…` types of `docs/api.md` (ranges, uploads), which only
//! its engine calls can produce. Server faults (5xx) have no EDEN type; they
//! answer `about:blank` (RFC 9457: "no additional semantics") with a fixed
//! detail, never the internal message, which goes to the log instead.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use crate::api::problem::Problem;
use crate::engine::EngineError;

/// The error vocabulary: EDEN's closed set plus server faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemType {
    /// 400 `bad-request`.
    BadRequest,
    /// 400 `experiment-id-mismatch`.
    ExperimentIdMismatch,
    /// 401 `unauthorized`.
    Unauthorized,
    /// 403 `forbidden`.
    Forbidden,
    /// 404 `not-found`.
    NotFound,
    /// 413 `payload-too-large`.
    PayloadTooLarge,
    /// 409 `already-exists`.
    AlreadyExists,
    /// 409 `reserved-identifier`.
    ReservedIdentifier,
    /// 409 `cycle-detected`.
    CycleDetected,
    /// 422 `invalid-name`.
    InvalidName,
    /// 416 `eden-cas://error/range-not-satisfiable` (`/cas/v1/`).
    RangeNotSatisfiable,
    /// 422 `eden-cas://error/chunk-mismatch` (`/cas/v1/`).
    ChunkMismatch,
    /// 409 `eden-cas://error/chunks-missing` (`/cas/v1/`).
    ChunksMissing,
    /// 422 `eden-cas://error/digest-mismatch` (`/cas/v1/`).
    DigestMismatch,
    /// 410 `eden-cas://error/session-expired` (`/cas/v1/`).
    SessionExpired,
    /// 507 `eden-cas://error/quota-exceeded` (`/cas/v1/`; `/v0/` answers
    /// 413 `payload-too-large`).
    QuotaExceeded,
    /// 412 `eden-cas://error/precondition-failed` (`/cas/v1/` references).
    PreconditionFailed,
    /// 428 `eden-cas://error/precondition-required` (`/cas/v1/` references).
    PreconditionRequired,
    /// 500, `about:blank`.
    Internal,
    /// 503, `about:blank`.
    Unavailable,
}

impl ProblemType {
    /// The `type` URI.
    pub fn uri(self) -> &'static str {
        match self {
            ProblemType::BadRequest => "eden://error/bad-request",
            ProblemType::ExperimentIdMismatch => "eden://error/experiment-id-mismatch",
            ProblemType::Unauthorized => "eden://error/unauthorized",
            ProblemType::Forbidden => "eden://error/forbidden",
            ProblemType::NotFound => "eden://error/not-found",
            ProblemType::PayloadTooLarge => "eden://error/payload-too-large",
            ProblemType::AlreadyExists => "eden://error/already-exists",
            ProblemType::ReservedIdentifier => "eden://error/reserved-identifier",
            ProblemType::CycleDetected => "eden://error/cycle-detected",
            ProblemType::InvalidName => "eden://error/invalid-name",
            ProblemType::RangeNotSatisfiable => "eden-cas://error/range-not-satisfiable",
            ProblemType::ChunkMismatch => "eden-cas://error/chunk-mismatch",
            ProblemType::ChunksMissing => "eden-cas://error/chunks-missing",
            ProblemType::DigestMismatch => "eden-cas://error/digest-mismatch",
            ProblemType::SessionExpired => "eden-cas://error/session-expired",
            ProblemType::QuotaExceeded => "eden-cas://error/quota-exceeded",
            ProblemType::PreconditionFailed => "eden-cas://error/precondition-failed",
            ProblemType::PreconditionRequired => "eden-cas://error/precondition-required",
            ProblemType::Internal | ProblemType::Unavailable => "about:blank",
        }
    }

    /// The fixed `title`.
    pub fn title(self) -> &'static str {
        match self {
            ProblemType::BadRequest => "Bad Request",
            ProblemType::ExperimentIdMismatch => "Experiment ID Mismatch",
            ProblemType::Unauthorized => "Unauthorized",
            ProblemType::Forbidden => "Forbidden",
            ProblemType::NotFound => "Not Found",
            ProblemType::PayloadTooLarge => "Payload Too Large",
            ProblemType::AlreadyExists => "Already Exists",
            ProblemType::ReservedIdentifier => "Reserved Identifier",
            ProblemType::CycleDetected => "Cycle Detected",
            ProblemType::InvalidName => "Invalid Name",
            ProblemType::RangeNotSatisfiable => "Range Not Satisfiable",
            ProblemType::ChunkMismatch => "Chunk Mismatch",
            ProblemType::ChunksMissing => "Chunks Missing",
            ProblemType::DigestMismatch => "Digest Mismatch",
            ProblemType::SessionExpired => "Session Expired",
            ProblemType::QuotaExceeded => "Quota Exceeded",
            ProblemType::PreconditionFailed => "Precondition Failed",
            ProblemType::PreconditionRequired => "Precondition Required",
            ProblemType::Internal => "Internal Server Error",
            ProblemType::Unavailable => "Service Unavailable",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ProblemType::BadRequest | ProblemType::ExperimentIdMismatch => StatusCode::BAD_REQUEST,
            ProblemType::Unauthorized => StatusCode::UNAUTHORIZED,
            ProblemType::Forbidden => StatusCode::FORBIDDEN,
            ProblemType::NotFound => StatusCode::NOT_FOUND,
            ProblemType::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemType::AlreadyExists
            | ProblemType::ReservedIdentifier
            | ProblemType::CycleDetected
            | ProblemType::ChunksMissing => StatusCode::CONFLICT,
            ProblemType::InvalidName | ProblemType::ChunkMismatch | ProblemType::DigestMismatch => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ProblemType::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            ProblemType::SessionExpired => StatusCode::GONE,
            ProblemType::QuotaExceeded => StatusCode::INSUFFICIENT_STORAGE,
            ProblemType::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ProblemType::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            ProblemType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ProblemType::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// An error answer: a problem type, a client-safe detail and the request URL.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The problem type.
    pub kind: ProblemType,
    /// Human-readable, client-safe explanation.
    pub detail: String,
    /// The request URL (`instance`), filled in by [`ApiError::at`].
    pub instance: Option<String>,
    /// Extra response headers (e.g. `Content-Range` on a 416).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.uri(), self.detail)
    }
}

impl ApiError {
    /// An error of `kind` with `detail`.
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        ApiError {
            kind,
            detail: detail.into(),
            instance: None,
            headers: Vec::new(),
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// 400 `bad-request`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ProblemType::BadRequest, detail)
    }

    /// 404 `not-found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ProblemType::NotFound, detail)
    }

    /// 403 `forbidden`.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ProblemType::Forbidden, detail)
    }

    /// Records the request URL as `instance`.
    pub fn at(mut self, req: &HttpRequest) -> Self {
        self.instance = Some(request_url(req));
        self
    }
}

/// The URL as the client sent it: scheme, Host, path and query.
pub fn request_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}{}", info.scheme(), info.host(), req.uri())
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.kind.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.kind.status();
        let body = Problem {
            kind: self.kind.uri().to_string(),
            title: self.kind.title().to_string(),
            status: status.as_u16(),
            detail: self.detail.clone(),
            instance: self.instance.clone(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = HttpResponse::build(status);
        resp.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        for (name, value) in &self.headers {
            // `Connection: close` (see `body::closing`) is the response
            // head's connection type, not a header actix would send.
            if name == header::CONNECTION {
                resp.force_close();
                continue;
            }
            resp.insert_header((name.clone(), value.clone()));
        }
        resp.body(json)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound => ApiError::not_found("no such resource in this experiment"),
            EngineError::Forbidden => {
                ApiError::forbidden("the caller may not access this resource")
            }
            EngineError::Unauthorized => ApiError::new(
                ProblemType::Unauthorized,
                "missing, malformed or invalid bearer credential",
            ),
            EngineError::TooLarge { limit } => ApiError::new(
                ProblemType::PayloadTooLarge,
                format!("the artifact exceeds the maximum of {limit} bytes"),
            ),
            EngineError::BadRequest(d) => ApiError::bad_request(d),
            EngineError::InvalidName(why) => {
                ApiError::new(ProblemType::InvalidName, format!("invalid name: {why}"))
            }
            EngineError::Reserved => {
                ApiError::new(ProblemType::ReservedIdentifier, "the name is reserved")
            }
            EngineError::Cycle => ApiError::new(
                ProblemType::CycleDetected,
                "the change would make group membership cyclic",
            ),
            EngineError::AlreadyExists => {
                ApiError::new(ProblemType::AlreadyExists, "the resource already exists")
            }
            EngineError::PreconditionFailed => ApiError::new(
                ProblemType::PreconditionFailed,
                "the reference is not in the state the request's condition names",
            ),
            EngineError::SessionEnded(why) => ApiError::new(ProblemType::SessionExpired, why),
            EngineError::LeaseLost(_) => ApiError::new(
                ProblemType::Unavailable,
                "this server no longer holds the blob store lease and is stopping",
            ),
            EngineError::ChunkMismatch(why) => ApiError::new(ProblemType::ChunkMismatch, why),
            EngineError::ChunksMissing { first, total } => {
                let ids: Vec<String> = first.iter().map(|d| d.to_hex()).collect();
                ApiError::new(
                    ProblemType::ChunksMissing,
                    format!(
                        "{total} listed chunks are not present for this session; first: {}",
                        ids.join(", ")
                    ),
                )
            }
            EngineError::DigestMismatch { claimed, actual } => ApiError::new(
                ProblemType::DigestMismatch,
                format!("the content hashes to blake3:{actual}, not the claimed blake3:{claimed}"),
            ),
            // Only the configured quota: what the experiment holds includes
            // artifacts the caller may not read (invariant 4).
            EngineError::QuotaExceeded { limit, .. } => ApiError::new(
                ProblemType::QuotaExceeded,
                format!("the experiment's quota of {limit} bytes cannot hold this upload"),
            ),
            EngineError::BatchTooLarge { limit } => ApiError::new(
                ProblemType::PayloadTooLarge,
                format!("the chunk batch exceeds the maximum of {limit}"),
            ),
            EngineError::Integrity(detail) => {
                tracing::error!(%detail, "integrity failure");
                ApiError::new(
                    ProblemType::Internal,
                    "stored data failed verification; the operator has been alerted",
                )
            }
            other => {
                tracing::error!(error = %other, "internal error");
                ApiError::new(ProblemType::Internal, "internal error; see the server log")
            }
        }
    }
}
