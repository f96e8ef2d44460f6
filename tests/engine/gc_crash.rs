//! Crash tests of GC with the real binary: the process dies (abort, the
//! equivalent of `kill -9`) right after compacted packs were indexed, right
//! after a doomed pack's records were removed but before its object was, and
//! at random moments; the next run finishes the work, `eden-cas fsck` is
//! clean, and no live artifact lost a byte (invariants 3 and 7).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::engine::*;
use eden_cas::engine::EngineConfig;
use eden_cas::ids::ArtifactId;

const BIN: &str = env!("CARGO_BIN_EXE_eden-cas");

fn cfg() -> EngineConfig {
    EngineConfig {
        chunker: small_chunker(),
        pack_target_bytes: 256 << 10,
        compression_level: 0,
        ..EngineConfig::default()
    }
}

/// A store with a checkpoint series, half of it deleted; returns the live
/// artifacts with their content.
fn build(dir: &Path) -> Vec<(ArtifactId, Vec<u8>)> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = open(dir, cfg());
    let live = rt.block_on(async {
        let mut base = noise(300 << 10, 1);
        let mut all = Vec::new();
        for i in 0..8u64 {
            // Each checkpoint rewrites a region of the previous one.
            let at = (i as usize * 37_000) % (base.len() - 40_000);
            base[at..at + 40_000].copy_from_slice(&noise(40_000, 50 + i));
            all.push((deposit(&engine, &base).await, base.clone()));
        }
        let mut live = Vec::new();
        for (n, (id, data)) in all.into_iter().enumerate() {
            if n % 2 == 0 {
                delete(&engine, &id).await;
            } else {
                live.push((id, data));
            }
        }
        live
    });
    drop(engine);
    drop(rt);
    std::fs::write(dir.join("eden-cas.toml"), "gc-compact-below = 1.0\n").unwrap();
    live
}

fn gc_cmd(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("gc")
        .arg("--data-dir")
        .arg(dir)
        .envs(meta_env(&dir.join("meta")))
        .arg("--config")
        .arg(dir.join("eden-cas.toml"))
        .env("RUST_LOG", "warn")
        .env_remove("EDEN_CAS_CRASH_AT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Reopens the store: every live artifact reads back byte-identical and no
/// pack holds a dead byte (a full GC ran last).
fn verify(dir: &Path, live: &[(ArtifactId, Vec<u8>)], exact: bool) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = open(dir, cfg());
    rt.block_on(async {
        for (id, data) in live {
            let got = fetch(&engine, id).await.expect("live artifact reads");
            assert_eq!(got.as_deref(), Some(&data[..]), "live artifact lost bytes");
        }
        if exact {
            let index = indexed(&engine);
            let live_bytes: u64 = index.iter().map(|(_, n)| u64::from(*n)).sum();
            let s = stored(&engine).await;
            assert_eq!(s.chunk_bytes, live_bytes, "dead bytes left after the rerun");
        }
    });
}

fn crash_at(point: &str) {
    let dir = tempfile::tempdir().unwrap();
    let live = build(dir.path());
    let out = gc_cmd(dir.path())
        .env("EDEN_CAS_CRASH_AT", point)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the run should have died at {point}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("crash point {point}")), "{stderr}");
    // Half-done: still every live byte there.
    verify(dir.path(), &live, false);
    let out = gc_cmd(dir.path()).output().unwrap();
    assert!(
        out.status.success(),
        "rerun failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    verify(dir.path(), &live, true);
    fsck_clean(dir.path());
}

/// `eden-cas fsck` over the store exits 0 (no problem found).
fn fsck_clean(dir: &Path) {
    let out = Command::new(BIN)
        .arg("fsck")
        .arg("--data-dir")
        .arg(dir)
        .envs(meta_env(&dir.join("meta")))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsck found problems after the crash and rerun:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn crash_after_compaction_is_finished_by_the_next_run() {
    crash_at("gc-compacted");
}

#[test]
fn crash_during_pack_deletion_is_finished_by_the_next_run() {
    crash_at("gc-swept");
}

#[test]
fn kill_at_random_moments_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let live = build(dir.path());
    for delay_ms in [5u64, 40, 120] {
        let mut child = gc_cmd(dir.path()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        verify(dir.path(), &live, false);
    }
    let out = gc_cmd(dir.path()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    verify(dir.path(), &live, true);
    fsck_clean(dir.path());
}

#[test]
fn dry_run_changes_nothing_and_reports_what_a_run_reclaims() {
    let dir = tempfile::tempdir().unwrap();
    let live = build(dir.path());
    let listing = |d: &Path| {
        let mut v: Vec<_> = walk(&d.join("blobs"));
        v.sort();
        v
    };
    let before = listing(dir.path());
    let out = gc_cmd(dir.path())
        .arg("--dry-run")
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
    assert!(report["bytes_reclaimed"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(listing(dir.path()), before, "a dry run deleted something");
    let out = gc_cmd(dir.path()).arg("--json").output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["bytes_reclaimed"].as_u64().unwrap() > 0);
    assert!(report["packs_deleted"].as_u64().unwrap() > 0);
    verify(dir.path(), &live, true);
    // A second run finds nothing left to do.
    let out = gc_cmd(dir.path()).arg("--json").output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["bytes_reclaimed"], 0, "{report}");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}
