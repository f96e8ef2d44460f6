//! Harness shared by the `blobs_*` tests: a real SeaweedFS S3 server on
//! 127.0.0.1, started once per test process by `scripts/seaweedfs.sh` (which
//! installs it if needed) and stopped by the script's watchdog when this
//! process exits; Azurite and a GCS emulator the same way ([`emulators`]);
//! a child-process runner that gives tests their credentials through the
//! environment (the only way eden-cas takes them); and a fault-injecting
//! TCP proxy.
//!
//! A server test never skips silently: if the server cannot be started the
//! test fails with the script's output, unless `EDEN_CAS_SKIP_S3=1` (or
//! `EDEN_CAS_SKIP_AZURITE=1`, `EDEN_CAS_SKIP_GCS=1`) is set on purpose (CI
//! never sets them), in which case the skip is printed.

#![allow(dead_code)]

pub mod counting;
pub mod emulators;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A running S3 server and the identities on it.
#[derive(Debug, Clone)]
pub struct S3Server {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// A bucket that exists.
    pub bucket: String,
    /// Read-write identity.
    pub access_key: String,
    /// Its secret.
    pub secret_key: String,
    /// Read-only identity.
    pub ro_access_key: String,
    /// Its secret.
    pub ro_secret_key: String,
    /// Prometheus endpoint with server-side request counts.
    pub metrics: String,
}

const ENV_KEYS: [&str; 7] = [
    "EDEN_CAS_TEST_S3_ENDPOINT",
    "EDEN_CAS_TEST_S3_BUCKET",
    "EDEN_CAS_TEST_S3_ACCESS_KEY",
    "EDEN_CAS_TEST_S3_SECRET_KEY",
    "EDEN_CAS_TEST_S3_RO_ACCESS_KEY",
    "EDEN_CAS_TEST_S3_RO_SECRET_KEY",
    "EDEN_CAS_TEST_S3_METRICS",
];

impl S3Server {
    fn from_pairs(get: impl Fn(&str) -> Option<String>) -> Option<S3Server> {
        Some(S3Server {
            endpoint: get(ENV_KEYS[0])?,
            bucket: get(ENV_KEYS[1])?,
            access_key: get(ENV_KEYS[2])?,
            secret_key: get(ENV_KEYS[3])?,
            ro_access_key: get(ENV_KEYS[4]).unwrap_or_default(),
            ro_secret_key: get(ENV_KEYS[5]).unwrap_or_default(),
            metrics: get(ENV_KEYS[6]).unwrap_or_default(),
        })
    }

