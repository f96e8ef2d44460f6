//! From records to the wire types of `crate::api::v1` (`docs/api.md`):
//! the `Artifact` object as a given viewer sees it, timestamps, digests,
//! header values, and validation of the client-supplied names, content
//! types (both surfaces) and lifetimes.
//!
//! The `dedup` figures shown are the depositor-visible ones
//! (`ArtifactRecord::visible_dedup`, raw bytes only), never the store-wide
//! ones: those would tell a worker whether someone else already stored the
//! same content (invariant 4). Readers other than the depositor see only the
//! content figures.

use std::time::Duration;

use crate::api::v1::{Artifact, Dedup, Digests};
use crate::auth::{MemberId, Principal};
use crate::clock::Timestamp;
use crate::http::problem::ApiError;
use crate::ids::ArtifactId;
use crate::meta::records::{ArtifactRecord, VisibleDedup};

/// Longest filename accepted, in bytes.
pub const MAX_FILENAME_BYTES: usize = 255;
/// Longest artifact lifetime accepted (100 years).
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Keeps visible ASCII and spaces, then trims; empty → `application/octet-stream`.
pub fn sanitize_content_type(raw: Option<&[u8]>) -> String {
    let kept: String = raw
        .unwrap_or_default()
        .iter()
        .filter(|b| (0x20..=0x7e).contains(*b))
        .map(|&b| b as char)
        .collect();
    let trimmed = kept.trim();
    if trimmed.is_empty() {
        "application/octet-stream".to_string()
    } else {
        trimmed.to_string()
    }
}

/// A filename: 1..=255 bytes of visible ASCII or spaces (400 otherwise).
pub fn check_filename(name: &str) -> Result<String, ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_FILENAME_BYTES
        && name.bytes().all(|b| (0x20..=0x7e).contains(&b));
    if ok {
        Ok(name.to_string())
    } else {
        Err(ApiError::bad_request(format!(
            "a filename is 1 to {MAX_FILENAME_BYTES} bytes of visible ASCII"
        )))
    }
}

/// A humantime lifetime (`7d`, `12h`), positive and at most 100 years.
pub fn parse_ttl(s: &str) -> Result<Duration, ApiError> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| ApiError::bad_request(format!("expires_in {s:?}: {e}")))?;
    if d.is_zero() || d > MAX_TTL {
        return Err(ApiError::bad_request(
            "expires_in must be positive and at most 100 years",
        ));
    }
    Ok(d)
}

/// The `Dedup` object. Its `new_*` figures are relative to what the
/// *depositor* could read at commit time, so only the depositor and the
/// deployment admin see them; any other reader gets the content figures
/// alone, which depend on the bytes only (invariant 4).
fn dedup_view(rec: &ArtifactRecord, viewer: &Principal) -> Dedup {
    if !viewer.is_admin() && *viewer != rec.created_by {
        return Dedup {
            chunks: rec.dedup.chunks,
            logical_bytes: rec.size,
            new_chunks: None,
            new_raw_bytes: None,
        };
    }
    // Records older than /cas/v1/ have no visible figures: report content
    // only, nothing about what the store already held.
    let f = rec.visible_dedup.unwrap_or(VisibleDedup {
        logical_bytes: rec.size,
        chunks: rec.dedup.chunks,
        ..VisibleDedup::default()
    });
    Dedup {
        chunks: f.chunks,
        logical_bytes: f.logical_bytes,
        new_chunks: Some(f.new_chunks),
        new_raw_bytes: Some(f.new_raw_bytes),
    }
}

/// The `Artifact` object as `viewer` sees it.
pub fn artifact_view(id: &ArtifactId, rec: &ArtifactRecord, viewer: &Principal) -> Artifact {
    Artifact {
        chunks: rec.dedup.chunks,
        content_type: rec.content_type.clone(),
        created_at: rec.created_at.to_rfc3339(),
        created_by: rec.created_by.to_string(),
        dedup: dedup_view(rec, viewer),
        digest_verified: rec.digest_verified,
        digests: Digests {
            blake3: format!("blake3:{}", rec.blake3.to_hex()),
            sha256: format!("sha256:{}", hex::encode(rec.sha256)),
        },
        expires_at: rec.expires_at.map(Timestamp::to_rfc3339),
        filename: rec.filename.clone(),
        grants: rec.grants.iter().map(MemberId::to_string).collect(),
        id: id.to_string(),
        labels: rec.labels.clone(),
        size_bytes: rec.size,
        uri: id.uri(),
    }
}

/// Standard base64 with padding (RFC 4648 §4), for `Repr-Digest`.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (raw, enc) in cases {
            assert_eq!(base64(raw.as_bytes()), enc, "{raw:?}");
        }
        // SHA-256 of the empty string, as RFC 9530's examples write it.
        let sha = hex::decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            .unwrap();
        assert_eq!(base64(&sha), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    }

    #[test]
    fn names_and_lifetimes_are_checked() {
        assert!(check_filename("ckpt 1.tar").is_ok());
        assert!(check_filename("").is_err());
        assert!(check_filename("a\u{e9}").is_err());
        assert!(check_filename(&"x".repeat(256)).is_err());
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("soon").is_err());
        assert_eq!(
            sanitize_content_type(Some(b" text/plain\x01 ")),
            "text/plain"
        );
        assert_eq!(sanitize_content_type(None), "application/octet-stream");
    }
}
