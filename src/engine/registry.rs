//! Workers, groups and bearer verification for one experiment at a time
//! (artifact read decisions: `access.rs`). The rules themselves live in `auth/` (pure); this
//! file loads what they need from `meta/` and stores the outcome.
//!
//! Invariant 4 (isolation): every lookup is scoped by experiment, so a worker
//! of E1 is unknown on E2 and an artifact of E1 does not exist on E2.

use std::collections::{BTreeMap, HashMap};

use super::{Engine, EngineError, blocking};
use crate::auth::{
    Credentials, GroupId, MemberId, NameError, Principal, Secret, WorkerId, is_reserved_group_name,
    mint_token, validate_name, would_create_cycle,
};
use crate::meta::records::{GroupRecord, WorkerRecord};

/// A worker as the API shows it (never with its token hash).
#[derive(Clone, Debug)]
pub struct WorkerView {
    /// `wkr_…`.
    pub worker_id: String,
    /// Experiment id.
    pub experiment_id: String,
    /// Stored record.
    pub record: WorkerRecord,
}

/// A group as the API shows it.
#[derive(Clone, Debug)]
pub struct GroupView {
    /// `grp_…`.
    pub group_id: String,
    /// Experiment id.
    pub experiment_id: String,
    /// Stored record.
    pub record: GroupRecord,
}

