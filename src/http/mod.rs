//! HTTP: two surfaces over one engine — `/v0/` (the EDEN contract) and
//! `/cas/v1/` (native) — plus `/healthz`, `/readyz` and `/metrics`. Both
//! surfaces authenticate through `auth.rs`.
//!
//! Handlers parse, authorise and translate; all storage work is the engine's.
//! Every error leaves through [`problem::ApiError`].

pub mod auth;
pub mod body;
pub mod expect;
pub mod ops;
pub mod problem;
pub mod query;
pub mod v0;
pub mod v1;

use std::sync::Arc;

use actix_web::web;

use crate::engine::Engine;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// `gc-compact-below` for GC runs asked for over the admin API.
    pub gc_compact_below: f64,
    /// `body-idle-timeout`: longest wait for the next byte of a request body.
    pub body_idle_timeout: std::time::Duration,
    /// The token `/metrics` accepts as `Bearer metrics:<token>` besides the
    /// admin bearer (`None`: admin bearer only).
    pub metrics_token: Option<Arc<crate::auth::Secret>>,
}

/// Reads a whole (small) request body; more than `limit` bytes (declared
/// or received) is an error of type `oversize` (v0 answers `bad-request`,
/// v1 `payload-too-large`); a stalled body is cut (`body.rs`).
pub(crate) async fn read_body(
    body: body::Body,
    limit: usize,
    oversize: problem::ProblemType,
) -> Result<Vec<u8>, problem::ApiError> {
    body.read_all(limit, oversize).await
}

/// A JSON answer with `status`.
pub(crate) fn json_response(
    status: actix_web::http::StatusCode,
    v: &serde_json::Value,
) -> actix_web::HttpResponse {
    actix_web::HttpResponse::build(status)
        .content_type("application/json")
        .body(v.to_string())
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    ops::configure(cfg);
    v0::configure(cfg);
    v1::configure(cfg);
}
