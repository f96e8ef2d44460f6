//! EDEN v0 worker registry and whoami (contract §4), driven over HTTP against
//! the real binary. Groups are in `v0_groups.rs`.

use crate::support::server::*;
use reqwest::Method;
use serde_json::{Value, json};

fn setup() -> (Server, String) {
    (Server::start(), exp_id())
}

fn register(server: &Server, exp: &str, body: &Value) -> reqwest::blocking::Response {
    server.post_json(exp, "/workers", &server.admin_bearer(), body)
}

fn whoami(server: &Server, exp: &str, bearer: &str) -> reqwest::blocking::Response {
    server.get(exp, "/whoami", bearer)
}

/// A worker as read or listed: no secret of any kind.
fn assert_public_worker(v: &Value) {
    for k in [
        "registration_token",
        "credential_hash",
        "password",
        "token_hash",
    ] {
        assert!(v.get(k).is_none(), "{k} leaked in {v}");
    }
    assert_no_nulls(v);
}

#[test]
fn register_returns_worker_and_token_which_read_and_list_never_show() {
    let (server, exp) = setup();
    let body = json!({"name": "eric", "labels": {"role": "executor"}});
    let v = expect_json(register(&server, &exp, &body), 200);
    assert_eq!(
        keys(&v),
        [
            "experiment_id",
            "labels",
            "name",
            "registered_at",
            "registered_by",
            "registration_token",
            "worker_id"
        ],
        "{v}"
    );
    let id = v["worker_id"].as_str().unwrap();
    assert!(is_id(id, "wkr"), "{id}");
    assert_eq!(v["experiment_id"], Value::from(exp.as_str()));
    assert_eq!(v["name"], Value::from("eric"));
    assert_eq!(v["registered_by"], Value::from("admin"));
    assert_eq!(v["labels"], json!({"role": "executor"}));
    assert!(is_timestamp(v["registered_at"].as_str().unwrap()), "{v}");
    let token = v["registration_token"].as_str().unwrap();
    assert!(is_lower_hex(token, 64), "{token}");

    let read = expect_json(
        server.get(&exp, &format!("/workers/{id}"), &server.admin_bearer()),
        200,
    );
    assert_public_worker(&read);
    let mut expected = v.clone();
    expected
        .as_object_mut()
        .unwrap()
        .remove("registration_token");
    assert_eq!(read, expected);

    let list = expect_json(server.get(&exp, "/workers", &server.admin_bearer()), 200);
    assert_eq!(keys(&list), ["workers"]);
    for w in list["workers"].as_array().unwrap() {
        assert_public_worker(w);
    }
    assert_eq!(list_ids(&list, "workers", "worker_id"), [id]);
    assert!(
        !server.stderr_tail().contains(token),
        "token appears in the log"
    );
}

#[test]
fn register_empty_body_has_no_name_and_ids_are_fresh() {
    let (server, exp) = setup();
    let a = expect_json(register(&server, &exp, &json!({})), 200);
    assert!(a.get("name").is_none(), "{a}");
    assert_no_nulls(&a);
    assert!(is_timestamp(a["registered_at"].as_str().unwrap()), "{a}");
    let b = expect_json(register(&server, &exp, &json!({"name": "same"})), 200);
    let c = expect_json(register(&server, &exp, &json!({"name": "same"})), 200);
    assert_ne!(b["worker_id"], c["worker_id"]);
    assert_ne!(b["registration_token"], c["registration_token"]);
    assert_ne!(a["worker_id"], b["worker_id"]);
}

#[test]
fn invalid_names_are_422() {
    let (server, exp) = setup();
    let too_long = "\u{e9}".repeat(129);
    for name in [
        "  bad leading whitespace",
        "trailing whitespace ",
        "   ",
        "",
        too_long.as_str(),
        "e\u{301}",    // NFD
        "bell\u{7}",   // Cc
        "pua\u{e000}", // Co
        "unassigned\u{378}",
    ] {
        let resp = register(&server, &exp, &json!({ "name": name }));
        assert_problem(resp, 422, "eden://error/invalid-name");
    }
    // 128 code points (256 bytes) is still fine, and so is a precomposed NFC name.
    let max = "\u{e9}".repeat(128);
    expect_json(register(&server, &exp, &json!({ "name": max })), 200);
    expect_json(
        register(&server, &exp, &json!({ "name": "\u{e9}ric" })),
        200,
    );
}

