//! The process's log: `tracing` events on stderr, filtered by `RUST_LOG`
//! (default `info`), as human-readable text or one JSON object per line
//! (`log-format`). Colour codes only when stderr is a terminal, so a log
//! redirected to a file or collected by a supervisor holds no escape bytes.
//!
//! The access log (one line per HTTP request, `http/observe.rs`) is a
//! target of its own, `eden_cas::access`, so `RUST_LOG` can keep or drop it
//! independently (`RUST_LOG=info,eden_cas::access=off`).

use std::io::IsTerminal as _;

use serde::{Deserialize, Serialize};
use tracing_subscriber::{EnvFilter, Layer as _};

/// How log lines are written (`log-format`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `timestamp LEVEL target: message key=value …`.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the
    /// message as `message` and every field at the top level.
    Json,
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Keeps the trace exporter alive; dropping it flushes the spans still
/// buffered (at process exit).
#[must_use = "spans are flushed when the guard drops"]
pub struct LogGuard {
    tracer: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("eden-cas: trace export did not flush: {e}");
        }
    }
}

/// The OTLP/HTTP (protobuf) exporter of spans to `<endpoint>/v1/traces`,
/// batched on a thread of its own (`OTEL_BSP_*` variables tune the batch).
fn tracer_provider(
    endpoint: &str,
) -> Result<opentelemetry_sdk::trace::SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::{Protocol, WithExportConfig as _};
    // The exporter's reqwest client needs rustls' process-wide provider,
    // which the blob store would otherwise install only later.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{endpoint}/v1/traces"))
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("eden-cas")
        .build();
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Installs the global subscriber: `RUST_LOG` (default `info`) in
/// `format`, on stderr, coloured only when stderr is a terminal; with an
/// `otlp` endpoint, spans (one `request` span per HTTP request) are also
/// exported there. A second call installs nothing.
pub fn init(format: LogFormat, otlp: Option<&str>) -> LogGuard {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    let mut failed = None;
    let tracer = otlp.and_then(|url| match tracer_provider(url) {
        Ok(p) => Some(p),
        Err(e) => {
            failed = Some(e);
            None
        }
    });
    let otel = tracer.as_ref().map(|p| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer().with_tracer(p.tracer("eden-cas"))
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    if let Some(e) = failed {
        tracing::error!(error = %e, "otlp-endpoint: the trace exporter did not start; no spans are exported");
    }
    LogGuard { tracer }
}
