//! EDEN v0 groups (contract §5): create, read, list, membership, delete,
//! cycles and reserved names, driven over HTTP against the real binary.

use crate::support::server::*;
use serde_json::{Value, json};

fn setup() -> (Server, String) {
    (Server::start(), exp_id())
}

fn check_group(g: &Value, exp: &str) {
    assert!(is_id(g["group_id"].as_str().unwrap_or(""), "grp"), "{g}");
    assert_eq!(g["experiment_id"], Value::from(exp));
    assert!(g["members"].is_array(), "{g}");
    assert!(is_timestamp(g["created_at"].as_str().unwrap_or("")), "{g}");
    assert_eq!(g["created_by"], Value::from("admin"));
    assert_no_nulls(g);
}

#[test]
fn create_group_dedups_members_and_always_shows_them() {
    let (server, exp) = setup();
    let (w1, _) = register_worker(&server, &exp);
    let (w2, _) = register_worker(&server, &exp);
    let dangling = ghost_id("grp");
    let g = create_group(
        &server,
        &exp,
        Some("team"),
        &[&w1, &dangling, &w1, &w2, &dangling],
    );
    check_group(&g, &exp);
    assert_eq!(g["name"], Value::from("team"));
    assert_eq!(g["members"], json!([w1, dangling, w2]));
    assert_eq!(
        keys(&g),
        [
            "created_at",
            "created_by",
            "experiment_id",
            "group_id",
            "members",
            "name"
        ]
    );

    let empty = expect_json(
        server.post_json(&exp, "/groups", &server.admin_bearer(), &json!({})),
        200,
    );
    check_group(&empty, &exp);
    assert_eq!(empty["members"], json!([]));
    assert!(empty.get("name").is_none(), "{empty}");
}

#[test]
fn create_group_with_bad_body_is_400_and_bad_name_is_422() {
    let (server, exp) = setup();
    let admin = server.admin_bearer();
    for body in [
        json!({"members": ["not-an-id"]}),
        json!({"members": ["exp_00000000000000000000000000"]}),
        json!({"members": "wkr_00000000000000000000000000"}),
        json!({"name": null}),
        json!({"group_id": ghost_id("grp")}),
    ] {
        assert_problem(
            server.post_json(&exp, "/groups", &admin, &body),
            400,
            "eden://error/bad-request",
        );
    }
    let resp = server.post_json(
        &exp,
        "/groups",
        &admin,
        &json!({"name": "  bad leading whitespace"}),
    );
    assert_problem(resp, 422, "eden://error/invalid-name");
    // The first malformed member is named; a malformed name wins over it.
    let w = ghost_id("wkr");
    let p = assert_problem(
        server.post_json(
            &exp,
            "/groups",
            &admin,
            &json!({"name": "ok", "members": [w, "admin", "nope"]}),
        ),
        400,
        "eden://error/bad-request",
    );
    assert_eq!(
        p["detail"],
        json!("member id \"admin\" is not a wkr_ or grp_ id")
    );
    let resp = server.post_json(
        &exp,
        "/groups",
        &admin,
        &json!({"name": " bad", "members": ["nope"]}),
    );
    assert_problem(resp, 422, "eden://error/invalid-name");
}

#[test]
fn read_and_list_groups() {
    let (server, exp) = setup();
    let (_, worker) = register_worker(&server, &exp);
    let a = create_group(&server, &exp, Some("alpha"), &[]);
    let b = create_group(&server, &exp, Some("beta"), &[]);
    let a2 = create_group(&server, &exp, Some("alpha"), &[]);
    let a_id = a["group_id"].as_str().unwrap();
    assert_eq!(
        expect_json(server.get(&exp, &format!("/groups/{a_id}"), &worker), 200),
        a
    );
    for g in ["no-such-group".to_string(), ghost_id("grp")] {
        assert_problem(
            server.get(&exp, &format!("/groups/{g}"), &worker),
            404,
            "eden://error/not-found",
        );
    }
    let all = expect_json(server.get(&exp, "/groups", &worker), 200);
    assert_eq!(keys(&all), ["groups"]);
    let mut ids = list_ids(&all, "groups", "group_id");
    ids.sort();
    let mut want: Vec<String> = [&a, &b, &a2]
        .iter()
        .map(|g| g["group_id"].as_str().unwrap().to_string())
        .collect();
    want.sort();
    assert_eq!(ids, want);
    let beta = list_ids(
        &expect_json(server.get(&exp, "/groups?name=beta", &worker), 200),
        "groups",
        "group_id",
    );
    assert_eq!(beta, [b["group_id"].as_str().unwrap()]);
    let alpha = list_ids(
        &expect_json(server.get(&exp, "/groups?name=alpha", &worker), 200),
        "groups",
        "group_id",
    );
    assert_eq!(alpha.len(), 2);
    assert!(
        list_ids(
            &expect_json(server.get(&exp, "/groups?name=Beta", &worker), 200),
            "groups",
            "group_id"
        )
        .is_empty()
    );
}

