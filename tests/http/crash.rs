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
