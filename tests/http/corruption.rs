//! Verified reads (invariant 6): flip a byte in a pack file; the fetch fails —
//! an error status when detected before the response starts, otherwise a
//! response cut short of its Content-Length — never a complete wrong body.

use std::io::Read;

use crate::support::packs::{flip, pack_files};
use crate::support::server::*;

#[test]
fn corrupt_small_artifact_is_an_error_status() {
    let server = Server::start();
    let exp = exp_id();
    let admin = server.admin_bearer();
    let bytes = random_bytes(300_000);
    let uri = deposit_ok(&server, &exp, &admin, &bytes, "application/octet-stream");
    let packs = pack_files(&server.data_dir().join("blobs"));
    assert_eq!(packs.len(), 1);
    flip(&packs[0], 8 + 1000);
    let resp = fetch(&server, &exp, &admin, &uri);
    assert_problem(resp, 500, "about:blank");
    // The log is read by a background thread: give it a moment to catch up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !server.stderr_tail().contains("fails its BLAKE3 check")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        server.stderr_tail().contains("fails its BLAKE3 check"),
        "no log line:\n{}",
        server.stderr_tail()
    );
}

#[test]
fn corruption_late_in_a_large_artifact_cuts_the_body_short() {
    let mut server = Server::start_with(&["--max-artifact-bytes", "64MiB"]);
    let exp = exp_id();
    let admin = server.admin_bearer();
    let bytes = random_bytes(40 << 20);
    let uri = deposit_ok(&server, &exp, &admin, &bytes, "application/octet-stream");
    let packs = pack_files(&server.data_dir().join("blobs"));
    assert_eq!(packs.len(), 1);
    // Random data is stored raw, so chunk bytes sit at the same offsets as in
    // the artifact (after the 8-byte header): corrupt 35 MiB in.
    flip(&packs[0], 8 + (35 << 20));
    let mut resp = fetch(&server, &exp, &admin, &uri);
    let status = resp.status().as_u16();
    if status == 200 {
        let declared: usize = header(&resp, "content-length").parse().unwrap();
        assert_eq!(declared, bytes.len());
        let mut got = Vec::new();
        let res = resp.read_to_end(&mut got);
        assert!(
            res.is_err() || got.len() < declared,
            "a complete body was sent for corrupt data"
        );
        assert!(
            got[..] == bytes[..got.len()],
            "the bytes sent before the cut must be correct"
        );
    } else {
        assert_eq!(status, 500);
    }
    // A missing pack is reported the same way once no verified copy of its
    // chunks is cached (the fetch above warmed the in-memory chunk cache, so
    // restart the server to read from the blob store alone).
    std::fs::remove_file(&packs[0]).unwrap();
    server.restart();
    assert_problem(fetch(&server, &exp, &admin, &uri), 500, "about:blank");
}
