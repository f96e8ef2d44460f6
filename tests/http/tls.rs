//! TLS on the listener over real HTTPS: the configured certificate is
//! served (and plain HTTP is not), SIGHUP swaps in the files' new
//! certificate without restarting the listener (a bad file keeps the old
//! one), and unusable settings stop startup with one line naming the
//! setting.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::server::*;

/// A fresh self-signed certificate for 127.0.0.1 and localhost: (cert PEM,
/// key PEM).
fn self_signed() -> (String, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("generate a certificate");
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

/// Writes the pair into `dir` as `cert.pem` / `key.pem`.
fn write_pair(dir: &Path, pair: &(String, String)) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &pair.0).unwrap();
    std::fs::write(&key, &pair.1).unwrap();
    (cert, key)
}

/// A client that trusts `cert_pem` only, keeping no idle connection (each
/// request makes its own handshake, though it may resume the session).
fn trusting(cert_pem: &str) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn https_url(server: &Server, path: &str) -> String {
    format!(
        "{}{path}",
        server.base_url().replacen("http://", "https://", 1)
    )
}

fn serve_tls(cert: &Path, key: &Path) -> Server {
    Server::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
}

#[test]
fn https_listener_serves_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pair = self_signed();
    let (cert, key) = write_pair(dir.path(), &pair);
    let server = serve_tls(&cert, &key);
    let client = trusting(&pair.0);
    let resp = client.get(https_url(&server, "/healthz")).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(!header(&resp, "x-request-id").is_empty());
    assert_eq!(resp.text().unwrap(), "ok\n");
    let metrics = client
        .get(https_url(&server, "/metrics"))
        .header("Authorization", format!("Bearer {}", server.admin_bearer()))
        .send()
        .unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    // A client that does not trust this certificate is refused, and plain
    // HTTP gets no answer.
    let other = trusting(&self_signed().0);
    assert!(other.get(https_url(&server, "/healthz")).send().is_err());
    assert!(
        server
            .client()
            .get(format!("{}/healthz", server.base_url()))
            .send()
            .is_err(),
        "plain HTTP was answered on the TLS listener"
    );
}

/// Retries `f` for up to 10 s until it is true.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn sighup(server: &Server) {
    let pid = server.pid().expect("server pid");
    let st = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn sighup_reloads_the_certificate_and_keeps_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let first = self_signed();
    let (cert, key) = write_pair(dir.path(), &first);
    let server = serve_tls(&cert, &key);
    let old = trusting(&first.0);
    let ok = |c: &reqwest::blocking::Client| {
        c.get(https_url(&server, "/healthz"))
            .send()
            .is_ok_and(|r| r.status().as_u16() == 200)
    };
    assert!(ok(&old));

    let second = self_signed();
    write_pair(dir.path(), &second);
    let new = trusting(&second.0);
    assert!(!ok(&new), "the new certificate was served before SIGHUP");
    sighup(&server);
    assert!(
        eventually(|| ok(&new)),
        "the new certificate is not served after SIGHUP:\n{}",
        server.stderr_tail()
    );
    // A fresh client (an old one may resume its TLS session, which skips
    // the certificate, as with any server).
    assert!(
        !ok(&trusting(&first.0)),
        "the old certificate is still served"
    );
    assert!(server.wait_stderr("TLS certificate and key reloaded", Duration::from_secs(10)));

    // A broken file on reload: the previous pair stays, the log says so,
    // and the server keeps serving.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    sighup(&server);
    assert!(
        eventually(|| server
            .stderr_tail()
            .contains("TLS certificate NOT reloaded")),
        "{}",
        server.stderr_tail()
    );
    assert!(ok(&new));
}

/// `check-config` with `args`: its exit code and last `eden-cas:` line.
fn check_config(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eden-cas"))
        .arg("check-config")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--blob-store", "memory://"])
        .args(args)
        .env("EDEN_CAS_ADMIN_TOKEN", random_hex(32))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("eden-cas: "))
        .unwrap_or_default()
        .to_owned();
    (out.status.code(), line)
}

#[test]
fn unusable_tls_settings_stop_startup_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let pair = self_signed();
    let (cert, key) = write_pair(dir.path(), &pair);
    let cert = cert.to_str().unwrap();
    let key = key.to_str().unwrap();
    let missing = dir.path().join("nope.pem");
    let missing = missing.to_str().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello\n").unwrap();
    let garbage = garbage.to_str().unwrap();
    let other_key = dir.path().join("other-key.pem");
    std::fs::write(&other_key, self_signed().1).unwrap();
    let other_key = other_key.to_str().unwrap();

    let (code, line) = check_config(dir.path(), &["--tls-cert", cert, "--tls-key", key]);
    assert_eq!(code, Some(0), "{line}");
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--tls-cert", missing, "--tls-key", key],
            &["setting `tls-cert`", "nope.pem"],
        ),
        (
            &["--tls-cert", cert, "--tls-key", missing],
            &["setting `tls-key`", "nope.pem"],
        ),
        (
            &["--tls-cert", garbage, "--tls-key", key],
            &["setting `tls-cert`", "garbage.pem", "no PEM certificate"],
        ),
        (
            &["--tls-cert", cert, "--tls-key", garbage],
            &["setting `tls-key`", "garbage.pem"],
        ),
        (
            &["--tls-cert", cert, "--tls-key", other_key],
            &["tls-key", "does not match"],
        ),
        (
            &["--tls-cert", cert],
            &["setting `tls-key`: required when `tls-cert` is set"],
        ),
        (
            &["--tls-key", key],
            &["setting `tls-cert`: required when `tls-key` is set"],
        ),
    ];
    for (args, wanted) in cases {
        let (code, line) = check_config(dir.path(), args);
        assert_eq!(code, Some(1), "{args:?}: {line}");
        for w in *wanted {
            assert!(line.contains(w), "{args:?}: {line:?} lacks {w:?}");
        }
        assert!(!line.contains("PRIVATE KEY"), "key material in {line}");
    }
}
