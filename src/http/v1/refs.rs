//! `/cas/v1/` named references (`docs/api.md`, "References"): set with
//! compare-and-swap (`PUT …/refs/{name}`, `If-Match` / `If-None-Match: *`),
//! get, list by prefix, delete, history (`GET …/ref-history/{name}`).
//!
//! Handlers parse names and conditions and translate; the engine decides
//! who sees what (`engine/refs.rs`). A name that does not parse names
//! nothing: 404 where it is read, 422 `invalid-name` where it is set.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use super::dto::{artifact_view, parse_ttl};
use super::{AppState, engine, json, parse_json, read_body};
use crate::api::v1::{RefChange, RefHistory, RefPage, Reference, SetRefRequest};
use crate::auth::{MemberId, Principal};
use crate::clock::Timestamp;
use crate::engine::EngineError;
use crate::engine::ingest::parse_artifact_id;
use crate::engine::refs::{RefCondition, RefUpdate, RefView};
use crate::http::auth::Caller;
use crate::http::problem::{ApiError, ProblemType};
use crate::http::query;
use crate::ids::ArtifactId;
use crate::naming::{MAX_REF_NAME_BYTES, RefName, check_labels, parse_label};

/// Largest JSON body of a set.
const MAX_SET_BODY: usize = 16 << 10;
/// Default and largest listing page.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Most grants on one reference.
const MAX_GRANTS: usize = 256;

/// The `{name}` path tail; `/` may also come as `%2F` (actix keeps it
/// escaped).
fn raw_name(req: &HttpRequest) -> String {
    req.match_info()
        .get("name")
        .unwrap_or_default()
        .replace("%2F", "/")
        .replace("%2f", "/")
}

/// A name to read: one that does not parse names nothing.
fn read_name(req: &HttpRequest) -> Result<RefName, ApiError> {
    RefName::parse(&raw_name(req)).map_err(|_| not_found())
}

fn not_found() -> ApiError {
    ApiError::not_found("no such reference in this experiment")
}

/// `NotFound` of a reference operation names the reference.
fn ref_error(e: EngineError) -> ApiError {
    match e {
        EngineError::NotFound => not_found(),
        other => other.into(),
    }
}

/// An `If-Match` value: `*` or one entity tag, the target's id (quoted;
/// bare is accepted). A tag that is no artifact id can never match.
fn if_match(v: &str) -> Result<RefCondition, ApiError> {
    let v = v.trim();
    if v == "*" {
        return Ok(RefCondition::Present);
    }
    if v.contains(',') {
        return Err(ApiError::bad_request("If-Match takes one entity tag"));
    }
    let tag = v
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(v);
    match parse_artifact_id(tag) {
        Some(id) => Ok(RefCondition::Target(id)),
        None => Err(EngineError::PreconditionFailed.into()),
    }
}

fn header_text(req: &HttpRequest, name: header::HeaderName) -> Result<Option<&str>, ApiError> {
    req.headers()
        .get(&name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request(format!("{name} must be visible ASCII")))
        })
        .transpose()
}

/// The condition of a set from its two headers' values: exactly one of
/// `If-Match` and `If-None-Match: *`; neither is 428.
///
/// # Errors
/// 400 for both or a malformed value, 428 for neither, 412 for an
/// `If-Match` tag that is no artifact id (it can never match).
pub(crate) fn condition_of(m: Option<&str>, n: Option<&str>) -> Result<RefCondition, ApiError> {
    match (m, n) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give If-Match or If-None-Match, not both",
        )),
        (Some(m), None) => if_match(m),
        (None, Some(n)) if n.trim() == "*" => Ok(RefCondition::Absent),
        (None, Some(_)) => Err(ApiError::bad_request(
            "If-None-Match on a reference takes only *",
        )),
        (None, None) => Err(ApiError::new(
            ProblemType::PreconditionRequired,
            "setting a reference needs If-Match (its current target, or *) or If-None-Match: *",
        )),
    }
}

fn set_condition(req: &HttpRequest) -> Result<RefCondition, ApiError> {
    condition_of(
        header_text(req, header::IF_MATCH)?,
        header_text(req, header::IF_NONE_MATCH)?,
    )
}

