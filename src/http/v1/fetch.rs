//! `GET|HEAD …/artifacts/{id}`: verified bytes with a single `Range`
//! (RFC 9110 §14), `ETag` / `If-None-Match` / `If-Range`, and the
//! representation digests (`Repr-Digest`, RFC 9530; `X-Eden-Blake3`).
//!
//! Invariant 6: bytes come from `Engine::read_range`, which checks every
//! chunk before it is sent. The first verified batch is awaited before the
//! status goes out, so early corruption is a 500 rather than a cut body; a
//! failure later cuts the body short of its `Content-Length`.
//! Invariant 4: the ACL is checked before anything about the artifact —
//! even a 304 or a 416 — is answered.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use bytes::Bytes;
use futures_util::{StreamExt, stream};

use super::dto::base64;
use super::{AppState, artifact_error, artifact_id, engine};
use crate::http::auth::Caller;
use crate::http::problem::{ApiError, ProblemType};
use crate::meta::records::ArtifactRecord;

/// What a `Range` header asks of a representation of `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// No (usable) range: send everything with 200.
    Full,
    /// Bytes `[start, end)` with 206.
    Part(u64, u64),
    /// Nothing of it exists: 416.
    Unsatisfiable,
}

/// Interprets a `Range` header value (single range; RFC 9110 §14.1.2).
/// Anything malformed, another unit, or several ranges is ignored (200).
pub fn parse_range(value: &str, size: u64) -> RangeAsk {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAsk::Full;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return RangeAsk::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeAsk::Full;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix range: the last N bytes.
        if !digits(last) {
            return RangeAsk::Full;
        }
        let n = last.parse::<u64>().unwrap_or(u64::MAX);
        return match (n, size) {
            (0, _) => RangeAsk::Unsatisfiable,
            // An empty representation has no bytes to range over.
            (_, 0) => RangeAsk::Full,
            _ => RangeAsk::Part(size - n.min(size), size),
        };
    }
    if !digits(first) || !(last.is_empty() || digits(last)) {
        return RangeAsk::Full;
    }
    let Ok(start) = first.parse::<u64>() else {
        return RangeAsk::Unsatisfiable; // beyond any size
    };
    let end_incl = if last.is_empty() {
        u64::MAX
    } else {
        last.parse::<u64>().unwrap_or(u64::MAX)
    };
    if end_incl < start {
        return RangeAsk::Full; // invalid range-spec: ignored
    }
    if start >= size {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::Part(start, end_incl.min(size - 1) + 1)
}

/// Whether an `If-None-Match` / `If-Range` list names `etag` (weak
/// comparison for If-None-Match, as RFC 9110 §13.1.2 requires).
fn etag_listed(value: &str, etag: &str) -> bool {
    value
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

fn etag_of(rec: &ArtifactRecord) -> String {
    format!("\"blake3:{}\"", rec.blake3.to_hex())
}

/// The headers every 200/206/304 carries.
fn common_headers(b: &mut HttpResponseBuilder, id: &str, rec: &ArtifactRecord) {
    b.insert_header((header::ETAG, etag_of(rec)))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header(("repr-digest", format!("sha-256=:{}:", base64(&rec.sha256))))
        .insert_header(("x-eden-blake3", rec.blake3.to_hex()))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{id}\""),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
}

/// `GET|HEAD …/artifacts/{id}`.
pub async fn fetch(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let engine = engine(&state).clone();
    let id = artifact_id(&req).map_err(at)?;
    let id_str = id.to_string();
    let artifact = engine
        .readable_artifact(caller.experiment, &caller.principal, &id)
        .await
        .map_err(|e| at(artifact_error(e)))?;
    let record = artifact.record();
    let etag = etag_of(record);
    let header_value = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if header_value(header::IF_NONE_MATCH).is_some_and(|v| etag_listed(&v, &etag)) {
        let mut b = HttpResponse::NotModified();
        common_headers(&mut b, &id_str, record);
        return Ok(b.finish());
    }
    // If-Range: honour Range only while the client's validator is current
    // (strong comparison; our ETags are strong and never change for an id).
    let range_applies = header_value(header::IF_RANGE).is_none_or(|v| v.trim() == etag);
    let ask = match header_value(header::RANGE) {
        Some(r) if range_applies => parse_range(&r, record.size),
        _ => RangeAsk::Full,
    };
    let (status, start, end) = match ask {
        RangeAsk::Full => (StatusCode::OK, 0, record.size),
        RangeAsk::Part(s, e) => (StatusCode::PARTIAL_CONTENT, s, e),
        RangeAsk::Unsatisfiable => {
            let cr = HeaderValue::from_str(&format!("bytes */{}", record.size))
                .map_err(|_| at(ApiError::new(ProblemType::Internal, "internal error")))?;
            return Err(at(ApiError::new(
                ProblemType::RangeNotSatisfiable,
                format!("the range is outside the artifact's {} bytes", record.size),
            )
            .with_header(header::CONTENT_RANGE, cr)));
        }
    };
    let content_type = HeaderValue::from_str(&record.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let mut b = HttpResponse::build(status);
    common_headers(&mut b, &id_str, record);
    b.insert_header((header::CONTENT_TYPE, content_type));
    if status == StatusCode::PARTIAL_CONTENT {
        b.insert_header((
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{}", end - 1, record.size),
        ));
    }
    let len = end - start;
    if req.method() == Method::HEAD {
        return Ok(b
            .no_chunking(len)
            .streaming(stream::empty::<Result<Bytes, actix_web::Error>>()));
    }
    let mut body = engine.read_range(&artifact, start, end);
    // Verify the first batch before committing to a status.
    let first = match body.next().await {
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(e)) => return Err(at(e.into())),
        None => None,
    };
    let rest = body.map(|item| {
        item.map_err(|e| {
            // Headers are gone: the only honest signal left is to cut the body short.
            actix_web::error::ErrorInternalServerError(format!("read aborted: {e}"))
        })
    });
    let stream = stream::iter(first.map(Ok::<Bytes, actix_web::Error>)).chain(rest);
    Ok(b.no_chunking(len).streaming(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc9110() {
        use RangeAsk::*;
        assert_eq!(parse_range("bytes=0-0", 10), Part(0, 1));
        assert_eq!(parse_range("bytes=2-5", 10), Part(2, 6));
        assert_eq!(parse_range("bytes=2-", 10), Part(2, 10));
        assert_eq!(parse_range("bytes=9-100", 10), Part(9, 10));
        assert_eq!(parse_range("bytes=-3", 10), Part(7, 10));
        assert_eq!(parse_range("bytes=-30", 10), Part(0, 10));
        assert_eq!(parse_range("bytes=10-", 10), Unsatisfiable);
        assert_eq!(parse_range("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 10), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), Full);
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 10),
            Unsatisfiable
        );
        // Ignored: other units, several ranges, nonsense, inverted.
        assert_eq!(parse_range("items=0-1", 10), Full);
        assert_eq!(parse_range("bytes=0-1,3-4", 10), Full);
        assert_eq!(parse_range("bytes=a-b", 10), Full);
        assert_eq!(parse_range("bytes=5-2", 10), Full);
        assert_eq!(parse_range("bytes=-", 10), Full);
    }

    #[test]
    fn etag_lists() {
        let e = "\"blake3:ab\"";
        assert!(etag_listed("\"blake3:ab\"", e));
        assert!(etag_listed("\"x\", W/\"blake3:ab\"", e));
        assert!(etag_listed("*", e));
        assert!(!etag_listed("\"blake3:ac\"", e));
    }
}
