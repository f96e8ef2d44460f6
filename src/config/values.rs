//! Value types of settings, each readable from a flag or environment
//! variable (`FromStr`) and from the TOML file (`Deserialize`), and written
//! back (`Serialize`, `Display`) in the form an operator types:
//!
//! - [`Size`]: bytes, `123` or `64MiB` (TOML: an integer or a string);
//! - [`Span`]: a humantime duration, `30s`, `6h`, `7d`;
//! - [`PerExperiment`]: one `EXP=VALUE` entry of a per-experiment map
//!   (`[experiment-ttl]`, `[experiment-quota]` in TOML).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Parses `123`, `64KiB`, `100MiB`, `2GiB`, `1GB`, `10kB`.
///
/// # Errors
/// Not a number, an unknown unit, or more than `u64::MAX` bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A size in bytes. Written in the largest binary unit that divides it
/// (`100MiB`), else as a byte count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_size(s).map(Size)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if n != 0 && n.trailing_zeros() >= shift {
                return write!(f, "{}{unit}", n >> shift);
            }
        }
        write!(f, "{n}")
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte count or a size such as \"64MiB\"")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
                Ok(Size(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Size, E> {
                u64::try_from(n)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration in humantime form (`30s`, `6h`, `7d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(Span)
            .map_err(|e| format!("{s:?}: {e} (a duration such as 30s, 6h or 7d)"))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// One entry of a per-experiment map: `EXP=VALUE` on the command line
/// (repeatable, or comma-separated), `EXP = VALUE` in its TOML table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerExperiment<T> {
    /// Experiment id.
    pub experiment: String,
    /// Its value.
    pub value: T,
}

impl<T: FromStr<Err = String>> FromStr for PerExperiment<T> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (exp, value) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not EXPERIMENT=VALUE"))?;
        let experiment = exp.trim();
        if experiment.is_empty() {
            return Err(format!("{s:?} names no experiment"));
        }
        Ok(PerExperiment {
            experiment: experiment.to_string(),
            value: value.parse()?,
        })
    }
}

/// Serde form of a per-experiment setting: a TOML table / JSON object
/// `{ EXP: VALUE }` (later duplicates on the command line win).
pub mod per_experiment {
    use super::*;

    /// Writes the entries as a map.
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn serialize<S: Serializer, T: Serialize>(
        v: &Option<Vec<PerExperiment<T>>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(entries) => s.collect_map(entries.iter().map(|e| (&e.experiment, &e.value))),
        }
    }

    /// Reads a map into entries, in key order.
    ///
    /// # Errors
    /// Not a map, or a value of the wrong type.
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Vec<PerExperiment<T>>>, D::Error> {
        let map = Option::<BTreeMap<String, T>>::deserialize(d)?;
        Ok(map.map(|m| {
            m.into_iter()
                .map(|(experiment, value)| PerExperiment { experiment, value })
                .collect()
        }))
    }
}

/// A fraction between 0 and 1 inclusive (`gc-compact-below`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fraction(pub f64);

impl Fraction {
    fn checked(x: f64) -> Result<Fraction, String> {
        if (0.0..=1.0).contains(&x) {
            Ok(Fraction(x))
        } else {
            Err(format!("{x} is not a fraction between 0 and 1"))
        }
    }
}

impl FromStr for Fraction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let x: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a number"))?;
        Fraction::checked(x)
    }
}

impl fmt::Display for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Fraction::checked(f64::deserialize(d)?).map_err(de::Error::custom)
    }
}
