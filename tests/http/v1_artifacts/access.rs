//! Who sees and changes what: listing (newest first, paged, filtered, ACL
//! scoped), grants on both surfaces, delete, and the auth, routing and
//! experiment-header errors.

use super::*;

#[test]
fn listing_is_newest_first_paged_filtered_and_acl_scoped() {
    let server = Server::start();
    let exp = exp_id();
    let admin = server.admin_bearer();
    let (wa, a) = register_worker(&server, &exp);
    let (wb, b) = register_worker(&server, &exp);
    let mut all = Vec::new();
    let mut of_a = Vec::new();
    for i in 0..9u8 {
        let (who, bearer) = match i % 3 {
            0 => ("admin".to_string(), admin.clone()),
            1 => (wa.clone(), a.clone()),
            _ => (wb.clone(), b.clone()),
        };
        let id = id_of(&v1::deposit_ok(&server, &exp, &bearer, &[i; 10]));
        if who == wa {
            of_a.push(id.clone());
        }
        all.push(id);
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    all.reverse();
    of_a.reverse();

    let page = expect_json(v1::get(&server, &exp, "/artifacts", &admin), 200);
    assert_eq!(v1::listed(&page), all);
    assert_eq!(page["next_cursor"], Value::Null);
    // Pages of 4 walk the same order.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/artifacts?limit=4&cursor={c}"),
            None => "/artifacts?limit=4".into(),
        };
        let page = expect_json(v1::get(&server, &exp, &q, &admin), 200);
        let ids = v1::listed(&page);
        assert!(ids.len() <= 4);
        walked.extend(ids);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(walked, all);
    // A worker sees only what it may read; created_by filters.
    let mine = expect_json(v1::get(&server, &exp, "/artifacts", &a), 200);
    assert_eq!(v1::listed(&mine), of_a);
    let filtered = expect_json(
        v1::get(
            &server,
            &exp,
            &format!("/artifacts?created_by={wa}"),
            &admin,
        ),
        200,
    );
    assert_eq!(v1::listed(&filtered), of_a);
    let none = expect_json(
        v1::get(&server, &exp, &format!("/artifacts?created_by={wa}"), &b),
        200,
    );
    assert!(v1::listed(&none).is_empty());
    let admins = expect_json(
        v1::get(&server, &exp, "/artifacts?created_by=admin", &admin),
        200,
    );
    assert_eq!(v1::listed(&admins).len(), 3);
    // A grant makes it listable.
    let granted = &of_a[0];
    expect_json(v1::grant(&server, &exp, &a, granted, &wb), 200);
    let theirs = expect_json(
        v1::get(&server, &exp, &format!("/artifacts?created_by={wa}"), &b),
        200,
    );
    assert_eq!(v1::listed(&theirs), vec![granted.clone()]);
    // Bad parameters.
    for q in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "cursor=zz",
        "created_by=bob",
    ] {
        v1::assert_problem(
            v1::get(&server, &exp, &format!("/artifacts?{q}"), &admin),
            400,
            "eden://error/bad-request",
        );
    }
    // Another experiment lists nothing of these.
    let other = expect_json(v1::get(&server, &exp_id(), "/artifacts", &admin), 200);
    assert!(v1::listed(&other).is_empty());
}

#[test]
fn grants_apply_on_both_surfaces_and_only_managers_change_them() {
    let server = Server::start();
    let exp = exp_id();
    let admin = server.admin_bearer();
    let (_, a) = register_worker(&server, &exp);
    let (wb, b) = register_worker(&server, &exp);
    let (wc, c) = register_worker(&server, &exp);
    let data = v1::noise(50_000, 5);
    let v = v1::deposit_ok(&server, &exp, &a, &data);
    let id = id_of(&v);
    let uri = v["uri"].as_str().unwrap().to_string();
    let grants = format!("/artifacts/{id}/grants");
    let readable = |bearer: &str| -> (u16, u16) {
        let v1s = v1::fetch(&server, &exp, bearer, &id, None)
            .status()
            .as_u16();
        let v0s = fetch(&server, &exp, bearer, &uri).status().as_u16();
        (v1s, v0s)
    };
    assert_eq!(readable(&b), (403, 403));

    let g = expect_json(v1::grant(&server, &exp, &a, &id, &wb), 200);
    assert_eq!(g["grants"], json!([wb]));
    assert_eq!(readable(&b), (200, 200));
    // Idempotent.
    let g = expect_json(v1::grant(&server, &exp, &a, &id, &wb), 200);
    assert_eq!(g["grants"], json!([wb]));
    // Only the depositor or the admin manage grants, readers included.
    v1::assert_problem(
        v1::grant(&server, &exp, &b, &id, &wc),
        403,
        "eden://error/forbidden",
    );
    v1::assert_problem(
        v1::grant(&server, &exp, &c, &id, &wc),
        403,
        "eden://error/forbidden",
    );
    v1::assert_problem(
        v1::revoke(&server, &exp, &b, &id, &wb),
        403,
        "eden://error/forbidden",
    );
    v1::assert_problem(
        v1::grant(&server, &exp, &a, &id, "bob"),
        400,
        "eden://error/bad-request",
    );
    v1::assert_problem(
        v1::post_json(
            &server,
            &exp,
            &grants,
            &a,
            &json!({"principal": wb, "x": 1}),
        ),
        400,
        "eden://error/bad-request",
    );

    // Revoke: 403 again, on both surfaces.
    let g = expect_json(v1::revoke(&server, &exp, &a, &id, &wb), 200);
    assert_eq!(g["grants"], json!([]));
    expect_json(v1::revoke(&server, &exp, &a, &id, &wb), 200);
    assert_eq!(readable(&b), (403, 403));

    // A group grant reaches members of nested groups.
    let inner = create_group(&server, &exp, Some("inner"), &[&wc]);
    let inner_id = inner["group_id"].as_str().unwrap();
    let outer = create_group(&server, &exp, Some("outer"), &[inner_id]);
    let outer_id = outer["group_id"].as_str().unwrap();
    assert_eq!(readable(&c), (403, 403));
    expect_json(v1::grant(&server, &exp, &admin, &id, outer_id), 200);
    assert_eq!(readable(&c), (200, 200));
    assert_eq!(readable(&b), (403, 403));
    expect_json(v1::revoke(&server, &exp, &admin, &id, outer_id), 200);
    assert_eq!(readable(&c), (403, 403));
}

