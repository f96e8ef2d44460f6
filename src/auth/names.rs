//! Display-name rules for workers and groups (EDEN 07 §6): what a valid name is,
//! and which names are reserved.
//!
//! Invariant: [`validate_name`] checks validity before reservation, so a name
//! that is both malformed and reserved-looking reports [`NameError::Invalid`]
//! (422) rather than [`NameError::Reserved`] (409). Names are never normalised
//! here: a name that is not already NFC is rejected, so what is stored is
//! exactly what the client sent.

use unicode_general_category::{GeneralCategory, get_general_category};
use unicode_normalization::is_nfc;

/// Most Unicode code points a name may have.
pub const MAX_NAME_CHARS: usize = 128;

/// Names no worker or group may take (exact, case-sensitive).
pub const RESERVED_NAMES: [&str; 3] = ["admin", "system", "internal"];

/// Group names that only the first group created with them may take, per experiment.
pub const RESERVED_GROUP_NAMES: [&str; 2] = ["admins", "orchestrators"];

/// Why a name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name breaks a syntax rule (422 `invalid-name`); the reason is a fixed phrase.
    #[error("invalid name: {0}")]
    Invalid(&'static str),
    /// The name is one of [`RESERVED_NAMES`] (409 `reserved-identifier`).
    #[error("reserved name")]
    Reserved,
}

/// Checks a worker or group display name.
///
/// Valid: 1 to 128 code points, already in NFC, no control (Cc), surrogate
/// (Cs), unassigned (Cn, which includes noncharacters) or private-use (Co) code
/// points, and no whitespace at either end. Then `admin`, `system` and
/// `internal` are [`NameError::Reserved`].
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Invalid("must not be empty"));
    }
    if name.chars().nth(MAX_NAME_CHARS).is_some() {
        return Err(NameError::Invalid("longer than 128 code points"));
    }
    for c in name.chars() {
        let reason = match get_general_category(c) {
            GeneralCategory::Control => "contains a control character",
            // Unreachable from a `&str`, kept so the rule reads like the contract.
            GeneralCategory::Surrogate => "contains a surrogate code point",
            GeneralCategory::Unassigned => "contains an unassigned code point",
            GeneralCategory::PrivateUse => "contains a private-use code point",
            _ => continue,
        };
        return Err(NameError::Invalid(reason));
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Err(NameError::Invalid("leading or trailing whitespace"));
    }
    if !is_nfc(name) {
        return Err(NameError::Invalid("not in Unicode normalization form C"));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(NameError::Reserved);
    }
    Ok(())
}

/// Whether `name` is `admins` or `orchestrators` (exact, case-sensitive).
pub fn is_reserved_group_name(name: &str) -> bool {
    RESERVED_GROUP_NAMES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn invalid(name: &str) -> bool {
        matches!(validate_name(name), Err(NameError::Invalid(_)))
    }

    #[test]
    fn ordinary_names_pass() {
        for ok in [
            "a",
            "trainer-1",
            "évaluateur",
            "学习者",
            "a b",
            "Admin",
            "ADMIN",
            "admins",
            "🙂",
        ] {
            assert_eq!(validate_name(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn length_is_counted_in_code_points() {
        assert!(invalid(""));
        let max = "é".repeat(MAX_NAME_CHARS); // 256 bytes, 128 code points
        assert_eq!(validate_name(&max), Ok(()));
        assert!(invalid(&"é".repeat(MAX_NAME_CHARS + 1)));
        assert_eq!(validate_name(&"x".repeat(128)), Ok(()));
        assert!(invalid(&"x".repeat(129)));
    }

    #[test]
    fn nfd_is_rejected_nfc_accepted() {
        assert!(invalid("e\u{301}"));
        assert_eq!(validate_name("\u{e9}"), Ok(()));
        // A singleton decomposition: U+212B ANGSTROM SIGN normalises to U+00C5.
        assert!(invalid("\u{212b}"));
    }

    #[test]
    fn forbidden_categories() {
        assert!(invalid("a\u{0}b"));
        assert!(invalid("a\u{7f}"));
        assert!(invalid("tab\there"));
        assert!(invalid("\u{e000}"), "private use");
        assert!(invalid("x\u{f0000}"), "supplementary private use");
        assert!(invalid("a\u{378}"), "unassigned");
        assert!(invalid("a\u{ffff}"), "noncharacter");
    }

    #[test]
    fn whitespace_only_matters_at_the_ends() {
        assert!(invalid(" a"));
        assert!(invalid("a "));
        assert!(invalid("\u{3000}a"), "ideographic space");
        assert!(invalid("a\u{a0}"), "no-break space");
        assert!(invalid(" "));
        assert_eq!(validate_name("a\u{3000}b"), Ok(()));
    }

    #[test]
    fn reserved_names_are_exact() {
        for r in RESERVED_NAMES {
            assert_eq!(validate_name(r), Err(NameError::Reserved));
        }
        assert_eq!(validate_name("Admin"), Ok(()));
        assert_eq!(validate_name("admin2"), Ok(()));
        assert!(invalid(" admin"), "invalid wins over reserved");
        assert!(is_reserved_group_name("admins"));
        assert!(is_reserved_group_name("orchestrators"));
        assert!(!is_reserved_group_name("Admins"));
        assert!(!is_reserved_group_name("admin"));
    }

    #[test]
    fn error_text_is_fixed() {
        assert_eq!(NameError::Reserved.to_string(), "reserved name");
        assert_eq!(
            validate_name("").map_err(|e| e.to_string()),
            Err("invalid name: must not be empty".to_owned())
        );
    }

    proptest! {
        #[test]
        fn accepted_names_satisfy_every_rule(name in any::<String>()) {
            if validate_name(&name).is_ok() {
                let n = name.chars().count();
                prop_assert!((1..=MAX_NAME_CHARS).contains(&n));
                prop_assert!(is_nfc(&name));
                prop_assert!(!name.starts_with(char::is_whitespace));
                prop_assert!(!name.ends_with(char::is_whitespace));
                prop_assert!(!name.chars().any(char::is_control));
                prop_assert!(!RESERVED_NAMES.contains(&name.as_str()));
            }
        }

        #[test]
        fn printable_ascii_names_pass(name in "[!-~]([ -~]{0,126}[!-~])?") {
            let expected = if RESERVED_NAMES.contains(&name.as_str()) { Err(NameError::Reserved) } else { Ok(()) };
            prop_assert_eq!(validate_name(&name), expected);
        }
    }
}
