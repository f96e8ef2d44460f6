//! `eden-cas serve`: probe the blob store, open the stores, build the
//! engine, bind, announce, serve until SIGINT/SIGTERM, then shut down cleanly.
//! `eden-cas check-config` runs the same startup checks and stops there.
//!
//! The blob store is probed before anything else opens, so a missing bucket,
//! refused credentials or an unreachable endpoint stop startup with one line
//! naming the setting to fix (see `blobs::probe`).
//!
//! On a signal, actix stops accepting connections and gives in-flight
//! requests `shutdown-timeout` to finish; a deposit cut off by then commits
//! nothing (invariant 3). Buffered audit events are written and RocksDB is
//! flushed before exit.
//!
//! The listeners (plain or TLS, the optional `admin-listen`, the
//! certificate reload on SIGHUP) are built in `server/listen.rs`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::auth::bearer::is_wire_safe_secret;
use crate::auth::token::{Secret, mint_token};
use crate::blobs::lease::{Holder, Lease, LeaseError};
use crate::blobs::probe::{self, ProbeError, ProbeReport};
use crate::blobs::{Backend, BlobStore};
use crate::config::{Config, MetaStore};
use crate::engine::{Engine, EngineError, recovery};
use crate::http::split::ListenerRole;
use crate::http::{self, AppState};
use crate::meta::Meta;
use crate::meta::postgres::Postgres;

mod listen;
use listen::{add_listener, reload_on_sighup, tls};

