//! What a session refuses: bad frames (and nothing is committed), another
//! caller's session, batches and commits over the limits; and abandon.

use super::*;

#[test]
fn bad_frames_are_refused_and_nothing_is_committed() {
    let server = Server::start();
    let exp = exp_id();
    let (_, a) = register_worker(&server, &exp);
    let data = v1::noise(400_000, 12);
    let chunks = v1::chunks(&data);
    assert!(chunks.len() >= 3);
    let all = ids(&chunks);
    let sid = v1::create_session(&server, &exp, &a, &json!({}));

    // Frame 2 claims another id: 422; frame 1 stays received, frame 3 is not.
    let mut body = v1::frames(&[&chunks[0]]);
    let mut bad = v1::frames(&[&chunks[1]]);
    bad[0] ^= 1;
    body.extend(bad);
    body.extend(v1::frames(&[&chunks[2]]));
    v1::assert_problem(
        v1::put_chunks(&server, &exp, &a, &sid, body),
        422,
        "eden-cas://error/chunk-mismatch",
    );
    assert_eq!(
        v1::missing(&server, &exp, &a, &sid, &all[..3]),
        all[1..3].to_vec()
    );
    // Truncated frame, oversize length, zero length.
    let mut cut = v1::frames(&[&chunks[1]]);
    cut.truncate(cut.len() - 1);
    v1::assert_problem(
        v1::put_chunks(&server, &exp, &a, &sid, cut),
        422,
        "eden-cas://error/chunk-mismatch",
    );
    let mut huge = v1::frames(&[b"x"]);
    huge[32..36].copy_from_slice(&(300_000u32).to_le_bytes());
    v1::assert_problem(
        v1::put_chunks(&server, &exp, &a, &sid, huge),
        422,
        "eden-cas://error/chunk-mismatch",
    );
    let mut zero = v1::frames(&[b"x"]);
    zero[32..36].copy_from_slice(&0u32.to_le_bytes());
    zero.truncate(36);
    v1::assert_problem(
        v1::put_chunks(&server, &exp, &a, &sid, zero),
        422,
        "eden-cas://error/chunk-mismatch",
    );
    // Wrong media type.
    let wrong = send(
        v1::req(
            &server,
            Method::PUT,
            &exp,
            &format!("/uploads/{sid}/chunks"),
            &a,
        )
        .header("Content-Type", "application/octet-stream")
        .body(v1::frames(&[&chunks[1]])),
    );
    v1::assert_problem(wrong, 400, "eden://error/bad-request");
    assert_eq!(count_listed(&server, &exp), 0);

    // Commit while chunks are missing: 409, nothing recorded.
    let p = v1::assert_problem(
        v1::commit_content(&server, &exp, &a, &sid, &chunks, &data),
        409,
        "eden-cas://error/chunks-missing",
    );
    assert!(p["detail"].as_str().unwrap().contains(&all[1]));
    assert_eq!(count_listed(&server, &exp), 0);

    expect_json(
        v1::put_chunks(&server, &exp, &a, &sid, v1::frames(&refs(&chunks[1..]))),
        200,
    );
    // Wrong claimed digest: 422 and nothing recorded; the session stays open.
    let p = v1::assert_problem(
        v1::commit(
            &server,
            &exp,
            &a,
            &sid,
            &v1::commit_body(&chunks, &v1::b3(b"other")),
        ),
        422,
        "eden-cas://error/digest-mismatch",
    );
    assert!(
        p["detail"].as_str().unwrap().contains(&v1::b3(&data)),
        "{p}"
    );
    // A listed length that is not the chunk's: 422.
    let mut body = v1::commit_body(&chunks, &v1::b3(&data));
    body["chunks"][0][1] = json!(chunks[0].len() + 1);
    v1::assert_problem(
        v1::commit(&server, &exp, &a, &sid, &body),
        422,
        "eden-cas://error/chunk-mismatch",
    );
    // Malformed commit bodies.
    for bad in [
        json!({"chunks": [], "blake3": "nohex"}),
        json!({"chunks": [["zz", 1]], "blake3": format!("blake3:{}", v1::b3(b""))}),
        json!({"blake3": 1}),
    ] {
        v1::assert_problem(
            v1::commit(&server, &exp, &a, &sid, &bad),
            400,
            "eden://error/bad-request",
        );
    }
    assert_eq!(count_listed(&server, &exp), 0);
    let art = expect_json(
        v1::commit_content(&server, &exp, &a, &sid, &chunks, &data),
        201,
    );
    assert_eq!(
        v1::fetch_bytes(&server, &exp, &a, art["id"].as_str().unwrap(), None, 200),
        data
    );
    assert_eq!(count_listed(&server, &exp), 1);
}

