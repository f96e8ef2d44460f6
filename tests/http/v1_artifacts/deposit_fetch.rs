//! Raw deposit (shape, digests, dedup figures, size cap), fetch by id with
//! byte-exact ranges, HEAD, ETag and Repr-Digest, and both surfaces
//! serving the same artifacts.

use super::*;

#[test]
fn raw_deposit_answers_artifact_with_digests_and_visible_dedup() {
    let server = Server::start();
    let exp = exp_id();
    let (wa, a) = register_worker(&server, &exp);
    let (_, b) = register_worker(&server, &exp);
    let data = v1::noise(700_000, 1);
    let resp = send(
        v1::req(&server, Method::POST, &exp, "/artifacts", &a)
            .header("Content-Type", "application/x-tar")
            .header("X-Eden-Filename", "ckpt 1.tar")
            .header("X-Eden-Expires-In", "7d")
            .body(data.clone()),
    );
    let location = header(&resp, "location");
    let v = expect_json(resp, 201);
    let id = id_of(&v);
    assert!(is_lower_hex(&id, 32), "{v}");
    assert_eq!(
        location,
        format!("/cas/v1/experiments/{exp}/artifacts/{id}")
    );
    assert_eq!(v["uri"], json!(format!("eden://artifacts/{id}")));
    assert_eq!(v["size_bytes"], json!(data.len()));
    assert_eq!(v["content_type"], json!("application/x-tar"));
    assert_eq!(v["filename"], json!("ckpt 1.tar"));
    assert_eq!(v["created_by"], json!(wa));
    assert!(is_timestamp(v["created_at"].as_str().unwrap()), "{v}");
    assert!(is_timestamp(v["expires_at"].as_str().unwrap()), "{v}");
    assert_eq!(
        v["digests"]["blake3"],
        json!(format!("blake3:{}", v1::b3(&data)))
    );
    let sha = hex::encode(sha2::Sha256::digest(&data));
    assert_eq!(v["digests"]["sha256"], json!(format!("sha256:{sha}")));
    assert_eq!(v["digest_verified"], json!(true));
    assert_eq!(v["grants"], json!([]));
    let n = v1::chunks(&data).len() as u64;
    assert_eq!(v["chunks"], json!(n));
    assert_eq!(v["dedup"]["logical_bytes"], json!(data.len()));
    assert_eq!(v["dedup"]["chunks"], json!(n));
    assert_eq!(v["dedup"]["new_chunks"], json!(n), "{v}");
    assert_eq!(
        v["dedup"]["new_raw_bytes"],
        json!(data.len()),
        "raw bytes new to the depositor"
    );
    assert_eq!(
        keys(&v),
        [
            "chunks",
            "content_type",
            "created_at",
            "created_by",
            "dedup",
            "digest_verified",
            "digests",
            "expires_at",
            "filename",
            "grants",
            "id",
            "size_bytes",
            "uri"
        ]
    );

    // Same bytes again by the same worker: a new id, nothing new to store.
    let again = v1::deposit_ok(&server, &exp, &a, &data);
    assert_ne!(id_of(&again), id);
    assert_eq!(again["dedup"]["new_chunks"], json!(0), "{again}");
    assert_eq!(again["dedup"]["new_raw_bytes"], json!(0));
    assert!(again.get("filename").is_none() && again.get("expires_at").is_none());
    assert_eq!(again["content_type"], json!("application/octet-stream"));

    // Worker B cannot read A's artifacts: the figures must not tell B that
    // the store already holds these bytes (invariant 4).
    let theirs = v1::deposit_ok(&server, &exp, &b, &data);
    assert_eq!(theirs["dedup"]["new_chunks"], json!(n), "{theirs}");
    let storage = tree_size(&server.data_dir().join("blobs"));
    v1::deposit_ok(&server, &exp, &b, &data);
    assert!(
        tree_size(&server.data_dir().join("blobs")) <= storage + 4096,
        "dedup is still global"
    );

    // Header validation.
    let bad = send(
        v1::req(&server, Method::POST, &exp, "/artifacts", &a)
            .header("X-Eden-Expires-In", "whenever")
            .body(vec![1u8; 10]),
    );
    v1::assert_problem(bad, 400, "eden://error/bad-request");
    let bad = send(
        v1::req(&server, Method::POST, &exp, "/artifacts", &a)
            .header("X-Eden-Filename", "x".repeat(256))
            .body(vec![1u8; 10]),
    );
    v1::assert_problem(bad, 400, "eden://error/bad-request");
    // Empty artifacts are artifacts.
    let empty = v1::deposit_ok(&server, &exp, &a, b"");
    assert_eq!(empty["size_bytes"], json!(0));
    assert_eq!(empty["chunks"], json!(0));
    assert_eq!(
        v1::fetch_bytes(&server, &exp, &a, &id_of(&empty), None, 200),
        b""
    );
}

