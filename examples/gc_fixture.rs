//! Builds a store for the GC benchmark (`benches/gc_bench.sh`): a series of
//! checkpoints, each rewriting a share of the previous one, deposited with
//! small chunks (avg 4 KiB) so a few hundred MB make a store of 100k+
//! chunks; then half of the series is deleted: the oldest half (`oldest`,
//! what retention does) or every other checkpoint (`alternate`).
//!
//! `cargo run --release --example gc_fixture -- DIR [CHECKPOINTS] [MIB] [CHANGED%] [oldest|alternate]`

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use eden_cas::auth::token::Secret;
use eden_cas::auth::{ExperimentId, Principal};
use eden_cas::blobs::BlobStore;
use eden_cas::chunking::ChunkerParams;
use eden_cas::engine::{DepositRequest, Engine, EngineConfig};
use eden_cas::ids::ArtifactId;
use eden_cas::meta::Meta;

const EXP: ExperimentId = ExperimentId::from_static("exp_00000000000000000000000001");

fn noise(buf: &mut [u8], seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in buf {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 29) as u8;
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(
        args.get(1)
            .ok_or_else(|| anyhow::anyhow!("usage: gc_fixture DIR [N] [MIB] [PCT]"))?,
    );
    let n: u64 = args.get(2).map_or(Ok(12), |s| s.parse())?;
    let mib: usize = args.get(3).map_or(Ok(200), |s| s.parse())?;
    let pct: usize = args.get(4).map_or(Ok(10), |s| s.parse())?;
    let alternate = args.get(5).is_some_and(|m| m == "alternate");
    std::fs::create_dir_all(&dir)?;
    let meta = Meta::open(&dir.join("meta"))?;
    let blobs = BlobStore::fs(&dir.join("blobs"))?;
    let cfg = EngineConfig {
        chunker: ChunkerParams {
            min_bytes: 1024,
            avg_bytes: 4096,
            max_bytes: 16384,
            normalization: 1,
        },
        compression_level: 0,
        max_artifact_bytes: 1 << 40,
        ..EngineConfig::default()
    };
    let token = std::fs::read_to_string(dir.join("admin-token")).unwrap_or_else(|_| {
        let t = "gc-fixture-admin-token-0123456789".to_string();
        let _ = std::fs::write(dir.join("admin-token"), &t);
        t
    });
    let engine = Engine::new(meta, blobs, cfg, Secret::new(token.trim().to_string()))?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let size = mib << 20;
        let mut data = vec![0u8; size];
        noise(&mut data, 1);
        let region = size * pct / 100 / 8;
        let start = Instant::now();
        let mut ids = Vec::new();
        for i in 0..n {
            if i > 0 {
                // 8 scattered regions rewritten per checkpoint.
                for r in 0..8u64 {
                    let at = ((i * 7919 + r * 104_729) as usize * 4096) % (size - region);
                    noise(&mut data[at..at + region], 1000 * i + r);
                }
            }
            let req = DepositRequest {
                experiment: EXP,
                created_by: Principal::Admin,
                content_type: "application/octet-stream".into(),
                filename: Some(format!("checkpoint-{i}.bin")),
                expires_at: None,
                labels: Default::default(),
                reference: None,
            };
            let mut ingest = engine.begin_ingest()?;
            for part in data.chunks(1 << 20) {
                ingest.push(Bytes::copy_from_slice(part)).await?;
            }
            let prepared = ingest.finish().await?;
            let r = engine.commit_artifact(prepared, req).await?;
            ids.push(r.id);
        }
        let built = start.elapsed();
        let doomed: Vec<&ArtifactId> = if alternate {
            ids.iter().step_by(2).collect()
        } else {
            ids.iter().take(ids.len() / 2).collect()
        };
        for id in &doomed {
            engine.delete_artifact(EXP, &Principal::Admin, id).await?;
        }
        let meta = engine.meta().clone();
        let (mut chunks, mut bytes) = (0u64, 0u64);
        meta.scan_chunks(|_, loc| {
            chunks += 1;
            bytes += u64::from(loc.stored_len);
            true
        })?;
        let packs: u64 = meta.packs()?.iter().map(|(_, p)| p.bytes).sum();
        println!(
            "fixture: {n} checkpoints of {mib} MiB, {pct}% rewritten each; {chunks} chunks indexed \
             ({:.1} MiB), {:.1} MiB of packs; built in {:.1} s; deleted {} checkpoints ({})",
            bytes as f64 / 1048576.0,
            packs as f64 / 1048576.0,
            built.as_secs_f64(),
            doomed.len(),
            if alternate {
                "every other one"
            } else {
                "the oldest half"
            }
        );
        meta.flush()?;
        anyhow::Ok(())
    })?;
    Ok(())
}
