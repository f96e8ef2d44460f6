//! v0 deposit (multipart) and fetch (`?uri=`) — EDEN 07 §16.
//!
//! The deposit streams the `file` part straight into the engine; the size cap
//! is enforced as bytes arrive. The artifact is committed only after the
//! multipart body is known to hold exactly one part, so a rejected request
//! leaves nothing visible.

use std::time::{Duration, Instant};

use actix_multipart::{Field, Multipart};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::{StreamExt, stream};

use super::{AppState, authorize, engine};
use crate::engine::ingest::parse_artifact_id;
use crate::engine::{DepositRequest, EngineError};
use crate::http::problem::ApiError;
use crate::http::query;

/// URI scheme and path prefix of artifact URIs.
pub const URI_PREFIX: &str = "eden://artifacts/";

/// After an oversize upload, read and discard at most this much more before
/// answering, so an HTTP/1.1 client that is still sending sees the 413.
const DRAIN_BYTES: u64 = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Keeps visible ASCII and spaces, then trims; empty → `application/octet-stream`.
pub fn sanitize_content_type(raw: Option<&[u8]>) -> String {
    let kept: String = raw
        .unwrap_or_default()
        .iter()
        .filter(|b| (0x20..=0x7e).contains(*b))
        .map(|&b| b as char)
        .collect();
    let trimmed = kept.trim();
    if trimmed.is_empty() {
        "application/octet-stream".to_string()
    } else {
        trimmed.to_string()
    }
}

fn malformed() -> ApiError {
    ApiError::bad_request(
        "the body must be multipart/form-data with exactly one part named \"file\" that has a filename",
    )
}

async fn drain(mut field: Field, mp: &mut Multipart) {
    let (start, mut seen) = (Instant::now(), 0u64);
    while seen < DRAIN_BYTES && start.elapsed() < DRAIN_TIME {
        match field.next().await {
            Some(Ok(b)) => seen += b.len() as u64,
            _ => break,
        }
    }
    drop(field);
    while seen < DRAIN_BYTES && start.elapsed() < DRAIN_TIME {
        match mp.next().await {
            Some(Ok(mut f)) => {
                while let Some(Ok(b)) = f.next().await {
                    seen += b.len() as u64;
                }
            }
            _ => break,
        }
    }
}

/// `POST …/artifacts`: 201 `{artifacts_uri, size_bytes, content_type}`.
pub async fn deposit(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let caller = authorize(&req, engine(&state)).await.map_err(at)?;
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
    let mut mp = Multipart::new(req.headers(), payload);
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

    let engine = engine(&state).clone();
    let mut ingest = engine.begin_ingest().map_err(|e| at(e.into()))?;
    while let Some(part) = field.next().await {
        let bytes = match part {
            Ok(b) => b,
            Err(_) => {
                ingest.abort().await;
                return Err(at(malformed()));
            }
        };
        if let Err(e) = ingest.push(bytes).await {
            ingest.abort().await;
            if matches!(e, EngineError::TooLarge { .. }) {
                drain(field, &mut mp).await;
            }
            return Err(at(e.into()));
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
                experiment: caller.experiment.clone(),
                created_by: caller.principal.to_string(),
                content_type: content_type.clone(),
                filename,
                expires_at: None,
            },
        )
        .await
        .map_err(|e| at(e.into()))?;
    let body = serde_json::json!({
        "artifacts_uri": format!("{URI_PREFIX}{}", receipt.id),
        "size_bytes": receipt.record.size,
        "content_type": content_type,
    });
    Ok(HttpResponse::Created()
        .content_type("application/json")
        .body(body.to_string()))
}

/// `GET …/artifacts?uri=…`: the exact bytes, verified as they stream.
pub async fn fetch(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let caller = authorize(&req, engine(&state)).await.map_err(at)?;
    let uri = query::get(req.query_string(), "uri")
        .map_err(|e| at(ApiError::bad_request(e.to_string())))?
        .ok_or_else(|| at(ApiError::bad_request("the uri query parameter is required")))?;
    let id_str = uri.strip_prefix(URI_PREFIX).ok_or_else(|| {
        at(ApiError::not_found(
            "not an eden://artifacts/ URI of this store",
        ))
    })?;
    let id =
        parse_artifact_id(id_str).ok_or_else(|| at(ApiError::not_found("no such artifact")))?;
    let engine = engine(&state).clone();
    let record = engine
        .artifact(&caller.experiment, &id)
        .await
        .map_err(|e| at(e.into()))?
        .ok_or_else(|| at(ApiError::not_found("no such artifact in this experiment")))?;
    engine
        .check_read(&caller.experiment, &caller.principal, &record)
        .await
        .map_err(|e| at(e.into()))?;

    let mut body = engine.read_range(&record, 0, record.size);
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
