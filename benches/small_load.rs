//! Small-artifact load generator: N concurrent clients deposit distinct
//! small artifacts (v0 multipart, admin bearer) for a fixed time each, and
//! the run reports deposits per second, p50 / p99 latency and the object
//! store requests per deposit (from the server's `/metrics`).
//!
//! ```text
//! cargo bench --bench small_load                    # release build
//! cargo test --release --bench small_load           # same, no bench profile
//! cargo test --bench small_load                     # debug build (say so)
//! ```
//!
//! Settings (environment):
//! - `SMALL_LOAD_CLIENTS` — comma-separated client counts (default `1,32`);
//! - `SMALL_LOAD_SECONDS` — seconds per client count (default 10);
//! - `SMALL_LOAD_BYTES` — bytes per deposit (default 4096);
//! - `SMALL_LOAD_SERVE_ARGS` — extra `eden-cas serve` arguments, split on
//!   spaces (e.g. `--blob-store s3://bucket/prefix --s3-endpoint …` for
//!   SeaweedFS; credentials from the environment as usual);
//! - `SMALL_LOAD_URL` + `SMALL_LOAD_TOKEN` — load an already running server
//!   instead of starting one (then request counts come from its `/metrics`
//!   if the token is the admin's).
//!
//! Each client count gets a fresh server and data directory, so figures do
//! not depend on what an earlier run left. Timing lives here, never in tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;

const EXP: &str = "exp_00000000000000000000000000";

struct Target {
    base: String,
    token: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// A fresh `eden-cas serve` on a loopback port, or the server named by
/// `SMALL_LOAD_URL`.
fn target() -> anyhow::Result<Target> {
    if let Ok(base) = std::env::var("SMALL_LOAD_URL") {
        return Ok(Target {
            base,
            token: env_or("SMALL_LOAD_TOKEN", ""),
            child: None,
            _dir: None,
        });
    }
    let dir = tempfile::tempdir()?;
    let token = format!("small-load-{}", std::process::id());
    let extra = env_or("SMALL_LOAD_SERVE_ARGS", "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eden-cas"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .args(extra.split_whitespace())
        .env("EDEN_CAS_ADMIN_TOKEN", &token)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut port = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(p) = line
            .strip_prefix("EDEN_CAS_LISTENING ")
            .and_then(|rest| rest.rsplit("port=").next())
        {
            port = Some(p.trim().parse::<u16>()?);
            break;
        }
    }
    let port = port.ok_or_else(|| anyhow::anyhow!("the server did not start"))?;
    Ok(Target {
        base: format!("http://127.0.0.1:{port}"),
        token,
        child: Some(child),
        _dir: Some(dir),
    })
}

/// (PUT, all) object-store requests so far, from `/metrics`.
fn blob_requests(client: &Client, t: &Target) -> Option<(f64, f64)> {
    let text = client
        .get(format!("{}/metrics", t.base))
        .bearer_auth(format!("admin:{}", t.token))
        .send()
        .ok()?
        .text()
        .ok()?;
    let (mut put, mut all) = (0.0, 0.0);
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("eden_cas_blob_requests_total{kind=\"") else {
            continue;
        };
        let (kind, value) = rest.split_once("\"} ")?;
        let v: f64 = value.trim().parse().ok()?;
        if kind == "put" {
            put = v;
        }
        if kind != "retry" {
            all += v;
        }
    }
    Some((put, all))
}

/// A deterministic stream of distinct payloads per client.
fn payload(client: u64, n: u64, len: usize) -> Vec<u8> {
    let mut x = (client << 40) ^ n ^ 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn multipart(data: &[u8]) -> (String, Vec<u8>) {
    let b = "small-load-boundary-7d1f2a";
    let mut body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

struct Outcome {
    latencies: Vec<Duration>,
    errors: u64,
    elapsed: Duration,
}

fn run(t: &Target, clients: u64, secs: u64, bytes: usize) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(0u64));
    let url = format!("{}/v0/experiments/{EXP}/artifacts", t.base);
    let started = Instant::now();
    std::thread::scope(|s| {
        for c in 0..clients {
            let (stop, lat, errors, url) = (&stop, &lat, &errors, &url);
            let token = &t.token;
            s.spawn(move || {
                let client = Client::builder().no_proxy().build().expect("client");
                let mut mine = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let (ct, body) = multipart(&payload(c, n, bytes));
                    n += 1;
                    let t0 = Instant::now();
                    let ok = client
                        .post(url)
                        .bearer_auth(format!("admin:{token}"))
                        .header("X-Eden-Experiment-Id", EXP)
                        .header("Content-Type", ct)
                        .body(body)
                        .send()
                        .is_ok_and(|r| r.status().as_u16() == 201);
                    if ok {
                        mine.push(t0.elapsed());
                    } else {
                        *errors.lock().unwrap() += 1;
                    }
                }
                lat.lock().unwrap().extend(mine);
            });
        }
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = started.elapsed();
    let mut latencies = std::mem::take(&mut *lat.lock().unwrap());
    latencies.sort();
    let errors = *errors.lock().unwrap();
    Outcome {
        latencies,
        errors,
        elapsed,
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn main() -> anyhow::Result<()> {
    // `cargo test --bench` passes test-harness flags; they mean nothing here.
    let counts: Vec<u64> = env_or("SMALL_LOAD_CLIENTS", "1,32")
        .split(',')
        .map(|c| c.trim().parse())
        .collect::<Result<_, _>>()?;
    let secs: u64 = env_or("SMALL_LOAD_SECONDS", "10").parse()?;
    let bytes: usize = env_or("SMALL_LOAD_BYTES", "4096").parse()?;
    println!(
        "small_load: {bytes}-byte v0 deposits, {secs} s per setting ({})",
        if cfg!(debug_assertions) {
            "DEBUG build of the load generator; the server is the same profile"
        } else {
            "release build"
        }
    );
    println!(
        "clients  deposits  errors  deposits/s  p50_ms  p99_ms  put/deposit  requests/deposit"
    );
    for clients in counts {
        let t = target()?;
        let probe = Client::builder().no_proxy().build()?;
        let before = blob_requests(&probe, &t);
        let o = run(&t, clients, secs, bytes);
        let after = blob_requests(&probe, &t);
        let n = o.latencies.len() as f64;
        let (put, all) = match (before, after) {
            (Some(b), Some(a)) if n > 0.0 => ((a.0 - b.0) / n, (a.1 - b.1) / n),
            _ => (f64::NAN, f64::NAN),
        };
        println!(
            "{clients:>7}  {:>8}  {:>6}  {:>10.0}  {:>6.2}  {:>6.2}  {put:>11.3}  {all:>16.3}",
            o.latencies.len(),
            o.errors,
            n / o.elapsed.as_secs_f64(),
            pct(&o.latencies, 0.5),
            pct(&o.latencies, 0.99),
        );
    }
    Ok(())
}