/// Errors that stop the server from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory cannot be used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The admin token is unusable.
    #[error("EDEN_CAS_ADMIN_TOKEN: {0}")]
    AdminToken(String),
    /// The metrics token is unusable (the message names its source, never
    /// its value).
    #[error("metrics token ({source_name}): {detail}")]
    MetricsToken {
        /// `EDEN_CAS_METRICS_TOKEN` or the file's path.
        source_name: String,
        /// What is wrong.
        detail: String,
    },
    /// The metadata store failed to open or answer (RocksDB: often another
    /// process holds its lock).
    #[error("metadata store {store}: {source}{}", meta_hint(.source))]
    Meta {
        /// The directory or the database URL (without credentials).
        store: String,
        /// Cause.
        source: crate::meta::MetaError,
    },
    /// The blob store failed to open.
    #[error("blob store: {0}")]
    Blobs(#[from] crate::blobs::BlobError),
    /// The blob store failed its startup probe (the message names the fix).
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// The engine refused its configuration.
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    /// The blob store's writer lease is held by another process, or was lost.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// `tls-cert` / `tls-key` are unusable (the message names the setting).
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Binding or serving failed.
    #[error("listen {addr}: {source}")]
    Bind {
        /// Address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Name of the generated admin token file inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// The admin token: `EDEN_CAS_ADMIN_TOKEN`, else the token file (created
/// with mode 0600 on first start). Logs the file path, never the token.
pub fn admin_token(data_dir: &Path) -> Result<Secret, ServerError> {
    if let Ok(t) = std::env::var("EDEN_CAS_ADMIN_TOKEN") {
        if !is_wire_safe_secret(&t) || t.len() < 16 {
            return Err(ServerError::AdminToken(
                "must be at least 16 visible ASCII characters (no spaces)".into(),
            ));
        }
        return Ok(Secret::new(t));
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let io = |source| ServerError::DataDir {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(t) => {
            tracing::info!(path = %path.display(), "admin token read from file");
            Ok(Secret::new(t.trim().to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = mint_token();
            write_private(&path, token.expose()).map_err(io)?;
            tracing::info!(path = %path.display(), "generated a new admin token; it is in this file (mode 0600)");
            Ok(token)
        }
        Err(e) => Err(io(e)),
    }
}

/// The token `/metrics` accepts besides the admin bearer:
/// `EDEN_CAS_METRICS_TOKEN`, else the file named by `metrics-token-file`
/// (trimmed), else none. At least 16 visible ASCII characters. Logged as
/// present or absent, never its value.
pub fn metrics_token(config: &Config) -> Result<Option<Secret>, ServerError> {
    let (source_name, token) = if let Ok(t) = std::env::var("EDEN_CAS_METRICS_TOKEN") {
        ("EDEN_CAS_METRICS_TOKEN".to_string(), t)
    } else if let Some(path) = &config.metrics_token_file {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(t) => (name, t.trim().to_string()),
            Err(e) => {
                return Err(ServerError::MetricsToken {
                    source_name: name,
                    detail: e.to_string(),
                });
            }
        }
    } else {
        return Ok(None);
    };
    if !is_wire_safe_secret(&token) || token.len() < 16 {
        return Err(ServerError::MetricsToken {
            source_name,
            detail: "must be at least 16 visible ASCII characters (no spaces)".into(),
        });
    }
    tracing::info!(source = %source_name, "metrics token configured");
    Ok(Some(Secret::new(token)))
}

/// The admin token for an offline command, which must write nothing it
/// was not asked to: `EDEN_CAS_ADMIN_TOKEN`, else the token file if there
/// is one, else a throwaway token (offline commands serve no requests).
pub fn admin_token_offline(data_dir: &Path) -> Result<Secret, ServerError> {
    if std::env::var_os("EDEN_CAS_ADMIN_TOKEN").is_some() {
        return admin_token(data_dir);
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(Secret::new(t.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(mint_token()),
        Err(source) => Err(ServerError::DataDir { path, source }),
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// How a command opens the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// `serve`: creates the data directory and the admin token file if
    /// missing.
    Serve,
    /// Offline maintenance: creates neither (the caller has checked that the
    /// store exists) and never writes the admin token file.
    Offline,
}

/// Opens the stores and builds the engine for `config`.
///
/// When the metadata directory is new (or a reindex was interrupted, see
/// [`recovery::REINDEX_PENDING`]), the chunk index and manifests are first
/// rebuilt from the blob store, so a lost RocksDB directory never makes
/// committed bytes look absent (and never lets GC see an empty index over
/// a full store). If the blob store held data, a warning says that artifact
/// records, grants, the registry and tokens need `eden-cas restore`. On a
/// brand-new store this costs two list calls. Takes no lease (see
/// [`open_leased`]).
pub fn open_engine(config: &Config) -> Result<std::sync::Arc<Engine>, ServerError> {
    let opened = open_meta(config, OpenMode::Serve)?;
    build_engine(config, opened, OpenMode::Serve, true)
}

/// Opens the stores and builds the engine without the automatic reindex
/// (for callers that run it themselves). Takes no lease.
pub fn open_engine_for_recovery(config: &Config) -> Result<std::sync::Arc<Engine>, ServerError> {
    let opened = open_meta(config, OpenMode::Offline)?;
    build_engine(config, opened, OpenMode::Offline, false)
}

/// Opens the configured metadata engine: RocksDB in `<data-dir>/meta`, or
/// PostgreSQL (its schema migrated first when `migrate` is set; else a
/// schema behind this binary is refused, naming `eden-cas migrate`).
///
/// # Errors
/// [`ServerError::Meta`] naming the store and what to fix.
pub fn open_meta_store(config: &Config) -> Result<Meta, ServerError> {
    match &config.meta_store {
        MetaStore::RocksDb(dir) => Meta::open(dir).map_err(|source| ServerError::Meta {
            store: dir.display().to_string(),
            source,
        }),
        MetaStore::Postgres(pg) => {
            let err = |source| ServerError::Meta {
                store: pg.display.clone(),
                source,
            };
            if config.migrate {
                let v = Postgres::connect(pg)
                    .and_then(|p| p.migrate())
                    .map_err(err)?;
                tracing::info!(version = v.applied, "metadata schema migrated");
            }
            let kv = Postgres::open(pg).map_err(err)?;
            Meta::over(std::sync::Arc::new(kv)).map_err(err)
        }
    }
}

/// The metadata store, opened (its lock taken), and whether it was new.
pub struct OpenedMeta {
    meta: Meta,
    fresh: bool,
}

/// Opens the metadata store first of all: its lock admits one process per
/// data directory, so a second command on a live server's directory fails
/// here having written nothing. New metadata is marked as owing a reindex.
///
/// # Errors
/// The data directory or the metadata store cannot be opened.
pub fn open_meta(config: &Config, mode: OpenMode) -> Result<OpenedMeta, ServerError> {
    let dir = &config.data_dir;
    if mode == OpenMode::Serve {
        std::fs::create_dir_all(dir).map_err(|source| ServerError::DataDir {
            path: dir.clone(),
            source,
        })?;
    }
    let meta = open_meta_store(config)?;
    let meta_err = |source| ServerError::Meta {
        store: meta.describe(),
        source,
    };
    // New (or created but never used, e.g. after a crash right here).
    let fresh = recovery::is_new_metadata(&meta)?;
    if fresh {
        // Before anything else: a crash from here on still owes the reindex.
        meta.set_system(recovery::REINDEX_PENDING, b"1")
            .map_err(meta_err)?;
    }
    Ok(OpenedMeta { meta, fresh })
}

/// Builds the engine over opened metadata: the admin token, the blob
/// store, and (with `reindex`) an owed reindex.
///
/// # Errors
/// Token, blob store or engine setup failures; a failed reindex.
pub fn build_engine(
    config: &Config,
    opened: OpenedMeta,
    mode: OpenMode,
    reindex: bool,
) -> Result<std::sync::Arc<Engine>, ServerError> {
    let dir = &config.data_dir;
    let token = match mode {
        OpenMode::Serve => admin_token(dir)?,
        OpenMode::Offline => admin_token_offline(dir)?,
    };
    let OpenedMeta { meta, fresh } = opened;
    let blobs = BlobStore::open(&config.blobs)?;
    tracing::info!(
        data_dir = %dir.display(),
        blobs = %blobs.describe(),
        endpoint = %blobs.backend().endpoint(),
        chunk_cache_bytes = config.blobs.chunk_cache_bytes,
        "stores opened"
    );
    let engine = Engine::new(meta, blobs, config.engine.clone(), token)?;
    if reindex && recovery::reindex_pending(engine.meta())? {
        auto_reindex(config, &engine, fresh)?;
    }
    Ok(engine)
}

/// Opens the store for `command` under the blob store's writer lease: the
/// metadata first (its lock), then the lease (refused, naming the holder,
/// when another process writes this blob store), then the engine. The
/// lease is handed to the engine; the caller keeps it renewed
/// ([`Lease::spawn_heartbeat`]) and releases it at the end. With `lease =
/// false` no lease is taken.
///
/// # Errors
/// As [`open_meta`] and [`build_engine`]; [`ServerError::Lease`].
pub async fn open_leased(
    config: &Config,
    command: &str,
    mode: OpenMode,
    reindex: bool,
) -> Result<(std::sync::Arc<Engine>, Option<std::sync::Arc<Lease>>), ServerError> {
    let task_err = |e: tokio::task::JoinError| {
        ServerError::Engine(EngineError::Internal(format!("open task failed: {e}")))
    };
    let opened = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || open_meta(&config, mode))
            .await
            .map_err(task_err)??
    };
    let lease = match config.lease {
        Some(settings) => {
            let blobs = BlobStore::open(&config.blobs)?;
            let holder = Holder::this_process(command, &config.data_dir);
            Some(Lease::acquire(&blobs, holder, settings).await?)
        }
        None => None,
    };
    // Off the runtime thread: the reindex may run over the blob store.
    let engine = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || build_engine(&config, opened, mode, reindex))
            .await
            .map_err(task_err)?
    };
    let engine = match engine {
        Ok(e) => e,
        Err(e) => {
            if let Some(l) = &lease {
                l.release().await;
            }
            return Err(e);
        }
    };
    if let Some(l) = &lease {
        engine.set_lease(l.clone());
    }
    Ok((engine, lease))
}

/// Runs the owed reindex before the engine is used.
///
/// `open_engine` is synchronous and may be called on a runtime thread, so
/// the reindex runs on a thread of its own with a runtime of its own, over a
/// blob store handle of its own (connections made on that short-lived
/// runtime must not end up pooled in the engine's client).
fn auto_reindex(
    config: &Config,
    engine: &std::sync::Arc<Engine>,
    fresh: bool,
) -> Result<(), ServerError> {
    let meta = engine.meta().clone();
    if matches!(config.blobs.backend, Backend::Memory) {
        // Nothing survives a process on memory://: nothing to recover.
        return meta
            .delete_system(recovery::REINDEX_PENDING)
            .map_err(|source| ServerError::Meta {
                store: meta.describe(),
                source,
            });
    }
    if !fresh {
        tracing::warn!(
            "a reindex is owed (an earlier reindex or a restore did not finish): running it \
             before serving"
        );
    }
    let blob_cfg = config.blobs.clone();
    let internal = |m: String| ServerError::Engine(EngineError::Internal(m));
    let report = std::thread::scope(|s| {
        s.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| internal(format!("reindex runtime: {e}")))?;
            rt.block_on(async {
                let blobs = BlobStore::open(&blob_cfg)?;
                Ok::<_, ServerError>(recovery::reindex(&meta, &blobs).await?)
            })
        })
        .join()
    })
    .map_err(|_| internal("the reindex thread panicked".into()))??;
    if fresh && report.found_data() {
        tracing::warn!(
            packs = report.packs_indexed,
            chunks = report.chunks_indexed,
            manifests = report.manifests_scanned,
            unclaimed_manifests = report.unclaimed_manifests.len(),
            partial_packs = report.partial_packs.len(),
            "the metadata directory was new but the blob store already holds data: the chunk \
             index and manifests were rebuilt from it, so every committed artifact's bytes are \
             intact. Artifact records (ids, ACL grants, expiry, provenance), workers, groups, \
             tokens and upload sessions are NOT in the blob store: stop the server, move \
             <data-dir>/meta aside and run `eden-cas restore` to bring them back from the newest \
             backup (docs/operations/recovery.md)"
        );
    } else if !fresh {
        tracing::info!(chunks = report.chunks_indexed, "reindex finished");
    }
    Ok(())
}

