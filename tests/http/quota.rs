//! Per-experiment quotas on logical bytes held (issue 9, section 2), over
//! real HTTP against the real binary: deposits and sessions are refused
//! over quota (v1 `quota-exceeded` 507, v0 `payload-too-large` 413), the
//! usage follows commits, abandons, deletes, expiry and restarts, holds
//! under concurrent deposits, and only the admin sees it.

use crate::support::v1;

use std::time::Duration;

use crate::support::server::*;
use serde_json::{Value, json};

const MIB: usize = 1 << 20;
const QUOTA_TYPE: &str = "eden-cas://error/quota-exceeded";

fn quota(server: &Server, exp: &str) -> Value {
    expect_json(v1::get(server, exp, "/quota", &server.admin_bearer()), 200)
}

fn used(server: &Server, exp: &str) -> u64 {
    quota(server, exp)["used_bytes"]
        .as_u64()
        .expect("used_bytes")
}

#[test]
fn deposits_and_sessions_are_held_to_the_quota() {
    let mut server = Server::start_with(&["--default-experiment-quota", "3MiB"]);
    let exp = exp_id();
    let admin = server.admin_bearer();

    let q = quota(&server, &exp);
    assert_eq!(q["quota_bytes"], 3 * MIB);
    assert_eq!(q["used_bytes"], 0);
    assert_eq!(q["experiment"], exp.as_str());

    let first = v1::deposit_ok(&server, &exp, &admin, &v1::noise(2 * MIB, 1));
    assert_eq!(used(&server, &exp), 2 * MIB as u64);
    // The second would pass the quota: refused on both surfaces.
    let r = v1::deposit(&server, &exp, &admin, &v1::noise(2 * MIB, 2), "x/y");
    let p = v1::assert_problem(r, 507, QUOTA_TYPE);
    // The detail names the quota, never what the experiment holds.
    assert!(
        !p["detail"]
            .as_str()
            .unwrap_or("")
            .contains(&(2 * MIB).to_string())
    );
    let r = deposit(&server, &exp, &admin, &v1::noise(2 * MIB, 3), None);
    assert_problem(r, 413, "eden://error/payload-too-large");
    assert_eq!(
        used(&server, &exp),
        2 * MIB as u64,
        "refused deposits hold nothing"
    );

    // Another experiment has its own quota.
    let other = exp_id();
    v1::deposit_ok(&server, &other, &admin, &v1::noise(2 * MIB, 4));
    assert_eq!(used(&server, &other), 2 * MIB as u64);

    // Sessions reserve their claim at creation.
    let r = v1::post_json(&server, &exp, "/uploads", &admin, &json!({"size": 2 * MIB}));
    v1::assert_problem(r, 507, QUOTA_TYPE);
    let sid = v1::create_session(&server, &exp, &admin, &json!({"size": MIB}));
    assert_eq!(quota(&server, &exp)["session_bytes"], MIB);
    assert_eq!(used(&server, &exp), 3 * MIB as u64);
    // Usage survives a restart (rebuilt from the records).
    server.restart();
    assert_eq!(used(&server, &exp), 3 * MIB as u64);
    let r = v1::delete(&server, &exp, &format!("/uploads/{sid}"), &admin);
    assert_eq!(r.status(), 204);
    assert_eq!(used(&server, &exp), 2 * MIB as u64);

    // A committed session counts its artifact, not its claim.
    let data = v1::noise(300_000, 5);
    let chunks = v1::chunks(&data);
    let sid = v1::create_session(&server, &exp, &admin, &json!({"size": MIB}));
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    assert_eq!(
        v1::put_chunks(&server, &exp, &admin, &sid, v1::frames(&refs)).status(),
        200
    );
    let body = v1::commit_body(&chunks, &v1::b3(&data));
    expect_json(v1::commit(&server, &exp, &admin, &sid, &body), 201);
    assert_eq!(used(&server, &exp), 2 * MIB as u64 + 300_000);

    // Delete frees the quota.
    let id = first["id"].as_str().expect("id");
    assert_eq!(
        v1::delete(&server, &exp, &format!("/artifacts/{id}"), &admin).status(),
        204
    );
    assert_eq!(used(&server, &exp), 300_000);
    v1::deposit_ok(&server, &exp, &admin, &v1::noise(2 * MIB, 6));
}

