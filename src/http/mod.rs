//! HTTP: two surfaces over one engine — `/v0/` (the EDEN contract) and, later,
//! `/cas/v1/` (native) — plus `/healthz`, `/readyz` and `/metrics`.
//!
//! Handlers parse, authorise and translate; all storage work is the engine's.
//! Every error leaves through [`problem::ApiError`].

pub mod ops;
pub mod problem;
pub mod query;
pub mod v0;

use std::sync::Arc;

use actix_web::web;

use crate::engine::Engine;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    ops::configure(cfg);
    v0::configure(cfg);
}
