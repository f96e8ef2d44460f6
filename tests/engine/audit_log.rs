//! The audit log at engine level (`engine/audit.rs`): every kind of event
//! recorded exactly once by the entry point that makes the change, in
//! order, with the artifact's BLAKE3 and never a token; a segment whose
//! write failed is retried before later ones, so the log keeps its order;
//! retention deletes whole old segments; recording costs no I/O.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eden_cas::auth::{MemberId, Principal};
use eden_cas::blobs::{Backend, BlobConfig, BlobStore, Fault, FaultPlan, FaultSpec, keys};
use eden_cas::clock::Timestamp;
use eden_cas::engine::audit::{
    AuditConfig, AuditEvent, AuditFilter, AuditKind, GC_PRINCIPAL, export_stream, segment_keys,
};
use eden_cas::engine::gc::GcOptions;
use eden_cas::engine::refs::{RefCondition, RefUpdate};
use eden_cas::engine::{Engine, EngineConfig};
use eden_cas::naming::RefName;
use futures_util::StreamExt;

use crate::support::engine::*;

/// Flushes, then reads the whole log back from the blob store.
async fn exported(engine: &Arc<Engine>) -> Vec<AuditEvent> {
    engine.audit_flush().await.expect("flush");
    read_log(engine.blobs()).await
}

async fn read_log(blobs: &BlobStore) -> Vec<AuditEvent> {
    let filter = AuditFilter::default();
    let keys = segment_keys(blobs, &filter).await.expect("list");
    let mut s = std::pin::pin!(export_stream(blobs.clone(), keys, filter));
    let mut text = Vec::new();
    while let Some(part) = s.next().await {
        text.extend_from_slice(&part.expect("segment"));
    }
    eden_cas::engine::audit::decode_segment(&text).expect("JSON lines")
}

async fn drain(engine: &Arc<Engine>, who: Principal, id: &eden_cas::ids::ArtifactId) -> Vec<u8> {
    let a = engine
        .readable_artifact(EXP, &who, id)
        .await
        .expect("readable");
    let mut s = engine.read_range(&a, 0, a.size);
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b.expect("read"));
    }
    out
}

