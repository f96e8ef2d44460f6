//! Workers, groups and bearer verification for one experiment at a time
//! (artifact read decisions: `access.rs`). The rules themselves live in `auth/` (pure); this
//! file loads what they need from `meta/` and stores the outcome.
//!
//! Invariant 4 (isolation): every lookup is scoped by experiment, so a worker
//! of E1 is unknown on E2 and an artifact of E1 does not exist on E2.

use std::collections::{BTreeMap, HashMap};

use super::audit::{AuditEvent, AuditKind};
use super::{Engine, EngineError, blocking};
use crate::auth::{
    Credentials, ExperimentId, GroupId, MemberId, NameError, Principal, Secret, WorkerId,
    is_reserved_group_name, mint_token, validate_name, would_create_cycle,
};
use crate::clock::Timestamp;
use crate::meta::records::{GroupRecord, WorkerRecord};

/// A worker as the API shows it (never with its token hash).
#[derive(Clone, Debug)]
pub struct WorkerView {
    /// The worker.
    pub worker_id: WorkerId,
    /// Its experiment.
    pub experiment_id: ExperimentId,
    /// Stored record.
    pub record: WorkerRecord,
}

/// A group as the API shows it.
#[derive(Clone, Debug)]
pub struct GroupView {
    /// The group.
    pub group_id: GroupId,
    /// Its experiment.
    pub experiment_id: ExperimentId,
    /// Stored record.
    pub record: GroupRecord,
}

/// Registry times are shown with milliseconds (`…:05.678Z`); stored at
/// that precision, a record renders the same whenever it is read.
fn now_millis() -> Timestamp {
    let now = Timestamp::now().unix_nanos();
    Timestamp::from_unix_nanos(now - now.rem_euclid(1_000_000))
}

fn check_name(name: &str, reserved_is_error: bool) -> Result<(), EngineError> {
    match validate_name(name) {
        Ok(()) => Ok(()),
        Err(NameError::Invalid(why)) => Err(EngineError::InvalidName(why)),
        Err(NameError::Reserved) if reserved_is_error => Err(EngineError::Reserved),
        Err(NameError::Reserved) => Ok(()),
    }
}

impl Engine {
    /// Verifies a bearer for `experiment`; the answer is the principal.
    /// Unknown workers cost the same as wrong secrets.
    ///
    /// # Errors
    /// `Unauthorized` for a wrong secret or a worker unknown in `experiment`.
    pub async fn authenticate(
        &self,
        experiment: ExperimentId,
        creds: &Credentials,
    ) -> Result<Principal, EngineError> {
        let Principal::Worker(w) = creds.principal else {
            return self.authenticate_unscoped(creds);
        };
        let meta = self.meta.clone();
        let rec = blocking(move || Ok(meta.worker(&experiment, &w)?)).await?;
        let ok = match rec {
            Some(r) => self.tokens.verify(creds.secret.expose(), &r.token_hash),
            None => self.tokens.verify_unknown(creds.secret.expose()),
        };
        if ok {
            Ok(creds.principal)
        } else {
            Err(EngineError::Unauthorized)
        }
    }

    /// Verifies a bearer outside any experiment (a deployment-wide route,
    /// or a path whose experiment id is malformed): only the admin token
    /// passes; a worker bearer costs what an unknown worker does.
    ///
    /// # Errors
    /// `Unauthorized` for anything but the admin token.
    pub fn authenticate_unscoped(&self, creds: &Credentials) -> Result<Principal, EngineError> {
        let ok = match creds.principal {
            Principal::Admin => {
                crate::auth::admin_token_matches(&self.admin_token, creds.secret.expose())
            }
            Principal::Worker(_) => {
                // Same cost as an unknown worker; it never passes.
                let _ = self.tokens.verify_unknown(creds.secret.expose());
                false
            }
        };
        if ok {
            Ok(Principal::Admin)
        } else {
            Err(EngineError::Unauthorized)
        }
    }

    /// Registers a worker; returns it with its one-time token.
    ///
    /// # Errors
    /// [`EngineError::InvalidName`] for a malformed name,
    /// [`EngineError::Reserved`] for a reserved one; [`EngineError::Meta`] when
    /// the metadata store fails.
    pub async fn register_worker(
        &self,
        experiment: ExperimentId,
        name: Option<String>,
        labels: BTreeMap<String, String>,
    ) -> Result<(WorkerView, Secret), EngineError> {
        if let Some(n) = &name {
            check_name(n, true)?;
        }
        let token = mint_token();
        let record = WorkerRecord {
            name: name.unwrap_or_default(),
            labels,
            registered_at: now_millis(),
            registered_by: Principal::Admin,
            token_hash: self.tokens.hash(token.expose()),
        };
        let worker_id = WorkerId::mint();
        let view = WorkerView {
            worker_id,
            experiment_id: experiment,
            record,
        };
        self.store_worker(&view).await?;
        let mut ev = AuditEvent::new(
            AuditKind::RegisterWorker,
            view.record.registered_by.as_str(),
            experiment.as_str(),
        );
        ev.worker = Some(worker_id.to_string());
        ev.name = Some(view.record.name.clone()).filter(|n| !n.is_empty());
        self.audit(ev);
        Ok((view, token))
    }

