//! The audit event and the segment format: one event per line, JSON, in
//! sequence order (`docs/operations/audit.md` lists the fields). Pure: no
//! I/O, so the format is tested on its own.
//!
//! An event names who did what — never a token or a token hash: the
//! principal is `admin`, a worker id, or `gc` for removals the store does
//! on its own.

use serde::{Deserialize, Serialize, Serializer};

use crate::clock::Timestamp;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditKind {
    /// An artifact was committed (v0 deposit, raw deposit, upload session).
    Deposit,
    /// Bytes of an artifact were served (whole or a range).
    Read,
    /// A read grant was given.
    Grant,
    /// A read grant was taken back.
    Revoke,
    /// An artifact's expiry was set or cleared.
    SetExpiry,
    /// An artifact was deleted by its depositor or the admin.
    Delete,
    /// GC removed an artifact past its expiry.
    Expire,
    /// A worker was registered.
    RegisterWorker,
    /// A worker's credential was reissued (the old one stops working).
    ReissueCredential,
    /// A group was created.
    CreateGroup,
    /// A member was added to a group.
    AddMember,
    /// A member was removed from a group.
    RemoveMember,
    /// A group was deleted.
    DeleteGroup,
    /// A reference was created or moved (`artifact`: the new target,
    /// `from`: the old one).
    SetRef,
    /// A reference was deleted by a manager.
    DeleteRef,
    /// GC removed a reference past its own expiry or whose target is gone.
    ExpireRef,
    /// An artifact's labels were replaced.
    SetLabels,
}

impl AuditKind {
    /// Every kind, in declaration order.
    pub const ALL: [AuditKind; 17] = [
        AuditKind::Deposit,
        AuditKind::Read,
        AuditKind::Grant,
        AuditKind::Revoke,
        AuditKind::SetExpiry,
        AuditKind::Delete,
        AuditKind::Expire,
        AuditKind::RegisterWorker,
        AuditKind::ReissueCredential,
        AuditKind::CreateGroup,
        AuditKind::AddMember,
        AuditKind::RemoveMember,
        AuditKind::DeleteGroup,
        AuditKind::SetRef,
        AuditKind::DeleteRef,
        AuditKind::ExpireRef,
        AuditKind::SetLabels,
    ];
}

/// The principal of events the store causes itself (expiry by GC).
pub const GC_PRINCIPAL: &str = "gc";

/// One line of the audit log. Optional fields are left out of the line
/// when absent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The recording process run (a ULID minted when the engine opened).
    pub run: String,
    /// Position in the run, from 1, with no gap unless events were
    /// dropped (see `Recorder`); with `run` it orders the log totally.
    pub seq: u64,
    /// When the event was recorded (RFC 3339 UTC, milliseconds).
    #[serde(serialize_with = "rfc3339")]
    pub time: Timestamp,
    /// What happened.
    pub kind: AuditKind,
    /// Who did it: `admin`, a worker id, or `gc`.
    pub principal: String,
    /// The experiment it happened in.
    pub experiment: String,
    /// The artifact concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// That artifact's BLAKE3 (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// The artifact's size in bytes (deposit, delete, expire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Bytes served, `[start, end)` (read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[u64; 2]>,
    /// The worker or group granted to or revoked from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grantee: Option<String>,
    /// The new expiry (set-expiry, expire); absent when cleared.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_rfc3339"
    )]
    pub expires_at: Option<Timestamp>,
    /// The worker registered or reissued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// The group created, changed or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The member added or removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// A group's initial members (create-group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    /// The worker's or group's name, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The reference concerned (set-ref, delete-ref, expire-ref).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The reference's target before the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The artifact's labels after the change (set-labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

fn rfc3339<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339())
}

fn opt_rfc3339<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

impl AuditEvent {
    /// An event of `kind` by `principal` in `experiment`; the recorder sets
    /// `run`, `seq` and `time`.
    pub fn new(kind: AuditKind, principal: &str, experiment: &str) -> Self {
        AuditEvent {
            run: String::new(),
            seq: 0,
            time: Timestamp::UNIX_EPOCH,
            kind,
            principal: principal.to_string(),
            experiment: experiment.to_string(),
            artifact: None,
            blake3: None,
            size: None,
            range: None,
            grantee: None,
            expires_at: None,
            worker: None,
            group: None,
            member: None,
            members: None,
            name: None,
            reference: None,
            from: None,
            labels: None,
        }
    }

    /// With the artifact and its BLAKE3.
    pub fn artifact(mut self, id: impl ToString, blake3: &crate::hash::Digest) -> Self {
        self.artifact = Some(id.to_string());
        self.blake3 = Some(blake3.to_hex());
        self
    }
}

/// Which events an export keeps.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Only events recorded at or after this time.
    pub since: Option<Timestamp>,
    /// Only events of this experiment.
    pub experiment: Option<String>,
}

