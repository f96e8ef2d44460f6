//! HTTP calls to `/cas/v1/experiments/{E}/…` and the decoding of answers:
//! JSON bodies, problem+json errors (`docs/api.md`), artifact and session
//! shapes.
//!
//! Keeps two promises: the bearer token only ever travels in a sensitive
//! `Authorization` header (never in a URL or a message), and every request
//! body byte handed to the transport is counted ([`Api::bytes_sent`]), retries
//! included, so `put` can report what crossed the wire. Idempotent calls are
//! retried on transport failures and 502/503/504; `commit` never is.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::wire::{Artifact, ListPage};
use super::{ClientError, Result};
use crate::api::problem::Problem;
use crate::api::v1::{
    GrantRequest, Missing, MissingRequest, Session, SessionRequest, SessionStatus, SetRefRequest,
};
use crate::auth::Secret;
use crate::hash::Digest;

/// Characters left as they are in one path segment or query value.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// `Content-Type` of a framed chunk batch.
pub const CHUNKS_CONTENT_TYPE: &str = "application/vnd.eden-cas.chunks";
/// Most ids one `missing` request may carry.
pub const MAX_MISSING_IDS: usize = 10_000;
/// How much of an error body is read to find the problem `detail`.
const PROBLEM_BODY_LIMIT: usize = 64 * 1024;
/// Attempts for idempotent requests (transport errors, 502/503/504).
const ATTEMPTS: u32 = 4;
/// Timeout of small JSON requests.
const SMALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Timeout of one chunk batch upload.
const BATCH_TIMEOUT: Duration = Duration::from_secs(600);

/// A handle on one server and experiment; cheap to clone.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    server: String,
    base: String,
    experiment: String,
    principal: String,
    sent: AtomicU64,
}

