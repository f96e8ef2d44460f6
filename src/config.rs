//! One configuration tree: defaults < TOML file < environment (`EDEN_CAS_…`)
//! < command-line flags. The flag/env layer comes from clap (`cli.rs`); this
//! file merges it over the file and the defaults and validates the result.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::blobs::lease::LeaseSettings;
use crate::blobs::{BlobConfig, BlobSettings, part_bytes_for};
use crate::chunking::ChunkerParams;
use crate::engine::EngineConfig;

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
    /// The TOML file does not parse or has unknown keys.
    #[error("config file {path}: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Parser message.
        detail: String,
    },
    /// A value is out of range.
    #[error("setting `{setting}`: {detail}")]
    Invalid {
        /// Setting name (TOML key; the flag is `--<key>`).
        setting: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// The TOML file's shape (kebab-case keys, all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Listen address.
    pub listen: Option<String>,
    /// Size cap (e.g. `100MiB` or a byte count).
    pub max_artifact_bytes: Option<SizeValue>,
    /// Pack target size.
    pub pack_target_bytes: Option<SizeValue>,
    /// zstd level (0 disables).
    pub compression_level: Option<i32>,
    /// Whether float-like chunks may be stored as byte planes.
    pub byte_planes: Option<bool>,
    /// HTTP worker threads.
    pub http_workers: Option<usize>,
    /// Grace period for in-flight requests on shutdown (humantime, e.g. `30s`).
    pub shutdown_timeout: Option<String>,
    /// Upload sessions idle this long expire (humantime, e.g. `24h`).
    pub upload_idle_timeout: Option<String>,
    /// Longest wait for the next byte of a request body (humantime).
    pub body_idle_timeout: Option<String>,
    /// Logical bytes an experiment may hold, unless listed below.
    pub default_experiment_quota: Option<SizeValue>,
    /// Logical bytes per experiment.
    pub experiment_quota: Option<std::collections::BTreeMap<String, SizeValue>>,
    /// Garbage collection runs this often inside `serve` (humantime; `0s`
    /// disables).
    pub gc_interval: Option<String>,
    /// Packs whose live bytes fall below this fraction are compacted.
    pub gc_compact_below: Option<f64>,
    /// Lifetime of artifacts deposited without an expiry (humantime).
    pub default_artifact_ttl: Option<String>,
    /// Lifetime per experiment of artifacts deposited without an expiry.
    pub experiment_ttl: Option<std::collections::BTreeMap<String, String>>,
    /// Blob store: a path, `fs://…`, `s3://bucket/prefix`, `gs://…`,
    /// `azblob://container/prefix` or `memory://`.
    pub blob_store: Option<String>,
    /// S3-compatible endpoint URL.
    pub s3_endpoint: Option<String>,
    /// S3 region.
    pub s3_region: Option<String>,
    /// S3 path-style addressing.
    pub s3_path_style: Option<bool>,
    /// S3 storage class of new objects.
    pub s3_storage_class: Option<String>,
    /// GCS endpoint.
    pub gcs_endpoint: Option<String>,
    /// GCS storage class of new objects.
    pub gcs_storage_class: Option<String>,
    /// GCS requests unsigned, no credentials (emulators).
    pub gcs_unsigned: Option<bool>,
    /// Allow `gcs-unsigned` with an endpoint not on this machine.
    pub gcs_unsigned_allow_remote: Option<bool>,
    /// Azure blob service endpoint.
    pub azblob_endpoint: Option<String>,
    /// Azure storage account.
    pub azblob_account: Option<String>,
    /// Deadline of one blob request (humantime).
    pub blob_timeout: Option<String>,
    /// Retries of a transient blob failure.
    pub blob_retries: Option<usize>,
    /// Blob requests in flight at most.
    pub blob_concurrency: Option<usize>,
    /// Multipart part size on object stores.
    pub blob_part_bytes: Option<SizeValue>,
    /// Size bound of the verified-chunk cache (0 disables).
    pub chunk_cache_bytes: Option<SizeValue>,
    /// Pack bytes the background scrubber verifies per hour (0 disables).
    pub scrub_bytes_per_hour: Option<SizeValue>,
    /// File holding the token that `/metrics` also accepts (besides the
    /// admin bearer) as `Bearer metrics:<token>`.
    pub metrics_token_file: Option<PathBuf>,
    /// Take the single-writer lease in the blob store (default true).
    pub lease: Option<bool>,
    /// How long the lease stays valid after its last renewal (humantime).
    pub lease_duration: Option<String>,
    /// How often the holder renews the lease (humantime).
    pub lease_heartbeat: Option<String>,
}

