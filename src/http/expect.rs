//! `Expect: 100-continue`: the request head is judged before the client is
//! told to send its body. A missing, malformed or wrong bearer answers 401,
//! a wrong `X-Eden-Experiment-Id` 400, and a declared `Content-Length`
//! above what the route can accept 413 — each instead of `100 Continue`, so
//! the body is never sent. Everything else gets `100 Continue` and the
//! handler, which repeats every check.
//!
//! actix-http runs this service for requests that carry the expectation
//! only (`server.rs` installs it).

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderName, HeaderValue};

use super::AppState;
use super::auth::unauthorized;
use super::body::{closing, commit_body_limit};
use super::observe::{ACCESS_TARGET, REQUEST_ID_HEADER, RequestId, method_label};
use super::problem::{ApiError, ProblemType};
use crate::auth::{ExperimentId, parse_authorization};

/// What a path names, as far as the expectation cares.
enum Target<'a> {
    /// Under `/v0/experiments/{E}/`: (experiment, rest of the path).
    V0(&'a str, &'a str),
    /// Under `/cas/v1/experiments/{E}/`.
    V1(&'a str, &'a str),
    /// Under `/cas/v1/admin/`.
    Admin,
    /// Elsewhere (health, metrics, unknown routes: the handler answers).
    Other,
}

fn target(path: &str) -> Target<'_> {
    let split = |rest: &'static str| {
        path.strip_prefix(rest).map(|r| match r.split_once('/') {
            Some((e, rest)) => (e, rest),
            None => (r, ""),
        })
    };
    if let Some((e, rest)) = split("/v0/experiments/") {
        return Target::V0(e, rest);
    }
    if let Some((e, rest)) = split("/cas/v1/experiments/") {
        return Target::V1(e, rest);
    }
    if path.starts_with("/cas/v1/admin/") {
        return Target::Admin;
    }
    Target::Other
}

/// The largest body the route accepts, where it is large enough to matter.
fn route_limit(state: &AppState, method: &Method, t: &Target<'_>) -> Option<u64> {
    let cfg = state.engine.config();
    let cap = cfg.max_artifact_bytes;
    let is_chunks = |rest: &str| {
        rest.strip_prefix("uploads/")
            .is_some_and(|r| r.ends_with("/chunks") && r.matches('/').count() == 1)
    };
    let is_commit = |rest: &str| {
        rest.strip_prefix("uploads/")
            .is_some_and(|r| r.ends_with("/commit") && r.matches('/').count() == 1)
    };
    match t {
        Target::V0("", _) | Target::V1("", _) => None,
        Target::V0(_, "artifacts") if method == Method::POST => {
            Some(cap.saturating_add(super::v0::MULTIPART_OVERHEAD))
        }
        Target::V1(_, "artifacts") if method == Method::POST => Some(cap),
        Target::V1(_, rest) if method == Method::PUT && is_chunks(rest) => {
            Some(state.engine.max_batch_bytes())
        }
        Target::V1(_, rest) if method == Method::POST && is_commit(rest) => {
            Some(commit_body_limit(&state.engine))
        }
        _ => None,
    }
}

/// Judges a request that expects `100 Continue`.
///
/// # Errors
/// The final answer to send instead (the connection is then closed).
pub async fn check(
    state: &AppState,
    req: actix_http::Request,
) -> Result<actix_http::Request, actix_web::Error> {
    let head = req.head();
    let t = target(head.uri.path());
    let url = format!(
        "http://{}{}",
        head.headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost"),
        head.uri
    );
    // A refusal never reaches the app (and `observe.rs`): it carries its
    // request id and writes its access-log line here.
    let request_id = RequestId::from_header(head.headers.get(REQUEST_ID_HEADER));
    let method = method_label(&head.method);
    let fail = |mut e: ApiError| {
        e.instance = Some(url.clone());
        let status = actix_web::ResponseError::status_code(&e);
        tracing::info!(
            target: ACCESS_TARGET,
            request_id = %request_id.0,
            method,
            route = "-",
            status = status.as_u16(),
            bytes_in = 0u64,
            bytes_out = 0u64,
            principal = "-",
            "request refused before its body (Expect: 100-continue)"
        );
        let e = match HeaderValue::from_str(&request_id.0) {
            Ok(v) => e.with_header(HeaderName::from_static(REQUEST_ID_HEADER), v),
            Err(_) => e,
        };
        Err(closing(e).into())
    };
    let experiment = match t {
        Target::V0(e, _) | Target::V1(e, _) => Some(e),
        Target::Admin => None,
        Target::Other => return Ok(req),
    };
    let auth = match head.headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(s) => Some(s),
            Err(_) => return fail(unauthorized()),
        },
    };
    let Ok(creds) = parse_authorization(auth) else {
        return fail(unauthorized());
    };
    match experiment {
        Some(exp) => {
            let checked = match ExperimentId::parse(exp) {
                Some(id) => state.engine.authenticate(id, &creds).await,
                None => state.engine.authenticate_unscoped(&creds),
            };
            if checked.is_err() {
                return fail(unauthorized());
            }
            let declared = head
                .headers
                .get("x-eden-experiment-id")
                .and_then(|v| v.to_str().ok());
            if declared != Some(exp) {
                return fail(ApiError::new(
                    ProblemType::ExperimentIdMismatch,
                    "the X-Eden-Experiment-Id header must be present and equal the experiment id of the path",
                ));
            }
        }
        None => {
            if !creds.principal.is_admin() {
                return fail(ApiError::forbidden(
                    "endpoint is admin-gated; worker bearers may not access it",
                ));
            }
            if state.engine.authenticate_unscoped(&creds).is_err() {
                return fail(unauthorized());
            }
        }
    }
    let declared = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let (Some(n), Some(limit)) = (declared, route_limit(state, &head.method, &t))
        && n > limit
    {
        return fail(ApiError::new(
            ProblemType::PayloadTooLarge,
            format!("the declared body of {n} bytes exceeds the limit of {limit} bytes"),
        ));
    }
    Ok(req)
}
