//! Bodies of the native surface, `/cas/v1/` (`docs/api.md`): artifacts,
//! listing pages, upload sessions and their negotiation, admin answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An artifact as a reader sees it. `expires_at` and `filename` are
/// omitted when absent, never `null`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Chunks in the content.
    pub chunks: u64,
    /// Content type as recorded.
    pub content_type: String,
    /// RFC 3339 UTC with milliseconds.
    pub created_at: String,
    /// `admin` or the depositing worker id.
    pub created_by: String,
    /// Dedup figures (see [`Dedup`]).
    pub dedup: Dedup,
    /// Whether the store computed the digests from the bytes.
    pub digest_verified: bool,
    /// Whole-content digests.
    pub digests: Digests,
    /// RFC 3339 UTC; after it the artifact is no longer served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Filename given at deposit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Principals (`wkr_…`, `grp_…`) granted read access.
    pub grants: Vec<String>,
    /// 32 lowercase hex characters.
    pub id: String,
    /// `key=value` labels; omitted when there are none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Bytes of content.
    pub size_bytes: u64,
    /// `eden://artifacts/<id>`.
    pub uri: String,
}

/// Whole-content digests, each prefixed with its algorithm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    /// `blake3:<64 hex>`.
    pub blake3: String,
    /// `sha256:<64 hex>`.
    pub sha256: String,
}

/// Dedup figures of a deposit. The `new_*` figures are relative to what
/// the depositor could read, and shown only to the depositor and the
/// admin; other readers get the content figures alone (invariant 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dedup {
    /// Chunks in the artifact.
    pub chunks: u64,
    /// Bytes of the artifact.
    pub logical_bytes: u64,
    /// Distinct chunks no artifact readable by the depositor held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_chunks: Option<u64>,
    /// Raw bytes of those chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_raw_bytes: Option<u64>,
}

/// `GET …/artifacts`: one page, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactPage {
    /// The readable artifacts of the page.
    pub artifacts: Vec<Artifact>,
    /// Cursor of the next page (`null` on the last one).
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// `POST …/artifacts/{id}/grants`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// `wkr_…` or `grp_…`.
    pub principal: String,
}

/// `POST …/uploads`; every field optional, unknown ones refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The artifact's `Content-Type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Artifact lifetime as a humantime duration (`7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
    /// The artifact's filename.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The artifact's size in bytes, as the client will send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// The chunker a session expects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunker {
    /// Algorithm name (`fastcdc-2020`).
    pub algorithm: String,
    /// Average chunk, bytes.
    pub avg_bytes: u32,
    /// Largest chunk, bytes.
    pub max_bytes: u32,
    /// Smallest chunk, bytes.
    pub min_bytes: u32,
    /// FastCDC normalization level.
    pub normalization: u8,
}

/// An upload session (201 of `POST …/uploads`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Chunker the client must use.
    pub chunker: Chunker,
    /// RFC 3339 UTC with milliseconds.
    pub created_at: String,
    /// When it expires if left idle, RFC 3339 UTC.
    pub expires_at: String,
    /// Largest chunk batch body, bytes.
    pub max_batch_bytes: u64,
    /// Most bytes the session may receive.
    pub max_bytes: u64,
    /// 32 lowercase hex characters.
    pub session_id: String,
    /// The size claimed at creation (`null` if none).
    pub size: Option<u64>,
}

/// `GET …/uploads/{S}`: the session and one page of what it received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// As in [`Session`].
    pub chunker: Chunker,
    /// As in [`Session`].
    pub created_at: String,
    /// As in [`Session`].
    pub expires_at: String,
    /// As in [`Session`].
    pub max_batch_bytes: u64,
    /// As in [`Session`].
    pub max_bytes: u64,
    /// Received chunk ids (64 hex), in id order, one page.
    pub received: Vec<String>,
    /// Raw bytes received.
    pub received_bytes: u64,
    /// Distinct chunks received.
    pub received_chunks: u64,
    /// Where the next page starts (`after=`), `null` on the last page.
    pub received_next: Option<String>,
    /// As in [`Session`].
    pub session_id: String,
    /// As in [`Session`].
    pub size: Option<u64>,
}

/// `POST …/uploads/{S}/missing`, request and answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissingRequest {
    /// Chunk ids (64 hex), at most 10 000.
    pub chunks: Vec<String>,
}

/// The ids of [`MissingRequest`] the session must still send, in request order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    /// Chunk ids (64 hex).
    pub missing: Vec<String>,
}

/// `PUT …/uploads/{S}/chunks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReceipt {
    /// Frames accepted.
    pub received: u64,
    /// Frames this session had not received before (creator-scoped).
    pub stored_new: u64,
}

/// `GET /cas/v1/admin/inflight`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// Packs open for writing.
    pub open_packs: u64,
    /// Operations holding pins.
    pub operations: u64,
    /// Chunks pinned.
    pub pinned_chunks: u64,
    /// Bytes reserved against quotas.
    pub reserved_bytes: u64,
}

/// `GET …/quota` (admin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Bytes of committed artifacts.
    pub committed_bytes: u64,
    /// The experiment id.
    pub experiment: String,
    /// Bytes of deposits in flight.
    pub in_flight_bytes: u64,
    /// The quota (`null`: none).
    pub quota_bytes: Option<u64>,
    /// Bytes reserved by upload sessions.
    pub session_bytes: u64,
    /// All of the above together.
    pub used_bytes: u64,
}

/// `POST /cas/v1/admin/backup`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    /// Bytes uploaded.
    pub bytes: u64,
    /// Files uploaded.
    pub files: u64,
    /// The backup's name (`yyyymmddThhmmssZ`).
    pub name: String,
}

/// A named reference (`GET`/`PUT …/refs/{name}`, listing items).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// The target as the caller sees it.
    pub artifact: Artifact,
    /// RFC 3339 UTC with milliseconds.
    pub created_at: String,
    /// Who created the reference.
    pub created_by: String,
    /// When the reference itself stops existing; omitted when never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Workers and groups who may move or delete it (besides its creator,
    /// the admin and members of `admins`).
    pub grants: Vec<String>,
    /// Its name.
    pub name: String,
    /// The target's id (also the `ETag`, quoted).
    pub target: String,
    /// RFC 3339 UTC with milliseconds.
    pub updated_at: String,
    /// Who last set it.
    pub updated_by: String,
}

/// `PUT …/refs/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRefRequest {
    /// The reference's own lifetime (`1d`); absent: it does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
    /// Who else may move or delete it; absent: unchanged (none on create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<String>>,
    /// The artifact id to point at.
    pub target: String,
}

/// `GET …/refs`: one page, in name order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefPage {
    /// Cursor of the next page (`null` on the last one).
    #[serde(default)]
    pub next_cursor: Option<String>,
    /// The visible references of the page.
    pub refs: Vec<Reference>,
}

/// One change of a reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefChange {
    /// RFC 3339 UTC with milliseconds.
    pub at: String,
    /// Who set it.
    pub by: String,
    /// The target before; `null` when created or not readable by the caller.
    pub from: Option<String>,
    /// Position in the reference's history, from 0.
    pub seq: u64,
    /// The target after; `null` when not readable by the caller.
    pub to: Option<String>,
}

/// `GET …/ref-history/{name}`: newest first, bounded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefHistory {
    /// The changes, newest first.
    pub changes: Vec<RefChange>,
    /// The reference.
    pub name: String,
}

/// `PUT …/artifacts/{id}/labels`: the new label set, replacing the old.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsRequest {
    /// `key: value` pairs.
    pub labels: BTreeMap<String, String>,
}
