//! Observability over real HTTP against the real binary: request metrics
//! by route template that move by the right amounts for a known mix of
//! requests, no id or token in `/metrics` or in the log, one JSON
//! access-log line per request with its fields, no colour codes in a log
//! that is not a terminal, and `X-Request-Id` echoed or minted on every
//! answer, problems included.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::server::*;
use crate::support::v1;
use serde_json::Value;

const ARTIFACT_ROUTE: &str = "/cas/v1/experiments/{exp}/artifacts/{id}";
const DEPOSIT_ROUTE: &str = "/cas/v1/experiments/{exp}/artifacts";

/// The value of the sample `name{labels}` (labels exactly as exported),
/// or `None` when that series is absent.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

fn labels(method: &str, route: &str, status: &str) -> String {
    format!("{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}")
}

fn route_labels(method: &str, route: &str) -> String {
    format!("{{method=\"{method}\",route=\"{route}\"}}")
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("artifact id").to_owned()
}

/// A deposit, two fetches, one fetch of a missing id and one unknown path:
/// the counters, histogram counts and byte counters move by exactly these,
/// labelled by route template; the ids, the experiment and the tokens
/// appear nowhere in the exposition.
#[test]
fn request_metrics_count_a_known_mix_by_route_template() {
    let server = Server::start();
    let exp = exp_id();
    let admin = server.admin_bearer();
    let (worker_id, worker) = register_worker(&server, &exp);
    let bytes = random_bytes(300 << 10);
    let art = v1::deposit_ok(&server, &exp, &worker, &bytes);
    let id = id_of(&art);
    for _ in 0..2 {
        let got = v1::fetch_bytes(&server, &exp, &worker, &id, None, 200);
        assert_eq!(got.len(), bytes.len());
    }
    let ghost = random_hex(32);
    let missing = v1::fetch(&server, &exp, &worker, &ghost, None);
    assert_eq!(missing.status().as_u16(), 404);
    let unknown = send(server.client().get(format!(
        "{}/no/such/{}",
        server.base_url(),
        random_hex(8)
    )));
    assert_eq!(unknown.status().as_u16(), 404);

    let m = server.metrics_text();
    let req = |method, route, status| {
        sample(
            &m,
            &format!(
                "eden_cas_http_requests_total{}",
                labels(method, route, status)
            ),
        )
    };
    assert_eq!(req("POST", DEPOSIT_ROUTE, "2xx"), Some(1.0), "{m}");
    assert_eq!(req("GET", ARTIFACT_ROUTE, "2xx"), Some(2.0), "{m}");
    assert_eq!(req("GET", ARTIFACT_ROUTE, "4xx"), Some(1.0), "{m}");
    assert_eq!(req("GET", "unmatched", "4xx"), Some(1.0), "{m}");
    let count = sample(
        &m,
        &format!(
            "eden_cas_http_request_duration_seconds_count{}",
            labels("GET", ARTIFACT_ROUTE, "2xx")
        ),
    );
    assert_eq!(count, Some(2.0), "{m}");
    let le_inf = sample(
        &m,
        &format!(
            "eden_cas_http_request_duration_seconds_bucket{{method=\"GET\",route=\"{ARTIFACT_ROUTE}\",status=\"2xx\",le=\"+Inf\"}}"
        ),
    );
    assert_eq!(le_inf, Some(2.0), "{m}");
    let bytes_in = sample(
        &m,
        &format!(
            "eden_cas_http_request_bytes_total{}",
            route_labels("POST", DEPOSIT_ROUTE)
        ),
    );
    assert_eq!(bytes_in, Some(bytes.len() as f64), "{m}");
    let bytes_out = sample(
        &m,
        &format!(
            "eden_cas_http_response_bytes_total{}",
            route_labels("GET", ARTIFACT_ROUTE)
        ),
    )
    .expect("response bytes of the fetch route");
    // Two full bodies, plus the small problem body of the missing id.
    assert!(
        bytes_out >= 2.0 * bytes.len() as f64 && bytes_out < 2.0 * bytes.len() as f64 + 4096.0,
        "{bytes_out}"
    );
    // The scrape itself is the one request in flight.
    assert_eq!(sample(&m, "eden_cas_http_requests_in_flight"), Some(1.0));
    for family in [
        "# TYPE eden_cas_http_requests_total counter",
        "# TYPE eden_cas_http_request_duration_seconds histogram",
        "# TYPE eden_cas_http_request_bytes_total counter",
        "# TYPE eden_cas_http_response_bytes_total counter",
        "# TYPE eden_cas_http_requests_in_flight gauge",
        "# TYPE eden_cas_gc_duration_seconds histogram",
        "# TYPE eden_cas_gc_compaction_duration_seconds histogram",
        "# TYPE eden_cas_scrub_pass_duration_seconds histogram",
        "# TYPE eden_cas_deposits_total counter",
    ] {
        assert!(m.contains(family), "{family} missing:\n{m}");
    }
    for secret in [
        id.as_str(),
        ghost.as_str(),
        exp.as_str(),
        worker_id.as_str(),
        worker.as_str(),
        admin.as_str(),
        server.admin_token(),
        "/no/such",
    ] {
        assert!(!m.contains(secret), "{secret} appears in /metrics");
    }
}

