//! Integrity problems heal at once (issue 9 §3): a verified read that proves
//! a stored copy bad — flipped byte, missing pack, truncated pack — marks it
//! bad right away, so depositing (or uploading in a session) the same bytes
//! again stores a fresh copy, and both the old and the new artifact read
//! back byte-identical. No scrubber pass runs in these tests.

use std::path::Path;

use crate::support::engine::*;
use crate::support::packs::{flip, pack_files};
use eden_cas::engine::EngineError;
use eden_cas::ids::ArtifactId;

/// Content of many small chunks (raw: compression is off in the fixture,
/// so pack offsets are content offsets plus the 8-byte header).
fn content() -> Vec<u8> {
    noise(200_000, 9)
}

/// Reads `id` back; `Ok(bytes)` or the read error.
async fn read(f: &Fixture, id: &ArtifactId) -> Result<Vec<u8>, EngineError> {
    fetch(&f.engine, id)
        .await
        .map(|o| o.expect("artifact served"))
}

/// Damages the only pack, proves it with a fetch, then re-deposits the same
/// bytes and checks that both artifacts read back whole. `session` re-sends
/// through an upload session instead of a raw deposit.
async fn damage_then_heal(damage: impl FnOnce(&Path), session: bool) {
    let f = Fixture::new();
    let data = content();
    let old = deposit(&f.engine, &data).await;
    let packs = pack_files(&f.blob_root());
    assert_eq!(packs.len(), 1);
    damage(&packs[0]);
    let err = read(&f, &old)
        .await
        .expect_err("a damaged pack must fail the read");
    assert!(matches!(err, EngineError::Integrity(_)), "{err:?}");
    let new = if session {
        let chunks = chunk_list(&data);
        let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let s = open_session(&f.engine).await;
        let missing = f
            .engine
            .upload_missing(
                EXP,
                &eden_cas::auth::Principal::Admin,
                &s,
                chunks
                    .iter()
                    .map(|c| eden_cas::hash::Digest::of(c))
                    .collect(),
            )
            .await
            .unwrap();
        assert!(!missing.is_empty(), "the bad copies count as missing");
        let to_send: Vec<&[u8]> = refs
            .iter()
            .copied()
            .filter(|c| missing.contains(&eden_cas::hash::Digest::of(c)))
            .collect();
        send_chunks(&f.engine, &s, &to_send).await;
        commit_chunks(&f.engine, &s, &refs).await
    } else {
        deposit(&f.engine, &data).await
    };
    assert_eq!(read(&f, &new).await.expect("the new artifact reads"), data);
    assert_eq!(
        read(&f, &old).await.expect("the old artifact is healed"),
        data
    );
}

fn chunk_list(data: &[u8]) -> Vec<Vec<u8>> {
    let mut c = eden_cas::chunking::StreamChunker::new(small_chunker()).unwrap();
    let mut out = Vec::new();
    c.push(data, |x: &[u8]| out.push(x.to_vec()));
    c.finish(|x: &[u8]| out.push(x.to_vec()));
    out
}

#[test]
fn flipped_byte_heals_on_the_next_deposit() {
    runtime().block_on(damage_then_heal(|p| flip(p, 8 + 150_000), false));
}

#[test]
fn flipped_byte_heals_on_the_next_session_upload() {
    runtime().block_on(damage_then_heal(|p| flip(p, 8 + 1_000), true));
}

#[test]
fn missing_pack_heals_on_the_next_deposit() {
    runtime().block_on(damage_then_heal(
        |p| std::fs::remove_file(p).unwrap(),
        false,
    ));
}

#[test]
fn truncated_pack_heals_on_the_next_deposit() {
    runtime().block_on(damage_then_heal(
        |p| {
            let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(100_000).unwrap();
        },
        false,
    ));
}

/// fsck proves copies bad too: after it ran, a deposit heals without any
/// fetch having failed first.
#[test]
fn fsck_marks_what_it_proves_bad() {
    runtime().block_on(async {
        let f = Fixture::new();
        let data = content();
        let old = deposit(&f.engine, &data).await;
        flip(&pack_files(&f.blob_root())[0], 8 + 60_000);
        let report = f.engine.fsck(false).await.unwrap();
        assert!(!report.problems.is_empty());
        let new = deposit(&f.engine, &data).await;
        assert_eq!(read(&f, &new).await.unwrap(), data);
        assert_eq!(read(&f, &old).await.unwrap(), data);
    });
}
