//! EDEN v0 artifact transfer (contract §2, §3): deposit, fetch, the ACL and
//! dedup below the URI, driven over HTTP against the real binary.

use crate::support::server::*;
use reqwest::blocking::Response;
use serde_json::Value;

/// Asserts a 200 fetch and returns `(content-type, body)` after checking the
/// headers every successful fetch carries.
fn fetch_ok(server: &Server, exp: &str, bearer: &str, uri: &str) -> (String, Vec<u8>) {
    let resp = fetch(server, exp, bearer, uri);
    check_fetch_200(resp, artifact_id(uri))
}

fn check_fetch_200(resp: Response, id: &str) -> (String, Vec<u8>) {
    let status = resp.status().as_u16();
    let ct = header(&resp, "content-type");
    let cd = header(&resp, "content-disposition");
    let nosniff = header(&resp, "x-content-type-options");
    let len = header(&resp, "content-length");
    let body = resp.bytes().expect("read body").to_vec();
    assert_eq!(
        status,
        200,
        "fetch body {:?}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        cd.starts_with(&format!("attachment; filename=\"{id}\"")),
        "content-disposition {cd:?}"
    );
    assert_eq!(nosniff, "nosniff");
    assert_eq!(len, body.len().to_string(), "content-length");
    (ct, body)
}

fn setup() -> (Server, String, String) {
    let server = Server::start();
    let exp = exp_id();
    let (_, bearer) = register_worker(&server, &exp);
    (server, exp, bearer)
}

#[test]
fn deposit_answers_201_with_exactly_three_keys() {
    let (server, exp, bearer) = setup();
    let v = expect_json(
        deposit(&server, &exp, &bearer, b"hello", Some("text/plain")),
        201,
    );
    assert_eq!(
        keys(&v),
        ["artifacts_uri", "content_type", "size_bytes"],
        "{v}"
    );
    let uri = v["artifacts_uri"].as_str().unwrap();
    let id = artifact_id(uri);
    assert!(is_lower_hex(id, 32), "{uri}");
    assert_eq!(v["size_bytes"], Value::from(5));
    assert_eq!(v["content_type"], Value::from("text/plain"));
}

#[test]
fn admin_may_deposit() {
    let server = Server::start();
    let exp = exp_id();
    let uri = deposit_ok(
        &server,
        &exp,
        &server.admin_bearer(),
        b"by admin",
        "text/plain",
    );
    let (_, body) = fetch_ok(&server, &exp, &server.admin_bearer(), &uri);
    assert_eq!(body, b"by admin");
}

#[test]
fn zero_byte_artifact_round_trips() {
    let (server, exp, bearer) = setup();
    let v = expect_json(
        deposit(
            &server,
            &exp,
            &bearer,
            b"",
            Some("application/octet-stream"),
        ),
        201,
    );
    assert_eq!(v["size_bytes"], Value::from(0));
    let uri = v["artifacts_uri"].as_str().unwrap();
    let (ct, body) = fetch_ok(&server, &exp, &bearer, uri);
    assert_eq!(ct, "application/octet-stream");
    assert!(body.is_empty());
}

#[test]
fn exact_cap_is_accepted_and_one_more_byte_is_413() {
    let server = Server::start_with(&["--max-artifact-bytes", "100000"]);
    let exp = exp_id();
    let (_, bearer) = register_worker(&server, &exp);
    let at_cap = random_bytes(100_000);
    let v = expect_json(
        deposit(
            &server,
            &exp,
            &bearer,
            &at_cap,
            Some("application/octet-stream"),
        ),
        201,
    );
    assert_eq!(v["size_bytes"], Value::from(100_000));
    let (_, body) = fetch_ok(&server, &exp, &bearer, v["artifacts_uri"].as_str().unwrap());
    assert_eq!(body, at_cap);

    let over = random_bytes(100_001);
    let resp = deposit(
        &server,
        &exp,
        &bearer,
        &over,
        Some("application/octet-stream"),
    );
    assert_problem(resp, 413, "eden://error/payload-too-large");
}

