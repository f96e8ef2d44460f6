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
use tracing_subscriber::EnvFilter;

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

/// Installs the global subscriber: `RUST_LOG` (default `info`) in
/// `format`, on stderr, coloured only when stderr is a terminal. A second
/// call does nothing.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
