//! The native surface, `/cas/v1/experiments/{E}/…` (spec: `docs/api.md`):
//! raw deposits, fetch by id with ranges and conditional requests, metadata,
//! listing, grants, delete and resumable upload sessions; and the
//! deployment admin routes under `/cas/v1/admin/` (gc, backup, fsck, in-flight
//! work, the storage stats and dashboard).
//!
//! Same authentication, experiment check and ACL as `/v0/` (`http/auth.rs`,
//! `Engine::readable_artifact`), so an artifact deposited through one surface is
//! fetchable through the other. Handlers parse, authorise and translate; the
//! engine does the work. Unknown routes or methods answer 404 problem+json,
//! after a 401 for a missing or malformed bearer (and, under an experiment,
//! after the same authentication and `X-Eden-Experiment-Id` check as a
//! served route).

mod admin;
mod artifacts;
mod commit_body;
mod dashboard;
pub mod dto;
mod fetch;
mod limits;
pub(crate) mod refs;
mod uploads;

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::auth::{has_wellformed_bearer, unauthorized};
use super::problem::{ApiError, ProblemType};
use crate::engine::Engine;
use crate::engine::ingest::parse_artifact_id;
use crate::ids::ArtifactId;

pub use dto::sanitize_content_type;

/// Path prefix of the native surface.
pub const PREFIX: &str = "/cas/v1";

/// 404 for a path or method that is not a route. Under
/// `/cas/v1/experiments/{E}/` the full check of `authorize` comes first
/// (401, then 400 for a wrong `X-Eden-Experiment-Id`), as on served routes;
/// elsewhere a missing or malformed bearer is 401.
async fn not_found(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if req.match_info().get("exp").is_some() {
        super::auth::authorize(&req, engine(&state))
            .await
            .map_err(|e| e.at(&req))?;
    } else if !has_wellformed_bearer(&req) {
        return Err(unauthorized().at(&req));
    }
    Err(ApiError::not_found("no such route or method under /cas/v1/").at(&req))
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(not_found))
}

/// Registers the `/cas/v1/` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/cas/v1/experiments/{exp}")
            .service(
                resource("/artifacts")
                    .route(web::post().to(artifacts::deposit))
                    .route(web::get().to(artifacts::list)),
            )
            .service(
                resource("/artifacts/{id}")
                    .route(web::get().to(fetch::fetch))
                    .route(web::head().to(fetch::fetch))
                    .route(web::delete().to(artifacts::delete)),
            )
            .service(resource("/artifacts/{id}/meta").route(web::get().to(artifacts::meta)))
            .service(resource("/artifacts/{id}/grants").route(web::post().to(artifacts::grant)))
            .service(resource("/artifacts/{id}/labels").route(web::put().to(artifacts::set_labels)))
            .service(
                resource("/artifacts/{id}/grants/{principal}")
                    .route(web::delete().to(artifacts::revoke)),
            )
            .service(resource("/quota").route(web::get().to(limits::quota)))
            .service(resource("/refs").route(web::get().to(refs::list)))
            .service(
                resource("/refs/{name:.+}")
                    .route(web::get().to(refs::get))
                    .route(web::put().to(refs::set))
                    .route(web::delete().to(refs::delete)),
            )
            .service(resource("/ref-history/{name:.+}").route(web::get().to(refs::history)))
            .service(resource("/uploads").route(web::post().to(uploads::create)))
            .service(
                resource("/uploads/{sid}")
                    .route(web::get().to(uploads::status))
                    .route(web::delete().to(uploads::abandon)),
            )
            .service(resource("/uploads/{sid}/missing").route(web::post().to(uploads::missing)))
            .service(resource("/uploads/{sid}/chunks").route(web::put().to(uploads::chunks)))
            .service(resource("/uploads/{sid}/commit").route(web::post().to(uploads::commit)))
            .default_service(web::to(not_found)),
    )
    .service(resource("/cas/v1/admin/gc").route(web::post().to(admin::gc)))
    .service(resource("/cas/v1/admin/backup").route(web::post().to(admin::backup)))
    .service(resource("/cas/v1/admin/fsck").route(web::post().to(admin::fsck)))
    .service(resource("/cas/v1/admin/stats").route(web::get().to(dashboard::stats)))
    .service(resource("/cas/v1/admin/dashboard").route(web::get().to(dashboard::dashboard)))
    .service(resource("/cas/v1/admin/audit").route(web::get().to(admin::audit)))
    .service(resource("/cas/v1/admin/inflight").route(web::get().to(limits::inflight)))
    .service(web::scope(PREFIX).default_service(web::to(not_found)));
}

/// The engine of the app state.
fn engine(state: &web::Data<AppState>) -> &Arc<Engine> {
    &state.engine
}

/// The `{id}` path segment as an artifact id; malformed ids name nothing (404).
fn artifact_id(req: &HttpRequest) -> Result<ArtifactId, ApiError> {
    req.match_info()
        .get("id")
        .and_then(parse_artifact_id)
        .ok_or_else(|| ApiError::not_found("no such artifact in this experiment"))
}

/// An engine error of a single-artifact read: `NotFound` names the
/// artifact, like a malformed id does.
pub(crate) fn artifact_error(e: crate::engine::EngineError) -> ApiError {
    match e {
        crate::engine::EngineError::NotFound => {
            ApiError::not_found("no such artifact in this experiment")
        }
        other => other.into(),
    }
}

/// A 200/201 JSON answer.
fn json(status: actix_web::http::StatusCode, v: &impl serde::Serialize) -> HttpResponse {
    super::json_response(status, v)
}

/// Reads a whole (small) body; more than `limit` bytes is 413.
async fn read_body(payload: crate::http::body::Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    super::read_body(payload, limit, ProblemType::PayloadTooLarge).await
}

/// 201 with `Location` and the artifact: the answer of every v1 write that
/// records an artifact.
fn created(
    experiment: crate::auth::ExperimentId,
    receipt: &crate::engine::DepositReceipt,
    viewer: &crate::auth::Principal,
) -> HttpResponse {
    let location = format!("/cas/v1/experiments/{experiment}/artifacts/{}", receipt.id);
    let mut answer = json(
        actix_web::http::StatusCode::CREATED,
        &dto::artifact_view(&receipt.id, &receipt.record, viewer),
    );
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&location) {
        answer
            .headers_mut()
            .insert(actix_web::http::header::LOCATION, v);
    }
    answer
}

/// Parses a JSON body into `T` (unknown fields rejected by `T`); an empty
/// body is `{}`.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("request body is not the expected JSON: {e}")))
}
