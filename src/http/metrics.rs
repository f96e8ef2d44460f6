//! The metrics `/metrics` exports, through `prometheus-client` (the
//! Prometheus organisation's crate) in the Prometheus text format 0.0.4.
//!
//! Two kinds of figures live in one [`Registry`]:
//!
//! - the engine's store-wide counters and gauges (`engine::Stats`, blob
//!   request counts, cache and index sizes), read at scrape time by
//!   [`EngineCollector`] — their names are unchanged from the hand-written
//!   exposition this replaced;
//! - per-request figures recorded by `http/observe.rs` in [`HttpMetrics`]:
//!   requests and latency by route *template*, method and status class,
//!   body bytes in and out, requests in flight.
//!
//! Labels never carry an id, a path or a token: the route label is the
//! pattern actix matched (`/cas/v1/experiments/{exp}/artifacts/{id}`), or
//! `unmatched`; the method label is one of the standard methods or `other`.
//! Every figure here is for the operator only (invariant 4): `ops.rs`
//! guards `/metrics` with the admin bearer or the metrics token.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::engine::Engine;

/// `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Labels of the request counter and the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method (`GET`, … or `other`).
    pub method: &'static str,
    /// The route template, or `unmatched`.
    pub route: String,
    /// `1xx` … `5xx`.
    pub status: &'static str,
}

/// Labels of the body byte counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method (`GET`, … or `other`).
    pub method: &'static str,
    /// The route template, or `unmatched`.
    pub route: String,
}

/// Latency buckets, 1 ms to 10 minutes: a small GET and a multi-GB
/// deposit both fall inside a bucket.
pub const LATENCY_BUCKETS: [f64; 17] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 600.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Per-request figures, shared by every worker of the server.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    /// `eden_cas_http_requests_total`.
    pub requests: Family<RequestLabels, Counter>,
    /// `eden_cas_http_request_duration_seconds`.
    pub duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    /// `eden_cas_http_request_bytes_total`: request body bytes read.
    pub bytes_in: Family<RouteLabels, Counter>,
    /// `eden_cas_http_response_bytes_total`: response body bytes sent.
    pub bytes_out: Family<RouteLabels, Counter>,
    /// `eden_cas_http_requests_in_flight`.
    pub in_flight: Gauge,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            in_flight: Gauge::default(),
        }
    }
}

/// Everything `/metrics` shows.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The request figures `observe.rs` records.
    pub http: HttpMetrics,
}

impl Metrics {
    /// The registry of `engine`'s figures and fresh request figures.
    pub fn new(engine: Arc<Engine>) -> Metrics {
        let http = HttpMetrics::default();
        let mut registry = Registry::default();
        // `register` appends the full stop to each help text.
        registry.register(
            "eden_cas_http_requests",
            "HTTP requests answered, by route template, method and status class",
            http.requests.clone(),
        );
        registry.register(
            "eden_cas_http_request_duration_seconds",
            "Time from the request's arrival to the last byte of its answer, by route template, method and status class",
            http.duration.clone(),
        );
        registry.register(
            "eden_cas_http_request_bytes",
            "Request body bytes read, by route template and method (rate() of the deposit routes is the ingest throughput)",
            http.bytes_in.clone(),
        );
        registry.register(
            "eden_cas_http_response_bytes",
            "Response body bytes sent, by route template and method (rate() of the fetch routes is the fetch throughput)",
            http.bytes_out.clone(),
        );
        registry.register(
            "eden_cas_http_requests_in_flight",
            "Requests received whose answer has not been sent to its end",
            http.in_flight.clone(),
        );
        let t = &engine.stats.timings;
        registry.register(
            "eden_cas_gc_duration_seconds",
            "Duration of garbage collections (dry runs excluded)",
            t.gc.clone(),
        );
        registry.register(
            "eden_cas_gc_compaction_duration_seconds",
            "Duration of the compaction phase of garbage collections (dry runs excluded)",
            t.compaction.clone(),
        );
        registry.register(
            "eden_cas_scrub_pass_duration_seconds",
            "Duration of scrub passes",
            t.scrub.clone(),
        );
        registry.register_collector(Box::new(EngineCollector { engine }));
        Metrics { registry, http }
    }

    /// The exposition text.
    ///
    /// # Errors
    /// Formatting into a `String` does not fail; the error is the encoder's
    /// signature.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Reads the engine's store-wide figures at scrape time.
pub struct EngineCollector {
    engine: Arc<Engine>,
}

impl std::fmt::Debug for EngineCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineCollector").finish_non_exhaustive()
    }
}

