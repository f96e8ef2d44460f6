//! Command-line interface: `eden-cas serve` and friends.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

/// eden-cas: a content-addressed, deduplicating artifact store.
#[derive(Debug, Parser)]
#[command(name = "eden-cas", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (EDEN v0 surface) on embedded defaults.
    Serve(ServeArgs),
}

/// Settings of `serve`; each also reads `EDEN_CAS_<NAME>` from the environment.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file (lowest precedence after built-in defaults).
    #[arg(long, env = "EDEN_CAS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory: RocksDB in `meta/`, packs in `blobs/` [default: ./eden-cas-data].
    #[arg(long, env = "EDEN_CAS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Listen address host:port; port 0 picks a free port [default: 127.0.0.1:8080].
    #[arg(long, env = "EDEN_CAS_LISTEN")]
    pub listen: Option<String>,
    /// Largest artifact accepted, inclusive (e.g. 104857600 or 100MiB) [default: 100MiB].
    #[arg(long, env = "EDEN_CAS_MAX_ARTIFACT_BYTES")]
    pub max_artifact_bytes: Option<String>,
    /// Close packs at this size [default: 64MiB].
    #[arg(long, env = "EDEN_CAS_PACK_TARGET_BYTES")]
    pub pack_target_bytes: Option<String>,
    /// zstd level for chunks, 0 disables [default: 1].
    #[arg(long, env = "EDEN_CAS_COMPRESSION_LEVEL")]
    pub compression_level: Option<i32>,
    /// HTTP worker threads [default: number of CPUs].
    #[arg(long, env = "EDEN_CAS_HTTP_WORKERS")]
    pub http_workers: Option<usize>,
}

impl From<&ServeArgs> for Overrides {
    fn from(a: &ServeArgs) -> Self {
        Overrides {
            config: a.config.clone(),
            data_dir: a.data_dir.clone(),
            listen: a.listen.clone(),
            max_artifact_bytes: a.max_artifact_bytes.clone(),
            pack_target_bytes: a.pack_target_bytes.clone(),
            compression_level: a.compression_level,
            http_workers: a.http_workers,
        }
    }
}
