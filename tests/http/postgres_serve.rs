//! `serve` on a PostgreSQL metadata store, as an operator runs it: a new
//! schema migrated at startup (`--migrate true`), the password from a file,
//! deposits (one large enough for packs of its own, one small enough for a
//! group commit, one through an upload session) that read back after a
//! kill -9 and a restart, with nothing written to `<data-dir>/meta`.

use crate::support::server::*;
use crate::support::{noise, pg, v1};

#[test]
fn serve_on_postgresql_keeps_every_record_across_a_kill_and_restart() {
    let schema = format!("t_{}", ulid::Ulid::new().to_string().to_lowercase());
    pg::sql(&pg::admin(), &format!("CREATE SCHEMA {schema}"));
    let (url, password) = pg::server();
    let secrets = tempfile::tempdir().unwrap();
    let pw_file = secrets.path().join("pg-password");
    std::fs::write(&pw_file, format!("{password}\n")).unwrap();
    let store = format!("{url}?options=-csearch_path%3D{schema}");
    let pw_arg = pw_file.to_string_lossy().into_owned();
    let mut server = Server::start_with(&[
        "--meta-store",
        &store,
        "--meta-store-password-file",
        &pw_arg,
        "--migrate",
        "true",
    ]);
    let exp = exp_id();
    let (_, worker) = register_worker(&server, &exp);
    let big = noise(3 << 20, 61);
    let small = noise(4000, 62);
    let a = v1::deposit_ok(&server, &exp, &worker, &big);
    let b = v1::deposit_ok(&server, &exp, &worker, &small);
    let id = |v: &serde_json::Value| v["id"].as_str().unwrap().to_string();
    let (a_id, b_id) = (id(&a), id(&b));
    let data = big[..1 << 20].to_vec();
    let chunks = v1::chunks(&data);
    let sid = v1::create_session(&server, &exp, &worker, &serde_json::json!({}));
    let parts: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
    expect_json(
        v1::put_chunks(&server, &exp, &worker, &sid, v1::frames(&parts)),
        200,
    );
    let c = expect_json(
        v1::commit_content(&server, &exp, &worker, &sid, &chunks, &data),
        201,
    );
    let c_id = id(&c);

    server.kill9();
    server.restart();
    assert!(
        !server.data_dir().join("meta").exists(),
        "no RocksDB directory is made on PostgreSQL"
    );
    assert_eq!(
        v1::fetch_bytes(&server, &exp, &worker, &a_id, None, 200),
        big
    );
    assert_eq!(
        v1::fetch_bytes(&server, &exp, &worker, &b_id, None, 200),
        small
    );
    assert_eq!(
        v1::fetch_bytes(&server, &exp, &worker, &c_id, None, 200),
        data
    );
    // The worker's token and the records came back from PostgreSQL.
    let meta = expect_json(
        v1::get(&server, &exp, &format!("/artifacts/{a_id}/meta"), &worker),
        200,
    );
    assert_eq!(meta, a);
    assert!(!server.stderr_tail().contains(&password));
}
