//! Pack objects as stored: the pack files of an fs blob store, a pack's
//! footer index (the one reader of the trailer and footer in the tests), and
//! a flipped bit in a stored file to damage it at rest.

use std::path::{Path, PathBuf};

use eden_cas::blobs::BlobStore;
use eden_cas::pack::{
    HEADER_MAGIC, PackEntry, TRAILER_LEN, Trailer, decode_footer, decode_trailer,
};

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

/// A whole pack object's trailer and footer entries; panics unless the
/// pack is complete (header magic, trailer, footer matching its hash).
pub fn pack_index(pack: &[u8]) -> (Trailer, Vec<PackEntry>) {
    assert!(
        pack.len() >= HEADER_MAGIC.len() + TRAILER_LEN && pack.starts_with(HEADER_MAGIC),
        "not a complete pack ({} bytes)",
        pack.len()
    );
    let end = pack.len() - TRAILER_LEN;
    let trailer = decode_trailer(&pack[end..]).expect("pack trailer");
    let footer_len = usize::try_from(trailer.footer_len).expect("footer length");
    let footer = &pack[end.checked_sub(footer_len).expect("footer inside the pack")..end];
    let entries = decode_footer(footer, &trailer).expect("pack footer");
    (trailer, entries)
}

/// [`pack_index`] of the pack object `key` of a blob store.
pub async fn stored_pack_index(blobs: &BlobStore, key: &str) -> (Trailer, Vec<PackEntry>) {
    pack_index(&blobs.read(key).await.expect("read pack object"))
}

/// Flips the lowest bit of byte `offset` of the file at `path`.
pub fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("read file to damage");
    bytes[usize::try_from(offset).expect("offset")] ^= 0x01;
    std::fs::write(path, bytes).expect("write damaged file");
}
