//! Backup → restore, the refusal to restore over metadata, the automatic
//! reindex of `open_engine` on a new metadata directory, and one end-to-end
//! run of the binary (`POST /cas/v1/admin/backup`, `restore`, `reindex`).

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_then_restore_brings_records_back_and_reports_later_content() {
    let store = Store::new();
    let engine = store.engine();
    if crate::support::engine::on_postgres() {
        // PostgreSQL is backed up with its own tools: a clear refusal.
        let err = engine.backup().await.unwrap_err().to_string();
        assert!(
            err.contains("PostgreSQL") && err.contains("reindex"),
            "{err}"
        );
        return;
    }
    let (worker, token) = engine
        .register_worker(EXP, Some("trainer".into()), BTreeMap::new())
        .await
        .unwrap();
    let w = worker.worker_id.to_string();
    let all = contents();
    let (a1, _) = deposit(&engine, "admin", &all[0]).await;
    let r1 = engine
        .grant(EXP, &Principal::Admin, &a1, &MemberId::parse(&w).unwrap())
        .await
        .unwrap();
    let (a2, r2) = deposit(&engine, &w, &all[1]).await;

    let made = engine.backup().await.unwrap();
    assert!(made.files > 0 && made.bytes > 0, "{made:?}");
    let index = store.path_of(&keys::backup_file(&made.name, BACKUP_INDEX));
    let index: Value = serde_json::from_slice(&std::fs::read(index).unwrap()).unwrap();
    assert_eq!(index["name"], Value::from(made.name.clone()));
    assert_eq!(index["files"].as_array().unwrap().len() as u64, made.files);
    // The checkpoint directory is gone.
    assert!(!store.data.join("meta.backup-checkpoint").exists());

    // Committed after the backup: overlapping content plus new bytes.
    let (a3, r3) = deposit(&engine, &w, &all[2]).await;
    // A backup that never completed is ignored.
    let stray = store.path_of(&keys::backup_file("29991231T235959Z", "000001.sst"));
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, b"half").unwrap();

    store.wipe_meta(engine);
    let listing = backup::list_backups(&store.blobs()).await.unwrap();
    assert_eq!(listing.complete, vec![made.name.clone()]);
    assert_eq!(listing.incomplete, vec!["29991231T235959Z".to_string()]);
    let restored = backup::restore_backup(&store.blobs(), &store.meta_dir(), &made.name)
        .await
        .unwrap();
    assert_eq!((restored.files, restored.bytes), (made.files, made.bytes));
    assert!(!store.data.join("meta.restoring").exists());

    let engine = store.engine();
    // Whoever opens restored metadata first owes it a reindex.
    assert!(recovery::reindex_pending(engine.meta()).unwrap());
    let report = reindex(&engine).await;
    assert!(!recovery::reindex_pending(engine.meta()).unwrap());
    // Records from before the backup, with their grants and digests.
    let admin = Principal::Admin;
    let back1 = engine.readable_artifact(EXP, &admin, &a1).await.unwrap();
    let back2 = engine.readable_artifact(EXP, &admin, &a2).await.unwrap();
    assert_eq!((back1.record(), back2.record()), (&r1, &r2));
    assert_eq!(read_all(&engine, &back1).await, all[0]);
    assert_eq!(read_all(&engine, &back2).await, all[1]);
    assert_eq!(r1.grants, vec![MemberId::parse(&w).unwrap()]);
    // The registry and the token-hashing key came back: the token works.
    let creds = Credentials {
        principal: Principal::Worker(WorkerId::parse(&w).unwrap()),
        secret: token,
    };
    assert!(engine.authenticate(EXP, &creds).await.is_ok());
    // The later artifact has no record, but its content is intact and listed.
    assert!(matches!(
        engine.readable_artifact(EXP, &admin, &a3).await,
        Err(EngineError::NotFound)
    ));
    assert_eq!(report.artifacts, 2);
    assert_eq!(report.artifacts_without_manifest, 0);
    assert_eq!(report.unclaimed_manifests.len(), 1);
    let u = &report.unclaimed_manifests[0];
    assert_eq!(
        (u.id, u.size, u.blake3),
        (r3.manifest, all[2].len() as u64, r3.blake3)
    );
    assert_eq!(read_manifest(&engine, &u.id).await, all[2]);
    // Its packs, written after the backup, were indexed: nothing is missing.
    let m = engine.meta().manifest(&u.id).unwrap().unwrap();
    for s in &m.segments {
        let seg = engine.meta().segment(&s.id).unwrap().unwrap();
        let ids: Vec<Digest> = seg.entries.iter().map(|e| e.id).collect();
        assert!(
            engine
                .meta()
                .chunks(&ids)
                .unwrap()
                .iter()
                .all(Option::is_some)
        );
    }
    store.close(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_non_empty_meta_dir() {
    let store = Store::new();
    let engine = store.engine();
    if crate::support::engine::on_postgres() {
        return; // RocksDB backups only (see the test above).
    }
    deposit(&engine, "admin", &noise(10_000, 5)).await;
    let made = engine.backup().await.unwrap();
    store.close(engine);
    let before = std::fs::read_dir(store.meta_dir()).unwrap().count();
    let err = backup::restore_backup(&store.blobs(), &store.meta_dir(), &made.name)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::AlreadyExists), "{err:?}");
    assert_eq!(std::fs::read_dir(store.meta_dir()).unwrap().count(), before);
    // An empty directory is fine.
    std::fs::remove_dir_all(store.meta_dir()).unwrap();
    std::fs::create_dir(store.meta_dir()).unwrap();
    backup::restore_backup(&store.blobs(), &store.meta_dir(), &made.name)
        .await
        .unwrap();
    // A damaged backup file is refused, and nothing is left behind.
    std::fs::remove_dir_all(store.meta_dir()).unwrap();
    let idx: Value = serde_json::from_slice(
        &std::fs::read(store.path_of(&keys::backup_file(&made.name, BACKUP_INDEX))).unwrap(),
    )
    .unwrap();
    let largest = idx["files"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|f| f["bytes"].as_u64().unwrap())
        .unwrap();
    let path = store.path_of(&keys::backup_file(
        &made.name,
        largest["name"].as_str().unwrap(),
    ));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = backup::restore_backup(&store.blobs(), &store.meta_dir(), &made.name)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Integrity(_)), "{err:?}");
    assert!(!store.meta_dir().exists());
    assert!(!store.data.join("meta.restoring").exists());
}

