//! Which routes a listener serves when `admin-listen` gives the operator
//! routes a listener of their own: `/metrics` and everything under
//! `/cas/v1/admin/` are then served there only, and the main listener
//! answers 404 `not-found` for them (whatever the bearer: the answer says
//! nothing). The admin listener serves those routes plus `/healthz` and
//! `/readyz` (for its own probes), and 404 for everything else.
//!
//! The split is by path prefix, ahead of routing, so an admin route added
//! later moves with the others without a change here.

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{ResponseError as _, web};

use super::problem::ApiError;

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerRole {
    /// The only listener: every route.
    All,
    /// The main listener while `admin-listen` is set: all but the
    /// operator routes.
    Public,
    /// The `admin-listen` listener: the operator routes and health.
    Admin,
}

/// `/metrics` and `/cas/v1/admin` with everything under it.
pub fn is_operator_route(path: &str) -> bool {
    path == "/metrics" || path == "/cas/v1/admin" || path.starts_with("/cas/v1/admin/")
}

impl ListenerRole {
    /// Whether a listener of this role serves `path`.
    pub fn serves(self, path: &str) -> bool {
        match self {
            ListenerRole::All => true,
            ListenerRole::Public => !is_operator_route(path),
            ListenerRole::Admin => {
                is_operator_route(path) || path == "/healthz" || path == "/readyz"
            }
        }
    }
}

/// The middleware (`middleware::from_fn`): 404 for a path this listener
/// does not serve; the role is the app's `web::Data<ListenerRole>`.
///
/// # Errors
/// Those of the inner service.
pub async fn split(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let role = req
        .app_data::<web::Data<ListenerRole>>()
        .map_or(ListenerRole::All, |r| *r.get_ref());
    if role.serves(req.path()) {
        return next.call(req).await;
    }
    let (http_req, _) = req.into_parts();
    let e = ApiError::not_found("no such route on this listener").at(&http_req);
    Ok(ServiceResponse::new(http_req, e.error_response()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_split_the_operator_routes() {
        for p in [
            "/metrics",
            "/cas/v1/admin",
            "/cas/v1/admin/gc",
            "/cas/v1/admin/x/y",
        ] {
            assert!(ListenerRole::All.serves(p));
            assert!(!ListenerRole::Public.serves(p), "{p}");
            assert!(ListenerRole::Admin.serves(p), "{p}");
        }
        for p in ["/healthz", "/readyz"] {
            assert!(ListenerRole::Public.serves(p) && ListenerRole::Admin.serves(p));
        }
        for p in [
            "/v0/experiments/e/artifacts",
            "/cas/v1/experiments/e/artifacts",
            "/cas/v1/administrator",
            "/metricsx",
            "/",
        ] {
            assert!(ListenerRole::Public.serves(p), "{p}");
            assert!(!ListenerRole::Admin.serves(p), "{p}");
        }
    }
}
