//! Key layout in the blob store. Keys are sharded by two characters of the
//! random part of their name so that no directory or prefix grows hot.
//!
//! ```text
//! packs/<xx>/<pack-ulid>.pack
//! manifests/<xx>/<manifest-blake3-hex>.manifest
//! backups/<yyyymmddThhmmssZ>/<file>   (metadata backups; BACKUP.json last)
//! _eden_cas_probe/<ulid>      (startup probe; deleted right after)
//! _eden_cas_lease/<generation, 20 digits>.json   (the writer lease, `lease.rs`)
//! ```

use crate::hash::Digest;
use crate::ids::PackId;

/// Prefix of all packs.
pub const PACKS: &str = "packs/";
/// Prefix of all manifests.
pub const MANIFESTS: &str = "manifests/";
/// Prefix of all metadata backups.
pub const BACKUPS: &str = "backups/";

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
