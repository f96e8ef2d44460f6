//! Values stored in RocksDB, CBOR-encoded through serde (ciborium).
//!
//! Every record carries only what the engine needs to answer requests; all of
//! the chunk index can be rebuilt from pack footers (see `pack.rs`) and every
//! manifest is also written to the blob store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::chunking::ChunkerParams;
use crate::hash::Digest;
use crate::pack::Codec;

/// Where a chunk's bytes live. Value of `chunks-v1`, keyed by chunk id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkLocation {
    /// Pack id (ULID, 16 bytes big-endian).
    pub pack: u128,
    /// Offset inside the pack object.
    pub offset: u64,
    /// Stored length.
    pub stored_len: u32,
    /// Raw length.
    pub raw_len: u32,
    /// Codec of the stored bytes.
    pub codec: Codec,
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
    /// Unix seconds when it became durable.
    pub created_at: i64,
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

/// An artifact. Value of `artifacts-v1`, keyed by `experiment \0 ulid`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// Manifest id.
    pub manifest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Content type, verbatim after sanitising.
    pub content_type: String,
    /// Filename given at deposit, if any.
    pub filename: Option<String>,
    /// `admin` or the depositing worker id.
    pub created_by: String,
    /// Unix nanoseconds.
    pub created_at_ns: i64,
    /// BLAKE3 of the content.
    pub blake3: Digest,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// Principals (`wkr_…`, `grp_…`) granted read access explicitly.
    pub grants: Vec<String>,
    /// Unix seconds after which the artifact is no longer served.
    pub expires_at: Option<i64>,
    /// Dedup figures of the deposit that created it.
    pub dedup: DedupFigures,
}

/// A registered worker. Value of `workers-v1`, keyed by `experiment \0 worker`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Display name.
    pub name: String,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 UTC.
    pub registered_at: String,
    /// Always `admin` in v0.
    pub registered_by: String,
    /// Keyed BLAKE3 of the registration token.
    pub token_hash: [u8; 32],
}

/// A group. Value of `groups-v1`, keyed by `experiment \0 group`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// Display name.
    pub name: String,
    /// Member ids (`wkr_…` or `grp_…`), in insertion order.
    pub members: Vec<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// `admin` in v0.
    pub created_by: String,
}
