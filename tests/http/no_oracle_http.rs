//! No existence oracle (issue 9 §1), the examples over real HTTP
//! against the real binary: the dedup figures a worker sees do not change
//! with what *other* principals stored, on upload sessions and on plain raw
//! deposits alike, and another reader of an artifact sees only its content
//! figures.

use crate::support::v1;

use crate::support::server::*;
use serde_json::{Value, json};

const KIB12: usize = 12 << 10;

/// 12 KiB of compressible text, different per seed.
fn text(seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(KIB12);
    let mut n = seed;
    while out.len() < KIB12 {
        out.extend_from_slice(
            format!("line {n}: the store keeps one copy of each chunk\n").as_bytes(),
        );
        n += 1;
    }
    out.truncate(KIB12);
    out
}

/// Opens a session as `bearer`, sends `chunks` in one batch, commits them
/// in order; returns the 201 `Artifact`.
fn session_deposit(server: &Server, exp: &str, bearer: &str, chunks: &[Vec<u8>]) -> Value {
    let sid = v1::create_session(server, exp, bearer, &json!({}));
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let resp = v1::put_chunks(server, exp, bearer, &sid, v1::frames(&refs));
    assert_eq!(resp.status().as_u16(), 200);
    let whole = chunks.concat();
    expect_json(
        v1::commit(
            server,
            exp,
            bearer,
            &sid,
            &v1::commit_body(chunks, &v1::b3(&whole)),
        ),
        201,
    )
}

/// Worker A deposits 12 KiB of random bytes G. Workers without a grant (in
/// the same experiment and in another one) upload `[G', Q1, Q2, Q3, Y]`:
/// the figures are the same whether the guess G' is G or not.
#[test]
fn session_dedup_figures_do_not_reveal_a_right_guess() {
    let server = Server::start();
    let (exp, other_exp) = (exp_id(), exp_id());
    let (_, a) = register_worker(&server, &exp);
    let g = random_bytes(KIB12);
    v1::deposit_ok(&server, &exp, &a, &g);
    let expected = json!({
        "logical_bytes": 5 * KIB12,
        "chunks": 5,
        "new_chunks": 5,
        "new_raw_bytes": 5 * KIB12,
    });
    let mut seen = Vec::new();
    for (n, (e, guess_right)) in [
        (&exp, true),
        (&exp, false),
        (&other_exp, true),
        (&other_exp, false),
    ]
    .into_iter()
    .enumerate()
    {
        let (_, b) = register_worker(&server, e);
        let guess = if guess_right {
            g.clone()
        } else {
            random_bytes(KIB12)
        };
        let batch = vec![
            guess,
            random_bytes(KIB12),
            random_bytes(KIB12),
            random_bytes(KIB12),
            text(1000 * n as u64),
        ];
        let art = session_deposit(&server, e, &b, &batch);
        assert_eq!(art["dedup"], expected, "guess right: {guess_right}");
        seen.push(art["dedup"].clone());
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]));
}

/// A plain raw deposit of bytes someone else stored earlier answers exactly
/// like a deposit of fresh bytes of the same length, on v1 and on v0.
#[test]
fn raw_deposit_of_someone_elses_bytes_looks_fresh() {
    let server = Server::start();
    let exp = exp_id();
    let (_, a) = register_worker(&server, &exp);
    let (_, b) = register_worker(&server, &exp);
    // Random bytes and text, so compression choices are exercised too.
    let theirs = [random_bytes(300_000), text(7).repeat(20)].concat();
    v1::deposit_ok(&server, &exp, &a, &theirs);
    let fresh = [random_bytes(300_000), text(8).repeat(20)].concat();
    let known = v1::deposit_ok(&server, &exp, &b, &theirs);
    let unknown = v1::deposit_ok(&server, &exp, &b, &fresh);
    assert_eq!(known["dedup"]["new_raw_bytes"], json!(theirs.len()));
    assert_eq!(
        known["dedup"]["new_raw_bytes"],
        unknown["dedup"]["new_raw_bytes"]
    );
    assert_eq!(known["dedup"]["new_chunks"], known["dedup"]["chunks"]);
    // v0 answers carry no dedup figures at all; they are the same shape and
    // size either way.
    let v0_known = wire_deposit(&server, &exp, &b, &theirs);
    let v0_fresh = wire_deposit(&server, &exp, &b, &fresh);
    assert_eq!(v0_known, v0_fresh);
    // B depositing its own bytes again: nothing new for B.
    let again = v1::deposit_ok(&server, &exp, &b, &theirs);
    assert_eq!(again["dedup"]["new_chunks"], json!(0));
    assert_eq!(again["dedup"]["new_raw_bytes"], json!(0));
}

/// The v0 deposit answer without its URI.
fn wire_deposit(server: &Server, exp: &str, bearer: &str, bytes: &[u8]) -> Value {
    let resp = deposit(server, exp, bearer, bytes, Some("application/octet-stream"));
    let mut v = expect_json(resp, 201);
    v.as_object_mut().map(|m| m.remove("artifacts_uri"));
    v
}

/// The `new_*` figures are relative to what the depositor could read, so
/// a grantee sees only the content figures of someone else's artifact.
#[test]
fn grantees_see_content_figures_only() {
    let server = Server::start();
    let exp = exp_id();
    let (_, a) = register_worker(&server, &exp);
    let (wb, b) = register_worker(&server, &exp);
    let art = v1::deposit_ok(&server, &exp, &a, &random_bytes(100_000));
    let id = art["id"].as_str().unwrap();
    expect_json(v1::grant(&server, &exp, &a, id, &wb), 200);
    let seen_by_b = expect_json(
        v1::get(&server, &exp, &format!("/artifacts/{id}/meta"), &b),
        200,
    );
    assert_eq!(
        seen_by_b["dedup"],
        json!({ "logical_bytes": 100_000, "chunks": art["chunks"] })
    );
    let seen_by_a = expect_json(
        v1::get(&server, &exp, &format!("/artifacts/{id}/meta"), &a),
        200,
    );
    assert_eq!(seen_by_a["dedup"], art["dedup"]);
    assert_eq!(seen_by_a["dedup"]["new_raw_bytes"], json!(100_000));
}
