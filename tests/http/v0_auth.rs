//! EDEN v0 authentication, the experiment header, and the error envelope
//! (contract §1), driven over HTTP against the real binary.

use crate::support::server::*;
use reqwest::Method;
use reqwest::blocking::{RequestBuilder, Response};
use serde_json::{Value, json};

/// A request with EDEN's headers except `Authorization`, set raw here.
fn with_auth(
    server: &Server,
    method: Method,
    exp: &str,
    path: &str,
    auth: Option<&str>,
) -> RequestBuilder {
    let rb = server.v0(method, exp, path, None);
    match auth {
        Some(a) => rb.header("Authorization", a),
        None => rb,
    }
}

/// A request without `X-Eden-Experiment-Id` (or with `header_exp` instead).
fn with_exp_header(
    server: &Server,
    method: Method,
    exp: &str,
    path: &str,
    bearer: Option<&str>,
    header_exp: Option<&str>,
) -> RequestBuilder {
    let mut rb = server
        .client()
        .request(method, server.url(exp, path))
        .header("Content-Type", JSON_CT)
        .header("Accept", ACCEPT);
    if let Some(h) = header_exp {
        rb = rb.header("X-Eden-Experiment-Id", h);
    }
    if let Some(b) = bearer {
        rb = rb.header("Authorization", format!("Bearer {b}"));
    }
    rb
}

fn setup() -> (Server, String, String) {
    let server = Server::start();
    let exp = exp_id();
    let (_, bearer) = register_worker(&server, &exp);
    (server, exp, bearer)
}

const PATHS: &[(&str, &str)] = &[
    ("GET", "/workers"),
    ("POST", "/workers"),
    ("GET", "/whoami"),
    ("GET", "/groups"),
    ("POST", "/groups"),
    (
        "GET",
        "/artifacts?uri=eden%3A%2F%2Fartifacts%2F00000000000000000000000000000000",
    ),
    ("POST", "/artifacts"),
];

fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).expect("method")
}

#[test]
fn missing_authorization_is_401_everywhere() {
    let (server, exp, _) = setup();
    for (m, p) in PATHS {
        let resp = send(with_auth(&server, method(m), &exp, p, None).body("{}"));
        assert_problem(resp, 401, "eden://error/unauthorized");
    }
}

#[test]
fn malformed_bearers_are_401() {
    let (server, exp, _) = setup();
    let token = server.admin_token().to_string();
    for auth in [
        "Bearer not-a-valid-bearer".to_string(),
        "Bearer ghost:nope".to_string(),
        "Bearer".to_string(),
        "Bearer ".to_string(),
        "Bearer :secret".to_string(),
        "Bearer admin:".to_string(),
        format!("Basic admin:{token}"),
        format!("admin:{token}"),
        format!("Bearer wkr_short:{token}"),
        format!("Bearer ADMIN:{token}"),
    ] {
        let resp = send(with_auth(
            &server,
            Method::GET,
            &exp,
            "/workers",
            Some(&auth),
        ));
        assert_problem(resp, 401, "eden://error/unauthorized");
    }
}

