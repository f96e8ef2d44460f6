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

async fn dispatch(config: &Config, task: Task) -> anyhow::Result<ExitCode> {
    match task {
        Task::Gc { .. } => anyhow::bail!("{task:?} is not implemented yet"),
        Task::Fsck { deep, json } => fsck(config, deep, json).await,
        Task::Reindex => anyhow::bail!("{task:?} is not implemented yet"),
        Task::Backup => anyhow::bail!("{task:?} is not implemented yet"),
        Task::Restore { .. } => anyhow::bail!("{task:?} is not implemented yet"),
    }
}

/// Writes a report on stdout; a reader that went away (`| head`) is not an
/// error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `eden-cas fsck`: the report on stdout (text, or JSON with `--json`);
/// exit code 1 when a problem was found. Read-only: the blob store is not
/// probed (the probe writes) and nothing is repaired.
async fn fsck(config: &Config, deep: bool, json: bool) -> anyhow::Result<ExitCode> {
    let meta_dir = config.data_dir.join("meta");
    if !meta_dir.is_dir() {
        anyhow::bail!(
            "no store at {} (its metadata directory {} does not exist)",
            config.data_dir.display(),
            meta_dir.display()
        );
    }
    let engine = crate::server::open_engine(config)?;
    let report = engine.fsck(deep).await?;
    let text = if json {
        format!("{}\n", serde_json::to_string_pretty(&report)?)
    } else {
        report.to_string()
    };
    write_stdout(&text)?;
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