/// Encodes one unlabelled metric.
fn one(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(m)
}

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.engine.stats;
        // Counter names get their `_total` when encoded.
        let counters = [
            (
                "eden_cas_deposits",
                "Artifacts committed since start.",
                &s.deposits,
            ),
            (
                "eden_cas_logical_bytes",
                "Bytes received by committed deposits.",
                &s.logical_bytes,
            ),
            (
                "eden_cas_new_raw_bytes",
                "Raw bytes of chunks stored for the first time.",
                &s.new_raw_bytes,
            ),
            (
                "eden_cas_pack_bytes_written",
                "Bytes of pack objects written.",
                &s.pack_bytes_written,
            ),
            (
                "eden_cas_packs_written",
                "Pack objects written.",
                &s.packs_written,
            ),
            (
                "eden_cas_bytes_served",
                "Verified bytes served.",
                &s.bytes_served,
            ),
            (
                "eden_cas_integrity_failures",
                "Chunks that failed verification on read.",
                &s.integrity_failures,
            ),
            (
                "eden_cas_chunk_cache_hits",
                "Chunks served from the verified-chunk cache.",
                &s.chunk_cache_hits,
            ),
            (
                "eden_cas_chunk_cache_misses",
                "Chunks read from the blob store because the cache lacked them.",
                &s.chunk_cache_misses,
            ),
            (
                "eden_cas_scrub_bytes",
                "Pack bytes read and verified by the background scrubber.",
                &s.scrub_bytes,
            ),
            (
                "eden_cas_scrub_packs",
                "Packs verified by the background scrubber.",
                &s.scrub_packs,
            ),
            (
                "eden_cas_scrub_corrupt_chunks",
                "Chunks the scrubber found corrupt and marked bad.",
                &s.scrub_corrupt_chunks,
            ),
            (
                "eden_cas_gc_runs",
                "Garbage collections completed.",
                &s.gc_runs,
            ),
            (
                "eden_cas_gc_reclaimed_bytes",
                "Pack bytes reclaimed by garbage collection (deleted minus rewritten).",
                &s.gc_bytes_reclaimed,
            ),
            (
                "eden_cas_gc_packs_deleted",
                "Pack objects deleted by garbage collection.",
                &s.gc_packs_deleted,
            ),
            (
                "eden_cas_gc_chunks_removed",
                "Chunk index entries removed by garbage collection.",
                &s.gc_chunks_removed,
            ),
            (
                "eden_cas_artifacts_expired",
                "Expired artifacts removed.",
                &s.artifacts_expired,
            ),
            (
                "eden_cas_read_relocations",
                "Reads that found a pack compacted away and re-resolved its chunks.",
                &s.read_relocations,
            ),
        ];
        for (name, help, v) in counters {
            let c = ConstCounter::new(v.load(Ordering::Relaxed));
            one(&mut encoder, name, help, &c)?;
        }
        one(
            &mut encoder,
            "eden_cas_gc_last_duration_seconds",
            "Duration of the last garbage collection.",
            &ConstGauge::new(s.gc_last_duration_ms.load(Ordering::Relaxed) as f64 / 1000.0),
        )?;
        one(
            &mut encoder,
            "eden_cas_gc_last_reclaimed_bytes",
            "Bytes reclaimed by the last garbage collection.",
            &ConstGauge::new(s.gc_last_reclaimed_bytes.load(Ordering::Relaxed)),
        )?;
        let r = self.engine.blob_requests();
        let mut family = encoder.encode_descriptor(
            "eden_cas_blob_requests",
            "Blob store requests by kind (writes in the S3 request model).",
            None,
            MetricType::Counter,
        )?;
        for (kind, v) in [
            ("get", r.get),
            ("head", r.head),
            ("put", r.put),
            ("post", r.post),
            ("list", r.list),
            ("delete", r.delete),
            ("retry", r.retries),
        ] {
            ConstCounter::new(v).encode(family.encode_family(&[("kind", kind)])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "eden_cas_blob_bytes",
            "Bytes moved to and from the blob store.",
            None,
            MetricType::Counter,
        )?;
        for (dir, v) in [("read", r.bytes_read), ("written", r.bytes_written)] {
            ConstCounter::new(v).encode(family.encode_family(&[("dir", dir)])?)?;
        }
        one(
            &mut encoder,
            "eden_cas_chunk_cache_bytes",
            "Bytes held by the verified-chunk cache.",
            &ConstGauge::new(self.engine.chunk_cache_bytes()),
        )?;
        one(
            &mut encoder,
            "eden_cas_chunks_indexed",
            "Chunk index entries (estimate).",
            &ConstGauge::new(self.engine.estimated_chunks()),
        )
    }
}