fn meta_hint(e: &crate::meta::MetaError) -> &'static str {
    match e {
        crate::meta::MetaError::Db(_) => " (is another eden-cas running on this data directory?)",
        _ => "",
    }
}

/// Creates the data directory and probes the blob store.
async fn startup_checks(config: &Config) -> Result<ProbeReport, ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    if matches!(config.blobs.backend, Backend::Memory) {
        tracing::warn!(
            "blob-store is memory:// — NOTHING IS DURABLE: every pack and manifest is lost \
             when this process exits. Use it for tests only."
        );
    }
    Ok(probe::check(&config.blobs).await?)
}

/// `eden-cas check-config`: the startup checks of `serve`, then a summary
/// (probe findings and every setting with its source; never a secret).
pub async fn check_config(config: &Config) -> Result<String, ServerError> {
    let report = startup_checks(config).await?;
    tls(config)?;
    if let MetaStore::Postgres(pg) = &config.meta_store {
        // Connection, schema version and privileges, as `serve` checks them
        // (RocksDB is checked by opening it, which a running server's lock
        // would refuse).
        let pg = pg.clone();
        tokio::task::spawn_blocking(move || {
            Postgres::open(&pg).map_err(|source| ServerError::Meta {
                store: pg.display.clone(),
                source,
            })
        })
        .await
        .map_err(|e| ServerError::Engine(EngineError::Internal(format!("check task: {e}"))))??;
    }
    Ok(crate::config::report::render(config, &report))
}