#[test]
fn every_kind_is_recorded_once_in_order_with_digests_and_no_token() {
    let f = Fixture::new();
    let e = &f.engine;
    runtime().block_on(async {
        let (w, first_token) = e
            .register_worker(EXP, Some("trainer".into()), BTreeMap::new())
            .await
            .unwrap();
        let (_, token) = e.reissue_credential(EXP, &w.worker_id).await.unwrap();
        let g = e
            .create_group(EXP, Some("readers".into()), vec![], &Principal::Admin)
            .await
            .unwrap();
        let wid = MemberId::Worker(w.worker_id);
        e.add_member(EXP, &g.group_id, &wid).await.unwrap();
        e.remove_member(EXP, &g.group_id, &wid).await.unwrap();
        e.delete_group(EXP, &g.group_id).await.unwrap();

        let worker = Principal::Worker(w.worker_id);
        let data = noise(50_000, 7);
        let a = e
            .deposit_bytes(req_as(EXP, worker), Bytes::from(data.clone()))
            .await
            .unwrap();
        assert_eq!(drain(e, worker, &a.id).await, data);
        let grantee = MemberId::Group(g.group_id);
        e.grant(EXP, &worker, &a.id, &grantee).await.unwrap();
        e.revoke(EXP, &worker, &a.id, &grantee).await.unwrap();
        let b = e
            .deposit_bytes(req(), Bytes::from_static(b"short-lived"))
            .await
            .unwrap();
        e.delete_artifact(EXP, &Principal::Admin, &b.id)
            .await
            .unwrap();
        let past = Timestamp::from_unix_secs(1);
        let name = RefName::parse("audit/latest").unwrap();
        let upd = |expires_at| RefUpdate {
            name: name.clone(),
            condition: RefCondition::Absent,
            expires_at,
            grants: None,
        };
        e.set_ref(EXP, &worker, upd(None), a.id).await.unwrap();
        e.delete_ref(EXP, &worker, &name, None).await.unwrap();
        let labels = BTreeMap::from([("stage".to_string(), "eval".to_string())]);
        e.set_labels(EXP, &worker, &a.id, labels).await.unwrap();
        // A reference already past its own expiry: GC removes it first,
        // then the artifact it held.
        e.set_ref(EXP, &worker, upd(Some(past)), a.id)
            .await
            .unwrap();
        e.set_expiry(EXP, &worker, &a.id, Some(past)).await.unwrap();
        let report = e.gc(GcOptions::default()).await.unwrap();
        assert_eq!(report.artifacts_expired, 1);

        let log = exported(e).await;
        let got: Vec<(AuditKind, &str)> = log
            .iter()
            .map(|ev| (ev.kind, ev.principal.as_str()))
            .collect();
        use AuditKind::*;
        let admin = "admin";
        assert_eq!(
            got,
            vec![
                (RegisterWorker, admin),
                (ReissueCredential, admin),
                (CreateGroup, admin),
                (AddMember, admin),
                (RemoveMember, admin),
                (DeleteGroup, admin),
                (Deposit, wid.as_str()),
                (Read, wid.as_str()),
                (Grant, wid.as_str()),
                (Revoke, wid.as_str()),
                (Deposit, admin),
                (Delete, admin),
                (SetRef, wid.as_str()),
                (DeleteRef, wid.as_str()),
                (SetLabels, wid.as_str()),
                (SetRef, wid.as_str()),
                (SetExpiry, wid.as_str()),
                (ExpireRef, GC_PRINCIPAL),
                (Expire, GC_PRINCIPAL),
            ]
        );
        for kind in AuditKind::ALL {
            assert!(log.iter().any(|ev| ev.kind == kind), "{kind:?} missing");
        }
        // One run, sequence 1..=n, times never going back.
        assert!(log.iter().all(|ev| ev.run == e.audit_run()));
        let seqs: Vec<u64> = log.iter().map(|ev| ev.seq).collect();
        assert_eq!(seqs, (1..=log.len() as u64).collect::<Vec<_>>());
        assert!(log.windows(2).all(|p| p[0].time <= p[1].time));
        assert!(log.iter().all(|ev| ev.experiment == EXP.as_str()));
        // Artifact events name the artifact and its BLAKE3.
        let (a_id, a_b3) = (a.id.to_string(), a.record.blake3.to_hex());
        for ev in log.iter().filter(|ev| !matches!(ev.kind, Deposit | Delete)) {
            if ev.artifact.is_some() {
                assert_eq!(ev.artifact.as_deref(), Some(a_id.as_str()), "{ev:?}");
                assert_eq!(ev.blake3.as_deref(), Some(a_b3.as_str()), "{ev:?}");
            }
        }
        assert_eq!(log[6].size, Some(50_000));
        assert_eq!(log[7].range, Some([0, 50_000]));
        assert_eq!(
            log[8].grantee.as_deref(),
            Some(g.group_id.to_string().as_str())
        );
        assert_eq!(log[11].artifact, Some(b.id.to_string()));
        assert_eq!(log[11].blake3, Some(b.record.blake3.to_hex()));
        assert_eq!(log[16].expires_at, Some(past));
        assert_eq!(log[12].reference.as_deref(), Some("audit/latest"));
        assert_eq!(log[14].labels.as_ref().map(BTreeMap::len), Some(1));
        assert_eq!(log[0].worker.as_deref(), Some(wid.as_str()));
        assert_eq!(log[0].name.as_deref(), Some("trainer"));
        assert_eq!(log[3].member.as_deref(), Some(wid.as_str()));
        // Never a token, in any form.
        let raw: Vec<u8> = {
            let mut all = Vec::new();
            for (k, _) in e.blobs().list(keys::AUDIT).await.unwrap() {
                all.extend_from_slice(&e.blobs().read(&k).await.unwrap());
            }
            all
        };
        let raw = String::from_utf8(raw).unwrap();
        for t in [first_token.expose(), token.expose()] {
            assert!(!raw.contains(t), "a token is in the audit log");
        }
        assert!(!raw.contains(ADMIN_TOKEN));
        // Nothing left to write: a second flush writes no segment.
        let segments = e.blobs().list(keys::AUDIT).await.unwrap().len();
        assert_eq!(e.audit_flush().await.unwrap(), 0);
        assert_eq!(e.blobs().list(keys::AUDIT).await.unwrap().len(), segments);
    });
}

