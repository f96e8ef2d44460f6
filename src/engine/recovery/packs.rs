//! Reindex, part 1: the chunk index (`chunks-v1`) and pack records
//! (`packs-v1`) from pack footers; see the parent module for the rule.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::{ObjectProblem, ReindexReport};
use crate::blobs::{BlobStore, keys};
use crate::engine::{EngineError, blocking};
use crate::hash::Digest;
use crate::ids::PackId;
use crate::meta::Meta;
use crate::meta::records::{ChunkLocation, PackRecord};
use crate::pack::reader::PackReader;
use crate::pack::{PackEntry, PackError};

/// Footers of other packs kept while checking existing index entries.
const FOOTER_CACHE: usize = 4;
/// Deletions per batch when dropping stale index entries.
const DROP_BATCH: usize = 10_000;

/// A pack object as listed.
struct ListedPack {
    id: PackId,
    key: String,
    size: u64,
}

fn find_listed(listed: &[ListedPack], id: PackId) -> Option<&ListedPack> {
    listed
        .binary_search_by_key(&id, |p| p.id)
        .ok()
        .map(|i| &listed[i])
}

/// What the end of a pack object says.
enum FooterRead {
    /// A complete pack and its entries.
    Valid(Vec<PackEntry>),
    /// No valid trailer: an interrupted write.
    Partial,
    /// A trailer, but the footer does not check out.
    Corrupt(String),
    /// The object disappeared after it was listed.
    Gone,
}

/// Reads and checks a pack's tail through the pack reader (usually one
/// ranged read). A pack of a newer format than this binary reads is an
/// error, never "partial": its entries must not be dropped.
async fn read_footer(blobs: &BlobStore, pack: &ListedPack) -> Result<FooterRead, EngineError> {
    match PackReader::new(blobs).tail(pack.id, pack.size).await {
        Ok(tail) => match tail.entry_outside_data() {
            Some(e) => Ok(FooterRead::Corrupt(format!(
                "footer entry for chunk {} lies outside the chunk area",
                e.id.to_hex()
            ))),
            None => Ok(FooterRead::Valid(tail.entries)),
        },
        Err(PackError::TooShort { .. } | PackError::BadTrailer) => Ok(FooterRead::Partial),
        Err(PackError::Missing) => Ok(FooterRead::Gone),
        Err(e @ (PackError::FooterTooLong | PackError::BadFooter)) => {
            Ok(FooterRead::Corrupt(e.to_string()))
        }
        Err(e) => Err(EngineError::from_pack(pack.id, e)),
    }
}

type FooterMap = HashMap<Digest, PackEntry>;

fn footer_map(entries: &[PackEntry]) -> FooterMap {
    let mut map = HashMap::with_capacity(entries.len());
    for e in entries {
        map.entry(e.id).or_insert(*e);
    }
    map
}

/// The last few footers read, `None` for a pack that is not complete.
#[derive(Default)]
struct FooterCache {
    recent: VecDeque<(PackId, Option<Arc<FooterMap>>)>,
}

impl FooterCache {
    fn insert(&mut self, id: PackId, footer: Option<Arc<FooterMap>>) {
        if self.recent.len() >= FOOTER_CACHE {
            self.recent.pop_front();
        }
        self.recent.push_back((id, footer));
    }

    async fn load(
        &mut self,
        blobs: &BlobStore,
        listed: &[ListedPack],
        id: PackId,
    ) -> Result<Option<Arc<FooterMap>>, EngineError> {
        if let Some((_, f)) = self.recent.iter().find(|(p, _)| *p == id) {
            return Ok(f.clone());
        }
        let footer = match find_listed(listed, id) {
            None => None,
            Some(p) => match read_footer(blobs, p).await? {
                FooterRead::Valid(entries) => Some(Arc::new(footer_map(&entries))),
                FooterRead::Partial | FooterRead::Corrupt(_) | FooterRead::Gone => None,
            },
        };
        self.insert(id, footer.clone());
        Ok(footer)
    }
}

/// Indexes every complete pack, newest first. Returns the sorted ids of the
/// packs whose index entries stay valid (complete ones, and corrupt ones
/// left for fsck).
pub(super) async fn reindex_packs(
    meta: &Meta,
    blobs: &BlobStore,
    report: &mut ReindexReport,
) -> Result<Vec<PackId>, EngineError> {
    let mut listed = Vec::new();
    for (key, size) in blobs.list(keys::PACKS).await? {
        match keys::parse_pack(&key) {
            Some(id) => listed.push(ListedPack { id, key, size }),
            None => report.foreign_objects.push(key),
        }
    }
    listed.sort_by_key(|p| p.id);
    listed.dedup_by_key(|p| p.id);
    report.packs_scanned = listed.len() as u64;
    let mut kept = Vec::new();
    let mut cache = FooterCache::default();
    // Newest first: the first complete pack to offer a chunk is the newest
    // holding it, which is what an unusable existing entry is replaced by.
    for pack in listed.iter().rev() {
        match read_footer(blobs, pack).await? {
            FooterRead::Valid(entries) => {
                let map = Arc::new(footer_map(&entries));
                index_pack(meta, blobs, &listed, &mut cache, pack, entries, report).await?;
                cache.insert(pack.id, Some(map));
                kept.push(pack.id);
                report.packs_indexed += 1;
            }
            FooterRead::Partial => {
                tracing::info!(key = %pack.key, "partial pack (no valid trailer): not indexed");
                cache.insert(pack.id, None);
                report.partial_packs.push(pack.key.clone());
            }
            FooterRead::Corrupt(reason) => {
                tracing::warn!(key = %pack.key, %reason, "corrupt pack footer: not indexed");
                cache.insert(pack.id, None);
                kept.push(pack.id);
                report.corrupt_packs.push(ObjectProblem {
                    key: pack.key.clone(),
                    reason,
                });
            }
            FooterRead::Gone => {
                tracing::info!(key = %pack.key, "pack vanished while reindexing");
                cache.insert(pack.id, None);
            }
        }
    }
    kept.sort_unstable();
    Ok(kept)
}

