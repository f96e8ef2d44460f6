//! Every setting of the store, defined once. Each field is at the same time
//! a flag (`--foo-bar`), an environment variable (`EDEN_CAS_FOO_BAR`) and a
//! key of the TOML file (`foo-bar`): clap derives the first two, serde the
//! third, from the same field. A built-in default is written once, as the
//! field's `default_value`, which `--help` shows; defaults that depend on
//! other settings or on the machine are computed in `validate.rs` and named
//! in the help text.
//!
//! A field is an `Option`: `None` means "not given in this layer".
//! `layers.rs` merges the layers; `validate.rs` turns the result into the
//! typed configuration of the engine, the blob store and the server.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::values::{Fraction, PerExperiment, Size, Span, per_experiment};
use crate::blobs::BlobSettings;
use crate::logging::LogFormat;

/// All settings, in sections (the sections are `--help` headings; in the
/// file and the environment the keys are flat).
#[derive(Debug, Default, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Data directory, listener, HTTP.
    #[command(flatten)]
    #[serde(flatten)]
    pub server: ServerSettings,
    /// Packs, codecs, uploads, scrubbing.
    #[command(flatten)]
    #[serde(flatten)]
    pub engine: EngineSettings,
    /// Sizes and quotas.
    #[command(flatten)]
    #[serde(flatten)]
    pub limits: LimitSettings,
    /// Garbage collection and retention.
    #[command(flatten)]
    #[serde(flatten)]
    pub lifecycle: LifecycleSettings,
    /// The single-writer lease.
    #[command(flatten)]
    #[serde(flatten)]
    pub lease: SingleWriterSettings,
    /// Which blob store (validated by `blobs::backend`).
    #[command(flatten)]
    #[serde(flatten)]
    pub blob: BlobSettings,
    /// How the blob store is used.
    #[command(flatten)]
    #[serde(flatten)]
    pub blob_tuning: BlobTuning,
    /// The audit log.
    #[command(flatten)]
    #[serde(flatten)]
    pub audit: AuditSettings,
    /// The metadata engine.
    #[command(flatten)]
    #[serde(flatten)]
    pub meta: MetaSettings,
}

/// Where artifact records, the chunk index and the registry live.
#[derive(Debug, Default, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
#[command(next_help_heading = "Metadata")]
pub struct MetaSettings {
    /// `rocksdb` (embedded, in <data-dir>/meta, one node) or
    /// `postgres://user@host[:port]/db[?sslmode=require&options=-csearch_path%3Dschema]`
    /// (shared by many nodes; the password comes from PGPASSWORD, PGPASSFILE
    /// or meta-store-password-file, never from the URL).
    #[arg(
        long,
        env = "EDEN_CAS_META_STORE",
        value_name = "rocksdb|URL",
        default_value = "rocksdb"
    )]
    pub meta_store: Option<String>,
    /// File holding the PostgreSQL password (wins over PGPASSWORD and
    /// PGPASSFILE) [default: none].
    #[arg(long, env = "EDEN_CAS_META_STORE_PASSWORD_FILE", value_name = "FILE")]
    pub meta_store_password_file: Option<PathBuf>,
    /// PEM file of the certificate authorities trusted for TLS to
    /// PostgreSQL [default: the Mozilla roots].
    #[arg(long, env = "EDEN_CAS_META_STORE_CA_FILE", value_name = "FILE")]
    pub meta_store_ca_file: Option<PathBuf>,
    /// Apply pending PostgreSQL schema migrations at startup (else `serve`
    /// refuses a schema that is behind and names `eden-cas migrate`).
    #[arg(
        long,
        env = "EDEN_CAS_MIGRATE",
        value_name = "BOOL",
        default_value = "false"
    )]
    pub migrate: Option<bool>,
}

