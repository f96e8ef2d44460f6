//! Per-experiment records, keyed `experiment \0 id`: artifacts
//! (`artifacts-v1`, id = the artifact id's 16 bytes), workers
//! (`workers-v1`) and groups (`groups-v1`, id = the text of the worker or
//! group id). Keys are written from typed ids only; a key that does not
//! parse back names nothing and is skipped by the scans.

use serde::de::DeserializeOwned;

use super::kv::ScanSpec;
use super::records::{ArtifactRecord, GroupRecord, WorkerRecord};
use super::{Batch, CF_ARTIFACTS, CF_GROUPS, CF_WORKERS, Meta, MetaError, decode, scoped_key};
use crate::auth::{ExperimentId, GroupId, WorkerId};
use crate::ids::ArtifactId;

/// Splits an `experiment \0 artifact-id` key; `None` for a key of another
/// shape (which no release writes).
pub(super) fn split_artifact_key(k: &[u8]) -> Option<(ExperimentId, ArtifactId)> {
    let sep = k.iter().position(|&b| b == 0)?;
    let experiment = ExperimentId::parse(std::str::from_utf8(&k[..sep]).ok()?)?;
    let id = <[u8; 16]>::try_from(&k[sep + 1..]).ok()?;
    Some((experiment, ArtifactId::from_bytes(id)))
}

impl Meta {
    /// Calls `f` for every artifact of every experiment (experiment,
    /// artifact id, record); stops when `f` returns false.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn scan_artifacts(
        &self,
        mut f: impl FnMut(ExperimentId, ArtifactId, ArtifactRecord) -> bool,
    ) -> Result<(), MetaError> {
        for item in self.kv.scan(CF_ARTIFACTS, ScanSpec::all()) {
            let (k, v) = item?;
            let Some((exp, id)) = split_artifact_key(&k) else {
                continue;
            };
            if !f(exp, id, decode(CF_ARTIFACTS, &v)?) {
                break;
            }
        }
        Ok(())
    }

    // ---- artifacts ----

    /// An artifact of an experiment.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn artifact(
        &self,
        experiment: &ExperimentId,
        id: &ArtifactId,
    ) -> Result<Option<ArtifactRecord>, MetaError> {
        self.get(CF_ARTIFACTS, &scoped_key(experiment, id.as_bytes()))
    }

    /// Artifacts of an experiment, newest first, starting strictly before
    /// `before` (an artifact id) when given.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn artifacts_newest_first(
        &self,
        experiment: &ExperimentId,
        before: Option<&ArtifactId>,
        limit: usize,
    ) -> Result<Vec<(ArtifactId, ArtifactRecord)>, MetaError> {
        let prefix = scoped_key(experiment, &[]);
        let start = match before {
            Some(b) => scoped_key(experiment, b.as_bytes()),
            None => scoped_key(experiment, &[0xff; 17]),
        };
        let mut out = Vec::new();
        let spec = ScanSpec {
            from: Some(&start),
            prefix: Some(&prefix),
            reverse: true,
        };
        for item in self.kv.scan(CF_ARTIFACTS, spec) {
            let (k, v) = item?;
            if out.len() >= limit {
                break;
            }
            if k[..] == start[..] {
                continue;
            }
            let Ok(id) = <[u8; 16]>::try_from(&k[prefix.len()..]) else {
                continue;
            };
            out.push((ArtifactId::from_bytes(id), decode(CF_ARTIFACTS, &v)?));
        }
        Ok(out)
    }

    // ---- workers and groups ----

    /// A worker of an experiment.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn worker(
        &self,
        experiment: &ExperimentId,
        worker: &WorkerId,
    ) -> Result<Option<WorkerRecord>, MetaError> {
        self.get(
            CF_WORKERS,
            &scoped_key(experiment, worker.as_str().as_bytes()),
        )
    }

    /// All workers of an experiment, by id.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn workers(
        &self,
        experiment: &ExperimentId,
    ) -> Result<Vec<(WorkerId, WorkerRecord)>, MetaError> {
        self.scan(CF_WORKERS, experiment)
    }

    /// A group of an experiment.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn group(
        &self,
        experiment: &ExperimentId,
        group: &GroupId,
    ) -> Result<Option<GroupRecord>, MetaError> {
        self.get(
            CF_GROUPS,
            &scoped_key(experiment, group.as_str().as_bytes()),
        )
    }

    /// All groups of an experiment, by id.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn groups(
        &self,
        experiment: &ExperimentId,
    ) -> Result<Vec<(GroupId, GroupRecord)>, MetaError> {
        self.scan(CF_GROUPS, experiment)
    }

    /// Every record of `experiment` in an `experiment \0 id-text` family,
    /// skipping a key whose id does not parse.
    fn scan<I: std::str::FromStr, T: DeserializeOwned>(
        &self,
        cf: &'static str,
        experiment: &ExperimentId,
    ) -> Result<Vec<(I, T)>, MetaError> {
        let prefix = scoped_key(experiment, &[]);
        let mut out = Vec::new();
        for item in self.kv.scan(cf, ScanSpec::prefix(&prefix)) {
            let (k, v) = item?;
            // Keys are written from minted ids; anything else names nobody.
            let Some(id) = std::str::from_utf8(&k[prefix.len()..])
                .ok()
                .and_then(|s| s.parse().ok())
            else {
                continue;
            };
            out.push((id, decode(cf, &v)?));
        }
        Ok(out)
    }
}

impl Batch<'_> {
    /// Records an artifact.
    pub fn put_artifact(
        &mut self,
        experiment: &ExperimentId,
        id: &ArtifactId,
        rec: &ArtifactRecord,
    ) {
        self.put_record(CF_ARTIFACTS, scoped_key(experiment, id.as_bytes()), rec);
    }

    /// Removes an artifact record.
    pub fn delete_artifact(&mut self, experiment: &ExperimentId, id: &ArtifactId) {
        self.delete(CF_ARTIFACTS, scoped_key(experiment, id.as_bytes()));
    }

    /// Records a worker.
    pub fn put_worker(&mut self, experiment: &ExperimentId, worker: &WorkerId, rec: &WorkerRecord) {
        let key = scoped_key(experiment, worker.as_str().as_bytes());
        self.put_record(CF_WORKERS, key, rec);
    }

    /// Records a group.
    pub fn put_group(&mut self, experiment: &ExperimentId, group: &GroupId, rec: &GroupRecord) {
        let key = scoped_key(experiment, group.as_str().as_bytes());
        self.put_record(CF_GROUPS, key, rec);
    }

    /// Removes a group.
    pub fn delete_group(&mut self, experiment: &ExperimentId, group: &GroupId) {
        self.delete(CF_GROUPS, scoped_key(experiment, group.as_str().as_bytes()));
    }
}
