//! Reindex, part 2: segments (`segments-v1`) and manifests
//! (`manifests-v1`) from the manifest objects of the blob store, one
//! segment in memory at a time; and manifests of manifest bundles (group
//! commits of small deposits, read whole: they are small), whose
//! `manifest-bundles-v1` rows are rebuilt too.

use bytes::Bytes;

use super::{ObjectProblem, ReindexReport};
use crate::blobs::{BlobError, BlobStore, keys};
use crate::engine::ingest::MANIFEST_MAGIC;
use crate::engine::manifest_object::split_bundle;
use crate::engine::{EngineError, blocking};
use crate::hash::Digest;
use crate::ids::PackId;
use crate::meta::records::{Manifest, ManifestEntry, Segment};
use crate::meta::{Meta, encode};

/// Bytes read from a manifest object per request (at least one segment's
/// entries, so most manifests take one request).
const MANIFEST_WINDOW_BYTES: u64 = 256 << 10;
/// Magic + CBOR length at the start of a manifest object.
const MANIFEST_HEAD_LEN: u64 = 12;
/// Chunk id + raw length, per entry of a manifest object.
const MANIFEST_ENTRY_LEN: u64 = 36;

/// A manifest object that checked out.
pub(super) struct FoundManifest {
    pub(super) id: Digest,
    pub(super) size: u64,
    pub(super) blake3: Digest,
    pub(super) chunks: u64,
    pub(super) claimed: bool,
}

/// Ranged reads of one object through a window, so that small objects take
/// one request.
struct WindowReader<'a> {
    blobs: &'a BlobStore,
    key: &'a str,
    size: u64,
    start: u64,
    buf: Bytes,
}

impl WindowReader<'_> {
    async fn read(&mut self, offset: u64, len: u64) -> Result<Bytes, BlobError> {
        let end = offset.saturating_add(len);
        if end > self.size {
            return Err(BlobError::ShortRead {
                key: self.key.to_string(),
                expected: len,
                got: self.size.saturating_sub(offset),
            });
        }
        let held = self.start + self.buf.len() as u64;
        if offset < self.start || end > held {
            let n = len.max(MANIFEST_WINDOW_BYTES).min(self.size - offset);
            self.buf = self.blobs.read_range(self.key, offset, n).await?;
            self.start = offset;
        }
        let from = (offset - self.start) as usize;
        Ok(self.buf.slice(from..from + len as usize))
    }
}

/// Rebuilds every manifest found under `manifests/`; returns those that
/// checked out, sorted by id.
pub(super) async fn restore_manifests(
    meta: &Meta,
    blobs: &BlobStore,
    report: &mut ReindexReport,
) -> Result<Vec<FoundManifest>, EngineError> {
    let mut found = Vec::new();
    for (key, size) in blobs.list(keys::MANIFESTS).await? {
        if let Some(bundle) = keys::parse_manifest_bundle(&key) {
            restore_bundle(meta, blobs, &key, bundle, report, &mut found).await?;
            continue;
        }
        let Some(id) = keys::parse_manifest(&key) else {
            report.foreign_objects.push(key);
            continue;
        };
        report.manifests_scanned += 1;
        match restore_manifest(meta, blobs, &key, id, size, Bytes::new()).await {
            Ok(Ok((manifest, restored))) => {
                report.manifests_restored += u64::from(restored);
                found.push(FoundManifest {
                    id,
                    size: manifest.size,
                    blake3: manifest.blake3,
                    chunks: manifest.chunks,
                    claimed: false,
                });
            }
            Ok(Err(reason)) => {
                tracing::warn!(%key, %reason, "manifest object not restored");
                report.bad_manifests.push(ObjectProblem { key, reason });
            }
            Err(EngineError::Blob(BlobError::NotFound(_))) => {
                tracing::info!(%key, "manifest object vanished while reindexing");
            }
            Err(e) => return Err(e),
        }
    }
    found.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
    found.dedup_by(|a, b| a.id == b.id);
    Ok(found)
}

