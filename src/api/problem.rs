//! The problem+json body (RFC 9457) of every error answer.

use serde::{Deserialize, Serialize};

/// `application/problem+json`: `{"type","title","status","detail"[,"instance"]}`
/// (in this order, as RFC 9457 lists them). Every member defaults when
/// decoding, so the client can read what a proxy in between sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The problem type URI (`eden://error/…`, `eden-cas://error/…`, or
    /// `about:blank` for server faults).
    #[serde(rename = "type", default)]
    pub kind: String,
    /// A short fixed phrase per type.
    #[serde(default)]
    pub title: String,
    /// The HTTP status.
    #[serde(default)]
    pub status: u16,
    /// Client-safe explanation.
    #[serde(default)]
    pub detail: String,
    /// The request URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}
