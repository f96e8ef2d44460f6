//! Named references over real HTTP (issue 15): compare-and-swap
//! (create-only, `If-Match`, 412/428), get with `ETag`, history, listing by
//! prefix with cursors, delete, racing setters, a hostile principal that
//! must learn nothing about names it cannot see, references to deleted or
//! expired artifacts, reference TTL and TTL protection of targets with GC
//! (cache keys and labels: `refs_cache.rs`).

use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::Response;
use serde_json::{Value, json};

use crate::support::server::*;
use crate::support::v1;

pub(crate) const PF: &str = "eden-cas://error/precondition-failed";
const PR: &str = "eden-cas://error/precondition-required";

/// `PUT …/refs/{name}` with a condition header (`("If-Match", "\"id\"")`).
fn put_ref(
    server: &Server,
    exp: &str,
    bearer: &str,
    name: &str,
    cond: Option<(&str, &str)>,
    body: &Value,
) -> Response {
    let mut rb = v1::req(server, Method::PUT, exp, &format!("/refs/{name}"), bearer)
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(body).expect("json"));
    if let Some((h, v)) = cond {
        rb = rb.header(h, v);
    }
    send(rb)
}

fn create(server: &Server, exp: &str, bearer: &str, name: &str, target: &str) -> Response {
    put_ref(
        server,
        exp,
        bearer,
        name,
        Some(("If-None-Match", "*")),
        &json!({ "target": target }),
    )
}

fn swap(server: &Server, exp: &str, bearer: &str, name: &str, from: &str, to: &str) -> Response {
    put_ref(
        server,
        exp,
        bearer,
        name,
        Some(("If-Match", &format!("\"{from}\""))),
        &json!({ "target": to }),
    )
}

/// A named request about a reference name.
type Probe<'a> = (&'static str, Box<dyn Fn(&str) -> Response + 'a>);

pub(crate) fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

fn deposit(server: &Server, exp: &str, bearer: &str) -> String {
    id_of(&v1::deposit_ok(server, exp, bearer, &random_bytes(300)))
}

/// Status and body of an answer, with `instance` (the URL) removed so two
/// answers about different names can be compared whole.
fn answer(resp: Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().expect("body");
    let mut body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if let Some(o) = body.as_object_mut() {
        o.remove("instance");
    }
    (status, body)
}

fn history(server: &Server, exp: &str, bearer: &str, name: &str) -> Vec<(Value, Value)> {
    let v = expect_json(
        v1::get(server, exp, &format!("/ref-history/{name}"), bearer),
        200,
    );
    v["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| (c["from"].clone(), c["to"].clone()))
        .collect()
}

fn names(page: &Value) -> Vec<String> {
    page["refs"]
        .as_array()
        .expect("refs")
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_string())
        .collect()
}

#[test]
fn set_get_swap_history_and_delete() {
    let server = Server::start();
    let exp = exp_id();
    let (wa, a) = register_worker(&server, &exp);
    let (x, y) = (deposit(&server, &exp, &a), deposit(&server, &exp, &a));
    let name = "runs/r17/latest";

    let resp = create(&server, &exp, &a, name, &x);
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(header(&resp, "etag"), format!("\"{x}\""));
    let r = expect_json(resp, 201);
    assert_eq!(
        (r["name"].as_str(), r["target"].as_str()),
        (Some(name), Some(x.as_str()))
    );
    assert_eq!(r["artifact"]["id"], Value::from(x.clone()));
    assert_eq!(r["created_by"], Value::from(wa.clone()));

    // Create-only again, a stale If-Match, no condition: refused, unchanged.
    v1::assert_problem(create(&server, &exp, &a, name, &y), 412, PF);
    v1::assert_problem(swap(&server, &exp, &a, name, &y, &y), 412, PF);
    let bare = put_ref(&server, &exp, &a, name, None, &json!({ "target": y }));
    v1::assert_problem(bare, 428, PR);
    // The current target swaps it.
    let resp = swap(&server, &exp, &a, name, &x, &y);
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(header(&resp, "etag"), format!("\"{y}\""));
    let got = v1::get(&server, &exp, &format!("/refs/{name}"), &a);
    assert_eq!(header(&got, "etag"), format!("\"{y}\""));
    let got = expect_json(got, 200);
    assert_eq!(got["target"], Value::from(y.clone()));
    assert_eq!(got["artifact"]["size_bytes"], Value::from(300));
    // `If-Match: *` moves whatever it points at; `/` may come as %2F.
    let resp = put_ref(
        &server,
        &exp,
        &a,
        "runs%2Fr17%2Flatest",
        Some(("If-Match", "*")),
        &json!({ "target": x }),
    );
    assert_eq!(resp.status().as_u16(), 200);

    assert_eq!(
        history(&server, &exp, &a, name),
        vec![
            (Value::from(y.clone()), Value::from(x.clone())),
            (Value::from(x.clone()), Value::from(y.clone())),
            (Value::Null, Value::from(x.clone())),
        ]
    );

    // Malformed names: 422 to set, 404 to read.
    // (`..` segments never reach the server: URL clients resolve them.)
    let bad = create(&server, &exp, &a, "a%20b", &x);
    v1::assert_problem(bad, 422, "eden://error/invalid-name");
    v1::assert_problem(
        v1::get(&server, &exp, "/refs/a//b", &a),
        404,
        "eden://error/not-found",
    );

    // Delete with a stale If-Match is refused; then deleted, history gone.
    let stale = send(
        v1::req(&server, Method::DELETE, &exp, &format!("/refs/{name}"), &a)
            .header("If-Match", format!("\"{y}\"")),
    );
    v1::assert_problem(stale, 412, PF);
    assert_eq!(
        v1::delete(&server, &exp, &format!("/refs/{name}"), &a)
            .status()
            .as_u16(),
        204
    );
    for path in [format!("/refs/{name}"), format!("/ref-history/{name}")] {
        v1::assert_problem(
            v1::get(&server, &exp, &path, &a),
            404,
            "eden://error/not-found",
        );
    }
    // A new life of the name starts a new history.
    assert_eq!(create(&server, &exp, &a, name, &y).status().as_u16(), 201);
    assert_eq!(
        history(&server, &exp, &a, name),
        vec![(Value::Null, Value::from(y))]
    );
}

