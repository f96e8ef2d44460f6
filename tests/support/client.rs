//! Shared by the `client_*` end-to-end tests: runs the real `eden-cas`
//! binary as a client against a real server (`support::server::Server`) on loopback.
//!
//! The bearer always travels in `EDEN_CAS_TOKEN`, never on argv; each
//! [`Client`] has a private resume-state directory (`EDEN_CAS_STATE_DIR`).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::server::{Server, exp_id, random_bytes};

/// Extra `serve` arguments every client test uses.
pub const SERVE_ARGS: &[&str] = &["--max-artifact-bytes", "1GiB"];

/// A client identity against one server: experiment, bearer, state directory.
pub struct Client {
    /// Experiment id.
    pub exp: String,
    /// `<principal>:<secret>`.
    pub bearer: String,
    /// Resume-state directory.
    pub state: TempDir,
}

impl Client {
    /// The admin of a fresh experiment.
    pub fn admin(server: &Server) -> Client {
        Client::with(exp_id(), server.admin_bearer())
    }

    /// Another bearer in the same experiment.
    pub fn with(exp: String, bearer: String) -> Client {
        Client {
            exp,
            bearer,
            state: tempfile::tempdir().expect("state dir"),
        }
    }

    /// `eden-cas <args>` with the connection in the environment.
    pub fn cmd(&self, server: &Server, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_eden-cas"));
        c.args(args)
            .env("EDEN_CAS_URL", server.base_url())
            .env("EDEN_CAS_EXPERIMENT", &self.exp)
            .env("EDEN_CAS_TOKEN", &self.bearer)
            .env("EDEN_CAS_STATE_DIR", self.state.path())
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env_remove(PAUSE_ENV)
            .stdin(Stdio::null());
        c
    }

    /// Runs to completion.
    pub fn run(&self, server: &Server, args: &[&str]) -> Output {
        self.cmd(server, args).output().expect("run eden-cas")
    }

    /// Runs with `--json` appended, asserts exit 0 and parses stdout.
    pub fn json(&self, server: &Server, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.run(server, &a);
        assert_ok(&out, &a);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{a:?}: stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// `put PATH --json`.
    pub fn put(&self, server: &Server, path: &Path) -> Value {
        self.json(server, &["put", path_str(path)])
    }

    /// `get ID -o OUT`; asserts success.
    pub fn get_to(&self, server: &Server, id: &str, out: &Path) {
        let a = ["get", id, "-o", path_str(out)];
        assert_ok(&self.run(server, &a), &a);
    }

    /// Starts `put` with the test pause hook, waits until it paused after
    /// `batches` acknowledged batches, then kills it with SIGKILL.
    pub fn put_killed_after(&self, server: &Server, path: &Path, batches: u32, extra: &[&str]) {
        let mut args = vec!["put", path_str(path)];
        args.extend_from_slice(extra);
        let mut child = self
            .cmd(server, &args)
            .env(PAUSE_ENV, batches.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn put");
        wait_paused(&mut child);
        child.kill().expect("kill -9 the client");
        let status = child.wait().expect("reap the client");
        assert!(!status.success(), "the client was killed");
    }
}

/// The test-only pause hook (see `docs/client.md`).
pub const PAUSE_ENV: &str = "EDEN_CAS_TEST_PAUSE_AFTER_BATCHES";

fn wait_paused(child: &mut Child) {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line == "EDEN_CAS_TEST_PAUSED" {
                let _ = tx.send(Ok(()));
                // Keep draining so the child never blocks on a full pipe.
                continue;
            }
            lines.push(line);
        }
        let _ = tx.send(Err(lines.join("\n")));
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(Ok(())) => {}
        Ok(Err(stderr)) => {
            let _ = child.kill();
            panic!("the client ended before pausing: {stderr}");
        }
        Err(_) => {
            let _ = child.kill();
            panic!("the client did not pause within 120 s");
        }
    }
}

/// Asserts exit status 0, showing stderr otherwise.
pub fn assert_ok(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "eden-cas {args:?} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts exit code `code` and a one-line `eden-cas: …` message on stderr; returns it.
pub fn assert_exit(out: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr:?}");
    assert!(lines[0].starts_with("eden-cas: "), "{stderr:?}");
    lines[0].to_string()
}

/// `p` as `&str` (test paths are UTF-8).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Writes `n` random bytes to `dir/name` and returns the path and bytes.
pub fn random_file(dir: &Path, name: &str, n: usize) -> (PathBuf, Vec<u8>) {
    let data = random_bytes(n);
    let p = dir.join(name);
    std::fs::write(&p, &data).expect("write test file");
    (p, data)
}

/// BLAKE3 of a file, streamed.
pub fn file_blake3(p: &Path) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(p).expect("open"))
        .expect("hash");
    h.finalize()
}

/// A JSON number field as u64.
pub fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}