/// A size in TOML: an integer or a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    /// Bytes.
    Bytes(u64),
    /// `"64MiB"` and the like.
    Text(String),
}

/// Parses `123`, `64KiB`, `100MiB`, `2GiB`, `1GB`, `10kB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

impl SizeValue {
    fn bytes(&self, setting: &'static str) -> Result<u64, ConfigError> {
        match self {
            SizeValue::Bytes(n) => Ok(*n),
            SizeValue::Text(t) => {
                parse_size(t).map_err(|detail| ConfigError::Invalid { setting, detail })
            }
        }
    }
}

/// Overrides from flags and environment (filled by clap).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config` / `EDEN_CAS_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--data-dir` / `EDEN_CAS_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--listen` / `EDEN_CAS_LISTEN`.
    pub listen: Option<String>,
    /// `--max-artifact-bytes` / `EDEN_CAS_MAX_ARTIFACT_BYTES`.
    pub max_artifact_bytes: Option<String>,
    /// `--pack-target-bytes` / `EDEN_CAS_PACK_TARGET_BYTES`.
    pub pack_target_bytes: Option<String>,
    /// `--compression-level` / `EDEN_CAS_COMPRESSION_LEVEL`.
    pub compression_level: Option<i32>,
    /// `--byte-planes` / `EDEN_CAS_BYTE_PLANES`.
    pub byte_planes: Option<bool>,
    /// `--http-workers` / `EDEN_CAS_HTTP_WORKERS`.
    pub http_workers: Option<usize>,
    /// `--blob-store`, `--s3-*`, `--gcs-*`, `--azblob-*` and their
    /// `EDEN_CAS_…` variables.
    pub blob: BlobSettings,
    /// `--blob-timeout` / `EDEN_CAS_BLOB_TIMEOUT`.
    pub blob_timeout: Option<String>,
    /// `--blob-retries` / `EDEN_CAS_BLOB_RETRIES`.
    pub blob_retries: Option<usize>,
    /// `--blob-concurrency` / `EDEN_CAS_BLOB_CONCURRENCY`.
    pub blob_concurrency: Option<usize>,
    /// `--blob-part-bytes` / `EDEN_CAS_BLOB_PART_BYTES`.
    pub blob_part_bytes: Option<String>,
    /// `--chunk-cache-bytes` / `EDEN_CAS_CHUNK_CACHE_BYTES`.
    pub chunk_cache_bytes: Option<String>,
    /// `--scrub-bytes-per-hour` / `EDEN_CAS_SCRUB_BYTES_PER_HOUR`.
    pub scrub_bytes_per_hour: Option<String>,
    /// `--body-idle-timeout` / `EDEN_CAS_BODY_IDLE_TIMEOUT`.
    pub body_idle_timeout: Option<String>,
    /// `--default-experiment-quota` / `EDEN_CAS_DEFAULT_EXPERIMENT_QUOTA`.
    pub default_experiment_quota: Option<String>,
    /// `--lease` / `EDEN_CAS_LEASE`.
    pub lease: Option<bool>,
    /// `--lease-duration` / `EDEN_CAS_LEASE_DURATION`.
    pub lease_duration: Option<String>,
    /// `--lease-heartbeat` / `EDEN_CAS_LEASE_HEARTBEAT`.
    pub lease_heartbeat: Option<String>,
}

