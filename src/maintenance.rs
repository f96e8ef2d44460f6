//! Offline maintenance commands: `gc`, `fsck`, `reindex`, `backup`,
//! `restore`, and `audit export` (`maintenance/audit.rs`, which reads the
//! blob store only). Each opens the store exactly as `serve` does (same settings),
//! so it must not run while a server holds the data directory; RocksDB's
//! lock refuses a second opener with a clear message. A running server
//! offers `gc`, `fsck` and `backup` under `/cas/v1/admin/`.
//!
//! A maintenance command never creates or changes a store it was not asked
//! to: the data directory (and, except for `reindex` and `restore`, its
//! metadata) and a local blob directory must already exist, no admin token
//! file is written, and the metadata lock is taken before anything else.
//! Commands that write (`gc`, `reindex`, `backup`, `restore`) also take the
//! blob store's writer lease (`blobs/lease.rs`) and renew it while they
//! run, so they are refused while a server on another data directory uses
//! the same blob store. `fsck` and `gc --dry-run` only read and take no
//! lease.
//!
//! `reindex`, `backup` and `restore` are thin: the work is in
//! `engine/recovery.rs` and `engine/backup.rs` (see
//! `docs/operations/recovery.md`).
//!
//! Exit codes: 0 all well, 1 a problem was found (fsck) or the command
//! failed.

mod audit;

use std::process::ExitCode;

use std::sync::Arc;

use crate::blobs::lease::Lease;
use crate::blobs::{Backend, BlobStore};
use crate::cli::ServeArgs;
use crate::config::{Config, MetaStore};
use crate::engine::Engine;
use crate::engine::backup::{self, dir_has_entries};
use crate::engine::gc::{GcOptions, GcReport};
use crate::server::{self, OpenMode};

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

pub use audit::export as audit_export;

/// `eden-cas migrate`: brings the PostgreSQL schema up to this binary's
/// version and prints where it stood before and after. A schema ahead of
/// this binary is refused untouched; RocksDB has nothing to migrate.
pub fn migrate(args: &ServeArgs) -> ExitCode {
    use crate::config::MetaStore;
    use crate::meta::postgres::Postgres;
    let config = match args.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("eden-cas: {e}");
            return ExitCode::FAILURE;
        }
    };
    let MetaStore::Postgres(pg) = &config.meta_store else {
        println!("meta-store is rocksdb: nothing to migrate (its format is checked when opened)");
        return ExitCode::SUCCESS;
    };
    let result = Postgres::connect(pg).and_then(|p| {
        let before = p.schema_version()?;
        let after = p.migrate()?;
        Ok((p.schema().to_string(), before, after))
    });
    match result {
        Ok((schema, before, after)) => {
            println!(
                "schema {schema} at {}: version {} -> {} (this eden-cas: {})",
                pg.display, before.applied, after.applied, after.supported
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eden-cas: metadata store {}: {e}", pg.display);
            ExitCode::FAILURE
        }
    }
}

