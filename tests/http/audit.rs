//! The audit log through the real binary (`docs/operations/audit.md`):
//! every action over `/v0` and `/cas/v1` appears once, in order, with its
//! principal, artifact and BLAKE3; `GET /cas/v1/admin/audit` is for the
//! deployment admin only; `eden-cas audit export` reads the same log from
//! the blob store; SIGKILL loses at most the unflushed batch and never
//! reorders; a graceful stop loses nothing.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::server::*;
use crate::support::v1;

fn audit_get(server: &Server, bearer: Option<&str>, query: &str) -> reqwest::blocking::Response {
    let mut rb = server
        .client()
        .get(format!("{}/cas/v1/admin/audit{query}", server.base_url()));
    if let Some(b) = bearer {
        rb = rb.header("Authorization", format!("Bearer {b}"));
    }
    send(rb)
}

/// The exported log as JSON values (admin).
fn log(server: &Server, query: &str) -> Vec<Value> {
    let resp = audit_get(server, Some(&server.admin_bearer()), query);
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(header(&resp, "content-type"), "application/x-ndjson");
    lines(&resp.text().unwrap())
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn kind(e: &Value) -> &str {
    e["kind"].as_str().unwrap()
}

fn seqs(events: &[&Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[test]
fn every_action_on_both_surfaces_is_recorded_once_in_order() {
    let server = Server::start();
    let exp = exp_id();
    let admin = server.admin_bearer();

    let (wid, _) = register_worker(&server, &exp);
    let re = expect_json(
        server.post_json(
            &exp,
            &format!("/workers/{wid}/reissue-credential"),
            &admin,
            &json!({}),
        ),
        200,
    );
    let worker = format!("{wid}:{}", re["registration_token"].as_str().unwrap());
    let g = create_group(&server, &exp, Some("readers"), &[&wid]);
    let gid = g["group_id"].as_str().unwrap().to_string();
    let ghost = ghost_id("wkr");
    expect_json(
        server.post_json(
            &exp,
            &format!("/groups/{gid}/members"),
            &admin,
            &json!({"member_id": ghost}),
        ),
        200,
    );
    expect_json(
        server.delete(&exp, &format!("/groups/{gid}/members/{ghost}"), &admin),
        200,
    );
    assert_eq!(
        server
            .delete(&exp, &format!("/groups/{gid}"), &admin)
            .status()
            .as_u16(),
        204
    );

    // v0: deposit and fetch by the worker.
    let a_bytes = random_bytes(70_000);
    let a_uri = deposit_ok(&server, &exp, &worker, &a_bytes, "application/octet-stream");
    let a = artifact_id(&a_uri).to_string();
    assert_eq!(
        fetch(&server, &exp, &worker, &a_uri)
            .bytes()
            .unwrap()
            .to_vec(),
        a_bytes
    );
    // v1: grant and revoke, a ranged read, a delete; an expiring deposit.
    expect_json(
        v1::post_json(
            &server,
            &exp,
            &format!("/artifacts/{a}/grants"),
            &worker,
            &json!({"principal": ghost}),
        ),
        200,
    );
    expect_json(
        v1::delete(
            &server,
            &exp,
            &format!("/artifacts/{a}/grants/{ghost}"),
            &worker,
        ),
        200,
    );
    let b_bytes = random_bytes(5_000);
    let b = v1::deposit_ok(&server, &exp, &admin, &b_bytes)["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        v1::fetch_bytes(&server, &exp, &worker, &a, Some("bytes=10-19"), 206),
        a_bytes[10..20]
    );
    assert_eq!(
        v1::delete(&server, &exp, &format!("/artifacts/{b}"), &admin)
            .status()
            .as_u16(),
        204
    );
    let c_bytes = random_bytes(3_000);
    let c = expect_json(
        send(
            v1::req(&server, Method::POST, &exp, "/artifacts", &admin)
                .header("Content-Type", "application/octet-stream")
                .header("X-Eden-Expires-In", "1s")
                .body(c_bytes.clone()),
        ),
        201,
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(1500));
    let gc = send(
        server
            .client()
            .post(format!("{}/cas/v1/admin/gc", server.base_url()))
            .header("Authorization", format!("Bearer {admin}")),
    );
    assert_eq!(expect_json(gc, 200)["artifacts_expired"], 1);

    let events = log(&server, "");
    let got: Vec<(&str, &str, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                kind(e),
                e["principal"].as_str().unwrap(),
                e["artifact"].as_str(),
            )
        })
        .collect();
    let (w, ad) = (wid.as_str(), "admin");
    assert_eq!(
        got,
        vec![
            ("register-worker", ad, None),
            ("reissue-credential", ad, None),
            ("create-group", ad, None),
            ("add-member", ad, None),
            ("remove-member", ad, None),
            ("delete-group", ad, None),
            ("deposit", w, Some(a.as_str())),
            ("read", w, Some(a.as_str())),
            ("grant", w, Some(a.as_str())),
            ("revoke", w, Some(a.as_str())),
            ("deposit", ad, Some(b.as_str())),
            ("read", w, Some(a.as_str())),
            ("delete", ad, Some(b.as_str())),
            ("deposit", ad, Some(c.as_str())),
            ("expire", "gc", Some(c.as_str())),
        ]
    );
    let all: Vec<&Value> = events.iter().collect();
    assert_eq!(seqs(&all), (1..=15).collect::<Vec<u64>>());
    assert!(events.iter().all(|e| e["run"] == events[0]["run"]));
    assert!(
        events
            .iter()
            .all(|e| e["experiment"] == exp.as_str() && is_timestamp(e["time"].as_str().unwrap()))
    );
    let b3 = |bytes: &[u8]| v1::b3(bytes);
    for e in &events {
        match e["artifact"].as_str() {
            Some(id) if id == a => assert_eq!(e["blake3"], b3(&a_bytes)),
            Some(id) if id == b => assert_eq!(e["blake3"], b3(&b_bytes)),
            Some(_) => assert_eq!(e["blake3"], b3(&c_bytes)),
            None => assert!(e.get("blake3").is_none()),
        }
    }
    assert_eq!(events[7]["range"], json!([0, 70_000]));
    assert_eq!(events[11]["range"], json!([10, 20]));
    assert_eq!(events[8]["grantee"], ghost.as_str());
    assert_eq!(events[2]["members"], json!([wid]));
    assert_eq!(events[6]["size"], 70_000);
    // The token never appears.
    let token = worker.split(':').nth(1).unwrap();
    let raw = audit_get(&server, Some(&admin), "").text().unwrap();
    assert!(!raw.contains(token) && !raw.contains(server.admin_token()));

    // Filters: another experiment, a time to come, a duration back.
    assert!(log(&server, &format!("?experiment={}", exp_id())).is_empty());
    assert!(log(&server, "?since=2200-01-01T00:00:00Z").is_empty());
    assert_eq!(
        log(&server, &format!("?since=1h&experiment={exp}")).len(),
        15
    );
    let bad = audit_get(&server, Some(&admin), "?since=soon");
    v1::assert_problem(bad, 400, "eden://error/bad-request");

    // The CLI reads the same log from the blob store, beside the server.
    let out = Command::new(env!("CARGO_BIN_EXE_eden-cas"))
        .args([
            "audit",
            "export",
            "--experiment",
            &exp,
            "--since",
            "1h",
            "--data-dir",
        ])
        .arg(server.data_dir())
        .env_remove("EDEN_CAS_BLOB_STORE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(lines(&String::from_utf8(out.stdout).unwrap()), events);
}

#[test]
fn the_audit_route_is_for_the_deployment_admin_only() {
    let server = Server::start();
    let exp = exp_id();
    let (_, worker) = register_worker(&server, &exp);
    assert_eq!(audit_get(&server, None, "").status().as_u16(), 401);
    assert_eq!(
        audit_get(&server, Some("admin:wrong-token-0123456789"), "")
            .status()
            .as_u16(),
        401
    );
    v1::assert_problem(
        audit_get(&server, Some(&worker), ""),
        403,
        "eden://error/forbidden",
    );
    let events = log(&server, "");
    assert_eq!(
        events.len(),
        1,
        "refused exports record nothing: {events:?}"
    );
}

/// Events durable in the blob store of `server`, read from its files.
fn durable(server: &Server) -> Vec<Value> {
    let dir = server.data_dir().join("blobs").join("audit");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .flat_map(|p| lines(&std::fs::read_to_string(p).unwrap()))
        .collect()
}

#[test]
fn sigkill_loses_at_most_the_unflushed_batch_and_never_reorders() {
    let mut server =
        Server::start_with(&["--audit-flush-events", "4", "--audit-flush-interval", "1h"]);
    let exp = exp_id();
    let (_, worker) = register_worker(&server, &exp);
    let uri = deposit_ok(
        &server,
        &exp,
        &worker,
        &random_bytes(1000),
        "application/octet-stream",
    );
    for _ in 0..10 {
        assert_eq!(fetch(&server, &exp, &worker, &uri).status().as_u16(), 200);
    }
    // Three full batches of four: written by the flusher, not by a request.
    let deadline = Instant::now() + Duration::from_secs(20);
    while durable(&server).len() < 12 {
        assert!(
            Instant::now() < deadline,
            "batches not written: {:?}",
            durable(&server)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..3 {
        assert_eq!(fetch(&server, &exp, &worker, &uri).status().as_u16(), 200);
    }
    server.kill9();
    server.restart();

    let events = log(&server, "");
    let run1: Vec<&Value> = events
        .iter()
        .filter(|e| e["run"] == events[0]["run"])
        .collect();
    assert_eq!(run1.len(), events.len(), "the new run recorded nothing yet");
    let k = run1.len() as u64;
    assert!((12..=15).contains(&k), "{k} events kept");
    assert_eq!(
        seqs(&run1),
        (1..=k).collect::<Vec<u64>>(),
        "a prefix, in order"
    );
    assert_eq!(kind(run1[0]), "register-worker");
    assert_eq!(kind(run1[1]), "deposit");
    assert!(run1[2..].iter().all(|e| kind(e) == "read"));

    // A graceful stop writes the open batch: nothing is lost, and the
    // second run follows the first in the export.
    let admin = server.admin_bearer();
    let id = artifact_id(&uri).to_string();
    for _ in 0..2 {
        v1::fetch_bytes(&server, &exp, &admin, &id, None, 200);
    }
    server.stop();
    server.restart();
    let events = log(&server, "");
    assert_eq!(events.len() as u64, k + 2);
    let run2: Vec<&Value> = events[k as usize..].iter().collect();
    assert!(
        run2.iter()
            .all(|e| e["run"] != events[0]["run"] && kind(e) == "read")
    );
    assert_eq!(seqs(&run2), vec![1, 2]);
    assert!(run2.iter().all(|e| e["principal"] == "admin"));
}
