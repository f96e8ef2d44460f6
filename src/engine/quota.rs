//! Per-experiment quotas on logical bytes held: committed artifacts (until
//! they are deleted or GC removes them after expiry), plus what open upload
//! sessions reserved, plus deposits in flight.
//!
//! Usage is kept in memory and rebuilt from the records when the engine
//! opens (one scan of the artifact and session records), so it can never
//! drift from what the metadata says across restarts. Every change goes
//! through one mutex, and a write is admitted only by *reserving* its bytes
//! first: two concurrent deposits cannot both pass the check and together
//! exceed the quota.
//!
//! - A raw deposit reserves its declared length at start (else nothing) and
//!   grows its reservation in [`DEPOSIT_STEP`] steps as bytes arrive; the
//!   reservation is dropped after the artifact is committed (its size is
//!   then counted as committed) or when the deposit fails.
//! - An upload session reserves its claimed size at creation; a session
//!   created without one (older clients) reserves the bytes it receives, as
//!   each chunk batch is stored. The reservation ends with the session.
//!
//! Quota answers are per experiment and for the admin only: they reveal
//! nothing across experiments (invariant 4).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Engine, EngineError};
use crate::auth::ExperimentId;
use crate::meta::Meta;
use crate::meta::records::UploadRecord;

/// Raw deposits reserve quota in steps of this many bytes.
pub const DEPOSIT_STEP: u64 = 4 << 20;

/// Quota settings: per experiment, else the default, else unlimited.
#[derive(Clone, Debug, Default)]
pub struct QuotaConfig {
    /// `default-experiment-quota`: logical bytes an experiment may hold.
    pub default: Option<u64>,
    /// `[experiment-quota]`: per experiment id.
    pub per_experiment: HashMap<String, u64>,
}

impl QuotaConfig {
    /// The quota of `experiment` in bytes (`None`: unlimited).
    pub fn limit_for(&self, experiment: &str) -> Option<u64> {
        self.per_experiment
            .get(experiment)
            .copied()
            .or(self.default)
    }
}

/// What an experiment holds, in logical (uncompressed, undeduplicated) bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Artifacts committed and not yet removed.
    pub committed_bytes: u64,
    /// Reserved by open upload sessions.
    pub session_bytes: u64,
    /// Reserved by deposits in flight.
    pub in_flight_bytes: u64,
}

impl Usage {
    /// Everything counted against the quota.
    pub fn total(&self) -> u64 {
        self.committed_bytes
            .saturating_add(self.session_bytes)
            .saturating_add(self.in_flight_bytes)
    }
}

/// An experiment's quota and usage, as the admin sees it.
#[derive(Clone, Debug)]
pub struct QuotaView {
    /// The quota in bytes (`None`: unlimited).
    pub quota_bytes: Option<u64>,
    /// Bytes counted against it.
    pub used_bytes: u64,
    /// The parts of `used_bytes`.
    pub usage: Usage,
}

/// Which part of the usage a reservation counts in.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Part {
    Committed,
    Session,
    InFlight,
}

/// The usage table; one per engine.
#[derive(Debug)]
pub(crate) struct Quotas {
    cfg: QuotaConfig,
    usage: Mutex<HashMap<ExperimentId, Usage>>,
}

fn slot(u: &mut Usage, part: Part) -> &mut u64 {
    match part {
        Part::Committed => &mut u.committed_bytes,
        Part::Session => &mut u.session_bytes,
        Part::InFlight => &mut u.in_flight_bytes,
    }
}

