//! Bodies of the EDEN v0 surface (`eden-v0-contract.md` §2–§5). Empty
//! names and labels are omitted, as EDEN's own server does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

fn is_empty_str(s: &str) -> bool {
    s.is_empty()
}

/// 201 answer of a deposit: exactly these three fields (EDEN's client
/// rejects extra ones).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deposited {
    /// `eden://artifacts/<id>`.
    pub artifacts_uri: String,
    /// The part's content type as recorded.
    pub content_type: String,
    /// Bytes stored.
    pub size_bytes: u64,
}

/// A worker (never its token hash; the token only on register and reissue).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    /// The experiment id.
    pub experiment_id: String,
    /// Free-form labels; omitted when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Display name; omitted when empty.
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub name: String,
    /// RFC 3339 UTC with milliseconds.
    pub registered_at: String,
    /// Always `admin`.
    pub registered_by: String,
    /// The one-time token (64 hex), on register and reissue only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_token: Option<String>,
    /// `wkr_…`.
    pub worker_id: String,
}

/// `GET …/workers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workers {
    /// By id.
    pub workers: Vec<Worker>,
}

/// `GET …/whoami`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// Display name; omitted when empty.
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub name: String,
    /// `wkr_…`.
    pub worker_id: String,
}

/// A group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// RFC 3339 UTC with milliseconds.
    pub created_at: String,
    /// `admin`.
    pub created_by: String,
    /// The experiment id.
    pub experiment_id: String,
    /// `grp_…`.
    pub group_id: String,
    /// Member ids (`wkr_…`, `grp_…`) in insertion order.
    pub members: Vec<String>,
    /// Display name; omitted when empty.
    #[serde(default, skip_serializing_if = "is_empty_str")]
    pub name: String,
}

/// `GET …/groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Groups {
    /// By id.
    pub groups: Vec<Group>,
}
