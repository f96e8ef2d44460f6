//! `POST /cas/v1/admin/backup` (deployment admin bearer only): writes a
//! metadata backup to the blob store from the running server
//! (`Engine::backup`) and answers `{"name", "files", "bytes"}`. The request
//! lasts as long as the upload of the checkpoint; backups run one at a time.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::{AppState, engine, json};
use crate::http::auth::authorize_deployment_admin;
use crate::http::problem::ApiError;

/// `POST /cas/v1/admin/backup` → 200 `{"name","files","bytes"}`.
pub async fn backup(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let engine = engine(&state).clone();
    authorize_deployment_admin(&req, &engine)
        .await
        .map_err(at)?;
    let report = engine.backup().await.map_err(|e| at(e.into()))?;
    Ok(json(
        StatusCode::OK,
        &json!({"name": report.name, "files": report.files, "bytes": report.bytes}),
    ))
}