#[test]
fn add_member_is_idempotent_and_validated() {
    let (server, exp) = setup();
    let admin = server.admin_bearer();
    let (w1, _) = register_worker(&server, &exp);
    let (w2, _) = register_worker(&server, &exp);
    let g = create_group(&server, &exp, Some("g"), &[&w1]);
    let path = format!("/groups/{}/members", g["group_id"].as_str().unwrap());
    let v = expect_json(
        server.post_json(&exp, &path, &admin, &json!({"member_id": w2})),
        200,
    );
    assert_eq!(v["members"], json!([w1, w2]));
    let again = expect_json(
        server.post_json(&exp, &path, &admin, &json!({"member_id": w2})),
        200,
    );
    assert_eq!(again["members"], json!([w1, w2]));
    for body in [
        json!({"member_id": "nope"}),
        json!({}),
        json!({"member_id": null}),
    ] {
        assert_problem(
            server.post_json(&exp, &path, &admin, &body),
            400,
            "eden://error/bad-request",
        );
    }
    let p = assert_problem(
        server.post_json(&exp, &path, &admin, &json!({"member_id": "admin"})),
        400,
        "eden://error/bad-request",
    );
    assert_eq!(p["detail"], json!("member_id is not a wkr_ or grp_ id"));
    let ghost = format!("/groups/{}/members", ghost_id("grp"));
    // An unknown group is 404 whatever the member: checked first.
    for member in [w1.as_str(), "nope"] {
        assert_problem(
            server.post_json(&exp, &ghost, &admin, &json!({"member_id": member})),
            404,
            "eden://error/not-found",
        );
    }
}

#[test]
fn remove_member_is_idempotent() {
    let (server, exp) = setup();
    let admin = server.admin_bearer();
    let (w1, _) = register_worker(&server, &exp);
    let (w2, _) = register_worker(&server, &exp);
    let g = create_group(&server, &exp, Some("g"), &[&w1, &w2]);
    let gid = g["group_id"].as_str().unwrap();
    let v = expect_json(
        server.delete(&exp, &format!("/groups/{gid}/members/{w1}"), &admin),
        200,
    );
    assert_eq!(v["members"], json!([w2]));
    for m in [w1.clone(), ghost_id("wkr"), "not-an-id".to_string()] {
        let v = expect_json(
            server.delete(&exp, &format!("/groups/{gid}/members/{m}"), &admin),
            200,
        );
        assert_eq!(v["members"], json!([w2]));
    }
    let ghost_group = ghost_id("grp");
    for m in [w2.as_str(), "not-an-id"] {
        assert_problem(
            server.delete(&exp, &format!("/groups/{ghost_group}/members/{m}"), &admin),
            404,
            "eden://error/not-found",
        );
    }
}

#[test]
fn delete_group_is_204_then_404() {
    let (server, exp) = setup();
    let admin = server.admin_bearer();
    let g = create_group(&server, &exp, Some("doomed"), &[]);
    let gid = g["group_id"].as_str().unwrap();
    let outer = create_group(&server, &exp, Some("outer"), &[gid]);
    let resp = server.delete(&exp, &format!("/groups/{gid}"), &admin);
    assert_eq!(resp.status().as_u16(), 204);
    assert!(resp.bytes().unwrap().is_empty(), "204 must have no body");
    assert_problem(
        server.get(&exp, &format!("/groups/{gid}"), &admin),
        404,
        "eden://error/not-found",
    );
    assert_problem(
        server.delete(&exp, &format!("/groups/{gid}"), &admin),
        404,
        "eden://error/not-found",
    );
    let outer_id = outer["group_id"].as_str().unwrap();
    let still = expect_json(
        server.get(&exp, &format!("/groups/{outer_id}"), &admin),
        200,
    );
    assert_eq!(still["members"], json!([gid]), "dangling ids stay listed");
}

#[test]
fn cycles_are_409_and_leave_groups_unchanged() {
    let (server, exp) = setup();
    let admin = server.admin_bearer();
    let g2 = create_group(&server, &exp, Some("g2"), &[]);
    let g2_id = g2["group_id"].as_str().unwrap();
    let g1 = create_group(&server, &exp, Some("g1"), &[g2_id]);
    let g1_id = g1["group_id"].as_str().unwrap();
    let add = |g: &str, m: &str| {
        server.post_json(
            &exp,
            &format!("/groups/{g}/members"),
            &admin,
            &json!({"member_id": m}),
        )
    };
    assert_problem(add(g2_id, g1_id), 409, "eden://error/cycle-detected");
    assert_problem(add(g1_id, g1_id), 409, "eden://error/cycle-detected");
    // Three deep: g1 ∋ g2 ∋ g3, then g3 ∋ g1 closes the loop.
    let g3 = create_group(&server, &exp, Some("g3"), &[]);
    let g3_id = g3["group_id"].as_str().unwrap();
    expect_json(add(g2_id, g3_id), 200);
    assert_problem(add(g3_id, g1_id), 409, "eden://error/cycle-detected");
    let now = expect_json(server.get(&exp, &format!("/groups/{g3_id}"), &admin), 200);
    assert_eq!(now["members"], json!([]));
    let now = expect_json(server.get(&exp, &format!("/groups/{g1_id}"), &admin), 200);
    assert_eq!(now["members"], json!([g2_id]));
}

#[test]
fn reserved_group_names_may_exist_once() {
    let (server, exp) = setup();
    let admin = server.admin_bearer();
    for name in ["admins", "orchestrators"] {
        let first = create_group(&server, &exp, Some(name), &[]);
        let resp = server.post_json(
            &exp,
            "/groups",
            &admin,
            &json!({"name": name, "members": []}),
        );
        assert_problem(resp, 409, "eden://error/reserved-identifier");
        let found = expect_json(
            server.get(&exp, &format!("/groups?name={name}"), &admin),
            200,
        );
        assert_eq!(
            list_ids(&found, "groups", "group_id"),
            [first["group_id"].as_str().unwrap()]
        );
    }
    // Worker-reserved names are not reserved for groups; reserved is per experiment.
    create_group(&server, &exp, Some("admin"), &[]);
    create_group(&server, &exp_id(), Some("admins"), &[]);
}
