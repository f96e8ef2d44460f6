//! Test harness shared by the HTTP integration tests: it runs the real
//! `eden-cas` binary on a loopback port over a temporary data directory and
//! talks to it only over HTTP, the way EDEN's client does.
//!
//! `wire` holds the request builders and answer checks shared by the tests.
//!
//! Every request built here sends the headers EDEN's conformance client sends
//! (`X-Eden-Experiment-Id`, a JSON `Content-Type` even on GETs, and
//! `Accept: application/json, application/problem+json`), so that a test that
//! passes here also passes against that client.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rand::{Rng, RngCore};
use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;
use tempfile::TempDir;

mod wire;
pub use wire::*;

/// The `Content-Type` EDEN's client sends on every non-multipart request.
pub const JSON_CT: &str = "application/json; charset=utf-8";
/// The `Accept` EDEN's client sends on every request.
pub const ACCEPT: &str = "application/json, application/problem+json";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const STDERR_TAIL_BYTES: usize = 16 * 1024;
const LISTENING_PREFIX: &str = "EDEN_CAS_LISTENING ";

/// A running `eden-cas serve` over a private data directory.
pub struct Server {
    child: Option<Child>,
    data_dir: TempDir,
    admin_token: String,
    extra_args: Vec<String>,
    port: u16,
    stderr_tail: Arc<Mutex<VecDeque<u8>>>,
    client: Client,
}

impl Server {
    /// Starts a server with default settings.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a server with `args` appended to `serve --data-dir … --listen …`.
    pub fn start_with(args: &[&str]) -> Server {
        let data_dir = tempfile::tempdir().expect("create temp data dir");
        let client = Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .expect("build HTTP client");
        let mut server = Server {
            child: None,
            data_dir,
            admin_token: random_hex(32),
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            port: 0,
            stderr_tail: Arc::new(Mutex::new(VecDeque::new())),
            client,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_eden-cas"))
            .arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(&self.extra_args)
            .env("EDEN_CAS_ADMIN_TOKEN", &self.admin_token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn eden-cas");

        // Drain stderr for the whole life of the child, keeping only a tail,
        // so that a chatty server never blocks on a full pipe.
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        self.stderr_tail = Arc::clone(&tail);
        let mut stderr = child.stderr.take().expect("stderr piped");
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                t.extend(&buf[..n]);
                while t.len() > STDERR_TAIL_BYTES {
                    t.pop_front();
                }
            }
        });