/// Where the store lives and how it serves.
#[derive(Debug, Default, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
#[command(next_help_heading = "Server")]
pub struct ServerSettings {
    /// Data directory: RocksDB in `meta/`, packs in `blobs/`.
    #[arg(
        long,
        env = "EDEN_CAS_DATA_DIR",
        value_name = "DIR",
        default_value = "./eden-cas-data"
    )]
    pub data_dir: Option<PathBuf>,
    /// Listen address host:port; port 0 picks a free port.
    #[arg(
        long,
        env = "EDEN_CAS_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: Option<String>,
    /// A second listener, host:port, for /metrics and /cas/v1/admin/…, which
    /// then answer 404 on `listen` [default: none, all routes on `listen`].
    #[arg(long, env = "EDEN_CAS_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// HTTP worker threads [default: number of CPUs].
    #[arg(long, env = "EDEN_CAS_HTTP_WORKERS", value_name = "N")]
    pub http_workers: Option<usize>,
    /// Grace period for in-flight requests on SIGTERM/SIGINT.
    #[arg(
        long,
        env = "EDEN_CAS_SHUTDOWN_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub shutdown_timeout: Option<Span>,
    /// A request body that sends nothing for this long is cut and its
    /// connection closed.
    #[arg(
        long,
        env = "EDEN_CAS_BODY_IDLE_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub body_idle_timeout: Option<Span>,
    /// File holding the token that `/metrics` also accepts (besides the
    /// admin bearer) as `Bearer metrics:<token>`; EDEN_CAS_METRICS_TOKEN wins
    /// over it [default: none].
    #[arg(long, env = "EDEN_CAS_METRICS_TOKEN_FILE", value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// Log lines on stderr: text or json (one object per line); RUST_LOG
    /// filters them (docs/operations/observability.md).
    #[arg(
        long,
        env = "EDEN_CAS_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "text"
    )]
    pub log_format: Option<LogFormat>,
    /// Export a trace span per HTTP request over OTLP/HTTP (protobuf) to
    /// this collector, e.g. http://otel-collector:4318; spans go to
    /// `<url>/v1/traces` [default: none, no export].
    #[arg(long, env = "EDEN_CAS_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// PEM certificate chain: serve HTTPS (with tls-key); both files are
    /// reloaded on SIGHUP [default: plain HTTP].
    #[arg(long, env = "EDEN_CAS_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of tls-cert [default: none].
    #[arg(long, env = "EDEN_CAS_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
}

/// Engine tunables: how deposits become packs, and background work.
#[derive(Debug, Default, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
#[command(next_help_heading = "Engine")]
pub struct EngineSettings {
    /// Close packs at this size (1MiB to 4GiB).
    #[arg(
        long,
        env = "EDEN_CAS_PACK_TARGET_BYTES",
        value_name = "SIZE",
        default_value = "64MiB"
    )]
    pub pack_target_bytes: Option<Size>,
    /// zstd level for chunks, 0 disables (0 to 19).
    #[arg(
        long,
        env = "EDEN_CAS_COMPRESSION_LEVEL",
        value_name = "LEVEL",
        default_value = "3"
    )]
    pub compression_level: Option<i32>,
    /// Store float-like chunks as byte planes when it pays (true/false).
    #[arg(
        long,
        env = "EDEN_CAS_BYTE_PLANES",
        value_name = "BOOL",
        default_value = "true"
    )]
    pub byte_planes: Option<bool>,
    /// Upload sessions idle this long expire and release their pins.
    #[arg(
        long,
        env = "EDEN_CAS_UPLOAD_IDLE_TIMEOUT",
        value_name = "DURATION",
        default_value = "24h"
    )]
    pub upload_idle_timeout: Option<Span>,
    /// Pack bytes the background scrubber re-verifies per hour; 0 disables.
    #[arg(
        long,
        env = "EDEN_CAS_SCRUB_BYTES_PER_HOUR",
        value_name = "SIZE",
        default_value = "10GiB"
    )]
    pub scrub_bytes_per_hour: Option<Size>,
}

/// What one deposit and one experiment may hold.
#[derive(Debug, Default, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
#[command(next_help_heading = "Limits")]
pub struct LimitSettings {
    /// Largest artifact accepted, inclusive (e.g. 104857600 or 100MiB).
    #[arg(
        long,
        env = "EDEN_CAS_MAX_ARTIFACT_BYTES",
        value_name = "SIZE",
        default_value = "100MiB"
    )]
    pub max_artifact_bytes: Option<Size>,
    /// Logical bytes an experiment may hold (artifacts plus open uploads),
    /// unless experiment-quota names it [default: unlimited].
    #[arg(long, env = "EDEN_CAS_DEFAULT_EXPERIMENT_QUOTA", value_name = "SIZE")]
    pub default_experiment_quota: Option<Size>,
    /// Quota of one experiment, EXP=SIZE; repeat or separate with commas
    /// (TOML: a table `[experiment-quota]`) [default: none].
    #[arg(
        long,
        env = "EDEN_CAS_EXPERIMENT_QUOTA",
        value_name = "EXP=SIZE",
        value_delimiter = ','
    )]
    #[serde(with = "per_experiment")]
    pub experiment_quota: Option<Vec<PerExperiment<Size>>>,
}

