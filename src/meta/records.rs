//! Values stored in RocksDB, CBOR-encoded through serde (ciborium).
//!
//! Every record carries only what the engine needs to answer requests; all of
//! the chunk index can be rebuilt from pack footers (see `pack.rs`) and every
//! manifest is also written to the blob store.
//!
//! Typed fields keep their old encodings, so records written before them
//! still decode: ids and principals are the same text strings, and a
//! [`Timestamp`] is an integer of Unix nanoseconds that also decodes from
//! the RFC 3339 strings worker and group records used to hold; grants and
//! group members are [`MemberId`]s, stored as the same id text. The one
//! field that changed unit, an artifact's expiry (Unix seconds under
//! `expires_at` before, nanoseconds under `expires_at_ns` now), is read
//! from either key (`StoredArtifact`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::auth::{ExperimentId, MemberId, Principal};
use crate::chunking::ChunkerParams;
use crate::clock::Timestamp;
use crate::hash::Digest;
use crate::ids::{ArtifactId, PackId};
use crate::pack::Codec;

/// Where a chunk's bytes live. Value of `chunks-v1`, keyed by chunk id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkLocation {
    /// Pack id (stored as its 128-bit integer, as before the type).
    pub pack: PackId,
    /// Offset inside the pack object.
    pub offset: u64,
    /// Stored length.
    pub stored_len: u32,
    /// Raw length.
    pub raw_len: u32,
    /// Codec of the stored bytes.
    pub codec: Codec,
    /// For a chunk stored inside a frame (pack format 3): its place in the
    /// decoded frame; `offset`, `stored_len` and `codec` then describe the
    /// whole frame. Absent in older records (and omitted when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<crate::pack::FrameSlot>,
    /// Set by the scrubber when the stored copy failed verification: every
    /// write path then treats the chunk as absent, so the next upload of
    /// the same content stores a fresh copy and re-indexes it (self-healing).
    /// Absent in older records (and omitted when false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bad: bool,
}

impl ChunkLocation {
    /// The (good) location of a footer entry of `pack`.
    pub fn in_pack(pack: PackId, e: &crate::pack::PackEntry) -> Self {
        ChunkLocation {
            pack,
            offset: e.offset,
            stored_len: e.stored_len,
            raw_len: e.raw_len,
            codec: e.codec,
            frame: e.frame,
            bad: false,
        }
    }

    /// This copy as an entry of its pack's footer would list it.
    pub fn entry(&self, id: Digest) -> crate::pack::PackEntry {
        crate::pack::PackEntry {
            id,
            offset: self.offset,
            stored_len: self.stored_len,
            raw_len: self.raw_len,
            codec: self.codec,
            frame: self.frame,
        }
    }

    /// Stored bytes charged to this chunk (`PackEntry::stored_share`).
    pub fn stored_share(&self) -> u64 {
        crate::pack::stored_share(self.stored_len, self.raw_len, self.frame)
    }

    /// Whether this names the copy at `offset` in `pack`.
    pub fn is_at(&self, pack: PackId, offset: u64) -> bool {
        self.pack == pack && self.offset == offset
    }

    /// Whether a write path may deduplicate against this copy: a copy marked
    /// bad counts as absent.
    pub fn usable(&self) -> bool {
        !self.bad
    }
}

/// A pack object. Value of `packs-v1`, keyed by pack id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackRecord {
    /// Total object size, footer included.
    pub bytes: u64,
    /// Number of chunks.
    pub chunks: u32,
    /// Sum of the raw lengths of its chunks.
    pub raw_bytes: u64,
    /// When it became durable. Stored as whole Unix seconds (the record's
    /// encoding since the first release): converted at this boundary, so
    /// the sub-second part is dropped.
    #[serde(with = "crate::clock::unix_secs")]
    pub created_at: Timestamp,
}

/// One entry of a manifest: a chunk and its raw length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Chunk id.
    pub id: Digest,
    /// Raw length.
    pub len: u32,
}

