//! Named references (issue 15): `refs-v1` (`experiment \0 name` →
//! [`RefRecord`]) and their bounded history, `ref-log-v1`
//! (`experiment \0 name \0 seq` → [`RefChange`], `seq` a big-endian u64, so
//! a prefix scan reads one name's history in order).
//!
//! Names never hold a NUL byte (`naming::RefName`), so `experiment \0`
//! prefixes every reference of an experiment, `experiment \0 prefix` every
//! name starting with `prefix`, and `experiment \0 name \0` exactly one
//! name's history (`a` and `a/b` give `a\0` and `a/b\0`). Every change of a
//! reference (record, history entry, trimmed entries, the artifact records
//! whose `ref_holds` it moves) is one batch, written by the engine.

use serde::{Deserialize, Serialize};

use super::kv::{Op, ScanSpec};
use super::{Batch, CF_REF_LOG, CF_REFS, Meta, MetaError, decode, scoped_key};
use crate::auth::{ExperimentId, Principal};
use crate::clock::Timestamp;
use crate::ids::ArtifactId;
use crate::naming::RefName;

/// A reference. Value of `refs-v1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefRecord {
    /// The artifact it points at (same experiment).
    pub target: ArtifactId,
    /// Who created it: with the admin and the grantees, who may move or
    /// delete it.
    pub created_by: Principal,
    /// When it was created.
    pub created_at: Timestamp,
    /// Who last set it.
    pub updated_by: Principal,
    /// When it was last set.
    pub updated_at: Timestamp,
    /// From when on it no longer exists (its own TTL, independent of the
    /// target's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Workers and groups (`wkr_…`, `grp_…`) who may move or delete it.
    #[serde(default)]
    pub grants: Vec<crate::auth::MemberId>,
    /// Sequence number the next history entry takes.
    pub next_seq: u64,
}

impl RefRecord {
    /// Whether it is past its own expiry at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// One history entry. Value of `ref-log-v1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefChange {
    /// When.
    pub at: Timestamp,
    /// Who.
    pub by: Principal,
    /// The target before (`None`: the reference was created).
    pub from: Option<ArtifactId>,
    /// The target after.
    pub to: ArtifactId,
}

fn log_prefix(experiment: &ExperimentId, name: &RefName) -> Vec<u8> {
    let mut k = scoped_key(experiment, name.as_str().as_bytes());
    k.push(0);
    k
}

