//! Admin views of what the limits hold:
//!
//! - `GET /cas/v1/experiments/{E}/quota` → the experiment's quota and
//!   usage (admin bearer only; a worker gets 403, so nothing about any
//!   experiment's holdings is visible to workers);
//! - `GET /cas/v1/admin/inflight` → what in-flight operations hold
//!   store-wide (operations, pins, open packs, reserved bytes).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::{AppState, engine, json};
use crate::http::auth::{authorize, authorize_admin};
use crate::http::problem::ApiError;

/// `GET …/quota` (admin) → `{"experiment", "quota_bytes", "used_bytes",
/// "committed_bytes", "session_bytes", "in_flight_bytes"}`.
pub async fn quota(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let caller = authorize(&req, engine(&state)).await.map_err(at)?;
    caller.require_admin().map_err(at)?;
    let v = engine(&state).quota(&caller.experiment);
    let mut body = serde_json::to_value(&v).unwrap_or_else(|_| json!({}));
    body["experiment"] = json!(caller.experiment);
    Ok(json(StatusCode::OK, &body))
}

/// `GET /cas/v1/admin/inflight` (admin) → `{"operations", "pinned_chunks",
/// "open_packs", "reserved_bytes"}`.
pub async fn inflight(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    authorize_admin(&req, engine(&state)).await.map_err(at)?;
    let v = engine(&state).in_flight();
    Ok(json(
        StatusCode::OK,
        &json!({
            "operations": v.operations,
            "pinned_chunks": v.pinned_chunks,
            "open_packs": v.open_packs,
            "reserved_bytes": v.reserved_bytes,
        }),
    ))
}
