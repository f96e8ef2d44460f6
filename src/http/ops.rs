//! Operational endpoints: liveness, readiness and Prometheus metrics.
//!
//! `/healthz` and `/readyz` are open and say nothing about content. The
//! metrics are store-wide figures — bytes new to the *store*, packs written,
//! chunks indexed — which would tell anyone who can reach the port whether a
//! deposit's bytes were already stored by someone else. They are for the
//! operator only (invariant 4): `/metrics` answers 401 unless the request
//! carries the admin bearer or, when one is configured, the metrics token as
//! `Authorization: Bearer metrics:<token>` (the form Prometheus sends from
//! `credentials_file`). What the metrics are is `metrics.rs`'s business.

use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::auth::{authorize_admin, unauthorized};
use super::observe::note_principal;
use super::problem::{ApiError, ProblemType};
use crate::auth::admin_token_matches;

/// The principal name of the metrics credential.
pub const METRICS_PRINCIPAL: &str = "metrics";

/// Registers `/healthz`, `/readyz`, `/metrics`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.engine.ready().await {
        HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("metadata store unavailable\n")
    }
}

/// Accepts `Bearer metrics:<token>` (compared in constant time) when a
/// metrics token is configured, else the admin bearer; anything else is 401
/// (a worker bearer 403).
async fn authorize_metrics(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim();
    let metrics_secret = header
        .split_once([' ', '\t'])
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .and_then(|(_, cred)| cred.trim().split_once(':'))
        .filter(|(principal, _)| *principal == METRICS_PRINCIPAL)
        .map(|(_, secret)| secret);
    match (metrics_secret, &state.metrics_token) {
        (Some(presented), Some(expected)) if admin_token_matches(expected, presented) => {
            note_principal(req, METRICS_PRINCIPAL);
            Ok(())
        }
        (Some(_), _) => Err(unauthorized()),
        (None, _) => authorize_admin(req, &state.engine).await,
    }
}

async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize_metrics(&req, &state)
        .await
        .map_err(|e| e.at(&req))?;
    render_metrics(&state).map_err(|e| e.at(&req))
}

fn render_metrics(state: &AppState) -> Result<HttpResponse, ApiError> {
    let text = state.metrics.render().map_err(|e| {
        tracing::error!(error = %e, "metrics encoding failed");
        ApiError::new(ProblemType::Internal, "internal error; see the server log")
    })?;
    Ok(HttpResponse::Ok()
        .content_type(super::metrics::CONTENT_TYPE)
        .body(text))
}