fn log_key(experiment: &ExperimentId, name: &RefName, seq: u64) -> Vec<u8> {
    let mut k = log_prefix(experiment, name);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The name of a `refs-v1` key under `prefix` (`experiment \0`); `None` for
/// a key of another shape (which no release writes).
fn name_of(key: &[u8], prefix_len: usize) -> Option<RefName> {
    let name = std::str::from_utf8(key.get(prefix_len..)?).ok()?;
    RefName::parse(name).ok()
}

/// One reference of a store-wide scan (GC).
#[derive(Clone, Debug)]
pub struct ScannedRef {
    /// Experiment id.
    pub experiment: ExperimentId,
    /// Its name.
    pub name: RefName,
    /// The record.
    pub record: RefRecord,
    /// Its `refs-v1` key (the next page's cursor).
    pub key: Vec<u8>,
}

impl Meta {
    /// A reference of an experiment.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn reference(
        &self,
        experiment: &ExperimentId,
        name: &RefName,
    ) -> Result<Option<RefRecord>, MetaError> {
        self.get(CF_REFS, &scoped_key(experiment, name.as_str().as_bytes()))
    }

    /// Up to `limit` references of `experiment` whose names start with
    /// `prefix`, in name order, strictly after `after` when given.
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn refs_after(
        &self,
        experiment: &ExperimentId,
        prefix: &str,
        after: Option<&RefName>,
        limit: usize,
    ) -> Result<Vec<(RefName, RefRecord)>, MetaError> {
        let base = scoped_key(experiment, &[]);
        let wanted = scoped_key(experiment, prefix.as_bytes());
        let start = match after {
            Some(a) if a.as_str() > prefix => scoped_key(experiment, a.as_str().as_bytes()),
            _ => wanted.clone(),
        };
        let mut out = Vec::new();
        let spec = ScanSpec {
            from: Some(&start),
            prefix: Some(&wanted),
            reverse: false,
        };
        for item in self.kv.scan(CF_REFS, spec) {
            let (k, v) = item?;
            if out.len() >= limit {
                break;
            }
            let Some(name) = name_of(&k, base.len()) else {
                continue;
            };
            if after.is_some_and(|a| *a >= name) {
                continue;
            }
            out.push((name, decode(CF_REFS, &v)?));
        }
        Ok(out)
    }

    /// Up to `limit` references of every experiment in key order, strictly
    /// after the key `after` (see [`ScannedRef::key`]).
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn refs_page(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<ScannedRef>, MetaError> {
        let spec = match after {
            Some(k) => ScanSpec::from(k),
            None => ScanSpec::all(),
        };
        let mut out = Vec::new();
        for item in self.kv.scan(CF_REFS, spec) {
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
            let experiment = std::str::from_utf8(&k[..sep])
                .ok()
                .and_then(ExperimentId::parse);
            let (Some(experiment), Some(name)) = (experiment, name_of(&k, sep + 1)) else {
                continue;
            };
            out.push(ScannedRef {
                experiment,
                name,
                record: decode(CF_REFS, &v)?,
                key: k.to_vec(),
            });
        }
        Ok(out)
    }

    /// The history of a reference, oldest first: (sequence number, change).
    ///
    /// # Errors
    /// [`MetaError::Db`] when RocksDB fails; [`MetaError::Corrupt`] when a
    /// stored record does not decode.
    pub fn ref_history(
        &self,
        experiment: &ExperimentId,
        name: &RefName,
    ) -> Result<Vec<(u64, RefChange)>, MetaError> {
        let prefix = log_prefix(experiment, name);
        let mut out = Vec::new();
        for item in self.kv.scan(CF_REF_LOG, ScanSpec::prefix(&prefix)) {
            let (k, v) = item?;
            let Ok(seq) = <[u8; 8]>::try_from(&k[prefix.len()..]) else {
                continue;
            };
            out.push((u64::from_be_bytes(seq), decode(CF_REF_LOG, &v)?));
        }
        Ok(out)
    }
}

impl Batch<'_> {
    /// Records a reference.
    pub fn put_ref(&mut self, experiment: &ExperimentId, name: &RefName, rec: &RefRecord) {
        self.put_record(
            CF_REFS,
            scoped_key(experiment, name.as_str().as_bytes()),
            rec,
        );
    }

    /// Appends history entry `seq` of a reference.
    pub fn put_ref_change(
        &mut self,
        experiment: &ExperimentId,
        name: &RefName,
        seq: u64,
        change: &RefChange,
    ) {
        self.put_record(CF_REF_LOG, log_key(experiment, name, seq), change);
    }

    /// Drops the history entries of a reference numbered below `seq` (one
    /// range tombstone).
    pub fn trim_ref_history(&mut self, experiment: &ExperimentId, name: &RefName, seq: u64) {
        self.ops.push(Op::DeleteRange(
            CF_REF_LOG,
            log_key(experiment, name, 0),
            log_key(experiment, name, seq),
        ));
    }

    /// Removes a reference and its whole history.
    pub fn delete_ref(&mut self, experiment: &ExperimentId, name: &RefName) {
        self.delete(CF_REFS, scoped_key(experiment, name.as_str().as_bytes()));
        let mut end = log_prefix(experiment, name);
        end.extend_from_slice(&[0xff; 9]);
        self.ops.push(Op::DeleteRange(
            CF_REF_LOG,
            log_prefix(experiment, name),
            end,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXP: ExperimentId = ExperimentId::from_static("exp_00000000000000000000000001");

    fn name(s: &str) -> RefName {
        RefName::parse(s).unwrap()
    }

    fn rec(target: u8, seq: u64) -> RefRecord {
        RefRecord {
            target: ArtifactId::from_bytes([target; 16]),
            created_by: Principal::Admin,
            created_at: Timestamp::from_unix_secs(1),
            updated_by: Principal::Admin,
            updated_at: Timestamp::from_unix_secs(2),
            expires_at: None,
            grants: Vec::new(),
            next_seq: seq,
        }
    }

    #[test]
    fn prefix_listing_history_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(dir.path()).unwrap();
        let mut b = meta.batch();
        for n in ["a", "a/b", "a/c", "ab", "b"] {
            b.put_ref(&EXP, &name(n), &rec(1, 0));
        }
        for seq in 0..5 {
            let change = RefChange {
                at: Timestamp::from_unix_secs(seq as i64),
                by: Principal::Admin,
                from: None,
                to: ArtifactId::from_bytes([seq as u8; 16]),
            };
            b.put_ref_change(&EXP, &name("a"), seq, &change);
            b.put_ref_change(&EXP, &name("a/b"), seq, &change);
        }
        b.commit().unwrap();
        let names = |v: Vec<(RefName, RefRecord)>| -> Vec<String> {
            v.into_iter().map(|(n, _)| n.to_string()).collect()
        };
        assert_eq!(
            names(meta.refs_after(&EXP, "a", None, 10).unwrap()),
            ["a", "a/b", "a/c", "ab"]
        );
        assert_eq!(
            names(meta.refs_after(&EXP, "a/", None, 10).unwrap()),
            ["a/b", "a/c"]
        );
        assert_eq!(
            names(meta.refs_after(&EXP, "", Some(&name("a/b")), 2).unwrap()),
            ["a/c", "ab"]
        );
        // A cursor before the prefix starts at the prefix.
        assert_eq!(
            names(meta.refs_after(&EXP, "b", Some(&name("a")), 10).unwrap()),
            ["b"]
        );
        assert_eq!(meta.ref_history(&EXP, &name("a")).unwrap().len(), 5);
        let mut b = meta.batch();
        b.trim_ref_history(&EXP, &name("a"), 3);
        b.commit().unwrap();
        let seqs: Vec<u64> = meta
            .ref_history(&EXP, &name("a"))
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(seqs, [3, 4]);
        // Deleting `a` leaves `a/b` and its history alone.
        let mut b = meta.batch();
        b.delete_ref(&EXP, &name("a"));
        b.commit().unwrap();
        assert!(meta.reference(&EXP, &name("a")).unwrap().is_none());
        assert!(meta.ref_history(&EXP, &name("a")).unwrap().is_empty());
        assert_eq!(meta.ref_history(&EXP, &name("a/b")).unwrap().len(), 5);
        let page = meta.refs_page(None, 2).unwrap();
        assert_eq!(page.len(), 2);
        let rest = meta.refs_page(Some(&page[1].key), 10).unwrap();
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[0].experiment, EXP);
    }
}
