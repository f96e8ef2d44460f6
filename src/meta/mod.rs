//! Metadata: tables ("column families"), CBOR codecs, typed accessors,
//! over one of two engines ([`kv::Kv`]): RocksDB embedded in one process
//! (the default) or PostgreSQL shared by many nodes.
//!
//! Every multi-key change is one [`Batch`], written atomically, with `sync`
//! when it makes something visible (invariant 3: the commit that records an
//! artifact is durable before the deposit is acknowledged). All calls
//! block: the engine runs them off the async executor.

pub mod bundles;
pub mod experiments;
pub mod kv;
pub mod lock;
pub mod postgres;
pub mod records;
pub mod recovery;
pub mod refs;
pub mod rocks;
pub mod scan;
pub mod uploads;

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::ExperimentId;
use crate::hash::Digest;
use crate::ids::PackId;
use kv::{Kv, Op, ScanSpec};
use records::{ChunkLocation, Manifest, PackRecord, Segment};

/// Chunk id → [`ChunkLocation`].
pub const CF_CHUNKS: &str = "chunks-v1";
/// Pack id → [`PackRecord`].
pub const CF_PACKS: &str = "packs-v1";
/// Segment id → [`Segment`].
pub const CF_SEGMENTS: &str = "segments-v1";
/// Manifest id → [`Manifest`].
pub const CF_MANIFESTS: &str = "manifests-v1";
/// `experiment \0 artifact-ulid` → [`ArtifactRecord`].
pub const CF_ARTIFACTS: &str = "artifacts-v1";
/// `experiment \0 worker` → [`WorkerRecord`].
pub const CF_WORKERS: &str = "workers-v1";
/// `experiment \0 group` → [`GroupRecord`].
pub const CF_GROUPS: &str = "groups-v1";
/// Store-wide settings (format version, token hashing key).
pub const CF_SYSTEM: &str = "system-v1";
/// `experiment \0 chunk-id(32) artifact-id(16)` → empty: which artifacts of
/// an experiment hold a chunk (the inverse index behind "missing").
pub const CF_CHUNK_REFS: &str = "chunk-refs-v1";
/// Upload session id (16 bytes) → [`records::UploadRecord`].
pub const CF_UPLOADS: &str = "uploads-v1";
/// `session-id(16) ‖ chunk-id(32)` → [`records::UploadChunk`]: chunks received
/// by a session, and the pins GC must honour.
pub const CF_UPLOAD_CHUNKS: &str = "upload-chunks-v1";
/// Pack id → unix seconds when the scrubber last verified the pack whole.
pub const CF_PACK_SCRUB: &str = "pack-scrub-v1";
/// Manifest id → id (16 bytes) of the manifest bundle object that holds
/// its blob-store copy (manifests of small deposits committed as a group,
/// `engine/ingest/group.rs`).
pub const CF_MANIFEST_BUNDLES: &str = "manifest-bundles-v1";

/// `experiment \0 name` → [`refs::RefRecord`]: named references.
pub const CF_REFS: &str = "refs-v1";
/// `experiment \0 name \0 seq` → [`refs::RefChange`]: each reference's
/// bounded history.
pub const CF_REF_LOG: &str = "ref-log-v1";

/// Every table, in the order engines create them.
pub const ALL_CFS: [&str; 15] = [
    CF_CHUNKS,
    CF_PACKS,
    CF_SEGMENTS,
    CF_MANIFESTS,
    CF_ARTIFACTS,
    CF_WORKERS,
    CF_GROUPS,
    CF_SYSTEM,
    CF_CHUNK_REFS,
    CF_UPLOADS,
    CF_UPLOAD_CHUNKS,
    CF_PACK_SCRUB,
    CF_REFS,
    CF_REF_LOG,
    CF_MANIFEST_BUNDLES,
];

/// The metadata format this binary writes and the newest it opens. Raise
/// it with any change an older binary would misread (column families,
/// record shapes, a pack format it cannot read). 2: chunk index entries
/// may name a frame (pack format 3), which format-1 binaries would misread.
pub const STORE_FORMAT: u32 = 2;
/// `system-v1` key of the store format (u32, little-endian), written when
/// the store is created.
pub const STORE_FORMAT_KEY: &str = "store-format";