#[test]
fn reserved_worker_names_are_409_case_sensitively() {
    let (server, exp) = setup();
    for name in ["admin", "system", "internal"] {
        let resp = register(&server, &exp, &json!({ "name": name }));
        assert_problem(resp, 409, "eden://error/reserved-identifier");
    }
    for name in ["Admin", "admins"] {
        let v = expect_json(register(&server, &exp, &json!({ "name": name })), 200);
        assert_eq!(v["name"], Value::from(name));
    }
}

#[test]
fn unknown_body_field_is_400() {
    let (server, exp) = setup();
    let resp = register(&server, &exp, &json!({"worker_id": ghost_id("wkr")}));
    assert_problem(resp, 400, "eden://error/bad-request");
}

#[test]
fn null_or_mistyped_fields_are_400() {
    let (server, exp) = setup();
    for body in [
        json!({"name": null}),
        json!({"labels": null}),
        json!({"name": 5}),
        json!({"labels": {"a": 1}}),
        json!({"labels": ["a"]}),
    ] {
        assert_problem(
            register(&server, &exp, &body),
            400,
            "eden://error/bad-request",
        );
    }
}

#[test]
fn non_json_body_is_400() {
    let (server, exp) = setup();
    let admin = server.admin_bearer();
    for body in [&b"not json"[..], b"[]", b"", b"\"name\""] {
        let resp = send(
            server
                .v0(Method::POST, &exp, "/workers", Some(&admin))
                .body(body.to_vec()),
        );
        assert_problem(resp, 400, "eden://error/bad-request");
    }
}

#[test]
fn list_filters_by_exact_name() {
    let (server, exp) = setup();
    let (a1, _) = register_worker_body(&server, &exp, &json!({"name": "alpha"}));
    let (a2, _) = register_worker_body(&server, &exp, &json!({"name": "alpha"}));
    let (cap, worker) = register_worker_body(&server, &exp, &json!({"name": "Alpha"}));
    let (sp, _) = register_worker_body(&server, &exp, &json!({"name": "alpha beta"}));
    let (anon, _) = register_worker(&server, &exp);
    let all = expect_json(server.get(&exp, "/workers", &worker), 200);
    let mut ids = list_ids(&all, "workers", "worker_id");
    ids.sort();
    let mut want = vec![a1.clone(), a2.clone(), cap.clone(), sp.clone(), anon];
    want.sort();
    assert_eq!(ids, want);

    let mut alpha = list_ids(
        &expect_json(server.get(&exp, "/workers?name=alpha", &worker), 200),
        "workers",
        "worker_id",
    );
    alpha.sort();
    let mut want = vec![a1, a2];
    want.sort();
    assert_eq!(alpha, want);
    let by = |q: &str| {
        list_ids(
            &expect_json(server.get(&exp, &format!("/workers?{q}"), &worker), 200),
            "workers",
            "worker_id",
        )
    };
    assert_eq!(by("name=Alpha"), [cap]);
    assert_eq!(by("name=alpha%20beta"), [sp]);
    assert!(by("name=alph").is_empty());
    assert!(by("name=").is_empty());
}

#[test]
fn read_unknown_or_malformed_worker_is_404() {
    let (server, exp) = setup();
    let ghost = ghost_id("wkr");
    for w in [
        "wkr_00000000000000000000000000",
        ghost.as_str(),
        "nope",
        "grp_00000000000000000000000000",
    ] {
        let resp = server.get(&exp, &format!("/workers/{w}"), &server.admin_bearer());
        assert_problem(resp, 404, "eden://error/not-found");
    }
}

