//! GC of references: those past their own expiry and those whose target
//! record is gone are removed (with their history), releasing their hold,
//! before GC marks (`gc/mark.rs`), so the artifacts only they held expire
//! in the same run.

use super::release;
use crate::auth::ExperimentId;
use crate::clock::Timestamp;
use crate::engine::audit::{AuditKind, GC_PRINCIPAL};
use crate::engine::{Engine, EngineError, blocking};
use crate::naming::RefName;

/// References examined per step of GC's scan.
const GC_STEP: usize = 1024;

impl Engine {
    /// Removes every reference past its own expiry at `now` or whose target
    /// record is gone, releasing its hold (GC, before it marks, so the
    /// targets these held expire in the same run). Returns how many.
    ///
    /// # Errors
    /// `Meta`.
    pub(crate) async fn remove_dead_refs(&self, now: Timestamp) -> Result<u64, EngineError> {
        let mut after: Option<Vec<u8>> = None;
        let mut removed = 0;
        loop {
            let (meta, from) = (self.meta.clone(), after.clone());
            let (dead, next) = blocking(move || {
                let page = meta.refs_page(from.as_deref(), GC_STEP)?;
                let next = if page.len() == GC_STEP {
                    page.last().map(|r| r.key.clone())
                } else {
                    None
                };
                let mut dead = Vec::new();
                for r in page {
                    if r.record.expired(now)
                        || meta.artifact(&r.experiment, &r.record.target)?.is_none()
                    {
                        dead.push((r.experiment, r.name));
                    }
                }
                Ok((dead, next))
            })
            .await?;
            for (experiment, name) in dead {
                if self.remove_dead_ref(experiment, &name, now).await? {
                    removed += 1;
                }
            }
            match next {
                Some(k) => after = Some(k),
                None => return Ok(removed),
            }
        }
    }

    /// Removes one reference if it is (still) dead at `now`.
    async fn remove_dead_ref(
        &self,
        experiment: ExperimentId,
        name: &RefName,
        now: Timestamp,
    ) -> Result<bool, EngineError> {
        let _guard = self
            .meta
            .lock(crate::meta::lock::LockKind::Artifacts)
            .await?;
        let (meta, n) = (self.meta.clone(), name.clone());
        let gone = blocking(move || {
            let Some(rec) = meta.reference(&experiment, &n)? else {
                return Ok(None);
            };
            let target = meta.artifact(&experiment, &rec.target)?;
            if !(rec.expired(now) || target.is_none()) {
                return Ok(None);
            }
            let mut b = meta.batch();
            b.delete_ref(&experiment, &n);
            release(&meta, &mut b, experiment, rec.target)?;
            b.commit()?;
            Ok(Some((rec.target, target)))
        })
        .await?;
        let Some((target_id, target)) = gone else {
            return Ok(false);
        };
        self.audit_ref(
            AuditKind::ExpireRef,
            GC_PRINCIPAL,
            experiment,
            name,
            target.as_ref().map(|t| (target_id, t)),
            None,
        );
        tracing::info!(%experiment, reference = %name, "dead reference removed");
        Ok(true)
    }
}