impl Quotas {
    /// Builds the table from the records (blocking: one scan of artifacts
    /// and sessions).
    pub(crate) fn load(cfg: QuotaConfig, meta: &Meta) -> Result<Self, EngineError> {
        let mut usage: HashMap<ExperimentId, Usage> = HashMap::new();
        meta.scan_artifacts(|exp, _, rec| {
            let u = usage.entry(exp).or_default();
            u.committed_bytes = u.committed_bytes.saturating_add(rec.size);
            true
        })?;
        for (_, rec) in meta.uploads()? {
            if rec.ended.is_none() {
                let u = usage.entry(rec.experiment).or_default();
                u.session_bytes = u.session_bytes.saturating_add(session_reservation(&rec));
            }
        }
        Ok(Quotas {
            cfg,
            usage: Mutex::new(usage),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<ExperimentId, Usage>> {
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `bytes` to `part` if the total stays within the quota.
    pub(crate) fn try_add(
        &self,
        experiment: &ExperimentId,
        part: Part,
        bytes: u64,
    ) -> Result<(), EngineError> {
        if bytes == 0 {
            return Ok(());
        }
        let limit = self.cfg.limit_for(experiment.as_str());
        let mut t = self.table();
        let u = t.entry(*experiment).or_default();
        if let Some(limit) = limit {
            let used = u.total();
            if used.saturating_add(bytes) > limit {
                return Err(EngineError::QuotaExceeded {
                    limit,
                    used,
                    wanted: bytes,
                });
            }
        }
        let s = slot(u, part);
        *s = s.saturating_add(bytes);
        Ok(())
    }

    /// Adds `bytes` to `part` whatever the quota (a commit of bytes
    /// already reserved elsewhere).
    pub(crate) fn add(&self, experiment: &ExperimentId, part: Part, bytes: u64) {
        let mut t = self.table();
        let s = slot(t.entry(*experiment).or_default(), part);
        *s = s.saturating_add(bytes);
    }

    /// Takes `bytes` off `part`.
    pub(crate) fn sub(&self, experiment: &ExperimentId, part: Part, bytes: u64) {
        let mut t = self.table();
        if let Some(u) = t.get_mut(experiment) {
            let s = slot(u, part);
            *s = s.saturating_sub(bytes);
            if u.total() == 0 {
                t.remove(experiment);
            }
        }
    }

    fn view(&self, experiment: &ExperimentId) -> QuotaView {
        let usage = self.table().get(experiment).copied().unwrap_or_default();
        QuotaView {
            quota_bytes: self.cfg.limit_for(experiment.as_str()),
            used_bytes: usage.total(),
            usage,
        }
    }

    fn in_flight_total(&self) -> u64 {
        self.table().values().map(|u| u.in_flight_bytes).sum()
    }
}

/// What an open session holds against its experiment's quota: its claimed
/// size, else (older clients) what it received.
pub(crate) fn session_reservation(rec: &UploadRecord) -> u64 {
    rec.claimed_size.unwrap_or(rec.received_bytes)
}

/// Quota held by a raw deposit in flight; released on drop.
#[derive(Debug)]
pub struct DepositReservation {
    quotas: Arc<Quotas>,
    experiment: ExperimentId,
    held: u64,
}

impl DepositReservation {
    /// Makes sure `total` bytes are reserved, reserving in steps.
    ///
    /// # Errors
    /// [`EngineError::QuotaExceeded`] when the experiment cannot hold them.
    pub fn grow(&mut self, total: u64) -> Result<(), EngineError> {
        if total <= self.held {
            return Ok(());
        }
        let want = total.div_ceil(DEPOSIT_STEP).saturating_mul(DEPOSIT_STEP);
        let exp = &self.experiment;
        let more = match self.quotas.try_add(exp, Part::InFlight, want - self.held) {
            Ok(()) => want - self.held,
            // Near the quota: reserve exactly what arrived.
            Err(_) => {
                self.quotas
                    .try_add(exp, Part::InFlight, total - self.held)?;
                total - self.held
            }
        };
        self.held += more;
        Ok(())
    }
}

impl Drop for DepositReservation {
    fn drop(&mut self) {
        self.quotas.sub(&self.experiment, Part::InFlight, self.held);
    }
}

impl Engine {
    /// Starts a raw deposit's quota reservation with `initial` bytes (the
    /// declared length, or 0).
    ///
    /// # Errors
    /// [`EngineError::QuotaExceeded`] when the experiment cannot hold them.
    pub fn reserve_deposit(
        &self,
        experiment: ExperimentId,
        initial: u64,
    ) -> Result<DepositReservation, EngineError> {
        let mut r = DepositReservation {
            quotas: Arc::clone(&self.quotas),
            experiment,
            held: 0,
        };
        r.grow(initial)?;
        Ok(r)
    }

    /// The quota and usage of `experiment` (admin only at the HTTP layer).
    pub fn quota(&self, experiment: ExperimentId) -> QuotaView {
        self.quotas.view(&experiment)
    }

    /// What in-flight work holds right now, store-wide (operator figure):
    /// a stalled or cut upload must leave nothing here.
    pub fn in_flight(&self) -> InFlight {
        let (operations, pinned_chunks, open_packs) = self.pins.activity();
        InFlight {
            operations,
            pinned_chunks,
            open_packs,
            reserved_bytes: self.quotas.in_flight_total(),
        }
    }
}

/// What in-flight operations hold (see [`Engine::in_flight`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InFlight {
    /// Operations (deposits, chunk batches, commits) registered with pins.
    pub operations: u64,
    /// Chunks they pin loosely.
    pub pinned_chunks: u64,
    /// Packs being written.
    pub open_packs: u64,
    /// Quota bytes reserved by deposits in flight.
    pub reserved_bytes: u64,
}
