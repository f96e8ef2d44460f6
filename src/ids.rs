//! Identifiers of stored things, one type per kind, so an artifact id can
//! never be passed where a session or pack id is expected.
//!
//! - [`ArtifactId`] and [`SessionId`]: 16 bytes, ULID-shaped (48 bits of
//!   milliseconds, then 80 bits from the OS CSPRNG), written as 32
//!   lowercase hex characters on the wire and in keys' text forms.
//! - [`PackId`]: a ULID (`packs/<xx>/<ULID>.pack`), stored as its 128-bit
//!   value.
//!
//! Every text form parses through one function per kind; serde uses the
//! text form for the hex ids and the integer for pack ids, as records
//! stored them before these types existed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A string that is not an id of the expected kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind} id")]
pub struct InvalidStoreId {
    /// `artifact`, `session` or `pack`.
    pub kind: &'static str,
}

/// A ULID-shaped id minted at `now_ms`: 48 bits of milliseconds, then 80
/// random bits.
fn mint_ulid_bytes(now_ms: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&now_ms.to_be_bytes()[2..]);
    crate::auth::fill_random(&mut id[6..]);
    id
}

/// 32 lowercase hex characters → 16 bytes.
fn parse_hex16(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 16];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

macro_rules! hex16_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name([u8; 16]);

        impl $name {
            /// A fresh id for `now` (time prefix, 80 random bits).
            pub fn mint(now: crate::clock::Timestamp) -> Self {
                Self(mint_ulid_bytes(now.unix_millis()))
            }

            /// The id with these 16 bytes (as stored in keys).
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(bytes)
            }

            /// The 16 bytes (as stored in keys).
            pub const fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }

            /// Parses 32 lowercase hex characters.
            pub fn parse(s: &str) -> Option<Self> {
                parse_hex16(s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = InvalidStoreId;
            fn from_str(s: &str) -> Result<Self, InvalidStoreId> {
                Self::parse(s).ok_or(InvalidStoreId { kind: $kind })
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidStoreId;
            fn try_from(s: String) -> Result<Self, InvalidStoreId> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }
    };
}

hex16_id!(
    /// An artifact id, minted per deposit (`eden://artifacts/<id>`).
    ArtifactId, "artifact"
);
hex16_id!(
    /// An upload session id.
    SessionId, "session"
);

impl ArtifactId {
    /// `eden://artifacts/<id>`.
    pub fn uri(&self) -> String {
        crate::api::artifact_uri(&self.to_string())
    }
}

/// A pack id: the ULID of its key (`packs/<xx>/<ULID>.pack`), stored as a
/// 128-bit integer in records (`#[serde(transparent)]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PackId(
    /// The ULID's 128-bit value: every value is a valid pack id.
    pub u128,
);

impl PackId {
    /// A fresh pack id (ULID: time prefix and random bits).
    pub fn mint() -> Self {
        Self(ulid::Ulid::new().0)
    }

    /// The id of this 128-bit value.
    pub const fn from_u128(v: u128) -> Self {
        Self(v)
    }

    /// The 128-bit value (as stored in keys and records).
    pub const fn as_u128(self) -> u128 {
        self.0
    }

    /// The id as a ULID.
    pub const fn ulid(self) -> ulid::Ulid {
        ulid::Ulid(self.0)
    }

    /// When the id was minted (the ULID's millisecond prefix).
    pub fn minted_at(self) -> crate::clock::Timestamp {
        let ms = i64::try_from(self.ulid().timestamp_ms()).unwrap_or(i64::MAX);
        crate::clock::Timestamp::from_unix_nanos(ms.saturating_mul(1_000_000))
    }

    /// Parses the Crockford base32 ULID of a pack key.
    pub fn parse(s: &str) -> Option<Self> {
        ulid::Ulid::from_string(s).ok().map(|u| Self(u.0))
    }
}

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.ulid(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;

    #[test]
    fn hex_ids_round_trip_and_stay_apart() {
        let a = ArtifactId::mint(Timestamp::now());
        let text = a.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(ArtifactId::parse(&text), Some(a));
        assert_eq!(
            text.parse::<SessionId>().map(|s| *s.as_bytes()),
            Ok(*a.as_bytes())
        );
        assert!(ArtifactId::parse(&text.to_uppercase()).is_none());
        assert!(ArtifactId::parse("abc").is_none());
        assert_ne!(ArtifactId::mint(Timestamp::now()), a);
        assert_eq!(a.uri(), format!("eden://artifacts/{text}"));
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, format!("\"{text}\""));
    }

    #[test]
    fn minted_ids_start_with_the_time() {
        let t = Timestamp::from_unix_nanos(1_700_000_000_123_000_000);
        let id = SessionId::mint(t);
        let mut ms = [0u8; 8];
        ms[2..].copy_from_slice(&id.as_bytes()[..6]);
        assert_eq!(u64::from_be_bytes(ms), 1_700_000_000_123);
    }

    #[test]
    fn pack_ids_are_ulids_stored_as_integers() {
        let p = PackId::mint();
        assert_eq!(PackId::parse(&p.to_string()), Some(p));
        let bytes = crate::meta::encode(&p).unwrap();
        assert_eq!(bytes, crate::meta::encode(&p.as_u128()).unwrap());
    }
}