impl Api {
    /// A handle on `url` (scheme, host, port) and `experiment`, authenticating with `token`.
    pub fn new(url: &str, experiment: &str, token: &Secret) -> Result<Api> {
        let server = url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&server)
            .map_err(|e| ClientError::Usage(format!("server URL {server:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::Usage(format!(
                "server URL {server:?} must start with http:// or https://"
            )));
        }
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                ClientError::Usage("EDEN_CAS_TOKEN holds characters not allowed in a header".into())
            })?;
        auth.set_sensitive(true);
        let exp_header = HeaderValue::from_str(experiment)
            .map_err(|_| ClientError::Usage(format!("experiment {experiment:?} is not valid")))?;
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        headers.insert("X-Eden-Experiment-Id", exp_header);
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, application/problem+json"),
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("eden-cas/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Local(format!("cannot build the HTTP client: {e}")))?;
        let principal = token.expose().split(':').next().unwrap_or("").to_string();
        Ok(Api {
            inner: Arc::new(Inner {
                http,
                base: format!("{server}/cas/v1/experiments/{}", seg(experiment)),
                server,
                experiment: experiment.to_string(),
                principal,
                sent: AtomicU64::new(0),
            }),
        })
    }

    /// The server URL as configured, without a trailing `/`.
    pub fn server(&self) -> &str {
        &self.inner.server
    }

    /// The experiment id.
    pub fn experiment(&self) -> &str {
        &self.inner.experiment
    }

    /// The principal part of the bearer (`admin`, `wkr_…`).
    pub fn principal(&self) -> &str {
        &self.inner.principal
    }

    /// Request body bytes handed to the transport so far.
    pub fn bytes_sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    /// Sends one request; non-2xx answers become errors. Retries idempotent
    /// requests on transport errors and 502/503/504.
    async fn call(&self, req: Call<'_>) -> Result<Response> {
        let url = format!("{}{}", self.inner.base, req.path);
        let attempts = if req.idempotent { ATTEMPTS } else { 1 };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut rb = self.inner.http.request(req.method.clone(), &url);
            for (k, v) in &req.headers {
                rb = rb.header(*k, v);
            }
            if let Some(t) = req.timeout {
                rb = rb.timeout(t);
            }
            if let Some((body, ct)) = &req.body {
                self.inner
                    .sent
                    .fetch_add(body.len() as u64, Ordering::Relaxed);
                rb = rb.header(CONTENT_TYPE, *ct).body(body.clone());
            }
            let err = match rb.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let retry = matches!(resp.status().as_u16(), 502..=504);
                    let err = problem(resp).await;
                    if !retry {
                        return Err(err);
                    }
                    err
                }
                Err(e) => transport(&e),
            };
            if attempt >= attempts {
                return Err(err);
            }
            tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
        }
    }

    async fn json_call<T: DeserializeOwned>(&self, req: Call<'_>) -> Result<T> {
        let resp = self.call(req).await?;
        let body = resp.bytes().await.map_err(|e| transport(&e))?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(format!("bad JSON: {e}")))
    }

    async fn artifact_call(&self, req: Call<'_>) -> Result<Artifact> {
        Artifact::from_value(self.json_call(req).await?)
    }

    /// `POST …/uploads`.
    pub async fn create_session(&self, s: &SessionRequest) -> Result<Session> {
        self.json_call(Call::post("/uploads".into(), json_body(s)))
            .await
    }

    /// `GET …/uploads/{S}`; `None` when the session is unknown, expired or ended.
    pub async fn session(&self, session: &str) -> Result<Option<SessionStatus>> {
        match self
            .json_call(Call::get(format!("/uploads/{}", seg(session))))
            .await
        {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_status(404) || e.is_status(410) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST …/uploads/{S}/missing` for at most [`MAX_MISSING_IDS`] ids.
    pub async fn missing(&self, session: &str, ids: &[Digest]) -> Result<Vec<Digest>> {
        let chunks = ids.iter().map(Digest::to_hex).collect();
        let mut call = Call::post(
            format!("/uploads/{}/missing", seg(session)),
            json_body(&MissingRequest { chunks }),
        );
        call.idempotent = true;
        let answer: Missing = self.json_call(call).await?;
        answer
            .missing
            .iter()
            .map(|h| {
                h.parse()
                    .map_err(|_| ClientError::Protocol(format!("bad chunk id {h:?} in missing")))
            })
            .collect()
    }

    /// `PUT …/uploads/{S}/chunks` with a framed body.
    pub async fn put_chunks(&self, session: &str, body: Bytes) -> Result<()> {
        let call = Call {
            method: Method::PUT,
            path: format!("/uploads/{}/chunks", seg(session)),
            body: Some((body, CHUNKS_CONTENT_TYPE)),
            headers: Vec::new(),
            timeout: Some(BATCH_TIMEOUT),
            idempotent: true,
        };
        let resp = self.call(call).await?;
        // Drain the small receipt so the connection returns to the pool.
        resp.bytes().await.map_err(|e| transport(&e))?;
        Ok(())
    }

    /// `POST …/uploads/{S}/commit` with a prepared JSON body; never retried.
    /// No timeout: the server reads every chunk back before answering.
    pub async fn commit(&self, session: &str, body: Bytes) -> Result<Artifact> {
        let mut call = Call::post(format!("/uploads/{}/commit", seg(session)), body);
        call.timeout = None;
        self.artifact_call(call).await
    }

    /// `DELETE …/uploads/{S}`; a session already gone is fine.
    pub async fn abandon(&self, session: &str) -> Result<()> {
        let call = Call::delete(format!("/uploads/{}", seg(session)));
        match self.call(call).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_status(404) || e.is_status(410) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `GET …/artifacts/{id}`, with `Range: <range>` if given; the body is left to stream.
    pub async fn fetch(&self, id: &str, range: Option<&str>) -> Result<Response> {
        let mut call = Call::get(format!("/artifacts/{}", seg(id)));
        call.timeout = None;
        if let Some(r) = range {
            call.headers.push(("Range", r.to_string()));
        }
        self.call(call).await
    }

    /// `GET …/artifacts/{id}/meta`.
    pub async fn meta(&self, id: &str) -> Result<Artifact> {
        self.artifact_call(Call::get(format!("/artifacts/{}/meta", seg(id))))
            .await
    }

    /// `GET …/artifacts?limit=&cursor=&created_by=`.
    pub async fn list(
        &self,
        limit: u32,
        cursor: Option<&str>,
        created_by: Option<&str>,
        labels: &[String],
    ) -> Result<ListPage> {
        let mut path = format!("/artifacts?limit={limit}");
        for l in labels {
            path.push_str(&format!("&label={}", seg(l)));
        }
        if let Some(c) = cursor {
            path.push_str(&format!("&cursor={}", seg(c)));
        }
        if let Some(p) = created_by {
            path.push_str(&format!("&created_by={}", seg(p)));
        }
        // Each item is kept whole for `--json` as well as decoded.
        #[derive(serde::Deserialize)]
        struct Page {
            artifacts: Vec<Value>,
            #[serde(default)]
            next_cursor: Option<String>,
        }
        let page: Page = self.json_call(Call::get(path)).await?;
        let artifacts = page
            .artifacts
            .into_iter()
            .map(Artifact::from_value)
            .collect::<Result<Vec<_>>>()?;
        Ok(ListPage {
            artifacts,
            next_cursor: page.next_cursor,
        })
    }

    /// `POST …/artifacts/{id}/grants`.
    pub async fn grant(&self, id: &str, principal: &str) -> Result<Artifact> {
        let call = Call::post(
            format!("/artifacts/{}/grants", seg(id)),
            json_body(&GrantRequest {
                principal: principal.to_string(),
            }),
        );
        self.artifact_call(call).await
    }

    /// `DELETE …/artifacts/{id}/grants/{principal}`.
    pub async fn revoke(&self, id: &str, principal: &str) -> Result<Artifact> {
        let path = format!("/artifacts/{}/grants/{}", seg(id), seg(principal));
        self.artifact_call(Call::delete(path)).await
    }

    /// `DELETE …/artifacts/{id}`.
    pub async fn delete(&self, id: &str) -> Result<()> {
        self.call(Call::delete(format!("/artifacts/{}", seg(id))))
            .await
            .map(drop)
    }

    /// `GET …/refs/{name}`: the `Reference` (404 also for one the caller
    /// may not see).
    pub async fn get_ref(&self, name: &str) -> Result<Value> {
        self.json_call(Call::get(format!("/refs/{}", seg(name))))
            .await
    }

    /// `PUT …/refs/{name}` with one condition header
    /// (`("If-Match", "\"<id>\"")` or `("If-None-Match", "*")`).
    pub async fn set_ref(
        &self,
        name: &str,
        body: &SetRefRequest,
        condition: (&'static str, String),
    ) -> Result<Value> {
        let mut call = Call::post(format!("/refs/{}", seg(name)), json_body(body));
        call.method = Method::PUT;
        call.headers.push(condition);
        self.json_call(call).await
    }

    /// `GET …/refs?prefix=&cursor=&limit=`: one page as JSON.
    pub async fn list_refs(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<Value> {
        let mut path = format!("/refs?limit={limit}&prefix={}", seg(prefix));
        if let Some(c) = cursor {
            path.push_str(&format!("&cursor={}", seg(c)));
        }
        self.json_call(Call::get(path)).await
    }

    /// `DELETE …/refs/{name}`, only if it points at `if_match` when given.
    pub async fn delete_ref(&self, name: &str, if_match: Option<&str>) -> Result<()> {
        let mut call = Call::delete(format!("/refs/{}", seg(name)));
        if let Some(id) = if_match {
            call.headers.push(("If-Match", format!("\"{id}\"")));
            call.idempotent = false;
        }
        self.call(call).await.map(drop)
    }

    /// `GET …/ref-history/{name}`.
    pub async fn ref_history(&self, name: &str) -> Result<Value> {
        self.json_call(Call::get(format!("/ref-history/{}", seg(name))))
            .await
    }
}

/// One request to make.
struct Call<'a> {
    method: Method,
    path: String,
    body: Option<(Bytes, &'a str)>,
    headers: Vec<(&'static str, String)>,
    timeout: Option<Duration>,
    idempotent: bool,
}

impl Call<'_> {
    fn get(path: String) -> Self {
        Call {
            method: Method::GET,
            path,
            body: None,
            headers: Vec::new(),
            timeout: Some(SMALL_TIMEOUT),
            idempotent: true,
        }
    }

    fn post(path: String, body: Bytes) -> Self {
        Call {
            method: Method::POST,
            path,
            body: Some((body, "application/json")),
            headers: Vec::new(),
            timeout: Some(SMALL_TIMEOUT),
            idempotent: false,
        }
    }

    fn delete(path: String) -> Self {
        Call {
            method: Method::DELETE,
            path,
            body: None,
            headers: Vec::new(),
            timeout: Some(SMALL_TIMEOUT),
            idempotent: true,
        }
    }
}

fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

fn json_body(v: &impl serde::Serialize) -> Bytes {
    // Serialising the request types of `crate::api` cannot fail (no maps
    // with non-string keys, no failing `Serialize` impls).
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// A transport error as one line: the error and its causes.
pub fn transport(e: &reqwest::Error) -> ClientError {
    let mut msg = if e.is_timeout() {
        "request timed out".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !msg.contains(&s_text) {
            msg.push_str(": ");
            msg.push_str(&s_text);
        }
        source = s.source();
    }
    ClientError::Transport(msg)
}

/// Turns a non-2xx answer into an error, using its problem+json `detail`.
async fn problem(mut resp: Response) -> ClientError {
    let status = resp.status();
    let mut body = Vec::new();
    while body.len() < PROBLEM_BODY_LIMIT {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            _ => break,
        }
    }
    problem_from_parts(status, &body)
}

/// Builds the error for `status` with body `body` (problem+json or anything else).
pub fn problem_from_parts(status: StatusCode, body: &[u8]) -> ClientError {
    let reason = status.canonical_reason().unwrap_or("error");
    let parsed: Option<Problem> = serde_json::from_slice(body).ok();
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let detail = parsed
        .as_ref()
        .and_then(|p| nonempty(&p.detail).or_else(|| nonempty(&p.title)))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let line = text.lines().next().unwrap_or("").trim();
            if line.is_empty() {
                reason.to_string()
            } else {
                line.chars().take(200).collect()
            }
        });
    if status.is_client_error() {
        let kind = parsed
            .as_ref()
            .and_then(|p| nonempty(&p.kind))
            .filter(|t| t != "about:blank")
            .and_then(|t| t.rsplit('/').next().map(str::to_string))
            .unwrap_or_else(|| reason.to_ascii_lowercase().replace(' ', "-"));
        ClientError::Refused {
            status: status.as_u16(),
            kind,
            detail,
        }
    } else if status.is_server_error() {
        ClientError::Server {
            status: status.as_u16(),
            detail,
        }
    } else {
        ClientError::Protocol(format!("status {status}: {detail}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::wire::parse_blake3;

    #[test]
    fn problem_json_is_decoded() {
        let body = br#"{"type":"eden-cas://error/chunks-missing","title":"Chunks Missing","status":409,"detail":"first missing: ab"}"#;
        let e = problem_from_parts(StatusCode::CONFLICT, body);
        assert_eq!(e.to_string(), "409 chunks-missing: first missing: ab");
        assert_eq!(e.exit_code(), crate::client::EXIT_REFUSED);

        let e = problem_from_parts(StatusCode::INTERNAL_SERVER_ERROR, b"");
        assert_eq!(e.to_string(), "server error 500: Internal Server Error");
        assert_eq!(e.exit_code(), crate::client::EXIT_SERVER);

        let e = problem_from_parts(StatusCode::NOT_FOUND, b"nope\nmore");
        assert_eq!(e.to_string(), "404 not-found: nope");
    }

    #[test]
    fn digests_and_segments() {
        let d = Digest::of(b"x");
        assert_eq!(parse_blake3(&format!("blake3:{d}")), Some(d));
        assert_eq!(parse_blake3(&d.to_hex()), Some(d));
        assert_eq!(parse_blake3("sha256:00"), None);
        assert_eq!(seg("a/b?c d"), "a%2Fb%3Fc%20d");
        assert_eq!(seg("wkr_0123-x.y~"), "wkr_0123-x.y~");
    }

    #[test]
    fn token_is_never_printed() {
        let api = Api::new(
            "http://127.0.0.1:1/",
            "exp_x",
            &Secret::new("wkr_a:topsecret"),
        )
        .unwrap();
        assert_eq!(api.server(), "http://127.0.0.1:1");
        assert_eq!(api.principal(), "wkr_a");
        assert!(Api::new("ftp://x", "e", &Secret::new("a:b")).is_err());
        assert!(Api::new("http://x", "e", &Secret::new("a:b\n")).is_err());
    }
}