#[test]
fn racing_setters_one_winner_per_round_and_a_complete_history() {
    let server = Server::start();
    let exp = exp_id();
    let admin = server.admin_bearer();
    const SETTERS: usize = 4;
    const ROUNDS: usize = 5;
    let targets: Vec<Vec<String>> = (0..ROUNDS)
        .map(|_| {
            (0..SETTERS)
                .map(|_| deposit(&server, &exp, &admin))
                .collect()
        })
        .collect();
    let first = deposit(&server, &exp, &admin);
    assert_eq!(
        create(&server, &exp, &admin, "race", &first)
            .status()
            .as_u16(),
        201
    );
    let mut current = first.clone();
    let mut chain = vec![first];
    for round in &targets {
        let barrier = std::sync::Barrier::new(SETTERS);
        let outcomes: Vec<(String, u16)> = std::thread::scope(|s| {
            let handles: Vec<_> = round
                .iter()
                .map(|t| {
                    let (server, exp, admin, current, barrier) =
                        (&server, &exp, &admin, &current, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let st = swap(server, exp, admin, "race", current, t)
                            .status()
                            .as_u16();
                        (t.clone(), st)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("setter"))
                .collect()
        });
        let winners: Vec<&String> = outcomes
            .iter()
            .filter(|(_, st)| *st == 200)
            .map(|(t, _)| t)
            .collect();
        assert_eq!(winners.len(), 1, "{outcomes:?}");
        assert!(
            outcomes.iter().all(|(_, st)| *st == 200 || *st == 412),
            "{outcomes:?}"
        );
        current = winners[0].clone();
        chain.push(current.clone());
        let got = expect_json(v1::get(&server, &exp, "/refs/race", &admin), 200);
        assert_eq!(got["target"], Value::from(current.clone()));
    }
    // Newest first: each entry's `from` is the next one's `to`.
    let h = history(&server, &exp, &admin, "race");
    assert_eq!(h.len(), ROUNDS + 1);
    let tos: Vec<Value> = h.iter().rev().map(|(_, to)| to.clone()).collect();
    assert_eq!(
        tos,
        chain
            .iter()
            .map(|c| Value::from(c.clone()))
            .collect::<Vec<_>>()
    );
    for w in h.windows(2) {
        assert_eq!(w[0].0, w[1].1);
    }
}

/// A worker without a grant learns nothing about another's reference:
/// every answer about it equals the answer about a name that never
/// existed, and listings and cursors pass over it.
#[test]
fn a_foreign_principal_cannot_tell_a_hidden_name_from_none() {
    let server = Server::start();
    let exp = exp_id();
    let (_, a) = register_worker(&server, &exp);
    let (wb, b) = register_worker(&server, &exp);
    let secret = deposit(&server, &exp, &a);
    let own = deposit(&server, &exp, &b);
    assert_eq!(
        create(&server, &exp, &a, "team/secret", &secret)
            .status()
            .as_u16(),
        201
    );
    for n in ["team/a", "team/c", "team/e"] {
        assert_eq!(create(&server, &exp, &b, n, &own).status().as_u16(), 201);
    }
    for n in ["team/b", "team/d", "team/f"] {
        assert_eq!(create(&server, &exp, &a, n, &secret).status().as_u16(), 201);
    }

    let hidden = "team/secret";
    let never = "team/never";
    let probes: Vec<Probe<'_>> = vec![
        (
            "get",
            Box::new(|n| v1::get(&server, &exp, &format!("/refs/{n}"), &b)),
        ),
        (
            "history",
            Box::new(|n| v1::get(&server, &exp, &format!("/ref-history/{n}"), &b)),
        ),
        (
            "delete",
            Box::new(|n| v1::delete(&server, &exp, &format!("/refs/{n}"), &b)),
        ),
        // A swap naming the real target, and one naming any target.
        (
            "swap-real",
            Box::new(|n| swap(&server, &exp, &b, n, &secret, &own)),
        ),
        (
            "swap-star",
            Box::new(|n| {
                put_ref(
                    &server,
                    &exp,
                    &b,
                    n,
                    Some(("If-Match", "*")),
                    &json!({ "target": own }),
                )
            }),
        ),
    ];
    for (what, probe) in &probes {
        let (h, n) = (answer(probe(hidden)), answer(probe(never)));
        assert_eq!(h, n, "{what}: hidden {h:?} vs never {n:?}");
        assert!(h.0 == 404 || h.0 == 412, "{what}: {h:?}");
    }
    // B cannot point a name at A's artifact, hidden name or not: the answer
    // is about the target.
    let (h, n) = (
        answer(swap(&server, &exp, &b, hidden, &secret, &secret)),
        answer(swap(&server, &exp, &b, never, &secret, &secret)),
    );
    assert_eq!(h, n);
    assert_eq!(h.0, 403);

    // Listing: only B's names, full pages, cursors naming B's names only.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/refs?prefix=team/&limit=1&cursor={c}"),
            None => "/refs?prefix=team/&limit=1".into(),
        };
        let page = expect_json(v1::get(&server, &exp, &q, &b), 200);
        let got = names(&page);
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(got.len(), 1, "a page before the end is full");
                assert_eq!(c, got[0], "the cursor names the page's last item");
                cursor = Some(c.to_string());
            }
            None => {
                walked.extend(got);
                break;
            }
        }
        walked.extend(got);
    }
    assert_eq!(walked, ["team/a", "team/c", "team/e"]);
    let none = expect_json(v1::get(&server, &exp, "/refs?prefix=team/s", &b), 200);
    assert_eq!(none, json!({ "next_cursor": null, "refs": [] }));

    // The one signal left (documented): a create-only set of a name a live
    // hidden reference holds fails, with the generic 412 and nothing of it.
    let taken = v1::assert_problem(create(&server, &exp, &b, hidden, &own), 412, PF);
    let text = taken.to_string();
    assert!(!text.contains(&secret) && !text.contains("wkr_"), "{text}");

    // Once A grants B the target, B sees the name and its history.
    assert_eq!(
        v1::grant(&server, &exp, &a, &secret, &wb).status().as_u16(),
        200
    );
    let seen = expect_json(v1::get(&server, &exp, &format!("/refs/{hidden}"), &b), 200);
    assert_eq!(seen["target"], Value::from(secret.clone()));
    // Seeing is not managing: B may not move or delete it.
    v1::assert_problem(
        swap(&server, &exp, &b, hidden, &secret, &own),
        403,
        "eden://error/forbidden",
    );
    v1::assert_problem(
        v1::delete(&server, &exp, &format!("/refs/{hidden}"), &b),
        403,
        "eden://error/forbidden",
    );
}