        // Stdout: forward lines until EOF (the child must never see EPIPE).
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel::<String>();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        self.child = Some(child);

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(LISTENING_PREFIX) {
                        self.port = parse_listening(rest).unwrap_or_else(|| {
                            self.fail_startup(&format!("bad LISTENING line {line:?}"))
                        });
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.fail_startup("no LISTENING line within 30 s")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.fail_startup("stdout closed before the LISTENING line")
                }
            }
        }
    }

    fn fail_startup(&mut self, why: &str) -> ! {
        let status = self.stop_kill();
        // Give the stderr reader a moment to collect the last words.
        thread::sleep(Duration::from_millis(200));
        panic!(
            "eden-cas failed to start: {why} (exit: {status:?})\n--- stderr tail ---\n{}",
            self.stderr_tail()
        );
    }

    /// The last few KiB the server wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let t = self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
        let (a, b) = t.as_slices();
        let mut v = a.to_vec();
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).into_owned()
    }

    /// Waits up to `within` for `needle` to appear in the stderr tail; whether
    /// it did. The tail is filled by a reader thread, so a line the server
    /// wrote before it printed LISTENING (or before it exited) may still be
    /// on its way when the caller looks: assert on this, not on one read.
    pub fn wait_stderr(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.stderr_tail().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The deployment admin token (the secret only, without `admin:`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// `admin:<token>`, ready for `Authorization: Bearer …`.
    pub fn admin_bearer(&self) -> String {
        format!("admin:{}", self.admin_token)
    }

    /// `GET /metrics` with the admin bearer (metrics are operator-only);
    /// asserts 200 and returns the text.
    pub fn metrics_text(&self) -> String {
        let resp = self
            .client
            .get(format!("{}/metrics", self.base_url()))
            .header("Authorization", format!("Bearer {}", self.admin_bearer()))
            .send()
            .expect("GET /metrics");
        assert_eq!(resp.status().as_u16(), 200, "GET /metrics");
        resp.text().expect("metrics text")
    }

    /// The data directory; it survives [`Server::kill9`] and [`Server::restart`].
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The HTTP client (timeouts set, no proxy).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Kills the server with SIGKILL and waits for it.
    pub fn kill9(&mut self) {
        self.stop_kill();
    }

    /// Stops the server (SIGTERM, then SIGKILL after 15 s) and starts it again
    /// on the same data directory and admin token. The port changes.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        self.spawn();
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits up to `within` for the server to exit by itself; its status.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            let child = self.child.as_mut()?;
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                _ => return None,
            }
        }
    }

    /// Stops the server with SIGTERM (a clean shutdown) and waits for it.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.pid()?;
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        match self.wait_exit(Duration::from_secs(20)) {
            Some(status) => Some(status),
            None => self.stop_kill(),
        }
    }

    fn stop_kill(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    /// `<base>/v0/experiments/<exp><path>`.
    pub fn url(&self, exp: &str, path: &str) -> String {
        format!("{}/v0/experiments/{exp}{path}", self.base_url())
    }

    /// A request to `/v0/experiments/<exp><path>` with EDEN's client headers
    /// and, if given, `Authorization: Bearer <bearer>`.
    pub fn v0(
        &self,
        method: Method,
        exp: &str,
        path: &str,
        bearer: Option<&str>,
    ) -> RequestBuilder {
        self.v0_ct(method, exp, path, bearer, JSON_CT)
    }

    /// Like [`Server::v0`] with another request `Content-Type` (reqwest's
    /// `header` appends, so the type must be chosen once).
    pub fn v0_ct(
        &self,
        method: Method,
        exp: &str,
        path: &str,
        bearer: Option<&str>,
        content_type: &str,
    ) -> RequestBuilder {
        let rb = self
            .client
            .request(method, self.url(exp, path))
            .header("X-Eden-Experiment-Id", exp)
            .header("Content-Type", content_type)
            .header("Accept", ACCEPT);
        match bearer {
            Some(b) => rb.header("Authorization", format!("Bearer {b}")),
            None => rb,
        }
    }

    /// GET with EDEN's headers.
    pub fn get(&self, exp: &str, path: &str, bearer: &str) -> Response {
        send(self.v0(Method::GET, exp, path, Some(bearer)))
    }

    /// POST of a JSON value with EDEN's headers.
    pub fn post_json(&self, exp: &str, path: &str, bearer: &str, body: &Value) -> Response {
        let bytes = serde_json::to_vec(body).expect("serialise body");
        send(self.v0(Method::POST, exp, path, Some(bearer)).body(bytes))
    }

    /// DELETE with EDEN's headers.
    pub fn delete(&self, exp: &str, path: &str, bearer: &str) -> Response {
        send(self.v0(Method::DELETE, exp, path, Some(bearer)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_kill();
    }
}

fn parse_listening(rest: &str) -> Option<u16> {
    let mut host_ok = false;
    let mut port = None;
    for tok in rest.split_whitespace() {
        match tok.split_once('=') {
            Some(("host", h)) => host_ok = h == "127.0.0.1",
            Some(("port", p)) => port = p.parse::<u16>().ok().filter(|p| *p != 0),
            _ => {}
        }
    }
    if host_ok { port } else { None }
}

/// Sends a request, panicking with the transport error.
pub fn send(rb: RequestBuilder) -> Response {
    rb.send().expect("HTTP request failed")
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    hex::encode(random_bytes(n))
}

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A random, valid experiment id: `exp_` + 26 lowercase Crockford characters.
pub fn exp_id() -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..26)
        .map(|_| CROCKFORD[rng.random_range(0..32)] as char)
        .collect();
    format!("exp_{suffix}")
}

/// A random, well-formed id with the given prefix (`wkr`, `grp`) that names nothing.
pub fn ghost_id(prefix: &str) -> String {
    let e = exp_id();
    format!("{prefix}_{}", &e[4..])
}

/// Registers an unnamed worker; returns `(worker_id, bearer)` where the
/// bearer is `<worker_id>:<registration_token>`.
pub fn register_worker(server: &Server, exp: &str) -> (String, String) {
    register_worker_body(server, exp, &serde_json::json!({}))
}

/// Registers a worker with a body; returns `(worker_id, bearer)`.
pub fn register_worker_body(server: &Server, exp: &str, body: &Value) -> (String, String) {
    let resp = server.post_json(exp, "/workers", &server.admin_bearer(), body);
    let v = expect_json(resp, 200);
    let id = v["worker_id"].as_str().expect("worker_id").to_string();
    let token = v["registration_token"]
        .as_str()
        .expect("registration_token");
    let bearer = format!("{id}:{token}");
    (id, bearer)
}

/// Creates a group as admin; returns the group JSON.
pub fn create_group(server: &Server, exp: &str, name: Option<&str>, members: &[&str]) -> Value {
    let mut body = serde_json::json!({ "members": members });
    if let Some(n) = name {
        body["name"] = Value::from(n);
    }
    expect_json(
        server.post_json(exp, "/groups", &server.admin_bearer(), &body),
        200,
    )
}
