//! The embedded metadata engine: RocksDB in `<data-dir>/meta`, one column
//! family per table, a 64 MiB block cache shared by all of them, bloom
//! filters on point lookups. Its lock admits one process per directory.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options,
    WriteBatch, WriteOptions,
};

use super::kv::{Cf, Kv, KvIter, Op, ScanSpec};
use super::{ALL_CFS, MetaError};

/// A RocksDB database with every column family of [`ALL_CFS`].
pub struct Rocks {
    db: DB,
}

impl Rocks {
    /// Opens (creating if needed) the database in `dir`.
    ///
    /// # Errors
    /// RocksDB's errors (I/O, lock held by another process, corruption).
    pub fn open(dir: &Path) -> Result<Self, MetaError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        // RocksDB's info log (flush and compaction chatter, a statistics dump
        // every 10 min) was ~190 KB after one deposit: 0.14 % of a 128 MiB
        // store, counted in the data directory (issue 17). Warnings and
        // errors are still logged.
        opts.set_log_level(rocksdb::LogLevel::Warn);
        let cache = Cache::new_lru_cache(64 << 20);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut bb = BlockBasedOptions::default();
            bb.set_block_cache(&cache);
            bb.set_bloom_filter(10.0, false);
            let mut o = Options::default();
            o.set_block_based_table_factory(&bb);
            ColumnFamilyDescriptor::new(*name, o)
        });
        Ok(Rocks {
            db: DB::open_cf_descriptors(&opts, dir, cfs)?,
        })
    }

    fn cf(&self, name: Cf) -> &rocksdb::ColumnFamily {
        // Every name in ALL_CFS is created at open; a missing one is a bug.
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} missing"))
    }
}

impl Kv for Rocks {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
        Ok(self.db.get_pinned_cf(self.cf(cf), key)?.map(|v| v.to_vec()))
    }

    fn multi_get(&self, cf: Cf, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, MetaError> {
        self.db
            .batched_multi_get_cf(self.cf(cf), keys.iter(), false)
            .into_iter()
            .map(|r| Ok(r?.map(|v| v.to_vec())))
            .collect()
    }

    fn scan<'a>(&'a self, cf: Cf, spec: ScanSpec<'_>) -> KvIter<'a> {
        let prefix = spec.prefix.map(<[u8]>::to_vec);
        // Without `from`, a prefix scan starts at the prefix (forward) or
        // at the last key under it (reverse: seek to the prefix's end).
        let end = prefix.as_deref().and_then(super::kv::prefix_end);
        let mode = match (spec.from, spec.reverse) {
            (Some(k), false) => IteratorMode::From(k, Direction::Forward),
            (Some(k), true) => IteratorMode::From(k, Direction::Reverse),
            (None, false) => match &prefix {
                Some(p) => IteratorMode::From(p, Direction::Forward),
                None => IteratorMode::Start,
            },
            (None, true) => match &end {
                Some(e) => IteratorMode::From(e, Direction::Reverse),
                None => IteratorMode::End,
            },
        };
        let iter = self.db.iterator_cf(self.cf(cf), mode);
        // A reverse seek to the prefix's end lands on that key if it exists.
        let skip = if spec.reverse && spec.from.is_none() {
            end.clone()
        } else {
            None
        };
        Box::new(
            iter.map(|item| {
                item.map(|(k, v)| (k.into_vec(), v.into_vec()))
                    .map_err(MetaError::from)
            })
            .skip_while(move |item| matches!((item, &skip), (Ok((k, _)), Some(e)) if k == e))
            .take_while(move |item| match (item, &prefix) {
                (Ok((k, _)), Some(p)) => k.starts_with(p),
                _ => true,
            }),
        )
    }

    fn write(&self, ops: Vec<Op>, sync: bool) -> Result<(), MetaError> {
        let mut batch = WriteBatch::default();
        for op in ops {
            match op {
                Op::Put(cf, k, v) => batch.put_cf(self.cf(cf), k, v),
                Op::Delete(cf, k) => batch.delete_cf(self.cf(cf), k),
                Op::DeleteRange(cf, from, to) => batch.delete_range_cf(self.cf(cf), from, to),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(batch, &wo)?;
        Ok(())
    }

    fn estimate_keys(&self, cf: Cf) -> u64 {
        self.db
            .property_int_value_cf(self.cf(cf), "rocksdb.estimate-num-keys")
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    fn flush(&self) -> Result<(), MetaError> {
        for name in ALL_CFS {
            self.db.flush_cf(self.cf(name))?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("rocksdb:{}", self.db.path().display())
    }

    fn dir(&self) -> Option<&Path> {
        Some(self.db.path())
    }

    fn checkpoint(&self, dir: &Path) -> Result<(), MetaError> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(dir)?;
        Ok(())
    }
}
