//! Admin views of what the limits hold:
//!
//! - `GET /cas/v1/experiments/{E}/quota` → the experiment's quota and
//!   usage (admin bearer only; a worker gets 403, so nothing about any
//!   experiment's holdings is visible to workers);
//! - `GET /cas/v1/admin/inflight` → what in-flight operations hold
//!   store-wide (operations, pins, open packs, reserved bytes).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, engine, json};
use crate::api::v1::{InFlight, Quota};
use crate::http::auth::{Caller, DeploymentAdmin};
use crate::http::problem::ApiError;

/// `GET …/quota` (admin) → `{"experiment", "quota_bytes", "used_bytes",
/// "committed_bytes", "session_bytes", "in_flight_bytes"}`.
pub async fn quota(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    caller.require_admin().map_err(at)?;
    let v = engine(&state).quota(caller.experiment);
    Ok(json(
        StatusCode::OK,
        &Quota {
            committed_bytes: v.usage.committed_bytes,
            experiment: caller.experiment.to_string(),
            in_flight_bytes: v.usage.in_flight_bytes,
            quota_bytes: v.quota_bytes,
            session_bytes: v.usage.session_bytes,
            used_bytes: v.used_bytes,
        },
    ))
}

/// `GET /cas/v1/admin/inflight` (admin) → `{"operations", "pinned_chunks",
/// "open_packs", "reserved_bytes"}`.
pub async fn inflight(
    _admin: DeploymentAdmin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let v = engine(&state).in_flight();
    Ok(json(
        StatusCode::OK,
        &InFlight {
            open_packs: v.open_packs,
            operations: v.operations,
            pinned_chunks: v.pinned_chunks,
            reserved_bytes: v.reserved_bytes,
        },
    ))
}