fn config(data: &Path) -> Config {
    let mut settings = Settings::default();
    settings.server.data_dir = Some(data.to_path_buf());
    Config::from_settings(&settings).unwrap()
}

#[test]
fn open_engine_reindexes_a_new_meta_dir_over_an_existing_blob_store() {
    let store = Store::new();
    let cfg = config(&store.data);
    let rt = runtime();
    // A brand-new store: nothing to rebuild, nothing owed.
    let engine = eden_cas::server::open_engine(&cfg).unwrap();
    assert!(!recovery::reindex_pending(engine.meta()).unwrap());
    let data = noise(300_000, 21);
    let (_, rec) = rt.block_on(deposit(&engine, "admin", &data));
    let before = tables(engine.meta());

    // RocksDB lost: reopening rebuilds the index before anything else.
    store.wipe_meta(engine);
    let engine = eden_cas::server::open_engine(&cfg).unwrap();
    assert!(!recovery::reindex_pending(engine.meta()).unwrap());
    assert_same_tables(&tables(engine.meta()), &before);
    assert_eq!(rt.block_on(read_manifest(&engine, &rec.manifest)), data);

    // An interrupted reindex is finished at the next open.
    let (gone, _) = before.chunks[0];
    let mut b = engine.meta().batch();
    b.delete_chunk(&gone);
    b.commit().unwrap();
    recovery::mark_reindex_pending(engine.meta()).unwrap();
    store.close(engine);
    let engine = eden_cas::server::open_engine(&cfg).unwrap();
    assert!(!recovery::reindex_pending(engine.meta()).unwrap());
    assert!(engine.meta().chunk(&gone).unwrap().is_some());
    store.close(engine);
}

