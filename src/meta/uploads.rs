//! The column families behind the native API's missing-chunk negotiation:
//! the per-experiment inverse chunk index (`chunk-refs-v1`), upload session
//! records (`uploads-v1`) and the chunks each session received
//! (`upload-chunks-v1`, which are also the pins GC must honour).
//!
//! Invariant 4 rests on `chunk-refs-v1` being scoped by experiment: a chunk is
//! only ever looked up together with the experiment and then the artifact
//! that holds it, whose ACL the engine checks. A ref whose artifact record is
//! absent (never committed, or deleted) means nothing. Writes of refs are not
//! synced: the synced artifact commit that follows them covers them (WAL
//! order), and a lost ref only makes a chunk look missing, never present.

use super::kv::{Op, ScanSpec};
use super::records::{UploadChunk, UploadRecord};
use super::{Batch, CF_CHUNK_REFS, CF_UPLOAD_CHUNKS, CF_UPLOADS, Meta, MetaError, decode};
use crate::auth::ExperimentId;
use crate::hash::Digest;
use crate::ids::{ArtifactId, SessionId};

/// Length of an upload session id.
pub const SESSION_ID_LEN: usize = 16;

/// Key of a chunk ref: `experiment \0 chunk-id artifact-id`.
pub fn chunk_ref_key(experiment: &ExperimentId, chunk: &Digest, artifact: &ArtifactId) -> Vec<u8> {
    let mut k = chunk_ref_prefix(experiment, chunk);
    k.extend_from_slice(artifact.as_bytes());
    k
}

fn chunk_ref_prefix(experiment: &ExperimentId, chunk: &Digest) -> Vec<u8> {
    let experiment = experiment.as_str();
    let mut k = Vec::with_capacity(experiment.len() + 1 + 32 + 16);
    k.extend_from_slice(experiment.as_bytes());
    k.push(0);
    k.extend_from_slice(chunk.as_bytes());
    k
}

fn upload_chunk_key(session: &SessionId, chunk: &Digest) -> [u8; 48] {
    let mut k = [0u8; 48];
    k[..SESSION_ID_LEN].copy_from_slice(session.as_bytes());
    k[SESSION_ID_LEN..].copy_from_slice(chunk.as_bytes());
    k
}

impl Meta {
    /// Up to `limit` artifact ids of `experiment` that hold `chunk`, in id
    /// (= creation) order. Some may name artifacts that no longer exist.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails.
    pub fn chunk_refs(
        &self,
        experiment: &ExperimentId,
        chunk: &Digest,
        limit: usize,
    ) -> Result<Vec<ArtifactId>, MetaError> {
        self.chunk_refs_after(experiment, chunk, None, limit)
    }

