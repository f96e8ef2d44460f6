//! Wire shapes of `/cas/v1/` answers the client reads: upload sessions,
//! chunker parameters, artifacts and listing pages (`docs/api.md`). Unknown
//! fields are ignored so that a newer server stays readable.

use serde::Deserialize;
use serde_json::Value;

use super::{ClientError, Result};
use crate::chunking::{ChunkerParams, FASTCDC_2020};
use crate::hash::Digest;

/// Options of a new upload session.
#[derive(Debug, Default)]
pub struct NewSession<'a> {
    /// The artifact's `Content-Type`.
    pub content_type: Option<&'a str>,
    /// The artifact's filename.
    pub filename: Option<&'a str>,
    /// Expiry as a humantime duration (`7d`).
    pub expires_in: Option<&'a str>,
    /// The artifact's size in bytes: the server refuses a session it could
    /// never commit (over the size cap or the experiment's quota) before
    /// any chunk is sent, and takes no more than this many bytes.
    pub size: Option<u64>,
}

/// Answer to `POST …/uploads`.
#[derive(Debug, Deserialize)]
pub struct SessionCreated {
    /// The session id.
    pub session_id: String,
    /// Chunker the server expects.
    pub chunker: ChunkerWire,
    /// Largest chunk batch body.
    pub max_batch_bytes: u64,
}

/// The chunker as the server describes it.
#[derive(Debug, Deserialize)]
pub struct ChunkerWire {
    /// Algorithm name (`fastcdc-2020`).
    pub algorithm: String,
    /// Smallest chunk.
    pub min_bytes: u32,
    /// Average chunk.
    pub avg_bytes: u32,
    /// Largest chunk.
    pub max_bytes: u32,
    /// Normalization level.
    pub normalization: u8,
}

impl ChunkerWire {
    /// The parameters, if the algorithm is the one this client implements.
    pub fn params(&self) -> Result<ChunkerParams> {
        if self.algorithm != FASTCDC_2020 {
            return Err(ClientError::Protocol(format!(
                "server asks for chunker {:?}; this client only knows {FASTCDC_2020}",
                self.algorithm
            )));
        }
        let p = ChunkerParams {
            min_bytes: self.min_bytes,
            avg_bytes: self.avg_bytes,
            max_bytes: self.max_bytes,
            normalization: self.normalization,
        };
        p.validate()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(p)
    }
}

/// Answer to `GET …/uploads/{S}`.
#[derive(Debug, Deserialize)]
pub struct SessionStatus {
    /// Chunks received so far.
    #[serde(default)]
    pub received_chunks: u64,
    /// Bytes received so far.
    #[serde(default)]
    pub received_bytes: u64,
    /// Ids of the received chunks (hex).
    #[serde(default)]
    pub received: Vec<String>,
}

/// One page of `GET …/artifacts`.
#[derive(Debug)]
pub struct ListPage {
    /// Artifacts, newest first.
    pub artifacts: Vec<Artifact>,
    /// Cursor of the next page, if any.
    pub next_cursor: Option<String>,
}

/// An artifact as the server describes it; `raw` keeps every field for `--json`.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The whole JSON object.
    pub raw: Value,
    /// 32 hex characters.
    pub id: String,
    /// `eden://artifacts/<id>`.
    pub uri: String,
    /// Content length.
    pub size_bytes: u64,
    /// Recorded BLAKE3 of the content.
    pub blake3: Option<Digest>,
}

impl Artifact {
    /// Decodes the `Artifact` shape of `docs/api.md`.
    pub fn from_value(raw: Value) -> Result<Artifact> {
        let id = raw["id"]
            .as_str()
            .ok_or_else(|| ClientError::Protocol("artifact without an id".into()))?
            .to_string();
        let uri = raw["uri"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("eden://artifacts/{id}"));
        let size_bytes = raw["size_bytes"]
            .as_u64()
            .ok_or_else(|| ClientError::Protocol("artifact without size_bytes".into()))?;
        let blake3 = raw["digests"]["blake3"].as_str().and_then(parse_blake3);
        Ok(Artifact {
            raw,
            id,
            uri,
            size_bytes,
            blake3,
        })
    }

    /// A string field of the raw object.
    pub fn str_field(&self, key: &str) -> Option<&str> {
        self.raw[key].as_str()
    }
}

/// Parses `blake3:<64 hex>` or bare hex.
pub fn parse_blake3(s: &str) -> Option<Digest> {
    s.strip_prefix("blake3:").unwrap_or(s).parse().ok()
}
