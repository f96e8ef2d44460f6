//! Manifest objects in the blob store: the copy of each manifest that lets
//! the metadata be rebuilt from the blob store alone (`recovery/`). Layout:
//! `MANIFEST_MAGIC`, CBOR length u32 LE, CBOR `Manifest`, then 36-byte
//! entries (chunk id + raw length u32 LE), written one segment at a time.
//!
//! Small deposits committed as a group (`ingest/group.rs`) share one
//! *manifest bundle* object instead (`manifests/bundles/<xx>/<ulid>.bundle`):
//! `BUNDLE_MAGIC`, then the manifest objects of the group back to back,
//! each exactly as it would be stored alone (it says its own length: head,
//! CBOR, and 36 bytes per chunk of the manifest). `manifest-bundles-v1`
//! names the bundle of each such manifest.

use std::sync::Arc;

use bytes::Bytes;

use super::{Engine, EngineError, blocking};
use crate::blobs::{BlobError, keys};
use crate::hash::Digest;
use crate::meta::encode;
use crate::meta::records::Manifest;

/// Magic at the start of a manifest object in the blob store.
pub const MANIFEST_MAGIC: &[u8; 8] = b"EDENMF01";
/// Magic at the start of a manifest bundle.
pub const BUNDLE_MAGIC: &[u8; 8] = b"EDENMB01";

/// The whole manifest object of `manifest` (as [`write_manifest_object`]
/// writes it), for a manifest bundle. Blocking (reads the segments); for
/// small manifests only, as it is held whole.
///
/// # Errors
/// [`EngineError::Integrity`] when a segment is missing; metadata failures.
pub(crate) fn encode_manifest_object(
    meta: &crate::meta::Meta,
    manifest: &Manifest,
) -> Result<Vec<u8>, EngineError> {
    let head = encode(manifest)?;
    let mut out = Vec::with_capacity(12 + head.len() + 36 * manifest.chunks as usize);
    out.extend_from_slice(MANIFEST_MAGIC);
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&head);
    for seg in &manifest.segments {
        let segment = meta
            .segment(&seg.id)?
            .ok_or_else(|| EngineError::missing(super::Record::Segment(seg.id)))?;
        for e in &segment.entries {
            out.extend_from_slice(e.id.as_bytes());
            out.extend_from_slice(&e.len.to_le_bytes());
        }
    }
    Ok(out)
}

/// The key of the object holding the blob-store copy of manifest `id`
/// (the bundle `manifest-bundles-v1` names, else its own object), if that
/// object exists.
///
/// # Errors
/// Blob store or metadata failures (not an absent object).
pub(crate) async fn manifest_copy_key(
    engine: &Arc<Engine>,
    id: &Digest,
) -> Result<Option<String>, EngineError> {
    let (meta, mid) = (engine.meta.clone(), *id);
    let bundle = blocking(move || Ok(meta.manifest_bundle(&mid)?)).await?;
    let key = match bundle {
        Some(b) => keys::manifest_bundle(b),
        None => keys::manifest(id),
    };
    match engine.blobs.size(&key).await {
        Ok(_) => Ok(Some(key)),
        Err(BlobError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Engine {
    /// The blob-store copy of manifest `id` as a manifest object (taken out
    /// of its bundle if it lives in one), if there is one. For tests and
    /// tools that inspect storage (see [`Engine::blobs`]).
    ///
    /// # Errors
    /// Blob store or metadata failures.
    #[doc(hidden)]
    pub async fn manifest_copy(
        self: &Arc<Self>,
        id: &Digest,
    ) -> Result<Option<Bytes>, EngineError> {
        let Some(key) = manifest_copy_key(self, id).await? else {
            return Ok(None);
        };
        let body = self.blobs.read(&key).await?;
        if keys::parse_manifest_bundle(&key).is_none() {
            return Ok(Some(body));
        }
        let (records, _) = split_bundle(&body);
        Ok(records
            .into_iter()
            .find(|r| r.id == *id)
            .map(|r| body.slice(r.offset..r.offset + r.len)))
    }
}

/// One manifest object inside a bundle: its id and where it lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundledManifest {
    /// Manifest id (BLAKE3 of its CBOR head).
    pub id: Digest,
    /// Offset of its object in the bundle.
    pub offset: usize,
    /// Length of its object.
    pub len: usize,
}

/// Splits a manifest bundle into its manifest objects. A record that does
/// not check out (cut short by a crash, bad magic, a head that does not
/// decode) ends the walk with the reason, after the records before it.
pub fn split_bundle(bytes: &[u8]) -> (Vec<BundledManifest>, Option<String>) {
    let mut out = Vec::new();
    if bytes.len() < BUNDLE_MAGIC.len() || &bytes[..BUNDLE_MAGIC.len()] != BUNDLE_MAGIC {
        return (out, Some("not a manifest bundle (magic)".into()));
    }
    let mut at = BUNDLE_MAGIC.len();
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < 12 || &rest[..8] != MANIFEST_MAGIC {
            return (out, Some(format!("no manifest object at offset {at}")));
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&rest[8..12]);
        let cbor_len = u32::from_le_bytes(len) as usize;
        let Some(cbor) = rest.get(12..12 + cbor_len) else {
            return (out, Some(format!("manifest at offset {at} cut short")));
        };
        let manifest: Manifest = match ciborium::from_reader(cbor) {
            Ok(m) => m,
            Err(e) => return (out, Some(format!("manifest at offset {at}: {e}"))),
        };
        let total = usize::try_from(manifest.chunks)
            .ok()
            .and_then(|c| c.checked_mul(36))
            .and_then(|n| n.checked_add(12 + cbor_len));
        match total {
            Some(n) if n <= rest.len() => {
                out.push(BundledManifest {
                    id: Digest::of(cbor),
                    offset: at,
                    len: n,
                });
                at += n;
            }
            _ => return (out, Some(format!("manifest at offset {at} cut short"))),
        }
    }
    (out, None)
}

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