/// Runs the binary offline on `data`; returns (success, stdout, stderr).
fn cli(args: &[&str], data: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eden-cas"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .env_remove("EDEN_CAS_BLOB_STORE")
        .env_remove("EDEN_CAS_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn binary_backup_over_http_then_offline_restore_end_to_end() {
    use crate::support::server::*;
    let mut server = Server::start();
    let admin = server.admin_bearer();
    let exp = exp_id();
    let (_, worker) = register_worker(&server, &exp);
    let early = noise(700_000, 31);
    let a = v1::deposit_ok(&server, &exp, &worker, &early);
    let a_id = a["id"].as_str().unwrap().to_string();

    let backup_url = format!("{}/cas/v1/admin/backup", server.base_url());
    let post = |bearer: Option<&str>| {
        let mut rb = server.client().post(&backup_url);
        if let Some(b) = bearer {
            rb = rb.header("Authorization", format!("Bearer {b}"));
        }
        send(rb)
    };
    v1::assert_problem(post(None), 401, "eden://error/unauthorized");
    v1::assert_problem(
        post(Some("admin:wrong-token-0123456")),
        401,
        "eden://error/unauthorized",
    );
    v1::assert_problem(post(Some(&worker)), 403, "eden://error/forbidden");
    let made = expect_json(post(Some(&admin)), 200);
    let name = made["name"].as_str().unwrap().to_string();
    assert!(made["files"].as_u64().unwrap() > 0 && made["bytes"].as_u64().unwrap() > 0);
    assert_eq!(keys(&made), vec!["bytes", "files", "name"]);

    let mut late = early[..300_000].to_vec();
    late.extend(noise(200_000, 32));
    let b = v1::deposit_ok(&server, &exp, &worker, &late);
    let b_id = b["id"].as_str().unwrap().to_string();
    let b_manifest_blake3 = v1::b3(&late);

    // RocksDB lost; the server restarts on the blob store alone and says so.
    server.kill9();
    let data = server.data_dir().to_path_buf();
    std::fs::remove_dir_all(data.join("meta")).unwrap();
    server.restart();
    assert!(
        server.wait_stderr("`eden-cas restore`", Duration::from_secs(10)),
        "{}",
        server.stderr_tail()
    );
    v1::assert_problem(
        v1::get(&server, &exp, &format!("/artifacts/{a_id}"), &admin),
        404,
        "eden://error/not-found",
    );
    server.kill9();

    // Restore never writes over metadata…
    let (ok, _, err) = cli(&["restore"], &data);
    assert!(!ok);
    assert!(err.contains("exists and is not empty"), "{err}");
    // …so the operator moves it aside first.
    std::fs::rename(data.join("meta"), data.join("meta.old")).unwrap();
    let (ok, _, err) = cli(&["restore", "--from", "19700101T000000Z"], &data);
    assert!(!ok && err.contains("no backup named"), "{err}");
    let (ok, out, err) = cli(&["restore"], &data);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains(&format!("restored backup {name}")), "{out}");
    assert!(out.contains("unclaimed manifests  1"), "{out}");
    assert!(out.contains(&b_manifest_blake3), "{out}");
    let (ok, out, err) = cli(&["reindex"], &data);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("packs scanned"), "{out}");

    server.restart();
    // The worker, its token, the artifact and its record are back.
    let got = v1::fetch_bytes(&server, &exp, &worker, &a_id, None, 200);
    assert_eq!(got, early);
    let meta = expect_json(
        v1::get(&server, &exp, &format!("/artifacts/{a_id}/meta"), &worker),
        200,
    );
    assert_eq!(meta, json!(a));
    // The later one has no record: 404, while its bytes stay in the store.
    v1::assert_problem(
        v1::get(&server, &exp, &format!("/artifacts/{b_id}"), &worker),
        404,
        "eden://error/not-found",
    );
}
