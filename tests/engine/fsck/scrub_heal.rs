//! The scrubber and self-healing: a corrupt chunk is marked bad and the
//! next deposit or upload session of the same content stores it anew, a
//! pinned chunk marked bad is asked for again, and scrub passes share their
//! budget, least recently verified pack first.

use super::*;

#[test]
fn scrub_marks_a_corrupt_chunk_bad_and_a_new_deposit_heals_it() {
    let s = Store::new();
    let x = noise(900_000, 8);
    let a = s.deposit(EXP, &x, None);
    let other = s.deposit(EXP, &noise(200_000, 9), None);
    let bad = Digest::of(&chunks_of(&x)[2]);
    let old = s.corrupt(&bad);

    let e = Arc::clone(s.e());
    let rep =
        s.rt.block_on(async move { e.scrub_pass(u64::MAX).await.unwrap() });
    assert_eq!((rep.corrupt_chunks, rep.marked_bad), (1, 1), "{rep:?}");
    assert_eq!(rep.packs, 2);
    let now = s.loc(&bad);
    assert!(now.bad && now.pack == old.pack && now.offset == old.offset);
    assert!(s.e().meta().pack_scrubbed_at(old.pack).unwrap().is_some());
    let stats = &s.e().stats;
    assert_eq!(stats.scrub_corrupt_chunks.load(Ordering::Relaxed), 1);
    assert_eq!(stats.scrub_packs.load(Ordering::Relaxed), 2);
    assert_eq!(
        stats.scrub_bytes.load(Ordering::Relaxed),
        rep.bytes,
        "bytes counted"
    );
    // Marking is conditional: a stale expectation changes nothing.
    let e = Arc::clone(s.e());
    let stale = ChunkLocation {
        offset: old.offset + 1,
        ..old
    };
    assert!(
        !s.rt
            .block_on(async move { e.mark_chunk_bad(bad, stale).await.unwrap() })
    );

    // Reads still fail (never wrong bytes); fsck names the bad chunk.
    assert!(matches!(s.read(EXP, &a), Err(EngineError::Integrity(_))));
    let r = s.fsck(false);
    assert_eq!(kinds(&r), vec![ProblemKind::ChunkMarkedBad], "{r}");
    assert_eq!(
        affected_ids(&r, ProblemKind::ChunkMarkedBad),
        vec![a.clone()]
    );

    // The same content again: only the bad chunk is stored anew.
    let b = s.deposit(EXP2, &x, None);
    let rec = s
        .e()
        .meta()
        .artifact(&EXP2, &parse_artifact_id(&b).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(rec.dedup.new_chunks, 1);
    let healed = s.loc(&bad);
    assert!(!healed.bad && healed.pack != old.pack);
    assert_eq!(
        s.read(EXP, &a).unwrap(),
        x,
        "the old artifact reads the fresh copy"
    );
    assert_eq!(s.read(EXP, &other).unwrap().len(), 200_000);
    // The corrupt copy is now a dead footer entry: not a problem.
    let r = s.fsck(true);
    assert!(r.is_clean(), "{r}");
    let e = Arc::clone(s.e());
    let rep =
        s.rt.block_on(async move { e.scrub_pass(u64::MAX).await.unwrap() });
    assert_eq!((rep.packs, rep.corrupt_chunks), (3, 0));
}

#[test]
fn an_upload_session_heals_a_bad_chunk() {
    let s = Store::new();
    let x = noise(500_000, 10);
    let chunks = chunks_of(&x);
    let a = s.deposit(EXP, &x, None);
    let bad = Digest::of(&chunks[1]);
    s.corrupt(&bad);
    let e = Arc::clone(s.e());
    let content = x.clone();
    s.rt.block_on(async move {
        let x = content;
        let rep = e.scrub_pass(u64::MAX).await.unwrap();
        assert_eq!(rep.marked_bad, 1);
        let admin = Principal::Admin;
        let v = e
            .create_upload(EXP, &admin, SessionRequest::default())
            .await
            .unwrap();
        let sid = v.id;
        let ids: Vec<Digest> = chunks.iter().map(|c| Digest::of(c)).collect();
        // Everything is present for the admin but the bad chunk.
        let missing = e
            .upload_missing(EXP, &admin, &sid, ids.clone())
            .await
            .unwrap();
        assert_eq!(missing, vec![bad]);
        let entries: Vec<ManifestEntry> = manifest_entries(&chunks);
        let commit = |entries: Vec<ManifestEntry>| CommitRequest {
            chunks: entries,
            blake3: Digest::of(&x),
            content_type: None,
            filename: None,
        };
        match e
            .commit_upload(EXP, &admin, &sid, commit(entries.clone()))
            .await
        {
            Err(EngineError::ChunksMissing { first, total }) => {
                assert_eq!((first, total), (vec![bad], 1));
            }
            other => panic!("expected ChunksMissing, got {other:?}"),
        }
        let mut batch = e.begin_chunk_batch(EXP, &admin, &sid).await.unwrap();
        batch.push(frames(&[&chunks[1]])).await.unwrap();
        let out = batch.finish().await.unwrap();
        assert_eq!(out.received, 1);
        assert!(e.meta().chunk(&bad).unwrap().unwrap().usable());
        assert!(
            e.upload_missing(EXP, &admin, &sid, ids)
                .await
                .unwrap()
                .is_empty()
        );
        let r = e
            .commit_upload(EXP, &admin, &sid, commit(entries))
            .await
            .unwrap();
        assert!(r.record.digest_verified);
    });
    assert_eq!(s.read(EXP, &a).unwrap(), x);
    assert!(s.fsck(true).is_clean());
}

#[test]
fn a_pinned_chunk_marked_bad_is_sent_again() {
    let s = Store::new();
    let y = noise(300_000, 11);
    let chunks = chunks_of(&y);
    let e = Arc::clone(s.e());
    let st = &s;
    s.rt.block_on(async move {
        let admin = Principal::Admin;
        let v = e
            .create_upload(EXP, &admin, SessionRequest::default())
            .await
            .unwrap();
        let sid = v.id;
        let all: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let mut batch = e.begin_chunk_batch(EXP, &admin, &sid).await.unwrap();
        batch.push(frames(&all)).await.unwrap();
        batch.finish().await.unwrap();
        let bad = Digest::of(&chunks[0]);
        st.corrupt(&bad);
        assert_eq!(e.scrub_pass(u64::MAX).await.unwrap().marked_bad, 1);
        let ids: Vec<Digest> = chunks.iter().map(|c| Digest::of(c)).collect();
        assert_eq!(
            e.upload_missing(EXP, &admin, &sid, ids).await.unwrap(),
            vec![bad],
            "pinned by the session, but its stored copy is bad"
        );
        let mut batch = e.begin_chunk_batch(EXP, &admin, &sid).await.unwrap();
        batch.push(frames(&all[..1])).await.unwrap();
        batch.finish().await.unwrap();
        let entries = manifest_entries(&chunks);
        let r = e
            .commit_upload(
                EXP,
                &admin,
                &sid,
                CommitRequest {
                    chunks: entries,
                    blake3: Digest::of(&y),
                    content_type: None,
                    filename: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(r.record.size, y.len() as u64);
    });
    assert!(s.fsck(false).is_clean());
}

#[test]
fn scrub_passes_share_the_budget_oldest_verified_first() {
    let s = Store::new();
    for seed in 20..23 {
        s.deposit(EXP, &noise(200_000, seed), None);
    }
    let packs: Vec<PackId> = s
        .e()
        .meta()
        .packs()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(packs.len(), 3);
    let mut verified = Vec::new();
    for _ in 0..3 {
        let e = Arc::clone(s.e());
        let rep = s.rt.block_on(async move { e.scrub_pass(1).await.unwrap() });
        assert_eq!(rep.packs, 1, "a small budget verifies one pack per pass");
        let now: Vec<PackId> = s
            .e()
            .meta()
            .pack_scrub_times()
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let new: Vec<PackId> = now
            .iter()
            .copied()
            .filter(|p| !verified.contains(p))
            .collect();
        assert_eq!(
            new.len(),
            1,
            "each pass continues with a never-verified pack"
        );
        verified.extend(new);
    }
    verified.sort();
    let mut all = packs.clone();
    all.sort();
    assert_eq!(verified, all);
    // Stamps older than every other go first: age one artificially.
    let oldest = all[1];
    let mut b = s.e().meta().batch();
    for p in &all {
        let secs = if *p == oldest { 10 } else { 20 };
        b.put_pack_scrub(*p, Timestamp::from_unix_secs(secs));
    }
    b.commit().unwrap();
    let e = Arc::clone(s.e());
    s.rt.block_on(async move { e.scrub_pass(1).await.unwrap() });
    let t = s.e().meta().pack_scrubbed_at(oldest).unwrap().unwrap();
    assert!(
        t > Timestamp::from_unix_secs(20),
        "the least recently verified pack went first"
    );
    let e = Arc::clone(s.e());
    let rep =
        s.rt.block_on(async move { e.scrub_pass(u64::MAX).await.unwrap() });
    assert_eq!(rep.packs, 3);
}
