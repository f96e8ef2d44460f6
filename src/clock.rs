//! One time type and one clock: [`Timestamp`] (Unix nanoseconds, UTC) is
//! what every record stores and every answer renders, and
//! [`Timestamp::now`] is the only place the store reads the system clock.
//!
//! Stored form: a CBOR integer of Unix nanoseconds. Records written before
//! this type held RFC 3339 strings (worker and group records) or Unix
//! seconds under other keys (an artifact's expiry, see `meta::records`);
//! decoding accepts the strings wherever a `Timestamp` is read, so old
//! records still decode. Wire form: RFC 3339 UTC with milliseconds and `Z`
//! (`2026-01-02T03:04:05.678Z`), the shape `eden-v0-contract.md` asks for.
//! Two records have always stored whole Unix seconds (pack records, scrub
//! stamps); they keep that encoding through [`unix_secs`], converted to and
//! from a `Timestamp` at the record boundary.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// A point in time: Unix nanoseconds, UTC (±292 years around 1970).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);

    /// Now, from the system clock (the epoch if the clock is before it).
    pub fn now() -> Timestamp {
        SystemTime::now().into()
    }

    /// From Unix nanoseconds.
    pub const fn from_unix_nanos(ns: i64) -> Timestamp {
        Timestamp(ns)
    }

    /// From whole Unix seconds (saturating).
    pub const fn from_unix_secs(s: i64) -> Timestamp {
        Timestamp(s.saturating_mul(NANOS_PER_SEC))
    }

    /// Unix nanoseconds.
    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// Whole Unix seconds (rounded down).
    pub const fn unix_secs(self) -> i64 {
        self.0.div_euclid(NANOS_PER_SEC)
    }

    /// Unix milliseconds (rounded down; 0 before the epoch).
    pub fn unix_millis(self) -> u64 {
        u64::try_from(self.0.div_euclid(1_000_000)).unwrap_or(0)
    }

    /// This time truncated to whole seconds.
    pub const fn whole_secs(self) -> Timestamp {
        Timestamp::from_unix_secs(self.unix_secs())
    }

    /// `d` later (saturating).
    pub fn plus(self, d: Duration) -> Timestamp {
        let ns = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ns))
    }

    /// How long after `earlier` this is (zero if it is not later).
    pub fn since(self, earlier: Timestamp) -> Duration {
        let ns = self.0.saturating_sub(earlier.0);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
    }

    /// RFC 3339 UTC with milliseconds and `Z`, as both wire surfaces write
    /// times.
    pub fn to_rfc3339(self) -> String {
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0))
            .ok()
            .and_then(|t| t.format(&fmt).ok())
            .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into())
    }

    /// Parses RFC 3339 (any offset, any sub-second precision).
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let t =
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
        i64::try_from(t.unix_timestamp_nanos()).ok().map(Timestamp)
    }
}

/// A system time as a timestamp (the epoch for times before it).
impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
    }
}

/// The system time of a timestamp (the epoch for times before it).
impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(u64::try_from(t.0).unwrap_or(0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Stored as an integer of Unix nanoseconds.
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

/// Reads Unix nanoseconds, or an RFC 3339 string (records written before
/// this type).
impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("Unix nanoseconds or an RFC 3339 time")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp)
                    .map_err(|_| E::custom("time out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v).ok_or_else(|| E::custom("not an RFC 3339 time"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Serde for records that store a [`Timestamp`] as whole Unix seconds (an
/// `i64`), the encoding they had before this type: pack records and scrub
/// stamps. `#[serde(with = "crate::clock::unix_secs")]`; writing drops the
/// sub-second part, so the stored bytes are what they always were.
pub mod unix_secs {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes whole Unix seconds.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(t.unix_secs())
    }

    /// Reads whole Unix seconds.
    ///
    /// # Errors
    /// The deserializer's, for a value that is not an integer.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        i64::deserialize(d).map(Timestamp::from_unix_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses_rfc3339() {
        let t = Timestamp::from_unix_nanos(1_767_225_600_123_456_789);
        assert_eq!(t.to_rfc3339(), "2026-01-01T00:00:00.123Z");
        assert_eq!(
            Timestamp::UNIX_EPOCH.to_rfc3339(),
            "1970-01-01T00:00:00.000Z"
        );
        let back = Timestamp::parse_rfc3339("2026-01-01T00:00:00.123Z").unwrap();
        assert_eq!(back.to_rfc3339(), "2026-01-01T00:00:00.123Z");
        assert_eq!(t.whole_secs().unix_secs(), t.unix_secs());
        assert_eq!(t.whole_secs().to_rfc3339(), "2026-01-01T00:00:00.000Z");
        assert!(Timestamp::parse_rfc3339("yesterday").is_none());
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_unix_secs(10);
        assert_eq!(t.plus(Duration::from_secs(5)).unix_secs(), 15);
        assert_eq!(
            t.since(Timestamp::from_unix_secs(4)),
            Duration::from_secs(6)
        );
        assert_eq!(Timestamp::from_unix_secs(4).since(t), Duration::ZERO);
        assert_eq!(
            Timestamp::from_unix_nanos(i64::MAX).plus(Duration::MAX),
            Timestamp::from_unix_nanos(i64::MAX)
        );
        assert_eq!(Timestamp::from_unix_secs(-1).unix_millis(), 0);
    }

    #[test]
    fn stored_as_nanos_and_old_strings_decode() {
        let t = Timestamp::from_unix_nanos(42);
        let bytes = crate::meta::encode(&t).unwrap();
        let back: Timestamp = ciborium::from_reader(&bytes[..]).unwrap();
        assert_eq!(back, t);
        let old = crate::meta::encode(&"2026-01-01T00:00:00.123Z").unwrap();
        let back: Timestamp = ciborium::from_reader(&old[..]).unwrap();
        assert_eq!(back.to_rfc3339(), "2026-01-01T00:00:00.123Z");
    }
}
