//! `POST /cas/v1/admin/fsck[?deep=true]`: the integrity check of a running
//! server (deployment admin bearer only). Answers 200 with the JSON report
//! (`engine::FsckReport`) whether or not problems were found; the engine
//! does the work, read-only, alongside ongoing traffic.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, engine, json};
use crate::http::auth::authorize_admin;
use crate::http::problem::ApiError;
use crate::http::query;

/// `POST /cas/v1/admin/fsck?deep=true|false` → 200 report.
pub async fn fsck(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let engine = engine(&state).clone();
    authorize_admin(&req, &engine).await.map_err(at)?;
    let deep = match query::get(req.query_string(), "deep")
        .map_err(|e| at(ApiError::bad_request(e.to_string())))?
        .as_deref()
    {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => {
            return Err(at(ApiError::bad_request(format!(
                "deep must be true or false, not {other:?}"
            ))));
        }
    };
    let report = engine.fsck(deep).await.map_err(|e| at(e.into()))?;
    if !report.is_clean() {
        tracing::warn!(
            problems = report.problems.len(),
            deep,
            "fsck found problems"
        );
    }
    let body = serde_json::to_value(&report).map_err(|e| {
        at(ApiError::from(crate::engine::EngineError::Internal(
            e.to_string(),
        )))
    })?;
    Ok(json(StatusCode::OK, &body))
}
