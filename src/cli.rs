//! Command-line interface: `eden-cas serve` and friends.
//!
//! Every store setting is a flag, an `EDEN_CAS_<NAME>` environment variable
//! and a config-file key, all derived from `config::Settings`. Blob-store
//! credentials and tokens are deliberately not among them: they come from
//! the environment (or the provider's default chain) only, so they never
//! appear in argv (see docs/operations/blob-backends.md).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError, SettingsArgs};

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
    /// Check the settings and probe the blob store as `serve` does at
    /// startup, without serving; exit code 0 when all is well.
    CheckConfig(ServeArgs),
    /// Collect garbage: expired artifacts, unreferenced chunks, packs below
    /// the live-bytes threshold (offline: stop the server first, or use
    /// `POST /cas/v1/admin/gc` on a running one).
    Gc(GcArgs),
    /// Check the store's integrity; exit code 1 when a problem is found.
    Fsck(FsckArgs),
    /// Rebuild the chunk index (and manifests) from the pack footers and
    /// manifest objects in the blob store (offline).
    Reindex(ServeArgs),
    /// Write a consistent RocksDB checkpoint to the blob store (offline, or
    /// `POST /cas/v1/admin/backup` on a running server).
    Backup(ServeArgs),
    /// Restore the metadata directory from a backup in the blob store, then
    /// reindex (offline; the metadata directory must not exist).
    Restore(RestoreArgs),
    /// Apply pending schema migrations to the PostgreSQL metadata store
    /// (`meta-store = postgres://…`); never downgrades a schema.
    Migrate(ServeArgs),
    /// The audit log in the blob store (`docs/operations/audit.md`).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Client commands talking to a server (`docs/client.md`).
    #[command(flatten)]
    Client(ClientCommand),
}

/// `eden-cas gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Report what would be reclaimed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Store settings, as for `serve`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// `eden-cas fsck`.
#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Also re-read every artifact and check its whole-content digests.
    #[arg(long)]
    pub deep: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Store settings, as for `serve`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// `eden-cas restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Backup name (as `backup` printed it) [default: the newest backup].
    #[arg(long)]
    pub from: Option<String>,
    /// Store settings, as for `serve`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// `eden-cas audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the audit log as JSON lines, oldest first. Reads only the
    /// blob store (no metadata, no lease), so it also runs beside a live
    /// server (whose events from the last few seconds may still be
    /// buffered: `GET /cas/v1/admin/audit` writes them first).
    Export(AuditExportArgs),
}

/// `eden-cas audit export`.
#[derive(Debug, Args)]
pub struct AuditExportArgs {
    /// Only events at or after this time: RFC 3339 (2026-01-02T03:04:05Z)
    /// or a duration back from now (24h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Only events of this experiment.
    #[arg(long)]
    pub experiment: Option<String>,
    /// Store settings, as for `serve` (only the blob store's are used).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Settings of `serve` and the offline commands: `--config`, then every
/// setting (`config::Settings`), each also an `EDEN_CAS_<NAME>` variable
/// and a key of the config file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file; its keys are the flags' names, and flags and
    /// environment variables win over it.
    #[arg(long, env = "EDEN_CAS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The settings given by flag or environment variable.
    #[command(flatten)]
    pub settings: SettingsArgs,
}

impl ServeArgs {
    /// The configuration: defaults < `--config` file < environment < flags.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(self.config.as_deref(), &self.settings.layer)
    }
}

/// Client subcommands; each talks to the server named by `--url` / `EDEN_CAS_URL`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Store a file, or a directory as one bundle; prints its URI.
    Put(PutArgs),
    /// Fetch an artifact (to a file, stdout, or extracted into a directory).
    Get(GetArgs),
    /// List the artifacts you may read, newest first.
    Ls(LsArgs),
    /// Show an artifact's metadata.
    Stat(TargetArgs),
    /// Delete an artifact (depositor or admin).
    Rm(TargetArgs),
    /// Let a worker or group read an artifact, or take that back with --revoke.
    Grant(GrantArgs),
    /// Named references: set (compare-and-swap), get, ls, rm, log.
    #[command(subcommand)]
    Ref(RefCommand),
    /// Compare a local file or directory, or the fetched artifact, with the recorded BLAKE3.
    Verify(VerifyArgs),
}

