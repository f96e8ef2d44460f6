//! `/cas/v1/` upload sessions: create, missing-chunk negotiation, framed
//! chunk batches, commit, status and abandon. The engine owns the session
//! (`engine/uploads.rs`); these handlers parse and translate.
//!
//! Invariant 4: the "missing" answer and `stored_new` come from the engine's
//! creator-scoped presence check, never from the global chunk index.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::commit_body;
use super::dto::{check_filename, parse_ttl, sanitize_content_type};
use super::{AppState, created, engine, json, parse_json, read_body};
use crate::api::v1::{self as api, Chunker, Session};
use crate::engine::EngineError;
use crate::engine::uploads::{MAX_MISSING_QUERY, MAX_STATUS_IDS, SessionView, parse_session_id};
use crate::hash::Digest;
use crate::http::auth::Caller;
use crate::http::body::{closing, commit_body_limit};
use crate::http::problem::{ApiError, ProblemType};
use crate::http::query;
use crate::ids::SessionId;

/// Media type of a chunk batch body.
pub const CHUNKS_MEDIA_TYPE: &str = "application/vnd.eden-cas.chunks";
const MAX_CREATE_BODY: usize = 16 << 10;
/// 10 000 quoted 64-hex ids and separators, with room to spare.
const MAX_MISSING_BODY: usize = 1 << 20;

fn session_id(req: &HttpRequest) -> Result<SessionId, ApiError> {
    req.match_info()
        .get("sid")
        .and_then(parse_session_id)
        .ok_or_else(|| ApiError::not_found("no such upload session"))
}

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::bad_request(format!(
            "{s:?} is not a chunk id (64 lowercase hex)"
        )));
    }
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("{s:?} is not a chunk id (64 lowercase hex)")))
}

fn chunker_view(v: &SessionView) -> Chunker {
    let c = v.record.chunker;
    Chunker {
        algorithm: crate::chunking::FASTCDC_2020.to_string(),
        avg_bytes: c.avg_bytes,
        max_bytes: c.max_bytes,
        min_bytes: c.min_bytes,
        normalization: c.normalization,
    }
}

fn session_view(v: &SessionView) -> Session {
    Session {
        chunker: chunker_view(v),
        created_at: v.record.created_at.to_rfc3339(),
        expires_at: v.expires_at.to_rfc3339(),
        max_batch_bytes: v.max_batch_bytes,
        max_bytes: v.max_bytes,
        session_id: v.id.to_string(),
        size: v.record.claimed_size,
    }
}

/// `POST …/uploads` → 201 session.
pub async fn create(
    req: HttpRequest,
    caller: Caller,
    payload: crate::http::body::Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let body: api::SessionRequest =
        parse_json(&read_body(payload, MAX_CREATE_BODY).await.map_err(at)?).map_err(at)?;
    let request = crate::engine::uploads::SessionRequest {
        content_type: sanitize_content_type(body.content_type.as_deref().map(str::as_bytes)),
        filename: body
            .filename
            .as_deref()
            .map(check_filename)
            .transpose()
            .map_err(at)?,
        artifact_ttl: body
            .expires_in
            .as_deref()
            .map(parse_ttl)
            .transpose()
            .map_err(at)?,
        claimed_size: body.size,
    };
    let view = engine(&state)
        .create_upload(caller.experiment, &caller.principal, request)
        .await
        .map_err(|e| at(e.into()))?;
    let location = format!(
        "/cas/v1/experiments/{}/uploads/{}",
        caller.experiment, view.id
    );
    let mut answer = json(StatusCode::CREATED, &session_view(&view));
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        answer.headers_mut().insert(header::LOCATION, v);
    }
    Ok(answer)
}

