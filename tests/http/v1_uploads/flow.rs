//! The full session flow, the missing-chunk answer's isolation (invariant
//! 4: a chunk is present only if the caller may read an artifact holding
//! it) and sessions surviving a restart.

use super::*;

#[test]
fn full_session_flow() {
    let server = Server::start();
    let exp = exp_id();
    let (wa, a) = register_worker(&server, &exp);
    let mut data = v1::noise(1_500_000, 10);
    data.extend(std::iter::repeat_n(b'z', 800_000)); // repeated chunks inside one artifact
    let chunks = v1::chunks(&data);
    let all = ids(&chunks);

    let resp = v1::post_json(
        &server,
        &exp,
        "/uploads",
        &a,
        &json!({"content_type": "application/x-ckpt", "filename": "step-10.ckpt", "expires_in": "30d"}),
    );
    let location = header(&resp, "location");
    let s = expect_json(resp, 201);
    let sid = s["session_id"].as_str().unwrap().to_string();
    assert!(is_lower_hex(&sid, 32));
    assert_eq!(location, format!("/cas/v1/experiments/{exp}/uploads/{sid}"));
    assert_eq!(
        s["chunker"],
        json!({"algorithm": "fastcdc-2020", "min_bytes": 16384, "avg_bytes": 65536, "max_bytes": 262144, "normalization": 1})
    );
    assert!(is_timestamp(s["expires_at"].as_str().unwrap()));
    assert!(s["max_batch_bytes"].as_u64().unwrap() >= 262_144 + 36);

    let mut distinct: Vec<String> = all.clone();
    distinct.sort();
    distinct.dedup();
    assert!(
        distinct.len() < all.len(),
        "the test content repeats chunks"
    );
    assert_eq!(
        v1::missing(&server, &exp, &a, &sid, &all),
        all,
        "in request order"
    );

    // Two batches; the second repeats one chunk of the first.
    let half = chunks.len() / 2;
    let r = expect_json(
        v1::put_chunks(&server, &exp, &a, &sid, v1::frames(&refs(&chunks[..half]))),
        200,
    );
    assert_eq!(r["received"], json!(half));
    let first_distinct = {
        let mut x = all[..half].to_vec();
        x.sort();
        x.dedup();
        x.len()
    };
    assert_eq!(r["stored_new"], json!(first_distinct));
    let st = expect_json(v1::get(&server, &exp, &format!("/uploads/{sid}"), &a), 200);
    assert_eq!(st["received_chunks"], json!(first_distinct));
    assert_eq!(st["received"].as_array().unwrap().len(), first_distinct);
    assert_eq!(st["received_next"], Value::Null);
    let paged = expect_json(
        v1::get(&server, &exp, &format!("/uploads/{sid}?limit=1"), &a),
        200,
    );
    assert_eq!(paged["received"].as_array().unwrap().len(), 1);
    let next = paged["received_next"].as_str().unwrap();
    let page2 = expect_json(
        v1::get(
            &server,
            &exp,
            &format!("/uploads/{sid}?limit=1&after={next}"),
            &a,
        ),
        200,
    );
    assert_ne!(page2["received"][0], paged["received"][0]);

    let want: Vec<String> = all[half..].to_vec();
    let still = v1::missing(&server, &exp, &a, &sid, &all);
    assert!(still.iter().all(|m| want.contains(m)));
    let rest: Vec<&[u8]> = std::iter::once(chunks[0].as_slice())
        .chain(chunks[half..].iter().map(Vec::as_slice))
        .collect();
    let r = expect_json(
        v1::put_chunks(&server, &exp, &a, &sid, v1::frames(&rest)),
        200,
    );
    assert_eq!(r["received"], json!(rest.len()));
    assert!(v1::missing(&server, &exp, &a, &sid, &all).is_empty());

    let art = expect_json(
        v1::commit_content(&server, &exp, &a, &sid, &chunks, &data),
        201,
    );
    let id = art["id"].as_str().unwrap().to_string();
    assert_eq!(art["size_bytes"], json!(data.len()));
    assert_eq!(art["created_by"], json!(wa));
    assert_eq!(art["content_type"], json!("application/x-ckpt"));
    assert_eq!(art["filename"], json!("step-10.ckpt"));
    assert!(art["expires_at"].is_string());
    assert_eq!(art["digest_verified"], json!(true));
    assert_eq!(
        art["digests"]["blake3"],
        json!(format!("blake3:{}", v1::b3(&data)))
    );
    assert_eq!(art["chunks"], json!(chunks.len()));
    assert_eq!(art["dedup"]["new_chunks"], json!(distinct.len()));
    assert_eq!(v1::fetch_bytes(&server, &exp, &a, &id, None, 200), data);
    let v0 = fetch(&server, &exp, &a, art["uri"].as_str().unwrap());
    assert_eq!(v0.status().as_u16(), 200);
    assert!(v0.bytes().unwrap()[..] == data[..]);

    // The session ended; it answers 410 on every route, naming the artifact.
    let gone = v1::assert_problem(
        v1::get(&server, &exp, &format!("/uploads/{sid}"), &a),
        410,
        "eden-cas://error/session-expired",
    );
    assert!(gone["detail"].as_str().unwrap().contains(&id), "{gone}");
    v1::assert_problem(
        v1::commit_content(&server, &exp, &a, &sid, &chunks, &data),
        410,
        "eden-cas://error/session-expired",
    );
    v1::assert_problem(
        v1::put_chunks(&server, &exp, &a, &sid, v1::frames(&[b"x"])),
        410,
        "eden-cas://error/session-expired",
    );

    // A second session over the same content: everything is present (own artifact).
    let sid2 = v1::create_session(&server, &exp, &a, &json!({}));
    assert!(v1::missing(&server, &exp, &a, &sid2, &all).is_empty());
    let art2 = expect_json(
        v1::commit_content(&server, &exp, &a, &sid2, &chunks, &data),
        201,
    );
    assert_eq!(art2["dedup"]["new_chunks"], json!(0));
    assert_eq!(art2["content_type"], json!("application/octet-stream"));
    // Empty content.
    let sid3 = v1::create_session(&server, &exp, &a, &json!({}));
    let empty = expect_json(
        v1::commit(
            &server,
            &exp,
            &a,
            &sid3,
            &v1::commit_body(&[], &v1::b3(b"")),
        ),
        201,
    );
    assert_eq!(empty["size_bytes"], json!(0));
}