/// The reference a raw deposit sets (`X-Eden-Ref`, with
/// `X-Eden-Ref-If-Match` or `X-Eden-Ref-If-None-Match`, and optionally
/// `X-Eden-Ref-Expires-In`), if any.
///
/// # Errors
/// 422 for a bad name, else as [`condition_of`] and [`parse_ref_options`].
pub(crate) fn deposit_ref(req: &HttpRequest) -> Result<Option<RefUpdate>, ApiError> {
    let h = |n: &'static str| header_text(req, header::HeaderName::from_static(n));
    let Some(name) = h("x-eden-ref")? else {
        return Ok(None);
    };
    let name =
        RefName::parse(name.trim()).map_err(|why| ApiError::from(EngineError::InvalidName(why)))?;
    let condition = condition_of(h("x-eden-ref-if-match")?, h("x-eden-ref-if-none-match")?)?;
    let (expires_at, grants) =
        parse_ref_options(h("x-eden-ref-expires-in")?.map(str::to_string), None)?;
    Ok(Some(RefUpdate {
        name,
        condition,
        expires_at,
        grants,
    }))
}

/// The labels of a deposit: every `X-Eden-Label` header, each one
/// `key=value` or a comma-separated list of them.
///
/// # Errors
/// 400 for a malformed label, a repeated key or too many.
pub(crate) fn deposit_labels(req: &HttpRequest) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for v in req.headers().get_all("x-eden-label") {
        let v = v
            .to_str()
            .map_err(|_| ApiError::bad_request("X-Eden-Label must be visible ASCII"))?;
        for one in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, val) = parse_label(one).map_err(ApiError::bad_request)?;
            if out.insert(k, val).is_some() {
                return Err(ApiError::bad_request("a label key is given twice"));
            }
        }
    }
    check_labels(&out).map_err(ApiError::bad_request)?;
    Ok(out)
}

/// A reference as its viewer sees it.
pub(crate) fn reference_view(v: &RefView, viewer: &Principal) -> Reference {
    let r = &v.record;
    Reference {
        artifact: artifact_view(&r.target, &v.target, viewer),
        created_at: r.created_at.to_rfc3339(),
        created_by: r.created_by.to_string(),
        expires_at: r.expires_at.map(Timestamp::to_rfc3339),
        grants: r.grants.iter().map(|m| m.as_str().to_string()).collect(),
        name: v.name.to_string(),
        target: r.target.to_string(),
        updated_at: r.updated_at.to_rfc3339(),
        updated_by: r.updated_by.to_string(),
    }
}

/// A JSON answer with the reference's `ETag` (its target, quoted).
fn with_etag(status: StatusCode, v: &RefView, viewer: &Principal) -> HttpResponse {
    let mut resp = json(status, &reference_view(v, viewer));
    if let Ok(tag) = HeaderValue::from_str(&format!("\"{}\"", v.record.target)) {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    resp
}

/// A reference's lifetime and grants as the engine takes them.
///
/// # Errors
/// 400 for a malformed lifetime or grant.
pub(crate) fn parse_ref_options(
    expires_in: Option<String>,
    grants: Option<Vec<String>>,
) -> Result<(Option<Timestamp>, Option<Vec<MemberId>>), ApiError> {
    let expires_at = expires_in.as_deref().map(parse_ttl).transpose()?.map(|d| {
        Timestamp::now()
            .whole_secs()
            .plus(Duration::from_secs(d.as_secs()))
    });
    let grants = grants
        .map(|g| {
            if g.len() > MAX_GRANTS {
                return Err(ApiError::bad_request("at most 256 grants on a reference"));
            }
            let mut out: Vec<MemberId> = Vec::with_capacity(g.len());
            for p in g {
                let m = MemberId::parse(&p)
                    .ok_or_else(|| ApiError::bad_request("grants are wkr_ or grp_ ids"))?;
                if !out.contains(&m) {
                    out.push(m);
                }
            }
            Ok(out)
        })
        .transpose()?;
    Ok((expires_at, grants))
}

/// What a set body gives the engine: target, expiry, grants.
type SetParts = (ArtifactId, Option<Timestamp>, Option<Vec<MemberId>>);

/// The parts of a set body the engine takes.
fn parse_set(body: SetRefRequest) -> Result<SetParts, ApiError> {
    let target = parse_artifact_id(&body.target)
        .ok_or_else(|| ApiError::bad_request("target must be an artifact id (32 hex)"))?;
    let (expires_at, grants) = parse_ref_options(body.expires_in, body.grants)?;
    Ok((target, expires_at, grants))
}

/// `PUT …/refs/{name}` `{"target", "expires_in"?, "grants"?}` → 201 when
/// created, 200 when moved.
pub async fn set(
    req: HttpRequest,
    caller: Caller,
    payload: crate::http::body::Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let engine = engine(&state).clone();
    let name =
        RefName::parse(&raw_name(&req)).map_err(|why| at(EngineError::InvalidName(why).into()))?;
    let condition = set_condition(&req).map_err(at)?;
    let body: SetRefRequest =
        parse_json(&read_body(payload, MAX_SET_BODY).await.map_err(at)?).map_err(at)?;
    let (target, expires_at, grants) = parse_set(body).map_err(at)?;
    let upd = RefUpdate {
        name,
        condition,
        expires_at,
        grants,
    };
    let (view, created) = engine
        .set_ref(caller.experiment, &caller.principal, upd, target)
        .await
        .map_err(|e| {
            at(match e {
                EngineError::NotFound => {
                    ApiError::not_found("no such target artifact in this experiment")
                }
                other => other.into(),
            })
        })?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_etag(status, &view, &caller.principal))
}

