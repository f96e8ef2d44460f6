//! `Digest`: the 32-byte BLAKE3 name of a chunk, segment, manifest or whole
//! artifact. Displays as lowercase hex; stored as a CBOR byte string.
//!
//! Keeps invariant 1 (byte identity) and 6 (verified reads) honest: every
//! content name in the store is computed here, with one hash function.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of a digest in bytes.
pub const DIGEST_LEN: usize = 32;

/// A BLAKE3 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; DIGEST_LEN]);

impl Digest {
    /// BLAKE3 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; DIGEST_LEN] {
        &self.0
    }

    /// Builds a digest from a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; DIGEST_LEN]>::try_from(bytes).ok().map(Digest)
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex characters, for log lines.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl From<blake3::Hash> for Digest {
    fn from(h: blake3::Hash) -> Self {
        Digest(*h.as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

/// Error for a string that is not 64 hex characters.
#[derive(Debug, thiserror::Error)]
#[error("a digest is 64 hexadecimal characters")]
pub struct ParseDigestError;

impl FromStr for Digest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; DIGEST_LEN];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseDigestError)?;
        Ok(Digest(out))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Digest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("32 bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Digest, E> {
                Digest::from_slice(v).ok_or_else(|| E::invalid_length(v.len(), &self))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Digest, A::Error> {
                let mut out = [0u8; DIGEST_LEN];
                for (i, b) in out.iter_mut().enumerate() {
                    *b = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                Ok(Digest(out))
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_cbor() {
        let d = Digest::of(b"hello");
        assert_eq!(d.to_hex(), blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert!("zz".parse::<Digest>().is_err());
        let mut buf = Vec::new();
        ciborium::into_writer(&d, &mut buf).unwrap();
        assert_eq!(buf.len(), 34, "a byte string, not an array of integers");
        let back: Digest = ciborium::from_reader(&buf[..]).unwrap();
        assert_eq!(back, d);
    }
}
