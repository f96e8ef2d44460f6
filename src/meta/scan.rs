//! Whole-store scans for integrity checking (fsck, scrub) and the
//! scrubber's own column family, `pack-scrub-v1` (pack id → unix seconds of
//! its last full verification).
//!
//! The scans hand out one record at a time (chunk index) or one bounded page
//! (artifacts), so callers keep memory independent of the store's size
//! (invariant 8). Scrub rows are bookkeeping only: losing one makes a pack
//! look never verified, so they are written without a WAL sync.

use rocksdb::{Direction, IteratorMode};

use super::records::{ArtifactRecord, ChunkLocation};
use super::{Batch, CF_ARTIFACTS, CF_CHUNKS, CF_PACK_SCRUB, Meta, MetaError, decode};
use crate::hash::Digest;

/// One artifact of a store-wide scan.
#[derive(Clone, Debug)]
pub struct ScannedArtifact {
    /// Experiment id.
    pub experiment: String,
    /// Artifact id.
    pub id: [u8; 16],
    /// The record.
    pub record: ArtifactRecord,
}

impl ScannedArtifact {
    /// The `artifacts-v1` key of this artifact (a scan cursor).
    pub fn key(&self) -> Vec<u8> {
        super::scoped_key(&self.experiment, &self.id)
    }
}

fn pack_key_to_id(cf: &'static str, k: &[u8]) -> Result<u128, MetaError> {
    <[u8; 16]>::try_from(k)
        .map(u128::from_be_bytes)
        .map_err(|_| MetaError::Corrupt {
            cf,
            detail: "bad pack key".into(),
        })
}

impl Meta {
    /// Calls `f` for every chunk index entry, in chunk-id order; stops when
    /// `f` returns false. Reads one consistent snapshot.
    pub fn scan_chunks(
        &self,
        mut f: impl FnMut(Digest, ChunkLocation) -> bool,
    ) -> Result<(), MetaError> {
        for item in self.db.iterator_cf(self.cf(CF_CHUNKS), IteratorMode::Start) {
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
    pub fn artifacts_page(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<ScannedArtifact>, MetaError> {
        let mode = match after {
            Some(k) => IteratorMode::From(k, Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_ARTIFACTS), mode) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if after.is_some_and(|a| a == &k[..]) {
                continue;
            }
            let Some(sep) = k.iter().position(|&b| b == 0) else {
                continue;
            };
            let Ok(id) = <[u8; 16]>::try_from(&k[sep + 1..]) else {
                continue;
            };
            out.push(ScannedArtifact {
                experiment: String::from_utf8_lossy(&k[..sep]).into_owned(),
                id,
                record: decode(CF_ARTIFACTS, &v)?,
            });
        }
        Ok(out)
    }

    /// When the scrubber last verified pack `id` (unix seconds).
    pub fn pack_scrubbed_at(&self, id: u128) -> Result<Option<i64>, MetaError> {
        self.get(CF_PACK_SCRUB, &id.to_be_bytes())
    }

    /// Every scrub row: (pack id, unix seconds of its last verification).
    pub fn pack_scrub_times(&self) -> Result<Vec<(u128, i64)>, MetaError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_PACK_SCRUB), IteratorMode::Start)
        {
            let (k, v) = item?;
            out.push((
                pack_key_to_id(CF_PACK_SCRUB, &k)?,
                decode(CF_PACK_SCRUB, &v)?,
            ));
        }
        Ok(out)
    }
}

impl Batch<'_> {
    /// Records that pack `id` was verified whole at `at` (unix seconds).
    pub fn put_pack_scrub(&mut self, id: u128, at: i64) {
        self.put_record(CF_PACK_SCRUB, id.to_be_bytes(), &at);
    }

    /// Drops the scrub row of pack `id` (the pack is gone; GC should call
    /// this when it deletes a pack record).
    pub fn delete_pack_scrub(&mut self, id: u128) {
        self.inner
            .delete_cf(self.meta.cf(CF_PACK_SCRUB), id.to_be_bytes());
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
                pack: u128::from(i),
                offset: 8,
                stored_len: 1,
                raw_len: 1,
                codec: Codec::Raw,
                bad: i == 1,
            };
            b.put_chunk(&Digest::of(&[i]), &loc);
        }
        b.put_pack_scrub(5, 100);
        b.put_pack_scrub(6, 50);
        b.commit().unwrap();
        let mut seen = Vec::new();
        meta.scan_chunks(|id, loc| {
            seen.push((id, loc.bad));
            true
        })
        .unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen.iter().filter(|(_, bad)| *bad).count(), 1);
        assert_eq!(meta.pack_scrub_times().unwrap(), vec![(5, 100), (6, 50)]);
        assert_eq!(meta.pack_scrubbed_at(6).unwrap(), Some(50));
        let mut b = meta.batch();
        b.delete_pack_scrub(5);
        b.commit().unwrap();
        assert_eq!(meta.pack_scrubbed_at(5).unwrap(), None);
        assert!(meta.artifacts_page(None, 10).unwrap().is_empty());
    }
}
