//! Bad and stalled clients get a bounded answer and cannot hold resources
//! (issue 9, section 2), over real HTTP against the real binary:
//!
//! - a client over the size cap that then pauses gets its 413 at once;
//! - a declared `Content-Length` over the limit is refused before the body,
//!   and `Expect: 100-continue` gets 401/400/413 instead of `100 Continue`;
//! - a body that stalls is cut after `body-idle-timeout`, the connection is
//!   closed, and nothing stays held (ingest state, pins, open packs,
//!   reservations);
//! - upload sessions honour their claimed size and the cap as bytes arrive.
//!
//! Quotas are in `tests/http/quota.rs`.

use crate::support::raw;
use crate::support::v1;

use std::time::{Duration, Instant};

use crate::support::server::*;
use raw::{Raw, std_headers};
use serde_json::{Value, json};

const MIB: usize = 1 << 20;

fn inflight(server: &Server) -> Value {
    expect_json(
        send(
            server
                .client()
                .get(format!("{}/cas/v1/admin/inflight", server.base_url()))
                .header("Authorization", format!("Bearer {}", server.admin_bearer())),
        ),
        200,
    )
}

/// Waits (briefly) until no in-flight operation holds anything.
fn assert_nothing_held(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = inflight(server);
        let idle =
            json!({"operations": 0, "pinned_chunks": 0, "open_packs": 0, "reserved_bytes": 0});
        if v == idle {
            return;
        }
        assert!(Instant::now() < deadline, "still held after the cut: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn over_cap_then_paused_gets_413_at_once_declared_or_chunked() {
    let server = Server::start_with(&["--max-artifact-bytes", "1MiB"]);
    let exp = exp_id();
    let admin = server.admin_bearer();
    let path = format!("/cas/v1/experiments/{exp}/artifacts");

    // The example: 32 MiB declared, 2 MiB sent, socket kept open.
    let mut c = Raw::connect(&server);
    let mut h = std_headers(&exp, &admin);
    h.push(("Content-Length", "33554432".into()));
    c.head("POST", &path, &h);
    let started = Instant::now();
    c.send(&v1::noise(2 * MIB, 1));
    let head = c.read_head(Duration::from_secs(30)).expect("an answer");
    let took = started.elapsed();
    assert_eq!(head.status, 413);
    assert!(took < Duration::from_secs(10), "413 took {took:?}");
    assert_eq!(head.header("connection"), Some("close"));
    assert!(
        c.closed_within(Duration::from_secs(15)),
        "connection kept open"
    );
    eprintln!("declared 32 MiB, 2 MiB sent, paused: 413 after {took:?}");

    // No declared length: the cap is found as bytes arrive.
    let mut c = Raw::connect(&server);
    let mut h = std_headers(&exp, &admin);
    h.push(("Transfer-Encoding", "chunked".into()));
    c.head("POST", &path, &h);
    let started = Instant::now();
    for piece in v1::noise(2 * MIB, 2).chunks(64 << 10) {
        if !c.send_chunk(piece) {
            break;
        }
    }
    let head = c.read_head(Duration::from_secs(30)).expect("an answer");
    let took = started.elapsed();
    assert_eq!(head.status, 413);
    assert!(took < Duration::from_secs(10), "413 took {took:?}");
    eprintln!("chunked, 2 MiB sent, paused: 413 after {took:?}");

    // The same on /v0/ (multipart).
    let mut c = Raw::connect(&server);
    let mut h = std_headers(&exp, &admin);
    h.push(("Content-Type", "multipart/form-data; boundary=XyZ".into()));
    h.push(("Transfer-Encoding", "chunked".into()));
    c.head("POST", &format!("/v0/experiments/{exp}/artifacts"), &h);
    c.send_chunk(
        b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\
          Content-Type: application/octet-stream\r\n\r\n",
    );
    for piece in v1::noise(2 * MIB, 3).chunks(64 << 10) {
        if !c.send_chunk(piece) {
            break;
        }
    }
    let head = c.read_head(Duration::from_secs(30)).expect("an answer");
    assert_eq!(head.status, 413);

    assert_nothing_held(&server);
    v1::deposit_ok(&server, &exp, &admin, b"still serving");
}

#[test]
fn declared_length_over_the_limit_is_refused_before_the_body() {
    let server = Server::start_with(&["--max-artifact-bytes", "1MiB"]);
    let exp = exp_id();
    let admin = server.admin_bearer();
    // Not a byte of body is sent: the answer must come anyway.
    let cases = [
        (
            "POST",
            format!("/cas/v1/experiments/{exp}/artifacts"),
            2 * MIB as u64,
        ),
        (
            "POST",
            format!("/v0/experiments/{exp}/artifacts"),
            (MIB + (128 << 10)) as u64,
        ),
        (
            "PUT",
            format!("/cas/v1/experiments/{exp}/uploads/00000000000000000000000000000000/chunks"),
            1 << 30,
        ),
    ];
    for (method, path, len) in &cases {
        let mut c = Raw::connect(&server);
        let mut h = std_headers(&exp, &admin);
        h.push(("Content-Length", len.to_string()));
        h.push(("Content-Type", "application/vnd.eden-cas.chunks".into()));
        c.head(method, path, &h);
        let head = c
            .read_head(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{method} {path}: no answer before the body"));
        assert_eq!(head.status, 413, "{method} {path}");
    }
}

#[test]
fn expect_100_continue_is_judged_before_the_body() {
    let server = Server::start_with(&["--max-artifact-bytes", "1MiB"]);
    let exp = exp_id();
    let admin = server.admin_bearer();
    let (worker_id, worker) = register_worker(&server, &exp);
    let v1_path = format!("/cas/v1/experiments/{exp}/artifacts");
    let v0_path = format!("/v0/experiments/{exp}/artifacts");
    let ask = |path: &str, bearer: &str, exp_header: &str, len: usize| {
        let mut c = Raw::connect(&server);
        let mut h = std_headers(exp_header, bearer);
        h.push(("Content-Length", len.to_string()));
        h.push(("Expect", "100-continue".into()));
        h.push(("Content-Type", "multipart/form-data; boundary=XyZ".into()));
        c.head("POST", path, &h);
        let head = c.read_head(Duration::from_secs(10)).expect("an answer");
        (c, head.status)
    };
    let wrong = format!("admin:{}", random_hex(32));
    let bad_worker = format!("{worker_id}:{}", random_hex(32));
    for path in [&v1_path, &v0_path] {
        assert_eq!(
            ask(path, &wrong, &exp, 10).1,
            401,
            "{path}: wrong admin token"
        );
        assert_eq!(
            ask(path, &bad_worker, &exp, 10).1,
            401,
            "{path}: wrong worker token"
        );
        assert_eq!(
            ask(path, "nonsense", &exp, 10).1,
            401,
            "{path}: malformed bearer"
        );
        assert_eq!(
            ask(path, &admin, "exp_other", 10).1,
            400,
            "{path}: header mismatch"
        );
        assert_eq!(
            ask(path, &worker, &exp, 2 * MIB).1,
            413,
            "{path}: over the cap"
        );
    }
    // A good request is told to continue, and completes.
    let (mut c, status) = ask(&v1_path, &worker, &exp, 5);
    assert_eq!(status, 100);
    c.send(b"hello");
    let head = c.read_head(Duration::from_secs(10)).expect("final answer");
    assert_eq!(head.status, 201);
}

#[test]
fn stalled_bodies_are_cut_and_release_everything() {
    let server = Server::start_with(&["--body-idle-timeout", "1s"]);
    let exp = exp_id();
    let admin = server.admin_bearer();
    let sid = v1::create_session(&server, &exp, &admin, &json!({}));
    let frames = v1::frames(&[&v1::noise(60_000, 7), &v1::noise(60_000, 8)]);
    let boundary_head = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; \
                          filename=\"a\"\r\n\r\n"
        .to_vec();
    let mut noise = v1::noise(3 * MIB, 9);
    let mut v0_body = boundary_head;
    v0_body.append(&mut noise);
    let commit_part = b"{\"chunks\":[[\"".to_vec();
    // (method, path, content type, what is sent, how much more is declared)
    let cases: Vec<(&str, String, &str, Vec<u8>, usize)> = vec![
        (
            "POST",
            format!("/cas/v1/experiments/{exp}/artifacts"),
            "application/octet-stream",
            v1::noise(3 * MIB, 10),
            4 * MIB,
        ),
        (
            "POST",
            format!("/v0/experiments/{exp}/artifacts"),
            "multipart/form-data; boundary=XyZ",
            v0_body,
            4 * MIB,
        ),
        (
            "PUT",
            format!("/cas/v1/experiments/{exp}/uploads/{sid}/chunks"),
            "application/vnd.eden-cas.chunks",
            frames[..frames.len() - 1000].to_vec(),
            1000,
        ),
        (
            "POST",
            format!("/cas/v1/experiments/{exp}/uploads/{sid}/commit"),
            "application/json",
            commit_part,
            1000,
        ),
        (
            "POST",
            format!("/v0/experiments/{exp}/workers"),
            "application/json",
            b"{\"name\":".to_vec(),
            100,
        ),
    ];
    for (method, path, ct, partial, more) in cases {
        let mut c = Raw::connect(&server);
        let mut h = std_headers(&exp, &admin);
        h.push(("Content-Type", ct.into()));
        h.push(("Content-Length", (partial.len() + more).to_string()));
        c.head(method, &path, &h);
        assert!(c.send(&partial));
        let started = Instant::now();
        let head = c
            .read_head(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{method} {path}: no answer to a stalled body"));
        let took = started.elapsed();
        assert_eq!(head.status, 400, "{method} {path}");
        assert!(
            took < Duration::from_secs(10),
            "{method} {path}: cut after {took:?}"
        );
        assert!(
            c.closed_within(Duration::from_secs(15)),
            "{method} {path}: connection kept open"
        );
    }
    // The stalled batch pinned nothing; nothing is held anywhere.
    let status = expect_json(
        v1::get(&server, &exp, &format!("/uploads/{sid}"), &admin),
        200,
    );
    assert_eq!(status["received_chunks"], 0, "{status}");
    assert_nothing_held(&server);
    // GC finds nothing to keep for the cut uploads.
    let gc = expect_json(
        send(
            server
                .client()
                .post(format!("{}/cas/v1/admin/gc", server.base_url()))
                .header("Authorization", format!("Bearer {admin}")),
        ),
        200,
    );
    assert_eq!(gc["chunks_kept_pinned"], 0, "{gc}");
    // Still serving.
    v1::deposit_ok(&server, &exp, &admin, b"after the stalls");
}

#[test]
fn sessions_honour_their_claim_and_the_cap_as_bytes_arrive() {
    let server = Server::start_with(&["--max-artifact-bytes", "4MiB"]);
    let exp = exp_id();
    let admin = server.admin_bearer();

    // A claim over the cap is refused at creation, before any chunk.
    let r = v1::post_json(
        &server,
        &exp,
        "/uploads",
        &admin,
        &json!({"size": 20 * MIB}),
    );
    v1::assert_problem(r, 413, "eden://error/payload-too-large");

    // A session receives at most its claim.
    let data = v1::noise(600_000, 21);
    let chunks = v1::chunks(&data);
    assert!(chunks.len() >= 3, "need several chunks");
    let claim = chunks[0].len() + chunks[1].len();
    let created = expect_json(
        v1::post_json(&server, &exp, "/uploads", &admin, &json!({"size": claim})),
        201,
    );
    assert_eq!(created["size"], claim);
    assert_eq!(created["max_bytes"], claim);
    let sid = created["session_id"].as_str().expect("sid").to_string();
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let r = v1::put_chunks(&server, &exp, &admin, &sid, v1::frames(&refs[..2]));
    assert_eq!(r.status(), 200);
    // Re-sending what it has costs nothing; a new chunk is past the claim.
    let r = v1::put_chunks(&server, &exp, &admin, &sid, v1::frames(&refs[..2]));
    assert_eq!(r.status(), 200);
    let r = v1::put_chunks(&server, &exp, &admin, &sid, v1::frames(&refs[2..3]));
    v1::assert_problem(r, 413, "eden://error/payload-too-large");
    let status = expect_json(
        v1::get(&server, &exp, &format!("/uploads/{sid}"), &admin),
        200,
    );
    assert_eq!(status["received_bytes"], claim);
    // A commit listing more than the claim is refused as it streams.
    let body = v1::commit_body(&chunks, &v1::b3(&data));
    let r = v1::commit(&server, &exp, &admin, &sid, &body);
    v1::assert_problem(r, 413, "eden://error/payload-too-large");

    // Without a claim (older clients) the cap counts, across batches.
    let big = v1::noise(5 * MIB, 22);
    let big_chunks = v1::chunks(&big);
    let sid = v1::create_session(&server, &exp, &admin, &json!({}));
    let half = big_chunks.len() / 2;
    let refs: Vec<&[u8]> = big_chunks.iter().map(Vec::as_slice).collect();
    let r = v1::put_chunks(&server, &exp, &admin, &sid, v1::frames(&refs[..half]));
    assert_eq!(r.status(), 200);
    let r = v1::put_chunks(&server, &exp, &admin, &sid, v1::frames(&refs[half..]));
    v1::assert_problem(r, 413, "eden://error/payload-too-large");
    let status = expect_json(
        v1::get(&server, &exp, &format!("/uploads/{sid}"), &admin),
        200,
    );
    assert!(status["received_bytes"].as_u64().expect("bytes") <= 4 * MIB as u64);
}