/// Errors of the metadata layer.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// RocksDB reported an error (I/O, corruption, lock held by another process).
    #[error("rocksdb: {0}")]
    Db(#[from] rocksdb::Error),
    /// PostgreSQL reported an error or could not be reached.
    #[error("postgresql: {0}")]
    Postgres(String),
    /// The metadata engine cannot do this (named in the message).
    #[error("{0}")]
    Unsupported(&'static str),
    /// A record could not be encoded (nothing was written).
    #[error("metadata record does not encode: {0}")]
    Encode(String),
    /// The store was written by a newer eden-cas whose metadata format this
    /// binary does not know.
    #[error(
        "the metadata store has format version {found}, newer than this binary's {supported}; \
         run a newer eden-cas"
    )]
    NewerFormat {
        /// Version recorded in the store.
        found: u32,
        /// Newest version this binary reads ([`STORE_FORMAT`]).
        supported: u32,
    },
    /// A stored value does not decode.
    #[error("corrupt metadata record in {cf}: {detail}")]
    Corrupt {
        /// Column family.
        cf: &'static str,
        /// Decoder message.
        detail: String,
    },
}

/// Encodes a record as CBOR.
///
/// # Errors
/// [`MetaError::Encode`] when the value does not serialize (never a
/// partial buffer).
pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, MetaError> {
    let mut out = Vec::with_capacity(64);
    ciborium::into_writer(v, &mut out).map_err(|e| MetaError::Encode(e.to_string()))?;
    Ok(out)
}

fn decode<T: DeserializeOwned>(cf: &'static str, bytes: &[u8]) -> Result<T, MetaError> {
    ciborium::from_reader(bytes).map_err(|e| MetaError::Corrupt {
        cf,
        detail: e.to_string(),
    })
}

/// Key of a per-experiment record: `experiment \0 id` (the id's stored
/// bytes: 16 for an artifact, the text of a worker or group id).
pub fn scoped_key(experiment: &ExperimentId, id: &[u8]) -> Vec<u8> {
    let experiment = experiment.as_str();
    let mut k = Vec::with_capacity(experiment.len() + 1 + id.len());
    k.extend_from_slice(experiment.as_bytes());
    k.push(0);
    k.extend_from_slice(id);
    k
}

/// A pack id's key: its 128-bit value, big-endian (so keys sort by ULID).
fn pack_key(id: PackId) -> [u8; 16] {
    id.as_u128().to_be_bytes()
}

/// The pack id of a `packs-v1` or `pack-scrub-v1` key.
fn pack_of_key(cf: &'static str, k: &[u8]) -> Result<PackId, MetaError> {
    <[u8; 16]>::try_from(k)
        .map(|b| PackId::from_u128(u128::from_be_bytes(b)))
        .map_err(|_| MetaError::Corrupt {
            cf,
            detail: "bad pack key".into(),
        })
}

/// The metadata store with typed accessors over one engine; cheap to clone.
#[derive(Clone)]
pub struct Meta {
    kv: Arc<dyn Kv>,
    locks: Arc<lock::Locks>,
}

impl Meta {
    /// Opens (creating if needed) a RocksDB store in `dir` and checks its
    /// format: a new store, or one created before the format was recorded,
    /// is stamped [`STORE_FORMAT`].
    ///
    /// # Errors
    /// RocksDB's errors (I/O, lock held by another process);
    /// [`MetaError::NewerFormat`] for a store written by a newer eden-cas.
    pub fn open(dir: &Path) -> Result<Self, MetaError> {
        Self::over(Arc::new(rocks::Rocks::open(dir)?))
    }

    /// The store over an opened engine, its format checked as in
    /// [`Meta::open`].
    ///
    /// # Errors
    /// As [`Meta::open`].
    pub fn over(kv: Arc<dyn Kv>) -> Result<Self, MetaError> {
        let locks = Arc::new(lock::Locks::new(kv.lock_threads()));
        let meta = Meta { kv, locks };
        meta.check_format()?;
        Ok(meta)
    }

    /// Takes the engine's check-then-write lock of `kind`, across every
    /// process sharing the store ([`lock`]).
    ///
    /// # Errors
    /// [`MetaError::Postgres`] when a shared engine's lock cannot be taken.
    pub async fn lock(&self, kind: lock::LockKind) -> Result<lock::LockGuard, MetaError> {
        self.locks.lock(kind).await
    }

    /// Where the metadata lives: `rocksdb:<dir>` or the database URL
    /// without credentials.
    pub fn describe(&self) -> String {
        self.kv.describe()
    }