#[test]
fn sessions_belong_to_their_creator_and_can_be_abandoned() {
    let server = Server::start();
    let exp = exp_id();
    let admin = server.admin_bearer();
    let (_, a) = register_worker(&server, &exp);
    let (_, b) = register_worker(&server, &exp);
    let chunk = v1::noise(20_000, 14);
    let sid = v1::create_session(&server, &exp, &a, &json!({}));
    expect_json(
        v1::put_chunks(&server, &exp, &a, &sid, v1::frames(&[&chunk])),
        200,
    );

    // Another worker, or the creator through another experiment: 404 everywhere.
    let exp2 = exp_id();
    let path = format!("/uploads/{sid}");
    for (bearer, e) in [(&b, &exp), (&admin, &exp2)] {
        v1::assert_problem(
            v1::get(&server, e, &path, bearer),
            404,
            "eden://error/not-found",
        );
        v1::assert_problem(
            v1::post_json(
                &server,
                e,
                &format!("{path}/missing"),
                bearer,
                &json!({"chunks": [v1::b3(&chunk)]}),
            ),
            404,
            "eden://error/not-found",
        );
        v1::assert_problem(
            v1::put_chunks(&server, e, bearer, &sid, v1::frames(&[&chunk])),
            404,
            "eden://error/not-found",
        );
        v1::assert_problem(
            v1::commit(
                &server,
                e,
                bearer,
                &sid,
                &v1::commit_body(std::slice::from_ref(&chunk), &v1::b3(&chunk)),
            ),
            404,
            "eden://error/not-found",
        );
        v1::assert_problem(
            v1::delete(&server, e, &path, bearer),
            404,
            "eden://error/not-found",
        );
    }
    v1::assert_problem(
        v1::get(&server, &exp, "/uploads/nothex", &a),
        404,
        "eden://error/not-found",
    );
    v1::assert_problem(
        v1::get(&server, &exp, &format!("/uploads/{}", "0".repeat(32)), &a),
        404,
        "eden://error/not-found",
    );
    // The admin may look after a worker's session.
    let st = expect_json(v1::get(&server, &exp, &path, &admin), 200);
    assert_eq!(st["received_chunks"], json!(1));
    assert_eq!(st["received_bytes"], json!(20_000));
    // Bad create bodies.
    for bad in [
        json!({"expires_in": "never"}),
        json!({"filename": ""}),
        json!({"colour": "red"}),
    ] {
        v1::assert_problem(
            v1::post_json(&server, &exp, "/uploads", &a, &bad),
            400,
            "eden://error/bad-request",
        );
    }

    // Abandon: 204, then 410; the creator can start over.
    assert_eq!(v1::delete(&server, &exp, &path, &a).status().as_u16(), 204);
    v1::assert_problem(
        v1::get(&server, &exp, &path, &a),
        410,
        "eden-cas://error/session-expired",
    );
    v1::assert_problem(
        v1::delete(&server, &exp, &path, &a),
        410,
        "eden-cas://error/session-expired",
    );
    let sid2 = v1::create_session(&server, &exp, &a, &json!({}));
    assert_eq!(
        v1::missing(&server, &exp, &a, &sid2, &[v1::b3(&chunk)]).len(),
        1,
        "pins of the abandoned session do not carry over"
    );
}

#[test]
fn batch_and_commit_size_limits() {
    let server = Server::start_with(&[
        "--max-artifact-bytes",
        "300000",
        "--pack-target-bytes",
        "1MiB",
    ]);
    let exp = exp_id();
    let (_, a) = register_worker(&server, &exp);
    let sid = v1::create_session(&server, &exp, &a, &json!({}));
    let s = expect_json(v1::get(&server, &exp, &format!("/uploads/{sid}"), &a), 200);
    assert_eq!(s["max_batch_bytes"], json!(1 << 20));
    // 5 frames of 250 000 bytes: a session that claimed no size may receive
    // at most max-artifact-bytes (300 000), so the second frame crosses the
    // session's allowance — 413, and the refused batch keeps nothing.
    let parts: Vec<Vec<u8>> = (0..5).map(|i| v1::noise(250_000, 20 + i)).collect();
    let resp = v1::put_chunks(&server, &exp, &a, &sid, v1::frames(&refs(&parts)));
    v1::assert_problem(resp, 413, "eden://error/payload-too-large");
    let all = ids(&parts);
    assert_eq!(v1::missing(&server, &exp, &a, &sid, &all), all.to_vec());
    // The refused batch counts for nothing: the first frame alone fits.
    let resp = v1::put_chunks(&server, &exp, &a, &sid, v1::frames(&refs(&parts[..1])));
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(
        v1::missing(&server, &exp, &a, &sid, &all),
        all[1..].to_vec()
    );
    // A commit listing more than max-artifact-bytes: 413 before any work.
    let body = v1::commit_body(
        &parts[..2],
        &v1::b3(&[parts[0].clone(), parts[1].clone()].concat()),
    );
    v1::assert_problem(
        v1::commit(&server, &exp, &a, &sid, &body),
        413,
        "eden://error/payload-too-large",
    );
    let one = v1::commit_body(&parts[..1], &v1::b3(&parts[0]));
    expect_json(v1::commit(&server, &exp, &a, &sid, &one), 201);
}