#[test]
fn wrong_admin_secret_is_401() {
    let (server, exp, _) = setup();
    let token = server.admin_token().to_string();
    let last = token.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &token[..token.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    for secret in [
        flipped,
        format!("{token}x"),
        token[..token.len() - 1].to_string(),
        "nope".to_string(),
    ] {
        let resp = server.get(&exp, "/workers", &format!("admin:{secret}"));
        assert_problem(resp, 401, "eden://error/unauthorized");
    }
    // The right one works, and the scheme is case-insensitive.
    expect_json(server.get(&exp, "/workers", &server.admin_bearer()), 200);
    let auth = format!("bearer {}", server.admin_bearer());
    expect_json(
        send(with_auth(
            &server,
            Method::GET,
            &exp,
            "/workers",
            Some(&auth),
        )),
        200,
    );
}

#[test]
fn unknown_worker_or_wrong_worker_secret_is_401() {
    let (server, exp, bearer) = setup();
    let ghost = format!("{}:not-a-real-token", ghost_id("wkr"));
    assert_problem(
        server.get(&exp, "/whoami", &ghost),
        401,
        "eden://error/unauthorized",
    );
    let (id, secret) = bearer.split_once(':').unwrap();
    let wrong = format!("{id}:{}", "0".repeat(secret.len()));
    assert_problem(
        server.get(&exp, "/whoami", &wrong),
        401,
        "eden://error/unauthorized",
    );
    // Another worker's valid secret does not open this worker.
    let (_, other) = register_worker(&server, &exp);
    let (_, other_secret) = other.split_once(':').unwrap();
    let swapped = format!("{id}:{other_secret}");
    assert_problem(
        server.get(&exp, "/whoami", &swapped),
        401,
        "eden://error/unauthorized",
    );
    expect_json(server.get(&exp, "/whoami", &bearer), 200);
}

#[test]
fn authentication_comes_before_the_experiment_header_check() {
    let (server, exp, _) = setup();
    let other = exp_id();
    for header_exp in [None, Some(other.as_str())] {
        for (m, p) in PATHS {
            let resp =
                send(with_exp_header(&server, method(m), &exp, p, None, header_exp).body("{}"));
            assert_problem(resp, 401, "eden://error/unauthorized");
            let resp = send(
                with_exp_header(&server, method(m), &exp, p, Some("ghost:nope"), header_exp)
                    .body("{}"),
            );
            assert_problem(resp, 401, "eden://error/unauthorized");
        }
    }
}

#[test]
fn missing_or_different_experiment_header_is_400() {
    let (server, exp, worker) = setup();
    let admin = server.admin_bearer();
    let other = exp_id();
    for bearer in [admin.as_str(), worker.as_str()] {
        for header_exp in [
            None,
            Some(other.as_str()),
            Some(""),
            Some(&exp.to_uppercase()[..]),
        ] {
            for (m, p) in [
                ("GET", "/workers"),
                ("GET", "/groups"),
                ("GET", "/artifacts?uri=x"),
            ] {
                let resp = send(with_exp_header(
                    &server,
                    method(m),
                    &exp,
                    p,
                    Some(bearer),
                    header_exp,
                ));
                assert_problem(resp, 400, "eden://error/experiment-id-mismatch");
            }
        }
    }
    let resp = send(with_exp_header(
        &server,
        Method::GET,
        &exp,
        "/whoami",
        Some(&worker),
        None,
    ));
    assert_problem(resp, 400, "eden://error/experiment-id-mismatch");
    let resp = send(
        with_exp_header(
            &server,
            Method::POST,
            &exp,
            "/workers",
            Some(&admin),
            Some(&other),
        )
        .body("{}"),
    );
    assert_problem(resp, 400, "eden://error/experiment-id-mismatch");
}

#[test]
fn unknown_routes_are_404_problem_json() {
    let (server, exp, worker) = setup();
    for bearer in [server.admin_bearer(), worker] {
        for p in [
            "/nope",
            "/artifacts/extra",
            "/workers/x/y/z",
            "/groups/x/members/y/z",
        ] {
            assert_problem(server.get(&exp, p, &bearer), 404, "eden://error/not-found");
        }
    }
    let resp = send(
        server
            .client()
            .get(format!("{}/v0/nope", server.base_url()))
            .header("Authorization", format!("Bearer {}", server.admin_bearer()))
            .header("Accept", ACCEPT),
    );
    assert_problem(resp, 404, "eden://error/not-found");
}

#[test]
fn wrong_methods_are_404_problem_json_never_405() {
    let (server, exp, _) = setup();
    let admin = server.admin_bearer();
    for (m, p) in [
        ("PUT", "/artifacts"),
        ("DELETE", "/artifacts"),
        ("PATCH", "/workers"),
        ("DELETE", "/whoami"),
        ("POST", "/whoami"),
        ("PUT", "/groups"),
        (
            "GET",
            "/workers/wkr_00000000000000000000000000/reissue-credential",
        ),
    ] {
        let resp = send(server.v0(method(m), &exp, p, Some(&admin)).body("{}"));
        assert_problem(resp, 404, "eden://error/not-found");
    }
}

#[test]
fn titles_are_the_fixed_phrases() {
    let (server, exp, worker) = setup();
    let title = |v: Value| v["title"].as_str().unwrap().to_string();
    let v = assert_problem(
        server.get(&exp, "/workers", "ghost:nope"),
        401,
        "eden://error/unauthorized",
    );
    assert_eq!(title(v), "Unauthorized");
    let resp = send(with_exp_header(
        &server,
        Method::GET,
        &exp,
        "/workers",
        Some(&worker),
        None,
    ));
    let v = assert_problem(resp, 400, "eden://error/experiment-id-mismatch");
    assert_eq!(title(v), "Experiment ID Mismatch");
    let v = assert_problem(
        server.get(&exp, "/whoami", &server.admin_bearer()),
        403,
        "eden://error/forbidden",
    );
    assert_eq!(title(v), "Forbidden");
    let v = assert_problem(
        server.get(&exp, "/groups/no-such-group", &worker),
        404,
        "eden://error/not-found",
    );
    assert_eq!(title(v), "Not Found");
    let v = assert_problem(
        fetch_query(&server, &exp, &worker, ""),
        400,
        "eden://error/bad-request",
    );
    assert_eq!(title(v), "Bad Request");
}

/// Many failing requests across the surface: every one must carry a
/// well-formed problem+json envelope with a type from the closed vocabulary.
fn error_sweep(server: &Server, exp: &str, worker: &str) -> Vec<(String, Response)> {
    let admin = server.admin_bearer();
    let mut out = Vec::new();
    let mut push = |label: &str, rb: RequestBuilder| out.push((label.to_string(), send(rb)));
    push("no auth", server.v0(Method::GET, exp, "/workers", None));
    push(
        "bad auth",
        server.v0(Method::GET, exp, "/workers", Some("x:y")),
    );
    push(
        "no header",
        with_exp_header(server, Method::GET, exp, "/workers", Some(&admin), None),
    );
    push(
        "admin whoami",
        server.v0(Method::GET, exp, "/whoami", Some(&admin)),
    );
    push(
        "worker register",
        server
            .v0(Method::POST, exp, "/workers", Some(worker))
            .body("{}"),
    );
    push(
        "bad json",
        server
            .v0(Method::POST, exp, "/workers", Some(&admin))
            .body("{"),
    );
    push(
        "bad name",
        server
            .v0(Method::POST, exp, "/workers", Some(&admin))
            .body(r#"{"name":" x"}"#),
    );
    push(
        "reserved",
        server
            .v0(Method::POST, exp, "/workers", Some(&admin))
            .body(r#"{"name":"admin"}"#),
    );
    push(
        "read ghost",
        server.v0(Method::GET, exp, "/workers/nope", Some(&admin)),
    );
    push(
        "group ghost",
        server.v0(Method::GET, exp, "/groups/nope", Some(&admin)),
    );
    push(
        "no uri",
        server.v0(Method::GET, exp, "/artifacts", Some(&admin)),
    );
    push(
        "bad uri",
        server.v0(
            Method::GET,
            exp,
            "/artifacts?uri=s3%3A%2F%2Fb%2Fk",
            Some(&admin),
        ),
    );
    push(
        "not multipart",
        server
            .v0(Method::POST, exp, "/artifacts", Some(&admin))
            .body("{}"),
    );
    push(
        "unknown route",
        server.v0(Method::GET, exp, "/nope", Some(&admin)),
    );
    push(
        "wrong method",
        server.v0(Method::PUT, exp, "/artifacts", Some(&admin)),
    );
    out
}

#[test]
fn every_error_uses_the_closed_vocabulary_and_envelope() {
    let (server, exp, worker) = setup();
    for (label, resp) in error_sweep(&server, &exp, &worker) {
        let status = resp.status().as_u16();
        let ct = header(&resp, "content-type");
        let body = resp.bytes().unwrap();
        assert!((400..500).contains(&status), "{label}: status {status}");
        assert!(
            ct.starts_with("application/problem+json"),
            "{label}: content-type {ct:?}"
        );
        let v: Value =
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{label}: not JSON ({e})"));
        check_problem_envelope(&v, status);
    }
}

#[test]
fn instance_when_present_is_the_request_url() {
    let (server, exp, worker) = setup();
    let path = "/groups/no-such-group?x=1";
    let resp = server.get(&exp, path, &worker);
    let url = resp.url().to_string();
    let v = assert_problem(resp, 404, "eden://error/not-found");
    if let Some(instance) = v.get("instance") {
        assert_eq!(
            instance,
            &json!(url),
            "instance should be the URL the client requested"
        );
    }
}

#[test]
fn json_content_type_and_accept_on_gets_are_never_rejected() {
    let (server, exp, worker) = setup();
    // `Server::get` sends EDEN's JSON Content-Type and Accept on every GET.
    expect_json(server.get(&exp, "/workers", &worker), 200);
    expect_json(server.get(&exp, "/groups", &worker), 200);
    expect_json(server.get(&exp, "/whoami", &worker), 200);
}

/// Issue 9 §5: EDEN's conformance suite probes paths this store does not
/// serve (`/tasks`); a wrong `X-Eden-Experiment-Id` must be 400 there too,
/// after authentication (401) and before routing (404).
#[test]
fn experiment_header_is_checked_on_every_path_and_method() {
    let (server, exp, worker) = setup();
    let admin = server.admin_bearer();
    let other = exp_id();
    let probes = [
        ("GET", "/tasks"),
        ("POST", "/tasks"),
        ("GET", "/tasks/t1/claim"),
        ("GET", "/nope/deeper"),
        ("PUT", "/artifacts"),
        ("DELETE", "/whoami"),
        ("PATCH", "/workers"),
        ("GET", "/artifacts/extra"),
    ];
    for (m, p) in probes {
        for bearer in [admin.as_str(), worker.as_str()] {
            for header_exp in [None, Some(other.as_str()), Some("")] {
                let resp = send(
                    with_exp_header(&server, method(m), &exp, p, Some(bearer), header_exp)
                        .body("{}"),
                );
                assert_problem(resp, 400, "eden://error/experiment-id-mismatch");
            }
            // The right header: routing decides (404, never 405).
            let resp = send(
                with_exp_header(&server, method(m), &exp, p, Some(bearer), Some(&exp)).body("{}"),
            );
            assert_problem(resp, 404, "eden://error/not-found");
        }
        // Authentication comes first: no bearer, a malformed one or a wrong
        // secret is 401 whatever the header says.
        for auth in [None, Some("garbage"), Some("ghost:nope")] {
            let resp =
                send(with_exp_header(&server, method(m), &exp, p, auth, Some(&other)).body("{}"));
            assert_problem(resp, 401, "eden://error/unauthorized");
        }
        // A worker of this experiment is unknown on another one: 401 there.
        let resp = send(
            with_exp_header(&server, method(m), &other, p, Some(&worker), Some(&exp)).body("{}"),
        );
        assert_problem(resp, 401, "eden://error/unauthorized");
    }
}
