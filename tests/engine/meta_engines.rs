//! The metadata engine contract (`src/meta/kv.rs`), checked the same way
//! on RocksDB and on PostgreSQL: ordered scans every way, atomic writes in
//! order, range deletes, and PostgreSQL's schema versioning (a schema
//! behind or ahead of this binary is refused with the fix named). Runs in
//! every suite run: PostgreSQL is always there under scripts/test.sh.

use std::sync::Arc;

use eden_cas::meta::kv::{Kv, Op, ScanSpec};
use eden_cas::meta::postgres::Postgres;
use eden_cas::meta::rocks::Rocks;
use eden_cas::meta::{CF_CHUNKS, CF_SYSTEM, Meta, MetaError};

use crate::support::pg;

fn put(k: &[u8], v: &[u8]) -> Op {
    Op::Put(CF_CHUNKS, k.to_vec(), v.to_vec())
}

fn keys(kv: &dyn Kv, spec: ScanSpec<'_>) -> Vec<Vec<u8>> {
    kv.scan(CF_CHUNKS, spec)
        .map(|r| r.expect("scan row").0)
        .collect()
}

/// The whole contract, on one engine.
fn contract(kv: &dyn Kv) {
    // Keys chosen to trip any ordering that is not bytewise: 0x00, 0xff,
    // prefixes of each other, and a run of 300 (past a first scan page).
    let mut ops = vec![
        put(b"a", b"1"),
        put(b"a\x00", b"2"),
        put(b"ab", b"3"),
        put(b"b", b"4"),
        put(b"\xff", b"5"),
        put(b"\xff\xff", b"6"),
    ];
    for i in 0..300u32 {
        ops.push(put(&[b"m".as_slice(), &i.to_be_bytes()].concat(), b"x"));
    }
    // Later ops win, as a batch is applied in order.
    ops.push(put(b"b", b"4b"));
    ops.push(Op::Delete(CF_CHUNKS, b"ab".to_vec()));
    ops.push(put(b"ab", b"3b"));
    kv.write(ops, true).unwrap();

    assert_eq!(kv.get(CF_CHUNKS, b"b").unwrap(), Some(b"4b".to_vec()));
    assert_eq!(kv.get(CF_CHUNKS, b"ab").unwrap(), Some(b"3b".to_vec()));
    assert_eq!(kv.get(CF_CHUNKS, b"zz").unwrap(), None);
    assert_eq!(
        kv.get(CF_SYSTEM, b"b").unwrap(),
        None,
        "tables are separate"
    );
    assert_eq!(
        kv.multi_get(CF_CHUNKS, &[b"b", b"nope", b"a"]).unwrap(),
        vec![Some(b"4b".to_vec()), None, Some(b"1".to_vec())]
    );

    let all = keys(kv, ScanSpec::all());
    assert_eq!(all.len(), 306);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "ascending, bytewise");
    assert_eq!(
        &all[..3],
        &[b"a".to_vec(), b"a\x00".to_vec(), b"ab".to_vec()]
    );
    assert_eq!(all[all.len() - 1], b"\xff\xff".to_vec());

    let rev = keys(
        kv,
        ScanSpec {
            reverse: true,
            ..ScanSpec::all()
        },
    );
    assert_eq!(rev, all.iter().rev().cloned().collect::<Vec<_>>());

    assert_eq!(
        keys(kv, ScanSpec::prefix(b"a")),
        vec![b"a".to_vec(), b"a\x00".to_vec(), b"ab".to_vec()]
    );
    assert_eq!(keys(kv, ScanSpec::prefix(b"m")).len(), 300);
    assert_eq!(
        keys(kv, ScanSpec::prefix(b"\xff")),
        vec![b"\xff".to_vec(), b"\xff\xff".to_vec()]
    );
    // Reverse under a prefix, from its end and from inside it.
    let m_rev = keys(
        kv,
        ScanSpec {
            prefix: Some(b"m"),
            reverse: true,
            from: None,
        },
    );
    assert_eq!(m_rev.len(), 300);
    assert_eq!(m_rev[0], [b"m".as_slice(), &299u32.to_be_bytes()].concat());
    let from = [b"m".as_slice(), &10u32.to_be_bytes()].concat();
    let below = keys(
        kv,
        ScanSpec {
            prefix: Some(b"m"),
            reverse: true,
            from: Some(&from),
        },
    );
    assert_eq!(below.len(), 11, "keys <= from, under the prefix");
    assert_eq!(below[0], from);
    let above = keys(
        kv,
        ScanSpec {
            prefix: Some(b"m"),
            reverse: false,
            from: Some(&from),
        },
    );
    assert_eq!(above.len(), 290);
    assert_eq!(keys(kv, ScanSpec::from(b"b")).len(), 303);

    // A range delete removes [from, to) and nothing else.
    let to = [b"m".as_slice(), &200u32.to_be_bytes()].concat();
    kv.write(vec![Op::DeleteRange(CF_CHUNKS, from.clone(), to)], false)
        .unwrap();
    assert_eq!(keys(kv, ScanSpec::prefix(b"m")).len(), 110);
    assert_eq!(kv.get(CF_CHUNKS, &from).unwrap(), None);
}