    /// Workers of an experiment, by id, optionally with exactly this name.
    ///
    /// # Errors
    /// [`EngineError::Meta`] when the metadata store fails.
    pub async fn workers(
        &self,
        experiment: ExperimentId,
        name: Option<&str>,
    ) -> Result<Vec<WorkerView>, EngineError> {
        let meta = self.meta.clone();
        let all = blocking(move || Ok(meta.workers(&experiment)?)).await?;
        Ok(all
            .into_iter()
            .filter(|(_, r)| name.is_none_or(|n| !r.name.is_empty() && r.name == n))
            .map(|(worker_id, record)| WorkerView {
                worker_id,
                experiment_id: experiment,
                record,
            })
            .collect())
    }

    /// One worker.
    ///
    /// # Errors
    /// [`EngineError::NotFound`] when no such worker is registered in
    /// `experiment`; [`EngineError::Meta`] when the metadata store fails.
    pub async fn worker(
        &self,
        experiment: ExperimentId,
        worker: &WorkerId,
    ) -> Result<WorkerView, EngineError> {
        let (meta, wid) = (self.meta.clone(), *worker);
        let rec = blocking(move || Ok(meta.worker(&experiment, &wid)?)).await?;
        rec.map(|record| WorkerView {
            worker_id: wid,
            experiment_id: experiment,
            record,
        })
        .ok_or(EngineError::NotFound)
    }

    /// Mints a new token for a worker; the old one stops working at once.
    ///
    /// # Errors
    /// As [`Engine::worker`].
    pub async fn reissue_credential(
        &self,
        experiment: ExperimentId,
        worker: &WorkerId,
    ) -> Result<(WorkerView, Secret), EngineError> {
        let _guard = self
            .meta
            .lock(crate::meta::lock::LockKind::Registry)
            .await?;
        let mut view = self.worker(experiment, worker).await?;
        let token = mint_token();
        view.record.token_hash = self.tokens.hash(token.expose());
        self.store_worker(&view).await?;
        // Registry changes are admin-only (the routes check it).
        let mut ev = AuditEvent::new(
            AuditKind::ReissueCredential,
            Principal::ADMIN,
            experiment.as_str(),
        );
        ev.worker = Some(worker.to_string());
        self.audit(ev);
        Ok((view, token))
    }

    async fn store_worker(&self, view: &WorkerView) -> Result<(), EngineError> {
        let (meta, exp, wid, rec) = (
            self.meta.clone(),
            view.experiment_id,
            view.worker_id,
            view.record.clone(),
        );
        blocking(move || {
            let mut b = meta.batch();
            b.put_worker(&exp, &wid, &rec);
            Ok(b.commit()?)
        })
        .await
    }

    async fn group_map(
        &self,
        experiment: ExperimentId,
    ) -> Result<Vec<(GroupId, GroupRecord)>, EngineError> {
        let meta = self.meta.clone();
        blocking(move || Ok(meta.groups(&experiment)?)).await
    }

    async fn store_group(&self, view: &GroupView) -> Result<(), EngineError> {
        let (meta, exp, gid, rec) = (
            self.meta.clone(),
            view.experiment_id,
            view.group_id,
            view.record.clone(),
        );
        blocking(move || {
            let mut b = meta.batch();
            b.put_group(&exp, &gid, &rec);
            Ok(b.commit()?)
        })
        .await
    }

    /// Creates a group. Members are typed (parsed where they came in); they
    /// need not exist, and a repeated one is kept once.
    ///
    /// # Errors
    /// [`EngineError::InvalidName`] for a malformed name;
    /// [`EngineError::Reserved`] for a reserved name another group already has;
    /// [`EngineError::Meta`] when the metadata store fails.
    pub async fn create_group(
        &self,
        experiment: ExperimentId,
        name: Option<String>,
        members: Vec<MemberId>,
        created_by: &Principal,
    ) -> Result<GroupView, EngineError> {
        if let Some(n) = &name {
            check_name(n, false)?;
        }
        let mut unique: Vec<MemberId> = Vec::with_capacity(members.len());
        for m in members {
            if !unique.contains(&m) {
                unique.push(m);
            }
        }
        let _guard = self
            .meta
            .lock(crate::meta::lock::LockKind::Registry)
            .await?;
        if let Some(n) = name.as_deref().filter(|n| is_reserved_group_name(n)) {
            let existing = self.group_map(experiment).await?;
            if existing.iter().any(|(_, g)| g.name == n) {
                return Err(EngineError::Reserved);
            }
        }
        let view = GroupView {
            group_id: GroupId::mint(),
            experiment_id: experiment,
            record: GroupRecord {
                name: name.unwrap_or_default(),
                members: unique,
                created_at: now_millis(),
                created_by: *created_by,
            },
        };
        self.store_group(&view).await?;
        let mut ev = AuditEvent::new(
            AuditKind::CreateGroup,
            created_by.as_str(),
            experiment.as_str(),
        );
        ev.group = Some(view.group_id.to_string());
        ev.name = Some(view.record.name.clone()).filter(|n| !n.is_empty());
        ev.members = Some(
            view.record
                .members
                .iter()
                .map(MemberId::to_string)
                .collect(),
        );
        self.audit(ev);
        Ok(view)
    }

