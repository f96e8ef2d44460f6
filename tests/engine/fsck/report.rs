//! What fsck reports: nothing on a clean store; a corrupt chunk, a missing
//! pack, a damaged footer, a misplaced index entry and a lost manifest
//! object, each with the artifacts it breaks; the same report through the
//! binary's exit codes and the admin endpoint.

use super::*;

#[test]
fn clean_store_reports_nothing() {
    let s = Store::new();
    let x = noise(700_000, 1);
    s.deposit(EXP, &x, None);
    s.deposit(EXP2, &x, None); // the same content, deduplicated
    s.deposit(EXP, &noise(300_000, 2), Some(1)); // expired long ago
    s.deposit(EXP, b"", None);
    let r = s.fsck(false);
    assert!(r.is_clean(), "{r}");
    assert_eq!(r.artifacts_checked, 4);
    assert_eq!(r.artifacts_expired, 1);
    assert!(r.packs_checked >= 2);
    assert!(r.chunks_indexed > 10);
    assert_eq!(r.chunks_verified, r.chunks_indexed);
    assert!(r.pack_bytes_verified >= 1_000_000);
    assert_eq!(r.content_bytes_read_back, 0);
    let r = s.fsck(true);
    assert!(r.is_clean(), "{r}");
    // Shared content is read back once.
    assert_eq!(r.content_bytes_read_back, 1_000_000);
    assert!(r.to_string().contains("no problems found"));
}

