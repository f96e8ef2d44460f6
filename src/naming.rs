//! Names users choose: reference names (`runs/r17/latest`) and artifact
//! labels (`stage=eval`). Pure validation, no I/O; the documented rules are
//! in `docs/api.md` ("References", "Labels").
//!
//! Keys are built from these names (`experiment \0 name`), so a name never
//! holds a NUL byte, and every accepted name is also a valid URL path and
//! header value without escaping.

use std::collections::BTreeMap;
use std::fmt;

/// Longest reference name, in bytes.
pub const MAX_REF_NAME_BYTES: usize = 200;
/// Most labels on one artifact.
pub const MAX_LABELS: usize = 32;
/// Longest label key, in bytes.
pub const MAX_LABEL_KEY_BYTES: usize = 63;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 128;

/// A validated reference name: 1–200 bytes of segments separated by `/`;
/// each segment is 1 or more of `A–Z a–z 0–9 . _ -`, and is neither `.` nor
/// `..`. So no leading, trailing or doubled `/`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RefName(String);

impl RefName {
    /// Parses a name; the error says which rule it broke (client-safe).
    ///
    /// # Errors
    /// A static reason when `s` is not a valid reference name.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.is_empty() {
            return Err("a reference name is not empty");
        }
        if s.len() > MAX_REF_NAME_BYTES {
            return Err("a reference name is at most 200 bytes");
        }
        for seg in s.split('/') {
            if seg.is_empty() {
                return Err(
                    "a reference name has no empty segment (no leading, trailing or double /)",
                );
            }
            if seg == "." || seg == ".." {
                return Err("a reference name has no . or .. segment");
            }
            if !seg.bytes().all(is_name_byte) {
                return Err("a reference name holds only A-Z a-z 0-9 . _ - and /");
            }
        }
        Ok(RefName(s.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `prefix` (any string) starts this name.
    pub fn starts_with(&self, prefix: &str) -> bool {
        self.0.starts_with(prefix)
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Checks a label key: 1–63 bytes of `a–z 0–9 . _ - /`, starting with a
/// letter or digit.
///
/// # Errors
/// A static reason (client-safe).
pub fn check_label_key(k: &str) -> Result<(), &'static str> {
    let ok_start = k
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ok_start || k.len() > MAX_LABEL_KEY_BYTES {
        return Err("a label key is 1-63 bytes and starts with a-z or 0-9");
    }
    if !k.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b'/')
    }) {
        return Err("a label key holds only a-z 0-9 . _ - /");
    }
    Ok(())
}

/// Checks a label value: 0–128 bytes of `A–Z a–z 0–9 . _ - / : @ +`.
///
/// # Errors
/// A static reason (client-safe).
pub fn check_label_value(v: &str) -> Result<(), &'static str> {
    if v.len() > MAX_LABEL_VALUE_BYTES {
        return Err("a label value is at most 128 bytes");
    }
    if !v
        .bytes()
        .all(|b| is_name_byte(b) || matches!(b, b'/' | b':' | b'@' | b'+'))
    {
        return Err("a label value holds only A-Z a-z 0-9 . _ - / : @ +");
    }
    Ok(())
}

/// Parses one `key=value` label.
///
/// # Errors
/// A static reason (client-safe).
pub fn parse_label(s: &str) -> Result<(String, String), &'static str> {
    let (k, v) = s.split_once('=').ok_or("a label is key=value")?;
    check_label_key(k)?;
    check_label_value(v)?;
    Ok((k.to_string(), v.to_string()))
}

/// Checks a whole label set (each key and value, and the count).
///
/// # Errors
/// A static reason (client-safe).
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), &'static str> {
    if labels.len() > MAX_LABELS {
        return Err("an artifact has at most 32 labels");
    }
    for (k, v) in labels {
        check_label_key(k)?;
        check_label_value(v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_names() {
        for ok in [
            "a",
            "runs/r17/latest",
            "A.b_c-d/0",
            "x..y",
            &"a".repeat(200),
        ] {
            assert!(RefName::parse(ok).is_ok(), "{ok:?} refused");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            ".",
            "a/../b",
            "a/./b",
            "a b",
            "a\0b",
            "a%2Fb",
            "é",
            &"a".repeat(201),
        ] {
            assert!(RefName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn labels() {
        assert_eq!(
            parse_label("stage=eval"),
            Ok(("stage".into(), "eval".into()))
        );
        assert_eq!(parse_label("k="), Ok(("k".into(), String::new())));
        assert_eq!(
            parse_label("team/x=a:b@c+d"),
            Ok(("team/x".into(), "a:b@c+d".into()))
        );
        for bad in ["stage", "=v", "Stage=v", "-a=v", "a=v v", "a=v,w", "a=\n"] {
            assert!(parse_label(bad).is_err(), "{bad:?} accepted");
        }
        let many: BTreeMap<String, String> =
            (0..33).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(check_labels(&many).is_err());
    }
}