#[test]
fn rocksdb_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&Rocks::open(dir.path()).unwrap());
}

#[test]
fn postgresql_keeps_the_contract() {
    let schema = pg::new_schema();
    contract(&Postgres::open(&schema.settings).unwrap());
}

#[test]
fn a_failed_postgresql_write_applies_nothing() {
    let schema = pg::new_schema();
    let kv = Postgres::open(&schema.settings).unwrap();
    kv.write(vec![put(b"k", b"old")], true).unwrap();
    // The second statement fails (a table that is not there): the first,
    // already executed in the transaction, must not stay.
    let err = kv
        .write(
            vec![
                put(b"k", b"new"),
                Op::Put("no-such-table", b"x".to_vec(), vec![]),
            ],
            true,
        )
        .unwrap_err();
    assert!(matches!(err, MetaError::Postgres(_)), "{err}");
    assert_eq!(kv.get(CF_CHUNKS, b"k").unwrap(), Some(b"old".to_vec()));
}

#[test]
fn postgresql_schemas_behind_or_ahead_of_the_binary_are_refused() {
    // Behind: a schema with no migrations applied names `eden-cas migrate`.
    let name = format!("t_{}", ulid::Ulid::new().to_string().to_lowercase());
    let admin = pg::admin();
    pg::sql(&admin, &format!("CREATE SCHEMA {name}"));
    let settings = pg::settings(&name);
    let err = Postgres::open(&settings).err().unwrap().to_string();
    assert!(
        err.contains("version 0") && err.contains("eden-cas migrate"),
        "{err}"
    );
    let pg = Postgres::connect(&settings).unwrap();
    let v = pg.migrate().unwrap();
    assert_eq!(v.applied, v.supported);
    assert_eq!(pg.migrate().unwrap(), v, "migrating twice changes nothing");
    let meta = Meta::over(Arc::new(Postgres::open(&settings).unwrap())).unwrap();
    assert!(meta.describe().contains(&name));

    // Ahead: a migration this binary does not know is refused, untouched.
    pg::sql(
        &admin,
        &format!(
            "INSERT INTO {name}.eden_cas_schema_history (version, name, applied_on, checksum) \
             VALUES (999, 'future', '2026-12-01T00:00:00Z', '0')"
        ),
    );
    let err = Postgres::open(&settings).err().unwrap().to_string();
    assert!(
        err.contains("version 999") && err.contains("newer"),
        "{err}"
    );
    let err = Postgres::connect(&settings)
        .unwrap()
        .migrate()
        .unwrap_err()
        .to_string();
    assert!(err.contains("refusing"), "{err}");

    // A login that may not write the tables is refused at open.
    let (ro_url, ro_pw) = (
        std::env::var("EDEN_CAS_TEST_PG_RO_URL").unwrap(),
        std::env::var("EDEN_CAS_TEST_PG_RO_PASSWORD").unwrap(),
    );
    pg::sql(
        &admin,
        &format!(
            "DELETE FROM {name}.eden_cas_schema_history WHERE version = 999; \
             GRANT USAGE ON SCHEMA {name} TO eden_ro; \
             GRANT SELECT ON ALL TABLES IN SCHEMA {name} TO eden_ro"
        ),
    );
    let env = move |k: &str| (k == "PGPASSWORD").then(|| ro_pw.clone());
    let ro = eden_cas::meta::postgres::PgSettings::from_url(
        &format!("{ro_url}?options=-csearch_path%3D{name}"),
        None,
        None,
        &env,
    )
    .unwrap();
    let err = Postgres::open(&ro).err().unwrap().to_string();
    assert!(
        err.contains("may not read and write") && err.contains("grant SELECT"),
        "{err}"
    );
}

/// Two stores on one schema (two nodes): a check-then-write lock held by
/// one keeps the other waiting until it is dropped; other kinds are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_locks_exclude_across_stores_on_one_schema() {
    use eden_cas::meta::lock::LockKind;
    use std::time::Duration;
    let schema = pg::new_schema();
    let (a, b) = (schema.meta(), schema.meta());
    let held = a.lock(LockKind::Artifacts).await.unwrap();
    let waiting = tokio::spawn(async move {
        let g = b.lock(LockKind::Artifacts).await.unwrap();
        drop(g);
        b
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "the second node got the lock while the first held it"
    );
    // Another kind is not blocked by it.
    let other = a.lock(LockKind::Registry).await.unwrap();
    drop(other);
    drop(held);
    let b = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the lock is released on drop")
        .unwrap();
    // And it can be taken again on either side.
    drop(b.lock(LockKind::Artifacts).await.unwrap());
    drop(a.lock(LockKind::Artifacts).await.unwrap());
}
