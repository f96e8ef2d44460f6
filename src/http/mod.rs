//! HTTP: two surfaces over one engine — `/v0/` (the EDEN contract) and
//! `/cas/v1/` (native) — plus `/healthz`, `/readyz` and `/metrics`. Both
//! surfaces authenticate through `auth.rs`.
//!
//! Handlers parse, authorise and translate; all storage work is the engine's.
//! Every error leaves through [`problem::ApiError`].

pub mod auth;
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
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    ops::configure(cfg);
    v0::configure(cfg);
    v1::configure(cfg);
}
