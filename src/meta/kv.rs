//! The metadata engine interface: ordered key/value tables ("column
//! families") with point reads, ordered scans and atomic multi-table
//! writes. [`super::Meta`]'s typed accessors (records, keys, CBOR) sit on
//! top of it once, so every engine stores byte-identical keys and values
//! and gives the same answers.
//!
//! Two engines implement it: RocksDB embedded in one process
//! ([`super::rocks`], the default) and PostgreSQL shared by many nodes
//! ([`super::postgres`]). What they promise alike:
//!
//! - keys sort bytewise (RocksDB's default comparator; `bytea` order in
//!   PostgreSQL) and scans honour that order both ways;
//! - [`Kv::write`] applies a list of [`Op`]s in order, all or nothing, and
//!   with `sync` is durable before it returns (invariant 3);
//! - a point read after a successful write sees it, from any node.
//!
//! Where they differ, the difference is named: a RocksDB scan reads one
//! snapshot; a PostgreSQL scan reads page by page, each page one snapshot
//! (callers already tolerate rows changing under a scan, since a scan can
//! outlive any change made during it).

use std::path::Path;

use super::MetaError;

/// A column family (table) name, one of [`super::ALL_CFS`].
pub type Cf = &'static str;

/// One change of a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value` (inserting or replacing).
    Put(Cf, Vec<u8>, Vec<u8>),
    /// Removes `key` (absent is fine).
    Delete(Cf, Vec<u8>),
    /// Removes every key in `[from, to)`.
    DeleteRange(Cf, Vec<u8>, Vec<u8>),
}

/// Which keys a scan visits, in which order.
#[derive(Clone, Debug, Default)]
pub struct ScanSpec<'a> {
    /// Forward: start at the first key `>= from`; reverse: at the last key
    /// `<= from`. `None`: from the first (forward) or last (reverse) key.
    pub from: Option<&'a [u8]>,
    /// Only keys starting with this prefix (the scan ends past them).
    pub prefix: Option<&'a [u8]>,
    /// Descending key order.
    pub reverse: bool,
}

impl<'a> ScanSpec<'a> {
    /// Every key, ascending.
    pub fn all() -> Self {
        Self::default()
    }

    /// Keys under `prefix`, ascending.
    pub fn prefix(prefix: &'a [u8]) -> Self {
        Self {
            prefix: Some(prefix),
            ..Self::default()
        }
    }

    /// Keys `>= from`, ascending.
    pub fn from(from: &'a [u8]) -> Self {
        Self {
            from: Some(from),
            ..Self::default()
        }
    }
}

/// A scan's rows, `(key, value)`, in the order the [`ScanSpec`] asked.
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>), MetaError>> + 'a>;

/// The first key after every key that starts with `prefix`, or `None` when
/// no such key exists (`prefix` is empty or all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A metadata engine. All calls block; the engine calls them off the async
/// executor.
pub trait Kv: Send + Sync {
    /// The value of `key`.
    ///
    /// # Errors
    /// [`MetaError::Db`] / [`MetaError::Postgres`] when the engine fails.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError>;

    /// The values of `keys`, in order.
    ///
    /// # Errors
    /// As [`Kv::get`].
    fn multi_get(&self, cf: Cf, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, MetaError>;

    /// Rows of `cf` as `spec` asks, streamed (memory independent of the
    /// table's size).
    fn scan<'a>(&'a self, cf: Cf, spec: ScanSpec<'_>) -> KvIter<'a>;

    /// Applies `ops` in order, atomically; durably before returning when
    /// `sync`.
    ///
    /// # Errors
    /// The engine's error; then nothing was applied.
    fn write(&self, ops: Vec<Op>, sync: bool) -> Result<(), MetaError>;

    /// An estimate of the number of keys in `cf` (for gauges; 0 when
    /// unknown).
    fn estimate_keys(&self, cf: Cf) -> u64;

    /// Makes every write so far durable and compact on disk (before a clean
    /// shutdown).
    ///
    /// # Errors
    /// The engine's error.
    fn flush(&self) -> Result<(), MetaError>;

    /// Where the metadata lives, for messages: a directory or a database
    /// URL without credentials.
    fn describe(&self) -> String;

    /// Lock threads that make the engine's check-then-write locks hold
    /// across processes sharing this store (`None`: one process per store,
    /// its own mutexes suffice).
    fn lock_threads(&self) -> Option<super::lock::Remote> {
        None
    }

    /// The RocksDB directory, for engines that have one.
    fn dir(&self) -> Option<&Path> {
        None
    }

    /// Writes a consistent point-in-time copy of the whole database into
    /// `dir` (RocksDB checkpoint).
    ///
    /// # Errors
    /// [`MetaError::Unsupported`] on engines without file checkpoints
    /// (PostgreSQL has its own backup tools); the engine's error otherwise.
    fn checkpoint(&self, _dir: &Path) -> Result<(), MetaError> {
        Err(MetaError::Unsupported(
            "file checkpoints (metadata backups) exist only for RocksDB; back up PostgreSQL \
             with its own tools (pg_dump, base backups) or rebuild with `eden-cas reindex`",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(&[]), None);
    }
}