/// Connection settings shared by every client command.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Server base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "EDEN_CAS_URL")]
    pub url: Option<String>,
    /// Experiment id (exp_…).
    #[arg(long, short = 'e', env = "EDEN_CAS_EXPERIMENT")]
    pub experiment: Option<String>,
    /// Bearer `<principal>:<secret>`; set EDEN_CAS_TOKEN rather than passing it on the command line.
    #[arg(long, env = "EDEN_CAS_TOKEN", hide_env_values = true)]
    pub token: Option<crate::auth::Secret>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `eden-cas put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// File to store, or directory to store as one bundle (tar).
    pub path: PathBuf,
    /// Content-Type to record [default: application/octet-stream; application/x-tar for a directory].
    #[arg(long)]
    pub content_type: Option<String>,
    /// Filename to record [default: the file's name; <dir>.tar for a directory].
    #[arg(long)]
    pub filename: Option<String>,
    /// Expire the artifact after this long (e.g. 7d).
    #[arg(long)]
    pub expires_in: Option<String>,
    /// Chunk batches in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// Largest chunk batch body (e.g. 16MiB); the server's limit caps it [default: 16MiB].
    #[arg(long, value_parser = crate::config::parse_size)]
    pub batch_bytes: Option<u64>,
    /// Set this reference to the new artifact in the same commit (a cache
    /// key); create-only unless `--ref-if-match` is given.
    #[arg(long = "ref", value_name = "NAME")]
    pub reference: Option<String>,
    /// Move the reference only if it points at this artifact id now (`*`:
    /// whatever it points at).
    #[arg(long, value_name = "ID", requires = "reference")]
    pub ref_if_match: Option<String>,
    /// The reference's own lifetime (humantime, `1d`).
    #[arg(long, value_name = "DURATION", requires = "reference")]
    pub ref_expires_in: Option<String>,
    /// A `key=value` label (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Connection settings.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `eden-cas get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Artifact id or eden://artifacts/<id> URI.
    pub target: String,
    /// Write here (a directory: the default name inside it); `-` is stdout [default: the recorded filename, else the id].
    #[arg(long, short = 'o', conflicts_with = "extract")]
    pub output: Option<PathBuf>,
    /// Only bytes A through B, inclusive (`A-B`, `A-`, or `-N` for the last N).
    #[arg(long, conflicts_with = "extract", allow_hyphen_values = true)]
    pub range: Option<String>,
    /// Unpack a bundle into this directory (created if needed).
    #[arg(long, value_name = "DIR")]
    pub extract: Option<PathBuf>,
    /// Replace existing local files (a name from the server never replaces one otherwise).
    #[arg(long)]
    pub force: bool,
    /// Connection settings.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `eden-cas ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only artifacts deposited by this principal (admin, wkr_…).
    #[arg(long)]
    pub created_by: Option<String>,
    /// Only artifacts with this `key=value` label (repeatable: all must match).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Stop after this many artifacts [default: all].
    #[arg(long)]
    pub limit: Option<u64>,
    /// Artifacts asked for per request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: u32,
    /// Connection settings.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `eden-cas stat` and `eden-cas rm`.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Artifact id or eden://artifacts/<id> URI.
    pub target: String,
    /// Connection settings.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `eden-cas grant`.
#[derive(Debug, Args)]
pub struct GrantArgs {
    /// Artifact id or eden://artifacts/<id> URI.
    pub target: String,
    /// Worker (wkr_…) or group (grp_…) id.
    pub principal: String,
    /// Remove the grant instead of adding it.
    #[arg(long)]
    pub revoke: bool,
    /// Connection settings.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `eden-cas verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Artifact id or eden://artifacts/<id> URI.
    pub target: String,
    /// Local file (or directory, as a bundle) to check; without it the artifact is fetched and checked.
    pub path: Option<PathBuf>,
    /// Connection settings.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `eden-cas ref …`: named references (`docs/client.md`).
#[derive(Debug, Subcommand)]
pub enum RefCommand {
    /// Point NAME at an artifact: create-only with `--create`, a swap from
    /// `--if-match ID`, else a swap from the target it has now (read
    /// first), or a create when it has none. A lost race exits 2 (412).
    Set(RefSetArgs),
    /// Show a reference and its target.
    Get(RefNameArgs),
    /// List references (by prefix).
    Ls(RefLsArgs),
    /// Delete a reference (optionally only if it points at `--if-match`).
    Rm(RefRmArgs),
    /// Show a reference's history, newest first.
    Log(RefNameArgs),
}

/// `ref set NAME TARGET`.
#[derive(Debug, Args)]
pub struct RefSetArgs {
    /// The reference name (`runs/r17/latest`).
    pub name: String,
    /// Artifact id, `eden://artifacts/<id>` or `ref:OTHER`.
    pub target: String,
    /// Create only: fail (exit 2) if the name is taken.
    #[arg(long, conflicts_with = "if_match")]
    pub create: bool,
    /// Move only if it points at this artifact id now.
    #[arg(long, value_name = "ID")]
    pub if_match: Option<String>,
    /// The reference's own lifetime (humantime, `1d`).
    #[arg(long, value_name = "DURATION")]
    pub expires_in: Option<String>,
    /// Who else may move or delete it (`wkr_…`/`grp_…`, repeatable).
    #[arg(long = "grant", value_name = "PRINCIPAL")]
    pub grants: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `ref get|log NAME`.
#[derive(Debug, Args)]
pub struct RefNameArgs {
    /// The reference name.
    pub name: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `ref ls [PREFIX]`.
#[derive(Debug, Args)]
pub struct RefLsArgs {
    /// Only names starting with this.
    #[arg(default_value = "")]
    pub prefix: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `ref rm NAME`.
#[derive(Debug, Args)]
pub struct RefRmArgs {
    /// The reference name.
    pub name: String,
    /// Delete only if it points at this artifact id now.
    #[arg(long, value_name = "ID")]
    pub if_match: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}