#[test]
fn multi_mib_random_payload_round_trips() {
    let (server, exp, bearer) = setup();
    let data = random_bytes(5 * 1024 * 1024 + 12_345);
    let v = expect_json(
        deposit(&server, &exp, &bearer, &data, Some("application/x-tar")),
        201,
    );
    assert_eq!(v["size_bytes"], Value::from(data.len()));
    let (ct, body) = fetch_ok(&server, &exp, &bearer, v["artifacts_uri"].as_str().unwrap());
    assert_eq!(ct, "application/x-tar");
    assert!(body == data, "fetched bytes differ from deposited bytes");
}

#[test]
fn fetch_returns_exact_bytes_and_content_type_verbatim() {
    let (server, exp, bearer) = setup();
    let payload: &[u8] = b"\x00\x01binary\xffcontent";
    for ct in [
        "text/markdown",
        "application/gzip",
        "text/plain; charset=utf-8",
    ] {
        let v = expect_json(deposit(&server, &exp, &bearer, payload, Some(ct)), 201);
        assert_eq!(v["content_type"], Value::from(ct));
        let (got_ct, body) = fetch_ok(&server, &exp, &bearer, v["artifacts_uri"].as_str().unwrap());
        assert_eq!(got_ct, ct, "content type must come back exactly as sent");
        assert_eq!(body, payload);
    }
}

#[test]
fn fetch_accepts_the_raw_unencoded_uri() {
    let (server, exp, bearer) = setup();
    let uri = deposit_ok(&server, &exp, &bearer, b"raw", "text/plain");
    let resp = fetch_query(&server, &exp, &bearer, &format!("uri={uri}"));
    let (_, body) = check_fetch_200(resp, artifact_id(&uri));
    assert_eq!(body, b"raw");
}

#[test]
fn missing_part_content_type_becomes_octet_stream() {
    let (server, exp, bearer) = setup();
    let v = expect_json(deposit(&server, &exp, &bearer, b"no type", None), 201);
    assert_eq!(v["content_type"], Value::from("application/octet-stream"));
    let (ct, body) = fetch_ok(&server, &exp, &bearer, v["artifacts_uri"].as_str().unwrap());
    assert_eq!(ct, "application/octet-stream");
    assert_eq!(body, b"no type");
}

fn deposit_part_ct(server: &Server, exp: &str, bearer: &str, raw_ct: &[u8]) -> Value {
    let b = boundary();
    let body = multipart_body(
        &b,
        &[Part {
            name: "file",
            filename: Some("artifact"),
            content_type: Some(raw_ct),
            data: b"x",
        }],
    );
    let resp = post_artifact_raw(
        server,
        exp,
        bearer,
        &format!("multipart/form-data; boundary={b}"),
        body,
    );
    expect_json(resp, 201)
}

#[test]
fn control_characters_are_stripped_from_part_content_type() {
    let (server, exp, bearer) = setup();
    let v = deposit_part_ct(&server, &exp, &bearer, b"text/x-\tdemo; v=1");
    assert_eq!(v["content_type"], Value::from("text/x-demo; v=1"), "{v}");
    let (ct, _) = fetch_ok(&server, &exp, &bearer, v["artifacts_uri"].as_str().unwrap());
    assert_eq!(ct, "text/x-demo; v=1");
}

#[test]
fn non_ascii_is_stripped_from_part_content_type() {
    let (server, exp, bearer) = setup();
    let v = deposit_part_ct(&server, &exp, &bearer, "text/x-d\u{e9}mo".as_bytes());
    assert_eq!(v["content_type"], Value::from("text/x-dmo"), "{v}");
}

#[test]
fn each_deposit_mints_a_fresh_id_for_identical_bytes() {
    let (server, exp, bearer) = setup();
    let a = deposit_ok(&server, &exp, &bearer, b"same bytes", "text/plain");
    let b = deposit_ok(&server, &exp, &bearer, b"same bytes", "text/plain");
    assert_ne!(a, b);
    assert_eq!(fetch_ok(&server, &exp, &bearer, &a).1, b"same bytes");
    assert_eq!(fetch_ok(&server, &exp, &bearer, &b).1, b"same bytes");
}

