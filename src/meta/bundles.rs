//! `manifest-bundles-v1`: where the blob-store copy of a manifest lives
//! when it was written in a manifest bundle (one object holding the
//! manifests of a group commit of small deposits) rather than as its own
//! `manifests/<xx>/<hex>.manifest` object. Key: manifest id (32 bytes);
//! value: the bundle's id (16 bytes, big-endian, as pack ids are keyed).
//!
//! The row is written in the same synced batch as the manifest row, and
//! deleted with it by GC; fsck follows it to check that the copy exists,
//! and GC deletes a bundle object once no row names it.

use super::kv::ScanSpec;
use super::{Batch, CF_MANIFEST_BUNDLES, Meta, MetaError, pack_key, pack_of_key};
use crate::hash::Digest;
use crate::ids::PackId;

impl Meta {
    /// The bundle holding the blob-store copy of manifest `id`, if it lives
    /// in one.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] for a
    /// value that is not a bundle id.
    pub fn manifest_bundle(&self, id: &Digest) -> Result<Option<PackId>, MetaError> {
        match self.kv.get(CF_MANIFEST_BUNDLES, id.as_bytes())? {
            Some(v) => Ok(Some(pack_of_key(CF_MANIFEST_BUNDLES, &v)?)),
            None => Ok(None),
        }
    }

    /// Calls `f` with every (manifest id, bundle id) row.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] for a
    /// row that does not decode.
    pub fn scan_manifest_bundles(
        &self,
        mut f: impl FnMut(Digest, PackId),
    ) -> Result<(), MetaError> {
        for item in self.kv.scan(CF_MANIFEST_BUNDLES, ScanSpec::all()) {
            let (k, v) = item?;
            let id = Digest::from_slice(&k).ok_or_else(|| MetaError::Corrupt {
                cf: CF_MANIFEST_BUNDLES,
                detail: "bad manifest key".into(),
            })?;
            f(id, pack_of_key(CF_MANIFEST_BUNDLES, &v)?);
        }
        Ok(())
    }
}

impl Batch<'_> {
    /// Records that the copy of manifest `id` lives in bundle `bundle`.
    pub fn put_manifest_bundle(&mut self, id: &Digest, bundle: PackId) {
        self.put_raw(CF_MANIFEST_BUNDLES, id.as_bytes(), &pack_key(bundle));
    }

    /// Removes the bundle row of manifest `id` (with the manifest row).
    pub fn delete_manifest_bundle(&mut self, id: &Digest) {
        self.delete(CF_MANIFEST_BUNDLES, id.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_scan() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(dir.path()).unwrap();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let bundle = PackId::from_u128(42);
        let mut batch = meta.batch();
        batch.put_manifest_bundle(&a, bundle);
        batch.put_manifest_bundle(&b, PackId::from_u128(7));
        batch.commit().unwrap();
        assert_eq!(meta.manifest_bundle(&a).unwrap(), Some(bundle));
        let mut rows = Vec::new();
        meta.scan_manifest_bundles(|m, p| rows.push((m, p)))
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows.contains(&(a, bundle)));
        let mut batch = meta.batch();
        batch.delete_manifest_bundle(&a);
        batch.commit().unwrap();
        assert_eq!(meta.manifest_bundle(&a).unwrap(), None);
    }
}