impl AuditFilter {
    /// Whether `e` passes.
    pub fn keeps(&self, e: &AuditEvent) -> bool {
        self.since.is_none_or(|s| e.time >= s)
            && self.experiment.as_deref().is_none_or(|x| x == e.experiment)
    }

    /// Whether a segment cut at `cut_unix_ms` can hold a kept event (every
    /// event of a segment is recorded before it is cut).
    pub fn may_keep_segment(&self, cut_unix_ms: u64) -> bool {
        self.since.is_none_or(|s| cut_unix_ms >= s.unix_millis())
    }
}

/// Parses `--since` / `?since=`: an RFC 3339 time, or a duration
/// (`24h`, `7d`) meaning that long before `now`.
///
/// # Errors
/// A client-safe message when it is neither.
pub fn parse_since(s: &str, now: Timestamp) -> Result<Timestamp, String> {
    if let Some(t) = Timestamp::parse_rfc3339(s) {
        return Ok(t);
    }
    match humantime::parse_duration(s) {
        Ok(d) => Ok(Timestamp::from_unix_nanos(
            now.unix_nanos()
                .saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        )),
        Err(_) => Err(format!(
            "since must be an RFC 3339 time (2026-01-02T03:04:05Z) or a duration (24h), not {s:?}"
        )),
    }
}

/// Encodes events as one segment: a JSON object per line, `\n`-terminated.
pub fn encode_segment(events: &[AuditEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 256);
    for e in events {
        // Plain data (strings, integers): serialization cannot fail.
        if let Ok(line) = serde_json::to_vec(e) {
            out.extend_from_slice(&line);
            out.push(b'\n');
        }
    }
    out
}

/// Decodes a segment.
///
/// # Errors
/// The 1-based number of the first line that is not an event, with why.
pub fn decode_segment(bytes: &[u8]) -> Result<Vec<AuditEvent>, (usize, String)> {
    bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(n, line)| serde_json::from_slice(line).map_err(|e| (n + 1, e.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Digest;

    fn event(seq: u64, kind: AuditKind) -> AuditEvent {
        let mut e = AuditEvent::new(kind, "wkr_01", "exp_01").artifact("01abc", &Digest::of(b"x"));
        e.run = "01run".into();
        e.seq = seq;
        e.time = Timestamp::from_unix_nanos(1_700_000_000_123_000_000);
        e
    }

    #[test]
    fn a_segment_round_trips_and_leaves_absent_fields_out() {
        let mut events: Vec<AuditEvent> = AuditKind::ALL
            .iter()
            .enumerate()
            .map(|(i, k)| event(i as u64 + 1, *k))
            .collect();
        events[1].range = Some([0, 10]);
        events[4].expires_at = Some(Timestamp::from_unix_secs(1_800_000_000));
        let bytes = encode_segment(&events);
        assert_eq!(decode_segment(&bytes).unwrap(), events);
        let first = std::str::from_utf8(&bytes).unwrap().lines().next().unwrap();
        assert_eq!(
            first,
            format!(
                "{{\"run\":\"01run\",\"seq\":1,\"time\":\"2023-11-14T22:13:20.123Z\",\
                 \"kind\":\"deposit\",\"principal\":\"wkr_01\",\"experiment\":\"exp_01\",\
                 \"artifact\":\"01abc\",\"blake3\":\"{}\"}}",
                Digest::of(b"x").to_hex()
            )
        );
        assert!(
            String::from_utf8(bytes)
                .unwrap()
                .contains("\"kind\":\"set-expiry\"")
        );
    }

    #[test]
    fn a_bad_line_is_named() {
        let mut bytes = encode_segment(&[event(1, AuditKind::Read)]);
        bytes.extend_from_slice(b"{not json}\n");
        assert_eq!(decode_segment(&bytes).unwrap_err().0, 2);
    }

    #[test]
    fn filters_by_time_and_experiment() {
        let e = event(1, AuditKind::Read);
        let at = e.time;
        let f = AuditFilter {
            since: Some(at),
            experiment: Some("exp_01".into()),
        };
        assert!(f.keeps(&e));
        assert!(!f.may_keep_segment(at.unix_millis() - 1));
        assert!(f.may_keep_segment(at.unix_millis()));
        let later = AuditFilter {
            since: Some(at.plus(std::time::Duration::from_millis(1))),
            ..AuditFilter::default()
        };
        assert!(!later.keeps(&e));
        let other = AuditFilter {
            experiment: Some("exp_02".into()),
            ..AuditFilter::default()
        };
        assert!(!other.keeps(&e));
    }

    #[test]
    fn since_is_a_time_or_a_duration_back_from_now() {
        let now = Timestamp::from_unix_secs(1_000_000);
        assert_eq!(
            parse_since("1970-01-01T00:00:10Z", now),
            Ok(Timestamp::from_unix_secs(10))
        );
        assert_eq!(
            parse_since("1h", now),
            Ok(Timestamp::from_unix_secs(1_000_000 - 3600))
        );
        assert!(parse_since("yesterday", now).is_err());
    }
}