/// Current time as RFC 3339 UTC with milliseconds and `Z`.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
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
    pub async fn authenticate(
        &self,
        experiment: &str,
        creds: &Credentials,
    ) -> Result<Principal, EngineError> {
        match &creds.principal {
            Principal::Admin => {
                if crate::auth::admin_token_matches(&self.admin_token, creds.secret.expose()) {
                    Ok(Principal::Admin)
                } else {
                    Err(EngineError::Unauthorized)
                }
            }
            Principal::Worker(w) => {
                let meta = self.meta.clone();
                let (exp, wid) = (experiment.to_string(), w.as_str().to_string());
                let rec = blocking(move || Ok(meta.worker(&exp, &wid)?)).await?;
                let ok = match rec {
                    Some(r) => self.tokens.verify(creds.secret.expose(), &r.token_hash),
                    None => self.tokens.verify_unknown(creds.secret.expose()),
                };
                if ok {
                    Ok(creds.principal.clone())
                } else {
                    Err(EngineError::Unauthorized)
                }
            }
        }
    }

    /// Registers a worker; returns it with its one-time token.
    pub async fn register_worker(
        &self,
        experiment: &str,
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
            registered_at: now_rfc3339(),
            registered_by: Principal::ADMIN.to_string(),
            token_hash: self.tokens.hash(token.expose()),
        };
        let worker_id = WorkerId::mint().as_str().to_string();
        let meta = self.meta.clone();
        let (exp, wid, rec) = (experiment.to_string(), worker_id.clone(), record.clone());
        blocking(move || {
            let mut b = meta.batch();
            b.put_worker(&exp, &wid, &rec);
            Ok(b.commit()?)
        })
        .await?;
        Ok((
            WorkerView {
                worker_id,
                experiment_id: experiment.into(),
                record,
            },
            token,
        ))
    }

    /// Workers of an experiment, by id, optionally with exactly this name.
    pub async fn workers(
        &self,
        experiment: &str,
        name: Option<&str>,
    ) -> Result<Vec<WorkerView>, EngineError> {
        let meta = self.meta.clone();
        let exp = experiment.to_string();
        let all = blocking(move || Ok(meta.workers(&exp)?)).await?;
        Ok(all
            .into_iter()
            .filter(|(_, r)| name.is_none_or(|n| !r.name.is_empty() && r.name == n))
            .map(|(worker_id, record)| WorkerView {
                worker_id,
                experiment_id: experiment.into(),
                record,
            })
            .collect())
    }

    /// One worker.
    pub async fn worker(&self, experiment: &str, worker: &str) -> Result<WorkerView, EngineError> {
        let meta = self.meta.clone();
        let (exp, wid) = (experiment.to_string(), worker.to_string());
        let rec = blocking(move || Ok(meta.worker(&exp, &wid)?)).await?;
        rec.map(|record| WorkerView {
            worker_id: worker.into(),
            experiment_id: experiment.into(),
            record,
        })
        .ok_or(EngineError::NotFound)
    }

    /// Mints a new token for a worker; the old one stops working at once.
    pub async fn reissue_credential(
        &self,
        experiment: &str,
        worker: &str,
    ) -> Result<(WorkerView, Secret), EngineError> {
        let _guard = self.registry_lock.lock().await;
        let mut view = self.worker(experiment, worker).await?;
        let token = mint_token();
        view.record.token_hash = self.tokens.hash(token.expose());
        let meta = self.meta.clone();
        let (exp, wid, rec) = (
            experiment.to_string(),
            worker.to_string(),
            view.record.clone(),
        );
        blocking(move || {
            let mut b = meta.batch();
            b.put_worker(&exp, &wid, &rec);
            Ok(b.commit()?)
        })
        .await?;
        Ok((view, token))
    }

    async fn group_map(&self, experiment: &str) -> Result<Vec<(String, GroupRecord)>, EngineError> {
        let meta = self.meta.clone();
        let exp = experiment.to_string();
        blocking(move || Ok(meta.groups(&exp)?)).await
    }

    async fn store_group(
        &self,
        experiment: &str,
        group: &str,
        rec: &GroupRecord,
    ) -> Result<(), EngineError> {
        let meta = self.meta.clone();
        let (exp, gid, rec) = (experiment.to_string(), group.to_string(), rec.clone());
        blocking(move || {
            let mut b = meta.batch();
            b.put_group(&exp, &gid, &rec);
            Ok(b.commit()?)
        })
        .await
    }

    /// Creates a group. Member ids must be well formed; they need not exist.
    pub async fn create_group(
        &self,
        experiment: &str,
        name: Option<String>,
        members: Vec<String>,
        created_by: &Principal,
    ) -> Result<GroupView, EngineError> {
        if let Some(n) = &name {
            check_name(n, false)?;
        }
        let mut unique: Vec<String> = Vec::with_capacity(members.len());
        for m in members {
            if MemberId::parse(&m).is_none() {
                return Err(EngineError::BadRequest(format!(
                    "member id {m:?} is not a wkr_ or grp_ id"
                )));
            }
            if !unique.contains(&m) {
                unique.push(m);
            }
        }
        let _guard = self.registry_lock.lock().await;
        if let Some(n) = name.as_deref().filter(|n| is_reserved_group_name(n)) {
            let existing = self.group_map(experiment).await?;
            if existing.iter().any(|(_, g)| g.name == n) {
                return Err(EngineError::Reserved);
            }
        }
        let group_id = GroupId::mint().as_str().to_string();
        let record = GroupRecord {
            name: name.unwrap_or_default(),
            members: unique,
            created_at: now_rfc3339(),
            created_by: created_by.to_string(),
        };
        self.store_group(experiment, &group_id, &record).await?;
        Ok(GroupView {
            group_id,
            experiment_id: experiment.into(),
            record,
        })
    }

    /// Groups of an experiment, by id, optionally with exactly this name.
    pub async fn groups(
        &self,
        experiment: &str,
        name: Option<&str>,
    ) -> Result<Vec<GroupView>, EngineError> {
        Ok(self
            .group_map(experiment)
            .await?
            .into_iter()
            .filter(|(_, r)| name.is_none_or(|n| !r.name.is_empty() && r.name == n))
            .map(|(group_id, record)| GroupView {
                group_id,
                experiment_id: experiment.into(),
                record,
            })
            .collect())
    }

    /// One group.
    pub async fn group(&self, experiment: &str, group: &str) -> Result<GroupView, EngineError> {
        let meta = self.meta.clone();
        let (exp, gid) = (experiment.to_string(), group.to_string());
        let rec = blocking(move || Ok(meta.group(&exp, &gid)?)).await?;
        rec.map(|record| GroupView {
            group_id: group.into(),
            experiment_id: experiment.into(),
            record,
        })
        .ok_or(EngineError::NotFound)
    }

    /// Adds a member (idempotent); refuses a change that closes a cycle.
    pub async fn add_member(
        &self,
        experiment: &str,
        group: &str,
        member: &str,
    ) -> Result<GroupView, EngineError> {
        let _guard = self.registry_lock.lock().await;
        let mut view = self.group(experiment, group).await?;
        if MemberId::parse(member).is_none() {
            return Err(EngineError::BadRequest(
                "member_id is not a wkr_ or grp_ id".into(),
            ));
        }
        if view.record.members.iter().any(|m| m == member) {
            return Ok(view);
        }
        let graph = graph_of(self.group_map(experiment).await?);
        let gid = GroupId::parse(group).ok_or(EngineError::NotFound)?;
        if would_create_cycle(&graph, &gid, member) {
            return Err(EngineError::Cycle);
        }
        view.record.members.push(member.to_string());
        self.store_group(experiment, group, &view.record).await?;
        Ok(view)
    }

    /// Removes a member (absent is fine).
    pub async fn remove_member(
        &self,
        experiment: &str,
        group: &str,
        member: &str,
    ) -> Result<GroupView, EngineError> {
        let _guard = self.registry_lock.lock().await;
        let mut view = self.group(experiment, group).await?;
        let before = view.record.members.len();
        view.record.members.retain(|m| m != member);
        if view.record.members.len() != before {
            self.store_group(experiment, group, &view.record).await?;
        }
        Ok(view)
    }

    /// Deletes a group; other groups keep the now dangling id.
    pub async fn delete_group(&self, experiment: &str, group: &str) -> Result<(), EngineError> {
        let _guard = self.registry_lock.lock().await;
        self.group(experiment, group).await?;
        let meta = self.meta.clone();
        let (exp, gid) = (experiment.to_string(), group.to_string());
        blocking(move || {
            let mut b = meta.batch();
            b.delete_group(&exp, &gid);
            Ok(b.commit()?)
        })
        .await
    }
}

fn graph_of(groups: Vec<(String, GroupRecord)>) -> HashMap<GroupId, Vec<String>> {
    groups
        .into_iter()
        .filter_map(|(id, g)| GroupId::parse(&id).map(|gid| (gid, g.members)))
        .collect()
}