#[test]
fn sessions_without_a_claim_count_what_they_receive() {
    let server = Server::start_with(&["--default-experiment-quota", "1MiB"]);
    let exp = exp_id();
    let admin = server.admin_bearer();
    let data = v1::noise(2 * MIB, 11);
    let chunks = v1::chunks(&data);
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let sid = v1::create_session(&server, &exp, &admin, &json!({}));
    let third = chunks.len() / 3;
    assert_eq!(
        v1::put_chunks(&server, &exp, &admin, &sid, v1::frames(&refs[..third])).status(),
        200
    );
    let held = used(&server, &exp);
    let sent: usize = chunks[..third].iter().map(Vec::len).sum();
    assert_eq!(held, sent as u64);
    let r = v1::put_chunks(&server, &exp, &admin, &sid, v1::frames(&refs[third..]));
    v1::assert_problem(r, 507, QUOTA_TYPE);
    assert_eq!(used(&server, &exp), held, "the refused batch holds nothing");
}

#[test]
fn concurrent_deposits_cannot_overshoot_the_quota() {
    let server = Server::start_with(&["--default-experiment-quota", "3MiB"]);
    let exp = exp_id();
    let admin = server.admin_bearer();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (server, exp, admin) = (&server, &exp, &admin);
                s.spawn(move || {
                    v1::deposit(server, exp, admin, &v1::noise(MIB, 100 + i), "x/y")
                        .status()
                        .as_u16()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let ok = statuses.iter().filter(|&&s| s == 201).count();
    assert!(
        statuses.iter().all(|&s| s == 201 || s == 507),
        "{statuses:?}"
    );
    assert!((1..=3).contains(&ok), "{statuses:?}");
    assert_eq!(used(&server, &exp), (ok * MIB) as u64);
    assert_eq!(quota(&server, &exp)["in_flight_bytes"], 0);
}

#[test]
fn expired_artifacts_stop_counting_once_removed() {
    let server = Server::start_with(&["--default-experiment-quota", "3MiB"]);
    let exp = exp_id();
    let admin = server.admin_bearer();
    let r = send(
        v1::req(&server, reqwest::Method::POST, &exp, "/artifacts", &admin)
            .header("X-Eden-Expires-In", "1s")
            .body(v1::noise(2 * MIB, 31)),
    );
    assert_eq!(r.status(), 201);
    assert_eq!(used(&server, &exp), 2 * MIB as u64);
    std::thread::sleep(Duration::from_millis(2100));
    let gc = send(
        server
            .client()
            .post(format!("{}/cas/v1/admin/gc", server.base_url()))
            .header("Authorization", format!("Bearer {admin}")),
    );
    assert_eq!(gc.status(), 200);
    assert_eq!(used(&server, &exp), 0);
}

#[test]
fn only_the_admin_sees_quotas() {
    let server = Server::start_with(&["--default-experiment-quota", "3MiB"]);
    let exp = exp_id();
    let (_, worker) = register_worker(&server, &exp);
    let r = v1::get(&server, &exp, "/quota", &worker);
    v1::assert_problem(r, 403, "eden://error/forbidden");
    let r = v1::get(&server, &exp, "/quota", "admin:wrong-token-0123456789");
    v1::assert_problem(r, 401, "eden://error/unauthorized");
    let r = send(
        server
            .client()
            .get(format!("{}/cas/v1/admin/inflight", server.base_url()))
            .header("Authorization", format!("Bearer {worker}")),
    );
    assert_eq!(r.status(), 403);
}
