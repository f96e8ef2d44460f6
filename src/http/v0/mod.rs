//! The EDEN v0 surface, exactly as `eden-v0-contract.md`: routes; bearer
//! authentication and the `X-Eden-Experiment-Id` check are shared with
//! `/cas/v1/` in `http/auth.rs`.
//!
//! Order on every request: authentication (401), then the header check
//! (400), then the experiment id shape (404), then the handler. Unknown
//! routes and wrong methods answer 404 `not-found` as problem+json — under
//! `/v0/experiments/{E}/` only after the same authentication and header
//! check, so a wrong `X-Eden-Experiment-Id` is 400 on every path and method
//! there, served or not (EDEN's conformance suite probes paths this store
//! does not serve, such as `/tasks`).

mod artifacts;
mod json;
mod registry;

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
pub use super::auth::{Caller, authorize};
use super::problem::{ApiError, ProblemType};
use crate::auth::parse_authorization;
use crate::engine::Engine;

/// 404 for anything under `/v0/experiments/{E}/` that is not a route (or
/// not a method of it), after the full check of [`authorize`]: 401 for a
/// bearer that does not authenticate on `E`, then 400 for a missing or
/// different `X-Eden-Experiment-Id`.
async fn experiment_not_found(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, engine(&state))
        .await
        .map_err(|e| e.at(&req))?;
    Err(ApiError::not_found("no such route or method under /v0/").at(&req))
}

/// 404 for anything under `/v0/` outside an experiment; an absent or
/// malformed bearer still gets its 401 first.
async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if parse_authorization(header).is_err() {
        return Err(ApiError::new(
            ProblemType::Unauthorized,
            "missing, malformed or invalid bearer credential",
        )
        .at(&req));
    }
    Err(ApiError::not_found("no such route or method under /v0/").at(&req))
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(experiment_not_found))
}

/// Registers the `/v0/` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v0/experiments/{exp}")
            .service(
                resource("/artifacts")
                    .route(web::post().to(artifacts::deposit))
                    .route(web::get().to(artifacts::fetch)),
            )
            .service(
                resource("/workers")
                    .route(web::post().to(registry::register_worker))
                    .route(web::get().to(registry::list_workers)),
            )
            .service(resource("/workers/{worker}").route(web::get().to(registry::read_worker)))
            .service(
                resource("/workers/{worker}/reissue-credential")
                    .route(web::post().to(registry::reissue_credential)),
            )
            .service(resource("/whoami").route(web::get().to(registry::whoami)))
            .service(
                resource("/groups")
                    .route(web::post().to(registry::create_group))
                    .route(web::get().to(registry::list_groups)),
            )
            .service(
                resource("/groups/{group}")
                    .route(web::get().to(registry::read_group))
                    .route(web::delete().to(registry::delete_group)),
            )
            .service(
                resource("/groups/{group}/members").route(web::post().to(registry::add_member)),
            )
            .service(
                resource("/groups/{group}/members/{member}")
                    .route(web::delete().to(registry::remove_member)),
            )
            .default_service(web::to(experiment_not_found)),
    )
    .service(web::scope("/v0").default_service(web::to(not_found)));
}

/// The engine of the app state.
fn engine(state: &web::Data<AppState>) -> &Arc<Engine> {
    &state.engine
}