/// Up to [`SEGMENT_ENTRIES`] consecutive manifest entries. Value of
/// `segments-v1`, keyed by the BLAKE3 of its encoding (content-addressed, so
/// repeated checkpoints share segments and a manifest never sits whole in
/// memory).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The entries, in content order.
    pub entries: Vec<ManifestEntry>,
}

/// Entries per segment: 4096 × 64 KiB ≈ 256 MiB of content per segment.
pub const SEGMENT_ENTRIES: usize = 4096;

/// A reference from a manifest to one of its segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    /// Segment id.
    pub id: Digest,
    /// Entries in it.
    pub chunks: u32,
    /// Raw bytes it covers.
    pub bytes: u64,
}

/// The content of an artifact, independent of who deposited it. Value of
/// `manifests-v1`, keyed by the BLAKE3 of its encoding: identical content
/// (with identical chunker parameters) shares one manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Chunker algorithm id (`fastcdc-2020`).
    pub chunker: String,
    /// Chunker parameters.
    pub params: ChunkerParams,
    /// Total raw size.
    pub size: u64,
    /// Number of chunks.
    pub chunks: u64,
    /// BLAKE3 of the whole content.
    pub blake3: Digest,
    /// SHA-256 of the whole content.
    pub sha256: [u8; 32],
    /// Segments, in order.
    pub segments: Vec<SegmentRef>,
}

/// Dedup figures of one deposit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupFigures {
    /// Bytes received.
    pub logical_bytes: u64,
    /// Raw bytes of chunks this deposit stored for the first time.
    pub new_raw_bytes: u64,
    /// Bytes those new chunks take in packs (after compression).
    pub new_stored_bytes: u64,
    /// Chunks in the artifact.
    pub chunks: u64,
    /// Chunks stored for the first time.
    pub new_chunks: u64,
}

/// Dedup figures of one deposit as its depositor may observe them
/// (invariant 4): a pure function of the deposited bytes and of the
/// artifacts of the experiment the depositor could read at commit time.
/// Stored lengths never enter them: a copy made by someone else may have
/// been stored with other settings, so its length could tell who made it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisibleDedup {
    /// Bytes of the artifact.
    pub logical_bytes: u64,
    /// Chunks in the artifact.
    pub chunks: u64,
    /// Distinct chunks that no artifact readable by the depositor held.
    pub new_chunks: u64,
    /// Raw bytes of those chunks.
    pub new_raw_bytes: u64,
}

/// An artifact. Value of `artifacts-v1`, keyed by `experiment \0 ulid`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredArtifact")]
pub struct ArtifactRecord {
    /// Manifest id.
    pub manifest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Content type, verbatim after sanitising.
    pub content_type: String,
    /// Filename given at deposit, if any.
    pub filename: Option<String>,
    /// The admin or the depositing worker.
    pub created_by: Principal,
    /// When it was committed.
    #[serde(rename = "created_at_ns")]
    pub created_at: Timestamp,
    /// BLAKE3 of the content.
    pub blake3: Digest,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// Workers and groups granted read access explicitly (stored as their
    /// id text, `wkr_…` / `grp_…`).
    pub grants: Vec<MemberId>,
    /// From when on the artifact is no longer served.
    #[serde(rename = "expires_at_ns", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Dedup figures of the deposit that created it, measured against the
    /// whole store (operator figures; never shown to a worker, see
    /// `visible_dedup`).
    pub dedup: DedupFigures,
    /// Whether `blake3`/`sha256` were computed by the store from the bytes
    /// (while streaming a deposit, or by reading the chunks back at an upload
    /// commit) rather than taken from a client. Absent in old records.
    #[serde(default)]
    pub digest_verified: bool,
    /// Dedup figures as the depositor could observe them: a chunk counts as
    /// new unless an artifact of this experiment that the depositor may read
    /// already held it (invariant 4: answers never depend on content the
    /// caller cannot read). Absent in records older than `/cas/v1/`; records
    /// written before raw figures were used also carry a `new_stored_bytes`
    /// key, which is ignored.
    #[serde(default)]
    pub visible_dedup: Option<VisibleDedup>,
    /// `key=value` labels (`naming::check_labels`), set at deposit and by
    /// its managers later. Absent when empty, so records without labels
    /// encode as before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// How many reference records (`refs-v1`) name this artifact as their
    /// target: while any does, the artifact does not expire (issue 15: an
    /// artifact a reference points at is never expired by TTL). Changed in
    /// the same batch as the references. Absent when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ref_holds: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ArtifactRecord {
    /// Whether it is past its expiry at `now` (no longer served) and no
    /// reference holds it.
    pub fn expired(&self, now: Timestamp) -> bool {
        self.ref_holds == 0 && self.expires_at.is_some_and(|t| t <= now)
    }
}

