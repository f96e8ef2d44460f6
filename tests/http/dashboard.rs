//! The storage stats and dashboard (`/cas/v1/admin/stats`,
//! `/cas/v1/admin/dashboard`): exact figures for a known store, admin only
//! (bearer or the browser's Basic login, never on state-changing routes),
//! and the page rendered by a real headless Chromium, whose DOM must show
//! the same numbers; a screenshot is kept under the test's target dir.

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;

use crate::support::server::{Server, exp_id, expect_json, register_worker, send};
use crate::support::v1;

/// Pseudo-random text: compressible, no repeated chunk.
fn text(n: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "alpha ", "beta ", "gamma ", "delta ", "epoch ", "loss ", "step ", "grad ",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % 8) as usize].as_bytes());
        out.extend_from_slice((x % 1000).to_string().as_bytes());
    }
    out.truncate(n);
    out
}

fn basic(user: &str, password: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b64}")
}

fn admin_get(
    server: &Server,
    path: &str,
    authorization: Option<&str>,
) -> reqwest::blocking::Response {
    let mut rb = server.client().get(format!("{}{path}", server.base_url()));
    if let Some(a) = authorization {
        rb = rb.header("Authorization", a);
    }
    send(rb)
}

fn stats(server: &Server) -> Value {
    let bearer = format!("Bearer {}", server.admin_bearer());
    expect_json(admin_get(server, "/cas/v1/admin/stats", Some(&bearer)), 200)
}

fn n(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} missing in {v:#}"))
}

fn experiment<'a>(s: &'a Value, exp: &str) -> &'a Value {
    s["experiments"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["experiment"] == exp))
        .unwrap_or_else(|| panic!("{exp} missing in {s:#}"))
}

/// Two experiments: E1 holds R (random) twice and T (text); E2 holds R.
struct Store {
    server: Server,
    e1: String,
    e2: String,
    r: usize,
    t: usize,
    t_id: String,
    worker: String,
}

fn known_store() -> Store {
    // Compaction of any pack with a dead byte, so a GC leaves live bytes only.
    let server = Server::start_with(&["--gc-compact-below", "1"]);
    let (e1, e2) = (exp_id(), exp_id());
    let (_, worker) = register_worker(&server, &e1);
    let admin = server.admin_bearer();
    let r = crate::support::server::random_bytes(1 << 20);
    let t = text(300 * 1024, 7);
    v1::deposit_ok(&server, &e1, &worker, &r);
    v1::deposit_ok(&server, &e1, &admin, &r);
    let t_id = v1::deposit_ok(&server, &e1, &worker, &t)["id"]
        .as_str()
        .expect("id")
        .to_string();
    v1::deposit_ok(&server, &e2, &admin, &r);
    Store {
        server,
        e1,
        e2,
        r: r.len(),
        t: t.len(),
        t_id,
        worker,
    }
}

#[test]
fn stats_are_exact_for_a_known_store() {
    let s = known_store();
    let (r, t) = (s.r as u64, s.t as u64);
    let v = stats(&s.server);
    assert_eq!(n(&v, "/store/artifacts"), 4);
    assert_eq!(n(&v, "/store/logical_bytes"), 3 * r + t);
    assert_eq!(n(&v, "/store/unique_bytes"), r + t, "R counted once");
    assert_eq!(n(&v, "/store/dedup_saved_bytes"), 2 * r);
    let stored = n(&v, "/store/stored_bytes");
    assert!(
        stored >= r && stored < r + t,
        "random bytes stay raw, the text compresses: {stored}"
    );
    assert_eq!(n(&v, "/store/compression_saved_bytes"), r + t - stored);
    assert_eq!(
        n(&v, "/packs/live_bytes"),
        stored,
        "every live chunk once in packs"
    );
    let e1 = experiment(&v, &s.e1);
    assert_eq!(n(e1, "/artifacts"), 3);
    assert_eq!(n(e1, "/logical_bytes"), 2 * r + t);
    assert_eq!(n(e1, "/unique_bytes"), r + t);
    let e2 = experiment(&v, &s.e2);
    assert_eq!(n(e2, "/logical_bytes"), r);
    assert_eq!(
        n(e2, "/unique_bytes"),
        r,
        "shared chunks count in each experiment"
    );
    assert_eq!(n(e2, "/stored_bytes"), r);
    assert_eq!(n(e1, "/quota_used_bytes"), 2 * r + t);
    let fill: u64 = v["packs"]["fill_histogram"]
        .as_array()
        .expect("histogram")
        .iter()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(fill, n(&v, "/packs/packs"), "every pack in one bucket");
    assert!(!v["history"].as_array().expect("history").is_empty());

    // Deleting T makes its chunks dead until GC.
    let resp = v1::delete(
        &s.server,
        &s.e1,
        &format!("/artifacts/{}", s.t_id),
        &s.worker,
    );
    assert_eq!(resp.status().as_u16(), 204);
    let after = stats(&s.server);
    assert_eq!(n(&after, "/store/logical_bytes"), 3 * r);
    assert_eq!(n(&after, "/store/stored_bytes"), r);
    assert!(n(&after, "/packs/dead_bytes") >= stored - r);
    let bearer = format!("Bearer {}", s.server.admin_bearer());
    let gc = send(
        s.server
            .client()
            .post(format!(
                "{}/cas/v1/admin/gc?dry_run=false",
                s.server.base_url()
            ))
            .header("Authorization", &bearer),
    );
    assert_eq!(gc.status().as_u16(), 200);
    let collected = stats(&s.server);
    assert_eq!(n(&collected, "/store/stored_bytes"), r);
    assert_eq!(
        n(&collected, "/packs/live_bytes"),
        r,
        "after GC the packs hold the live chunks"
    );
}

