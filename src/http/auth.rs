//! Bearer authentication and the `X-Eden-Experiment-Id` check, shared by
//! both surfaces (`/v0/` and `/cas/v1/`): one auth model for both.
//!
//! Handlers take a [`Caller`] (or, on deployment-wide admin routes, a
//! [`DeploymentAdmin`]) as an argument: the extractor authenticates before
//! the handler body runs, so no handler can forget to.
//!
//! Order on every request: authentication (401), then the header check
//! (400), then the experiment id shape (404). A worker bearer is verified
//! against the path's experiment only (invariant 4: a worker of E1 is
//! unknown on E2).

use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;

use super::observe::note_principal;
use super::problem::{ApiError, ProblemType};
use crate::auth::{ExperimentId, Principal, parse_authorization};
use crate::engine::Engine;
use crate::http::AppState;

/// An authenticated caller of one experiment.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The experiment of the path.
    pub experiment: ExperimentId,
    /// Who is calling.
    pub principal: Principal,
}

impl Caller {
    /// 403 unless the caller is the admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.principal.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "endpoint is admin-gated; worker bearers may not access it",
            ))
        }
    }
}

/// The engine of the app state; 500 if the app was built without one.
fn state_of(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::new(ProblemType::Internal, "internal error; see the server log"))
}

/// Extracts the authenticated [`Caller`] of the path's experiment
/// ([`authorize`]); errors carry the request URL as `instance`.
impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state_of(&req).map_err(|e| e.at(&req))?;
            authorize(&req, &state.engine).await.map_err(|e| e.at(&req))
        })
    }
}

/// The deployment admin on a route without an experiment in its path
/// ([`authorize_admin`]: 401, or 403 for a worker bearer).
#[derive(Clone, Copy, Debug)]
pub struct DeploymentAdmin;

impl FromRequest for DeploymentAdmin {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state_of(&req).map_err(|e| e.at(&req))?;
            authorize_admin(&req, &state.engine)
                .await
                .map(|()| DeploymentAdmin)
                .map_err(|e| e.at(&req))
        })
    }
}

/// The deployment admin on a read-only page a browser opens: the admin
/// bearer, or HTTP Basic with user `admin` and the admin token as password
/// (what a browser's own login prompt sends). A 401 carries
/// `WWW-Authenticate: Basic` so the browser asks. Only `GET` routes that
/// change nothing take this extractor: a browser replays Basic credentials
/// on requests other sites trigger, so a state-changing route accepting
/// them would be open to cross-site request forgery.
#[derive(Clone, Copy, Debug)]
pub struct AdminViewer;

impl FromRequest for AdminViewer {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state_of(&req).map_err(|e| e.at(&req))?;
            let outcome = match basic_admin(&req) {
                Some(creds) => state
                    .engine
                    .authenticate_unscoped(&creds)
                    .map(|_| note_principal(&req, Principal::ADMIN))
                    .map_err(|_| unauthorized()),
                None => authorize_admin(&req, &state.engine).await,
            };
            outcome.map(|()| AdminViewer).map_err(|e| {
                let e = if e.kind == ProblemType::Unauthorized {
                    e.with_header(
                        actix_web::http::header::WWW_AUTHENTICATE,
                        actix_web::http::header::HeaderValue::from_static(
                            "Basic realm=\"eden-cas admin\", charset=\"UTF-8\"",
                        ),
                    )
                } else {
                    e
                };
                e.at(&req)
            })
        })
    }
}

/// `Authorization: Basic base64(admin:<token>)` as admin credentials; any
/// other header (or another user name) is `None`.
fn basic_admin(req: &HttpRequest) -> Option<crate::auth::Credentials> {
    use base64::Engine as _;
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, encoded) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    (user == Principal::ADMIN).then(|| crate::auth::Credentials {
        principal: Principal::Admin,
        secret: crate::auth::Secret::new(password),
    })
}

/// The 401 every bearer failure answers, whatever the cause.
pub fn unauthorized() -> ApiError {
    ApiError::new(
        ProblemType::Unauthorized,
        "missing, malformed or invalid bearer credential",
    )
}

/// Whether the request carries a syntactically valid bearer (no lookup);
/// fallback routes use it to answer 401 before 404.
pub fn has_wellformed_bearer(req: &HttpRequest) -> bool {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    parse_authorization(header).is_ok()
}

/// The request's bearer credentials; 401 when missing or malformed.
fn credentials(req: &HttpRequest) -> Result<crate::auth::Credentials, ApiError> {
    let header = match req.headers().get(actix_web::http::header::AUTHORIZATION) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| unauthorized())?),
    };
    parse_authorization(header).map_err(|_| unauthorized())
}

/// Authenticates a deployment-wide admin route (no experiment in the
/// path): 401 for a missing, malformed or wrong bearer, 403 for a worker
/// bearer (workers exist only within an experiment).
pub async fn authorize_admin(req: &HttpRequest, engine: &Arc<Engine>) -> Result<(), ApiError> {
    let creds = credentials(req)?;
    if !creds.principal.is_admin() {
        return Err(ApiError::forbidden(
            "endpoint is admin-gated; worker bearers may not access it",
        ));
    }
    engine
        .authenticate_unscoped(&creds)
        .map_err(|_| unauthorized())?;
    note_principal(req, Principal::ADMIN);
    Ok(())
}

/// Authenticates the bearer for the path's experiment (`{exp}`), then
/// checks the header and the experiment id's shape.
pub async fn authorize(req: &HttpRequest, engine: &Arc<Engine>) -> Result<Caller, ApiError> {
    let creds = credentials(req)?;
    let path = req.match_info().get("exp").unwrap_or_default();
    let experiment = ExperimentId::parse(path);
    let principal = match experiment {
        Some(exp) => engine.authenticate(exp, &creds).await,
        None => engine.authenticate_unscoped(&creds),
    }
    .map_err(|_| unauthorized())?;
    note_principal(req, principal.as_str());
    let declared = req
        .headers()
        .get("x-eden-experiment-id")
        .and_then(|v| v.to_str().ok());
    if declared != Some(path) {
        return Err(ApiError::new(
            ProblemType::ExperimentIdMismatch,
            "the X-Eden-Experiment-Id header must be present and equal the experiment id of the path",
        ));
    }
    let experiment = experiment.ok_or_else(|| ApiError::not_found("no such experiment"))?;
    Ok(Caller {
        experiment,
        principal,
    })
}
