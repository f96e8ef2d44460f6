//! Key layout in the blob store. Keys are sharded by two characters of the
//! random part of their name so that no directory or prefix grows hot.
//!
//! ```text
//! packs/<xx>/<pack-ulid>.pack
//! manifests/<xx>/<manifest-blake3-hex>.manifest
//! manifests/bundles/<xx>/<bundle-ulid>.bundle   (manifests of a group commit)
//! backups/<yyyymmddThhmmssZ>/<file>   (metadata backups; BACKUP.json last)
//! _eden_cas_probe/<ulid>      (startup probe; deleted right after)
//! _eden_cas_lease/<generation, 20 digits>.json   (the writer lease, `lease.rs`)
//! audit/<run-ulid>-<first seq, 20 digits>-<cut unix ms, 13 digits>.jsonl
//!                             (audit log segments, `engine/audit.rs`)
//! ```

use crate::hash::Digest;
use crate::ids::PackId;
use ulid::Ulid;

/// Prefix of all packs.
pub const PACKS: &str = "packs/";
/// Prefix of all manifests.
pub const MANIFESTS: &str = "manifests/";
/// Prefix of all metadata backups.
pub const BACKUPS: &str = "backups/";

/// Prefix of all audit log segments.
pub const AUDIT: &str = "audit/";

/// Key of an audit log segment: the recording run, the sequence number of
/// its first event and the time it was cut. Keys of one run sort by
/// sequence; runs sort by their start (the ULID's time part), so the
/// lexicographic order of keys is the order of the log.
pub fn audit_segment(run: Ulid, first_seq: u64, cut_unix_ms: u64) -> String {
    let run = run.to_string().to_ascii_lowercase();
    format!("{AUDIT}{run}-{first_seq:020}-{cut_unix_ms:013}.jsonl")
}

/// The parts of an audit segment key: (run, first sequence number, cut
/// time in Unix milliseconds), if it is one.
pub fn parse_audit_segment(key: &str) -> Option<(Ulid, u64, u64)> {
    let name = key.strip_prefix(AUDIT)?.strip_suffix(".jsonl")?;
    let mut parts = name.split('-');
    let run = Ulid::from_string(parts.next()?).ok()?;
    let seq = parts.next().filter(|s| s.len() == 20)?.parse().ok()?;
    let cut = parts.next().filter(|s| s.len() == 13)?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((run, seq, cut))
}

/// Key of a pack.
pub fn pack(id: PackId) -> String {
    let s = id.to_string().to_ascii_lowercase();
    format!("{PACKS}{}/{s}.pack", &s[24..26])
}

/// Key of a manifest.
pub fn manifest(id: &Digest) -> String {
    let h = id.to_hex();
    format!("{MANIFESTS}{}/{h}.manifest", &h[..2])
}

/// The pack id inside a pack key, if it is one.
pub fn parse_pack(key: &str) -> Option<PackId> {
    let name = key
        .strip_prefix(PACKS)?
        .split('/')
        .nth(1)?
        .strip_suffix(".pack")?;
    PackId::parse(name)
}

/// The manifest id inside a manifest key, if it is one.
pub fn parse_manifest(key: &str) -> Option<Digest> {
    let mut parts = key.strip_prefix(MANIFESTS)?.split('/');
    let shard = parts.next()?;
    let hex = parts.next()?.strip_suffix(".manifest")?;
    if parts.next().is_some() || !hex.starts_with(shard) {
        return None;
    }
    hex.parse().ok()
}

/// Prefix of manifest bundles (inside [`MANIFESTS`], so that a listing of
/// manifests sees them; [`parse_manifest`] does not take them for one).
pub const MANIFEST_BUNDLES: &str = "manifests/bundles/";

/// Key of a manifest bundle: the manifests of one group commit of small
/// deposits in one object (`engine/manifest_object.rs`).
pub fn manifest_bundle(id: PackId) -> String {
    let s = id.to_string().to_ascii_lowercase();
    format!("{MANIFEST_BUNDLES}{}/{s}.bundle", &s[24..26])
}

/// The bundle id inside a manifest bundle key, if it is one.
pub fn parse_manifest_bundle(key: &str) -> Option<PackId> {
    let name = key
        .strip_prefix(MANIFEST_BUNDLES)?
        .split('/')
        .nth(1)?
        .strip_suffix(".bundle")?;
    PackId::parse(name)
}

/// Key of a file of a metadata backup.
pub fn backup_file(backup: &str, file: &str) -> String {
    format!("{BACKUPS}{backup}/{file}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_keys_round_trip() {
        let id = PackId::mint();
        let k = pack(id);
        assert!(k.starts_with(PACKS));
        assert_eq!(parse_pack(&k), Some(id));
        let m = Digest::of(b"manifest");
        assert_eq!(parse_manifest(&manifest(&m)), Some(m));
        assert_eq!(parse_manifest("manifests/ab/zz.manifest"), None);
        assert_eq!(parse_pack("packs/zz/nope.pack"), None);
    }

    #[test]
    fn bundle_keys_round_trip_and_are_no_manifests() {
        let id = PackId::mint();
        let k = manifest_bundle(id);
        assert!(k.starts_with(MANIFESTS));
        assert_eq!(parse_manifest_bundle(&k), Some(id));
        assert_eq!(parse_manifest(&k), None);
        assert_eq!(parse_manifest_bundle(&manifest(&Digest::of(b"m"))), None);
    }

    #[test]
    fn audit_keys_round_trip_and_sort_in_log_order() {
        let run = Ulid::new();
        let k = audit_segment(run, 42, 1_700_000_000_123);
        assert_eq!(parse_audit_segment(&k), Some((run, 42, 1_700_000_000_123)));
        assert!(audit_segment(run, 9, 5) < audit_segment(run, 10, 4));
        let later = Ulid::from_parts(run.timestamp_ms() + 1, 0);
        assert!(audit_segment(run, 999, 9) < audit_segment(later, 1, 1));
        assert_eq!(parse_audit_segment("audit/nope-1-2.jsonl"), None);
        assert_eq!(parse_audit_segment(&k.replace(".jsonl", ".json")), None);
    }

    #[test]
    fn manifest_keys_round_trip() {
        let id = Digest::of(b"manifest");
        assert_eq!(parse_manifest(&manifest(&id)), Some(id));
        assert_eq!(parse_manifest("manifests/zz/nope.manifest"), None);
        let h = id.to_hex();
        let wrong = if h.starts_with("00") { "11" } else { "00" };
        assert_eq!(
            parse_manifest(&format!("manifests/{wrong}/{h}.manifest")),
            None
        );
    }
}
