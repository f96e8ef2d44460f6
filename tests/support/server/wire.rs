//! Wire-level helpers: hand-built multipart bodies, deposit and fetch
//! requests, and the checks every answer must pass (JSON bodies, the
//! problem+json envelope and its closed vocabulary, ids and timestamps).

use std::path::Path;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use reqwest::blocking::Response;
use serde_json::Value;

use super::{CROCKFORD, Server, random_hex, send};

/// The closed error vocabulary a `/v0/` endpoint may emit (type → status).
pub const VOCABULARY: &[(&str, u16)] = &[
    ("eden://error/bad-request", 400),
    ("eden://error/experiment-id-mismatch", 400),
    ("eden://error/unauthorized", 401),
    ("eden://error/forbidden", 403),
    ("eden://error/not-found", 404),
    ("eden://error/payload-too-large", 413),
    ("eden://error/already-exists", 409),
    ("eden://error/reserved-identifier", 409),
    ("eden://error/cycle-detected", 409),
    ("eden://error/invalid-name", 422),
];

/// One part of a hand-built multipart body.
pub struct Part<'a> {
    /// `name=` in Content-Disposition.
    pub name: &'a str,
    /// `filename=`, if any.
    pub filename: Option<&'a str>,
    /// Raw bytes of the part's `Content-Type` header value, if any.
    pub content_type: Option<&'a [u8]>,
    /// The part body.
    pub data: &'a [u8],
}

/// A fresh boundary like httpx's (32 hex characters).
pub fn boundary() -> String {
    random_hex(16)
}