/// The resolved configuration of `serve`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory (RocksDB in `meta/`, packs in `blobs/`).
    pub data_dir: PathBuf,
    /// Listen address, `host:port` (port 0 picks a free one).
    pub listen: String,
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
    /// The single-writer lease in the blob store (`None`: `lease = false`).
    pub lease: Option<LeaseSettings>,
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        detail: e.to_string(),
    })
}

impl Config {
    /// Merges defaults < file < overrides and validates.
    pub fn resolve(o: &Overrides) -> Result<Config, ConfigError> {
        let file = match &o.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let size = |flag: &Option<String>,
                    file: &Option<SizeValue>,
                    setting: &'static str,
                    default: u64| {
            match (flag, file) {
                (Some(s), _) => {
                    parse_size(s).map_err(|detail| ConfigError::Invalid { setting, detail })
                }
                (None, Some(v)) => v.bytes(setting),
                (None, None) => Ok(default),
            }
        };
        let defaults = EngineConfig::default();
        let duration = |setting: &'static str, v: &str| {
            humantime::parse_duration(v).map_err(|e| ConfigError::Invalid {
                setting,
                detail: e.to_string(),
            })
        };
        let mut retention = crate::engine::Retention {
            default_ttl: file
                .default_artifact_ttl
                .as_deref()
                .map(|v| duration("default-artifact-ttl", v))
                .transpose()?,
            ..Default::default()
        };
        for (exp, v) in file.experiment_ttl.iter().flatten() {
            retention
                .per_experiment
                .insert(exp.clone(), duration("experiment-ttl", v)?);
        }
        if retention.default_ttl.is_some_and(|d| d.is_zero())
            || retention.per_experiment.values().any(Duration::is_zero)
        {
            return Err(ConfigError::Invalid {
                setting: "default-artifact-ttl",
                detail: "an artifact lifetime must be positive".into(),
            });
        }
        let gc_interval = match &file.gc_interval {
            Some(v) => Some(duration("gc-interval", v)?).filter(|d| !d.is_zero()),
            None => Some(Duration::from_secs(6 * 3600)),
        };
        let gc_compact_below = file
            .gc_compact_below
            .unwrap_or(crate::engine::gc::DEFAULT_COMPACT_BELOW);
        if !(0.0..=1.0).contains(&gc_compact_below) {
            return Err(ConfigError::Invalid {
                setting: "gc-compact-below",
                detail: "must be a fraction between 0 and 1".into(),
            });
        }
        let mut quotas = crate::engine::QuotaConfig {
            default: match (&o.default_experiment_quota, &file.default_experiment_quota) {
                (Some(v), _) => Some(parse_size(v).map_err(|detail| ConfigError::Invalid {
                    setting: "default-experiment-quota",
                    detail,
                })?),
                (None, Some(v)) => Some(v.bytes("default-experiment-quota")?),
                (None, None) => None,
            },
            ..Default::default()
        };
        for (exp, v) in file.experiment_quota.iter().flatten() {
            quotas
                .per_experiment
                .insert(exp.clone(), v.bytes("experiment-quota")?);
        }
        let engine = EngineConfig {
            chunker: ChunkerParams::default(),
            max_artifact_bytes: size(
                &o.max_artifact_bytes,
                &file.max_artifact_bytes,
                "max-artifact-bytes",
                defaults.max_artifact_bytes,
            )?,
            pack_target_bytes: size(
                &o.pack_target_bytes,
                &file.pack_target_bytes,
                "pack-target-bytes",
                defaults.pack_target_bytes,
            )?,
            compression_level: o
                .compression_level
                .or(file.compression_level)
                .unwrap_or(defaults.compression_level),
            byte_planes: o
                .byte_planes
                .or(file.byte_planes)
                .unwrap_or(defaults.byte_planes),
            retention,
            quotas,
        };
        if !(1 << 20..=4 << 30).contains(&engine.pack_target_bytes) {
            return Err(ConfigError::Invalid {
                setting: "pack-target-bytes",
                detail: "must be between 1MiB and 4GiB".into(),
            });
        }
        if !(0..=19).contains(&engine.compression_level) {
            return Err(ConfigError::Invalid {
                setting: "compression-level",
                detail: "must be 0 (off) to 19".into(),
            });
        }
        let shutdown_timeout = match &file.shutdown_timeout {
            Some(s) => humantime::parse_duration(s).map_err(|e| ConfigError::Invalid {
                setting: "shutdown-timeout",
                detail: e.to_string(),
            })?,
            None => Duration::from_secs(30),
        };
        let upload_idle_timeout = match &file.upload_idle_timeout {
            Some(s) => humantime::parse_duration(s).map_err(|e| ConfigError::Invalid {
                setting: "upload-idle-timeout",
                detail: e.to_string(),
            })?,
            None => Duration::from_secs(24 * 3600),
        };
        let body_idle_timeout = match o
            .body_idle_timeout
            .as_ref()
            .or(file.body_idle_timeout.as_ref())
        {
            Some(v) => duration("body-idle-timeout", v)?,
            None => crate::http::body::DEFAULT_BODY_IDLE_TIMEOUT,
        };
        if body_idle_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                setting: "body-idle-timeout",
                detail: "must be positive".into(),
            });
        }
        let scrub_bytes_per_hour = size(
            &o.scrub_bytes_per_hour,
            &file.scrub_bytes_per_hour,
            "scrub-bytes-per-hour",
            crate::engine::DEFAULT_SCRUB_BYTES_PER_HOUR,
        )?;
        let http_workers = o.http_workers.or(file.http_workers).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        });
        if http_workers == 0 {
            return Err(ConfigError::Invalid {
                setting: "http-workers",
                detail: "must be at least 1".into(),
            });
        }
        let data_dir = o
            .data_dir
            .clone()
            .or(file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./eden-cas-data"));
        let blobs = resolve_blobs(o, &file, &data_dir, engine.pack_target_bytes, &|k| {
            std::env::var(k).ok()
        })?;
        let lease = resolve_lease(o, &file)?;
        Ok(Config {
            data_dir,
            listen: o
                .listen
                .clone()
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8080".into()),
            http_workers,
            shutdown_timeout,
            upload_idle_timeout,
            body_idle_timeout,
            gc_interval,
            gc_compact_below,
            scrub_bytes_per_hour,
            engine,
            blobs,
            metrics_token_file: file.metrics_token_file.clone(),
            lease,
        })
    }
}

