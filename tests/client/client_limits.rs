//! `eden-cas put` honours the server's limits before sending: a file over
//! the size cap is refused when the session is opened (the claimed size is
//! checked), no chunk is uploaded, no resume file is left (issue 9, §2).

use crate::support::client::*;
use crate::support::server::*;

#[test]
fn put_over_the_cap_is_refused_before_any_chunk_is_sent() {
    let server = Server::start_with(&["--max-artifact-bytes", "4MiB"]);
    let client = Client::admin(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, _) = random_file(dir.path(), "big.bin", 20 << 20);
    let out = client.run(&server, &["put", path_str(&path)]);
    let line = assert_exit(&out, 2);
    assert!(line.contains("413") || line.contains("exceeds"), "{line}");
    let left = std::fs::read_dir(client.state.path())
        .map(|d| d.filter_map(Result::ok).count())
        .unwrap_or(0);
    assert_eq!(left, 0, "no resume file for a refused upload");
    // Nothing reached the store.
    let gc = expect_json(
        send(
            server
                .client()
                .post(format!(
                    "{}/cas/v1/admin/gc?dry_run=true",
                    server.base_url()
                ))
                .header("Authorization", format!("Bearer {}", server.admin_bearer())),
        ),
        200,
    );
    assert_eq!(gc["chunks_indexed"], 0, "{gc}");
    assert_eq!(gc["packs"], 0, "{gc}");
    // Within the cap it still works.
    let (small, _) = random_file(dir.path(), "small.bin", 3 << 20);
    let put = client.put(&server, &small);
    assert_eq!(put["size_bytes"], 3 << 20, "{put}");
}
