//! Artifact labels (issue 15): `key=value` pairs set at deposit and
//! replaced later by the artifact's managers, and the filters a listing
//! applies (labels, depositor, creation time, filename prefix).
//!
//! Invariant 4: a filter narrows the *readable* artifacts; listing pages
//! and cursors follow the rules of `Engine::list_artifacts_where`, so a
//! label on an artifact the caller cannot read changes no answer.

use std::collections::BTreeMap;

use super::audit::{AuditEvent, AuditKind};
use super::{Engine, EngineError};
use crate::auth::{ExperimentId, Principal};
use crate::clock::Timestamp;
use crate::ids::ArtifactId;
use crate::meta::records::ArtifactRecord;

/// Which artifacts a listing keeps (all conditions together).
#[derive(Clone, Debug, Default)]
pub struct ArtifactFilter {
    /// Deposited by this principal.
    pub created_by: Option<Principal>,
    /// Carrying every one of these labels with this value.
    pub labels: Vec<(String, String)>,
    /// Created at or after.
    pub created_after: Option<Timestamp>,
    /// Created strictly before.
    pub created_before: Option<Timestamp>,
    /// Filename starting with this.
    pub filename_prefix: Option<String>,
}

impl ArtifactFilter {
    /// Whether `rec` passes.
    pub fn admits(&self, rec: &ArtifactRecord) -> bool {
        self.created_by.is_none_or(|c| c == rec.created_by)
            && self
                .labels
                .iter()
                .all(|(k, v)| rec.labels.get(k).is_some_and(|x| x == v))
            && self.created_after.is_none_or(|t| rec.created_at >= t)
            && self.created_before.is_none_or(|t| rec.created_at < t)
            && self
                .filename_prefix
                .as_deref()
                .is_none_or(|p| rec.filename.as_deref().is_some_and(|f| f.starts_with(p)))
    }
}

impl Engine {
    /// Replaces the labels of an artifact (checked by the caller with
    /// `naming::check_labels`). Depositor or admin only.
    ///
    /// # Errors
    /// As [`Engine::grant`].
    pub async fn set_labels(
        &self,
        experiment: ExperimentId,
        caller: &Principal,
        id: &ArtifactId,
        labels: BTreeMap<String, String>,
    ) -> Result<ArtifactRecord, EngineError> {
        self.check_writer()?;
        let rec = {
            let _guard = self
                .meta
                .lock(crate::meta::lock::LockKind::Artifacts)
                .await?;
            let mut rec = self.managed(experiment, caller, id).await?;
            if rec.labels != labels {
                rec.labels = labels;
                self.put_record(experiment, id, &rec).await?;
            }
            rec
        };
        let mut ev = AuditEvent::new(AuditKind::SetLabels, caller.as_str(), experiment.as_str())
            .artifact(id, &rec.blake3);
        ev.labels = Some(rec.labels.clone());
        self.audit(ev);
        Ok(rec)
    }
}