#[test]
fn delete_is_for_managers_and_then_404_everywhere() {
    let server = Server::start();
    let exp = exp_id();
    let admin = server.admin_bearer();
    let (_, a) = register_worker(&server, &exp);
    let (wb, b) = register_worker(&server, &exp);
    let data = v1::noise(80_000, 6);
    let v = v1::deposit_ok(&server, &exp, &a, &data);
    let id = id_of(&v);
    let uri = v["uri"].as_str().unwrap().to_string();
    expect_json(v1::grant(&server, &exp, &a, &id, &wb), 200);
    // A grantee reads but does not delete.
    v1::assert_problem(
        v1::delete(&server, &exp, &format!("/artifacts/{id}"), &b),
        403,
        "eden://error/forbidden",
    );
    let resp = v1::delete(&server, &exp, &format!("/artifacts/{id}"), &a);
    assert_eq!(resp.status().as_u16(), 204);
    for bearer in [&a, &b, &admin] {
        v1::assert_problem(
            v1::fetch(&server, &exp, bearer, &id, None),
            404,
            "eden://error/not-found",
        );
        assert_eq!(fetch(&server, &exp, bearer, &uri).status().as_u16(), 404);
        v1::assert_problem(
            v1::get(&server, &exp, &format!("/artifacts/{id}/meta"), bearer),
            404,
            "eden://error/not-found",
        );
    }
    v1::assert_problem(
        v1::delete(&server, &exp, &format!("/artifacts/{id}"), &a),
        404,
        "eden://error/not-found",
    );
    assert!(
        v1::listed(&expect_json(
            v1::get(&server, &exp, "/artifacts", &admin),
            200
        ))
        .is_empty()
    );
    // The admin deletes anyone's; same bytes deposited again still read back.
    let id2 = id_of(&v1::deposit_ok(&server, &exp, &b, &data));
    assert_eq!(
        v1::delete(&server, &exp, &format!("/artifacts/{id2}"), &admin)
            .status()
            .as_u16(),
        204
    );
    let id3 = id_of(&v1::deposit_ok(&server, &exp, &b, &data));
    assert_eq!(v1::fetch_bytes(&server, &exp, &b, &id3, None, 200), data);
}

#[test]
fn auth_and_routing_errors() {
    let server = Server::start();
    let exp = exp_id();
    let admin = server.admin_bearer();
    let no_bearer = send(
        server
            .client()
            .get(v1::url(&server, &exp, "/artifacts"))
            .header("X-Eden-Experiment-Id", &exp),
    );
    v1::assert_problem(no_bearer, 401, "eden://error/unauthorized");
    let wrong = v1::get(&server, &exp, "/artifacts", "admin:wrong-token-0123456789");
    v1::assert_problem(wrong, 401, "eden://error/unauthorized");
    let mismatch = send(
        server
            .client()
            .get(v1::url(&server, &exp, "/artifacts"))
            .header("X-Eden-Experiment-Id", exp_id())
            .header("Authorization", format!("Bearer {admin}")),
    );
    v1::assert_problem(mismatch, 400, "eden://error/experiment-id-mismatch");
    v1::assert_problem(
        v1::get(&server, &exp, "/nope", &admin),
        404,
        "eden://error/not-found",
    );
    v1::assert_problem(
        send(v1::req(&server, Method::PATCH, &exp, "/artifacts", &admin)),
        404,
        "eden://error/not-found",
    );
    let r = send(
        server
            .client()
            .get(format!("{}/cas/v1/whatever", server.base_url())),
    );
    v1::assert_problem(r, 401, "eden://error/unauthorized");
}

/// Issue 9 §5, on the native surface too: under an experiment, a path or
/// method that is not a route checks the bearer (401) and the
/// `X-Eden-Experiment-Id` header (400) before answering 404.
#[test]
fn experiment_header_is_checked_before_routing() {
    let server = Server::start();
    let exp = exp_id();
    let admin = server.admin_bearer();
    let other = exp_id();
    let probe = |m: &Method, p: &str, bearer: &str, header: &str| {
        send(
            server
                .client()
                .request(m.clone(), v1::url(&server, &exp, p))
                .header("X-Eden-Experiment-Id", header)
                .header("Accept", ACCEPT)
                .header("Authorization", format!("Bearer {bearer}")),
        )
    };
    for (m, p) in [
        (Method::GET, "/tasks"),
        (Method::PUT, "/artifacts"),
        (Method::POST, "/uploads/x/y/z"),
    ] {
        let wrong = probe(&m, p, &admin, &other);
        assert_problem(wrong, 400, "eden://error/experiment-id-mismatch");
        let unauth = probe(&m, p, "ghost:nope", &other);
        assert_problem(unauth, 401, "eden://error/unauthorized");
        assert_problem(probe(&m, p, &admin, &exp), 404, "eden://error/not-found");
    }
}
