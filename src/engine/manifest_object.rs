//! Manifest objects in the blob store: the copy of each manifest that lets
//! the metadata be rebuilt from the blob store alone (`recovery/`). Layout:
//! `MANIFEST_MAGIC`, CBOR length u32 LE, CBOR `Manifest`, then 36-byte
//! entries (chunk id + raw length u32 LE), written one segment at a time.

use std::sync::Arc;

use bytes::Bytes;

use super::{Engine, EngineError, blocking};
use crate::blobs::{BlobError, keys};
use crate::hash::Digest;
use crate::meta::encode;
use crate::meta::records::Manifest;

/// Magic at the start of a manifest object in the blob store.
pub const MANIFEST_MAGIC: &[u8; 8] = b"EDENMF01";

/// Writes the manifest to the blob store (`MANIFEST_MAGIC`, CBOR length u32
/// LE, CBOR manifest, then 36-byte entries: id + raw length u32 LE), one
/// segment in memory at a time. Content-addressed: an existing object of
/// the expected size is this very manifest. One of another size is the
/// leftover of a write that failed or crashed midway (on fs an interrupted
/// write leaves its partial file at the key): it is replaced.
pub(crate) async fn write_manifest_object(
    engine: &Arc<Engine>,
    id: &Digest,
    manifest: &Manifest,
) -> Result<(), EngineError> {
    let key = keys::manifest(id);
    let head = encode(manifest)?;
    let expected = (MANIFEST_MAGIC.len() + 4 + head.len()) as u64 + 36 * manifest.chunks;
    for attempt in 0..2 {
        match write_manifest_bytes(engine, &key, &head, manifest).await {
            Err(EngineError::Blob(BlobError::AlreadyExists(_))) => {}
            other => return other,
        }
        match engine.blobs.size(&key).await {
            Ok(n) if n == expected => return Ok(()),
            Ok(n) if attempt == 0 => {
                tracing::warn!(%key, size = n, expected, "replacing a partial manifest object");
                engine.blobs.delete(&key).await?;
            }
            Ok(n) => {
                return Err(EngineError::inconsistent(format!(
                    "manifest object {key} is {n} bytes, expected {expected}"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(EngineError::Internal(format!(
        "manifest object {key} could not be written"
    )))
}

async fn write_manifest_bytes(
    engine: &Arc<Engine>,
    key: &str,
    head: &[u8],
    manifest: &Manifest,
) -> Result<(), EngineError> {
    let mut writer = engine.blobs.create(key).await?;
    let mut first = Vec::with_capacity(12 + head.len());
    first.extend_from_slice(MANIFEST_MAGIC);
    first.extend_from_slice(&(head.len() as u32).to_le_bytes());
    first.extend_from_slice(head);
    let written = async {
        writer.write(Bytes::from(first)).await?;
        for seg in &manifest.segments {
            let meta = engine.meta.clone();
            let sid = seg.id;
            let segment = blocking(move || {
                meta.segment(&sid)?
                    .ok_or_else(|| EngineError::missing(super::Record::Segment(sid)))
            })
            .await?;
            let mut buf = Vec::with_capacity(segment.entries.len() * 36);
            for e in &segment.entries {
                buf.extend_from_slice(e.id.as_bytes());
                buf.extend_from_slice(&e.len.to_le_bytes());
            }
            writer.write(Bytes::from(buf)).await?;
        }
        Ok::<(), EngineError>(())
    }
    .await;
    match written {
        Ok(()) => Ok(writer.close().await?),
        Err(e) => {
            writer.abort().await;
            Err(e)
        }
    }
}
