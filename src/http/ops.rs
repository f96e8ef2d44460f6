//! Operational endpoints: liveness, readiness and Prometheus metrics.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, web};

use super::AppState;

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
    let meta = state.engine.meta().clone();
    let ok = tokio::task::spawn_blocking(move || meta.system("token-hash-key").is_ok())
        .await
        .unwrap_or(false);
    if ok {
        HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("metadata store unavailable\n")
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
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
    let chunks = state.engine.meta().estimated_chunks();
    let _ = writeln!(
        out,
        "# HELP eden_cas_chunks_indexed Chunk index entries (estimate).\n# TYPE eden_cas_chunks_indexed gauge\neden_cas_chunks_indexed {chunks}"
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}