/// Resolves the settings and runs `task`; prints the report on stdout and
/// errors on stderr.
pub fn run(args: &ServeArgs, task: Task) -> ExitCode {
    let config = match args.load() {
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

/// An engine opened for one command, with the lease it holds.
struct Opened {
    engine: Arc<Engine>,
    lease: Option<Arc<Lease>>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl Opened {
    /// Writes the audit events the command recorded (GC's expiries), then
    /// stops renewing and releases the lease.
    async fn close(self) {
        if let Err(e) = self.engine.audit_flush().await {
            tracing::error!(error = %e, "audit events of this command not written");
        }
        if let Some(h) = self.heartbeat {
            h.abort();
        }
        if let Some(l) = self.lease {
            l.release().await;
        }
    }
}

/// Opens the store for `command` without creating anything, under the
/// writer lease (renewed while the command runs; GC re-checks it before
/// each destructive phase).
async fn open(config: &Config, command: &str, reindex: bool) -> anyhow::Result<Opened> {
    let (engine, lease) = server::open_leased(config, command, OpenMode::Offline, reindex).await?;
    let heartbeat = lease.as_ref().map(|l| l.spawn_heartbeat(|_| {}));
    Ok(Opened {
        engine,
        lease,
        heartbeat,
    })
}

/// What a command needs to exist before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// The data directory with non-empty metadata (`gc`, `fsck`, `backup`).
    Metadata,
    /// The data directory (`reindex` rebuilds the metadata inside it).
    DataDir,
    /// Only the blob store (`restore` creates the data directory).
    BlobStore,
}

/// Opens the store for a command that only reads (`fsck`, `gc --dry-run`):
/// no lease, nothing created.
async fn open_unleased(config: &Config) -> anyhow::Result<Opened> {
    let config = config.clone();
    let engine = tokio::task::spawn_blocking(move || {
        let opened = server::open_meta(&config, OpenMode::Offline)?;
        server::build_engine(&config, opened, OpenMode::Offline, true)
    })
    .await??;
    Ok(Opened {
        engine,
        lease: None,
        heartbeat: None,
    })
}

/// Refuses to run on a store that does not exist: what `needs` names, and
/// a local blob directory, must be there. A typo in `--data-dir` must fail,
/// not create an empty store and report success on it.
fn require_store(config: &Config, needs: Needs) -> anyhow::Result<()> {
    let dir = &config.data_dir;
    if needs != Needs::BlobStore && !dir.is_dir() {
        anyhow::bail!(
            "no store at {}: the data directory does not exist (check --data-dir,              EDEN_CAS_DATA_DIR or data-dir in the config file); maintenance commands never              create a store",
            dir.display()
        );
    }
    if let MetaStore::RocksDb(meta_dir) = &config.meta_store
        && needs == Needs::Metadata
        && !dir_has_entries(meta_dir)
    {
        anyhow::bail!(
            "no store at {}: its metadata directory {} is missing or empty (check --data-dir;              `eden-cas restore` or `eden-cas reindex` rebuild lost metadata)",
            dir.display(),
            meta_dir.display()
        );
    }
    if let Backend::Fs { root } = &config.blobs.backend
        && !root.is_dir()
    {
        anyhow::bail!(
            "no blob store at {}: the directory does not exist (check --blob-store); maintenance              commands never create a store",
            root.display()
        );
    }
    Ok(())
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
    require_store(config, Needs::DataDir)?;
    probe_blobs(config).await?;
    let opened = open(config, "reindex", false).await?;
    let report = opened.engine.reindex().await;
    opened.close().await;
    print!("{}", report?);
    Ok(ExitCode::SUCCESS)
}

/// `eden-cas backup`: write a metadata backup to the blob store.
async fn backup(config: &Config) -> anyhow::Result<ExitCode> {
    require_store(config, Needs::Metadata)?;
    probe_blobs(config).await?;
    let opened = open(config, "backup", true).await?;
    let engine = opened.engine.clone();
    let report = engine.backup().await;
    opened.close().await;
    let report = report?;
    println!(
        "backup {} written: {} files, {} bytes, under backups/{}/ in {}",
        report.name,
        report.files,
        report.bytes,
        report.name,
        engine.describe_blobs()
    );
    Ok(ExitCode::SUCCESS)
}

/// `eden-cas restore`: put a backup in place of a missing metadata
/// directory, then reindex so packs written after the backup are indexed.
async fn restore(config: &Config, from: Option<String>) -> anyhow::Result<ExitCode> {
    require_store(config, Needs::BlobStore)?;
    let MetaStore::RocksDb(meta_dir) = &config.meta_store else {
        anyhow::bail!(
            "restore puts a RocksDB backup in place; a PostgreSQL metadata store is backed up \
             and restored with PostgreSQL's own tools, and `eden-cas reindex` rebuilds it from \
             the blob store"
        );
    };
    if dir_has_entries(meta_dir) {
        anyhow::bail!(
            "{} exists and is not empty: restore never writes over metadata. Stop the server, \
             move the directory aside (e.g. `mv {0} {0}.old`) and run restore again",
            meta_dir.display()
        );
    }
    probe_blobs(config).await?;
    let blobs = BlobStore::open(&config.blobs)?;
    // The lease before anything is written: a server on another data
    // directory may be using this blob store.
    let lease = match config.lease {
        Some(settings) => {
            let holder = crate::blobs::lease::Holder::this_process("restore", &config.data_dir);
            let lease = Lease::acquire(&blobs, holder, settings).await?;
            let heartbeat = lease.spawn_heartbeat(|_| {});
            Some((lease, heartbeat))
        }
        None => None,
    };
    let result = restore_leased(config, from, &blobs, meta_dir).await;
    if let Some((lease, heartbeat)) = lease {
        heartbeat.abort();
        lease.release().await;
    }
    result
}

/// The body of `restore`, run under the lease.
async fn restore_leased(
    config: &Config,
    from: Option<String>,
    blobs: &BlobStore,
    meta_dir: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let listing = backup::list_backups(blobs).await?;
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
    let restored = backup::restore_backup(blobs, meta_dir, &name).await?;
    println!(
        "restored backup {} (taken {}): {} files, {} bytes into {}",
        restored.name,
        restored.created_at,
        restored.files,
        restored.bytes,
        meta_dir.display()
    );
    let engine = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || server::open_engine_for_recovery(&config)).await??
    };
    let report = engine.reindex().await?;
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
    require_store(config, Needs::Metadata)?;
    probe_blobs(config).await?;
    // A dry run only reads: like fsck it takes no lease (and writes nothing).
    let opened = if dry_run {
        open_unleased(config).await?
    } else {
        open(config, "gc", true).await?
    };
    let engine = opened.engine.clone();
    let opts = GcOptions {
        dry_run,
        compact_below: config.gc_compact_below,
    };
    let report = engine.gc(opts).await;
    flush(&engine).await;
    opened.close().await;
    let report = report?;
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
    if let Err(e) = engine.flush().await {
        tracing::warn!(error = %e, "metadata flush failed");
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
    require_store(config, Needs::Metadata)?;
    let engine = open_unleased(config).await?.engine;
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