#[test]
fn grants_on_a_reference_and_redacted_history() {
    let server = Server::start();
    let exp = exp_id();
    let (_, a) = register_worker(&server, &exp);
    let (wb, b) = register_worker(&server, &exp);
    let private = deposit(&server, &exp, &a);
    let shared = deposit(&server, &exp, &a);
    assert_eq!(
        v1::grant(&server, &exp, &a, &shared, &wb).status().as_u16(),
        200
    );
    let body = json!({ "target": private, "grants": [wb] });
    let resp = put_ref(&server, &exp, &a, "m", Some(("If-None-Match", "*")), &body);
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(
        swap(&server, &exp, &a, "m", &private, &shared)
            .status()
            .as_u16(),
        200
    );
    // B sees it (it reads the target), and the old private target is hidden.
    assert_eq!(
        history(&server, &exp, &b, "m"),
        vec![
            (Value::Null, Value::from(shared.clone())),
            (Value::Null, Value::Null)
        ]
    );
    // B, a grantee of the reference, may move it to something it reads,
    // but not change its grants.
    let own = deposit(&server, &exp, &b);
    let regrant = json!({ "target": own, "grants": [] });
    let resp = put_ref(
        &server,
        &exp,
        &b,
        "m",
        Some(("If-Match", &format!("\"{shared}\""))),
        &regrant,
    );
    v1::assert_problem(resp, 403, "eden://error/forbidden");
    assert_eq!(
        swap(&server, &exp, &b, "m", &shared, &own)
            .status()
            .as_u16(),
        200
    );
}

