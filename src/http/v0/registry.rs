//! v0 worker registry, whoami and groups (EDEN 07 §6, §7).

use actix_web::{HttpRequest, HttpResponse, web};

use super::json as body;
use super::{AppState, Caller, engine};
use crate::api::v0::{Group, Groups, WhoAmI, Worker, Workers};
use crate::auth::{GroupId, MemberId, NameError, Principal, Secret, WorkerId, validate_name};
use crate::engine::EngineError;
use crate::engine::registry::{GroupView, WorkerView};
use crate::http::problem::{ApiError, ProblemType};
use crate::http::query;

/// Largest JSON body accepted on registry routes.
const MAX_JSON_BYTES: usize = 256 * 1024;
/// Label limits (EDEN sets none; these keep records small).
const MAX_LABELS: usize = 64;
const MAX_LABEL_KEY_BYTES: usize = 256;
const MAX_LABEL_VALUE_BYTES: usize = 4096;

/// Reads a request body up to `MAX_JSON_BYTES` (oversize is `bad-request`).
async fn read_body(payload: crate::http::body::Body) -> Result<Vec<u8>, ApiError> {
    crate::http::read_body(payload, MAX_JSON_BYTES, ProblemType::BadRequest).await
}

fn json_ok(v: &impl serde::Serialize) -> HttpResponse {
    crate::http::json_response(actix_web::http::StatusCode::OK, v)
}

fn worker_view(w: &WorkerView, token: Option<&Secret>) -> Worker {
    Worker {
        experiment_id: w.experiment_id.to_string(),
        labels: w.record.labels.clone(),
        name: w.record.name.clone(),
        registered_at: w.record.registered_at.to_rfc3339(),
        registered_by: w.record.registered_by.to_string(),
        registration_token: token.map(|t| t.expose().to_string()),
        worker_id: w.worker_id.to_string(),
    }
}

fn group_view(g: &GroupView) -> Group {
    Group {
        created_at: g.record.created_at.to_rfc3339(),
        created_by: g.record.created_by.to_string(),
        experiment_id: g.experiment_id.to_string(),
        group_id: g.group_id.to_string(),
        members: g.record.members.iter().map(MemberId::to_string).collect(),
        name: g.record.name.clone(),
    }
}

/// The `{worker}` path segment; a malformed id names no worker (404).
fn worker_id(s: &str) -> Result<WorkerId, ApiError> {
    WorkerId::parse(s).ok_or_else(|| EngineError::NotFound.into())
}

/// The `{group}` path segment; a malformed id names no group (404).
fn group_id(s: &str) -> Result<GroupId, ApiError> {
    GroupId::parse(s).ok_or_else(|| EngineError::NotFound.into())
}

/// Group members from a request body: each a worker or group id (400 at
/// the first that is not).
fn parse_members(raw: Vec<String>) -> Result<Vec<MemberId>, ApiError> {
    raw.iter()
        .map(|m| {
            MemberId::parse(m).ok_or_else(|| {
                ApiError::bad_request(format!("member id {m:?} is not a wkr_ or grp_ id"))
            })
        })
        .collect()
}

