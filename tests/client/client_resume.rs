//! Resumable `put`: a client killed with SIGKILL mid-upload, run again,
//! continues its session and re-sends only what the server had not
//! received — also across a server restart. Uses the test-only pause hook
//! (`EDEN_CAS_TEST_PAUSE_AFTER_BATCHES`) to stop at a known point.

use crate::support::client::*;
use crate::support::server::*;

const SIZE: usize = 24 << 20;
/// 2 MiB batches, one at a time: the kill lands after exactly 9 of ~12 batches.
const SLOW: &[&str] = &["--batch-bytes", "2MiB", "--parallel", "1"];

fn state_files(client: &Client) -> usize {
    std::fs::read_dir(client.state.path())
        .map(|d| d.filter_map(Result::ok).count())
        .unwrap_or(0)
}

fn check_resumed(server: &Server, client: &Client, path: &std::path::Path, dir: &std::path::Path) {
    assert_eq!(
        state_files(client),
        1,
        "the killed put left its resume file"
    );
    let put = client.put(server, path);
    assert_eq!(put["resumed"], true, "{put}");
    let sent = num(&put, "bytes_sent");
    eprintln!("resumed put sent {sent} of {SIZE} bytes");
    assert!(
        sent < (SIZE as u64) / 3,
        "re-sent {sent} bytes of {SIZE} after resuming: {put}"
    );
    assert!(num(&put, "chunks_sent") < num(&put, "unique_chunks"));
    assert_eq!(
        state_files(client),
        0,
        "the resume file is gone after the commit"
    );
    let out = dir.join("out");
    client.get_to(server, put["id"].as_str().unwrap(), &out);
    assert_eq!(
        file_blake3(&out),
        file_blake3(path),
        "byte-identical after resume"
    );
}

#[test]
fn resume_after_killing_the_client() {
    let server = Server::start_with(SERVE_ARGS);
    let client = Client::admin(&server);
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = random_file(dir.path(), "f", SIZE);
    client.put_killed_after(&server, &path, 9, SLOW);
    check_resumed(&server, &client, &path, dir.path());
}

#[test]
fn resume_after_restarting_the_server() {
    let mut server = Server::start_with(SERVE_ARGS);
    let exp = exp_id();
    let (_, bearer) = register_worker(&server, &exp);
    let client = Client::with(exp, bearer);
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = random_file(dir.path(), "f", SIZE);
    client.put_killed_after(&server, &path, 9, SLOW);
    server.restart();
    check_resumed(&server, &client, &path, dir.path());
}

#[test]
fn a_session_the_server_forgot_starts_over() {
    let mut server = Server::start_with(SERVE_ARGS);
    let client = Client::admin(&server);
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = random_file(dir.path(), "f", 4 << 20);
    client.put_killed_after(&server, &path, 1, SLOW);
    // A brand-new server (other data dir) has never heard of the session.
    server.kill9();
    let other = Server::start_with(SERVE_ARGS);
    let fresh = Client::with(client.exp.clone(), other.admin_bearer());
    std::fs::remove_dir(fresh.state.path()).unwrap();
    copy_dir(client.state.path(), fresh.state.path());
    let put = fresh.put(&other, &path);
    assert_eq!(put["resumed"], false, "{put}");
    assert!(num(&put, "bytes_sent") >= 4 << 20);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}