/// Restores the manifests of a bundle and their `manifest-bundles-v1`
/// rows. A record that does not check out is reported; the records before
/// it are restored.
async fn restore_bundle(
    meta: &Meta,
    blobs: &BlobStore,
    key: &str,
    bundle: PackId,
    report: &mut ReindexReport,
    found: &mut Vec<FoundManifest>,
) -> Result<(), EngineError> {
    let body = match blobs.read(key).await {
        Ok(b) => b,
        Err(BlobError::NotFound(_)) => {
            tracing::info!(%key, "manifest bundle vanished while reindexing");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let (records, problem) = split_bundle(&body);
    for rec in records {
        report.manifests_scanned += 1;
        let object = body.slice(rec.offset..rec.offset + rec.len);
        match restore_manifest(meta, blobs, key, rec.id, rec.len as u64, object).await? {
            Ok((manifest, restored)) => {
                report.manifests_restored += u64::from(restored);
                let (m, id) = (meta.clone(), rec.id);
                blocking(move || {
                    if m.manifest_bundle(&id)?.is_some() {
                        return Ok(());
                    }
                    let mut b = m.batch();
                    b.put_manifest_bundle(&id, bundle);
                    Ok(b.commit_unsynced()?)
                })
                .await?;
                found.push(FoundManifest {
                    id: rec.id,
                    size: manifest.size,
                    blake3: manifest.blake3,
                    chunks: manifest.chunks,
                    claimed: false,
                });
            }
            Err(reason) => {
                tracing::warn!(%key, manifest = %rec.id, %reason, "bundled manifest not restored");
                report.bad_manifests.push(ObjectProblem {
                    key: key.to_string(),
                    reason,
                });
            }
        }
    }
    if let Some(reason) = problem {
        tracing::warn!(%key, %reason, "manifest bundle not read to its end");
        report.bad_manifests.push(ObjectProblem {
            key: key.to_string(),
            reason,
        });
    }
    Ok(())
}

/// Restores one manifest object (`preloaded`: its bytes, when already read
/// whole; else empty): `Ok(Err(reason))` when the object does not check
/// out; otherwise the manifest and whether anything was written.
async fn restore_manifest(
    meta: &Meta,
    blobs: &BlobStore,
    key: &str,
    id: Digest,
    size: u64,
    preloaded: Bytes,
) -> Result<Result<(Manifest, bool), String>, EngineError> {
    if size < MANIFEST_HEAD_LEN {
        return Ok(Err("shorter than its header".into()));
    }
    let mut r = WindowReader {
        blobs,
        key,
        size,
        start: 0,
        buf: preloaded,
    };
    let head = r.read(0, MANIFEST_HEAD_LEN).await?;
    if &head[..8] != MANIFEST_MAGIC {
        return Ok(Err("not a manifest object (magic)".into()));
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&head[8..12]);
    let cbor_len = u64::from(u32::from_le_bytes(len));
    if MANIFEST_HEAD_LEN + cbor_len > size {
        return Ok(Err("manifest longer than the object".into()));
    }
    let cbor = r.read(MANIFEST_HEAD_LEN, cbor_len).await?;
    if Digest::of(&cbor) != id {
        return Ok(Err("BLAKE3 of the manifest differs from its name".into()));
    }
    let manifest: Manifest = match ciborium::from_reader(&cbor[..]) {
        Ok(m) => m,
        Err(e) => return Ok(Err(format!("manifest does not decode: {e}"))),
    };
    let seg_chunks: u64 = manifest.segments.iter().map(|s| u64::from(s.chunks)).sum();
    let seg_bytes: u64 = manifest.segments.iter().map(|s| s.bytes).sum();
    if seg_chunks != manifest.chunks || seg_bytes != manifest.size {
        return Ok(Err(
            "segment list disagrees with the manifest's totals".into()
        ));
    }
    let entries_at = MANIFEST_HEAD_LEN + cbor_len;
    if manifest
        .chunks
        .checked_mul(MANIFEST_ENTRY_LEN)
        .and_then(|n| n.checked_add(entries_at))
        != Some(size)
    {
        return Ok(Err("object size disagrees with the chunk count".into()));
    }
    let (m, mf) = (meta.clone(), manifest.clone());
    let present = blocking(move || {
        if m.manifest(&id)?.as_ref() != Some(&mf) {
            return Ok(false);
        }
        for s in &mf.segments {
            if !m.has_segment(&s.id)? {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    if present {
        return Ok(Ok((manifest, false)));
    }
    // One segment in memory at a time. Segments go in unsynced; the final
    // flush of `reindex` makes them durable before the marker is cleared.
    let mut offset = entries_at;
    for (i, seg) in manifest.segments.iter().enumerate() {
        let n = u64::from(seg.chunks) * MANIFEST_ENTRY_LEN;
        let raw = r.read(offset, n).await?;
        offset += n;
        let entries: Vec<ManifestEntry> = raw
            .chunks_exact(MANIFEST_ENTRY_LEN as usize)
            .filter_map(|e| {
                let id = Digest::from_slice(&e[..32])?;
                let mut len = [0u8; 4];
                len.copy_from_slice(&e[32..36]);
                Some(ManifestEntry {
                    id,
                    len: u32::from_le_bytes(len),
                })
            })
            .collect();
        let bytes: u64 = entries.iter().map(|e| u64::from(e.len)).sum();
        let encoded = encode(&Segment { entries })?;
        if Digest::of(&encoded) != seg.id || bytes != seg.bytes {
            return Ok(Err(format!(
                "segment {i} does not match the manifest's segment reference"
            )));
        }
        let (m, sid) = (meta.clone(), seg.id);
        blocking(move || {
            let mut b = m.batch();
            b.put_segment(&sid, &encoded);
            Ok(b.commit_unsynced()?)
        })
        .await?;
    }
    let (m, mf) = (meta.clone(), manifest.clone());
    blocking(move || {
        let mut b = m.batch();
        b.put_manifest(&id, &mf);
        Ok(b.commit_unsynced()?)
    })
    .await?;
    Ok(Ok((manifest, true)))
}
