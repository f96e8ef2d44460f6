//! Whole-table scans, removals and checkpoints used by metadata recovery
//! (`engine/recovery.rs`: reindex; `engine/backup.rs`: backup and restore)
//! and by tests that compare tables.
//!
//! Scans stream from RocksDB iterators (each one reads a consistent view of
//! the table as of its creation); nothing here holds a table in memory.

use std::path::Path;

use super::kv::ScanSpec;
use super::records::{ArtifactRecord, ChunkLocation, Manifest};
use super::{
    Batch, CF_ARTIFACTS, CF_CHUNKS, CF_MANIFESTS, CF_SEGMENTS, CF_SYSTEM, Meta, MetaError, decode,
};
use crate::auth::ExperimentId;
use crate::hash::Digest;
use crate::ids::ArtifactId;

fn bad_key(cf: &'static str) -> MetaError {
    MetaError::Corrupt {
        cf,
        detail: "bad key".into(),
    }
}

impl Meta {
    /// The directory the database lives in (RocksDB; `None` on
    /// PostgreSQL).
    pub fn dir(&self) -> Option<&Path> {
        self.kv.dir()
    }

    /// Every chunk index entry, in chunk id order.
    ///
    /// # Errors
    /// Each item: [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`]
    /// for a key that is not a chunk id or a record that does not decode.
    pub fn chunk_entries(
        &self,
    ) -> impl Iterator<Item = Result<(Digest, ChunkLocation), MetaError>> + '_ {
        self.kv.scan(CF_CHUNKS, ScanSpec::all()).map(|item| {
            let (k, v) = item?;
            let id = Digest::from_slice(&k).ok_or_else(|| bad_key(CF_CHUNKS))?;
            Ok((id, decode(CF_CHUNKS, &v)?))
        })
    }

    /// Every manifest, in id order.
    ///
    /// # Errors
    /// Each item: [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`]
    /// for a key that is not a manifest id or a record that does not decode.
    pub fn manifest_entries(
        &self,
    ) -> impl Iterator<Item = Result<(Digest, Manifest), MetaError>> + '_ {
        self.kv.scan(CF_MANIFESTS, ScanSpec::all()).map(|item| {
            let (k, v) = item?;
            let id = Digest::from_slice(&k).ok_or_else(|| bad_key(CF_MANIFESTS))?;
            Ok((id, decode(CF_MANIFESTS, &v)?))
        })
    }

    /// Every artifact record of every experiment: (experiment, id, record),
    /// in key order.
    ///
    /// # Errors
    /// Each item: [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`]
    /// for a key that is not `experiment \0 artifact-id` or a record that does
    /// not decode.
    pub fn all_artifacts(
        &self,
    ) -> impl Iterator<Item = Result<(ExperimentId, ArtifactId, ArtifactRecord), MetaError>> + '_
    {
        self.kv.scan(CF_ARTIFACTS, ScanSpec::all()).map(|item| {
            let (k, v) = item?;
            let (experiment, id) =
                super::experiments::split_artifact_key(&k).ok_or_else(|| bad_key(CF_ARTIFACTS))?;
            Ok((experiment, id, decode(CF_ARTIFACTS, &v)?))
        })
    }

    /// Whether a segment is stored (no decoding).
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails.
    pub fn has_segment(&self, id: &Digest) -> Result<bool, MetaError> {
        Ok(self.kv.get(CF_SEGMENTS, id.as_bytes())?.is_some())
    }

    /// Removes a store-wide setting, durably.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails.
    pub fn delete_system(&self, key: &str) -> Result<(), MetaError> {
        let mut b = self.batch();
        b.delete(CF_SYSTEM, key.as_bytes());
        b.commit()
    }

    /// Writes a consistent point-in-time copy of the whole database into
    /// `dir`, which must not exist (RocksDB checkpoint: memtables are
    /// flushed, SST files hard-linked when `dir` is on the same file system,
    /// copied otherwise). Safe while the database is in use.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB cannot write the checkpoint (`dir`
    /// exists, I/O).
    pub fn checkpoint(&self, dir: &Path) -> Result<(), MetaError> {
        self.kv.checkpoint(dir)
    }
}

impl Batch<'_> {
    /// Stores a content-addressed segment (already encoded).
    pub fn put_segment(&mut self, id: &Digest, encoded: &[u8]) {
        self.put_raw(CF_SEGMENTS, id.as_bytes(), encoded);
    }

    /// Number of changes in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch holds no change.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