/// `lease`, `lease-duration`, `lease-heartbeat`: flags and environment win
/// over the file; the heartbeat must be under half the duration so a
/// holder gets two chances to renew before it fences itself.
fn resolve_lease(o: &Overrides, f: &FileConfig) -> Result<Option<LeaseSettings>, ConfigError> {
    if !o.lease.or(f.lease).unwrap_or(true) {
        return Ok(None);
    }
    let mut s = LeaseSettings::default();
    let parse = |setting: &'static str, v: &str| {
        humantime::parse_duration(v).map_err(|e| ConfigError::Invalid {
            setting,
            detail: e.to_string(),
        })
    };
    if let Some(v) = o.lease_duration.as_ref().or(f.lease_duration.as_ref()) {
        s.duration = parse("lease-duration", v)?;
    }
    match o.lease_heartbeat.as_ref().or(f.lease_heartbeat.as_ref()) {
        Some(v) => s.heartbeat = parse("lease-heartbeat", v)?,
        None => s.heartbeat = s.heartbeat.min(s.duration / 4),
    }
    if s.duration < Duration::from_secs(2) {
        return Err(ConfigError::Invalid {
            setting: "lease-duration",
            detail: "must be at least 2s".into(),
        });
    }
    if s.heartbeat.is_zero() || s.heartbeat * 2 >= s.duration {
        return Err(ConfigError::Invalid {
            setting: "lease-heartbeat",
            detail: format!(
                "must be positive and under half of lease-duration ({})",
                humantime::format_duration(s.duration)
            ),
        });
    }
    Ok(Some(s))
}

