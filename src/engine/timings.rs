//! How long background maintenance takes: garbage collection, its
//! compaction phase, and scrub passes, as histograms the operator can read
//! on `/metrics` (`http/metrics.rs` exports them).
//!
//! Store-wide figures (invariant 4): only the operator's `/metrics` shows
//! them.

use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;

/// Duration histograms of maintenance work, in seconds.
#[derive(Debug)]
pub struct Timings {
    /// Whole garbage collections (dry runs excluded).
    pub gc: Histogram,
    /// The compaction phase of each garbage collection (dry runs excluded).
    pub compaction: Histogram,
    /// Background scrub passes.
    pub scrub: Histogram,
}

/// Buckets from 10 ms to 4 hours: a GC of an empty store and one of a
/// large store both land inside a bucket.
pub const MAINTENANCE_BUCKETS: [f64; 13] = [
    0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

fn maintenance_buckets() -> Histogram {
    Histogram::new(MAINTENANCE_BUCKETS)
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            gc: maintenance_buckets(),
            compaction: maintenance_buckets(),
            scrub: maintenance_buckets(),
        }
    }
}

impl Timings {
    /// Records `d` in `histogram`.
    pub(crate) fn observe(histogram: &Histogram, d: Duration) {
        histogram.observe(d.as_secs_f64());
    }
}
