//! Pack objects as stored: the pack files of an fs blob store and a flipped
//! bit in a stored file to damage it at rest. Tests read pack tails with the
//! library's own reader (`eden_cas::pack::parse_pack`, `PackReader::tail`).

use std::path::{Path, PathBuf};

/// The pack files (`packs/…/*.pack`) under the root of an fs blob store
/// (`<data dir>/blobs` for a server), sorted by path.
pub fn pack_files(blob_root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![blob_root.join("packs")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pack") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Total size in bytes of the pack files under an fs blob store root.
pub fn pack_file_bytes(blob_root: &Path) -> u64 {
    pack_files(blob_root)
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .map(|m| m.len())
                .expect("pack file size")
        })
        .sum()
}

/// Flips the lowest bit of byte `offset` of the file at `path`.
pub fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("read file to damage");
    bytes[usize::try_from(offset).expect("offset")] ^= 0x01;
    std::fs::write(path, bytes).expect("write damaged file");
}
