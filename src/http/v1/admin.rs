//! `/cas/v1/admin/…`: store-wide operations for the deployment admin bearer
//! only (no experiment in the path; a worker bearer answers 403):
//!
//! - `POST /cas/v1/admin/gc[?dry_run=true]` → the GC report;
//! - `POST /cas/v1/admin/backup` → `{"name", "files", "bytes"}` once a
//!   metadata backup is complete in the blob store (`Engine::backup`); the
//!   request lasts as long as the upload; backups run one at a time;
//! - `POST /cas/v1/admin/fsck[?deep=true]` → the fsck report
//!   (`engine::FsckReport`), 200 whether or not problems were found; the
//!   engine checks read-only, alongside ongoing traffic;
//! - `GET /cas/v1/admin/audit[?since=…][&experiment=…]` → the audit log as
//!   JSON lines (`application/x-ndjson`), oldest first, after writing the
//!   events still buffered (`engine/audit.rs`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, engine, json};
use crate::api::v1::Backup;

use crate::engine::audit::{AuditFilter, parse_since};
use crate::engine::gc::GcOptions;
use crate::http::auth::DeploymentAdmin;
use crate::http::problem::{ApiError, ProblemType};
use crate::http::query;

/// A boolean query flag: absent is false; `true`/`1` and `false`/`0`.
fn flag(req: &HttpRequest, name: &str) -> Result<bool, ApiError> {
    let v =
        query::get(req.query_string(), name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    match v.as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name} must be true or false, not {other:?}"
        ))),
    }
}

/// 200 with a report as JSON.
fn report_json(report: &impl serde::Serialize) -> Result<HttpResponse, ApiError> {
    let body = serde_json::to_value(report).map_err(|e| {
        tracing::error!(error = %e, "report encoding failed");
        ApiError::new(ProblemType::Internal, "report encoding failed")
    })?;
    Ok(json(StatusCode::OK, &body))
}

/// `POST /cas/v1/admin/gc`: runs a garbage collection now (waiting for one
/// in progress) → 200 with the report.
pub async fn gc(
    req: HttpRequest,
    _admin: DeploymentAdmin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let dry_run = flag(&req, "dry_run").map_err(at)?;
    let opts = GcOptions {
        dry_run,
        compact_below: state.gc_compact_below,
    };
    let report = engine(&state)
        .gc(opts)
        .await
        .map_err(|e| at(ApiError::from(e)))?;
    report_json(&report).map_err(at)
}

/// `POST /cas/v1/admin/backup` → 200 `{"name","files","bytes"}`.
pub async fn backup(
    req: HttpRequest,
    _admin: DeploymentAdmin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let engine = engine(&state);
    let report = engine.backup().await.map_err(|e| at(e.into()))?;
    Ok(json(
        StatusCode::OK,
        &Backup {
            bytes: report.bytes,
            files: report.files,
            name: report.name,
        },
    ))
}

/// `POST /cas/v1/admin/fsck?deep=true|false` → 200 report.
pub async fn fsck(
    req: HttpRequest,
    _admin: DeploymentAdmin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let engine = engine(&state);
    let deep = flag(&req, "deep").map_err(at)?;
    let report = engine.fsck(deep).await.map_err(|e| at(e.into()))?;
    if !report.is_clean() {
        tracing::warn!(
            problems = report.problems.len(),
            deep,
            "fsck found problems"
        );
    }
    report_json(&report).map_err(at)
}

/// `GET /cas/v1/admin/audit[?since=RFC3339|DURATION][&experiment=E]` → 200,
/// JSON lines. The buffered events are written first, so the answer holds
/// every event recorded before the request; the segments are then streamed
/// one at a time.
pub async fn audit(
    req: HttpRequest,
    _admin: DeploymentAdmin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    use futures_util::TryStreamExt as _;
    let at = |e: ApiError| e.at(&req);
    let q = |name: &str| {
        query::get(req.query_string(), name).map_err(|e| at(ApiError::bad_request(e.to_string())))
    };
    let since = q("since")?
        .map(|s| parse_since(&s, crate::clock::Timestamp::now()))
        .transpose()
        .map_err(|e| at(ApiError::bad_request(e)))?;
    let filter = AuditFilter {
        since,
        experiment: q("experiment")?.filter(|e| !e.is_empty()),
    };
    let engine = engine(&state);
    engine.audit_flush().await.map_err(|e| at(e.into()))?;
    let keys = engine
        .audit_segment_keys(&filter)
        .await
        .map_err(|e| at(e.into()))?;
    let body = engine.audit_export(keys, filter).map_err(|e| {
        // Headers are sent: the connection is cut, and the log says why.
        tracing::error!(error = %e, "audit export failed");
        actix_web::error::ErrorInternalServerError("audit export failed")
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(body))
}