fn assert_deposit_400(server: &Server, exp: &str, bearer: &str, ct: &str, body: Vec<u8>) {
    let resp = post_artifact_raw(server, exp, bearer, ct, body);
    assert_problem(resp, 400, "eden://error/bad-request");
}

#[test]
fn malformed_multipart_without_boundary_is_400() {
    let (server, exp, bearer) = setup();
    assert_deposit_400(
        &server,
        &exp,
        &bearer,
        "multipart/form-data",
        b"not really multipart".to_vec(),
    );
}

#[test]
fn non_multipart_body_is_400() {
    let (server, exp, bearer) = setup();
    assert_deposit_400(
        &server,
        &exp,
        &bearer,
        JSON_CT,
        b"{\"file\":\"x\"}".to_vec(),
    );
    assert_deposit_400(
        &server,
        &exp,
        &bearer,
        "application/x-www-form-urlencoded",
        b"notfile=x".to_vec(),
    );
    assert_deposit_400(
        &server,
        &exp,
        &bearer,
        "application/octet-stream",
        b"raw".to_vec(),
    );
}

#[test]
fn zero_parts_is_400() {
    let (server, exp, bearer) = setup();
    let b = boundary();
    let body = multipart_body(&b, &[]);
    assert_deposit_400(
        &server,
        &exp,
        &bearer,
        &format!("multipart/form-data; boundary={b}"),
        body,
    );
}

#[test]
fn part_named_notfile_is_400() {
    let (server, exp, bearer) = setup();
    let b = boundary();
    let body = multipart_body(
        &b,
        &[Part {
            name: "notfile",
            filename: Some("artifact"),
            content_type: Some(b"text/plain"),
            data: b"x",
        }],
    );
    assert_deposit_400(
        &server,
        &exp,
        &bearer,
        &format!("multipart/form-data; boundary={b}"),
        body,
    );
}

#[test]
fn two_parts_is_400() {
    let (server, exp, bearer) = setup();
    let b = boundary();
    let part = |name| Part {
        name,
        filename: Some("artifact"),
        content_type: Some(b"text/plain"),
        data: b"x",
    };
    let body = multipart_body(&b, &[part("file"), part("file2")]);
    assert_deposit_400(
        &server,
        &exp,
        &bearer,
        &format!("multipart/form-data; boundary={b}"),
        body,
    );
    let body = multipart_body(&b, &[part("file"), part("file")]);
    assert_deposit_400(
        &server,
        &exp,
        &bearer,
        &format!("multipart/form-data; boundary={b}"),
        body,
    );
}

#[test]
fn part_without_filename_is_400() {
    let (server, exp, bearer) = setup();
    let b = boundary();
    let body = multipart_body(
        &b,
        &[Part {
            name: "file",
            filename: None,
            content_type: Some(b"text/plain"),
            data: b"x",
        }],
    );
    assert_deposit_400(
        &server,
        &exp,
        &bearer,
        &format!("multipart/form-data; boundary={b}"),
        body,
    );
}

#[test]
fn fetch_without_uri_is_400() {
    let (server, exp, bearer) = setup();
    assert_problem(
        fetch_query(&server, &exp, &bearer, ""),
        400,
        "eden://error/bad-request",
    );
    assert_problem(
        fetch_query(&server, &exp, &bearer, "other=1"),
        400,
        "eden://error/bad-request",
    );
}

#[test]
fn fetch_of_unknown_foreign_or_malformed_uri_is_404() {
    let (server, exp, bearer) = setup();
    let real = deposit_ok(&server, &exp, &bearer, b"x", "text/plain");
    let zeros = format!("eden://artifacts/{}", "0".repeat(32));
    let upper = format!(
        "eden://artifacts/{}",
        artifact_id(&real).to_ascii_uppercase()
    );
    let extra = format!("{real}/extra");
    for uri in [
        zeros.as_str(),
        "s3://bucket/key",
        "eden://artifacts/not-an-id",
        "eden://artifacts/",
        "eden://artifacts/0123",
        upper.as_str(),
        extra.as_str(),
        "",
    ] {
        let resp = fetch(&server, &exp, &bearer, uri);
        let status = resp.status().as_u16();
        // An empty `uri=` is "missing" to some readings; both are in contract.
        if uri.is_empty() && status == 400 {
            assert_problem(resp, 400, "eden://error/bad-request");
            continue;
        }
        let v = assert_problem(resp, 404, "eden://error/not-found");
        assert!(v.is_object(), "uri {uri:?}");
    }
}

