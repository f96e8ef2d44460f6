//! Typed identifiers of the EDEN v0 contract: experiment, worker and group ids,
//! and the [`Principal`] a bearer authenticates as.
//!
//! Invariant: a value of these types always has the exact wire shape
//! (`exp_`/`wkr_`/`grp_` + 26 lowercase Crockford base32 characters, no `i l o u`);
//! parsing, `FromStr` and serde deserialisation all go through the same check.
//! Minted ids carry 130 bits from the OS CSPRNG.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The lowercase Crockford base32 alphabet of id suffixes (no `i`, `l`, `o`, `u`).
pub const CROCKFORD_LOWER: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Number of base32 characters after the prefix of every id.
pub const ID_SUFFIX_CHARS: usize = 26;

/// A string that is not a well-formed identifier of the expected kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind} id")]
pub struct InvalidId {
    /// What was expected: `experiment`, `worker`, `group`, `principal` or
    /// `member` (a worker or group).
    pub kind: &'static str,
}

const fn is_crockford_lower(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'h' | b'j' | b'k' | b'm' | b'n' | b'p'..=b't' | b'v'..=b'z')
}

fn has_id_shape(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == ID_SUFFIX_CHARS && rest.bytes().all(is_crockford_lower))
}

/// Bytes of every id: a 4-byte prefix and 26 base32 characters.
pub const ID_BYTES: usize = 4 + ID_SUFFIX_CHARS;

/// `prefix` followed by 26 uniformly random base32 characters (5 bits each).
fn mint_with_prefix(prefix: &str) -> [u8; ID_BYTES] {
    let mut bytes = [0u8; ID_SUFFIX_CHARS];
    super::fill_random(&mut bytes);
    let mut id = [0u8; ID_BYTES];
    id[..4].copy_from_slice(prefix.as_bytes());
    // 256 is a multiple of 32, so masking keeps every character equally likely.
    for (out, b) in id[4..].iter_mut().zip(bytes) {
        *out = CROCKFORD_LOWER[usize::from(b & 31)];
    }
    id
}

/// `s` as an id's bytes, if it has the shape of `prefix`.
fn id_bytes(s: &str, prefix: &str) -> Option<[u8; ID_BYTES]> {
    if !has_id_shape(s, prefix) {
        return None;
    }
    let mut out = [0u8; ID_BYTES];
    out.copy_from_slice(s.as_bytes());
    Some(out)
}

/// [`has_id_shape`] for constants: panics (at compile time in a `const`)
/// unless `s` is `prefix` + 26 lowercase Crockford characters.
const fn const_id_bytes(s: &str, prefix: &str) -> [u8; ID_BYTES] {
    let (b, p) = (s.as_bytes(), prefix.as_bytes());
    assert!(b.len() == ID_BYTES && p.len() == 4, "an id is 30 bytes");
    let mut out = [0u8; ID_BYTES];
    let mut i = 0;
    while i < ID_BYTES {
        let c = b[i];
        if i < 4 {
            assert!(c == p[i], "wrong id prefix");
        } else {
            assert!(is_crockford_lower(c), "not lowercase Crockford base32");
        }
        out[i] = c;
        i += 1;
    }
    out
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        ///
        /// `Copy`: the id is its 30 ASCII bytes, held inline.
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name([u8; ID_BYTES]);

        impl $name {
            /// The fixed prefix of every id of this kind.
            pub const PREFIX: &'static str = $prefix;

            /// Parses `s`: exactly the prefix followed by 26 lowercase Crockford
            /// base32 characters, nothing before or after.
            pub fn parse(s: &str) -> Option<Self> {
                id_bytes(s, $prefix).map(Self)
            }

            /// A constant id (tests, fixtures); a malformed one fails to
            /// compile in a `const`, and panics elsewhere.
            pub const fn from_static(s: &'static str) -> Self {
                Self(const_id_bytes(s, $prefix))
            }

            /// Whether `s` has the shape `parse` accepts, without allocating.
            pub fn is_valid(s: &str) -> bool {
                has_id_shape(s, $prefix)
            }

            /// The id as it appears on the wire.
            pub fn as_str(&self) -> &str {
                // Only ASCII is ever stored (see `parse`, `mint`).
                std::str::from_utf8(&self.0).unwrap_or_default()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.as_str())
            }
        }

        // Hashes like its text, as `Borrow<str>` requires (Eq and Ord of
        // the bytes already agree with those of the text).
        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.as_str().hash(state)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::parse(s).ok_or(InvalidId { kind: $kind })
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.as_str().to_owned()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }
    };
}

prefixed_id!(
    /// An experiment id (`exp_…`), minted by EDEN; eden-cas only validates it.
    ExperimentId, "exp_", "experiment"
);
prefixed_id!(
    /// A worker id (`wkr_…`), minted by eden-cas at registration; scoped to one experiment.
    WorkerId, "wkr_", "worker"
);
prefixed_id!(
    /// A group id (`grp_…`), minted by eden-cas at group creation; scoped to one experiment.
    GroupId, "grp_", "group"
);

impl WorkerId {
    /// A fresh, unguessable worker id (130 random bits from the OS CSPRNG).
    pub fn mint() -> Self {
        Self(mint_with_prefix(Self::PREFIX))
    }
}

impl GroupId {
    /// A fresh, unguessable group id (130 random bits from the OS CSPRNG).
    pub fn mint() -> Self {
        Self(mint_with_prefix(Self::PREFIX))
    }
}

/// Who a request acts as: the deployment admin or one registered worker.
///
/// Its text form (`Display`, serde, stored `created_by`) is `admin` or the
/// worker id; records store it in that form and decode it back to this type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Principal {
    /// The holder of the deployment admin token.
    Admin,
    /// A worker registered in the experiment of the request.
    Worker(WorkerId),
}

