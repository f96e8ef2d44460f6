//! What the client makes of `/cas/v1/` answers: the shapes themselves are
//! the shared types of `crate::api::v1` (unknown fields are ignored, so a
//! newer server stays readable); here are the chunker
//! check and the artifact wrapper the commands print from.

use serde_json::Value;

use super::{ClientError, Result};
use crate::api::v1 as api;
use crate::chunking::{ChunkerParams, FASTCDC_2020};
use crate::hash::Digest;

/// The parameters of a session's chunker, if its algorithm is the one
/// this client implements.
///
/// # Errors
/// `Protocol` for another algorithm or parameters that do not validate.
pub fn chunker_params(c: &api::Chunker) -> Result<ChunkerParams> {
    if c.algorithm != FASTCDC_2020 {
        return Err(ClientError::Protocol(format!(
            "server asks for chunker {:?}; this client only knows {FASTCDC_2020}",
            c.algorithm
        )));
    }
    let p = ChunkerParams {
        min_bytes: c.min_bytes,
        avg_bytes: c.avg_bytes,
        max_bytes: c.max_bytes,
        normalization: c.normalization,
    };
    p.validate()
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    Ok(p)
}

/// One page of `GET …/artifacts`.
#[derive(Debug)]
pub struct ListPage {
    /// Artifacts, newest first.
    pub artifacts: Vec<Artifact>,
    /// Cursor of the next page, if any.
    pub next_cursor: Option<String>,
}

/// An artifact as the server describes it: the typed [`api::Artifact`]
/// (reached through `Deref`), the parsed BLAKE3, and the object as it
/// came (`--json` prints it whole, fields of a newer server included).
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The whole JSON object.
    pub raw: Value,
    /// The decoded object.
    pub meta: api::Artifact,
    /// Recorded BLAKE3 of the content, if its `digests.blake3` parses.
    pub blake3: Option<Digest>,
}

impl std::ops::Deref for Artifact {
    type Target = api::Artifact;

    fn deref(&self) -> &api::Artifact {
        &self.meta
    }
}

impl Artifact {
    /// Decodes the `Artifact` shape of `docs/api.md`.
    ///
    /// # Errors
    /// `Protocol` when `raw` is not that shape.
    pub fn from_value(raw: Value) -> Result<Artifact> {
        let meta: api::Artifact = serde_json::from_value(raw.clone())
            .map_err(|e| ClientError::Protocol(format!("not an artifact: {e}")))?;
        let blake3 = parse_blake3(&meta.digests.blake3);
        Ok(Artifact { raw, meta, blake3 })
    }
}

/// Parses `blake3:<64 hex>` or bare hex.
pub fn parse_blake3(s: &str) -> Option<Digest> {
    s.strip_prefix("blake3:").unwrap_or(s).parse().ok()
}
