//! Helpers for the `/cas/v1/` integration tests: request builders, the
//! native problem vocabulary, client-side chunking and frame encoding (the
//! last two from [`super`]), against a [`Server`].

#![allow(dead_code)]

use reqwest::Method;
use reqwest::blocking::{RequestBuilder, Response};
use serde_json::Value;

pub use super::noise;
use super::server::{ACCEPT, Server, check_problem_envelope, header, send};

/// The problem types `/cas/v1/` may answer with, beyond EDEN's.
pub const V1_TYPES: &[(&str, u16)] = &[
    ("eden-cas://error/range-not-satisfiable", 416),
    ("eden-cas://error/chunk-mismatch", 422),
    ("eden-cas://error/chunks-missing", 409),
    ("eden-cas://error/digest-mismatch", 422),
    ("eden-cas://error/session-expired", 410),
    ("eden-cas://error/quota-exceeded", 507),
    ("eden-cas://error/precondition-failed", 412),
    ("eden-cas://error/precondition-required", 428),
];

/// `<base>/cas/v1/experiments/<exp><path>`.
pub fn url(server: &Server, exp: &str, path: &str) -> String {
    format!("{}/cas/v1/experiments/{exp}{path}", server.base_url())
}

/// A `/cas/v1/` request with the experiment header and a bearer.
pub fn req(server: &Server, method: Method, exp: &str, path: &str, bearer: &str) -> RequestBuilder {
    server
        .client()
        .request(method, url(server, exp, path))
        .header("X-Eden-Experiment-Id", exp)
        .header("Accept", ACCEPT)
        .header("Authorization", format!("Bearer {bearer}"))
}

/// GET.
pub fn get(server: &Server, exp: &str, path: &str, bearer: &str) -> Response {
    send(req(server, Method::GET, exp, path, bearer))
}

/// DELETE.
pub fn delete(server: &Server, exp: &str, path: &str, bearer: &str) -> Response {
    send(req(server, Method::DELETE, exp, path, bearer))
}

/// POST of a JSON value.
pub fn post_json(server: &Server, exp: &str, path: &str, bearer: &str, body: &Value) -> Response {
    send(
        req(server, Method::POST, exp, path, bearer)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(body).expect("serialise")),
    )
}

/// Grants `principal` (`wkr_…` or `grp_…`) read access to artifact `id`,
/// as `bearer` (`POST /artifacts/{id}/grants`).
pub fn grant(server: &Server, exp: &str, bearer: &str, id: &str, principal: &str) -> Response {
    let path = format!("/artifacts/{id}/grants");
    let body = serde_json::json!({ "principal": principal });
    post_json(server, exp, &path, bearer, &body)
}

/// Revokes the grant of `principal` on artifact `id`, as `bearer`
/// (`DELETE /artifacts/{id}/grants/{principal}`).
pub fn revoke(server: &Server, exp: &str, bearer: &str, id: &str, principal: &str) -> Response {
    delete(
        server,
        exp,
        &format!("/artifacts/{id}/grants/{principal}"),
        bearer,
    )
}

/// Raw-body deposit with a content type.
pub fn deposit(server: &Server, exp: &str, bearer: &str, bytes: &[u8], ct: &str) -> Response {
    send(
        req(server, Method::POST, exp, "/artifacts", bearer)
            .header("Content-Type", ct)
            .body(bytes.to_vec()),
    )
}

/// Deposits and asserts 201; returns the `Artifact` JSON.
pub fn deposit_ok(server: &Server, exp: &str, bearer: &str, bytes: &[u8]) -> Value {
    super::server::expect_json(
        deposit(server, exp, bearer, bytes, "application/octet-stream"),
        201,
    )
}

/// GET `…/artifacts/{id}` with an optional `Range`.
pub fn fetch(server: &Server, exp: &str, bearer: &str, id: &str, range: Option<&str>) -> Response {
    let mut rb = req(
        server,
        Method::GET,
        exp,
        &format!("/artifacts/{id}"),
        bearer,
    );
    if let Some(r) = range {
        rb = rb.header("Range", r);
    }
    send(rb)
}