#[test]
fn missing_never_reveals_chunks_the_caller_cannot_read() {
    let server = Server::start();
    let exp = exp_id();
    let admin = server.admin_bearer();
    let (_, a) = register_worker(&server, &exp);
    let (wb, b) = register_worker(&server, &exp);
    let data = v1::noise(600_000, 11);
    let chunks = v1::chunks(&data);
    let all = ids(&chunks);
    let id = v1::deposit_ok(&server, &exp, &a, &data)["id"]
        .as_str()
        .unwrap()
        .to_string();

    let sb = v1::create_session(&server, &exp, &b, &json!({}));
    assert_eq!(
        v1::missing(&server, &exp, &b, &sb, &all),
        all,
        "B may not learn A's content is stored"
    );
    // Same content in another experiment, by the admin: still nothing for B here.
    let exp2 = exp_id();
    v1::deposit_ok(&server, &exp2, &admin, &data);
    assert_eq!(v1::missing(&server, &exp, &b, &sb, &all), all);
    // The owner and the admin see it present.
    let sa = v1::create_session(&server, &exp, &a, &json!({}));
    assert!(v1::missing(&server, &exp, &a, &sa, &all).is_empty());
    let sx = v1::create_session(&server, &exp, &admin, &json!({}));
    assert!(v1::missing(&server, &exp, &admin, &sx, &all).is_empty());

    // B uploads the chunks: they count as new for B, and storage stays put.
    let blobs = server.data_dir().join("blobs");
    let before = tree_size(&blobs);
    let r = expect_json(
        v1::put_chunks(&server, &exp, &b, &sb, v1::frames(&refs(&chunks[..2]))),
        200,
    );
    assert_eq!(
        r["stored_new"],
        json!(2),
        "stored_new is relative to what B may read"
    );
    assert!(
        tree_size(&blobs) <= before + 1024,
        "already stored chunks are not stored again"
    );
    assert_eq!(v1::missing(&server, &exp, &b, &sb, &all), all[2..].to_vec());

    // After a grant, A's chunks are present for B; after a revoke, missing again.
    expect_json(v1::grant(&server, &exp, &a, &id, &wb), 200);
    assert!(v1::missing(&server, &exp, &b, &sb, &all).is_empty());
    expect_json(v1::revoke(&server, &exp, &a, &id, &wb), 200);
    assert_eq!(v1::missing(&server, &exp, &b, &sb, &all), all[2..].to_vec());
    // A commit relying on chunks B cannot read is refused.
    let p = v1::assert_problem(
        v1::commit_content(&server, &exp, &b, &sb, &chunks, &data),
        409,
        "eden-cas://error/chunks-missing",
    );
    assert!(p["detail"].as_str().unwrap().contains(&all[2]), "{p}");
    // Deleting A's artifact makes the chunks missing for A too.
    assert_eq!(
        v1::delete(&server, &exp, &format!("/artifacts/{id}"), &a)
            .status()
            .as_u16(),
        204
    );
    assert_eq!(v1::missing(&server, &exp, &a, &sa, &all), all);
    // Bad queries.
    v1::assert_problem(
        v1::post_json(
            &server,
            &exp,
            &format!("/uploads/{sb}/missing"),
            &b,
            &json!({"chunks": ["xyz"]}),
        ),
        400,
        "eden://error/bad-request",
    );
    let too_many: Vec<String> = (0..10_001)
        .map(|i| v1::b3(&(i as u32).to_le_bytes()))
        .collect();
    v1::assert_problem(
        v1::post_json(
            &server,
            &exp,
            &format!("/uploads/{sb}/missing"),
            &b,
            &json!({ "chunks": too_many }),
        ),
        400,
        "eden://error/bad-request",
    );
}

#[test]
fn sessions_survive_a_restart() {
    let mut server = Server::start();
    let exp = exp_id();
    let (_, a) = register_worker(&server, &exp);
    let data = v1::noise(1_000_000, 13);
    let chunks = v1::chunks(&data);
    let all = ids(&chunks);
    let sid = v1::create_session(&server, &exp, &a, &json!({"filename": "resumed.bin"}));
    let half = chunks.len() / 2;
    expect_json(
        v1::put_chunks(&server, &exp, &a, &sid, v1::frames(&refs(&chunks[..half]))),
        200,
    );

    server.restart();

    let missing = v1::missing(&server, &exp, &a, &sid, &all);
    assert_eq!(missing, all[half..].to_vec(), "received chunks survive");
    expect_json(
        v1::put_chunks(&server, &exp, &a, &sid, v1::frames(&refs(&chunks[half..]))),
        200,
    );
    let art = expect_json(
        v1::commit_content(&server, &exp, &a, &sid, &chunks, &data),
        201,
    );
    assert_eq!(art["filename"], json!("resumed.bin"));
    assert_eq!(
        v1::fetch_bytes(&server, &exp, &a, art["id"].as_str().unwrap(), None, 200),
        data
    );
}