    /// Refuses a store of a newer format; stamps one that has none.
    fn check_format(&self) -> Result<(), MetaError> {
        match self.system(STORE_FORMAT_KEY)? {
            Some(v) => {
                let found = <[u8; 4]>::try_from(&v[..])
                    .map(u32::from_le_bytes)
                    .map_err(|_| MetaError::Corrupt {
                        cf: CF_SYSTEM,
                        detail: format!("{STORE_FORMAT_KEY} is {} bytes, not 4", v.len()),
                    })?;
                if found > STORE_FORMAT {
                    return Err(MetaError::NewerFormat {
                        found,
                        supported: STORE_FORMAT,
                    });
                }
                if found < STORE_FORMAT {
                    // From now on this binary may write what the older
                    // format's binaries would misread: they must refuse.
                    self.set_system(STORE_FORMAT_KEY, &STORE_FORMAT.to_le_bytes())?;
                }
                Ok(())
            }
            // New, or created by a release that did not record it.
            None => self.set_system(STORE_FORMAT_KEY, &STORE_FORMAT.to_le_bytes()),
        }
    }

    fn get<T: DeserializeOwned>(
        &self,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<T>, MetaError> {
        match self.kv.get(cf, key)? {
            Some(v) => Ok(Some(decode(cf, &v)?)),
            None => Ok(None),
        }
    }

    /// Decoded values of `keys`, in order.
    fn multi_get<T: DeserializeOwned, K: AsRef<[u8]>>(
        &self,
        cf: &'static str,
        keys: &[K],
    ) -> Result<Vec<Option<T>>, MetaError> {
        let keys: Vec<&[u8]> = keys.iter().map(AsRef::as_ref).collect();
        self.kv
            .multi_get(cf, &keys)?
            .into_iter()
            .map(|v| v.map(|v| decode(cf, &v)).transpose())
            .collect()
    }

    /// Starts a batch bound to this database.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            meta: self,
            ops: Vec::new(),
            failed: None,
        }
    }

    // ---- chunks and packs ----

    /// Location of a chunk, if indexed.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn chunk(&self, id: &Digest) -> Result<Option<ChunkLocation>, MetaError> {
        self.get(CF_CHUNKS, id.as_bytes())
    }

    /// Locations of many chunks, in order.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn chunks(&self, ids: &[Digest]) -> Result<Vec<Option<ChunkLocation>>, MetaError> {
        let keys: Vec<&[u8]> = ids.iter().map(|d| &d.as_bytes()[..]).collect();
        self.multi_get(CF_CHUNKS, &keys)
    }

    /// Number of chunk index entries (an estimate from the engine's
    /// statistics).
    pub fn estimated_chunks(&self) -> u64 {
        self.kv.estimate_keys(CF_CHUNKS)
    }

    /// A pack record.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn pack(&self, id: PackId) -> Result<Option<PackRecord>, MetaError> {
        self.get(CF_PACKS, &pack_key(id))
    }

    /// Every pack record (id, record).
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] for a key
    /// that is not a pack id or a record that does not decode.
    pub fn packs(&self) -> Result<Vec<(PackId, PackRecord)>, MetaError> {
        let mut out = Vec::new();
        for item in self.kv.scan(CF_PACKS, ScanSpec::all()) {
            let (k, v) = item?;
            out.push((pack_of_key(CF_PACKS, &k)?, decode(CF_PACKS, &v)?));
        }
        Ok(out)
    }

    /// Calls `f` with every key of a digest-keyed column family
    /// (`segments-v1`, `manifests-v1`).
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails.
    pub fn scan_digest_keys(
        &self,
        cf: &'static str,
        mut f: impl FnMut(Digest),
    ) -> Result<(), MetaError> {
        for item in self.kv.scan(cf, ScanSpec::all()) {
            if let Some(id) = Digest::from_slice(&item?.0) {
                f(id);
            }
        }
        Ok(())
    }

    // ---- manifests ----

    /// A manifest.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn manifest(&self, id: &Digest) -> Result<Option<Manifest>, MetaError> {
        self.get(CF_MANIFESTS, id.as_bytes())
    }

    /// A segment.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn segment(&self, id: &Digest) -> Result<Option<Segment>, MetaError> {
        self.get(CF_SEGMENTS, id.as_bytes())
    }

    /// Stores a content-addressed segment (idempotent). Not synced: the
    /// artifact commit that references it syncs the WAL, which covers it.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails.
    pub fn put_segment(&self, id: &Digest, encoded: &[u8]) -> Result<(), MetaError> {
        self.kv.write(
            vec![Op::Put(
                CF_SEGMENTS,
                id.as_bytes().to_vec(),
                encoded.to_vec(),
            )],
            false,
        )
    }

    // ---- system ----

    /// A store-wide setting.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails.
    pub fn system(&self, key: &str) -> Result<Option<Vec<u8>>, MetaError> {
        self.kv.get(CF_SYSTEM, key.as_bytes())
    }

    /// Sets a store-wide setting, durably.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails.
    pub fn set_system(&self, key: &str, value: &[u8]) -> Result<(), MetaError> {
        let mut b = self.batch();
        b.put_raw(CF_SYSTEM, key.as_bytes(), value);
        b.commit()
    }

    /// Flushes memtables (used before a clean shutdown).
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails.
    pub fn flush(&self) -> Result<(), MetaError> {
        self.kv.flush()
    }
}

