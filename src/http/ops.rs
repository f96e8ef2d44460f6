//! Operational endpoints: liveness, readiness and Prometheus metrics.
//!
//! `/healthz` and `/readyz` are open and say nothing about content. The
//! metrics are store-wide figures — bytes new to the *store*, packs written,
//! chunks indexed — which would tell anyone who can reach the port whether a
//! deposit's bytes were already stored by someone else. They are for the
//! operator only (invariant 4): `/metrics` answers 401 unless the request
//! carries the admin bearer or, when one is configured, the metrics token as
//! `Authorization: Bearer metrics:<token>` (the form Prometheus sends from
//! `credentials_file`).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::auth::{authorize_admin, unauthorized};
use super::problem::ApiError;
use crate::auth::admin_token_matches;

/// The principal name of the metrics credential.
pub const METRICS_PRINCIPAL: &str = "metrics";

/// Registers `/healthz`, `/readyz`, `/metrics`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.engine.ready().await {
        HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("metadata store unavailable\n")
    }
}

/// Accepts `Bearer metrics:<token>` (compared in constant time) when a
/// metrics token is configured, else the admin bearer; anything else is 401
/// (a worker bearer 403).
async fn authorize_metrics(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim();
    let metrics_secret = header
        .split_once([' ', '\t'])
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .and_then(|(_, cred)| cred.trim().split_once(':'))
        .filter(|(principal, _)| *principal == METRICS_PRINCIPAL)
        .map(|(_, secret)| secret);
    match (metrics_secret, &state.metrics_token) {
        (Some(presented), Some(expected)) if admin_token_matches(expected, presented) => Ok(()),
        (Some(_), _) => Err(unauthorized()),
        (None, _) => authorize_admin(req, &state.engine).await,
    }
}

async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize_metrics(&req, &state)
        .await
        .map_err(|e| e.at(&req))?;
    Ok(render_metrics(&state))
}

fn render_metrics(state: &AppState) -> HttpResponse {
    let s = &state.engine.stats;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    };
    counter(
        "eden_cas_deposits_total",
        "Artifacts committed since start.",
        s.deposits.load(Ordering::Relaxed),
    );
    counter(
        "eden_cas_logical_bytes_total",
        "Bytes received by committed deposits.",
        s.logical_bytes.load(Ordering::Relaxed),
    );
    counter(
        "eden_cas_new_raw_bytes_total",
        "Raw bytes of chunks stored for the first time.",
        s.new_raw_bytes.load(Ordering::Relaxed),
    );
    counter(
        "eden_cas_pack_bytes_written_total",
        "Bytes of pack objects written.",
        s.pack_bytes_written.load(Ordering::Relaxed),
    );
    counter(
        "eden_cas_packs_written_total",
        "Pack objects written.",
        s.packs_written.load(Ordering::Relaxed),
    );
    counter(
        "eden_cas_bytes_served_total",
        "Verified bytes served.",
        s.bytes_served.load(Ordering::Relaxed),
    );
    counter(
        "eden_cas_integrity_failures_total",
        "Chunks that failed verification on read.",
        s.integrity_failures.load(Ordering::Relaxed),
    );
    counter(
        "eden_cas_chunk_cache_hits_total",
        "Chunks served from the verified-chunk cache.",
        s.chunk_cache_hits.load(Ordering::Relaxed),
    );
    counter(
        "eden_cas_chunk_cache_misses_total",
        "Chunks read from the blob store because the cache lacked them.",
        s.chunk_cache_misses.load(Ordering::Relaxed),
    );
    counter(
        "eden_cas_scrub_bytes_total",
        "Pack bytes read and verified by the background scrubber.",
        s.scrub_bytes.load(Ordering::Relaxed),
    );
    counter(
        "eden_cas_scrub_packs_total",
        "Packs verified by the background scrubber.",
        s.scrub_packs.load(Ordering::Relaxed),
    );
    counter(
        "eden_cas_scrub_corrupt_chunks_total",
        "Chunks the scrubber found corrupt and marked bad.",
        s.scrub_corrupt_chunks.load(Ordering::Relaxed),
    );
    counter(
        "eden_cas_gc_runs_total",
        "Garbage collections completed.",
        s.gc_runs.load(Ordering::Relaxed),
    );
    counter(
        "eden_cas_gc_reclaimed_bytes_total",
        "Pack bytes reclaimed by garbage collection (deleted minus rewritten).",
        s.gc_bytes_reclaimed.load(Ordering::Relaxed),
    );
    counter(
        "eden_cas_gc_packs_deleted_total",
        "Pack objects deleted by garbage collection.",
        s.gc_packs_deleted.load(Ordering::Relaxed),
    );
    counter(
        "eden_cas_gc_chunks_removed_total",
        "Chunk index entries removed by garbage collection.",
        s.gc_chunks_removed.load(Ordering::Relaxed),
    );
    counter(
        "eden_cas_artifacts_expired_total",
        "Expired artifacts removed.",
        s.artifacts_expired.load(Ordering::Relaxed),
    );
    counter(
        "eden_cas_read_relocations_total",
        "Reads that found a pack compacted away and re-resolved its chunks.",
        s.read_relocations.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP eden_cas_gc_last_duration_seconds Duration of the last garbage collection.\n# TYPE eden_cas_gc_last_duration_seconds gauge\neden_cas_gc_last_duration_seconds {:.3}\n# HELP eden_cas_gc_last_reclaimed_bytes Bytes reclaimed by the last garbage collection.\n# TYPE eden_cas_gc_last_reclaimed_bytes gauge\neden_cas_gc_last_reclaimed_bytes {}",
        s.gc_last_duration_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        s.gc_last_reclaimed_bytes.load(Ordering::Relaxed)
    );
    let r = state.engine.blob_requests();
    let _ = writeln!(
        out,
        "# HELP eden_cas_blob_requests_total Blob store requests by kind (writes in the S3 request model).\n# TYPE eden_cas_blob_requests_total counter"
    );
    for (kind, v) in [
        ("get", r.get),
        ("head", r.head),
        ("put", r.put),
        ("post", r.post),
        ("list", r.list),
        ("delete", r.delete),
        ("retry", r.retries),
    ] {
        let _ = writeln!(out, "eden_cas_blob_requests_total{{kind=\"{kind}\"}} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP eden_cas_blob_bytes_total Bytes moved to and from the blob store.\n# TYPE eden_cas_blob_bytes_total counter\neden_cas_blob_bytes_total{{dir=\"read\"}} {}\neden_cas_blob_bytes_total{{dir=\"written\"}} {}",
        r.bytes_read, r.bytes_written
    );
    let _ = writeln!(
        out,
        "# HELP eden_cas_chunk_cache_bytes Bytes held by the verified-chunk cache.\n# TYPE eden_cas_chunk_cache_bytes gauge\neden_cas_chunk_cache_bytes {}",
        state.engine.chunk_cache_bytes()
    );
    let chunks = state.engine.estimated_chunks();
    let _ = writeln!(
        out,
        "# HELP eden_cas_chunks_indexed Chunk index entries (estimate).\n# TYPE eden_cas_chunks_indexed gauge\neden_cas_chunks_indexed {chunks}"
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}
