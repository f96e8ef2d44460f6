//! The only ways to an artifact record for a caller: [`Engine::readable_artifact`]
//! (read access) and `Engine::managed` (depositor or admin), both deciding
//! with the caller in hand, and the [`ReadGate`] that listing and the
//! "missing" oracle apply to many records at once.
//!
//! Invariant 4 (isolation) by construction: a [`ReadableArtifact`] can only
//! be made here, after the read rule allowed the caller, and it is what
//! [`Engine::read_range`] takes; `http/` never sees a record otherwise.
//! An artifact of another experiment, a missing or expired one, and a
//! malformed id are the same `NotFound`; an existing artifact the caller may
//! not read is `Forbidden` (403, as `eden-v0-contract.md` §3 requires).

use std::collections::HashMap;

use super::{Engine, EngineError, blocking};
use crate::auth::{ExperimentId, GroupId, MemberId, Principal, can_manage, can_read};
use crate::clock::Timestamp;
use crate::ids::ArtifactId;
use crate::meta::Meta;
use crate::meta::records::ArtifactRecord;

/// An artifact its holder was allowed to read: made only by
/// [`Engine::readable_artifact`], taken by [`Engine::read_range`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadableArtifact {
    id: ArtifactId,
    record: ArtifactRecord,
    /// Where and by whom it was opened: what the audit log's read event
    /// names.
    experiment: ExperimentId,
    reader: Principal,
}

/// The record's fields read through the artifact (`a.size`, `a.blake3`).
impl std::ops::Deref for ReadableArtifact {
    type Target = ArtifactRecord;

    fn deref(&self) -> &ArtifactRecord {
        &self.record
    }
}

impl ReadableArtifact {
    /// The artifact id.
    pub fn id(&self) -> ArtifactId {
        self.id
    }

    /// The stored record (digests, size, content type, grants, …).
    pub fn record(&self) -> &ArtifactRecord {
        &self.record
    }

    /// The experiment it was opened in.
    pub fn experiment(&self) -> ExperimentId {
        self.experiment
    }

    /// The principal it was opened for.
    pub fn reader(&self) -> &Principal {
        &self.reader
    }
}

/// The read rule, loaded once (groups of one experiment) and applied to
/// many records without further I/O.
pub(crate) struct ReadGate {
    caller: Principal,
    graph: HashMap<GroupId, Vec<MemberId>>,
    admins: Vec<GroupId>,
}

impl ReadGate {
    /// Loads the experiment's groups (blocking). The admin needs none.
    pub(crate) fn load(
        meta: &Meta,
        experiment: ExperimentId,
        caller: Principal,
    ) -> Result<Self, EngineError> {
        let groups = if caller.is_admin() {
            Vec::new()
        } else {
            meta.groups(&experiment)?
        };
        // More than one `admins` group can exist only if created before the
        // name was reserved; any of them grants access.
        let admins = groups
            .iter()
            .filter(|(_, g)| g.name == "admins")
            .map(|(id, _)| *id)
            .collect();
        let graph = groups.into_iter().map(|(id, g)| (id, g.members)).collect();
        Ok(ReadGate {
            caller,
            graph,
            admins,
        })
    }

    /// Whether the caller may read `rec` (expiry is checked separately).
    pub(crate) fn allows(&self, rec: &ArtifactRecord) -> bool {
        self.permits(&rec.created_by, &rec.grants)
    }

    /// The read rule for anything with an owner and grants: the admin, the
    /// owner, a grantee (directly or through a granted group) or a
    /// transitive member of `admins`. References use it for who may move
    /// them (`refs.rs`).
    pub(crate) fn permits(&self, owner: &Principal, grants: &[MemberId]) -> bool {
        if self.caller.is_admin() || self.caller == *owner {
            return true;
        }
        if self.admins.is_empty() {
            return can_read(&self.caller, owner, grants, &self.graph, None).is_allowed();
        }
        self.admins
            .iter()
            .any(|a| can_read(&self.caller, owner, grants, &self.graph, Some(a)).is_allowed())
    }

    /// The principal the rule is for.
    pub(crate) fn caller(&self) -> &Principal {
        &self.caller
    }
}

impl Engine {
    /// The served (present, unexpired) record of an artifact, whoever asks.
    async fn served_record(
        &self,
        experiment: ExperimentId,
        id: &ArtifactId,
    ) -> Result<ArtifactRecord, EngineError> {
        let meta = self.meta.clone();
        let aid = *id;
        let rec = blocking(move || Ok(meta.artifact(&experiment, &aid)?)).await?;
        let now = Timestamp::now();
        rec.filter(|r| !r.expired(now)).ok_or(EngineError::NotFound)
    }

    /// An artifact of `experiment` that `caller` may read: the one entry
    /// point to an artifact's record and bytes for a request.
    ///
    /// # Errors
    /// `NotFound` when no served artifact has this id in this experiment
    /// (absent, expired, or another experiment's); `Forbidden` when it
    /// exists but the caller is not its depositor, the admin, a transitive
    /// member of `admins`, or a grantee.
    pub async fn readable_artifact(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        id: &ArtifactId,
    ) -> Result<ReadableArtifact, EngineError> {
        let record = self.served_record(experiment, id).await?;
        let allowed = if caller.is_admin() {
            true
        } else {
            let meta = self.meta.clone();
            let (who, rec) = (*caller, record.clone());
            blocking(move || Ok(ReadGate::load(&meta, experiment, who)?.allows(&rec))).await?
        };
        if allowed {
            Ok(ReadableArtifact {
                id: *id,
                record,
                experiment,
                reader: *caller,
            })
        } else {
            Err(EngineError::Forbidden)
        }
    }

    /// Loads an artifact for a management change (grants, expiry, delete).
    ///
    /// # Errors
    /// `NotFound` as [`Engine::readable_artifact`]; `Forbidden` unless
    /// `caller` is its depositor or the admin.
    pub(crate) async fn managed(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        id: &ArtifactId,
    ) -> Result<ArtifactRecord, EngineError> {
        let rec = self.served_record(experiment, id).await?;
        if can_manage(caller, &rec.created_by) {
            Ok(rec)
        } else {
            Err(EngineError::Forbidden)
        }
    }
}
