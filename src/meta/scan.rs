//! Whole-store scans for integrity checking (fsck, scrub) and the
//! scrubber's own column family, `pack-scrub-v1` (pack id → time of its
//! last full verification, stored as whole Unix seconds as it always was:
//! converted to a [`Timestamp`] here, at the boundary).
//!
//! The scans hand out one record at a time (chunk index) or one bounded page
//! (artifacts), so callers keep memory independent of the store's size
//! (invariant 8). Scrub rows are bookkeeping only: losing one makes a pack
//! look never verified, so they are written without a WAL sync.

use super::kv::ScanSpec;
use super::records::{ArtifactRecord, ChunkLocation};
use super::{
    Batch, CF_ARTIFACTS, CF_CHUNKS, CF_PACK_SCRUB, Meta, MetaError, decode, pack_key, pack_of_key,
};
use crate::auth::ExperimentId;
use crate::clock::Timestamp;
use crate::hash::Digest;
use crate::ids::{ArtifactId, PackId};

/// One artifact of a store-wide scan.
#[derive(Clone, Debug)]
pub struct ScannedArtifact {
    /// Experiment id.
    pub experiment: ExperimentId,
    /// Artifact id.
    pub id: ArtifactId,
    /// The record.
    pub record: ArtifactRecord,
}

impl ScannedArtifact {
    /// The `artifacts-v1` key of this artifact (a scan cursor).
    pub fn key(&self) -> Vec<u8> {
        super::scoped_key(&self.experiment, self.id.as_bytes())
    }
}

impl Meta {
    /// Calls `f` for every chunk index entry, in chunk-id order; stops when
    /// `f` returns false. Reads one consistent snapshot.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] for a key
    /// that is not a chunk id or a record that does not decode.
    pub fn scan_chunks(
        &self,
        mut f: impl FnMut(Digest, ChunkLocation) -> bool,
    ) -> Result<(), MetaError> {
        for item in self.kv.scan(CF_CHUNKS, ScanSpec::all()) {
            let (k, v) = item?;
            let id = Digest::from_slice(&k).ok_or_else(|| MetaError::Corrupt {
                cf: CF_CHUNKS,
                detail: "bad chunk key".into(),
            })?;
            if !f(id, decode(CF_CHUNKS, &v)?) {
                break;
            }
        }
        Ok(())
    }

    /// Up to `limit` artifacts of every experiment in key order, starting
    /// strictly after the key `after` (see [`ScannedArtifact::key`]).
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn artifacts_page(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<ScannedArtifact>, MetaError> {
        let spec = match after {
            Some(k) => ScanSpec::from(k),
            None => ScanSpec::all(),
        };
        let mut out = Vec::new();
        for item in self.kv.scan(CF_ARTIFACTS, spec) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if after.is_some_and(|a| a == &k[..]) {
                continue;
            }
            let Some((experiment, id)) = super::experiments::split_artifact_key(&k) else {
                continue;
            };
            out.push(ScannedArtifact {
                experiment,
                id,
                record: decode(CF_ARTIFACTS, &v)?,
            });
        }
        Ok(out)
    }

    /// When the scrubber last verified pack `id` (to the second).
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn pack_scrubbed_at(&self, id: PackId) -> Result<Option<Timestamp>, MetaError> {
        let secs: Option<i64> = self.get(CF_PACK_SCRUB, &pack_key(id))?;
        Ok(secs.map(Timestamp::from_unix_secs))
    }

    /// Every scrub row: (pack id, when it was last verified, to the second).
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] for a key
    /// that is not a pack id or a value that does not decode.
    pub fn pack_scrub_times(&self) -> Result<Vec<(PackId, Timestamp)>, MetaError> {
        let mut out = Vec::new();
        for item in self.kv.scan(CF_PACK_SCRUB, ScanSpec::all()) {
            let (k, v) = item?;
            let secs: i64 = decode(CF_PACK_SCRUB, &v)?;
            out.push((
                pack_of_key(CF_PACK_SCRUB, &k)?,
                Timestamp::from_unix_secs(secs),
            ));
        }
        Ok(out)
    }
}

impl Batch<'_> {
    /// Records that pack `id` was verified whole at `at` (stored as whole
    /// Unix seconds, the row's encoding since it exists).
    pub fn put_pack_scrub(&mut self, id: PackId, at: Timestamp) {
        self.put_record(CF_PACK_SCRUB, pack_key(id), &at.unix_secs());
    }

    /// Drops the scrub row of pack `id` (the pack is gone; GC should call
    /// this when it deletes a pack record).
    pub fn delete_pack_scrub(&mut self, id: PackId) {
        self.delete(CF_PACK_SCRUB, pack_key(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::Codec;

    #[test]
    fn scans_and_scrub_rows() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(dir.path()).unwrap();
        let mut b = meta.batch();
        for i in 0..3u8 {
            let loc = ChunkLocation {
                pack: PackId::from_u128(u128::from(i)),
                offset: 8,
                stored_len: 1,
                raw_len: 1,
                codec: Codec::Raw,
                frame: None,
                bad: i == 1,
            };
            b.put_chunk(&Digest::of(&[i]), &loc);
        }
        let (p5, p6) = (PackId::from_u128(5), PackId::from_u128(6));
        let secs = Timestamp::from_unix_secs;
        b.put_pack_scrub(p5, secs(100));
        b.put_pack_scrub(p6, Timestamp::from_unix_nanos(50_999_999_999));
        b.commit().unwrap();
        let mut seen = Vec::new();
        meta.scan_chunks(|id, loc| {
            seen.push((id, loc.bad));
            true
        })
        .unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen.iter().filter(|(_, bad)| *bad).count(), 1);
        assert_eq!(
            meta.pack_scrub_times().unwrap(),
            vec![(p5, secs(100)), (p6, secs(50))]
        );
        assert_eq!(meta.pack_scrubbed_at(p6).unwrap(), Some(secs(50)));
        // Stored as whole seconds, as before typed times.
        let raw = meta.kv.get(CF_PACK_SCRUB, &pack_key(p6)).unwrap();
        assert_eq!(raw, Some(crate::meta::encode(&50i64).unwrap()));
        let mut b = meta.batch();
        b.delete_pack_scrub(p5);
        b.commit().unwrap();
        assert_eq!(meta.pack_scrubbed_at(p5).unwrap(), None);
        assert!(meta.artifacts_page(None, 10).unwrap().is_empty());
    }
}
