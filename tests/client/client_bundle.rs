//! Directory bundles and `verify` end to end: `put DIR` of nested
//! directories with empty files, empty directories and symlinks, a re-put of
//! the unchanged tree that dedups fully, `get --extract`, and `verify`
//! catching a modified local file or tree (exit code 4).

#![cfg(unix)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use crate::support::client::*;
use crate::support::server::*;

fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::write(root.join("a/empty"), b"").unwrap();
    fs::write(root.join("a/b/c/deep.txt"), b"deep").unwrap();
    fs::write(root.join("a/b/big.bin"), random_bytes(3 << 20)).unwrap();
    fs::write(root.join("tool.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("tool.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("a/b/c/deep.txt", root.join("rel-link")).unwrap();
    symlink("../nowhere/at/all", root.join("a/dangling")).unwrap();
    symlink("b", root.join("a/dir-link")).unwrap();
}

/// Every entry under `root`: (relative path, kind, content or link target, exec bit).
fn describe(root: &Path) -> Vec<(String, &'static str, Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                let t = fs::read_link(&p).unwrap();
                out.push((rel, "link", t.to_string_lossy().as_bytes().to_vec(), false));
            } else if m.is_dir() {
                out.push((rel, "dir", Vec::new(), false));
                stack.push(p);
            } else {
                let exec = m.permissions().mode() & 0o100 != 0;
                out.push((rel, "file", fs::read(&p).unwrap(), exec));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn bundle_round_trip_dedup_and_extract() {
    let server = Server::start_with(SERVE_ARGS);
    let client = Client::admin(&server);
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    make_tree(&tree);

    let first = client.put(&server, &tree);
    let stat = client.json(&server, &["stat", first["id"].as_str().unwrap()]);
    assert_eq!(stat["content_type"], "application/x-tar");
    assert_eq!(stat["filename"], "tree.tar");

    // Unchanged tree (even with fresh mtimes): identical stream, full dedup.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::write(tree.join("a/empty"), b"").unwrap();
    let second = client.put(&server, &tree);
    assert_eq!(first["digests"], second["digests"], "deterministic bundle");
    assert_eq!(num(&second, "chunks_sent"), 0, "{second}");
    assert!(num(&second, "bytes_sent") < 16 * 1024, "{second}");

    let out = work.path().join("restored");
    let v = client.json(
        &server,
        &[
            "get",
            second["uri"].as_str().unwrap(),
            "--extract",
            path_str(&out),
        ],
    );
    assert_eq!(v["verified"], true);
    assert_eq!(describe(&out), describe(&tree));

    // A small change re-sends a small part only.
    fs::write(tree.join("a/b/c/deep.txt"), b"deeper").unwrap();
    let third = client.put(&server, &tree);
    assert_ne!(third["digests"], first["digests"]);
    assert!(num(&third, "chunk_bytes_sent") < 1 << 20, "{third}");
}

#[test]
fn bundle_refuses_special_files() {
    let server = Server::start_with(SERVE_ARGS);
    let client = Client::admin(&server);
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("t");
    fs::create_dir(&tree).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(tree.join("sock")).unwrap();
    let msg = assert_exit(&client.run(&server, &["put", path_str(&tree)]), 1);
    assert!(msg.contains("only regular files"), "{msg}");
}

#[test]
fn verify_catches_modified_file_and_tree() {
    let server = Server::start_with(SERVE_ARGS);
    let client = Client::admin(&server);
    let work = tempfile::tempdir().unwrap();
    let (file, mut data) = random_file(work.path(), "f", (1 << 20) + 3);
    let id = client.put(&server, &file)["id"]
        .as_str()
        .unwrap()
        .to_string();

    let ok = client.json(&server, &["verify", &id, path_str(&file)]);
    assert_eq!(ok["ok"], true, "{ok}");
    let ok = client.run(&server, &["verify", &id]);
    assert_ok(&ok, &["verify", &id]);
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("OK "));

    data[700_000] ^= 1;
    fs::write(&file, &data).unwrap();
    let bad = client.run(&server, &["verify", &id, path_str(&file)]);
    assert!(assert_exit(&bad, 4).contains("MISMATCH"));
    let bad = client.run(&server, &["verify", &id, path_str(&file), "--json"]);
    assert_eq!(bad.status.code(), Some(4));
    let v: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert_eq!(v["ok"], false);

    let tree = work.path().join("tree");
    make_tree(&tree);
    let bid = client.put(&server, &tree)["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ok(
        &client.run(&server, &["verify", &bid, path_str(&tree)]),
        &["verify"],
    );
    fs::set_permissions(tree.join("tool.sh"), fs::Permissions::from_mode(0o644)).unwrap();
    assert_exit(&client.run(&server, &["verify", &bid, path_str(&tree)]), 4);
}