#[test]
fn reissue_returns_a_new_token_and_the_old_one_stops_working() {
    let (server, exp) = setup();
    let first = expect_json(register(&server, &exp, &json!({"name": "re"})), 200);
    let id = first["worker_id"].as_str().unwrap();
    let old = format!("{id}:{}", first["registration_token"].as_str().unwrap());
    expect_json(whoami(&server, &exp, &old), 200);

    let path = format!("/workers/{id}/reissue-credential");
    let v = expect_json(
        server.post_json(&exp, &path, &server.admin_bearer(), &json!({})),
        200,
    );
    assert_eq!(v["worker_id"], first["worker_id"]);
    assert_eq!(v["registered_at"], first["registered_at"]);
    assert_eq!(v["experiment_id"], first["experiment_id"]);
    assert_eq!(v["name"], first["name"]);
    assert_no_nulls(&v);
    let token = v["registration_token"].as_str().unwrap();
    assert_eq!(token.len(), 64);
    assert_ne!(Some(token), first["registration_token"].as_str());

    assert_problem(
        whoami(&server, &exp, &old),
        401,
        "eden://error/unauthorized",
    );
    let new = format!("{id}:{token}");
    assert_eq!(
        expect_json(whoami(&server, &exp, &new), 200),
        json!({"worker_id": id, "name": "re"})
    );
}

#[test]
fn reissue_without_body_but_json_content_type_is_200() {
    let (server, exp) = setup();
    let (id, _) = register_worker(&server, &exp);
    let path = format!("/workers/{id}/reissue-credential");
    let resp = send(server.v0(Method::POST, &exp, &path, Some(&server.admin_bearer())));
    let v = expect_json(resp, 200);
    assert_eq!(v["worker_id"], Value::from(id.as_str()));
    assert!(v["registration_token"].is_string(), "{v}");
}

#[test]
fn reissue_unknown_is_404_and_by_a_worker_is_403() {
    let (server, exp) = setup();
    let (id, bearer) = register_worker(&server, &exp);
    let ghost = format!("/workers/{}/reissue-credential", ghost_id("wkr"));
    assert_problem(
        send(server.v0(Method::POST, &exp, &ghost, Some(&server.admin_bearer()))),
        404,
        "eden://error/not-found",
    );
    let own = format!("/workers/{id}/reissue-credential");
    assert_problem(
        send(server.v0(Method::POST, &exp, &own, Some(&bearer))),
        403,
        "eden://error/forbidden",
    );
}

#[test]
fn whoami_shows_only_id_and_name_and_refuses_admin() {
    let (server, exp) = setup();
    let (anon, anon_b) = register_worker(&server, &exp);
    let (named, named_b) = register_worker_body(
        &server,
        &exp,
        &json!({"name": "eric", "labels": {"a": "b"}}),
    );
    assert_eq!(
        expect_json(whoami(&server, &exp, &anon_b), 200),
        json!({"worker_id": anon})
    );
    assert_eq!(
        expect_json(whoami(&server, &exp, &named_b), 200),
        json!({"worker_id": named, "name": "eric"})
    );
    assert_problem(
        whoami(&server, &exp, &server.admin_bearer()),
        403,
        "eden://error/forbidden",
    );
}

#[test]
fn worker_of_one_experiment_is_unknown_on_another() {
    let server = Server::start();
    let (e1, e2) = (exp_id(), exp_id());
    let (_, bearer) = register_worker(&server, &e1);
    assert_problem(
        whoami(&server, &e2, &bearer),
        401,
        "eden://error/unauthorized",
    );
    assert_problem(
        server.get(&e2, "/workers", &bearer),
        401,
        "eden://error/unauthorized",
    );
}

#[test]
fn worker_may_not_register_workers_or_create_groups() {
    let (server, exp) = setup();
    let (_, bearer) = register_worker(&server, &exp);
    let resp = server.post_json(
        &exp,
        "/workers",
        &bearer,
        &json!({"name": "another-worker"}),
    );
    assert_problem(resp, 403, "eden://error/forbidden");
    let resp = server.post_json(
        &exp,
        "/groups",
        &bearer,
        &json!({"name": "g", "members": []}),
    );
    assert_problem(resp, 403, "eden://error/forbidden");
}
