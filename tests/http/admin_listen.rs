//! `admin-listen`: a second listener for the operator routes. With it set,
//! `/metrics` and `/cas/v1/admin/…` answer 404 on the main listener and are
//! served (still behind their credentials) on the admin listener, which
//! serves nothing else but health; over TLS when the main listener is.

use crate::support::server::*;
use crate::support::v1;

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn bearer(rb: reqwest::blocking::RequestBuilder, b: &str) -> reqwest::blocking::RequestBuilder {
    rb.header("Authorization", format!("Bearer {b}"))
}

#[test]
fn operator_routes_move_to_the_admin_listener() {
    let port = free_port();
    let server = Server::start_with(&["--admin-listen", &format!("127.0.0.1:{port}")]);
    let main = server.base_url();
    let admin_url = format!("http://127.0.0.1:{port}");
    let admin = server.admin_bearer();
    let c = server.client();

    // Main listener: the operator routes are not there, whatever the bearer.
    assert_problem(
        send(bearer(c.get(format!("{main}/metrics")), &admin)),
        404,
        "eden://error/not-found",
    );
    assert_problem(
        send(bearer(c.post(format!("{main}/cas/v1/admin/gc")), &admin)),
        404,
        "eden://error/not-found",
    );
    assert_problem(
        send(c.get(format!("{main}/metrics"))),
        404,
        "eden://error/not-found",
    );
    // Everything else is.
    assert_eq!(
        send(c.get(format!("{main}/healthz"))).status().as_u16(),
        200
    );
    let exp = exp_id();
    let (_, worker) = register_worker(&server, &exp);
    let bytes = random_bytes(10_000);
    v1::deposit_ok(&server, &exp, &worker, &bytes);

    // Admin listener: the operator routes, behind their credentials.
    let m = send(bearer(c.get(format!("{admin_url}/metrics")), &admin));
    assert_eq!(m.status().as_u16(), 200);
    assert!(!header(&m, "x-request-id").is_empty());
    let text = m.text().unwrap();
    assert!(text.contains("eden_cas_deposits_total 1"), "{text}");
    // One registry for both listeners: the main listener's 404s for the
    // operator routes are counted (under their templates).
    assert!(
        text.contains(
            "eden_cas_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"4xx\"} 2"
        ),
        "{text}"
    );
    assert_problem(
        send(c.get(format!("{admin_url}/metrics"))),
        401,
        "eden://error/unauthorized",
    );
    assert_problem(
        send(bearer(c.get(format!("{admin_url}/metrics")), &worker)),
        403,
        "eden://error/forbidden",
    );
    let gc = send(bearer(
        c.post(format!("{admin_url}/cas/v1/admin/gc")),
        &admin,
    ));
    assert_eq!(gc.status().as_u16(), 200);
    assert_eq!(
        send(c.get(format!("{admin_url}/readyz"))).status().as_u16(),
        200
    );
    // …and nothing else.
    assert_problem(
        send(bearer(
            c.get(format!("{admin_url}/cas/v1/experiments/{exp}/artifacts"))
                .header("X-Eden-Experiment-Id", &exp),
            &admin,
        )),
        404,
        "eden://error/not-found",
    );
    assert_problem(
        send(bearer(
            c.get(format!("{admin_url}/v0/experiments/{exp}/workers"))
                .header("X-Eden-Experiment-Id", &exp),
            &admin,
        )),
        404,
        "eden://error/not-found",
    );
}

#[test]
fn admin_listener_speaks_tls_with_the_main_listener() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let port = free_port();
    let server = Server::start_with(&[
        "--admin-listen",
        &format!("127.0.0.1:{port}"),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let m = client
        .get(format!("https://127.0.0.1:{port}/metrics"))
        .header("Authorization", format!("Bearer {}", server.admin_bearer()))
        .send()
        .unwrap();
    assert_eq!(m.status().as_u16(), 200);
    let main = server.base_url().replacen("http://", "https://", 1);
    let r = client
        .get(format!("{main}/metrics"))
        .header("Authorization", format!("Bearer {}", server.admin_bearer()))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}