/// `GET …/refs/{name}` → `Reference` with `ETag`.
pub async fn get(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let name = read_name(&req).map_err(at)?;
    let view = engine(&state)
        .get_ref(caller.experiment, &caller.principal, &name)
        .await
        .map_err(|e| at(ref_error(e)))?;
    Ok(with_etag(StatusCode::OK, &view, &caller.principal))
}

/// `DELETE …/refs/{name}` (optional `If-Match`) → 204.
pub async fn delete(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let name = read_name(&req).map_err(at)?;
    let expected = match header_text(&req, header::IF_MATCH).map_err(at)? {
        None => None,
        Some(v) => match if_match(v).map_err(at)? {
            RefCondition::Target(id) => Some(id),
            _ => None,
        },
    };
    engine(&state)
        .delete_ref(caller.experiment, &caller.principal, &name, expected)
        .await
        .map_err(|e| at(ref_error(e)))?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET …/refs?prefix=&cursor=&limit=` → a page of visible references.
pub async fn list(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let params =
        query::parse(req.query_string()).map_err(|e| at(ApiError::bad_request(e.to_string())))?;
    let (mut limit, mut cursor, mut prefix) = (DEFAULT_LIMIT, None, String::new());
    for (k, v) in params {
        match k.as_str() {
            "limit" => {
                limit = crate::http::query::page_limit(&v, MAX_LIMIT).map_err(at)?;
            }
            "cursor" if !v.is_empty() => {
                cursor = Some(
                    RefName::parse(&v)
                        .map_err(|_| at(ApiError::bad_request("malformed cursor")))?,
                );
            }
            "prefix" => {
                if v.len() > MAX_REF_NAME_BYTES || v.contains('\0') {
                    return Err(at(ApiError::bad_request(
                        "prefix is at most 200 bytes, without NUL",
                    )));
                }
                prefix = v;
            }
            _ => {}
        }
    }
    let page = engine(&state)
        .list_refs(caller.experiment, &caller.principal, prefix, cursor, limit)
        .await
        .map_err(|e| at(e.into()))?;
    Ok(json(
        StatusCode::OK,
        &RefPage {
            next_cursor: page.next_cursor.map(|c| c.to_string()),
            refs: page
                .items
                .iter()
                .map(|v| reference_view(v, &caller.principal))
                .collect(),
        },
    ))
}

/// `GET …/ref-history/{name}` → `RefHistory`, newest first.
pub async fn history(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let at = |e: ApiError| e.at(&req);
    let name = read_name(&req).map_err(at)?;
    let entries = engine(&state)
        .ref_history(caller.experiment, &caller.principal, &name)
        .await
        .map_err(|e| at(ref_error(e)))?;
    let changes = entries
        .into_iter()
        .map(|e| RefChange {
            at: e.at.to_rfc3339(),
            by: e.by.to_string(),
            from: e.from.map(|f| f.to_string()),
            seq: e.seq,
            to: e.to.map(|t| t.to_string()),
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &RefHistory {
            changes,
            name: name.to_string(),
        },
    ))
}
