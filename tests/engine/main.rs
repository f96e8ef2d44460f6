//! Engine-level integration tests: the library driven in-process over real
//! RocksDB and a real fs blob store in temporary directories (ingest, read,
//! codecs, GC, fsck and scrub, healing, recovery, fault injection), with
//! property tests against reference models. One binary, so RocksDB and
//! actix are linked once; `cargo test --test engine gc_model::` runs one
//! file's tests.

#[allow(dead_code, unused_imports)]
#[path = "../support/mod.rs"]
mod support;

mod audit_log;
mod codec_engine;
mod engine_props;
mod faults;
mod frames;
mod fsck;
mod gc_crash;
mod gc_model;
mod gc_stress;
mod group_commit;
mod heal_at_once;
mod meta_engines;
mod no_oracle_props;
mod recovery;
mod refs_model;
mod v1_missing_props;