/// Runs the server until a shutdown signal.
pub async fn serve(config: Config) -> Result<(), ServerError> {
    startup_checks(&config).await?;
    let metrics_token = metrics_token(&config)?;
    let certs = tls(&config)?;
    let (engine, lease) = open_leased(&config, "serve", OpenMode::Serve, true).await?;
    // A lost lease stops the server: another process now writes this blob
    // store, and this one's metadata no longer describes it.
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<LeaseError>();
    let heartbeat = lease.as_ref().map(|l| {
        l.spawn_heartbeat(move |e| {
            let _ = lost_tx.send(e);
        })
    });
    engine.set_upload_idle_timeout(config.upload_idle_timeout);
    // Expired upload sessions release their pins even if nobody touches them.
    let _reaper = engine.spawn_session_reaper(std::time::Duration::from_secs(600));
    let _gc = config.gc_interval.map(|every| {
        tracing::info!(every = %humantime::format_duration(every), compact_below = config.gc_compact_below, "garbage collection scheduled");
        engine.spawn_gc(every, config.gc_compact_below)
    });
    // Packs are re-verified within the hourly byte budget (0: off).
    let _scrubber = engine.spawn_scrubber(config.scrub_bytes_per_hour);
    // Buffered audit events go to the blob store in batches (`engine/audit.rs`).
    let _audit = engine.spawn_audit_flusher();
    let state = AppState {
        engine: engine.clone(),
        gc_compact_below: config.gc_compact_below,
        body_idle_timeout: config.body_idle_timeout,
        metrics_token: metrics_token.map(std::sync::Arc::new),
        metrics: std::sync::Arc::new(http::metrics::Metrics::new(engine.clone())),
    };
    let bind_err = |source| ServerError::Bind {
        addr: config.listen.clone(),
        source,
    };
    let listener = std::net::TcpListener::bind(&config.listen).map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    let tls = match &certs {
        Some(certs) => {
            reload_on_sighup(certs.clone()).map_err(bind_err)?;
            Some(certs.server_config()?)
        }
        None => None,
    };
    let builder = actix_server::Server::build()
        .workers(config.http_workers)
        .shutdown_timeout(config.shutdown_timeout.as_secs());
    let (builder, main_role) = match &config.admin_listen {
        Some(admin) => {
            let admin_err = |source| ServerError::Bind {
                addr: format!("{admin} (admin-listen)"),
                source,
            };
            let admin_listener = std::net::TcpListener::bind(admin).map_err(admin_err)?;
            let admin_addr = admin_listener.local_addr().map_err(admin_err)?;
            let builder = add_listener(
                builder,
                "eden-cas-admin",
                admin_listener,
                state.clone(),
                ListenerRole::Admin,
                tls.clone(),
            )
            .map_err(admin_err)?;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "EDEN_CAS_ADMIN_LISTENING host={} port={}",
                admin_addr.ip(),
                admin_addr.port()
            );
            tracing::info!(addr = %admin_addr, "admin listener: /metrics and /cas/v1/admin/ are served here only");
            (builder, ListenerRole::Public)
        }
        None => (builder, ListenerRole::All),
    };
    let builder = add_listener(builder, "eden-cas", listener, state, main_role, tls);
    let running = builder
        .map_err(bind_err)?
        // Signals are ours (below): installed before the listening line, so
        // a SIGTERM right after it is always a graceful stop.
        .disable_signals()
        .run();
    {
        let handle = running.handle();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(bind_err)?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(bind_err)?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping gracefully"),
                _ = int.recv() => tracing::info!("SIGINT: stopping gracefully"),
            }
            handle.stop(true).await;
        });
    }
    let lost = std::sync::Arc::new(std::sync::Mutex::new(None::<LeaseError>));
    if lease.is_some() {
        let handle = running.handle();
        let lost = lost.clone();
        tokio::spawn(async move {
            if let Ok(e) = lost_rx.await {
                *lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                handle.stop(false).await;
            }
        });
    }
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "EDEN_CAS_LISTENING host={} port={}",
            addr.ip(),
            addr.port()
        );
        let _ = out.flush();
        tracing::info!(%addr, tls = certs.is_some(), max_artifact_bytes = config.engine.max_artifact_bytes, "listening");
    }
    running.await.map_err(bind_err)?;
    // In-flight requests are done: the audit batch is complete.
    match engine.audit_flush().await {
        Ok(n) => tracing::info!(events = n, "shutting down: audit log written"),
        Err(e) => tracing::error!(error = %e, "shutting down: audit events NOT written"),
    }
    tracing::info!("shutting down: flushing metadata");
    let meta = engine.meta().clone();
    if let Err(e) = tokio::task::spawn_blocking(move || meta.flush()).await {
        tracing::warn!(error = %e, "flush task failed");
    }
    if let Some(h) = heartbeat {
        h.abort();
    }
    if let Some(e) = lost.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e.into());
    }
    if let Some(l) = lease {
        l.release().await;
    }
    Ok(())
}
