//! Retention and GC over real HTTP against the real binary: per-experiment
//! default lifetimes from the config file, per-deposit expiry, expired
//! artifacts no longer served, `POST /cas/v1/admin/gc` (admin only, dry run),
//! the GC schedule inside `serve`, and the GC metrics.

use crate::support::v1;

use std::time::{Duration, Instant};

use crate::support::server::*;
use reqwest::Method;
use serde_json::Value;

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .filter(|rest| rest.starts_with(' '))
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("metric {name} missing:\n{text}"))
}

fn metrics(server: &Server) -> String {
    server.metrics_text()
}

fn admin_gc(server: &Server, bearer: Option<&str>, query: &str) -> reqwest::blocking::Response {
    let mut rb = server
        .client()
        .post(format!("{}/cas/v1/admin/gc{query}", server.base_url()));
    if let Some(b) = bearer {
        rb = rb.header("Authorization", format!("Bearer {b}"));
    }
    send(rb)
}

fn config(body: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eden-cas.toml");
    std::fs::write(&path, body).unwrap();
    (dir, path.display().to_string())
}

fn status_of(server: &Server, exp: &str, bearer: &str, id: &str) -> u16 {
    v1::fetch(server, exp, bearer, id, None).status().as_u16()
}

#[test]
fn expired_artifacts_stop_being_served_and_gc_reclaims_them() {
    let short = exp_id();
    let other = exp_id();
    let (_cfg, path) = config(&format!(
        "gc-interval = \"0s\"\n[experiment-ttl]\n{short} = \"2s\"\n"
    ));
    let server = Server::start_with(&["--config", &path]);
    let admin = server.admin_bearer();
    let a = v1::deposit_ok(&server, &short, &admin, &v1::noise(300_000, 1));
    assert!(
        a["expires_at"].is_string(),
        "experiment default applied: {a}"
    );
    let keep_bytes = v1::noise(200_000, 2);
    let b = v1::deposit_ok(&server, &other, &admin, &keep_bytes);
    assert!(b.get("expires_at").is_none(), "no default elsewhere: {b}");
    let c = expect_json(
        send(
            v1::req(&server, Method::POST, &other, "/artifacts", &admin)
                .header("Content-Type", "application/octet-stream")
                .header("X-Eden-Expires-In", "1s")
                .body(v1::noise(250_000, 3)),
        ),
        201,
    );
    let (a_id, b_id, c_id) = (
        a["id"].as_str().unwrap(),
        b["id"].as_str().unwrap(),
        c["id"].as_str().unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_of(&server, &short, &admin, a_id) != 404
        || status_of(&server, &other, &admin, c_id) != 404
    {
        assert!(Instant::now() < deadline, "expired artifacts still served");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Admin only: no bearer 401, a worker 403.
    assert_eq!(admin_gc(&server, None, "").status().as_u16(), 401);
    let (_, worker) = register_worker(&server, &other);
    v1::assert_problem(
        admin_gc(&server, Some(&worker), ""),
        403,
        "eden://error/forbidden",
    );
    let bad = admin_gc(&server, Some(&admin), "?dry_run=maybe");
    assert_eq!(bad.status().as_u16(), 400);

    let dry: Value = expect_json(admin_gc(&server, Some(&admin), "?dry_run=true"), 200);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["artifacts_expired"], 2, "{dry}");
    assert!(dry["bytes_reclaimed"].as_u64().unwrap() > 0, "{dry}");
    let run: Value = expect_json(admin_gc(&server, Some(&admin), ""), 200);
    assert_eq!(run["artifacts_expired"], 2, "{run}");
    assert!(run["bytes_reclaimed"].as_u64().unwrap() > 400_000, "{run}");
    assert_eq!(run["artifacts_live"], 1);
    // The survivor is intact; a second run has nothing left to do.
    assert_eq!(
        v1::fetch_bytes(&server, &other, &admin, b_id, None, 200),
        keep_bytes
    );
    let again: Value = expect_json(admin_gc(&server, Some(&admin), ""), 200);
    assert_eq!(again["artifacts_expired"], 0);
    assert_eq!(again["bytes_reclaimed"], 0, "{again}");
    let m = metrics(&server);
    assert_eq!(metric(&m, "eden_cas_gc_runs_total"), 2.0);
    assert_eq!(metric(&m, "eden_cas_artifacts_expired_total"), 2.0);
    assert!(metric(&m, "eden_cas_gc_reclaimed_bytes_total") > 400_000.0);
}

#[test]
fn serve_runs_gc_on_its_schedule() {
    let (_cfg, path) = config("gc-interval = \"1s\"\n");
    let server = Server::start_with(&["--config", &path]);
    let exp = exp_id();
    let admin = server.admin_bearer();
    let a = v1::deposit_ok(&server, &exp, &admin, &v1::noise(300_000, 9));
    let path = format!("/artifacts/{}", a["id"].as_str().unwrap());
    let resp = v1::delete(&server, &exp, &path, &admin);
    assert_eq!(resp.status().as_u16(), 204);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = metrics(&server);
        if metric(&m, "eden_cas_gc_reclaimed_bytes_total") > 0.0 {
            assert!(metric(&m, "eden_cas_gc_runs_total") >= 1.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled GC reclaimed the deleted artifact"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(server.wait_stderr("garbage collection finished", Duration::from_secs(10)));
}