/// Garbage collection and retention.
#[derive(Debug, Default, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
#[command(next_help_heading = "Lifecycle")]
pub struct LifecycleSettings {
    /// Garbage collection runs this often inside `serve`; 0s disables.
    #[arg(
        long,
        env = "EDEN_CAS_GC_INTERVAL",
        value_name = "DURATION",
        default_value = "6h"
    )]
    pub gc_interval: Option<Span>,
    /// GC compacts packs whose live bytes fall below this fraction (0 to 1).
    #[arg(
        long,
        env = "EDEN_CAS_GC_COMPACT_BELOW",
        value_name = "FRACTION",
        default_value = "0.8"
    )]
    pub gc_compact_below: Option<Fraction>,
    /// Lifetime of artifacts deposited without an expiry [default: forever].
    #[arg(long, env = "EDEN_CAS_DEFAULT_ARTIFACT_TTL", value_name = "DURATION")]
    pub default_artifact_ttl: Option<Span>,
    /// The same for one experiment, EXP=DURATION; repeat or separate with
    /// commas (TOML: a table `[experiment-ttl]`) [default: none].
    #[arg(
        long,
        env = "EDEN_CAS_EXPERIMENT_TTL",
        value_name = "EXP=DURATION",
        value_delimiter = ','
    )]
    #[serde(with = "per_experiment")]
    pub experiment_ttl: Option<Vec<PerExperiment<Span>>>,
}

/// The blob store's single-writer lease (docs/operations/single-writer.md).
#[derive(Debug, Default, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
#[command(next_help_heading = "Single writer")]
pub struct SingleWriterSettings {
    /// Take the single-writer lease in the blob store (true/false).
    #[arg(
        long,
        env = "EDEN_CAS_LEASE",
        value_name = "BOOL",
        default_value = "true"
    )]
    pub lease: Option<bool>,
    /// How long the lease stays valid after its last renewal (at least 2s).
    #[arg(
        long,
        env = "EDEN_CAS_LEASE_DURATION",
        value_name = "DURATION",
        default_value = "60s"
    )]
    pub lease_duration: Option<Span>,
    /// How often the lease holder renews it; under half the duration
    /// [default: 10s, at most a quarter of lease-duration].
    #[arg(long, env = "EDEN_CAS_LEASE_HEARTBEAT", value_name = "DURATION")]
    pub lease_heartbeat: Option<Span>,
}

/// Tunables of the blob store client.
#[derive(Debug, Default, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
#[command(next_help_heading = "Blob store")]
pub struct BlobTuning {
    /// Deadline of one blob request or I/O step (at least 1s).
    #[arg(
        long,
        env = "EDEN_CAS_BLOB_TIMEOUT",
        value_name = "DURATION",
        default_value = "60s"
    )]
    pub blob_timeout: Option<Span>,
    /// Retries of a transient blob failure, with backoff and jitter (0 to 20).
    #[arg(
        long,
        env = "EDEN_CAS_BLOB_RETRIES",
        value_name = "N",
        default_value = "4"
    )]
    pub blob_retries: Option<usize>,
    /// Blob requests in flight at most (1 to 4096).
    #[arg(
        long,
        env = "EDEN_CAS_BLOB_CONCURRENCY",
        value_name = "N",
        default_value = "64"
    )]
    pub blob_concurrency: Option<usize>,
    /// Multipart part size on object stores, 5MiB to 5GiB
    /// [default: a third of pack-target-bytes + 1/8, at least 5MiB].
    #[arg(long, env = "EDEN_CAS_BLOB_PART_BYTES", value_name = "SIZE")]
    pub blob_part_bytes: Option<Size>,
    /// Size bound of the in-memory cache of verified chunks; 0 disables
    /// [default: 64MiB on s3, gs and azblob; 0 on a local directory or memory://].
    #[arg(long, env = "EDEN_CAS_CHUNK_CACHE_BYTES", value_name = "SIZE")]
    pub chunk_cache_bytes: Option<Size>,
}

/// The audit log (docs/operations/audit.md).
#[derive(Debug, Default, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
#[command(next_help_heading = "Audit log")]
pub struct AuditSettings {
    /// GC deletes audit segments older than this; 0s keeps them forever.
    #[arg(
        long,
        env = "EDEN_CAS_AUDIT_RETENTION",
        value_name = "DURATION",
        default_value = "400d"
    )]
    pub audit_retention: Option<Span>,
    /// Audit events buffered before they are written as one segment
    /// (1 to 100000).
    #[arg(
        long,
        env = "EDEN_CAS_AUDIT_FLUSH_EVENTS",
        value_name = "N",
        default_value = "1000"
    )]
    pub audit_flush_events: Option<usize>,
    /// Buffered audit events are written at least this often (100ms to 1h).
    #[arg(
        long,
        env = "EDEN_CAS_AUDIT_FLUSH_INTERVAL",
        value_name = "DURATION",
        default_value = "5s"
    )]
    pub audit_flush_interval: Option<Span>,
}
