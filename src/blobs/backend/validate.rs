//! Syntax checks of the blob-store settings: bucket, container and prefix
//! names, endpoints (and whether one is on this machine), storage classes.
//! Each failure names the setting to fix.

use super::{SettingError, invalid};

/// Splits `bucket/prefix/…` and normalises the prefix.
pub(super) fn split_bucket(rest: &str, what: &str) -> Result<(String, String), SettingError> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(invalid(
            "blob-store",
            format!("missing {what} name (expected scheme://{what}/optional/prefix)"),
        ));
    }
    let prefix = prefix.trim_matches('/');
    if !prefix.is_empty() && prefix.split('/').any(|seg| matches!(seg, "" | "." | "..")) {
        return Err(invalid(
            "blob-store",
            "the prefix must not contain empty, `.` or `..` segments",
        ));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

pub(super) fn check_bucket_s3(b: &str) -> Result<(), SettingError> {
    let ok_chars = b
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-');
    let ok_ends = b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.ends_with(|c: char| c.is_ascii_alphanumeric());
    if (3..=63).contains(&b.len()) && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(invalid(
            "blob-store",
            "an S3 bucket name is 3-63 lowercase letters, digits, `.` and `-`",
        ))
    }
}

pub(super) fn check_bucket_gcs(b: &str) -> Result<(), SettingError> {
    let ok_chars = b.bytes().all(|c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-' || c == b'_'
    });
    let ok_ends = b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.ends_with(|c: char| c.is_ascii_alphanumeric());
    if (3..=222).contains(&b.len()) && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(invalid(
            "blob-store",
            "a GCS bucket name is 3-222 lowercase letters, digits, `.`, `_` and `-`",
        ))
    }
}

pub(super) fn check_container(c: &str) -> Result<(), SettingError> {
    let ok_chars = c
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        && c.ends_with(|ch: char| ch.is_ascii_alphanumeric());
    if (3..=63).contains(&c.len()) && ok_chars && ok_ends && !c.contains("--") {
        Ok(())
    } else {
        Err(invalid(
            "blob-store",
            "an Azure container name is 3-63 lowercase letters, digits and single `-`",
        ))
    }
}

pub(super) fn check_endpoint(setting: &'static str, e: &str) -> Result<String, SettingError> {
    let e = e.trim().trim_end_matches('/');
    let Some(host) = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"))
    else {
        return Err(invalid(setting, "must start with http:// or https://"));
    };
    if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
        return Err(invalid(
            setting,
            "must be scheme://host[:port] with no user info or query",
        ));
    }
    Ok(e.to_string())
}

pub(super) fn check_s3_storage_class(c: &str) -> Result<String, SettingError> {
    const READABLE: &[&str] = &[
        "STANDARD",
        "REDUCED_REDUNDANCY",
        "STANDARD_IA",
        "ONEZONE_IA",
        "INTELLIGENT_TIERING",
        "GLACIER_IR",
        "OUTPOSTS",
        "EXPRESS_ONEZONE",
    ];
    let c = c.trim().to_ascii_uppercase();
    if READABLE.contains(&c.as_str()) {
        Ok(c)
    } else if matches!(c.as_str(), "GLACIER" | "DEEP_ARCHIVE" | "SNOW") {
        Err(invalid(
            "s3-storage-class",
            format!(
                "{c} objects cannot be read without a restore; use GLACIER_IR or a lifecycle rule instead"
            ),
        ))
    } else {
        Err(invalid(
            "s3-storage-class",
            format!("unknown class; expected one of {}", READABLE.join(", ")),
        ))
    }
}

pub(super) fn check_gcs_storage_class(c: &str) -> Result<String, SettingError> {
    let c = c.trim().to_ascii_uppercase();
    if matches!(c.as_str(), "STANDARD" | "NEARLINE" | "COLDLINE" | "ARCHIVE") {
        Ok(c)
    } else {
        Err(invalid(
            "gcs-storage-class",
            "expected STANDARD, NEARLINE, COLDLINE or ARCHIVE",
        ))
    }
}

/// `host` of `scheme://host[:port][/path]` (brackets kept off an IPv6
/// literal), and the path after it.
fn host_and_path(endpoint: &str) -> (&str, &str) {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(h, _)| h),
        None => authority.split_once(':').map_or(authority, |(h, _)| h),
    };
    (host, path)
}

/// Whether `endpoint` is on this machine: `localhost`, 127.0.0.0/8 or `::1`.
pub(super) fn is_loopback_endpoint(endpoint: &str) -> bool {
    let (host, _) = host_and_path(endpoint);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The storage account an Azure endpoint names: the first label of
/// `ACCOUNT.blob.<cloud suffix>`, or the first path segment of a path-style
/// endpoint (Azurite: `http://127.0.0.1:10000/ACCOUNT`).
pub(super) fn azblob_account_from_endpoint(endpoint: &str) -> Option<String> {
    let (host, path) = host_and_path(endpoint);
    if let Some((account, rest)) = host.split_once('.')
        && rest.starts_with("blob.")
        && host.parse::<std::net::IpAddr>().is_err()
    {
        return Some(account.to_string());
    }
    path.split('/').find(|s| !s.is_empty()).map(str::to_string)
}
