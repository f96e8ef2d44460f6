//! Crash safety (invariant 3): `kill -9` the server in the middle of a large
//! deposit, restart on the same data directory: it opens, earlier artifacts
//! are intact and verified, and the interrupted deposit does not exist.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use crate::support::server::*;
use eden_cas::auth::ExperimentId;
use eden_cas::engine::ingest::parse_artifact_id;
use eden_cas::meta::Meta;

#[test]
fn kill9_during_large_deposit_loses_nothing_committed() {
    let mut server = Server::start_with(&[
        "--max-artifact-bytes",
        "1GiB",
        "--pack-target-bytes",
        "4MiB",
    ]);
    let exp = exp_id();
    let admin = server.admin_bearer();
    let earlier: Vec<(String, Vec<u8>)> = [0usize, 1, 300_000, 6 << 20]
        .into_iter()
        .map(|n| {
            let bytes = random_bytes(n);
            (
                deposit_ok(&server, &exp, &admin, &bytes, "application/octet-stream"),
                bytes,
            )
        })
        .collect();

    // A 512 MiB deposit over a raw socket; kill the server after 40 MiB, once
    // several packs have been sealed and indexed.
    let boundary = boundary();
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let total = head.len() + (512 << 20) + format!("\r\n--{boundary}--\r\n").len();
    let mut sock = TcpStream::connect((
        "127.0.0.1",
        server
            .base_url()
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap(),
    ))
    .expect("connect");
    sock.set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        sock,
        "POST /v0/experiments/{exp}/artifacts HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: Bearer {admin}\r\nX-Eden-Experiment-Id: {exp}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {total}\r\n\r\n{head}"
    )
    .unwrap();
    let block = random_bytes(1 << 20);
    for _ in 0..40 {
        sock.write_all(&block).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    server.kill9();
    drop(sock);

    // Restart on the same data dir: earlier artifacts come back verified.
    server.restart();
    for (uri, bytes) in &earlier {
        let resp = fetch(&server, &exp, &admin, uri);
        assert_eq!(resp.status().as_u16(), 200, "{uri} after restart");
        let body = resp.bytes().expect("body");
        assert!(body[..] == bytes[..], "{uri} changed across the crash");
    }
    // And only they exist: the interrupted deposit left no artifact record.
    server.kill9();
    let meta = Meta::open(&server.data_dir().join("meta")).expect("reopen RocksDB after kill -9");
    let exp_id = ExperimentId::parse(&exp).expect("an experiment id");
    let listed = meta.artifacts_newest_first(&exp_id, None, 100).unwrap();
    assert_eq!(
        listed.len(),
        earlier.len(),
        "an interrupted deposit became visible"
    );
    for (uri, _) in &earlier {
        let id = parse_artifact_id(artifact_id(uri)).unwrap();
        assert!(listed.iter().any(|(i, _)| *i == id));
    }
    // The interrupted deposit did reach the disk (packs were sealed and
    // indexed before the kill), so this exercised the interesting window.
    assert!(
        meta.packs().unwrap().len() > 2,
        "no pack of the interrupted deposit was sealed"
    );
}

/// `kill -9` while 16 clients deposit 4 KiB artifacts, which the server
/// commits in groups (`engine/ingest/group.rs`): after a restart every
/// acknowledged deposit reads back byte-identical, and every artifact the
/// store records is whole (deep fsck reads each one back against its
/// digests) — a group is recorded entirely or not at all.
#[test]
fn kill9_during_group_commits_loses_no_acknowledged_deposit() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let mut server = Server::start();
    let exp = exp_id();
    let admin = server.admin_bearer();
    type Acked = Vec<(String, Vec<u8>)>;
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let pid = server.pid().expect("server running");
    std::thread::scope(|s| {
        for _ in 0..16 {
            let (server, exp, admin) = (&server, &exp, &admin);
            let (acked, stop) = (Arc::clone(&acked), Arc::clone(&stop));
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let bytes = random_bytes(4096);
                    let b = boundary();
                    let body = multipart_body(
                        &b,
                        &[Part {
                            name: "file",
                            filename: Some("artifact"),
                            content_type: None,
                            data: &bytes,
                        }],
                    );
                    let sent = server
                        .v0_ct(
                            reqwest::Method::POST,
                            exp,
                            "/artifacts",
                            Some(admin),
                            &format!("multipart/form-data; boundary={b}"),
                        )
                        .body(body)
                        .send();
                    let Ok(resp) = sent else {
                        return; // the server is gone
                    };
                    if resp.status().as_u16() != 201 {
                        return;
                    }
                    let Ok(v) = resp.text().map_err(|_| ()).and_then(|t| {
                        serde_json::from_str::<serde_json::Value>(&t).map_err(|_| ())
                    }) else {
                        return;
                    };
                    if let Some(uri) = v["artifacts_uri"].as_str() {
                        acked.lock().unwrap().push((uri.to_string(), bytes));
                    }
                }
            });
        }
        // Kill once a few hundred deposits were acknowledged: commits are
        // running back to back by then.
        while acked.lock().unwrap().len() < 300 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let killed = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success());
        stop.store(true, Ordering::Relaxed);
    });
    server.kill9();
    let acked = std::mem::take(&mut *acked.lock().unwrap());

    server.restart();
    for (uri, bytes) in &acked {
        let resp = fetch(&server, &exp, &admin, uri);
        assert_eq!(resp.status().as_u16(), 200, "{uri} lost by the crash");
        assert!(resp.bytes().unwrap()[..] == bytes[..], "{uri} changed");
    }
    server.kill9();
    let meta = Meta::open(&server.data_dir().join("meta")).expect("reopen RocksDB");
    let exp_id = ExperimentId::parse(&exp).expect("an experiment id");
    let listed = meta.artifacts_newest_first(&exp_id, None, 100_000).unwrap();
    assert!(listed.len() >= acked.len());
    drop(meta);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eden-cas"))
        .args(["fsck", "--deep", "--data-dir"])
        .arg(server.data_dir())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsck after the crash:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
