//! `/cas/v1/admin/…`: store-wide operations for the deployment admin bearer
//! only (no experiment in the path; a worker bearer answers 403).
//!
//! - `POST /cas/v1/admin/gc[?dry_run=true]` → the GC report.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, engine, json};
use crate::auth::{Principal, parse_authorization};
use crate::engine::gc::GcOptions;
use crate::http::auth::unauthorized;
use crate::http::problem::{ApiError, ProblemType};
use crate::http::query;

/// 401 unless the bearer is the deployment admin's; 403 for a worker.
async fn require_admin(req: &HttpRequest, state: &web::Data<AppState>) -> Result<(), ApiError> {
    let header = match req.headers().get(actix_web::http::header::AUTHORIZATION) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| unauthorized())?),
    };
    let creds = parse_authorization(header).map_err(|_| unauthorized())?;
    if !matches!(creds.principal, Principal::Admin) {
        return Err(ApiError::forbidden(
            "store-wide operations need the deployment admin bearer",
        ));
    }
    engine(state)
        .authenticate("", &creds)
        .await
        .map_err(|_| unauthorized())?;
    Ok(())
}

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

/// `POST /cas/v1/admin/gc`: runs a garbage collection now (waiting for one
/// in progress) → 200 with the report.
pub async fn gc(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    require_admin(&req, &state).await.map_err(at)?;
    let dry_run = flag(&req, "dry_run").map_err(at)?;
    let opts = GcOptions {
        dry_run,
        compact_below: state.gc_compact_below,
    };
    let report = engine(&state)
        .gc(opts)
        .await
        .map_err(|e| at(ApiError::from(e)))?;
    let body = serde_json::to_value(&report).map_err(|e| {
        tracing::error!(error = %e, "GC report encoding failed");
        at(ApiError::new(
            ProblemType::Internal,
            "report encoding failed",
        ))
    })?;
    Ok(json(StatusCode::OK, &body))
}