/// A GC over the admin API is one observation of the GC and compaction
/// duration histograms.
#[test]
fn gc_and_compaction_durations_are_observed() {
    let server = Server::start();
    let gc = send(
        server
            .client()
            .post(format!("{}/cas/v1/admin/gc", server.base_url()))
            .header("Authorization", format!("Bearer {}", server.admin_bearer())),
    );
    assert_eq!(gc.status().as_u16(), 200);
    let m = server.metrics_text();
    assert_eq!(sample(&m, "eden_cas_gc_duration_seconds_count"), Some(1.0));
    assert_eq!(
        sample(&m, "eden_cas_gc_compaction_duration_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "eden_cas_scrub_pass_duration_seconds_count"),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &m,
            &format!(
                "eden_cas_http_requests_total{}",
                labels("POST", "/cas/v1/admin/gc", "2xx")
            )
        ),
        Some(1.0)
    );
}

/// The JSON access-log lines of the server's stderr.
fn access_lines(server: &Server) -> Vec<Value> {
    server
        .stderr_tail()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "eden_cas::access")
        .collect()
}

/// With `--log-format json` every line is a JSON object; each request
/// leaves one access line with method, route template, status, bytes,
/// duration, principal and request id — and neither a token nor the
/// artifact id.
#[test]
fn json_access_log_has_one_line_per_request_with_its_fields() {
    let server = Server::start_with(&["--log-format", "json"]);
    let exp = exp_id();
    let (worker_id, worker) = register_worker(&server, &exp);
    let bytes = random_bytes(70 << 10);
    let deposit_rid = format!("dep-{}", random_hex(8));
    let resp = send(
        v1::req(&server, reqwest::Method::POST, &exp, "/artifacts", &worker)
            .header("Content-Type", "application/octet-stream")
            .header("X-Request-Id", &deposit_rid)
            .body(bytes.clone()),
    );
    let id = id_of(&expect_json(resp, 201));
    let fetch_rid = format!("get-{}", random_hex(8));
    let resp = send(
        v1::req(
            &server,
            reqwest::Method::GET,
            &exp,
            &format!("/artifacts/{id}"),
            &worker,
        )
        .header("X-Request-Id", &fetch_rid),
    );
    assert_eq!(resp.bytes().unwrap().len(), bytes.len());
    let denied_rid = format!("bad-{}", random_hex(8));
    let resp = send(
        v1::req(
            &server,
            reqwest::Method::GET,
            &exp,
            &format!("/artifacts/{id}"),
            "admin:wrong-token",
        )
        .header("X-Request-Id", &denied_rid),
    );
    assert_eq!(resp.status().as_u16(), 401);
    // The access line is written when the body is finished: give the
    // server a moment after the client has read it.
    std::thread::sleep(Duration::from_millis(300));

    let stderr = server.stderr_tail();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v.get(key).is_some(), "{key} missing: {line}");
        }
    }
    let lines = access_lines(&server);
    let one = |rid: &str| -> Value {
        let found: Vec<&Value> = lines.iter().filter(|v| v["request_id"] == rid).collect();
        assert_eq!(found.len(), 1, "access lines of {rid}: {lines:?}");
        found[0].clone()
    };
    let dep = one(&deposit_rid);
    assert_eq!(dep["method"], "POST");
    assert_eq!(dep["route"], DEPOSIT_ROUTE);
    assert_eq!(dep["status"], 201);
    assert_eq!(dep["bytes_in"], bytes.len() as u64);
    assert!(dep["bytes_out"].as_u64().unwrap() > 0);
    assert!(dep["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(dep["principal"], worker_id.as_str());
    let get = one(&fetch_rid);
    assert_eq!(get["method"], "GET");
    assert_eq!(get["route"], ARTIFACT_ROUTE);
    assert_eq!(get["status"], 200);
    assert_eq!(get["bytes_in"], 0);
    assert_eq!(get["bytes_out"], bytes.len() as u64);
    assert_eq!(get["principal"], worker_id.as_str());
    let denied = one(&denied_rid);
    assert_eq!(denied["status"], 401);
    assert_eq!(denied["principal"], "-");
    for v in &lines {
        let text = v.to_string();
        assert!(!text.contains(&id), "artifact id in the access log: {text}");
        assert!(!text.contains(&exp), "experiment in the access log: {text}");
    }
    for secret in [worker.as_str(), server.admin_token(), "wrong-token"] {
        assert!(!stderr.contains(secret), "a credential was logged");
    }
}

/// A sane incoming `X-Request-Id` is echoed; a missing or unsafe one is
/// replaced by a fresh ULID; problems carry it too.
#[test]
fn request_ids_are_echoed_or_minted_on_every_answer() {
    let server = Server::start();
    let get = |rid: Option<&str>, path: &str| {
        let mut rb = server.client().get(format!("{}{path}", server.base_url()));
        if let Some(r) = rid {
            rb = rb.header("X-Request-Id", r);
        }
        send(rb)
    };
    let ok = get(Some("trace-42.a:b_c"), "/healthz");
    assert_eq!(header(&ok, "x-request-id"), "trace-42.a:b_c");
    // A problem answer (401 on /metrics without a credential).
    let problem = get(Some("p-1"), "/metrics");
    assert_eq!(problem.status().as_u16(), 401);
    assert_eq!(header(&problem, "x-request-id"), "p-1");
    let is_ulid = |s: &str| {
        s.len() == 26
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    };
    let a = header(&get(None, "/healthz"), "x-request-id");
    let b = header(&get(None, "/no-such-route"), "x-request-id");
    assert!(is_ulid(&a) && is_ulid(&b), "{a} {b}");
    assert_ne!(a, b);
    for unsafe_id in [
        "has space",
        "quote\"d",
        &"x".repeat(129),
        "<script>",
        "a;b=c",
    ] {
        let got = header(&get(Some(unsafe_id), "/healthz"), "x-request-id");
        assert!(is_ulid(&got), "{unsafe_id:?} answered {got:?}");
    }
}

/// A server whose stderr is a file (not a terminal) writes no ESC byte:
/// no ANSI colour codes in the default text format.
#[test]
fn a_log_file_holds_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("eden-cas.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let token = random_hex(32);
    let mut child = Command::new(env!("CARGO_BIN_EXE_eden-cas"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0"])
        .env("EDEN_CAS_ADMIN_TOKEN", &token)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut port = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("EDEN_CAS_LISTENING ") {
            port = rest
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("port="))
                .and_then(|p| p.parse::<u16>().ok());
            break;
        }
    }
    let port = port.expect("LISTENING line");
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let resp = client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    drop(resp);
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read(&log_path).unwrap();
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("listening"), "{text}");
    assert!(
        text.contains("route=/healthz"),
        "no access line for /healthz: {text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "ESC byte in the log file: {text:?}"
    );
}