/// Indexes one complete pack in one batch (see [`reindex`] for the rule).
async fn index_pack(
    meta: &Meta,
    blobs: &BlobStore,
    listed: &[ListedPack],
    cache: &mut FooterCache,
    pack: &ListedPack,
    entries: Vec<PackEntry>,
    report: &mut ReindexReport,
) -> Result<(), EngineError> {
    let ids: Vec<Digest> = entries.iter().map(|e| e.id).collect();
    let m = meta.clone();
    let current = blocking(move || Ok(m.chunks(&ids)?)).await?;
    // An entry naming another pack that still exists stays only if that
    // pack's footer agrees with it: check those, one footer at a time.
    let mut checks: BTreeMap<PackId, Vec<(Digest, ChunkLocation)>> = BTreeMap::new();
    for (e, cur) in entries.iter().zip(&current) {
        if let Some(x) = cur
            && x.pack != pack.id
            && find_listed(listed, x.pack).is_some()
        {
            checks.entry(x.pack).or_default().push((e.id, *x));
        }
    }
    let mut agrees: HashSet<Digest> = HashSet::new();
    for (other, list) in checks {
        let footer = cache.load(blobs, listed, other).await?;
        for (chunk, x) in list {
            if footer
                .as_ref()
                .and_then(|f| f.get(&chunk))
                .is_some_and(|fe| ChunkLocation::in_pack(other, fe) == x)
            {
                agrees.insert(chunk);
            }
        }
    }
    let (m, id, size) = (meta.clone(), pack.id, pack.size);
    let written = blocking(move || {
        let mut b = m.batch();
        let mut seen = HashSet::with_capacity(entries.len());
        let mut written = 0u64;
        for (e, cur) in entries.iter().zip(current) {
            if !seen.insert(e.id) {
                continue;
            }
            let want = ChunkLocation::in_pack(id, e);
            // An entry the scrubber marked bad never equals `want` nor
            // agrees with another footer (so a fresh copy in any complete
            // pack, visited first as packs go newest first, replaces it);
            // with no other copy it stays as it is, never rewritten as good
            // from its own footer.
            let keep = match cur {
                None => false,
                Some(x) if x == want => true,
                Some(x) if x.bad && x.is_at(id, want.offset) => true,
                // Names this pack but disagrees with its footer: the footer
                // is the truth.
                Some(x) if x.pack == id => false,
                Some(_) => agrees.contains(&e.id),
            };
            if !keep {
                b.put_chunk(&e.id, &want);
                written += 1;
            }
        }
        let existing = m.pack(id)?;
        let rec = PackRecord {
            bytes: size,
            chunks: entries.len() as u32,
            raw_bytes: entries.iter().map(|e| u64::from(e.raw_len)).sum(),
            created_at: existing
                .as_ref()
                .map_or_else(|| id.minted_at().whole_secs(), |r| r.created_at),
        };
        if existing.as_ref() != Some(&rec) {
            b.put_pack(id, &rec);
        }
        b.commit_unsynced()?;
        Ok(written)
    })
    .await?;
    report.entries_written += written;
    Ok(())
}

/// Drops chunk entries and pack records that name packs not in `kept`;
/// counts the entries left.
pub(super) async fn drop_stale(
    meta: &Meta,
    kept: Vec<PackId>,
    report: &mut ReindexReport,
) -> Result<(), EngineError> {
    let m = meta.clone();
    let (left, dropped, packs_dropped) = blocking(move || {
        let (mut left, mut dropped, mut packs_dropped) = (0u64, 0u64, 0u64);
        let mut b = m.batch();
        for item in m.chunk_entries() {
            let (id, loc) = item?;
            if kept.binary_search(&loc.pack).is_ok() {
                left += 1;
                continue;
            }
            b.delete_chunk(&id);
            dropped += 1;
            if b.len() >= DROP_BATCH {
                std::mem::replace(&mut b, m.batch()).commit_unsynced()?;
            }
        }
        for (id, _) in m.packs()? {
            if kept.binary_search(&id).is_err() {
                b.delete_pack(id);
                packs_dropped += 1;
            }
        }
        b.commit_unsynced()?;
        Ok((left, dropped, packs_dropped))
    })
    .await?;
    report.chunks_indexed = left;
    report.entries_dropped = dropped;
    report.pack_records_dropped = packs_dropped;
    Ok(())
}