/// The blob settings: backend choice (validated in `blobs::backend`) and
/// tunables. Flags and environment win over the file, field by field.
fn resolve_blobs(
    o: &Overrides,
    file: &FileConfig,
    data_dir: &Path,
    pack_target_bytes: u64,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BlobConfig, ConfigError> {
    let f = file;
    let b = &o.blob;
    let settings = BlobSettings {
        blob_store: b.blob_store.clone().or(f.blob_store.clone()),
        s3_endpoint: b.s3_endpoint.clone().or(f.s3_endpoint.clone()),
        s3_region: b.s3_region.clone().or(f.s3_region.clone()),
        s3_path_style: b.s3_path_style.or(f.s3_path_style),
        s3_storage_class: b.s3_storage_class.clone().or(f.s3_storage_class.clone()),
        gcs_endpoint: b.gcs_endpoint.clone().or(f.gcs_endpoint.clone()),
        gcs_storage_class: b.gcs_storage_class.clone().or(f.gcs_storage_class.clone()),
        gcs_unsigned: b.gcs_unsigned.or(f.gcs_unsigned),
        gcs_unsigned_allow_remote: b.gcs_unsigned_allow_remote.or(f.gcs_unsigned_allow_remote),
        azblob_endpoint: b.azblob_endpoint.clone().or(f.azblob_endpoint.clone()),
        azblob_account: b.azblob_account.clone().or(f.azblob_account.clone()),
    };
    let backend = settings
        .resolve(data_dir, env)
        .map_err(|e| ConfigError::Invalid {
            setting: e.setting,
            detail: e.detail,
        })?;
    let mut cfg = BlobConfig::new(backend);
    cfg.part_bytes = part_bytes_for(pack_target_bytes);
    if let Some(t) = o.blob_timeout.as_ref().or(f.blob_timeout.as_ref()) {
        cfg.timeout = humantime::parse_duration(t).map_err(|e| ConfigError::Invalid {
            setting: "blob-timeout",
            detail: e.to_string(),
        })?;
        if cfg.timeout < std::time::Duration::from_secs(1) {
            return Err(ConfigError::Invalid {
                setting: "blob-timeout",
                detail: "must be at least 1s".into(),
            });
        }
    }
    if let Some(n) = o.blob_retries.or(f.blob_retries) {
        if n > 20 {
            return Err(ConfigError::Invalid {
                setting: "blob-retries",
                detail: "must be 0 to 20".into(),
            });
        }
        cfg.retries = n;
    }
    if let Some(n) = o.blob_concurrency.or(f.blob_concurrency) {
        if !(1..=4096).contains(&n) {
            return Err(ConfigError::Invalid {
                setting: "blob-concurrency",
                detail: "must be 1 to 4096".into(),
            });
        }
        cfg.max_concurrency = n;
    }
    let size =
        |flag: &Option<String>, file: &Option<SizeValue>, setting: &'static str| match (flag, file)
        {
            (Some(s), _) => parse_size(s)
                .map(Some)
                .map_err(|detail| ConfigError::Invalid { setting, detail }),
            (None, Some(v)) => v.bytes(setting).map(Some),
            (None, None) => Ok(None),
        };
    if let Some(n) = size(&o.blob_part_bytes, &f.blob_part_bytes, "blob-part-bytes")? {
        if !(5 << 20..=5 << 30).contains(&n) {
            return Err(ConfigError::Invalid {
                setting: "blob-part-bytes",
                detail: "must be between 5MiB and 5GiB (S3 multipart limits)".into(),
            });
        }
        cfg.part_bytes = n as usize;
    }
    if let Some(n) = size(
        &o.chunk_cache_bytes,
        &f.chunk_cache_bytes,
        "chunk-cache-bytes",
    )? {
        cfg.chunk_cache_bytes = n;
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests;
