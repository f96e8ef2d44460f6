//! v0 deposit (multipart) and fetch (`?uri=`) — EDEN 07 §16.
//!
//! The deposit streams the `file` part straight into the engine; the size cap
//! is enforced as bytes arrive. The artifact is committed only after the
//! multipart body is known to hold exactly one part, so a rejected request
//! leaves nothing visible.

use actix_multipart::Multipart;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::{StreamExt, stream};

use super::{AppState, Caller, engine};
use crate::api::ARTIFACT_URI_PREFIX;
use crate::api::v0::Deposited;
use crate::engine::ingest::parse_artifact_id;
use crate::engine::{DepositRequest, EngineError};
use crate::http::body::closing;
use crate::http::problem::{ApiError, ProblemType};
use crate::http::query;
use crate::http::v1::sanitize_content_type;

/// Room for the multipart framing around the file part (boundaries, part
/// headers with a long filename): a declared body longer than the size cap
/// plus this cannot hold an artifact within the cap.
pub const MULTIPART_OVERHEAD: u64 = 64 << 10;

fn malformed() -> ApiError {
    ApiError::bad_request(
        "the body must be multipart/form-data with exactly one part named \"file\" that has a filename",
    )
}

/// An engine error as `/v0/` answers it: a full quota is the closest type
/// of the closed vocabulary, 413 `payload-too-large`.
fn v0_error(e: EngineError) -> ApiError {
    match e {
        EngineError::QuotaExceeded { limit, .. } => ApiError::new(
            ProblemType::PayloadTooLarge,
            format!("the experiment's quota of {limit} bytes cannot hold this artifact"),
        ),
        other => other.into(),
    }
}

/// `POST …/artifacts`: 201 `{artifacts_uri, size_bytes, content_type}`.
pub async fn deposit(
    req: HttpRequest,
    caller: Caller,
    payload: crate::http::body::Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    // Refused before a byte is read: the body could never fit.
    let engine = engine(&state).clone();
    let cap = engine.config().max_artifact_bytes;
    payload
        .check_declared(
            cap.saturating_add(MULTIPART_OVERHEAD),
            ProblemType::PayloadTooLarge,
        )
        .map_err(at)?;
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    if !is_multipart {
        return Err(at(malformed()));
    }
    let mut quota = engine
        .reserve_deposit(
            caller.experiment,
            payload.declared_len().unwrap_or(0).min(cap),
        )
        .map_err(|e| at(v0_error(e)))?;
    let (stream, stall) = payload.into_stream();
    // A stalled body reads as a broken multipart stream; say which.
    let malformed = || closing(stall.error().unwrap_or_else(malformed));
    let mut mp = Multipart::new(req.headers(), stream);
    let mut field = match mp.next().await {
        Some(Ok(f)) => f,
        _ => return Err(at(malformed())),
    };
    let has_filename = field
        .content_disposition()
        .and_then(|cd| cd.get_filename())
        .is_some();
    if field.name() != Some("file") || !has_filename {
        return Err(at(malformed()));
    }
    let content_type = sanitize_content_type(
        field
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
    );
    let filename = field
        .content_disposition()
        .and_then(|cd| cd.get_filename())
        .filter(|f| !f.is_empty())
        .map(str::to_string);

    let mut ingest = engine.begin_ingest().map_err(|e| at(e.into()))?;
    while let Some(part) = field.next().await {
        let bytes = match part {
            Ok(b) => b,
            Err(_) => {
                ingest.abort().await;
                return Err(at(malformed()));
            }
        };
        let pushed = match quota.grow(ingest.received() + bytes.len() as u64) {
            Ok(()) => ingest.push(bytes).await,
            Err(e) => Err(e),
        };
        if let Err(e) = pushed {
            ingest.abort().await;
            // Answered at once; the rest of the body is never waited for.
            return Err(at(closing(v0_error(e))));
        }
    }
    // Exactly one part: anything after it rejects the whole request. (The
    // field must be dropped first, or the multipart stream waits on it.)
    drop(field);
    match mp.next().await {
        None => {}
        Some(_) => {
            ingest.abort().await;
            return Err(at(malformed()));
        }
    }
    let prepared = ingest.finish().await.map_err(|e| at(e.into()))?;
    let receipt = engine
        .commit_artifact(
            prepared,
            DepositRequest {
                experiment: caller.experiment,
                created_by: caller.principal,
                content_type: content_type.clone(),
                filename,
                expires_at: None,
                labels: Default::default(),
                reference: None,
            },
        )
        .await
        .map_err(|e| at(v0_error(e)))?;
    drop(quota);
    Ok(crate::http::json_response(
        actix_web::http::StatusCode::CREATED,
        &Deposited {
            artifacts_uri: receipt.id.uri(),
            content_type,
            size_bytes: receipt.record.size,
        },
    ))
}

/// `GET …/artifacts?uri=…`: the exact bytes, verified as they stream.
pub async fn fetch(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let uri = query::get(req.query_string(), "uri")
        .map_err(|e| at(ApiError::bad_request(e.to_string())))?
        .ok_or_else(|| at(ApiError::bad_request("the uri query parameter is required")))?;
    let id_str = uri.strip_prefix(ARTIFACT_URI_PREFIX).ok_or_else(|| {
        at(ApiError::not_found(
            "not an eden://artifacts/ URI of this store",
        ))
    })?;
    let id =
        parse_artifact_id(id_str).ok_or_else(|| at(ApiError::not_found("no such artifact")))?;
    let engine = engine(&state).clone();
    let artifact = engine
        .readable_artifact(caller.experiment, &caller.principal, &id)
        .await
        .map_err(|e| at(crate::http::v1::artifact_error(e)))?;
    let record = artifact.record();

    let mut body = engine.read_range(&artifact, 0, record.size);
    // Verify the first batch before committing to a status: small artifacts
    // and early corruption get an error status instead of a cut response.
    let first = match body.next().await {
        Some(Ok(b)) => Some(b),
        Some(Err(e)) => return Err(at(e.into())),
        None => None,
    };
    let content_type = HeaderValue::from_str(&record.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let rest = body.map(|item| {
        item.map_err(|e| {
            // Headers are gone: the only honest signal left is to cut the body short.
            actix_web::error::ErrorInternalServerError(format!("read aborted: {e}"))
        })
    });
    let stream = stream::iter(first.map(Ok::<Bytes, actix_web::Error>)).chain(rest);
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{id_str}\""),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .no_chunking(record.size)
        .streaming(stream))
}