#[test]
fn size_cap_is_enforced_on_raw_deposits() {
    let server = Server::start_with(&["--max-artifact-bytes", "100000"]);
    let exp = exp_id();
    let admin = server.admin_bearer();
    v1::deposit_ok(&server, &exp, &admin, &vec![7u8; 100_000]);
    let resp = v1::deposit(&server, &exp, &admin, &vec![7u8; 100_001], "text/plain");
    v1::assert_problem(resp, 413, "eden://error/payload-too-large");
    let page = expect_json(v1::get(&server, &exp, "/artifacts", &admin), 200);
    assert_eq!(
        v1::listed(&page).len(),
        1,
        "nothing recorded for the oversize body"
    );
}

#[test]
fn ranges_are_byte_exact_at_chunk_boundaries() {
    let server = Server::start();
    let exp = exp_id();
    let admin = server.admin_bearer();
    let data = v1::noise(900_000, 2);
    let id = id_of(&v1::deposit_ok(&server, &exp, &admin, &data));
    assert_eq!(v1::fetch_bytes(&server, &exp, &admin, &id, None, 200), data);
    let size = data.len() as u64;
    let mut cuts = vec![0u64];
    for c in v1::chunks(&data) {
        cuts.push(cuts.last().unwrap() + c.len() as u64);
    }
    assert!(cuts.len() > 4, "several chunks");
    let mut ranges: Vec<(u64, u64)> = vec![
        (65535, 65535),
        (65536, 65536),
        (65537, 65537),
        (65535, 65537),
        (0, 0),
        (size - 1, size - 1),
        (0, size - 1),
        (1, size - 2),
    ];
    for &c in &cuts[1..cuts.len() - 1] {
        ranges.push((c - 1, c));
        ranges.push((c, c));
        ranges.push((c - 1, c + 1));
        ranges.push((c, c + 70_000));
    }
    for (a, b) in ranges {
        let b = b.min(size - 1);
        let resp = v1::fetch(&server, &exp, &admin, &id, Some(&format!("bytes={a}-{b}")));
        assert_eq!(resp.status().as_u16(), 206, "bytes={a}-{b}");
        assert_eq!(
            header(&resp, "content-range"),
            format!("bytes {a}-{b}/{size}")
        );
        assert_eq!(header(&resp, "content-length"), (b - a + 1).to_string());
        let body = resp.bytes().unwrap();
        assert!(body[..] == data[a as usize..=b as usize], "bytes={a}-{b}");
    }
    // Open and suffix ranges.
    let tail = v1::fetch_bytes(&server, &exp, &admin, &id, Some("bytes=899000-"), 206);
    assert!(tail[..] == data[899_000..]);
    let suffix = v1::fetch_bytes(&server, &exp, &admin, &id, Some("bytes=-65537"), 206);
    assert!(suffix[..] == data[data.len() - 65537..]);
    let all = v1::fetch_bytes(&server, &exp, &admin, &id, Some("bytes=-9999999"), 206);
    assert!(all == data);
    let past_end = v1::fetch_bytes(
        &server,
        &exp,
        &admin,
        &id,
        Some("bytes=899990-99999999"),
        206,
    );
    assert!(past_end[..] == data[899_990..]);
    // Unsatisfiable: 416 with the size.
    for r in [
        format!("bytes={size}-"),
        format!("bytes={}-{}", size + 5, size + 9),
        "bytes=-0".into(),
    ] {
        let resp = v1::fetch(&server, &exp, &admin, &id, Some(&r));
        assert_eq!(
            header(&resp, "content-range"),
            format!("bytes */{size}"),
            "{r}"
        );
        v1::assert_problem(resp, 416, "eden-cas://error/range-not-satisfiable");
    }
    // Several ranges or nonsense: the whole body with 200.
    for r in ["bytes=0-1,5-6", "bytes=z-", "pages=1-2"] {
        assert!(
            v1::fetch_bytes(&server, &exp, &admin, &id, Some(r), 200) == data,
            "{r}"
        );
    }
}

