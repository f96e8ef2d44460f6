//! `/cas/v1/` artifact routes other than fetch: raw-body deposit, metadata,
//! listing, grants and delete.
//!
//! The deposit streams the body straight into the engine (size cap enforced
//! as bytes arrive, invariant 8) and commits only once the body ended
//! cleanly, so a cut connection leaves nothing visible (invariant 3).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::dto::{artifact_view, check_filename, parse_ttl, sanitize_content_type};
use super::{AppState, artifact_error, artifact_id, created, engine, json, parse_json, read_body};
use crate::api::v1::{ArtifactPage, GrantRequest, LabelsRequest};
use crate::auth::{MemberId, Principal};
use crate::clock::Timestamp;
use crate::engine::DepositRequest;
use crate::engine::ingest::parse_artifact_id;
use crate::engine::labels::ArtifactFilter;
use crate::http::auth::Caller;
use crate::http::body::closing;
use crate::http::problem::{ApiError, ProblemType};
use crate::http::query;
use crate::naming::{MAX_LABELS, check_labels, parse_label};

/// Largest JSON body of the grant route.
const MAX_GRANT_BODY: usize = 4096;
/// Largest JSON body of the labels route.
const MAX_LABELS_BODY: usize = 16 << 10;
/// Default and largest listing page.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// A grant's principal: a worker or group id (400 otherwise).
fn grantee(s: &str) -> Result<MemberId, ApiError> {
    MemberId::parse(s).ok_or_else(|| ApiError::bad_request("principal must be a wkr_ or grp_ id"))
}

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Result<Option<&'a str>, ApiError> {
    match req.headers().get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{name} must be visible ASCII"))),
    }
}

/// `POST …/artifacts`: the body is the artifact → 201 `Artifact`.
pub async fn deposit(
    req: HttpRequest,
    caller: Caller,
    mut payload: crate::http::body::Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let engine = engine(&state).clone();
    let content_type = sanitize_content_type(
        req.headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
    );
    let filename = header_str(&req, "x-eden-filename")
        .map_err(at)?
        .map(check_filename)
        .transpose()
        .map_err(at)?;
    let expires_at = header_str(&req, "x-eden-expires-in")
        .map_err(at)?
        .map(parse_ttl)
        .transpose()
        .map_err(at)?
        // Lifetimes count whole seconds, as expiries always have.
        .map(|d| {
            Timestamp::now()
                .whole_secs()
                .plus(Duration::from_secs(d.as_secs()))
        });

    let labels = super::refs::deposit_labels(&req).map_err(at)?;
    let reference = super::refs::deposit_ref(&req).map_err(at)?;

    // Refused before a byte is read: the body could never fit.
    let cap = engine.config().max_artifact_bytes;
    payload
        .check_declared(cap, ProblemType::PayloadTooLarge)
        .map_err(at)?;
    let mut quota = engine
        .reserve_deposit(caller.experiment, payload.declared_len().unwrap_or(0))
        .map_err(|e| at(e.into()))?;
    let mut ingest = engine.begin_ingest().map_err(|e| at(e.into()))?;
    while let Some(part) = payload.next().await {
        let bytes = match part {
            Ok(b) => b,
            Err(e) => {
                ingest.abort().await;
                return Err(at(e));
            }
        };
        let pushed = match quota.grow(ingest.received() + bytes.len() as u64) {
            Ok(()) => ingest.push(bytes).await,
            Err(e) => Err(e),
        };
        if let Err(e) = pushed {
            ingest.abort().await;
            // Answered at once; the rest of the body is never waited for.
            return Err(at(closing(e.into())));
        }
    }
    let prepared = ingest.finish().await.map_err(|e| at(e.into()))?;
    let receipt = engine
        .commit_artifact(
            prepared,
            DepositRequest {
                experiment: caller.experiment,
                created_by: caller.principal,
                content_type,
                filename,
                expires_at,
                labels,
                reference,
            },
        )
        .await
        .map_err(|e| at(e.into()))?;
    Ok(created(caller.experiment, &receipt, &caller.principal))
}

/// `GET …/artifacts/{id}/meta` → `Artifact` (readers only).
pub async fn meta(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let engine = engine(&state).clone();
    let id = artifact_id(&req).map_err(at)?;
    let artifact = engine
        .readable_artifact(caller.experiment, &caller.principal, &id)
        .await
        .map_err(|e| at(artifact_error(e)))?;
    Ok(json(
        StatusCode::OK,
        &artifact_view(&id, artifact.record(), &caller.principal),
    ))
}

