//! `eden-cas put --ref/--label`, `get ref:NAME`, `ls --label` and
//! `ref set|get|ls|rm|log` against a real server: a cache workflow (miss,
//! deposit with the key, hit from a second worker with a grant, a losing
//! second deposit exits 2) and compare-and-swap from the command line.

use crate::support::client::*;
use crate::support::server::*;

#[test]
fn a_cache_key_set_by_put_and_read_by_another_worker() {
    let server = Server::start_with(SERVE_ARGS);
    let exp = exp_id();
    let (_, ta) = register_worker(&server, &exp);
    let (wb, tb) = register_worker(&server, &exp);
    let (a, b) = (Client::with(exp.clone(), ta), Client::with(exp.clone(), tb));
    let dir = tempfile::tempdir().expect("dir");
    let (path, data) = random_file(dir.path(), "result.bin", 300_000);
    let key = "cache/task-k1";
    let target = format!("ref:{key}");

    // Miss: the server refused (404), exit 2.
    let out = dir.path().join("miss.bin");
    assert_exit(&b.run(&server, &["get", &target, "-o", path_str(&out)]), 2);
    // Deposit with the key and a label, in one commit.
    let put = a.json(
        &server,
        &[
            "put",
            path_str(&path),
            "--ref",
            key,
            "--ref-expires-in",
            "1d",
            "--label",
            "kind=cache",
        ],
    );
    let id = put["id"].as_str().expect("id").to_string();
    let st = a.json(&server, &["stat", &id]);
    assert_eq!(st["labels"]["kind"], "cache", "{st}");
    // A second deposit under the same key loses (412): exit 2, nothing recorded.
    let (other, _) = random_file(dir.path(), "other.bin", 1000);
    assert_exit(&b.run(&server, &["put", path_str(&other), "--ref", key]), 2);
    // Hit from the second worker once granted.
    assert_ok(&a.run(&server, &["grant", &id, &wb]), &["grant"]);
    let hit = dir.path().join("hit.bin");
    b.get_to(&server, &target, &hit);
    assert_eq!(std::fs::read(&hit).unwrap(), data);
    let got = b.json(&server, &["ref", "get", key]);
    assert_eq!(got["target"], id.as_str());
    // Labels filter listings.
    let listed = a.json(&server, &["ls", "--label", "kind=cache"]);
    assert_eq!(
        listed["artifacts"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
}

#[test]
fn ref_commands_compare_and_swap() {
    let server = Server::start_with(SERVE_ARGS);
    let c = Client::admin(&server);
    let dir = tempfile::tempdir().expect("dir");
    let (p1, _) = random_file(dir.path(), "one", 1000);
    let (p2, _) = random_file(dir.path(), "two", 1000);
    let x = c.put(&server, &p1)["id"].as_str().unwrap().to_string();
    let y = c.put(&server, &p2)["id"].as_str().unwrap().to_string();
    let name = "runs/r1/latest";
    let set = c.json(&server, &["ref", "set", name, &x, "--create"]);
    assert_eq!(set["target"], x.as_str());
    // Create-only again fails; a stale --if-match fails; a plain set swaps.
    assert_exit(&c.run(&server, &["ref", "set", name, &y, "--create"]), 2);
    assert_exit(
        &c.run(&server, &["ref", "set", name, &y, "--if-match", &y]),
        2,
    );
    let moved = c.json(&server, &["ref", "set", name, &y]);
    assert_eq!(moved["target"], y.as_str());
    let log = c.json(&server, &["ref", "log", name]);
    let changes = log["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["from"], x.as_str());
    let ls = c.json(&server, &["ref", "ls", "runs/"]);
    assert_eq!(ls["refs"].as_array().map(Vec::len), Some(1));
    assert_exit(&c.run(&server, &["ref", "rm", name, "--if-match", &x]), 2);
    assert_ok(&c.run(&server, &["ref", "rm", name]), &["ref", "rm"]);
    assert_exit(&c.run(&server, &["ref", "get", name]), 2);
}