fn name_filter(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    query::get(req.query_string(), "name").map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `POST …/workers` (admin).
pub async fn register_worker(
    req: HttpRequest,
    caller: Caller,
    payload: crate::http::body::Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    caller.require_admin().map_err(at)?;
    let raw = read_body(payload).await.map_err(at)?;
    let map = body::object(&raw, &["name", "labels"]).map_err(at)?;
    let name = body::string(&map, "name").map_err(at)?;
    let labels = body::string_map(&map, "labels")
        .map_err(at)?
        .unwrap_or_default();
    if labels.len() > MAX_LABELS
        || labels
            .iter()
            .any(|(k, v)| k.len() > MAX_LABEL_KEY_BYTES || v.len() > MAX_LABEL_VALUE_BYTES)
    {
        return Err(at(ApiError::bad_request(format!(
            "at most {MAX_LABELS} labels, keys up to {MAX_LABEL_KEY_BYTES} bytes, values up to {MAX_LABEL_VALUE_BYTES} bytes"
        ))));
    }
    let (w, token) = engine(&state)
        .register_worker(caller.experiment, name, labels)
        .await
        .map_err(|e| at(e.into()))?;
    tracing::info!(experiment = %caller.experiment, worker = %w.worker_id, "worker registered");
    Ok(json_ok(&worker_view(&w, Some(&token))))
}

/// `GET …/workers[?name=]`.
pub async fn list_workers(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let name = name_filter(&req).map_err(at)?;
    let workers = engine(&state)
        .workers(caller.experiment, name.as_deref())
        .await
        .map_err(|e| at(e.into()))?;
    let workers = workers.iter().map(|w| worker_view(w, None)).collect();
    Ok(json_ok(&Workers { workers }))
}

/// `GET …/workers/{W}`.
pub async fn read_worker(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let w = engine(&state)
        .worker(caller.experiment, &worker_id(&path.1).map_err(at)?)
        .await
        .map_err(|e| at(e.into()))?;
    Ok(json_ok(&worker_view(&w, None)))
}

/// `POST …/workers/{W}/reissue-credential` (admin). The body is ignored.
pub async fn reissue_credential(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    caller.require_admin().map_err(at)?;
    let (w, token) = engine(&state)
        .reissue_credential(caller.experiment, &worker_id(&path.1).map_err(at)?)
        .await
        .map_err(|e| at(e.into()))?;
    tracing::info!(experiment = %caller.experiment, worker = %w.worker_id, "credential reissued");
    Ok(json_ok(&worker_view(&w, Some(&token))))
}

/// `GET …/whoami` (workers only).
pub async fn whoami(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let Principal::Worker(wid) = &caller.principal else {
        return Err(at(ApiError::forbidden(
            "endpoint is worker-gated; the admin bearer may not access it",
        )));
    };
    let w = engine(&state)
        .worker(caller.experiment, wid)
        .await
        .map_err(|e| at(e.into()))?;
    Ok(json_ok(&WhoAmI {
        name: w.record.name,
        worker_id: w.worker_id.to_string(),
    }))
}

/// `POST …/groups` (admin).
pub async fn create_group(
    req: HttpRequest,
    caller: Caller,
    payload: crate::http::body::Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    caller.require_admin().map_err(at)?;
    let raw = read_body(payload).await.map_err(at)?;
    let map = body::object(&raw, &["name", "members"]).map_err(at)?;
    let name = body::string(&map, "name").map_err(at)?;
    let members = body::strings(&map, "members")
        .map_err(at)?
        .unwrap_or_default();
    let members = match parse_members(members) {
        Ok(m) => m,
        // A malformed name is reported before a malformed member, as the
        // engine checks the name first.
        Err(e) => match name.as_deref().map(validate_name) {
            Some(Err(NameError::Invalid(why))) => {
                return Err(at(EngineError::InvalidName(why).into()));
            }
            _ => return Err(at(e)),
        },
    };
    let g = engine(&state)
        .create_group(caller.experiment, name, members, &caller.principal)
        .await
        .map_err(|e| at(e.into()))?;
    Ok(json_ok(&group_view(&g)))
}

/// `GET …/groups[?name=]`.
pub async fn list_groups(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let name = name_filter(&req).map_err(at)?;
    let groups = engine(&state)
        .groups(caller.experiment, name.as_deref())
        .await
        .map_err(|e| at(e.into()))?;
    let groups = groups.iter().map(group_view).collect();
    Ok(json_ok(&Groups { groups }))
}

/// `GET …/groups/{G}`.
pub async fn read_group(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let g = engine(&state)
        .group(caller.experiment, &group_id(&path.1).map_err(at)?)
        .await
        .map_err(|e| at(e.into()))?;
    Ok(json_ok(&group_view(&g)))
}

/// `DELETE …/groups/{G}` (admin): 204.
pub async fn delete_group(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    caller.require_admin().map_err(at)?;
    engine(&state)
        .delete_group(caller.experiment, &group_id(&path.1).map_err(at)?)
        .await
        .map_err(|e| at(e.into()))?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST …/groups/{G}/members` (admin) with `{"member_id"}`.
pub async fn add_member(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    payload: crate::http::body::Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    caller.require_admin().map_err(at)?;
    let raw = read_body(payload).await.map_err(at)?;
    let map = body::object(&raw, &["member_id"]).map_err(at)?;
    let member = body::string(&map, "member_id")
        .map_err(at)?
        .ok_or_else(|| at(ApiError::bad_request("member_id is required")))?;
    let engine = engine(&state);
    let group = group_id(&path.1).map_err(at)?;
    let Some(member) = MemberId::parse(&member) else {
        // An unknown group answers 404 before a malformed member 400.
        engine
            .group(caller.experiment, &group)
            .await
            .map_err(|e| at(e.into()))?;
        return Err(at(ApiError::bad_request(
            "member_id is not a wkr_ or grp_ id",
        )));
    };
    let g = engine
        .add_member(caller.experiment, &group, &member)
        .await
        .map_err(|e| at(e.into()))?;
    Ok(json_ok(&group_view(&g)))
}

/// `DELETE …/groups/{G}/members/{M}` (admin). An `M` that is no worker or
/// group id is no member of anything: the group is answered unchanged.
pub async fn remove_member(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    caller.require_admin().map_err(at)?;
    let engine = engine(&state);
    let group = group_id(&path.1).map_err(at)?;
    let g = match MemberId::parse(&path.2) {
        Some(member) => {
            engine
                .remove_member(caller.experiment, &group, &member)
                .await
        }
        None => engine.group(caller.experiment, &group).await,
    }
    .map_err(|e| at(e.into()))?;
    Ok(json_ok(&group_view(&g)))
}