#[test]
fn head_etag_and_repr_digest() {
    let server = Server::start();
    let exp = exp_id();
    let (_, w) = register_worker(&server, &exp);
    let data = v1::noise(300_000, 3);
    let v = v1::deposit_ok(&server, &exp, &w, &data);
    let id = id_of(&v);
    let path = format!("/artifacts/{id}");
    let etag = format!("\"blake3:{}\"", v1::b3(&data));
    let repr = format!("sha-256=:{}:", v1::base64(&sha2::Sha256::digest(&data)));

    let get = v1::fetch(&server, &exp, &w, &id, None);
    assert_eq!(get.status().as_u16(), 200);
    for (h, want) in [
        ("etag", etag.as_str()),
        ("repr-digest", repr.as_str()),
        ("accept-ranges", "bytes"),
        ("content-type", "application/octet-stream"),
        ("x-content-type-options", "nosniff"),
        ("x-eden-blake3", v1::b3(&data).as_str()),
        ("content-length", "300000"),
    ] {
        assert_eq!(header(&get, h), want, "{h}");
    }
    assert_eq!(
        header(&get, "content-disposition"),
        format!("attachment; filename=\"{id}\"")
    );

    let head = send(v1::req(&server, Method::HEAD, &exp, &path, &w));
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(header(&head, "etag"), etag);
    assert_eq!(header(&head, "repr-digest"), repr);
    assert_eq!(header(&head, "content-length"), "300000");
    assert!(head.bytes().unwrap().is_empty(), "HEAD has no body");
    let head = send(v1::req(&server, Method::HEAD, &exp, &path, &w).header("Range", "bytes=10-19"));
    assert_eq!(head.status().as_u16(), 206);
    assert_eq!(header(&head, "content-length"), "10");
    assert_eq!(header(&head, "content-range"), "bytes 10-19/300000");

    // Conditional requests.
    for inm in [etag.clone(), format!("\"nope\", W/{etag}"), "*".into()] {
        let r = send(
            v1::req(&server, Method::GET, &exp, &path, &w).header("If-None-Match", inm.clone()),
        );
        assert_eq!(r.status().as_u16(), 304, "{inm}");
        assert_eq!(header(&r, "etag"), etag);
        assert!(r.bytes().unwrap().is_empty());
    }
    let r = send(
        v1::req(&server, Method::GET, &exp, &path, &w).header("If-None-Match", "\"blake3:00\""),
    );
    assert_eq!(r.status().as_u16(), 200);
    // If-Range with a stale validator: the whole representation.
    let r = send(
        v1::req(&server, Method::GET, &exp, &path, &w)
            .header("Range", "bytes=0-9")
            .header("If-Range", "\"blake3:00\""),
    );
    assert_eq!(r.status().as_u16(), 200);
    let r = send(
        v1::req(&server, Method::GET, &exp, &path, &w)
            .header("Range", "bytes=0-9")
            .header("If-Range", etag.clone()),
    );
    assert_eq!(r.status().as_u16(), 206);

    // Metadata; and an unreadable or unknown artifact answers before any validator.
    let meta = expect_json(v1::get(&server, &exp, &format!("{path}/meta"), &w), 200);
    assert_eq!(meta, v);
    let (_, other) = register_worker(&server, &exp);
    let r = send(v1::req(&server, Method::GET, &exp, &path, &other).header("If-None-Match", "*"));
    v1::assert_problem(r, 403, "eden://error/forbidden");
    v1::assert_problem(
        v1::get(&server, &exp, &format!("{path}/meta"), &other),
        403,
        "eden://error/forbidden",
    );
    let ghost = "0".repeat(32);
    v1::assert_problem(
        v1::fetch(&server, &exp, &w, &ghost, None),
        404,
        "eden://error/not-found",
    );
    v1::assert_problem(
        v1::fetch(&server, &exp, &w, "not-an-id", None),
        404,
        "eden://error/not-found",
    );
    // Another experiment's path: 404, not 403.
    let exp2 = exp_id();
    let admin = server.admin_bearer();
    v1::assert_problem(
        v1::fetch(&server, &exp2, &admin, &id, None),
        404,
        "eden://error/not-found",
    );
}

#[test]
fn both_surfaces_serve_the_same_artifacts() {
    let server = Server::start();
    let exp = exp_id();
    let (_, w) = register_worker(&server, &exp);
    let data = v1::noise(200_000, 4);
    let uri = deposit_ok(&server, &exp, &w, &data, "text/csv");
    let id = artifact_id(&uri).to_string();
    assert_eq!(v1::fetch_bytes(&server, &exp, &w, &id, None, 200), data);
    let meta = expect_json(
        v1::get(&server, &exp, &format!("/artifacts/{id}/meta"), &w),
        200,
    );
    assert_eq!(meta["content_type"], json!("text/csv"));
    assert_eq!(meta["filename"], json!("artifact"));
    assert_eq!(meta["digest_verified"], json!(true));
    assert_eq!(
        meta["digests"]["blake3"],
        json!(format!("blake3:{}", v1::b3(&data)))
    );
    let part = v1::fetch_bytes(&server, &exp, &w, &id, Some("bytes=100-199"), 206);
    assert!(part[..] == data[100..200]);

    let v = v1::deposit_ok(&server, &exp, &w, &data[..1234]);
    let resp = fetch(&server, &exp, &w, v["uri"].as_str().unwrap());
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.bytes().unwrap()[..] == data[..1234]);
}
