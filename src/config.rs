//! One configuration: every setting is defined once, in [`Settings`]
//! (`config/settings.rs`), which derives the flags, the `EDEN_CAS_…`
//! environment variables and the TOML file's keys. Layers — built-in
//! defaults < TOML file < environment < flags — merge by one generic rule
//! (`config/layers.rs`), which records where each value came from;
//! `config/validate.rs` turns the result into [`Config`]; `eden-cas
//! check-config` prints every effective setting with its source
//! (`config/report.rs`).

mod layers;
pub mod report;
mod settings;
mod validate;
mod values;

use std::path::PathBuf;
use std::time::Duration;

pub use layers::{Effective, Key, Layer, SettingsArgs, Source, catalog, explain_value_error};
pub use settings::{
    BlobTuning, EngineSettings, LifecycleSettings, LimitSettings, MetaSettings, ServerSettings,
    Settings, SingleWriterSettings,
};
pub use values::{Fraction, PerExperiment, Size, Span, parse_size};

use crate::blobs::BlobConfig;
use crate::blobs::lease::LeaseSettings;
use crate::engine::EngineConfig;
use crate::meta::postgres::PgSettings;

/// Which metadata engine holds the store's records.
#[derive(Debug, Clone)]
pub enum MetaStore {
    /// RocksDB in this directory (`<data-dir>/meta`).
    RocksDb(PathBuf),
    /// A PostgreSQL database shared by the nodes.
    Postgres(Box<PgSettings>),
}

/// Errors reading or validating configuration; each names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML file does not parse or has an unknown key.
    #[error("config file {path}: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Parser message.
        detail: String,
    },
    /// A value is out of range or of the wrong type.
    #[error("setting `{setting}`{}: {detail}", origin_note(.origin))]
    Invalid {
        /// Setting name (TOML key; the flag is `--<key>`).
        setting: String,
        /// Where the value came from (`None`: the setting is not given).
        origin: Option<Source>,
        /// What is wrong.
        detail: String,
    },
    /// The settings could not be merged (a bug, not an operator's error).
    #[error("settings: {0}")]
    Internal(String),
}

fn origin_note(origin: &Option<Source>) -> String {
    match origin {
        Some(Source::Default) | None => String::new(),
        Some(s) => format!(" ({s})"),
    }
}

/// The resolved configuration of `serve` and the offline commands.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory (RocksDB in `meta/`, packs in `blobs/`).
    pub data_dir: PathBuf,
    /// Listen address, `host:port` (port 0 picks a free one).
    pub listen: String,
    /// The operator routes' own listener (`admin-listen`; `None`: all
    /// routes on `listen`).
    pub admin_listen: Option<String>,
    /// HTTP worker threads.
    pub http_workers: usize,
    /// Grace period for in-flight requests on shutdown.
    pub shutdown_timeout: Duration,
    /// Upload sessions idle this long expire and release their pins.
    pub upload_idle_timeout: Duration,
    /// A request body that sends nothing for this long is cut.
    pub body_idle_timeout: Duration,
    /// Period of garbage collection inside `serve` (`None`: disabled).
    pub gc_interval: Option<Duration>,
    /// Live-bytes fraction under which GC compacts a pack.
    pub gc_compact_below: f64,
    /// Pack bytes the background scrubber verifies per hour (0: off).
    pub scrub_bytes_per_hour: u64,
    /// Engine tunables.
    pub engine: EngineConfig,
    /// Blob store backend and tunables.
    pub blobs: BlobConfig,
    /// File holding the `/metrics` token (`metrics-token-file`); the
    /// environment variable `EDEN_CAS_METRICS_TOKEN` wins over it.
    pub metrics_token_file: Option<PathBuf>,
    /// Format of the log on stderr (`log-format`).
    pub log_format: crate::logging::LogFormat,
    /// OTLP/HTTP collector that request spans are exported to
    /// (`otlp-endpoint`, base URL without `/v1/traces`).
    pub otlp_endpoint: Option<String>,
    /// PEM certificate chain of the listener (`tls-cert`; `None`: HTTP).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the listener (`tls-key`).
    pub tls_key: Option<PathBuf>,
    /// The single-writer lease in the blob store (`None`: `lease = false`).
    pub lease: Option<LeaseSettings>,
    /// The metadata engine (`meta-store`).
    pub meta_store: MetaStore,
    /// Apply pending schema migrations at startup (`migrate`).
    pub migrate: bool,
    /// The merged settings this was validated from, with their sources.
    pub effective: Effective,
}

impl Config {
    /// Merges defaults < `file` (TOML, if any) < `cli` (flags and
    /// environment) and validates.
    ///
    /// # Errors
    /// The file cannot be read or parsed; a setting is out of range (the
    /// error names it and its source).
    pub fn load(file: Option<&std::path::Path>, cli: &Layer) -> Result<Config, ConfigError> {
        let file = file.map(Layer::from_file).transpose()?.unwrap_or_default();
        let effective = Effective::merge([Layer::defaults()?, file, cli.clone()])?;
        Config::validate(&effective, &|k| std::env::var(k).ok())
    }

    /// The configuration of `settings` over the built-in defaults, for
    /// programs and tests that embed the store (the provider environment,
    /// e.g. `AWS_REGION`, is still read).
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_settings(settings: &Settings) -> Result<Config, ConfigError> {
        let given = Layer::from_settings(settings, &Source::Caller)?;
        let effective = Effective::merge([Layer::defaults()?, given])?;
        Config::validate(&effective, &|k| std::env::var(k).ok())
    }

    /// Validates merged settings; `env` reads provider variables
    /// (`AWS_REGION`, `STORAGE_EMULATOR_HOST`, …), injected for tests.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the setting and its source.
    pub fn validate(
        effective: &Effective,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        validate::validate(effective, env)
    }
}

#[cfg(test)]
mod tests;