#[test]
fn a_failed_segment_is_retried_before_later_ones_and_order_holds() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let mut cfg = BlobConfig::new(Backend::Fs {
        root: dir.path().join("blobs"),
    });
    cfg.faults = Some(Arc::clone(&plan));
    let blobs = BlobStore::open(&cfg).unwrap();
    let e = engine_over(&dir.path().join("meta"), blobs, EngineConfig::default());
    runtime().block_on(async {
        plan.arm(FaultSpec::new(Fault::WriteError, keys::AUDIT).every_time());
        for _ in 0..3 {
            e.register_worker(EXP, None, BTreeMap::new()).await.unwrap();
        }
        assert!(e.audit_flush().await.is_err(), "the blob store refused");
        for _ in 0..2 {
            e.register_worker(EXP, None, BTreeMap::new()).await.unwrap();
        }
        assert!(e.audit_flush().await.is_err());
        assert!(plan.disarm() > 0);
        assert_eq!(e.audit_flush().await.unwrap(), 5);
        let keys = segment_keys(e.blobs(), &AuditFilter::default())
            .await
            .unwrap();
        let mut firsts: Vec<u64> = keys
            .iter()
            .map(|k| keys::parse_audit_segment(k).unwrap().1)
            .collect();
        // (A backend that leaves an empty object behind a failed write
        // makes the retry use a second key of the same sequence number.)
        firsts.dedup();
        assert_eq!(firsts, vec![1, 4], "the first batch kept its own segment");
        let seqs: Vec<u64> = read_log(e.blobs()).await.iter().map(|ev| ev.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    });
}

#[test]
fn retention_deletes_whole_old_segments_and_forever_keeps_them() {
    for (retention, kept) in [(Some(Duration::from_secs(400 * 86_400)), 0), (None, 2)] {
        let f = Fixture::with(EngineConfig {
            audit: AuditConfig {
                retention,
                ..AuditConfig::default()
            },
            ..EngineConfig::default()
        });
        let e = &f.engine;
        runtime().block_on(async {
            for _ in 0..2 {
                e.register_worker(EXP, None, BTreeMap::new()).await.unwrap();
                e.audit_flush().await.unwrap();
            }
            // A GC today deletes nothing: the segments are minutes old.
            let report = e.gc(GcOptions::default()).await.unwrap();
            assert_eq!(report.audit_segments_deleted, 0);
            assert_eq!(e.blobs().list(keys::AUDIT).await.unwrap().len(), 2);
            let later = Timestamp::now().plus(Duration::from_secs(401 * 86_400));
            assert_eq!(e.audit_prune(later).await.unwrap(), 2 - kept);
            assert_eq!(
                e.blobs().list(keys::AUDIT).await.unwrap().len(),
                kept as usize
            );
        });
    }
}

#[test]
fn recording_a_read_costs_no_io_and_little_time() {
    let f = Fixture::new();
    let e = &f.engine;
    runtime().block_on(async {
        let id = deposit(e, b"").await;
        let a = e
            .readable_artifact(EXP, &Principal::Admin, &id)
            .await
            .unwrap();
        let before = e.blobs().requests();
        let n = 100_000u64;
        let t = Instant::now();
        for _ in 0..n {
            drop(e.read_range(&a, 0, 0));
        }
        let per = t.elapsed() / n as u32;
        println!("audit: {per:?} per recorded read (read_range of an empty artifact)");
        assert_eq!(
            e.blobs().requests(),
            before,
            "recording made no blob request"
        );
        assert_eq!(
            e.audit_counts()
                .recorded
                .load(std::sync::atomic::Ordering::Relaxed),
            n + 1,
            "one deposit and n reads"
        );
        assert!(per < Duration::from_micros(50), "{per:?} per event");
        // One flush writes them as segments, all of them.
        assert_eq!(e.audit_flush().await.unwrap(), n + 1);
    });
}