/// `GET …/artifacts?limit=&cursor=&created_by=&label=k=v&created_after=&created_before=&filename_prefix=`
/// → a page of readable artifacts.
pub async fn list(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let engine = engine(&state).clone();
    let params =
        query::parse(req.query_string()).map_err(|e| at(ApiError::bad_request(e.to_string())))?;
    let (mut limit, mut cursor) = (DEFAULT_LIMIT, None);
    let mut filter = ArtifactFilter::default();
    let time = |k: &str, v: &str| {
        Timestamp::parse_rfc3339(v)
            .ok_or_else(|| ApiError::bad_request(format!("{k} must be an RFC 3339 time")))
    };
    for (k, v) in params {
        match k.as_str() {
            "limit" => {
                limit = crate::http::query::page_limit(&v, MAX_LIMIT).map_err(at)?;
            }
            "cursor" if !v.is_empty() => {
                cursor = Some(
                    parse_artifact_id(&v)
                        .ok_or_else(|| at(ApiError::bad_request("malformed cursor")))?,
                );
            }
            "created_by" if !v.is_empty() => {
                filter.created_by = Some(Principal::parse(&v).ok_or_else(|| {
                    at(ApiError::bad_request(
                        "created_by must be admin or a wkr_ id",
                    ))
                })?);
            }
            "label" => {
                let kv = parse_label(&v).map_err(|e| at(ApiError::bad_request(e)))?;
                if filter.labels.len() >= MAX_LABELS {
                    return Err(at(ApiError::bad_request("at most 32 label filters")));
                }
                filter.labels.push(kv);
            }
            "created_after" if !v.is_empty() => {
                filter.created_after = Some(time(&k, &v).map_err(at)?);
            }
            "created_before" if !v.is_empty() => {
                filter.created_before = Some(time(&k, &v).map_err(at)?);
            }
            "filename_prefix" if !v.is_empty() => filter.filename_prefix = Some(v),
            _ => {}
        }
    }
    let page = engine
        .list_artifacts_where(caller.experiment, &caller.principal, filter, cursor, limit)
        .await
        .map_err(|e| at(e.into()))?;
    let artifacts = page
        .items
        .iter()
        .map(|(id, rec)| artifact_view(id, rec, &caller.principal))
        .collect();
    Ok(json(
        StatusCode::OK,
        &ArtifactPage {
            artifacts,
            next_cursor: page.next_cursor.map(|c| c.to_string()),
        },
    ))
}

/// `POST …/artifacts/{id}/grants` `{"principal"}` → 200 `Artifact`.
pub async fn grant(
    req: HttpRequest,
    caller: Caller,
    payload: crate::http::body::Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let engine = engine(&state).clone();
    let id = artifact_id(&req).map_err(at)?;
    let body: GrantRequest =
        parse_json(&read_body(payload, MAX_GRANT_BODY).await.map_err(at)?).map_err(at)?;
    let principal = grantee(&body.principal).map_err(at)?;
    let rec = engine
        .grant(caller.experiment, &caller.principal, &id, &principal)
        .await
        .map_err(|e| at(e.into()))?;
    Ok(json(
        StatusCode::OK,
        &artifact_view(&id, &rec, &caller.principal),
    ))
}

/// `DELETE …/artifacts/{id}/grants/{principal}` → 200 `Artifact`.
pub async fn revoke(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let engine = engine(&state).clone();
    let id = artifact_id(&req).map_err(at)?;
    let principal = grantee(req.match_info().get("principal").unwrap_or_default()).map_err(at)?;
    let rec = engine
        .revoke(caller.experiment, &caller.principal, &id, &principal)
        .await
        .map_err(|e| at(e.into()))?;
    Ok(json(
        StatusCode::OK,
        &artifact_view(&id, &rec, &caller.principal),
    ))
}

/// `DELETE …/artifacts/{id}` → 204 (depositor or admin).
pub async fn delete(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let engine = engine(&state).clone();
    let id = artifact_id(&req).map_err(at)?;
    engine
        .delete_artifact(caller.experiment, &caller.principal, &id)
        .await
        .map_err(|e| at(e.into()))?;
    Ok(HttpResponse::NoContent().finish())
}

/// `PUT …/artifacts/{id}/labels` `{"labels": {k: v}}` → 200 `Artifact`
/// (depositor or admin); replaces the whole set.
pub async fn set_labels(
    req: HttpRequest,
    caller: Caller,
    payload: crate::http::body::Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let engine = engine(&state).clone();
    let id = artifact_id(&req).map_err(at)?;
    let body: LabelsRequest =
        parse_json(&read_body(payload, MAX_LABELS_BODY).await.map_err(at)?).map_err(at)?;
    check_labels(&body.labels).map_err(|e| at(ApiError::bad_request(e)))?;
    let rec = engine
        .set_labels(caller.experiment, &caller.principal, &id, body.labels)
        .await
        .map_err(|e| at(artifact_error(e)))?;
    Ok(json(
        StatusCode::OK,
        &artifact_view(&id, &rec, &caller.principal),
    ))
}
