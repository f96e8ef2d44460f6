//! The commit body (`{"chunks": [[id, len], …], "blake3", "content_type",
//! "filename"}`) parsed as it streams in: a blocking task runs serde_json
//! over the bytes the handler forwards, and hands the chunk list to the
//! engine's [`CommitCheck`] in groups of [`GROUP`] entries. Neither the
//! body nor the list is ever held whole, so a commit's memory is bounded
//! whatever the client sends (invariant 8).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use bytes::{Buf, Bytes};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use tokio::sync::mpsc;

use crate::engine::EngineError;
use crate::engine::refs::RefUpdate;
use crate::engine::uploads::{CommitCheck, CommitTrailer};
use crate::hash::Digest;
use crate::http::problem::ApiError;
use crate::meta::records::ManifestEntry;
use crate::naming::RefName;

/// Entries handed to the engine at a time.
const GROUP: usize = 4096;

/// A `Read` over the byte pieces the async handler sends; EOF when the
/// sender is dropped.
pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl ChannelReader {
    /// Reads what `rx` delivers.
    pub fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        ChannelReader {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

/// Why a commit body was refused.
#[derive(Debug)]
pub enum ParseError {
    /// Not the expected JSON (client-safe message).
    Body(String),
    /// The engine refused the list (too large, store failure).
    Engine(EngineError),
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::Body(m) => {
                ApiError::bad_request(format!("request body is not the expected JSON: {m}"))
            }
            ParseError::Engine(e) => e.into(),
        }
    }
}

/// Parses a commit body from `reader`, feeding the list to `check`.
/// Blocking: run it off the async executor.
///
/// # Errors
/// [`ParseError::Body`] for malformed JSON, a malformed id, a zero length,
/// an unknown or repeated field; [`ParseError::Engine`] when `check`
/// refuses the list.
pub fn parse(
    reader: impl Read,
    mut check: CommitCheck,
) -> Result<(CommitCheck, CommitTrailer), ParseError> {
    let mut engine_error = None;
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
    let seed = BodySeed {
        check: &mut check,
        engine_error: &mut engine_error,
    };
    let parsed = seed.deserialize(&mut de).and_then(|t| de.end().map(|()| t));
    if let Some(e) = engine_error {
        return Err(ParseError::Engine(e));
    }
    let trailer = parsed.map_err(|e| ParseError::Body(e.to_string()))?;
    Ok((check, trailer))
}

/// A chunk id as the API writes it (64 lowercase hex).
fn parse_digest(s: &str) -> Option<Digest> {
    if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    s.parse().ok()
}

struct BodySeed<'a> {
    check: &'a mut CommitCheck,
    engine_error: &'a mut Option<EngineError>,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = CommitTrailer;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = CommitTrailer;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with chunks and blake3")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut chunks, mut blake3, mut content_type, mut filename) = (false, None, None, None);
        let (mut labels, mut reference) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            let repeated = || de::Error::custom(format!("duplicate field `{key}`"));
            match key.as_str() {
                "chunks" => {
                    if chunks {
                        return Err(repeated());
                    }
                    chunks = true;
                    map.next_value_seed(ListSeed {
                        check: &mut *self.check,
                        engine_error: &mut *self.engine_error,
                    })?;
                }
                "blake3" => {
                    if blake3.is_some() {
                        return Err(repeated());
                    }
                    let v: String = map.next_value()?;
                    let d = v
                        .strip_prefix("blake3:")
                        .and_then(parse_digest)
                        .ok_or_else(|| de::Error::custom("blake3 must be \"blake3:<64 hex>\""))?;
                    blake3 = Some(d);
                }
                "content_type" => {
                    if content_type.is_some() {
                        return Err(repeated());
                    }
                    content_type = Some(map.next_value::<Option<String>>()?);
                }
                "filename" => {
                    if filename.is_some() {
                        return Err(repeated());
                    }
                    filename = Some(map.next_value::<Option<String>>()?);
                }
                "labels" => {
                    if labels.is_some() {
                        return Err(repeated());
                    }
                    let l: BTreeMap<String, String> = map.next_value()?;
                    crate::naming::check_labels(&l).map_err(<A::Error as de::Error>::custom)?;
                    labels = Some(l);
                }
                "ref" => {
                    if reference.is_some() {
                        return Err(repeated());
                    }
                    let r: CommitRef = map.next_value()?;
                    reference = Some(r.update().map_err(<A::Error as de::Error>::custom)?);
                }
                other => {
                    return Err(de::Error::unknown_field(
                        other,
                        &[
                            "chunks",
                            "blake3",
                            "content_type",
                            "filename",
                            "labels",
                            "ref",
                        ],
                    ));
                }
            }
        }
        if !chunks {
            return Err(de::Error::missing_field("chunks"));
        }
        Ok(CommitTrailer {
            blake3: blake3.ok_or_else(|| de::Error::missing_field("blake3"))?,
            content_type: content_type.flatten(),
            filename: filename.flatten(),
            labels: labels.unwrap_or_default(),
            reference,
        })
    }
}

/// The `ref` member of a commit body: a reference set to the new artifact
/// in the same commit. One of `if_match` (the current target's id, or `*`)
/// and `if_none_match` (`*`: create only) is required.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitRef {
    name: String,
    #[serde(default)]
    if_match: Option<String>,
    #[serde(default)]
    if_none_match: Option<String>,
    #[serde(default)]
    expires_in: Option<String>,
    #[serde(default)]
    grants: Option<Vec<String>>,
}

impl CommitRef {
    fn update(self) -> Result<RefUpdate, String> {
        let name = RefName::parse(&self.name).map_err(str::to_string)?;
        let condition =
            super::refs::condition_of(self.if_match.as_deref(), self.if_none_match.as_deref())
                .map_err(|e| e.detail)?;
        let (expires_at, grants) =
            super::refs::parse_ref_options(self.expires_in, self.grants).map_err(|e| e.detail)?;
        Ok(RefUpdate {
            name,
            condition,
            expires_at,
            grants,
        })
    }
}

struct ListSeed<'a> {
    check: &'a mut CommitCheck,
    engine_error: &'a mut Option<EngineError>,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of [chunk id, length] pairs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut group = Vec::with_capacity(GROUP);
        let mut feed = |group: &mut Vec<ManifestEntry>| -> Result<(), A::Error> {
            if let Err(e) = self.check.push(group) {
                *self.engine_error = Some(e);
                return Err(de::Error::custom("the chunk list was refused"));
            }
            group.clear();
            Ok(())
        };
        while let Some((id, len)) = seq.next_element::<(String, u32)>()? {
            let id = parse_digest(&id).ok_or_else(|| {
                de::Error::custom(format!("{id:?} is not a chunk id (64 lowercase hex)"))
            })?;
            if len == 0 {
                return Err(de::Error::custom("a chunk length is at least 1"));
            }
            group.push(ManifestEntry { id, len });
            if group.len() >= GROUP {
                feed(&mut group)?;
            }
        }
        if !group.is_empty() {
            feed(&mut group)?;
        }
        Ok(())
    }
}
