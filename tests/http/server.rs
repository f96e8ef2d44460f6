//! The `serve` process itself: generated admin token, clean shutdown on
//! SIGTERM, a clear startup error when the data directory is in use, and
//! concurrent deposits of overlapping content over HTTP.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::server::*;

#[test]
fn admin_token_is_generated_private_and_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_eden-cas"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("EDEN_CAS_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("EDEN_CAS_LISTENING host=127.0.0.1 port="),
        "{line}"
    );
    let token_path = dir.path().join("admin-token");
    let token = std::fs::read_to_string(&token_path)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(token.len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The generated token works as the admin bearer.
    let port: u16 = line.trim().rsplit('=').next().unwrap().parse().unwrap();
    let exp = exp_id();
    let resp = reqwest::blocking::Client::new()
        .get(format!(
            "http://127.0.0.1:{port}/v0/experiments/{exp}/workers"
        ))
        .header("Authorization", format!("Bearer admin:{token}"))
        .header("X-Eden-Experiment-Id", &exp)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "SIGTERM should end the server cleanly: {status:?}"
    );
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(
        log.contains(&token_path.display().to_string()),
        "the token file path is logged"
    );
    assert!(
        !log.contains(&token),
        "the token itself must never be logged"
    );
}

#[test]
fn second_server_on_same_data_dir_fails_clearly() {
    let server = Server::start();
    let out = Command::new(env!("CARGO_BIN_EXE_eden-cas"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(server.data_dir())
        .env("EDEN_CAS_ADMIN_TOKEN", server.admin_token())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("eden-cas: metadata store"), "{err}");
    assert!(last.contains("another eden-cas"), "{last}");
}

#[test]
fn bad_settings_fail_with_the_setting_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_eden-cas"))
        .args(["serve", "--max-artifact-bytes", "12 parsecs"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max-artifact-bytes"), "{err}");
}

#[test]
fn concurrent_overlapping_deposits_all_read_back() {
    let server = Server::start_with(&["--pack-target-bytes", "2MiB"]);
    let exp = exp_id();
    let admin = server.admin_bearer();
    let base = random_bytes(3 << 20);
    let started = Instant::now();
    let results: Vec<(String, Vec<u8>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (server, exp, admin, base) = (&server, &exp, &admin, &base);
                s.spawn(move || {
                    // Same prefix for all, a private tail each: overlapping content.
                    let mut bytes = base[..(2 << 20) + i * 4096].to_vec();
                    bytes.extend_from_slice(&random_bytes(300_000));
                    (
                        deposit_ok(server, exp, admin, &bytes, "application/octet-stream"),
                        bytes,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(started.elapsed() < Duration::from_secs(120));
    for (uri, bytes) in &results {
        let resp = fetch(&server, &exp, &admin, uri);
        assert_eq!(resp.status().as_u16(), 200);
        assert!(resp.bytes().unwrap()[..] == bytes[..], "{uri}");
    }
}