    /// Groups of an experiment, by id, optionally with exactly this name.
    ///
    /// # Errors
    /// [`EngineError::Meta`] when the metadata store fails.
    pub async fn groups(
        &self,
        experiment: ExperimentId,
        name: Option<&str>,
    ) -> Result<Vec<GroupView>, EngineError> {
        Ok(self
            .group_map(experiment)
            .await?
            .into_iter()
            .filter(|(_, r)| name.is_none_or(|n| !r.name.is_empty() && r.name == n))
            .map(|(group_id, record)| GroupView {
                group_id,
                experiment_id: experiment,
                record,
            })
            .collect())
    }

    /// One group.
    ///
    /// # Errors
    /// [`EngineError::NotFound`] when no such group exists in `experiment`;
    /// [`EngineError::Meta`] when the metadata store fails.
    pub async fn group(
        &self,
        experiment: ExperimentId,
        group: &GroupId,
    ) -> Result<GroupView, EngineError> {
        let (meta, gid) = (self.meta.clone(), *group);
        let rec = blocking(move || Ok(meta.group(&experiment, &gid)?)).await?;
        rec.map(|record| GroupView {
            group_id: gid,
            experiment_id: experiment,
            record,
        })
        .ok_or(EngineError::NotFound)
    }

    /// Adds a member (idempotent); refuses a change that closes a cycle.
    ///
    /// # Errors
    /// [`EngineError::NotFound`] for an unknown group;
    /// [`EngineError::Cycle`] when the member (transitively) contains the group;
    /// [`EngineError::Meta`] when the metadata store fails.
    pub async fn add_member(
        &self,
        experiment: ExperimentId,
        group: &GroupId,
        member: &MemberId,
    ) -> Result<GroupView, EngineError> {
        let _guard = self
            .meta
            .lock(crate::meta::lock::LockKind::Registry)
            .await?;
        let mut view = self.group(experiment, group).await?;
        if view.record.members.contains(member) {
            self.audit_member(AuditKind::AddMember, experiment, group, member);
            return Ok(view);
        }
        let graph = graph_of(self.group_map(experiment).await?);
        if would_create_cycle(&graph, group, member) {
            return Err(EngineError::Cycle);
        }
        view.record.members.push(*member);
        self.store_group(&view).await?;
        self.audit_member(AuditKind::AddMember, experiment, group, member);
        Ok(view)
    }

    /// Removes a member (an absent one is fine).
    ///
    /// # Errors
    /// As [`Engine::group`].
    pub async fn remove_member(
        &self,
        experiment: ExperimentId,
        group: &GroupId,
        member: &MemberId,
    ) -> Result<GroupView, EngineError> {
        let _guard = self
            .meta
            .lock(crate::meta::lock::LockKind::Registry)
            .await?;
        let mut view = self.group(experiment, group).await?;
        let before = view.record.members.len();
        view.record.members.retain(|m| m != member);
        if view.record.members.len() != before {
            self.store_group(&view).await?;
        }
        self.audit_member(AuditKind::RemoveMember, experiment, group, member);
        Ok(view)
    }

    /// Deletes a group; other groups keep the now dangling id.
    ///
    /// # Errors
    /// As [`Engine::group`].
    pub async fn delete_group(
        &self,
        experiment: ExperimentId,
        group: &GroupId,
    ) -> Result<(), EngineError> {
        let _guard = self
            .meta
            .lock(crate::meta::lock::LockKind::Registry)
            .await?;
        self.group(experiment, group).await?;
        let (meta, gid) = (self.meta.clone(), *group);
        blocking(move || {
            let mut b = meta.batch();
            b.delete_group(&experiment, &gid);
            Ok(b.commit()?)
        })
        .await?;
        let mut ev = AuditEvent::new(
            AuditKind::DeleteGroup,
            Principal::ADMIN,
            experiment.as_str(),
        );
        ev.group = Some(group.to_string());
        self.audit(ev);
        Ok(())
    }

    /// Records a membership change (admin-only, as every registry change).
    fn audit_member(
        &self,
        kind: AuditKind,
        experiment: ExperimentId,
        group: &GroupId,
        member: &MemberId,
    ) {
        let mut ev = AuditEvent::new(kind, Principal::ADMIN, experiment.as_str());
        ev.group = Some(group.to_string());
        ev.member = Some(member.to_string());
        self.audit(ev);
    }
}

fn graph_of(groups: Vec<(GroupId, GroupRecord)>) -> HashMap<GroupId, Vec<MemberId>> {
    groups.into_iter().map(|(id, g)| (id, g.members)).collect()
}