/// How an artifact record decodes: today's keys, and the expiry in Unix
/// seconds under `expires_at` of records written before [`Timestamp`].
#[derive(Deserialize)]
struct StoredArtifact {
    manifest: Digest,
    size: u64,
    content_type: String,
    filename: Option<String>,
    created_by: Principal,
    created_at_ns: Timestamp,
    blake3: Digest,
    sha256: [u8; 32],
    grants: Vec<MemberId>,
    #[serde(default)]
    expires_at_ns: Option<Timestamp>,
    /// Unix seconds (older records).
    #[serde(default)]
    expires_at: Option<i64>,
    dedup: DedupFigures,
    #[serde(default)]
    digest_verified: bool,
    #[serde(default)]
    visible_dedup: Option<VisibleDedup>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    ref_holds: u32,
}

impl From<StoredArtifact> for ArtifactRecord {
    fn from(r: StoredArtifact) -> Self {
        ArtifactRecord {
            manifest: r.manifest,
            size: r.size,
            content_type: r.content_type,
            filename: r.filename,
            created_by: r.created_by,
            created_at: r.created_at_ns,
            blake3: r.blake3,
            sha256: r.sha256,
            grants: r.grants,
            expires_at: r
                .expires_at_ns
                .or(r.expires_at.map(Timestamp::from_unix_secs)),
            dedup: r.dedup,
            digest_verified: r.digest_verified,
            visible_dedup: r.visible_dedup,
            labels: r.labels,
            ref_holds: r.ref_holds,
        }
    }
}

/// A registered worker. Value of `workers-v1`, keyed by `experiment \0 worker`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Display name.
    pub name: String,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// When it was registered (older records: an RFC 3339 string).
    pub registered_at: Timestamp,
    /// Always the admin in v0.
    pub registered_by: Principal,
    /// Keyed BLAKE3 of the registration token.
    pub token_hash: [u8; 32],
}

/// A group. Value of `groups-v1`, keyed by `experiment \0 group`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// Display name.
    pub name: String,
    /// Members (stored as their id text, `wkr_…` or `grp_…`), in insertion
    /// order.
    pub members: Vec<MemberId>,
    /// When it was created (older records: an RFC 3339 string).
    pub created_at: Timestamp,
    /// The admin in v0.
    pub created_by: Principal,
}