impl Principal {
    /// The literal text of the admin principal.
    pub const ADMIN: &'static str = "admin";

    /// Parses `admin` or a worker id (e.g. a stored `created_by`); anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        if s == Self::ADMIN {
            Some(Self::Admin)
        } else {
            WorkerId::parse(s).map(Self::Worker)
        }
    }

    /// `admin` or the worker id.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Admin => Self::ADMIN,
            Self::Worker(id) => id.as_str(),
        }
    }

    /// The worker id, unless this is the admin.
    pub fn worker_id(&self) -> Option<&WorkerId> {
        match self {
            Self::Admin => None,
            Self::Worker(id) => Some(id),
        }
    }

    /// Whether this is the deployment admin.
    pub fn is_admin(&self) -> bool {
        matches!(self, Self::Admin)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Principal {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        Self::parse(s).ok_or(InvalidId { kind: "principal" })
    }
}

impl TryFrom<String> for Principal {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, InvalidId> {
        s.parse()
    }
}

impl From<Principal> for String {
    fn from(p: Principal) -> String {
        match p {
            Principal::Admin => Principal::ADMIN.to_owned(),
            Principal::Worker(id) => id.as_str().to_owned(),
        }
    }
}

impl From<WorkerId> for Principal {
    fn from(id: WorkerId) -> Self {
        Self::Worker(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const W: &str = "wkr_0123456789abcdefghjkmnpqrs";

    #[test]
    fn accepts_exact_shapes() {
        assert!(WorkerId::parse(W).is_some());
        assert!(GroupId::parse("grp_rstvwxyz0123456789abcdefgh").is_some());
        assert!(ExperimentId::parse("exp_00000000000000000000000000").is_some());
        assert_eq!(
            WorkerId::parse(W).map(|w| w.to_string()),
            Some(W.to_owned())
        );
    }

    #[test]
    fn rejects_near_misses() {
        for bad in [
            "",
            "wkr_",
            "wkr_0123456789abcdefghjkmnpqr",    // 25 chars
            "wkr_0123456789abcdefghjkmnpqrst",  // 27 chars
            "wkr_0123456789abcdefghjkmnpqri",   // i excluded
            "wkr_0123456789abcdefghjkmnpqrl",   // l excluded
            "wkr_0123456789abcdefghjkmnpqro",   // o excluded
            "wkr_0123456789abcdefghjkmnpqru",   // u excluded
            "wkr_0123456789ABCDEFGHJKMNPQRS",   // uppercase
            "WKR_0123456789abcdefghjkmnpqrs",   // uppercase prefix
            "wkr_0123456789abcdefghjkmnpqrs\n", // trailing newline
            " wkr_0123456789abcdefghjkmnpqrs",
            "grp_0123456789abcdefghjkmnpqrs", // wrong kind
            "wkr_0123456789abcdefghjkmnpqré",
        ] {
            assert!(WorkerId::parse(bad).is_none(), "{bad:?} accepted");
        }
        assert!(GroupId::parse(W).is_none());
        assert!(ExperimentId::parse(W).is_none());
    }

    #[test]
    fn minted_ids_are_valid_and_distinct() {
        let a = WorkerId::mint();
        let b = WorkerId::mint();
        assert!(WorkerId::is_valid(a.as_str()));
        assert_ne!(a, b);
        let g = GroupId::mint();
        assert!(g.as_str().starts_with("grp_") && GroupId::is_valid(g.as_str()));
    }

    #[test]
    fn principal_text_forms() {
        assert_eq!(Principal::parse("admin"), Some(Principal::Admin));
        assert_eq!(Principal::Admin.to_string(), "admin");
        let w = Principal::parse(W);
        assert_eq!(
            w.as_ref()
                .and_then(Principal::worker_id)
                .map(WorkerId::as_str),
            Some(W)
        );
        assert_eq!(w.map(|p| p.to_string()), Some(W.to_owned()));
        for bad in [
            "Admin",
            "ADMIN",
            "",
            "grp_0123456789abcdefghjkmnpqrs",
            "system",
        ] {
            assert!(Principal::parse(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn serde_is_a_plain_validated_string() {
        let w = WorkerId::parse(W);
        assert_eq!(
            w.map(|w| serde_json::to_string(&w).ok()),
            Some(Some(format!("\"{W}\"")))
        );
        assert!(serde_json::from_str::<WorkerId>("\"wkr_nope\"").is_err());
        assert_eq!(
            serde_json::to_string(&Principal::Admin).ok().as_deref(),
            Some("\"admin\"")
        );
        let back: Result<Principal, _> = serde_json::from_str(&format!("\"{W}\""));
        assert_eq!(back.ok().map(|p| p.to_string()), Some(W.to_owned()));
        assert!(serde_json::from_str::<Principal>("\"root\"").is_err());
    }

    proptest! {
        #[test]
        fn any_suffix_from_the_alphabet_parses(idx in prop::collection::vec(0usize..32, 26)) {
            let suffix: String = idx.iter().map(|&i| char::from(CROCKFORD_LOWER[i])).collect();
            let id = format!("grp_{suffix}");
            let parsed = GroupId::parse(&id);
            prop_assert_eq!(parsed.as_ref().map(GroupId::as_str), Some(id.as_str()));
            prop_assert!(WorkerId::parse(&id).is_none());
        }

        #[test]
        fn parse_agrees_with_the_regex(s in "(wkr_)?[0-9a-zA-Z_]{0,28}") {
            let expected = s.len() == 30
                && s.starts_with("wkr_")
                && s[4..].bytes().all(|b| CROCKFORD_LOWER.contains(&b));
            prop_assert_eq!(WorkerId::parse(&s).is_some(), expected);
        }
    }
}
