//! `/healthz`, `/readyz` and `/metrics`: up, ready, and counters that show
//! dedup (a re-deposit adds logical bytes but no pack bytes).

mod common;

use common::*;

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("metric {name} missing:\n{text}"))
}

fn metrics(server: &Server) -> String {
    let resp = server
        .client()
        .get(format!("{}/metrics", server.base_url()))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(header(&resp, "content-type").starts_with("text/plain"));
    resp.text().unwrap()
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