/// A resumable upload session. Value of `uploads-v1`, keyed by the 16-byte
/// session id. Scoped to one experiment and one creator; once ended it stays
/// as a tombstone (so the session answers 410) until the reaper drops it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// Experiment id.
    pub experiment: ExperimentId,
    /// The admin or the creating worker; the artifact's `created_by`.
    pub created_by: Principal,
    /// When it was created.
    #[serde(rename = "created_at_ns")]
    pub created_at: Timestamp,
    /// The last request that used the session.
    #[serde(rename = "last_active_ns")]
    pub last_active: Timestamp,
    /// Chunker parameters the client was told to use.
    pub chunker: ChunkerParams,
    /// Content type for the artifact (sanitised).
    pub content_type: String,
    /// Filename for the artifact.
    pub filename: Option<String>,
    /// Artifact lifetime after commit, in seconds.
    pub artifact_ttl_s: Option<u64>,
    /// Set when the session ended; the record is then a tombstone.
    pub ended: Option<UploadEnd>,
    /// The artifact size the client claimed at creation, if it did; the
    /// session may receive at most this many bytes (and reserves them
    /// against the experiment's quota).
    #[serde(default)]
    pub claimed_size: Option<u64>,
    /// Raw bytes of the distinct chunks received so far (counted against
    /// the claim, else the size cap).
    #[serde(default)]
    pub received_bytes: u64,
}

/// How and when an upload session ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadEnd {
    /// When.
    #[serde(rename = "at_ns")]
    pub at: Timestamp,
    /// Why.
    pub reason: EndReason,
}

/// Why an upload session ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndReason {
    /// Committed as this artifact.
    Committed(ArtifactId),
    /// Abandoned by its creator.
    Abandoned,
    /// Idle for longer than the upload idle timeout.
    Expired,
}

/// A chunk received by an upload session (its pin). Value of
/// `upload-chunks-v1`, keyed by `session-id ‖ chunk-id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadChunk {
    /// Raw length.
    pub raw_len: u32,
    /// Stored length of the chunk in its pack.
    pub stored_len: u32,
    /// Whether this session stored it first, store-wide (operator figures).
    pub new_global: bool,
}

#[cfg(test)]
mod golden;

#[cfg(test)]
mod tests {
    use super::*;

    /// An artifact record as written before `/cas/v1/` (no
    /// `digest_verified`, no `visible_dedup`), and before typed times.
    #[derive(Clone, Serialize)]
    struct LegacyArtifact {
        manifest: Digest,
        size: u64,
        content_type: String,
        filename: Option<String>,
        created_by: String,
        created_at_ns: i64,
        blake3: Digest,
        sha256: [u8; 32],
        grants: Vec<String>,
        expires_at: Option<i64>,
        dedup: DedupFigures,
    }

    /// A chunk index entry as written before `bad` existed.
    #[derive(Serialize)]
    struct LegacyLocation {
        pack: u128,
        offset: u64,
        stored_len: u32,
        raw_len: u32,
        codec: Codec,
    }

    #[test]
    fn old_chunk_locations_still_decode() {
        let old = LegacyLocation {
            pack: 7,
            offset: 8,
            stored_len: 100,
            raw_len: 200,
            codec: Codec::Zstd,
        };
        let bytes = crate::meta::encode(&old).unwrap();
        let loc: ChunkLocation = ciborium::from_reader(&bytes[..]).unwrap();
        assert!(!loc.bad && loc.usable());
        assert_eq!((loc.pack, loc.offset, loc.raw_len), (PackId(7), 8, 200));
        // A good entry encodes exactly as before; a bad one round-trips.
        let good = ChunkLocation { bad: false, ..loc };
        assert_eq!(crate::meta::encode(&good).unwrap(), bytes);
        let bad = ChunkLocation { bad: true, ..loc };
        let back: ChunkLocation =
            ciborium::from_reader(&crate::meta::encode(&bad).unwrap()[..]).unwrap();
        assert!(back.bad && !back.usable());
    }

    /// A pack record as written before [`Timestamp`]: Unix seconds.
    #[test]
    fn pack_records_store_seconds() {
        #[derive(Serialize)]
        struct LegacyPack {
            bytes: u64,
            chunks: u32,
            raw_bytes: u64,
            created_at: i64,
        }
        let old = LegacyPack {
            bytes: 10,
            chunks: 1,
            raw_bytes: 5,
            created_at: 1_700_000_000,
        };
        let bytes = crate::meta::encode(&old).unwrap();
        let rec: PackRecord = ciborium::from_reader(&bytes[..]).unwrap();
        assert_eq!(rec.created_at, Timestamp::from_unix_secs(1_700_000_000));
        assert_eq!(crate::meta::encode(&rec).unwrap(), bytes);
        let now = PackRecord {
            created_at: Timestamp::from_unix_nanos(1_700_000_000_999_999_999),
            ..rec.clone()
        };
        assert_eq!(crate::meta::encode(&now).unwrap(), bytes);
    }