#[test]
fn a_corrupt_chunk_is_reported_with_the_artifacts_it_breaks() {
    let mut s = Store::new();
    let x = noise(600_000, 3);
    let a = s.deposit(EXP, &x, None);
    let b = s.deposit(EXP2, &[x.clone(), noise(200_000, 4)].concat(), None);
    let c = s.deposit(EXP, &noise(400_000, 5), None);
    let (code, out, err) = {
        s.close();
        let r = fsck_bin(s.data_dir(), &[]);
        s.open();
        r
    };
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("no problems found"), "{out}");

    let first = Digest::of(&chunks_of(&x)[0]);
    let loc = s.corrupt(&first);
    // --deep: the chunk, and the whole-content digests of both artifacts.
    let r = s.fsck(true);
    let corrupt: Vec<_> = r
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::ChunkCorrupt)
        .collect();
    assert_eq!(corrupt.len(), 1, "{r}");
    let p = corrupt[0];
    assert_eq!(p.chunk.as_deref(), Some(first.to_hex().as_str()));
    assert_eq!(p.pack, Some(loc.pack.to_string()));
    assert!(p.detail.contains("BLAKE3"), "{}", p.detail);
    assert_eq!(p.affected_total, 2);
    assert_eq!(
        affected_ids(&r, ProblemKind::ChunkCorrupt),
        sorted(vec![a.clone(), b.clone()])
    );
    assert!(!affected_ids(&r, ProblemKind::ChunkCorrupt).contains(&c));
    let exps: Vec<&str> = p.affected.iter().map(|x| x.experiment.as_str()).collect();
    assert!(exps.contains(&EXP.as_str()) && exps.contains(&EXP2.as_str()));
    let digest: Vec<_> = r
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::ContentDigestMismatch)
        .collect();
    assert_eq!(digest.len(), 2, "{r}");
    let mut hit: Vec<String> = digest
        .iter()
        .flat_map(|p| p.affected.iter().map(|x| x.id.clone()))
        .collect();
    hit.sort();
    assert_eq!(hit, sorted(vec![a.clone(), b.clone()]));

    // fsck marked the copy it proved bad (issue 9 §3): from now on it is
    // reported as marked bad, with the same artifacts, until an upload
    // of the content heals it.
    let r = s.fsck(false);
    assert_eq!(kinds(&r), vec![ProblemKind::ChunkMarkedBad], "{r}");
    assert_eq!(
        r.problems[0].chunk.as_deref(),
        Some(first.to_hex().as_str())
    );
    assert_eq!(
        affected_ids(&r, ProblemKind::ChunkMarkedBad),
        sorted(vec![a.clone(), b.clone()])
    );

    // The binary: exit 1, the chunk and the artifacts named; JSON too.
    s.close();
    let (code, out, err) = fsck_bin(s.data_dir(), &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("chunk_marked_bad"), "{out}");
    assert!(out.contains(&first.to_hex()) && out.contains(&a) && out.contains(&b));
    let (code, out, _) = fsck_bin(s.data_dir(), &["--deep", "--json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["deep"], true);
    let kinds: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"chunk_marked_bad"), "{kinds:?}");
    assert_eq!(v["problems"][0]["affected_total"], 2);
    assert!(v["verify_mb_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_missing_pack_is_reported_with_the_artifacts_it_breaks() {
    let s = Store::new();
    let kept = s.deposit(EXP, &noise(300_000, 6), None);
    let z = noise(500_000, 7);
    let lost = s.deposit(EXP, &z, None);
    let expired = s.deposit(EXP2, &z, Some(1));
    let pack = s.loc(&Digest::of(&chunks_of(&z)[0])).pack;
    std::fs::remove_file(s.pack_path(pack)).unwrap();
    let r = s.fsck(false);
    assert_eq!(kinds(&r), vec![ProblemKind::PackMissing], "{r}");
    let p = &r.problems[0];
    assert_eq!(p.pack, Some(pack.to_string()));
    assert_eq!(p.chunks as usize, chunks_of(&z).len());
    assert_eq!(
        affected_ids(&r, ProblemKind::PackMissing),
        sorted(vec![lost.clone(), expired.clone()])
    );
    assert!(p.affected.iter().any(|a| a.id == expired && a.expired));
    assert!(!affected_ids(&r, ProblemKind::PackMissing).contains(&kept));

    // The scrubber marks the lost chunks bad, so the next deposit heals.
    let e = Arc::clone(s.e());
    let rep =
        s.rt.block_on(async move { e.scrub_pass(u64::MAX).await.unwrap() });
    assert_eq!(rep.marked_bad as usize, chunks_of(&z).len());
    assert!(s.read(EXP, &lost).is_err());
    s.deposit(EXP, &z, None);
    assert_eq!(s.read(EXP, &lost).unwrap(), z);
    // Nothing points into the lost pack any more: its record is garbage for
    // GC, not a problem.
    let r = s.fsck(true);
    assert!(r.is_clean(), "{r}");
}

#[test]
fn footer_index_and_manifest_damage_is_reported() {
    let s = Store::new();
    let x = noise(400_000, 40);
    let y = noise(300_000, 41);
    let z = noise(200_000, 42);
    let a = s.deposit(EXP, &x, None);
    let b = s.deposit(EXP, &y, None);
    let c = s.deposit(EXP, &z, None);

    // A damaged footer: the chunks still verify from the index side, but
    // the pack can no longer be re-indexed from the blob store.
    let xpack = s.loc(&Digest::of(&chunks_of(&x)[0])).pack;
    let path = s.pack_path(xpack);
    let footer_at = eden_cas::pack::parse_pack(&std::fs::read(&path).unwrap())
        .unwrap()
        .data_end;
    flip(&path, footer_at + 5);

    // An index entry moved to an offset its footer does not list.
    let ych = Digest::of(&chunks_of(&y)[1]);
    let moved = ChunkLocation {
        offset: s.loc(&ych).offset + 1,
        ..s.loc(&ych)
    };
    let mut batch = s.e().meta().batch();
    batch.put_chunk(&ych, &moved);
    batch.commit().unwrap();

    // A manifest object lost from the blob store (a small deposit's
    // manifest lives in the bundle of its group commit).
    let zrec = s
        .e()
        .meta()
        .artifact(&EXP, &parse_artifact_id(&c).unwrap())
        .unwrap()
        .unwrap();
    let zkey = match s.e().meta().manifest_bundle(&zrec.manifest).unwrap() {
        Some(bundle) => keys::manifest_bundle(bundle),
        None => keys::manifest(&zrec.manifest),
    };
    std::fs::remove_file(s.data_dir().join("blobs").join(zkey)).unwrap();

    let r = s.fsck(false);
    let mut k = kinds(&r);
    k.sort_by_key(|k| k.to_string());
    assert_eq!(
        k,
        vec![
            ProblemKind::ChunkCorrupt,
            ProblemKind::ChunkNotInFooter,
            ProblemKind::ManifestObjectMissing,
            ProblemKind::PackFooterCorrupt,
        ],
        "{r}"
    );
    assert_eq!(
        affected_ids(&r, ProblemKind::PackFooterCorrupt),
        vec![a.clone()]
    );
    assert_eq!(
        affected_ids(&r, ProblemKind::ChunkNotInFooter),
        vec![b.clone()]
    );
    assert_eq!(affected_ids(&r, ProblemKind::ChunkCorrupt), vec![b.clone()]);
    assert_eq!(
        affected_ids(&r, ProblemKind::ManifestObjectMissing),
        vec![c.clone()]
    );
    assert_eq!(r.chunks_verified, r.chunks_indexed, "every entry decoded");
    // Reads of the unaffected artifacts still work.
    assert_eq!(s.read(EXP, &a).unwrap(), x);
    assert_eq!(s.read(EXP, &c).unwrap(), z);

    // The scrubber checks the footer-less pack from the index side: its
    // chunks are fine, so nothing is marked bad there.
    let e = Arc::clone(s.e());
    let rep =
        s.rt.block_on(async move { e.scrub_pass(u64::MAX).await.unwrap() });
    assert_eq!(
        (rep.packs, rep.pack_faults, rep.marked_bad),
        (3, 1, 0),
        "{rep:?}"
    );
    assert!(s.loc(&Digest::of(&chunks_of(&x)[0])).usable());
}

#[test]
fn the_admin_endpoint_answers_the_report() {
    let server = Server::start_with(&["--scrub-bytes-per-hour", "0"]);
    let exp = exp_id();
    let admin = server.admin_bearer();
    deposit_ok(&server, &exp, &admin, &noise(100_000, 30), "text/plain");
    let url = format!("{}/cas/v1/admin/fsck", server.base_url());
    let post = |bearer: Option<&str>, query: &str| {
        let mut rb = server.client().post(format!("{url}{query}"));
        if let Some(b) = bearer {
            rb = rb.header("Authorization", format!("Bearer {b}"));
        }
        rb.send().unwrap()
    };
    let resp = post(Some(&admin), "?deep=true");
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = serde_json::from_str(&resp.text().unwrap()).unwrap();
    assert_eq!(v["deep"], true);
    assert_eq!(v["problems"], Value::Array(vec![]));
    assert_eq!(v["artifacts_checked"], 1);
    assert_eq!(v["content_bytes_read_back"], 100_000);
    assert_eq!(post(None, "").status().as_u16(), 401);
    assert_eq!(
        post(Some("admin:wrong-token-000000"), "").status().as_u16(),
        401
    );
    let (_, worker) = register_worker(&server, &exp);
    assert_eq!(post(Some(&worker), "").status().as_u16(), 403);
    assert_eq!(post(Some(&admin), "?deep=maybe").status().as_u16(), 400);
    let metrics = server.metrics_text();
    for name in [
        "eden_cas_scrub_bytes_total",
        "eden_cas_scrub_packs_total",
        "eden_cas_scrub_corrupt_chunks_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
}
