//! `/healthz`, `/readyz` and `/metrics`: up, ready, and counters that show
//! dedup (a re-deposit adds logical bytes but no pack bytes) — to the
//! operator only: `/metrics` needs the admin bearer or the metrics token.

use crate::support::server::*;

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("metric {name} missing:\n{text}"))
}

fn metrics(server: &Server) -> String {
    let text = server.metrics_text();
    assert!(text.contains("# TYPE eden_cas_deposits_total counter"));
    text
}

fn get_metrics(server: &Server, authorization: Option<&str>) -> reqwest::blocking::Response {
    let mut rb = server
        .client()
        .get(format!("{}/metrics", server.base_url()));
    if let Some(a) = authorization {
        rb = rb.header("Authorization", a);
    }
    rb.send().unwrap()
}

/// Store-wide counters move only when bytes are new to the *store*: they
/// are for the operator alone (invariant 4). Without a credential `/metrics`
/// is a 401 problem; a worker bearer is 403; health and readiness stay open
/// and say nothing about content.
#[test]
fn metrics_need_the_admin_bearer() {
    let server = Server::start();
    let exp = exp_id();
    let (_, worker) = register_worker(&server, &exp);
    assert_problem(get_metrics(&server, None), 401, "eden://error/unauthorized");
    assert_problem(
        get_metrics(&server, Some("Bearer admin:not-the-admin-token")),
        401,
        "eden://error/unauthorized",
    );
    assert_problem(
        get_metrics(&server, Some("Bearer metrics:no-metrics-token-is-set")),
        401,
        "eden://error/unauthorized",
    );
    assert_problem(
        get_metrics(&server, Some(&format!("Bearer {worker}"))),
        403,
        "eden://error/forbidden",
    );
    let ok = get_metrics(&server, Some(&format!("Bearer {}", server.admin_bearer())));
    assert_eq!(ok.status().as_u16(), 200);
    for path in ["/healthz", "/readyz"] {
        let body = server
            .client()
            .get(format!("{}{path}", server.base_url()))
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(body == "ok\n" || body == "ready\n", "{path}: {body}");
    }
}

/// A dedicated metrics token (for Prometheus' `credentials_file`), read
/// from the file named by `metrics-token-file`, is accepted as
/// `Bearer metrics:<token>`; the admin bearer still works; the token never
/// reaches the log.
#[test]
fn metrics_token_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let token = format!("prom-{}", random_hex(24));
    let token_file = dir.path().join("metrics-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let config = dir.path().join("eden-cas.toml");
    std::fs::write(
        &config,
        format!(
            "metrics-token-file = {:?}\n",
            token_file.display().to_string()
        ),
    )
    .unwrap();
    let server = Server::start_with(&["--config", config.to_str().unwrap()]);
    let ok = get_metrics(&server, Some(&format!("Bearer metrics:{token}")));
    assert_eq!(ok.status().as_u16(), 200);
    assert!(ok.text().unwrap().contains("eden_cas_deposits_total"));
    assert_problem(
        get_metrics(&server, Some(&format!("Bearer metrics:{token}x"))),
        401,
        "eden://error/unauthorized",
    );
    metrics(&server);
    assert!(
        !server.stderr_tail().contains(&token),
        "the token was logged"
    );
}

#[test]
fn health_readiness_and_dedup_metrics() {
    let server = Server::start();
    for path in ["/healthz", "/readyz"] {
        let resp = server
            .client()
            .get(format!("{}{path}", server.base_url()))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
    }
    let exp = exp_id();
    let admin = server.admin_bearer();
    let bytes = random_bytes(2 << 20);
    deposit_ok(&server, &exp, &admin, &bytes, "application/octet-stream");
    let m1 = metrics(&server);
    assert_eq!(metric(&m1, "eden_cas_deposits_total"), 1);
    assert_eq!(metric(&m1, "eden_cas_logical_bytes_total"), 2 << 20);
    let packed = metric(&m1, "eden_cas_pack_bytes_written_total");
    assert!(
        packed >= 2 << 20,
        "random data is stored at least whole: {packed}"
    );
    deposit_ok(&server, &exp, &admin, &bytes, "application/octet-stream");
    let m2 = metrics(&server);
    assert_eq!(metric(&m2, "eden_cas_deposits_total"), 2);
    assert_eq!(metric(&m2, "eden_cas_logical_bytes_total"), 4 << 20);
    assert_eq!(
        metric(&m2, "eden_cas_pack_bytes_written_total"),
        packed,
        "a re-deposit wrote pack bytes"
    );
    assert_eq!(metric(&m2, "eden_cas_new_raw_bytes_total"), 2 << 20);
}