    #[test]
    fn old_artifact_records_still_decode() {
        let old = LegacyArtifact {
            manifest: Digest::of(b"m"),
            size: 3,
            content_type: "text/plain".into(),
            filename: None,
            created_by: "admin".into(),
            created_at_ns: 1,
            blake3: Digest::of(b"abc"),
            sha256: [0; 32],
            grants: vec![],
            expires_at: None,
            dedup: DedupFigures::default(),
        };
        let bytes = crate::meta::encode(&old).unwrap();
        let rec: ArtifactRecord = ciborium::from_reader(&bytes[..]).unwrap();
        assert!(!rec.digest_verified);
        assert_eq!(rec.visible_dedup, None);
        assert_eq!(rec.size, 3);
        assert_eq!(rec.created_by, Principal::Admin);
        assert_eq!(rec.created_at, Timestamp::from_unix_nanos(1));
        assert_eq!(rec.expires_at, None);
        // An expiry in seconds reads as that second; written back, it is
        // nanoseconds under the new key and reads the same.
        let old = LegacyArtifact {
            expires_at: Some(1_700_000_000),
            ..old
        };
        let rec: ArtifactRecord =
            ciborium::from_reader(&crate::meta::encode(&old).unwrap()[..]).unwrap();
        let at = Timestamp::from_unix_secs(1_700_000_000);
        assert_eq!(rec.expires_at, Some(at));
        assert!(rec.expired(at) && !rec.expired(Timestamp::from_unix_secs(1_699_999_999)));
        let again: ArtifactRecord =
            ciborium::from_reader(&crate::meta::encode(&rec).unwrap()[..]).unwrap();
        assert_eq!(again, rec);
    }

    /// Worker and group records as written before [`Timestamp`] and
    /// [`Principal`] fields: RFC 3339 strings and principal strings.
    #[test]
    fn old_registry_records_still_decode() {
        #[derive(Serialize)]
        struct LegacyWorker {
            name: String,
            labels: BTreeMap<String, String>,
            registered_at: String,
            registered_by: String,
            token_hash: [u8; 32],
        }
        let old = LegacyWorker {
            name: "w".into(),
            labels: BTreeMap::new(),
            registered_at: "2026-01-02T03:04:05.678Z".into(),
            registered_by: "admin".into(),
            token_hash: [7; 32],
        };
        let rec: WorkerRecord =
            ciborium::from_reader(&crate::meta::encode(&old).unwrap()[..]).unwrap();
        assert_eq!(rec.registered_at.to_rfc3339(), "2026-01-02T03:04:05.678Z");
        assert_eq!(rec.registered_by, Principal::Admin);
        #[derive(Serialize)]
        struct LegacyGroup {
            name: String,
            members: Vec<String>,
            created_at: String,
            created_by: String,
        }
        let old = LegacyGroup {
            name: "admins".into(),
            members: vec![],
            created_at: "2026-01-02T03:04:05.000Z".into(),
            created_by: "admin".into(),
        };
        let rec: GroupRecord =
            ciborium::from_reader(&crate::meta::encode(&old).unwrap()[..]).unwrap();
        assert_eq!(rec.created_at.to_rfc3339(), "2026-01-02T03:04:05.000Z");
        let back: GroupRecord =
            ciborium::from_reader(&crate::meta::encode(&rec).unwrap()[..]).unwrap();
        assert_eq!(back, rec);
    }
}
