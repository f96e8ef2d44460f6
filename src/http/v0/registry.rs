//! v0 worker registry, whoami and groups (EDEN 07 §6, §7).

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};

use super::json as body;
use super::{AppState, authorize, engine};
use crate::auth::{Principal, Secret};
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

fn json_ok(v: Value) -> HttpResponse {
    crate::http::json_response(actix_web::http::StatusCode::OK, &v)
}

fn worker_json(w: &WorkerView, token: Option<&Secret>) -> Value {
    let mut m = Map::new();
    m.insert("worker_id".into(), json!(w.worker_id));
    if !w.record.name.is_empty() {
        m.insert("name".into(), json!(w.record.name));
    }
    m.insert("experiment_id".into(), json!(w.experiment_id));
    m.insert("registered_at".into(), json!(w.record.registered_at));
    m.insert("registered_by".into(), json!(w.record.registered_by));
    if !w.record.labels.is_empty() {
        m.insert("labels".into(), json!(w.record.labels));
    }
    if let Some(t) = token {
        m.insert("registration_token".into(), json!(t.expose()));
    }
    Value::Object(m)
}

fn group_json(g: &GroupView) -> Value {
    let mut m = Map::new();
    m.insert("group_id".into(), json!(g.group_id));
    if !g.record.name.is_empty() {
        m.insert("name".into(), json!(g.record.name));
    }
    m.insert("experiment_id".into(), json!(g.experiment_id));
    m.insert("members".into(), json!(g.record.members));
    m.insert("created_at".into(), json!(g.record.created_at));
    m.insert("created_by".into(), json!(g.record.created_by));
    Value::Object(m)
}

fn name_filter(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    query::get(req.query_string(), "name").map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `POST …/workers` (admin).
pub async fn register_worker(
    req: HttpRequest,
    payload: crate::http::body::Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let caller = authorize(&req, engine(&state)).await.map_err(at)?;
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
        .register_worker(&caller.experiment, name, labels)
        .await
        .map_err(|e| at(e.into()))?;
    tracing::info!(experiment = %caller.experiment, worker = %w.worker_id, "worker registered");
    Ok(json_ok(worker_json(&w, Some(&token))))
}

/// `GET …/workers[?name=]`.
pub async fn list_workers(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let caller = authorize(&req, engine(&state)).await.map_err(at)?;
    let name = name_filter(&req).map_err(at)?;
    let workers = engine(&state)
        .workers(&caller.experiment, name.as_deref())
        .await
        .map_err(|e| at(e.into()))?;
    let list: Vec<Value> = workers.iter().map(|w| worker_json(w, None)).collect();
    Ok(json_ok(json!({ "workers": list })))
}

/// `GET …/workers/{W}`.
pub async fn read_worker(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let caller = authorize(&req, engine(&state)).await.map_err(at)?;
    let w = engine(&state)
        .worker(&caller.experiment, &path.1)
        .await
        .map_err(|e| at(e.into()))?;
    Ok(json_ok(worker_json(&w, None)))
}

/// `POST …/workers/{W}/reissue-credential` (admin). The body is ignored.
pub async fn reissue_credential(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let caller = authorize(&req, engine(&state)).await.map_err(at)?;
    caller.require_admin().map_err(at)?;
    let (w, token) = engine(&state)
        .reissue_credential(&caller.experiment, &path.1)
        .await
        .map_err(|e| at(e.into()))?;
    tracing::info!(experiment = %caller.experiment, worker = %w.worker_id, "credential reissued");
    Ok(json_ok(worker_json(&w, Some(&token))))
}

/// `GET …/whoami` (workers only).
pub async fn whoami(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let caller = authorize(&req, engine(&state)).await.map_err(at)?;
    let Principal::Worker(wid) = &caller.principal else {
        return Err(at(ApiError::forbidden(
            "endpoint is worker-gated; the admin bearer may not access it",
        )));
    };
    let w = engine(&state)
        .worker(&caller.experiment, wid.as_str())
        .await
        .map_err(|e| at(e.into()))?;
    let mut m = Map::new();
    m.insert("worker_id".into(), json!(w.worker_id));
    if !w.record.name.is_empty() {
        m.insert("name".into(), json!(w.record.name));
    }
    Ok(json_ok(Value::Object(m)))
}

/// `POST …/groups` (admin).
pub async fn create_group(
    req: HttpRequest,
    payload: crate::http::body::Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let caller = authorize(&req, engine(&state)).await.map_err(at)?;
    caller.require_admin().map_err(at)?;
    let raw = read_body(payload).await.map_err(at)?;
    let map = body::object(&raw, &["name", "members"]).map_err(at)?;
    let name = body::string(&map, "name").map_err(at)?;
    let members = body::strings(&map, "members")
        .map_err(at)?
        .unwrap_or_default();
    let g = engine(&state)
        .create_group(&caller.experiment, name, members, &caller.principal)
        .await
        .map_err(|e| at(e.into()))?;
    Ok(json_ok(group_json(&g)))
}

/// `GET …/groups[?name=]`.
pub async fn list_groups(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let caller = authorize(&req, engine(&state)).await.map_err(at)?;
    let name = name_filter(&req).map_err(at)?;
    let groups = engine(&state)
        .groups(&caller.experiment, name.as_deref())
        .await
        .map_err(|e| at(e.into()))?;
    let list: Vec<Value> = groups.iter().map(group_json).collect();
    Ok(json_ok(json!({ "groups": list })))
}

/// `GET …/groups/{G}`.
pub async fn read_group(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let caller = authorize(&req, engine(&state)).await.map_err(at)?;
    let g = engine(&state)
        .group(&caller.experiment, &path.1)
        .await
        .map_err(|e| at(e.into()))?;
    Ok(json_ok(group_json(&g)))
}

/// `DELETE …/groups/{G}` (admin): 204.
pub async fn delete_group(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let caller = authorize(&req, engine(&state)).await.map_err(at)?;
    caller.require_admin().map_err(at)?;
    engine(&state)
        .delete_group(&caller.experiment, &path.1)
        .await
        .map_err(|e| at(e.into()))?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST …/groups/{G}/members` (admin) with `{"member_id"}`.
pub async fn add_member(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: crate::http::body::Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let caller = authorize(&req, engine(&state)).await.map_err(at)?;
    caller.require_admin().map_err(at)?;
    let raw = read_body(payload).await.map_err(at)?;
    let map = body::object(&raw, &["member_id"]).map_err(at)?;
    let member = body::string(&map, "member_id")
        .map_err(at)?
        .ok_or_else(|| at(ApiError::bad_request("member_id is required")))?;
    let g = engine(&state)
        .add_member(&caller.experiment, &path.1, &member)
        .await
        .map_err(|e| at(e.into()))?;
    Ok(json_ok(group_json(&g)))
}

/// `DELETE …/groups/{G}/members/{M}` (admin).
pub async fn remove_member(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let caller = authorize(&req, engine(&state)).await.map_err(at)?;
    caller.require_admin().map_err(at)?;
    let g = engine(&state)
        .remove_member(&caller.experiment, &path.1, &path.2)
        .await
        .map_err(|e| at(e.into()))?;
    Ok(json_ok(group_json(&g)))
}
