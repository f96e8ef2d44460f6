//! Cache keys and labels over real HTTP (issue 15): a deposit that sets a
//! reference in the same commit (miss, deposit with the key, a second
//! worker losing the race records nothing, a hit once granted), and labels
//! with their listing filter, which only ever narrows readable artifacts.

use reqwest::Method;
use serde_json::{Value, json};

use super::refs::{PF, id_of};
use crate::support::server::*;
use crate::support::v1;

#[test]
fn a_deposit_sets_a_cache_key_in_the_same_commit() {
    let server = Server::start();
    let exp = exp_id();
    let (_, a) = register_worker(&server, &exp);
    let (wb, b) = register_worker(&server, &exp);
    let key = "cache/task-k1";
    // Miss.
    v1::assert_problem(
        v1::get(&server, &exp, &format!("/refs/{key}"), &a),
        404,
        "eden://error/not-found",
    );
    let dep = |bearer: &str, data: &[u8]| {
        send(
            v1::req(&server, Method::POST, &exp, "/artifacts", bearer)
                .header("X-Eden-Ref", key)
                .header("X-Eden-Ref-If-None-Match", "*")
                .header("X-Eden-Ref-Expires-In", "1d")
                .header("X-Eden-Label", "kind=cache, stage=eval")
                .body(data.to_vec()),
        )
    };
    let result = random_bytes(4000);
    let first = expect_json(dep(&a, &result), 201);
    let id = id_of(&first);
    assert_eq!(first["labels"], json!({ "kind": "cache", "stage": "eval" }));
    // A second worker losing the race records nothing.
    let before = v1::listed(&expect_json(
        v1::get(&server, &exp, "/artifacts", &server.admin_bearer()),
        200,
    ));
    v1::assert_problem(dep(&b, &random_bytes(4000)), 412, PF);
    let after = v1::listed(&expect_json(
        v1::get(&server, &exp, "/artifacts", &server.admin_bearer()),
        200,
    ));
    assert_eq!(before, after);
    // Hit from the other worker once granted.
    assert_eq!(
        v1::grant(&server, &exp, &a, &id, &wb).status().as_u16(),
        200
    );
    let hit = expect_json(v1::get(&server, &exp, &format!("/refs/{key}"), &b), 200);
    assert_eq!(hit["target"], Value::from(id.clone()));
    assert!(hit["expires_at"].is_string());
    assert_eq!(v1::fetch_bytes(&server, &exp, &b, &id, None, 200), result);
}

#[test]
fn labels_filter_listings_of_readable_artifacts_only() {
    let server = Server::start();
    let exp = exp_id();
    let (_, a) = register_worker(&server, &exp);
    let (_, b) = register_worker(&server, &exp);
    let labelled = |bearer: &str, labels: &str| {
        let resp = send(
            v1::req(&server, Method::POST, &exp, "/artifacts", bearer)
                .header("X-Eden-Label", labels)
                .body(random_bytes(100)),
        );
        id_of(&expect_json(resp, 201))
    };
    let a_eval = labelled(&a, "stage=eval");
    let _a_train = labelled(&a, "stage=train");
    let b_eval = labelled(&b, "stage=eval");
    let b_eval2 = labelled(&b, "stage=eval,run=r2");
    let q = "/artifacts?label=stage=eval";
    assert_eq!(
        v1::listed(&expect_json(v1::get(&server, &exp, q, &b), 200)),
        [b_eval2.clone(), b_eval.clone()]
    );
    assert_eq!(
        v1::listed(&expect_json(v1::get(&server, &exp, q, &a), 200)),
        std::slice::from_ref(&a_eval)
    );
    let both = "/artifacts?label=stage=eval&label=run=r2";
    assert_eq!(
        v1::listed(&expect_json(v1::get(&server, &exp, both, &b), 200)),
        std::slice::from_ref(&b_eval2)
    );
    // Pages of one walk B's labelled artifacts with cursors naming them.
    let page = expect_json(v1::get(&server, &exp, &format!("{q}&limit=1"), &b), 200);
    assert_eq!(page["next_cursor"], Value::from(b_eval2.clone()));
    // Labels replaced by the depositor; others may not.
    let path = format!("/artifacts/{a_eval}/labels");
    let body = json!({ "labels": { "stage": "done" } });
    let resp = send(
        v1::req(&server, Method::PUT, &exp, &path, &a)
            .header("Content-Type", "application/json")
            .body(body.to_string()),
    );
    assert_eq!(expect_json(resp, 200)["labels"], json!({ "stage": "done" }));
    let resp = send(
        v1::req(
            &server,
            Method::PUT,
            &exp,
            &format!("/artifacts/{b_eval}/labels"),
            &a,
        )
        .header("Content-Type", "application/json")
        .body(body.to_string()),
    );
    assert_eq!(resp.status().as_u16(), 403);
    assert!(v1::listed(&expect_json(v1::get(&server, &exp, q, &a), 200)).is_empty());
    // A malformed label is 400.
    let resp = send(
        v1::req(&server, Method::POST, &exp, "/artifacts", &a)
            .header("X-Eden-Label", "Bad Key=x")
            .body(vec![1u8]),
    );
    v1::assert_problem(resp, 400, "eden://error/bad-request");
}