/// `POST …/uploads/{S}/missing` `{"chunks"}` → `{"missing"}` in request order.
pub async fn missing(
    req: HttpRequest,
    caller: Caller,
    payload: crate::http::body::Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let sid = session_id(&req).map_err(at)?;
    let body: api::MissingRequest =
        parse_json(&read_body(payload, MAX_MISSING_BODY).await.map_err(at)?).map_err(at)?;
    if body.chunks.len() > MAX_MISSING_QUERY {
        return Err(at(ApiError::bad_request(format!(
            "at most {MAX_MISSING_QUERY} chunk ids per query"
        ))));
    }
    let ids = body
        .chunks
        .iter()
        .map(|s| parse_digest(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(at)?;
    let missing = engine(&state)
        .upload_missing(caller.experiment, &caller.principal, &sid, ids)
        .await
        .map_err(|e| at(e.into()))?;
    let missing = missing.iter().map(Digest::to_hex).collect();
    Ok(json(StatusCode::OK, &api::Missing { missing }))
}

/// `PUT …/uploads/{S}/chunks` (framed body) → `{"received","stored_new"}`.
pub async fn chunks(
    req: HttpRequest,
    caller: Caller,
    mut payload: crate::http::body::Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let sid = session_id(&req).map_err(at)?;
    let engine = engine(&state).clone();
    payload
        .check_declared(engine.max_batch_bytes(), ProblemType::PayloadTooLarge)
        .map_err(at)?;
    let media = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if media.as_deref() != Some(CHUNKS_MEDIA_TYPE) {
        return Err(at(ApiError::bad_request(format!(
            "a chunk batch is sent as Content-Type: {CHUNKS_MEDIA_TYPE}"
        ))));
    }
    let mut batch = engine
        .begin_chunk_batch(caller.experiment, &caller.principal, &sid)
        .await
        .map_err(|e| at(e.into()))?;
    let mut complete = true;
    while let Some(part) = payload.next().await {
        let bytes = match part {
            Ok(b) => b,
            Err(e) => {
                // Cut (stalled or broken): nothing of it is pinned.
                batch.abort().await;
                return Err(at(e));
            }
        };
        if let Err(e) = batch.push(bytes).await {
            batch.abort().await;
            return Err(at(closing(e.into())));
        }
        if batch.failed() {
            complete = false;
            break;
        }
    }
    let outcome = batch.finish().await.map_err(|e| {
        let e = at(e.into());
        if complete { e } else { closing(e) }
    })?;
    Ok(json(
        StatusCode::OK,
        &api::BatchReceipt {
            received: outcome.received,
            stored_new: outcome.stored_new,
        },
    ))
}

/// `POST …/uploads/{S}/commit` → 201 `Artifact`.
///
/// The chunk list is checked as the body streams in (`commit_body.rs`), so
/// the commit's memory does not depend on the list's length.
pub async fn commit(
    req: HttpRequest,
    caller: Caller,
    mut payload: crate::http::body::Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let sid = session_id(&req).map_err(at)?;
    let engine = engine(&state).clone();
    let limit = commit_body_limit(&engine);
    payload
        .check_declared(limit, ProblemType::PayloadTooLarge)
        .map_err(at)?;
    let check = engine
        .begin_commit(caller.experiment, &caller.principal, &sid)
        .await
        .map_err(|e| at(e.into()))?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let parser = tokio::task::spawn_blocking(move || {
        commit_body::parse(commit_body::ChannelReader::new(rx), check)
    });
    let (mut seen, mut cut, mut parser_stopped) = (0u64, None, false);
    while let Some(part) = payload.next().await {
        match part {
            Ok(bytes) => {
                seen += bytes.len() as u64;
                if seen > limit {
                    cut = Some(closing(ApiError::new(
                        ProblemType::PayloadTooLarge,
                        format!("request body exceeds {limit} bytes"),
                    )));
                    break;
                }
                // The parser stopped early (it refused the body): its
                // answer follows.
                if tx.send(bytes).await.is_err() {
                    parser_stopped = true;
                    break;
                }
            }
            Err(e) => {
                cut = Some(e);
                break;
            }
        }
    }
    // End of input for the parser: a cut body ends as malformed JSON, and
    // the commit state, its lock and pins are dropped with it.
    drop(tx);
    let parsed = parser
        .await
        .map_err(|e| at(EngineError::Internal(format!("commit parser: {e}")).into()))?;
    if let Some(e) = cut {
        // A stall or an oversize body is the answer, whatever the parser
        // made of the truncated input.
        return Err(at(e));
    }
    let (check, mut trailer) = parsed.map_err(|e| {
        let e = at(e.into());
        if parser_stopped { closing(e) } else { e }
    })?;
    trailer.content_type = trailer
        .content_type
        .map(|c| sanitize_content_type(Some(c.as_bytes())));
    trailer.filename = trailer
        .filename
        .as_deref()
        .map(check_filename)
        .transpose()
        .map_err(at)?;
    let receipt = check.finish(trailer).await.map_err(|e| at(e.into()))?;
    Ok(created(caller.experiment, &receipt, &caller.principal))
}

/// `GET …/uploads/{S}[?after=&limit=]` → session with what it received.
pub async fn status(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let sid = session_id(&req).map_err(at)?;
    let params =
        query::parse(req.query_string()).map_err(|e| at(ApiError::bad_request(e.to_string())))?;
    let (mut after, mut limit) = (None, MAX_STATUS_IDS);
    for (k, v) in params {
        match k.as_str() {
            "after" if !v.is_empty() => after = Some(parse_digest(&v).map_err(at)?),
            "limit" => {
                limit = crate::http::query::page_limit(&v, MAX_STATUS_IDS).map_err(at)?;
            }
            _ => {}
        }
    }
    let s = engine(&state)
        .upload_status(caller.experiment, &caller.principal, &sid, after, limit)
        .await
        .map_err(|e| at(e.into()))?;
    let session = session_view(&s.view);
    let status = api::SessionStatus {
        chunker: session.chunker,
        created_at: session.created_at,
        expires_at: session.expires_at,
        max_batch_bytes: session.max_batch_bytes,
        max_bytes: session.max_bytes,
        received: s.received.iter().map(Digest::to_hex).collect(),
        received_bytes: s.received_bytes,
        received_chunks: s.received_chunks,
        received_next: s.next.map(|d| d.to_hex()),
        session_id: session.session_id,
        size: session.size,
    };
    Ok(json(StatusCode::OK, &status))
}

/// `DELETE …/uploads/{S}` → 204; the session's pins are released.
pub async fn abandon(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let sid = session_id(&req).map_err(at)?;
    engine(&state)
        .abandon_upload(caller.experiment, &caller.principal, &sid)
        .await
        .map_err(|e| at(e.into()))?;
    Ok(HttpResponse::NoContent().finish())
}
