//! Command-line interface: `eden-cas serve` and friends.
//!
//! Every server setting is a flag and an `EDEN_CAS_<NAME>` environment
//! variable. Blob-store credentials are deliberately not among them: they come
//! from the provider's environment variables or default chain only, so they
//! never appear in argv (see docs/operations/blob-backends.md).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::blobs::BlobSettings;
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
    /// Pack bytes the background scrubber re-verifies per hour; 0 disables [default: 10GiB].
    #[arg(long, env = "EDEN_CAS_SCRUB_BYTES_PER_HOUR")]
    pub scrub_bytes_per_hour: Option<String>,
    /// Take the single-writer lease in the blob store (true/false) [default: true].
    #[arg(long, env = "EDEN_CAS_LEASE")]
    pub lease: Option<bool>,
    /// How long the blob store lease stays valid after its last renewal [default: 60s].
    #[arg(long, env = "EDEN_CAS_LEASE_DURATION")]
    pub lease_duration: Option<String>,
    /// How often the lease holder renews it; under half the duration [default: 10s].
    #[arg(long, env = "EDEN_CAS_LEASE_HEARTBEAT")]
    pub lease_heartbeat: Option<String>,
    /// Blob store settings.
    #[command(flatten)]
    pub blob: BlobArgs,
}

/// Where packs and manifests live, and how the store is reached.
#[derive(Debug, Args)]
#[command(next_help_heading = "Blob store")]
pub struct BlobArgs {
    /// A path or fs://…, s3://bucket/prefix, gs://bucket/prefix,
    /// azblob://container/prefix, or memory:// (tests only) [default: <data-dir>/blobs].
    #[arg(long, env = "EDEN_CAS_BLOB_STORE")]
    pub blob_store: Option<String>,
    /// S3-compatible endpoint, e.g. http://127.0.0.1:8333 (MinIO, SeaweedFS) [default: AWS].
    #[arg(long, env = "EDEN_CAS_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region [default: AWS_REGION; us-east-1 with a custom endpoint].
    #[arg(long, env = "EDEN_CAS_S3_REGION")]
    pub s3_region: Option<String>,
    /// Path-style S3 addressing (true/false) [default: true with a custom endpoint].
    #[arg(long, env = "EDEN_CAS_S3_PATH_STYLE")]
    pub s3_path_style: Option<bool>,
    /// S3 storage class of new objects (STANDARD, STANDARD_IA, INTELLIGENT_TIERING, …).
    #[arg(long, env = "EDEN_CAS_S3_STORAGE_CLASS")]
    pub s3_storage_class: Option<String>,
    /// GCS endpoint (emulators) [default: https://storage.googleapis.com].
    #[arg(long, env = "EDEN_CAS_GCS_ENDPOINT")]
    pub gcs_endpoint: Option<String>,
    /// GCS storage class of new objects (STANDARD, NEARLINE, COLDLINE, ARCHIVE).
    #[arg(long, env = "EDEN_CAS_GCS_STORAGE_CLASS")]
    pub gcs_storage_class: Option<String>,
    /// Send GCS requests unsigned, loading no credentials: for emulators on this
    /// machine (true/false) [default: true when STORAGE_EMULATOR_HOST is set].
    #[arg(long, env = "EDEN_CAS_GCS_UNSIGNED")]
    pub gcs_unsigned: Option<bool>,
    /// Allow gcs-unsigned with an endpoint that is not on this machine (true/false) [default: false].
    #[arg(long, env = "EDEN_CAS_GCS_UNSIGNED_ALLOW_REMOTE")]
    pub gcs_unsigned_allow_remote: Option<bool>,
    /// Azure blob endpoint (Azurite, sovereign clouds) [default: https://<account>.blob.core.windows.net].
    #[arg(long, env = "EDEN_CAS_AZBLOB_ENDPOINT")]
    pub azblob_endpoint: Option<String>,
    /// Azure storage account [default: AZURE_STORAGE_ACCOUNT_NAME].
    #[arg(long, env = "EDEN_CAS_AZBLOB_ACCOUNT")]
    pub azblob_account: Option<String>,
    /// Deadline of one blob request or I/O step [default: 60s].
    #[arg(long, env = "EDEN_CAS_BLOB_TIMEOUT")]
    pub blob_timeout: Option<String>,
    /// Retries of a transient blob failure, with backoff and jitter [default: 4].
    #[arg(long, env = "EDEN_CAS_BLOB_RETRIES")]
    pub blob_retries: Option<usize>,
    /// Blob requests in flight at most [default: 64].
    #[arg(long, env = "EDEN_CAS_BLOB_CONCURRENCY")]
    pub blob_concurrency: Option<usize>,
    /// Multipart part size on object stores [default: a third of pack-target-bytes].
    #[arg(long, env = "EDEN_CAS_BLOB_PART_BYTES")]
    pub blob_part_bytes: Option<String>,
    /// Size bound of the in-memory cache of verified chunks; 0 disables [default: 64MiB].
    #[arg(long, env = "EDEN_CAS_CHUNK_CACHE_BYTES")]
    pub chunk_cache_bytes: Option<String>,
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
            blob: BlobSettings {
                blob_store: a.blob.blob_store.clone(),
                s3_endpoint: a.blob.s3_endpoint.clone(),
                s3_region: a.blob.s3_region.clone(),
                s3_path_style: a.blob.s3_path_style,
                s3_storage_class: a.blob.s3_storage_class.clone(),
                gcs_endpoint: a.blob.gcs_endpoint.clone(),
                gcs_storage_class: a.blob.gcs_storage_class.clone(),
                gcs_unsigned: a.blob.gcs_unsigned,
                gcs_unsigned_allow_remote: a.blob.gcs_unsigned_allow_remote,
                azblob_endpoint: a.blob.azblob_endpoint.clone(),
                azblob_account: a.blob.azblob_account.clone(),
            },
            blob_timeout: a.blob.blob_timeout.clone(),
            blob_retries: a.blob.blob_retries,
            blob_concurrency: a.blob.blob_concurrency,
            blob_part_bytes: a.blob.blob_part_bytes.clone(),
            chunk_cache_bytes: a.blob.chunk_cache_bytes.clone(),
            scrub_bytes_per_hour: a.scrub_bytes_per_hour.clone(),
            lease: a.lease,
            lease_duration: a.lease_duration.clone(),
            lease_heartbeat: a.lease_heartbeat.clone(),
        }
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
