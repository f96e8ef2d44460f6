//! A bounded, least-recently-used cache of verified raw chunk bytes, keyed by
//! chunk id, so that hot chunks (a checkpoint's shared layers, a file fetched
//! by many readers) are served without a request to the object store.
//!
//! Only bytes that passed the BLAKE3 check go in (invariant 6 holds for what
//! comes out), each entry owns its bytes (never a slice of a larger read
//! buffer, so the bound is the memory actually held), and the total is
//! bounded by `chunk-cache-bytes` (invariant 8). A capacity of 0 disables it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bytes::Bytes;

use crate::hash::Digest;

struct Inner {
    /// id -> (bytes, recency tick).
    entries: HashMap<Digest, (Bytes, u64)>,
    /// recency tick -> id; the first entry is the least recently used.
    order: BTreeMap<u64, Digest>,
    bytes: u64,
    tick: u64,
}

/// The chunk cache; share it behind an `Arc` (the blob store does).
pub struct ChunkCache {
    capacity_bytes: u64,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCache")
            .field("capacity_bytes", &self.capacity_bytes)
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl ChunkCache {
    /// A cache holding at most `capacity_bytes` of chunk bytes.
    pub fn new(capacity_bytes: u64) -> Self {
        ChunkCache {
            capacity_bytes,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: BTreeMap::new(),
                bytes: 0,
                tick: 0,
            }),
        }
    }

    /// Whether the cache can hold anything.
    pub fn is_enabled(&self) -> bool {
        self.capacity_bytes > 0
    }

    /// The size bound.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent
        // in a way that matters for a cache; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bytes of `id`, marking it recently used.
    pub fn get(&self, id: &Digest) -> Option<Bytes> {
        if !self.is_enabled() {
            return None;
        }
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        let (bytes, old) = {
            let e = g.entries.get_mut(id)?;
            let old = std::mem::replace(&mut e.1, tick);
            (e.0.clone(), old)
        };
        g.order.remove(&old);
        g.order.insert(tick, *id);
        Some(bytes)
    }

    /// Inserts verified raw bytes of chunk `id` (copied, so the entry never
    /// pins a larger buffer), evicting the least recently used entries. A
    /// chunk larger than a quarter of the cache is not kept: it would evict
    /// too much for one entry.
    pub fn insert(&self, id: Digest, raw: &[u8]) {
        let len = raw.len() as u64;
        if !self.is_enabled() || len > self.capacity_bytes / 4 {
            return;
        }
        let mut g = self.lock();
        if g.entries.contains_key(&id) {
            return;
        }
        while g.bytes + len > self.capacity_bytes {
            let Some((_, victim)) = g.order.pop_first() else {
                break;
            };
            if let Some((b, _)) = g.entries.remove(&victim) {
                g.bytes -= b.len() as u64;
            }
        }
        g.tick += 1;
        let tick = g.tick;
        g.entries.insert(id, (Bytes::copy_from_slice(raw), tick));
        g.order.insert(tick, id);
        g.bytes += len;
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Digest {
        Digest::of(&[n])
    }

    #[test]
    fn evicts_least_recently_used_within_the_bound() {
        let c = ChunkCache::new(400);
        c.insert(id(1), &[1; 100]);
        c.insert(id(2), &[2; 100]);
        c.insert(id(3), &[3; 100]);
        c.insert(id(4), &[4; 100]);
        assert_eq!(c.bytes(), 400);
        assert!(c.get(&id(1)).is_some()); // 1 is now the most recent
        c.insert(id(5), &[5; 100]);
        assert!(c.get(&id(2)).is_none(), "2 was least recently used");
        assert_eq!(c.get(&id(1)).unwrap(), Bytes::from(vec![1; 100]));
        assert!(c.bytes() <= 400);
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn oversized_entries_and_zero_capacity_are_ignored() {
        let c = ChunkCache::new(400);
        c.insert(id(1), &[1; 101]);
        assert!(c.is_empty());
        let off = ChunkCache::new(0);
        off.insert(id(1), &[1; 1]);
        assert!(off.get(&id(1)).is_none());
    }

    #[test]
    fn entries_own_their_bytes() {
        let big = Bytes::from(vec![7u8; 1000]);
        let c = ChunkCache::new(4000);
        c.insert(id(7), &big[10..20]);
        drop(big);
        assert_eq!(c.get(&id(7)).unwrap().len(), 10);
        assert_eq!(c.bytes(), 10);
    }
}
