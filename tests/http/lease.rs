//! The blob store's writer lease with real processes (issue 9 §5): two
//! `serve` processes on one fs blob store (separate data directories) — the
//! second is refused with the holder named; after the first is SIGKILLed
//! the second starts once the lease expires; a clean shutdown frees it at
//! once; a stale lease of a crashed process is taken over; a restart on the
//! same data directory needs no wait, even when the crash left its lease
//! object empty (another data directory is refused); a server whose lease
//! is taken stops;
//! offline `gc` is refused while a server holds the lease. Also:
//! maintenance commands never create or change a store they were not asked
//! to (`gc --data-dir /typo`, an offline command on a live directory).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::server::*;

/// Short lease timings so the tests wait seconds, not minutes.
const LEASE: &[&str] = &["--lease-duration", "3s", "--lease-heartbeat", "500ms"];

fn serve_args(blobs: &Path) -> Vec<String> {
    let mut v = vec!["--blob-store".to_string(), blobs.display().to_string()];
    v.extend(LEASE.iter().map(|s| s.to_string()));
    v
}

fn start_on(blobs: &Path) -> Server {
    let args = serve_args(blobs);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_with(&refs)
}

/// Runs `eden-cas <cmd> --data-dir <data> <args…>`, expecting it to exit
/// within 30 s; (exit code, stderr).
fn run_cmd(cmd: &str, data: &Path, args: &[String], token: Option<&str>) -> (Option<i32>, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eden-cas"));
    c.arg(cmd)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if cmd == "serve" {
        c.args(["--listen", "127.0.0.1:0"]);
    }
    match token {
        Some(t) => c.env("EDEN_CAS_ADMIN_TOKEN", t),
        None => c.env_remove("EDEN_CAS_ADMIN_TOKEN"),
    };
    let mut child = c.spawn().expect("spawn eden-cas");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("eden-cas {cmd} did not exit within 30 s (it should have been refused)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_names_holder(stderr: &str, holder: &Server) {
    assert!(
        stderr.contains("in use by another eden-cas"),
        "not refused for the lease:\n{stderr}"
    );
    let pid = holder.pid().expect("holder runs");
    assert!(
        stderr.contains(&format!("pid {pid}")),
        "pid not named:\n{stderr}"
    );
    let dir = holder.data_dir().canonicalize().unwrap();
    assert!(
        stderr.contains(&dir.display().to_string()),
        "data dir not named:\n{stderr}"
    );
    assert!(stderr.contains("host "), "host not named:\n{stderr}");
}

#[test]
fn a_second_server_on_the_same_blob_store_is_refused_until_the_lease_expires() {
    let blobs = tempfile::tempdir().unwrap();
    let mut first = start_on(blobs.path());
    let exp = exp_id();
    let admin = first.admin_bearer();
    let uri = deposit_ok(
        &first,
        &exp,
        &admin,
        &random_bytes(200_000),
        "application/octet-stream",
    );

    let other = tempfile::tempdir().unwrap();
    let (code, stderr) = run_cmd(
        "serve",
        other.path(),
        &serve_args(blobs.path()),
        Some(&random_hex(32)),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_names_holder(&stderr, &first);
    // The first keeps serving its data.
    assert_eq!(fetch(&first, &exp, &admin, &uri).status().as_u16(), 200);

    // SIGKILL: no release. The lease stays until it expires (3 s).
    first.kill9();
    let killed = Instant::now();
    let (code, stderr) = run_cmd(
        "serve",
        other.path(),
        &serve_args(blobs.path()),
        Some(&random_hex(32)),
    );
    assert_eq!(code, Some(1), "started before the lease expired:\n{stderr}");
    assert!(stderr.contains("expires in"), "{stderr}");
    std::thread::sleep(
        Duration::from_secs(3).saturating_sub(killed.elapsed()) + Duration::from_millis(300),
    );
    let second = start_on(blobs.path());
    assert!(second.pid().is_some());
}

#[test]
fn a_clean_shutdown_frees_the_lease_at_once() {
    let blobs = tempfile::tempdir().unwrap();
    let mut first = start_on(blobs.path());
    let status = first.stop().expect("exit status");
    assert!(status.success(), "{status:?}: {}", first.stderr_tail());
    let started = Instant::now();
    let _second = start_on(blobs.path());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "waited for expiry instead of taking a released lease"
    );
}

#[test]
fn a_restart_on_the_same_data_directory_needs_no_wait() {
    let blobs = tempfile::tempdir().unwrap();
    let mut server = start_on(blobs.path());
    server.kill9();
    let started = Instant::now();
    server.restart();
    assert!(started.elapsed() < Duration::from_secs(3));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server
        .stderr_tail()
        .contains("took over the blob store lease")
    {
        assert!(Instant::now() < deadline, "{}", server.stderr_tail());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server killed between creating its lease object and writing it leaves
/// the object empty (fs creates, then writes): the next start on its data
/// directory takes it over at once; another data directory may not, since
/// a live process could still be writing it.
#[test]
fn an_empty_lease_left_by_a_crash_does_not_stop_the_next_start() {
    let blobs = tempfile::tempdir().unwrap();
    let mut server = start_on(blobs.path());
    server.kill9();
    let dir = blobs.path().join("_eden_cas_lease");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    std::fs::write(&names[0], b"").unwrap();

    let other = tempfile::tempdir().unwrap();
    let (code, stderr) = run_cmd(
        "serve",
        other.path(),
        &serve_args(blobs.path()),
        Some(&random_hex(32)),
    );
    assert_eq!(code, Some(1), "took a fresh unreadable lease:\n{stderr}");
    assert!(stderr.contains("is unreadable"), "{stderr}");

    let started = Instant::now();
    server.restart();
    assert!(started.elapsed() < Duration::from_secs(3));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server
        .stderr_tail()
        .contains("taking over an unreadable blob store lease generation")
    {
        assert!(Instant::now() < deadline, "{}", server.stderr_tail());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_stale_lease_of_a_crashed_process_is_taken_over() {
    let blobs = tempfile::tempdir().unwrap();
    let dir = blobs.path().join("_eden_cas_lease");
    std::fs::create_dir_all(&dir).unwrap();
    let stale = serde_json::json!({
        "version": 1, "generation": 7,
        "holder": {"host": "gone.example", "pid": 4242, "data_dir": "/srv/old",
                   "command": "serve", "started_at": "2020-01-01T00:00:00Z"},
        "nonce": "00", "renewed_at_ms": 1_000u64, "expires_at_ms": 2_000u64, "released": false,
    });
    std::fs::write(dir.join("00000000000000000007.json"), stale.to_string()).unwrap();
    let _server = start_on(blobs.path());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["00000000000000000008.json"],
        "taken as the next generation"
    );
}

#[test]
fn a_server_that_loses_its_lease_stops() {
    let blobs = tempfile::tempdir().unwrap();
    let mut server = start_on(blobs.path());
    // Another process takes the store over (as after a long pause of this one).
    let dir = blobs.path().join("_eden_cas_lease");
    let far = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 600_000;
    let thief = serde_json::json!({
        "version": 1, "generation": 99,
        "holder": {"host": "other", "pid": 1, "data_dir": "/srv/other",
                   "command": "serve", "started_at": "2020-01-01T00:00:00Z"},
        "nonce": "ff", "renewed_at_ms": far, "expires_at_ms": far, "released": false,
    });
    std::fs::write(dir.join("00000000000000000099.json"), thief.to_string()).unwrap();
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the server stopped");
    assert!(!status.success());
    assert!(
        server.wait_stderr("lease lost", Duration::from_secs(10)),
        "{}",
        server.stderr_tail()
    );
}

#[test]
fn offline_gc_is_refused_while_a_server_holds_the_blob_store() {
    let blobs = tempfile::tempdir().unwrap();
    // A second store on the same blob store, made while nobody else ran.
    let mut second = start_on(blobs.path());
    second.stop();
    let mut first = start_on(blobs.path());
    let exp = exp_id();
    let admin = first.admin_bearer();
    let uri = deposit_ok(
        &first,
        &exp,
        &admin,
        &random_bytes(300_000),
        "application/octet-stream",
    );

    let (code, stderr) = run_cmd("gc", second.data_dir(), &serve_args(blobs.path()), None);
    assert_eq!(code, Some(1), "{stderr}");
    assert_names_holder(&stderr, &first);
    // Its pack (an orphan to the second store's metadata) is intact.
    assert_eq!(fetch(&first, &exp, &admin, &uri).status().as_u16(), 200);
    first.stop();
    // Once the server is gone the same command runs.
    let (code, stderr) = run_cmd("gc", second.data_dir(), &serve_args(blobs.path()), None);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn maintenance_never_creates_a_store() {
    let root = tempfile::tempdir().unwrap();
    let typo = root.path().join("typo");
    for cmd in ["gc", "fsck", "backup", "reindex"] {
        let (code, stderr) = run_cmd(cmd, &typo, &[], None);
        assert_eq!(code, Some(1), "{cmd}: {stderr}");
        assert!(stderr.contains("no store at"), "{cmd}: {stderr}");
        assert!(
            stderr.contains(&typo.display().to_string()),
            "{cmd}: {stderr}"
        );
        assert!(!typo.exists(), "{cmd} created {}", typo.display());
    }
    // A data directory without metadata is no store either (reindex may
    // rebuild metadata there: it is asked to).
    std::fs::create_dir(&typo).unwrap();
    for cmd in ["gc", "fsck", "backup"] {
        let (code, stderr) = run_cmd(cmd, &typo, &[], None);
        assert_eq!(code, Some(1), "{cmd}: {stderr}");
        assert!(stderr.contains("metadata directory"), "{cmd}: {stderr}");
        let left: Vec<_> = std::fs::read_dir(&typo).unwrap().collect();
        assert!(left.is_empty(), "{cmd} wrote into {}", typo.display());
    }
}

#[test]
fn an_offline_command_on_a_live_directory_writes_nothing() {
    // The server's admin token comes from the environment: no token file.
    let server = Server::start();
    let token_file = server.data_dir().join("admin-token");
    assert!(!token_file.exists());
    let before = dir_listing(server.data_dir());
    for cmd in ["gc", "fsck", "backup", "reindex"] {
        let (code, stderr) = run_cmd(cmd, server.data_dir(), &[], None);
        assert_eq!(code, Some(1), "{cmd}: {stderr}");
        assert!(
            stderr.contains("another eden-cas") || stderr.contains("in use"),
            "{cmd}: {stderr}"
        );
        assert!(!token_file.exists(), "{cmd} wrote an admin-token file");
    }
    assert_eq!(dir_listing(server.data_dir()), before);
}

/// Top-level names in `dir` (the server's own files may change inside meta/).
fn dir_listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
