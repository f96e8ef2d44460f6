//! `eden-cas put` / `get` end to end: round trips from 0 B to 256 MiB, byte
//! ranges at chunk boundaries, dedup of a second put, and the listing,
//! metadata, grant and delete commands — the real binary as a client against
//! a real server on loopback.

use crate::support::client::*;
use crate::support::server::*;
use eden_cas::chunking::{ChunkerParams, chunk_all};

fn start() -> (Server, Client, tempfile::TempDir) {
    let server = Server::start_with(SERVE_ARGS);
    let client = Client::admin(&server);
    (server, client, tempfile::tempdir().expect("work dir"))
}

#[test]
fn round_trips_small_and_odd_sizes() {
    let (server, client, dir) = start();
    let sizes = [
        0usize,
        1,
        16 * 1024 - 1,
        64 * 1024,
        256 * 1024 + 1,
        (3 << 20) + 12_345,
    ];
    for n in sizes {
        let (path, data) = random_file(dir.path(), &format!("in-{n}"), n);
        let put = client.put(&server, &path);
        assert_eq!(num(&put, "size_bytes"), n as u64, "{put}");
        let id = put["id"].as_str().expect("id").to_string();
        assert_eq!(put["uri"], format!("eden://artifacts/{id}"));
        assert!(
            num(&put, "bytes_sent") >= n as u64,
            "a first put sends everything: {put}"
        );
        assert_eq!(
            put["digests"]["blake3"],
            format!("blake3:{}", blake3::hash(&data)),
            "{put}"
        );
        let out = dir.path().join(format!("out-{n}"));
        client.get_to(&server, put["uri"].as_str().unwrap(), &out);
        assert_eq!(std::fs::read(&out).unwrap(), data, "size {n}");
        // `-o -` streams to stdout.
        let o = client.run(&server, &["get", &id, "-o", "-"]);
        assert_ok(&o, &["get", "-o", "-"]);
        assert_eq!(o.stdout, data);
    }
    // No partial files are left next to the outputs.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn second_put_of_same_content_sends_almost_nothing() {
    let (server, client, dir) = start();
    let (path, _) = random_file(dir.path(), "a", 4 << 20);
    let first = client.put(&server, &path);
    let second = client.put(&server, &path);
    assert_ne!(first["id"], second["id"], "each put mints an id");
    assert_eq!(num(&second, "chunks_sent"), 0, "{second}");
    assert_eq!(num(&second, "bytes_skipped"), 4 << 20);
    assert!(num(&second, "bytes_sent") < 64 * 1024, "{second}");
    assert_eq!(second["resumed"], false);
    // The human summary: URI on stdout, savings on stderr.
    let out = client.run(&server, &["put", path_str(&path)]);
    assert_ok(&out, &["put"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.trim().starts_with("eden://artifacts/"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("saved 4.00 MiB (100.0 %)"), "{stderr}");
}

#[test]
fn ranges_at_chunk_boundaries() {
    let (server, client, dir) = start();
    let (path, data) = random_file(dir.path(), "r", (2 << 20) + 777);
    let id = client.put(&server, &path)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let cuts = chunk_all(ChunkerParams::default(), &data).unwrap();
    let n = data.len();
    let mut ranges: Vec<(String, std::ops::Range<usize>)> = vec![
        (format!("0-{}", n - 1), 0..n),
        ("0-0".into(), 0..1),
        (format!("{}-", n - 1), n - 1..n),
        ("-1".into(), n - 1..n),
        (format!("-{n}"), 0..n),
        (format!("0-{}", n + 1000), 0..n),
    ];
    for &(off, _) in cuts.iter().skip(1).take(4) {
        ranges.push((format!("{}-{}", off - 1, off), off - 1..off + 1));
        ranges.push((format!("{off}-{off}"), off..off + 1));
        ranges.push((format!("0-{}", off - 1), 0..off));
        ranges.push((format!("{off}-"), off..n));
    }
    let (a, len) = cuts[2];
    ranges.push((format!("{a}-{}", a + len - 1), a..a + len));
    ranges.push((format!("{}-{}", a - 5, a + len + 4), a - 5..a + len + 5));
    for (spec, want) in ranges {
        let out = dir.path().join("range.out");
        let args = ["get", &id, "--range", &spec, "-o", path_str(&out), "--json"];
        let o = client.run(&server, &args);
        assert_ok(&o, &args);
        let got = std::fs::read(&out).unwrap();
        assert_eq!(got.len(), want.len(), "range {spec}");
        assert!(got == data[want.clone()], "range {spec} bytes differ");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["verified"], false, "a range is not digest-checked");
    }
    // Unsatisfiable → 416, a refusal.
    let o = client.run(
        &server,
        &["get", &id, "--range", &format!("{n}-"), "-o", "-"],
    );
    let msg = assert_exit(&o, 2);
    assert!(msg.contains("416"), "{msg}");
    // Malformed → usage error.
    let o = client.run(&server, &["get", &id, "--range", "9-3", "-o", "-"]);
    assert_exit(&o, 1);
}

#[test]
fn round_trip_256_mib() {
    let (server, client, dir) = start();
    let n = 256usize << 20;
    let (path, data) = random_file(dir.path(), "big", n);
    drop(data);
    let put = client.put(&server, &path);
    assert_eq!(num(&put, "size_bytes"), n as u64);
    let out = dir.path().join("big.out");
    client.get_to(&server, put["id"].as_str().unwrap(), &out);
    assert_eq!(file_blake3(&out), file_blake3(&path));
    let v = client.json(&server, &["verify", put["id"].as_str().unwrap()]);
    assert_eq!(v["ok"], true, "{v}");
}

#[test]
fn ls_stat_grant_rm() {
    let server = Server::start_with(SERVE_ARGS);
    let exp = exp_id();
    let (w1, b1) = register_worker(&server, &exp);
    let (w2, b2) = register_worker(&server, &exp);
    let c1 = Client::with(exp.clone(), b1);
    let c2 = Client::with(exp.clone(), b2);
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let (p, _) = random_file(dir.path(), &format!("f{i}.bin"), 1000 + i);
        ids.push(c1.put(&server, &p)["id"].as_str().unwrap().to_string());
    }
    // Listing pages through next_cursor.
    let listed = c1.json(&server, &["ls", "--page-size", "2"]);
    let got: Vec<&str> = listed["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.reverse();
    assert_eq!(got, want, "newest first, all pages");
    let limited = c1.json(&server, &["ls", "--limit", "2", "--page-size", "1"]);
    assert_eq!(limited["artifacts"].as_array().unwrap().len(), 2);
    let by = c1.json(&server, &["ls", "--created-by", &w2]);
    assert!(by["artifacts"].as_array().unwrap().is_empty());
    let text = c1.run(&server, &["ls"]);
    assert_ok(&text, &["ls"]);
    assert_eq!(String::from_utf8_lossy(&text.stdout).lines().count(), 3);

    let stat = c1.json(&server, &["stat", &ids[0]]);
    assert_eq!(stat["filename"], "f0.bin");
    assert_eq!(stat["created_by"], w1);
    assert_eq!(num(&stat, "size_bytes"), 1000);

    // w2 cannot read until granted; a refusal is exit code 2.
    let o = c2.run(&server, &["get", &ids[0], "-o", "-"]);
    assert!(assert_exit(&o, 2).contains("403"));
    let g = c1.json(&server, &["grant", &ids[0], &w2]);
    assert_eq!(g["grants"], serde_json::json!([w2]));
    assert_ok(&c2.run(&server, &["get", &ids[0], "-o", "-"]), &["get"]);
    c1.json(&server, &["grant", "--revoke", &ids[0], &w2]);
    assert_exit(&c2.run(&server, &["get", &ids[0], "-o", "-"]), 2);

    let rm = c1.json(&server, &["rm", &format!("eden://artifacts/{}", ids[1])]);
    assert_eq!(rm["deleted"], true);
    let o = c1.run(&server, &["stat", &ids[1]]);
    assert!(assert_exit(&o, 2).contains("404"));
}

#[test]
fn exit_codes_and_messages() {
    let (server, client, dir) = start();
    let (path, _) = random_file(dir.path(), "f", 10);
    let ghost = "0123456789abcdef0123456789abcdef";
    // Usage errors: 1.
    assert_exit(&client.run(&server, &["get", "not-an-id", "-o", "-"]), 1);
    assert_exit(&client.run(&server, &["put", "/nonexistent/file"]), 1);
    let o = client.run(&server, &["get", "--bogus-flag"]);
    assert_eq!(o.status.code(), Some(1), "clap usage errors exit 1");
    let o = client
        .cmd(&server, &["stat", ghost])
        .env_remove("EDEN_CAS_TOKEN")
        .output()
        .unwrap();
    assert!(assert_exit(&o, 1).contains("EDEN_CAS_TOKEN"));
    // Refusals (4xx): 2, with the problem detail.
    let o = client.run(&server, &["stat", ghost]);
    assert!(assert_exit(&o, 2).starts_with("eden-cas: 404 not-found"));
    let bad = Client::with(client.exp.clone(), "admin:wrong".into());
    let o = bad.run(&server, &["put", path_str(&path)]);
    assert!(assert_exit(&o, 2).contains("401"));
    // Nothing listening: 3.
    let o = client
        .cmd(&server, &["stat", ghost])
        .env("EDEN_CAS_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert!(assert_exit(&o, 3).contains("cannot reach the server"));
    // The token never shows up in output, even on failure.
    let secret = server.admin_token().to_string();
    for out in [
        client.run(&server, &["stat", ghost]),
        client.run(&server, &["put", "--help"]),
    ] {
        assert!(!String::from_utf8_lossy(&out.stderr).contains(&secret));
        assert!(!String::from_utf8_lossy(&out.stdout).contains(&secret));
    }
}