/// Fetches and asserts `status`; returns the body.
pub fn fetch_bytes(
    server: &Server,
    exp: &str,
    bearer: &str,
    id: &str,
    range: Option<&str>,
    status: u16,
) -> Vec<u8> {
    let resp = fetch(server, exp, bearer, id, range);
    let got = resp.status().as_u16();
    let body = resp.bytes().expect("body").to_vec();
    assert_eq!(
        got,
        status,
        "fetch {id} range {range:?}: {}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    body
}

/// Asserts a problem+json answer of `/cas/v1/` (EDEN's vocabulary plus
/// [`V1_TYPES`]); returns the body.
pub fn assert_problem(resp: Response, status: u16, type_uri: &str) -> Value {
    let got = resp.status().as_u16();
    let ct = header(&resp, "content-type");
    let bytes = resp.bytes().expect("read body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert_eq!(got, status, "unexpected status; body {text:?}");
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct:?}, body {text:?}"
    );
    let v: Value = serde_json::from_slice(&bytes).expect("problem JSON");
    assert_eq!(v["type"], Value::from(type_uri), "body {text}");
    if let Some((_, s)) = V1_TYPES.iter().find(|(t, _)| *t == type_uri) {
        assert_eq!(*s, status);
        assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
        assert_eq!(v["status"].as_u64(), Some(u64::from(status)));
    } else {
        check_problem_envelope(&v, status);
    }
    v
}

/// The server's default FastCDC chunks of `data`, as a client would cut them.
pub fn chunks(data: &[u8]) -> Vec<Vec<u8>> {
    super::chunks_of(data)
}

/// Lowercase hex BLAKE3 of `bytes`.
pub fn b3(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// [`super::frames`] as a request body a test can still edit.
pub fn frames(chunks: &[&[u8]]) -> Vec<u8> {
    super::frames(chunks).to_vec()
}

/// Creates an upload session; returns its id.
pub fn create_session(server: &Server, exp: &str, bearer: &str, body: &Value) -> String {
    let v = super::server::expect_json(post_json(server, exp, "/uploads", bearer, body), 201);
    v["session_id"].as_str().expect("session_id").to_string()
}

/// `missing` for chunk ids; asserts 200 and returns the missing ids.
pub fn missing(server: &Server, exp: &str, bearer: &str, sid: &str, ids: &[String]) -> Vec<String> {
    let v = super::server::expect_json(
        post_json(
            server,
            exp,
            &format!("/uploads/{sid}/missing"),
            bearer,
            &serde_json::json!({ "chunks": ids }),
        ),
        200,
    );
    v["missing"]
        .as_array()
        .expect("missing array")
        .iter()
        .map(|x| x.as_str().expect("id").to_string())
        .collect()
}

/// PUTs a framed body.
pub fn put_chunks(server: &Server, exp: &str, bearer: &str, sid: &str, body: Vec<u8>) -> Response {
    send(
        req(
            server,
            Method::PUT,
            exp,
            &format!("/uploads/{sid}/chunks"),
            bearer,
        )
        .header("Content-Type", "application/vnd.eden-cas.chunks")
        .body(body),
    )
}

/// Commits session `sid` as `chunks` (in order), claiming the BLAKE3 of
/// `data`, their concatenation.
pub fn commit_content(
    server: &Server,
    exp: &str,
    bearer: &str,
    sid: &str,
    chunks: &[Vec<u8>],
    data: &[u8],
) -> Response {
    commit(server, exp, bearer, sid, &commit_body(chunks, &b3(data)))
}

/// The commit body for `chunks` and a claimed BLAKE3 hex.
pub fn commit_body(chunks: &[Vec<u8>], blake3_hex: &str) -> Value {
    let list: Vec<Value> = chunks
        .iter()
        .map(|c| serde_json::json!([b3(c), c.len()]))
        .collect();
    serde_json::json!({ "chunks": list, "blake3": format!("blake3:{blake3_hex}") })
}

/// POSTs a commit.
pub fn commit(server: &Server, exp: &str, bearer: &str, sid: &str, body: &Value) -> Response {
    post_json(server, exp, &format!("/uploads/{sid}/commit"), bearer, body)
}

/// Ids of a listing answer, in order.
pub fn listed(v: &Value) -> Vec<String> {
    v["artifacts"]
        .as_array()
        .unwrap_or_else(|| panic!("no artifacts array in {v}"))
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_string())
        .collect()
}

/// Standard base64 (test-side, independent of the server's encoder).
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = String::new();
    for b in bytes {
        bits.push_str(&format!("{b:08b}"));
    }
    let mut out = String::new();
    for six in bits.as_bytes().chunks(6) {
        let mut v = 0usize;
        for i in 0..6 {
            v = v * 2 + usize::from(six.get(i) == Some(&b'1'));
        }
        out.push(A[v] as char);
    }
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}