    /// The `EDEN_CAS_TEST_S3_*` variables describing this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (ENV_KEYS[0], self.endpoint.clone()),
            (ENV_KEYS[1], self.bucket.clone()),
            (ENV_KEYS[2], self.access_key.clone()),
            (ENV_KEYS[3], self.secret_key.clone()),
            (ENV_KEYS[4], self.ro_access_key.clone()),
            (ENV_KEYS[5], self.ro_secret_key.clone()),
            (ENV_KEYS[6], self.metrics.clone()),
        ]
    }

    /// The environment an eden-cas process needs to use this server with
    /// the given identity: AWS credentials, no instance metadata, no proxy.
    pub fn client_env(&self, key: &str, secret: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", key.to_string()),
            ("AWS_SECRET_ACCESS_KEY", secret.to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("NO_PROXY", "127.0.0.1,localhost".into()),
            ("no_proxy", "127.0.0.1,localhost".into()),
        ]
    }

    /// Server-side S3 request counts by HTTP method (SeaweedFS metrics).
    pub fn server_requests(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        let Ok(text) = reqwest::blocking::Client::builder()
            .no_proxy()
            .build()
            .and_then(|c| c.get(&self.metrics).send())
            .and_then(|r| r.text())
        else {
            return out;
        };
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("SeaweedFS_s3_request_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            if !labels.contains(&format!("bucket=\"{}\"", self.bucket)) {
                continue;
            }
            let Some(ty) = labels
                .split(',')
                .find_map(|l| l.strip_prefix("type=\""))
                .map(|t| t.trim_end_matches('"').to_string())
            else {
                continue;
            };
            let v: f64 = value.trim().parse().unwrap_or(0.0);
            *out.entry(ty).or_insert(0) += v as u64;
        }
        out
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn start_seaweedfs() -> Result<S3Server, String> {
    let dir = std::env::temp_dir().join(format!(
        "eden-cas-seaweedfs-{}-{}",
        std::process::id(),
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("temp dir {}: {e}", dir.display()))?;
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/seaweedfs.sh"))
        .arg("start")
        .arg(&dir)
        .arg(std::process::id().to_string())
        .arg("3600")
        .output()
        .map_err(|e| format!("running scripts/seaweedfs.sh: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!(
            "scripts/seaweedfs.sh start failed ({}):\n{}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let pairs: Vec<(String, String)> = stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    S3Server::from_pairs(|k| pairs.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.clone()))
        .ok_or_else(|| format!("scripts/seaweedfs.sh printed no server description:\n{stdout}"))
}

/// The S3 server for this test process: the one described by
/// `EDEN_CAS_TEST_S3_*` if set (a parent test or the developer started it),
/// else a SeaweedFS started now. `None` only when `EDEN_CAS_SKIP_S3=1`.
/// Panics, failing the test, when no server can be had.
pub fn s3_server() -> Option<&'static S3Server> {
    static SERVER: OnceLock<Result<Option<S3Server>, String>> = OnceLock::new();
    let res = SERVER.get_or_init(|| {
        if std::env::var("EDEN_CAS_SKIP_S3").as_deref() == Ok("1") {
            return Ok(None);
        }
        if let Some(s) = S3Server::from_pairs(|k| std::env::var(k).ok()) {
            return Ok(Some(s));
        }
        start_seaweedfs().map(Some)
    });
    match res {
        Ok(Some(s)) => Some(s),
        Ok(None) => {
            eprintln!("SKIPPED: S3 test skipped because EDEN_CAS_SKIP_S3=1 (this is not coverage)");
            None
        }
        Err(e) => panic!(
            "no S3 server for the S3 tests: {e}\n(set EDEN_CAS_SKIP_S3=1 to skip them on purpose; CI never does)"
        ),
    }
}

/// Whether this process is a child started by [`run_in_child`].
pub fn in_child() -> bool {
    std::env::var("EDEN_CAS_S3_CHILD").as_deref() == Ok("1")
}

/// Runs the (ignored) test `name` of this test binary in a child process
/// whose environment holds the S3 server and its read-write credentials, and
/// fails unless exactly that one test ran and passed.
pub fn run_in_child(name: &str) {
    let Some(server) = s3_server() else { return };
    let mut env = server.env();
    env.extend(server.client_env(&server.access_key, &server.secret_key));
    run_in_child_with(name, &env);
}

/// Runs the (ignored) test `name` of this test binary in a child process
/// with `env` added (and no ambient cloud credentials), and fails unless
/// exactly that one test ran and passed.
pub fn run_in_child_with(name: &str, env: &[(&str, String)]) {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("EDEN_CAS_S3_CHILD", "1");
    for k in [
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_STORAGE_ACCOUNT",
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
        "STORAGE_EMULATOR_HOST",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run child test process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "child test {name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` (`http://host:port`)
/// that cuts a connection each time the request bytes it has forwarded, over
/// all connections, cross a multiple of `cut_every_bytes`: a connection reset
/// in the middle of an upload, as a flaky network or a restarting load
/// balancer would cause. Responses are forwarded untouched.
pub struct FlakyProxy {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// Connections cut so far.
    pub cuts: Arc<AtomicU64>,
}

impl FlakyProxy {
    /// Starts the proxy (its threads live until the process exits).
    pub fn start(upstream: &str, cut_every_bytes: u64) -> FlakyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy addr"));
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let cuts = Arc::new(AtomicU64::new(0));
        let forwarded = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&cuts);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (Ok(c_in), Ok(s_out)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let (c, f) = (Arc::clone(&c), Arc::clone(&forwarded));
                std::thread::spawn(move || {
                    if pump(c_in, s_out, Some((&f, cut_every_bytes))) {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                });
                std::thread::spawn(move || {
                    pump(server, client, None);
                });
            }
        });
        FlakyProxy { endpoint, cuts }
    }
}

/// Copies `from` to `to` until EOF. With a budget, counts the bytes in the
/// shared counter and, when it crosses a multiple of the step, forwards up
/// to the boundary, shuts both sockets down (a cut) and returns true.
fn pump(mut from: TcpStream, mut to: TcpStream, budget: Option<(&AtomicU64, u64)>) -> bool {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut keep = n;
        let mut cut = false;
        if let Some((total, step)) = budget {
            let before = total.fetch_add(n as u64, Ordering::Relaxed);
            let boundary = (before / step + 1) * step;
            if before + n as u64 >= boundary {
                keep = (boundary - before) as usize;
                cut = true;
            }
        }
        if to.write_all(&buf[..keep]).is_err() {
            break;
        }
        if cut {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            return true;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    false
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    std::thread::sleep(Duration::from_millis(10));
    port
}