    /// Up to `limit` artifact ids of `experiment` that hold `chunk` and come
    /// after `after` (exclusive), in id order: pages through every ref of a
    /// chunk however many there are.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails.
    pub fn chunk_refs_after(
        &self,
        experiment: &ExperimentId,
        chunk: &Digest,
        after: Option<&ArtifactId>,
        limit: usize,
    ) -> Result<Vec<ArtifactId>, MetaError> {
        let prefix = chunk_ref_prefix(experiment, chunk);
        let start = match after {
            Some(a) => chunk_ref_key(experiment, chunk, a),
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        let spec = ScanSpec {
            from: Some(&start),
            prefix: Some(&prefix),
            reverse: false,
        };
        for item in self.kv.scan(CF_CHUNK_REFS, spec) {
            let (k, _) = item?;
            if out.len() >= limit {
                break;
            }
            if let Ok(id) = <[u8; 16]>::try_from(&k[prefix.len()..]).map(ArtifactId::from_bytes)
                && after != Some(&id)
            {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Whether `artifact` of `experiment` is recorded as holding `chunk`.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails.
    pub fn has_chunk_ref(
        &self,
        experiment: &ExperimentId,
        chunk: &Digest,
        artifact: &ArtifactId,
    ) -> Result<bool, MetaError> {
        Ok(self
            .kv
            .get(CF_CHUNK_REFS, &chunk_ref_key(experiment, chunk, artifact))?
            .is_some())
    }

    /// Records that `artifact` holds `chunks` (one unsynced batch; callers
    /// pass one segment at a time so no batch grows with artifact size).
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails.
    pub fn put_chunk_refs(
        &self,
        experiment: &ExperimentId,
        artifact: &ArtifactId,
        chunks: &[Digest],
    ) -> Result<(), MetaError> {
        let mut b = self.batch();
        for c in chunks {
            b.put_raw(CF_CHUNK_REFS, chunk_ref_key(experiment, c, artifact), &[]);
        }
        b.commit_unsynced()
    }

    /// Removes the refs of `artifact` to `chunks` (one unsynced batch).
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails.
    pub fn delete_chunk_refs(
        &self,
        experiment: &ExperimentId,
        artifact: &ArtifactId,
        chunks: &[Digest],
    ) -> Result<(), MetaError> {
        let mut b = self.batch();
        for c in chunks {
            b.delete(CF_CHUNK_REFS, chunk_ref_key(experiment, c, artifact));
        }
        b.commit_unsynced()
    }

    /// An upload session record (live or tombstone).
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn upload(&self, id: &SessionId) -> Result<Option<UploadRecord>, MetaError> {
        self.get(CF_UPLOADS, id.as_bytes())
    }

    /// Every upload session record, for the reaper (sessions are few).
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn uploads(&self) -> Result<Vec<(SessionId, UploadRecord)>, MetaError> {
        let mut out = Vec::new();
        for item in self.kv.scan(CF_UPLOADS, ScanSpec::all()) {
            let (k, v) = item?;
            let Ok(id) = <[u8; SESSION_ID_LEN]>::try_from(&k[..]) else {
                continue;
            };
            out.push((SessionId::from_bytes(id), decode(CF_UPLOADS, &v)?));
        }
        Ok(out)
    }

    /// Rows of `chunks` received by `session`, in order.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn upload_chunks(
        &self,
        session: &SessionId,
        chunks: &[Digest],
    ) -> Result<Vec<Option<UploadChunk>>, MetaError> {
        let keys: Vec<[u8; 48]> = chunks
            .iter()
            .map(|c| upload_chunk_key(session, c))
            .collect();
        self.multi_get(CF_UPLOAD_CHUNKS, &keys)
    }

    /// Calls `f` for each chunk received by `session`, in chunk-id order,
    /// starting strictly after `after`; stops when `f` returns false.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn scan_upload_chunks(
        &self,
        session: &SessionId,
        after: Option<&Digest>,
        mut f: impl FnMut(Digest, UploadChunk) -> bool,
    ) -> Result<(), MetaError> {
        let prefix = session.as_bytes();
        let start: Vec<u8> = match after {
            Some(a) => upload_chunk_key(session, a).to_vec(),
            None => prefix.to_vec(),
        };
        let spec = ScanSpec {
            from: Some(&start),
            prefix: Some(prefix),
            reverse: false,
        };
        for item in self.kv.scan(CF_UPLOAD_CHUNKS, spec) {
            let (k, v) = item?;
            if after.is_some() && k[..] == start[..] {
                continue;
            }
            let Some(id) = Digest::from_slice(&k[SESSION_ID_LEN..]) else {
                continue;
            };
            if !f(id, decode(CF_UPLOAD_CHUNKS, &v)?) {
                break;
            }
        }
        Ok(())
    }

    /// Calls `f` with the chunk of every session row (every upload pin).
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails.
    pub fn scan_all_upload_chunks(&self, mut f: impl FnMut(Digest)) -> Result<(), MetaError> {
        for item in self.kv.scan(CF_UPLOAD_CHUNKS, ScanSpec::all()) {
            let (k, _) = item?;
            if let Some(id) = k.get(SESSION_ID_LEN..).and_then(Digest::from_slice) {
                f(id);
            }
        }
        Ok(())
    }

    /// Stores a session record without a WAL sync (activity stamps: losing
    /// one in a crash only makes the session look idle a little longer).
    ///
    /// # Errors
    /// [`MetaError::Encode`] when the record does not encode (nothing is
    /// written); [`MetaError::Db`] when RocksDB fails.
    pub fn touch_upload(&self, id: &SessionId, rec: &UploadRecord) -> Result<(), MetaError> {
        let mut b = self.batch();
        b.put_upload(id, rec);
        b.commit_unsynced()
    }
}

impl Batch<'_> {
    /// Records an upload session (or its tombstone).
    pub fn put_upload(&mut self, id: &SessionId, rec: &UploadRecord) {
        self.put_record(CF_UPLOADS, id.as_bytes(), rec);
    }

    /// Removes an upload session record.
    pub fn delete_upload(&mut self, id: &SessionId) {
        self.delete(CF_UPLOADS, id.as_bytes());
    }

    /// Records a chunk received by a session (a pin).
    pub fn put_upload_chunk(&mut self, session: &SessionId, chunk: &Digest, row: &UploadChunk) {
        self.put_record(CF_UPLOAD_CHUNKS, upload_chunk_key(session, chunk), row);
    }

    /// Removes every chunk row of a session (one range tombstone, whatever
    /// the number of chunks), releasing its pins.
    pub fn delete_upload_chunks(&mut self, session: &SessionId) {
        let mut end = [0xffu8; 49];
        end[..SESSION_ID_LEN].copy_from_slice(session.as_bytes());
        self.ops.push(Op::DeleteRange(
            CF_UPLOAD_CHUNKS,
            session.as_bytes().to_vec(),
            end.to_vec(),
        ));
    }

    /// Commits without a WAL fsync. For writes that a later synced commit
    /// covers, or whose loss is harmless.
    ///
    /// # Errors
    /// As [`Batch::commit`].
    pub fn commit_unsynced(self) -> Result<(), MetaError> {
        self.write(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunking::ChunkerParams;

    #[test]
    fn refs_and_session_rows_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(dir.path()).unwrap();
        let (c1, c2) = (Digest::of(b"one"), Digest::of(b"two"));
        let (a1, a2) = (
            ArtifactId::from_bytes([1; 16]),
            ArtifactId::from_bytes([2; 16]),
        );
        let exp_a = ExperimentId::from_static("exp_aaaaaaaaaaaaaaaaaaaaaaaaaa");
        let exp_b = ExperimentId::from_static("exp_bbbbbbbbbbbbbbbbbbbbbbbbbb");
        meta.put_chunk_refs(&exp_a, &a1, &[c1, c2]).unwrap();
        meta.put_chunk_refs(&exp_a, &a2, &[c1]).unwrap();
        meta.put_chunk_refs(&exp_b, &a2, &[c2]).unwrap();
        assert_eq!(meta.chunk_refs(&exp_a, &c1, 10).unwrap(), vec![a1, a2]);
        assert_eq!(meta.chunk_refs(&exp_a, &c1, 1).unwrap(), vec![a1]);
        assert_eq!(
            meta.chunk_refs_after(&exp_a, &c1, Some(&a1), 1).unwrap(),
            vec![a2]
        );
        assert!(
            meta.chunk_refs_after(&exp_a, &c1, Some(&a2), 10)
                .unwrap()
                .is_empty()
        );
        assert_eq!(meta.chunk_refs(&exp_a, &c2, 10).unwrap(), vec![a1]);
        // Another experiment's refs never match.
        assert!(meta.chunk_refs(&exp_b, &c1, 10).unwrap().is_empty());
        assert!(meta.has_chunk_ref(&exp_b, &c2, &a2).unwrap());
        meta.delete_chunk_refs(&exp_a, &a1, &[c1, c2]).unwrap();
        assert_eq!(meta.chunk_refs(&exp_a, &c1, 10).unwrap(), vec![a2]);
        // Keys are byte-identical to those written before typed ids.
        let mut old_key = b"exp_aaaaaaaaaaaaaaaaaaaaaaaaaa\0".to_vec();
        old_key.extend_from_slice(c1.as_bytes());
        old_key.extend_from_slice(&[2; 16]);
        assert_eq!(chunk_ref_key(&exp_a, &c1, &a2), old_key);

        let s1 = SessionId::from_bytes([7; 16]);
        let s2 = SessionId::from_bytes([8; 16]);
        let rec = UploadRecord {
            experiment: crate::auth::ExperimentId::from_static("exp_00000000000000000000000000"),
            created_by: crate::auth::Principal::Admin,
            created_at: crate::clock::Timestamp::from_unix_nanos(1),
            last_active: crate::clock::Timestamp::from_unix_nanos(2),
            chunker: ChunkerParams::default(),
            content_type: "x/y".into(),
            filename: None,
            artifact_ttl_s: None,
            ended: None,
            claimed_size: None,
            received_bytes: 0,
        };
        let row = UploadChunk {
            raw_len: 3,
            stored_len: 3,
            new_global: true,
        };
        let mut b = meta.batch();
        b.put_upload(&s1, &rec);
        b.put_upload_chunk(&s1, &c1, &row);
        b.put_upload_chunk(&s1, &c2, &row);
        b.put_upload_chunk(&s2, &c1, &row);
        b.commit().unwrap();
        assert_eq!(
            meta.upload_chunks(&s1, &[c2, Digest::of(b"x")]).unwrap(),
            vec![Some(row), None]
        );
        let mut seen = Vec::new();
        meta.scan_upload_chunks(&s1, None, |id, _| {
            seen.push(id);
            true
        })
        .unwrap();
        assert_eq!(seen.len(), 2);
        let mut after = Vec::new();
        meta.scan_upload_chunks(&s1, Some(&seen[0]), |id, _| {
            after.push(id);
            true
        })
        .unwrap();
        assert_eq!(after, vec![seen[1]]);
        let mut b = meta.batch();
        b.delete_upload_chunks(&s1);
        b.commit().unwrap();
        assert_eq!(meta.upload_chunks(&s1, &[c1]).unwrap(), vec![None]);
        assert_eq!(meta.upload_chunks(&s2, &[c1]).unwrap(), vec![Some(row)]);
        assert_eq!(meta.uploads().unwrap().len(), 1);
    }
}
