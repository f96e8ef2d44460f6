//! HTTP: two surfaces over one engine — `/v0/` (the EDEN contract) and
//! `/cas/v1/` (native) — plus `/healthz`, `/readyz` and `/metrics`. Both
//! surfaces authenticate through `auth.rs`.
//!
//! Handlers parse, authorise and translate; all storage work is the engine's.
//! Every error leaves through [`problem::ApiError`].

pub mod auth;
pub mod body;
pub mod expect;
pub mod metrics;
pub mod observe;
pub mod ops;
pub mod problem;
pub mod query;
pub mod split;
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
    /// What `/metrics` exports (`metrics.rs`).
    pub metrics: Arc<metrics::Metrics>,
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

/// A JSON answer with `status`: one of the wire types of `crate::api`.
pub(crate) fn json_response(
    status: actix_web::http::StatusCode,
    v: &impl serde::Serialize,
) -> actix_web::HttpResponse {
    match serde_json::to_vec(v) {
        Ok(body) => actix_web::HttpResponse::build(status)
            .content_type("application/json")
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "answer encoding failed");
            actix_web::ResponseError::error_response(&problem::ApiError::new(
                problem::ProblemType::Internal,
                "internal error; see the server log",
            ))
        }
    }
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    ops::configure(cfg);
    v0::configure(cfg);
    v1::configure(cfg);
}

#[cfg(test)]
mod tests {
    /// Handlers reach storage only through engine methods: nothing under
    /// `src/http/` names the metadata or blob store, or the engine's
    /// accessors for them (kept for tests and recovery tools).
    #[test]
    fn http_never_touches_storage() {
        let forbidden = [
            ".meta()",
            ".blobs()",
            "crate::meta::Meta",
            "crate::meta::{",
            "crate::blobs",
            "meta::Batch",
        ];
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/http"
        ))];
        let mut seen = 0;
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("src/http is readable") {
                let path = entry.expect("directory entry").path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("source is UTF-8");
                // This test's own list of patterns is not a use.
                let code = text.split("mod tests {").next().unwrap_or_default();
                for f in forbidden {
                    assert!(!code.contains(f), "{} uses {f}", path.display());
                }
                seen += 1;
            }
        }
        assert!(seen > 10, "only {seen} files under src/http");
    }
}