#[test]
fn a_reference_to_a_deleted_artifact_answers_as_absent_and_can_be_recreated() {
    let server = Server::start();
    let exp = exp_id();
    let admin = server.admin_bearer();
    let (_, a) = register_worker(&server, &exp);
    let x = deposit(&server, &exp, &a);
    assert_eq!(create(&server, &exp, &a, "d", &x).status().as_u16(), 201);
    assert_eq!(
        v1::delete(&server, &exp, &format!("/artifacts/{x}"), &a)
            .status()
            .as_u16(),
        204
    );
    for who in [&a, &admin] {
        v1::assert_problem(
            v1::get(&server, &exp, "/refs/d", who),
            404,
            "eden://error/not-found",
        );
        let page = expect_json(v1::get(&server, &exp, "/refs", who), 200);
        assert!(names(&page).is_empty());
    }
    let y = deposit(&server, &exp, &a);
    assert_eq!(create(&server, &exp, &a, "d", &y).status().as_u16(), 201);
    assert_eq!(
        history(&server, &exp, &a, "d"),
        vec![(Value::Null, Value::from(y))]
    );
}

#[test]
fn reference_ttl_and_target_protection_through_gc() {
    let server = Server::start();
    let exp = exp_id();
    let admin = server.admin_bearer();
    // A target that expires in 1 s, held by a reference.
    let data = random_bytes(5000);
    let resp = send(
        v1::req(&server, Method::POST, &exp, "/artifacts", &admin)
            .header("X-Eden-Expires-In", "1s")
            .header("X-Eden-Ref", "held")
            .header("X-Eden-Ref-If-None-Match", "*")
            .body(data.clone()),
    );
    let held = id_of(&expect_json(resp, 201));
    // A reference that expires in 1 s, pointing at a target without expiry.
    let other = deposit(&server, &exp, &admin);
    let body = json!({ "target": other, "expires_in": "1s" });
    let resp = put_ref(
        &server,
        &exp,
        &admin,
        "short",
        Some(("If-None-Match", "*")),
        &body,
    );
    assert!(expect_json(resp, 201)["expires_at"].is_string());
    std::thread::sleep(Duration::from_millis(2100));
    let gc = send(
        server
            .client()
            .post(format!("{}/cas/v1/admin/gc", server.base_url()))
            .header("Authorization", format!("Bearer {admin}")),
    );
    assert_eq!(gc.status().as_u16(), 200);
    // The held target outlived its own expiry, byte for byte.
    assert_eq!(
        v1::fetch_bytes(&server, &exp, &admin, &held, None, 200),
        data
    );
    let r = expect_json(v1::get(&server, &exp, "/refs/held", &admin), 200);
    assert_eq!(r["target"], Value::from(held.clone()));
    // The expired reference is gone, and its name free again.
    v1::assert_problem(
        v1::get(&server, &exp, "/refs/short", &admin),
        404,
        "eden://error/not-found",
    );
    assert_eq!(
        create(&server, &exp, &admin, "short", &other)
            .status()
            .as_u16(),
        201
    );
    // Released, the target expires at the next GC.
    assert_eq!(
        v1::delete(&server, &exp, "/refs/held", &admin)
            .status()
            .as_u16(),
        204
    );
    let gc = send(
        server
            .client()
            .post(format!("{}/cas/v1/admin/gc", server.base_url()))
            .header("Authorization", format!("Bearer {admin}")),
    );
    assert_eq!(gc.status().as_u16(), 200);
    v1::assert_problem(
        v1::get(&server, &exp, &format!("/artifacts/{held}/meta"), &admin),
        404,
        "eden://error/not-found",
    );
}