/// A set of changes committed atomically and durably.
pub struct Batch<'a> {
    meta: &'a Meta,
    ops: Vec<Op>,
    /// The first record that did not encode: the commit fails with it, so a
    /// batch is written whole or not at all.
    failed: Option<MetaError>,
}

impl Batch<'_> {
    /// Puts `value`, CBOR-encoded, under `key` of `cf`; an encoding failure
    /// is kept for the commit to return.
    fn put_record<T: Serialize>(&mut self, cf: &'static str, key: impl AsRef<[u8]>, value: &T) {
        match encode(value) {
            Ok(v) => self.ops.push(Op::Put(cf, key.as_ref().to_vec(), v)),
            Err(e) => {
                self.failed.get_or_insert(e);
            }
        }
    }

    /// Puts already-encoded bytes.
    fn put_raw(&mut self, cf: &'static str, key: impl AsRef<[u8]>, value: &[u8]) {
        self.ops
            .push(Op::Put(cf, key.as_ref().to_vec(), value.to_vec()));
    }

    /// Deletes a key.
    fn delete(&mut self, cf: &'static str, key: impl AsRef<[u8]>) {
        self.ops.push(Op::Delete(cf, key.as_ref().to_vec()));
    }

    /// Writes the batch, synced or not.
    fn write(self, sync: bool) -> Result<(), MetaError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.ops.is_empty() {
            return Ok(());
        }
        self.meta.kv.write(self.ops, sync)
    }

    /// Indexes a chunk.
    pub fn put_chunk(&mut self, id: &Digest, loc: &ChunkLocation) {
        self.put_record(CF_CHUNKS, id.as_bytes(), loc);
    }

    /// Records a pack.
    pub fn put_pack(&mut self, id: PackId, rec: &PackRecord) {
        self.put_record(CF_PACKS, pack_key(id), rec);
    }

    /// Removes a chunk index entry.
    pub fn delete_chunk(&mut self, id: &Digest) {
        self.delete(CF_CHUNKS, id.as_bytes());
    }

    /// Removes a pack record.
    pub fn delete_pack(&mut self, id: PackId) {
        self.delete(CF_PACKS, pack_key(id));
    }

    /// Removes a manifest row.
    pub fn delete_manifest(&mut self, id: &Digest) {
        self.delete(CF_MANIFESTS, id.as_bytes());
    }

    /// Removes a segment.
    pub fn delete_segment(&mut self, id: &Digest) {
        self.delete(CF_SEGMENTS, id.as_bytes());
    }

    /// Records a manifest.
    pub fn put_manifest(&mut self, id: &Digest, m: &Manifest) {
        self.put_record(CF_MANIFESTS, id.as_bytes(), m);
    }

    /// Commits with a WAL fsync.
    ///
    /// # Errors
    /// A record that did not encode, or RocksDB's error; nothing is written.
    pub fn commit(self) -> Result<(), MetaError> {
        self.write(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_format_is_stamped_adopted_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = |m: &Meta| m.system(STORE_FORMAT_KEY).unwrap();
        let meta = Meta::open(dir.path()).unwrap();
        assert_eq!(stamp(&meta), Some(STORE_FORMAT.to_le_bytes().to_vec()));
        // A store of the previous release (no stamp) is adopted.
        meta.delete_system(STORE_FORMAT_KEY).unwrap();
        drop(meta);
        let meta = Meta::open(dir.path()).unwrap();
        assert_eq!(stamp(&meta), Some(STORE_FORMAT.to_le_bytes().to_vec()));
        // An older format is raised, so older binaries refuse the store.
        meta.set_system(STORE_FORMAT_KEY, &1u32.to_le_bytes())
            .unwrap();
        drop(meta);
        let meta = Meta::open(dir.path()).unwrap();
        assert_eq!(stamp(&meta), Some(STORE_FORMAT.to_le_bytes().to_vec()));
        // A newer store is refused, naming both versions.
        meta.set_system(STORE_FORMAT_KEY, &(STORE_FORMAT + 1).to_le_bytes())
            .unwrap();
        drop(meta);
        let err = Meta::open(dir.path()).err().unwrap();
        assert!(
            matches!(err, MetaError::NewerFormat { found, supported: STORE_FORMAT } if found == STORE_FORMAT + 1)
        );
        let msg = err.to_string();
        assert!(
            msg.contains("format version 3") && msg.contains("this binary's 2"),
            "{msg}"
        );
    }
}