/// Builds a multipart/form-data body byte for byte.
pub fn multipart_body(boundary: &str, parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut cd = format!("Content-Disposition: form-data; name=\"{}\"", p.name);
        if let Some(f) = p.filename {
            cd.push_str(&format!("; filename=\"{f}\""));
        }
        body.extend_from_slice(cd.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(ct) = p.content_type {
            body.extend_from_slice(b"Content-Type: ");
            body.extend_from_slice(ct);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(p.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// POSTs a raw body to `/artifacts` with the given request `Content-Type`.
pub fn post_artifact_raw(
    server: &Server,
    exp: &str,
    bearer: &str,
    request_content_type: &str,
    body: Vec<u8>,
) -> Response {
    send(
        server
            .v0_ct(
                Method::POST,
                exp,
                "/artifacts",
                Some(bearer),
                request_content_type,
            )
            .body(body),
    )
}

/// Deposits `bytes` as EDEN's client does: one part `file`, filename
/// `artifact`, and the part `Content-Type` if given.
pub fn deposit(
    server: &Server,
    exp: &str,
    bearer: &str,
    bytes: &[u8],
    content_type: Option<&str>,
) -> Response {
    let b = boundary();
    let body = multipart_body(
        &b,
        &[Part {
            name: "file",
            filename: Some("artifact"),
            content_type: content_type.map(str::as_bytes),
            data: bytes,
        }],
    );
    post_artifact_raw(
        server,
        exp,
        bearer,
        &format!("multipart/form-data; boundary={b}"),
        body,
    )
}

/// Deposits and asserts 201; returns the `artifacts_uri`.
pub fn deposit_ok(server: &Server, exp: &str, bearer: &str, bytes: &[u8], ct: &str) -> String {
    let v = expect_json(deposit(server, exp, bearer, bytes, Some(ct)), 201);
    v["artifacts_uri"]
        .as_str()
        .expect("artifacts_uri")
        .to_string()
}

/// Fetches `uri` (percent-encoded into `?uri=`).
pub fn fetch(server: &Server, exp: &str, bearer: &str, uri: &str) -> Response {
    let q = utf8_percent_encode(uri, NON_ALPHANUMERIC).to_string();
    fetch_query(server, exp, bearer, &format!("uri={q}"))
}

/// Fetches with a raw query string (without the `?`).
pub fn fetch_query(server: &Server, exp: &str, bearer: &str, query: &str) -> Response {
    let path = if query.is_empty() {
        "/artifacts".to_string()
    } else {
        format!("/artifacts?{query}")
    };
    server.get(exp, &path, bearer)
}

/// The artifact id inside `eden://artifacts/<id>`.
pub fn artifact_id(uri: &str) -> &str {
    uri.strip_prefix("eden://artifacts/")
        .expect("eden://artifacts/ uri")
}

/// A response header as a string ("" when absent).
pub fn header(resp: &Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// Asserts the status and a JSON content type, and parses the body.
pub fn expect_json(resp: Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let ct = header(&resp, "content-type");
    let bytes = resp.bytes().expect("read body");
    assert_eq!(
        got,
        status,
        "unexpected status; content-type {ct:?}, body {:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// Asserts a problem+json answer with `status` and `type` and a well-formed
/// envelope; returns the body.
pub fn assert_problem(resp: Response, status: u16, type_uri: &str) -> Value {
    let got = resp.status().as_u16();
    let ct = header(&resp, "content-type");
    let bytes = resp.bytes().expect("read body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert_eq!(
        got, status,
        "unexpected status; content-type {ct:?}, body {text:?}"
    );
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct:?}, body {text:?}"
    );
    let v: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("problem body is not JSON ({e}): {text:?}"));
    assert_eq!(v["type"], Value::from(type_uri), "body {text}");
    check_problem_envelope(&v, status);
    v
}

/// The envelope rules every `/v0/` error body obeys.
pub fn check_problem_envelope(v: &Value, status: u16) {
    let ty = v["type"]
        .as_str()
        .unwrap_or_else(|| panic!("no string type: {v}"));
    // The closed vocabulary covers client errors; a 5xx is an internal error
    // whose type (e.g. `about:blank`) the contract leaves open.
    if status < 500 {
        let expected = VOCABULARY
            .iter()
            .find(|(t, _)| *t == ty)
            .unwrap_or_else(|| panic!("type {ty:?} is outside the closed vocabulary: {v}"));
        assert_eq!(expected.1, status, "type {ty} with status {status}");
    }
    let title = v["title"]
        .as_str()
        .unwrap_or_else(|| panic!("no string title: {v}"));
    assert!(!title.is_empty(), "empty title: {v}");
    assert_eq!(
        v["status"].as_u64(),
        Some(u64::from(status)),
        "status field: {v}"
    );
    let detail = v["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no string detail: {v}"));
    assert!(!detail.is_empty(), "empty detail: {v}");
    if let Some(i) = v.get("instance") {
        assert!(i.is_string(), "instance is not a string: {v}");
    }
}

/// Sorted keys of a JSON object.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// Whether `s` is an RFC 3339 UTC timestamp as EDEN writes them:
/// `^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$`.
pub fn is_timestamp(s: &str) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd";
    let Some(body) = s.strip_suffix('Z') else {
        return false;
    };
    let (main, frac) = body.split_once('.').unwrap_or((body, "0"));
    let digit_or = |(c, p): (u8, &u8)| {
        if *p == b'd' {
            c.is_ascii_digit()
        } else {
            c == *p
        }
    };
    main.len() == SHAPE.len()
        && main.bytes().zip(SHAPE).all(digit_or)
        && !frac.is_empty()
        && frac.bytes().all(|c| c.is_ascii_digit())
}

/// Whether `s` is `len` lowercase hex characters.
pub fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` is `<prefix>_` + 26 lowercase Crockford characters.
pub fn is_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .is_some_and(|r| r.len() == 26 && r.bytes().all(|c| CROCKFORD.contains(&c)))
}

/// Total size of all regular files under `dir` (0 when it does not exist),
/// leaving out `audit/` directories: audit log segments are written in the
/// background (every few seconds) and are not stored content.
pub fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in rd.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                if entry.file_name() != "audit" {
                    stack.push(entry.path());
                }
            } else if ft.is_file() {
                total += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

/// Asserts that no top-level value of a JSON object is `null`.
pub fn assert_no_nulls(v: &Value) {
    for (k, x) in v.as_object().expect("object") {
        assert!(!x.is_null(), "key {k} is null in {v}");
    }
}

/// The `id_key` of every item of the `wrapper` array of a list answer.
pub fn list_ids(v: &Value, wrapper: &str, id_key: &str) -> Vec<String> {
    v[wrapper]
        .as_array()
        .unwrap_or_else(|| panic!("no {wrapper} array in {v}"))
        .iter()
        .map(|x| x[id_key].as_str().expect("id").to_string())
        .collect()
}