#[test]
fn only_the_admin_sees_the_stats_and_basic_opens_only_the_read_only_pages() {
    let s = known_store();
    let token = s.server.admin_token().to_string();
    for path in ["/cas/v1/admin/stats", "/cas/v1/admin/dashboard"] {
        let anon = admin_get(&s.server, path, None);
        assert_eq!(anon.status().as_u16(), 401, "{path}");
        let challenge = anon
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(challenge.starts_with("Basic "), "{path}: {challenge:?}");
        let worker = admin_get(&s.server, path, Some(&format!("Bearer {}", s.worker)));
        assert_eq!(worker.status().as_u16(), 403, "{path}");
        for wrong in [
            basic("admin", "wrong"),
            basic("root", &token),
            basic(&s.worker, "x"),
        ] {
            assert_eq!(
                admin_get(&s.server, path, Some(&wrong)).status().as_u16(),
                401,
                "{path}"
            );
        }
        let ok = admin_get(&s.server, path, Some(&basic("admin", &token)));
        assert_eq!(ok.status().as_u16(), 200, "{path}");
    }
    // Basic credentials are never enough to change anything.
    let gc = send(
        s.server
            .client()
            .post(format!("{}/cas/v1/admin/gc", s.server.base_url()))
            .header("Authorization", basic("admin", &token)),
    );
    assert_eq!(gc.status().as_u16(), 401);
    // The page asks browsers for no script or outside asset.
    let page = admin_get(
        &s.server,
        "/cas/v1/admin/dashboard",
        Some(&basic("admin", &token)),
    );
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text().expect("page");
    assert!(!html.contains("<script"), "no script on the page");
    assert!(
        !html.contains(&token),
        "the token never appears on the page"
    );
}

/// Debian's Chromium (installed by `scripts/setup.sh`).
fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            let out = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            let path = String::from_utf8(out.stdout).ok()?;
            let path = path.trim();
            (!path.is_empty()).then(|| PathBuf::from(path))
        })
}

fn headless(
    browser: &PathBuf,
    profile: &std::path::Path,
    extra: &[String],
    url: &str,
) -> std::process::Output {
    // `timeout` bounds a browser that hangs; output() drains its pipes.
    let mut cmd = Command::new("timeout");
    cmd.arg("90")
        .arg(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url);
    let out = cmd.output().expect("start chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn the_dashboard_renders_the_figures_in_a_real_browser() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is required in CI (scripts/setup.sh installs it)"
        );
        eprintln!("SKIP: no chromium on this machine; run scripts/setup.sh");
        return;
    };
    let s = known_store();
    let v = stats(&s.server);
    let profile = tempfile::tempdir().expect("profile dir");
    // The throwaway test token rides in the URL's userinfo: Chromium sends
    // it as Basic credentials, as a browser's login prompt would.
    let url = format!(
        "http://admin:{}@127.0.0.1:{}/cas/v1/admin/dashboard",
        s.server.admin_token(),
        s.server.base_url().rsplit(':').next().unwrap_or_default()
    );
    let dom = headless(&browser, profile.path(), &["--dump-dom".into()], &url);
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    assert!(dom.contains("eden-cas storage"), "page loaded: {dom:.400}");
    for (id, pointer) in [
        ("store-logical", "/store/logical_bytes"),
        ("store-unique", "/store/unique_bytes"),
        ("store-stored", "/store/stored_bytes"),
        ("store-dedup-saved", "/store/dedup_saved_bytes"),
        ("packs-bytes", "/packs/pack_bytes"),
    ] {
        let want = format!("id=\"{id}\" data-bytes=\"{}\"", n(&v, pointer));
        assert!(dom.contains(&want), "{want} in the rendered page");
    }
    assert!(dom.contains("id=\"store-artifacts\" data-count=\"4\""));
    for exp in [&s.e1, &s.e2] {
        assert!(
            dom.contains(&format!("data-experiment=\"{exp}\"")),
            "{exp} listed"
        );
    }
    for chart in ["id=\"history\"", "id=\"experiments\"", "id=\"pack-fill\""] {
        assert!(dom.contains(chart), "{chart} drawn");
    }
    let shot_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&shot_dir).expect("screenshot dir");
    let shot = shot_dir.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        &browser,
        profile.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,1700".into(),
        ],
        &url,
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    eprintln!("dashboard screenshot: {}", shot.display());
}
