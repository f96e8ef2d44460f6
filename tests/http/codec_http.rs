//! Byte planes over real HTTP against the real binary: a float32 checkpoint
//! deposited through `/cas/v1/` is stored with the byte-plane codec (read
//! from the pack footers on disk), reads back byte-identical whole and in
//! ranges across chunk boundaries, and the admin fsck (deep) verifies it;
//! `--byte-planes false` turns the codec off.

use std::path::Path;

use crate::support::server::*;
use eden_cas::pack::{Codec, parse_pack};
use serde_json::Value;

use crate::support::packs::{pack_file_bytes, pack_files};
use crate::support::v1;

/// Float32 weights in (-0.04, 0.04), triangular like a sum of two uniforms.
fn checkpoint(n: usize, seed: u64) -> Vec<u8> {
    v1::noise(n * 8, seed)
        .chunks_exact(8)
        .flat_map(|q| {
            let u = |b: &[u8]| {
                f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])) / 4_294_967_296.0
            };
            (((u(&q[..4]) + u(&q[4..]) - 1.0) * 0.04) as f32).to_le_bytes()
        })
        .collect()
}

/// Codecs of every footer entry of every pack under the data dir.
fn footer_codecs(data_dir: &Path) -> Vec<Codec> {
    pack_files(&data_dir.join("blobs"))
        .iter()
        .flat_map(|p| parse_pack(&std::fs::read(p).unwrap()).unwrap().entries)
        .map(|e| e.codec)
        .collect()
}

fn deep_fsck(server: &Server) -> Value {
    let resp = server
        .client()
        .post(format!("{}/cas/v1/admin/fsck?deep=true", server.base_url()))
        .header("Authorization", format!("Bearer {}", server.admin_bearer()))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    serde_json::from_str(&resp.text().unwrap()).unwrap()
}

#[test]
fn a_float32_checkpoint_is_stored_as_byte_planes_and_reads_back_exactly() {
    let server = Server::start_with(&["--scrub-bytes-per-hour", "0"]);
    let exp = exp_id();
    let admin = server.admin_bearer();
    let data = checkpoint(400_000, 1);
    let v = v1::deposit_ok(&server, &exp, &admin, &data);
    let id = v["id"].as_str().unwrap().to_string();
    // Dedup figures no longer carry stored lengths (invariant 4): the
    // saving is measured on the pack objects themselves.
    let stored = pack_file_bytes(&server.data_dir().join("blobs"));
    assert!(
        stored * 100 < data.len() as u64 * 90,
        "stored {stored} of {}",
        data.len()
    );

    let codecs = footer_codecs(server.data_dir());
    let planes = codecs.iter().filter(|c| **c == Codec::BytePlanes4).count();
    assert!(planes * 10 >= codecs.len() * 9, "{codecs:?}");

    assert_eq!(v1::fetch_bytes(&server, &exp, &admin, &id, None, 200), data);
    let size = data.len() as u64;
    let mut cuts = vec![0u64];
    for c in v1::chunks(&data) {
        cuts.push(cuts.last().unwrap() + c.len() as u64);
    }
    assert!(cuts.len() > 4, "several chunks");
    let mut ranges = vec![(0, 0), (1, 6), (size - 3, size - 1)];
    for &c in &cuts[1..cuts.len() - 1] {
        ranges.extend([(c - 1, c), (c - 3, c + 2), (c + 1, c + 70_001)]);
    }
    for (a, b) in ranges {
        let b = b.min(size - 1);
        let got = v1::fetch_bytes(
            &server,
            &exp,
            &admin,
            &id,
            Some(&format!("bytes={a}-{b}")),
            206,
        );
        assert!(got[..] == data[a as usize..=b as usize], "bytes={a}-{b}");
    }
    let r = deep_fsck(&server);
    assert_eq!(r["problems"], Value::Array(vec![]), "{r}");
    assert_eq!(r["chunks_verified"], r["chunks_indexed"]);
    assert_eq!(r["content_bytes_read_back"], size);
}

#[test]
fn byte_planes_can_be_switched_off() {
    let server = Server::start_with(&["--byte-planes", "false", "--scrub-bytes-per-hour", "0"]);
    let exp = exp_id();
    let admin = server.admin_bearer();
    let data = checkpoint(100_000, 2);
    let v = v1::deposit_ok(&server, &exp, &admin, &data);
    let codecs = footer_codecs(server.data_dir());
    assert!(!codecs.is_empty());
    assert!(
        codecs.iter().all(|c| matches!(c, Codec::Zstd | Codec::Raw)),
        "{codecs:?}"
    );
    let id = v["id"].as_str().unwrap();
    assert_eq!(v1::fetch_bytes(&server, &exp, &admin, id, None, 200), data);
}
