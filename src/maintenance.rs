//! Offline maintenance commands: `gc`, `fsck`, `reindex`, `backup`,
//! `restore`. Each opens the store exactly as `serve` does (same settings),
//! so it must not run while a server holds the data directory; RocksDB's
//! lock refuses a second opener with a clear message. A running server
//! offers `gc`, `fsck` and `backup` under `/cas/v1/admin/`.
//!
//! `reindex`, `backup` and `restore` are thin: the work is in
//! `engine/recovery.rs` and `engine/backup.rs` (see
//! `docs/operations/recovery.md`).
//!
//! Exit codes: 0 all well, 1 a problem was found (fsck) or the command
//! failed.

use std::process::ExitCode;

use crate::blobs::BlobStore;
use crate::cli::ServeArgs;
use crate::config::{Config, Overrides};
use crate::engine::backup::{self, dir_has_entries};
use crate::engine::gc::{GcOptions, GcReport};
use crate::engine::recovery;
use crate::server;

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
        Task::Gc { dry_run, json } => gc(config, dry_run, json).await,
        Task::Fsck { deep, json } => fsck(config, deep, json).await,
        Task::Reindex => reindex(config).await,
        Task::Backup => backup(config).await,
        Task::Restore { from } => restore(config, from).await,
    }
}

/// Opens the stores off the runtime's threads (opening may reindex over the
/// blob store while the probe's pooled connections need the runtime).
async fn open(
    config: &Config,
    opener: fn(&Config) -> Result<std::sync::Arc<crate::engine::Engine>, server::ServerError>,
) -> anyhow::Result<std::sync::Arc<crate::engine::Engine>> {
    let config = config.clone();
    Ok(tokio::task::spawn_blocking(move || opener(&config)).await??)
}

/// Probes the blob store as `serve` does, so a bad setting stops the
/// command with the line that names the fix.
async fn probe_blobs(config: &Config) -> anyhow::Result<()> {
    crate::blobs::probe::check(&config.blobs).await?;
    Ok(())
}

/// `eden-cas reindex`: rebuild the chunk index and manifests from the blob
/// store; print the report.
async fn reindex(config: &Config) -> anyhow::Result<ExitCode> {
    probe_blobs(config).await?;
    let engine = open(config, server::open_engine_for_recovery).await?;
    let report = recovery::reindex(engine.meta(), engine.blobs()).await?;
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// `eden-cas backup`: write a metadata backup to the blob store.
async fn backup(config: &Config) -> anyhow::Result<ExitCode> {
    probe_blobs(config).await?;
    let engine = open(config, server::open_engine).await?;
    let report = engine.backup().await?;
    println!(
        "backup {} written: {} files, {} bytes, under backups/{}/ in {}",
        report.name,
        report.files,
        report.bytes,
        report.name,
        engine.blobs().describe()
    );
    Ok(ExitCode::SUCCESS)
}

/// `eden-cas restore`: put a backup in place of a missing metadata
/// directory, then reindex so packs written after the backup are indexed.
async fn restore(config: &Config, from: Option<String>) -> anyhow::Result<ExitCode> {
    let meta_dir = config.data_dir.join("meta");
    if dir_has_entries(&meta_dir) {
        anyhow::bail!(
            "{} exists and is not empty: restore never writes over metadata. Stop the server, \
             move the directory aside (e.g. `mv {0} {0}.old`) and run restore again",
            meta_dir.display()
        );
    }
    probe_blobs(config).await?;
    let blobs = BlobStore::open(&config.blobs)?;
    let listing = backup::list_backups(&blobs).await?;
    let name = match from {
        Some(name) if listing.complete.contains(&name) => name,
        Some(name) if listing.incomplete.contains(&name) => anyhow::bail!(
            "backup {name} is incomplete (no {}: it was interrupted); complete backups: {}",
            backup::BACKUP_INDEX,
            names(&listing.complete)
        ),
        Some(name) => anyhow::bail!(
            "no backup named {name} under backups/ in {}; complete backups: {}",
            blobs.describe(),
            names(&listing.complete)
        ),
        None => match listing.complete.last() {
            Some(name) => name.clone(),
            None => anyhow::bail!(
                "no complete backup under backups/ in {}: nothing to restore from \
                 (`eden-cas reindex` rebuilds what the blob store alone holds)",
                blobs.describe()
            ),
        },
    };
    std::fs::create_dir_all(&config.data_dir)?;
    let restored = backup::restore_backup(&blobs, &meta_dir, &name).await?;
    println!(
        "restored backup {} (taken {}): {} files, {} bytes into {}",
        restored.name,
        restored.created_at,
        restored.files,
        restored.bytes,
        meta_dir.display()
    );
    drop(blobs);
    let engine = open(config, server::open_engine_for_recovery).await?;
    let report = recovery::reindex(engine.meta(), engine.blobs()).await?;
    print!("{report}");
    if !report.unclaimed_manifests.is_empty() {
        println!(
            "{} unclaimed manifests: content committed after the backup (or deleted and not \
             yet collected); their bytes are intact, see docs/operations/recovery.md",
            report.unclaimed_manifests.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn names(list: &[String]) -> String {
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// `eden-cas gc`: one full run; the report on stdout.
async fn gc(config: &Config, dry_run: bool, json: bool) -> anyhow::Result<ExitCode> {
    probe_blobs(config).await?;
    let engine = open(config, server::open_engine).await?;
    let opts = GcOptions {
        dry_run,
        compact_below: config.gc_compact_below,
    };
    let report = engine.gc(opts).await?;
    flush(&engine).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", gc_text(&report));
        if let Some(kib) = peak_rss_kib() {
            println!("peak RSS      {:.1} MiB", kib as f64 / 1024.0);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Flushes RocksDB before the process exits.
async fn flush(engine: &std::sync::Arc<crate::engine::Engine>) {
    let meta = engine.meta().clone();
    match tokio::task::spawn_blocking(move || meta.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "metadata flush failed"),
        Err(e) => tracing::warn!(error = %e, "metadata flush task failed"),
    }
}

/// This process's peak resident set size (Linux `VmHWM`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Human-readable GC report.
fn gc_text(r: &GcReport) -> String {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let verb = if r.dry_run {
        "would reclaim"
    } else {
        "reclaimed"
    };
    format!(
        "garbage collection{}\n\
         artifacts     {} live, {} expired{}\n\
         chunks        {} live of {} indexed; {} entries removed, {} moved, {} kept (pinned during the run)\n\
         packs         {} ({:.1} MiB, {:.1} MiB live): {} without live chunks, {} to compact, {} orphans\n\
         packs         {} deleted, {} written ({:.1} MiB)\n\
         metadata      {} segments, {} manifests removed\n\
         {verb:<13} {:.1} MiB in {:.2} s\n",
        if r.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        },
        r.artifacts_live,
        r.artifacts_expired,
        if r.dry_run { "" } else { " (removed)" },
        r.chunks_live,
        r.chunks_indexed,
        r.chunks_removed,
        r.chunks_moved,
        r.chunks_kept_pinned,
        r.packs,
        mib(r.pack_bytes),
        mib(r.live_bytes),
        r.packs_dead,
        r.packs_to_compact,
        r.orphan_packs,
        r.packs_deleted,
        r.packs_written,
        mib(r.bytes_written),
        r.segments_deleted,
        r.manifests_deleted,
        mib(r.bytes_reclaimed),
        r.elapsed_ms as f64 / 1000.0,
    )
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
    let engine = open(config, server::open_engine).await?;
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