#[test]
fn fetch_with_bad_percent_encoding_is_400() {
    let (server, exp, bearer) = setup();
    assert_problem(
        fetch_query(&server, &exp, &bearer, "uri=%zz"),
        400,
        "eden://error/bad-request",
    );
}

#[test]
fn artifact_of_another_experiment_is_404_even_for_admin() {
    let server = Server::start();
    let (e1, e2) = (exp_id(), exp_id());
    let (_, bearer) = register_worker(&server, &e1);
    let uri = deposit_ok(&server, &e1, &bearer, b"e1 only", "text/plain");
    assert_problem(
        fetch(&server, &e2, &server.admin_bearer(), &uri),
        404,
        "eden://error/not-found",
    );
    assert_eq!(
        fetch_ok(&server, &e1, &server.admin_bearer(), &uri).1,
        b"e1 only"
    );
}

#[test]
fn acl_depositor_and_admin_may_fetch() {
    let (server, exp, bearer) = setup();
    let uri = deposit_ok(&server, &exp, &bearer, b"mine", "text/plain");
    assert_eq!(fetch_ok(&server, &exp, &bearer, &uri).1, b"mine");
    assert_eq!(
        fetch_ok(&server, &exp, &server.admin_bearer(), &uri).1,
        b"mine"
    );
}

#[test]
fn acl_other_worker_is_403() {
    let (server, exp, bearer) = setup();
    let (other_id, other) = register_worker(&server, &exp);
    // Membership of a group with another name grants nothing.
    create_group(&server, &exp, Some("readers"), &[&other_id]);
    let uri = deposit_ok(&server, &exp, &bearer, b"mine", "text/plain");
    assert_problem(
        fetch(&server, &exp, &other, &uri),
        403,
        "eden://error/forbidden",
    );
}

#[test]
fn acl_transitive_member_of_admins_may_fetch() {
    let (server, exp, bearer) = setup();
    let (reader_id, reader) = register_worker(&server, &exp);
    let uri = deposit_ok(&server, &exp, &bearer, b"for admins", "text/plain");
    assert_problem(
        fetch(&server, &exp, &reader, &uri),
        403,
        "eden://error/forbidden",
    );
    let grp2 = create_group(&server, &exp, Some("grp2"), &[&reader_id]);
    let grp2_id = grp2["group_id"].as_str().unwrap();
    create_group(&server, &exp, Some("admins"), &[grp2_id]);
    assert_eq!(fetch_ok(&server, &exp, &reader, &uri).1, b"for admins");
}

#[test]
fn acl_admin_deposit_is_403_for_a_plain_worker() {
    let (server, exp, bearer) = setup();
    let uri = deposit_ok(
        &server,
        &exp,
        &server.admin_bearer(),
        b"admin's",
        "text/plain",
    );
    assert_problem(
        fetch(&server, &exp, &bearer, &uri),
        403,
        "eden://error/forbidden",
    );
}

#[test]
fn identical_deposit_does_not_grow_packs() {
    let (server, exp, bearer) = setup();
    let packs = server.data_dir().join("blobs").join("packs");
    let data = random_bytes(3 * 1024 * 1024);
    let a = deposit_ok(&server, &exp, &bearer, &data, "application/octet-stream");
    let after_first = tree_size(&packs);
    assert!(
        after_first >= data.len() as u64,
        "random data is incompressible; packs hold only {after_first} bytes under {}",
        packs.display()
    );
    let b = deposit_ok(&server, &exp, &bearer, &data, "application/octet-stream");
    let after_second = tree_size(&packs);
    assert_ne!(a, b);
    assert!(
        after_second <= after_first,
        "packs grew from {after_first} to {after_second} bytes on an identical deposit"
    );
    assert!(fetch_ok(&server, &exp, &bearer, &b).1 == data);
}
