//! Offline maintenance commands: `gc`, `fsck`, `reindex`, `backup`,
//! `restore`. Each opens the store exactly as `serve` does (same settings),
//! so it must not run while a server holds the data directory; RocksDB's
//! lock refuses a second opener with a clear message. A running server
//! offers `gc`, `fsck` and `backup` under `/cas/v1/admin/`.
//!
//! Exit codes: 0 all well, 1 a problem was found (fsck) or the command
//! failed.

use std::process::ExitCode;

use crate::cli::ServeArgs;
use crate::config::{Config, Overrides};

/// One maintenance command.
#[derive(Debug, Clone)]
pub enum Task {
    /// `eden-cas gc`.
    Gc {
        /// Report only.
        dry_run: bool,
        /// JSON report.
        json: bool,
    },
    /// `eden-cas fsck`.
    Fsck {
        /// Whole-content digests too.
        deep: bool,
        /// JSON report.
        json: bool,
    },
    /// `eden-cas reindex`.
    Reindex,
    /// `eden-cas backup`.
    Backup,
    /// `eden-cas restore`.
    Restore {
        /// Backup name; newest when absent.
        from: Option<String>,
    },
}

/// Resolves the settings and runs `task`; prints the report on stdout and
/// errors on stderr.
pub fn run(args: &ServeArgs, task: Task) -> ExitCode {
    let config = match Config::resolve(&Overrides::from(args)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("eden-cas: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eden-cas: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(&config, task)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("eden-cas: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(_config: &Config, task: Task) -> anyhow::Result<ExitCode> {
    anyhow::bail!("{task:?} is not implemented yet")
}
