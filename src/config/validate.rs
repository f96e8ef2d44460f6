//! Merged settings → the typed configuration: the engine's
//! [`EngineConfig`], the blob store's [`BlobConfig`], the lease, and the
//! server's own settings. Every range check and every default that depends
//! on another setting or on the machine is here; an error names the setting
//! and where its value came from.

use std::path::PathBuf;
use std::time::Duration;

use super::layers::Effective;
use super::values::{PerExperiment, Size, Span};
use super::{Config, ConfigError, MetaStore};
use crate::blobs::lease::LeaseSettings;
use crate::blobs::{BlobConfig, part_bytes_for};
use crate::chunking::ChunkerParams;
use crate::engine::audit::AuditConfig;
use crate::engine::{EngineConfig, QuotaConfig, Retention};
use crate::meta::postgres::PgSettings;

/// Builds errors that name the setting and the source of its value.
struct Check<'a>(&'a Effective);

impl Check<'_> {
    fn invalid(&self, setting: &str, detail: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            setting: setting.into(),
            origin: self.0.source(setting).cloned(),
            detail: detail.into(),
        }
    }

    /// A setting with a built-in default; absent only if the defaults
    /// layer was left out.
    fn given<T: Clone>(&self, v: &Option<T>, setting: &str) -> Result<T, ConfigError> {
        v.clone()
            .ok_or_else(|| self.invalid(setting, "has no value (and no built-in default)"))
    }

    fn within<T: PartialOrd + Copy>(
        &self,
        v: T,
        range: std::ops::RangeInclusive<T>,
        setting: &str,
        what: &str,
    ) -> Result<T, ConfigError> {
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(self.invalid(setting, format!("must be {what}")))
        }
    }
}

fn durations(entries: &Option<Vec<PerExperiment<Span>>>) -> impl Iterator<Item = (&str, Duration)> {
    entries
        .iter()
        .flatten()
        .map(|e| (e.experiment.as_str(), e.value.0))
}

/// Validates `e` into a [`Config`]; `env` reads the provider variables the
/// blob backends honour (`AWS_REGION`, `STORAGE_EMULATOR_HOST`, …).
///
/// # Errors
/// [`ConfigError::Invalid`] naming the first setting out of range.
pub fn validate(
    e: &Effective,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let c = Check(e);
    let s = &e.settings;

    let mut retention = Retention {
        default_ttl: s.lifecycle.default_artifact_ttl.map(|t| t.0),
        ..Default::default()
    };
    if retention.default_ttl.is_some_and(|d| d.is_zero()) {
        return Err(c.invalid(
            "default-artifact-ttl",
            "an artifact lifetime must be positive",
        ));
    }
    for (exp, ttl) in durations(&s.lifecycle.experiment_ttl) {
        if ttl.is_zero() {
            return Err(c.invalid(
                "experiment-ttl",
                format!("{exp}: an artifact lifetime must be positive"),
            ));
        }
        retention.per_experiment.insert(exp.to_string(), ttl);
    }
    let quotas = QuotaConfig {
        default: s.limits.default_experiment_quota.map(|q| q.0),
        per_experiment: s
            .limits
            .experiment_quota
            .iter()
            .flatten()
            .map(|e| (e.experiment.clone(), e.value.0))
            .collect(),
    };

    let audit = audit(&c)?;
    let pack_target_bytes = c.given(&s.engine.pack_target_bytes, "pack-target-bytes")?.0;
    let engine = EngineConfig {
        chunker: ChunkerParams::default(),
        max_artifact_bytes: c
            .given(&s.limits.max_artifact_bytes, "max-artifact-bytes")?
            .0,
        pack_target_bytes: c.within(
            pack_target_bytes,
            1 << 20..=4 << 30,
            "pack-target-bytes",
            "between 1MiB and 4GiB",
        )?,
        compression_level: c.within(
            c.given(&s.engine.compression_level, "compression-level")?,
            0..=19,
            "compression-level",
            "0 (off) to 19",
        )?,
        byte_planes: c.given(&s.engine.byte_planes, "byte-planes")?,
        retention,
        quotas,
        audit,
    };

    let body_idle_timeout = c.given(&s.server.body_idle_timeout, "body-idle-timeout")?.0;
    if body_idle_timeout.is_zero() {
        return Err(c.invalid("body-idle-timeout", "must be positive"));
    }
    let http_workers = match s.server.http_workers {
        Some(n) => c.within(n, 1..=usize::MAX, "http-workers", "at least 1")?,
        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    let data_dir: PathBuf = c.given(&s.server.data_dir, "data-dir")?;
    let blobs = blob_config(&c, &data_dir, engine.pack_target_bytes, env)?;
    let lease = lease(&c)?;
    let meta_store = meta_store(&c, &data_dir, env)?;
    let gc_interval = c.given(&s.lifecycle.gc_interval, "gc-interval")?.0;
    Ok(Config {
        listen: c.given(&s.server.listen, "listen")?,
        admin_listen: s.server.admin_listen.clone(),
        http_workers,
        shutdown_timeout: c.given(&s.server.shutdown_timeout, "shutdown-timeout")?.0,
        upload_idle_timeout: c
            .given(&s.engine.upload_idle_timeout, "upload-idle-timeout")?
            .0,
        body_idle_timeout,
        gc_interval: Some(gc_interval).filter(|d| !d.is_zero()),
        gc_compact_below: c
            .given(&s.lifecycle.gc_compact_below, "gc-compact-below")?
            .0,
        scrub_bytes_per_hour: c
            .given(&s.engine.scrub_bytes_per_hour, "scrub-bytes-per-hour")?
            .0,
        engine,
        blobs,
        metrics_token_file: s.server.metrics_token_file.clone(),
        log_format: c.given(&s.server.log_format, "log-format")?,
        otlp_endpoint: otlp_endpoint(&c)?,
        tls_cert: s.server.tls_cert.clone(),
        tls_key: s.server.tls_key.clone(),
        lease,
        meta_store,
        migrate: c.given(&s.meta.migrate, "migrate")?,
        data_dir,
        effective: e.clone(),
    })
}

/// `audit-retention` (0s: forever), `audit-flush-events`,
/// `audit-flush-interval`.
fn audit(c: &Check<'_>) -> Result<AuditConfig, ConfigError> {
    let s = &c.0.settings.audit;
    let retention = c.given(&s.audit_retention, "audit-retention")?.0;
    let flush_interval = c.given(&s.audit_flush_interval, "audit-flush-interval")?.0;
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&flush_interval) {
        return Err(c.invalid("audit-flush-interval", "must be between 100ms and 1h"));
    }
    Ok(AuditConfig {
        retention: Some(retention).filter(|d| !d.is_zero()),
        flush_events: c.within(
            c.given(&s.audit_flush_events, "audit-flush-events")?,
            1..=100_000,
            "audit-flush-events",
            "1 to 100000",
        )?,
        flush_interval,
    })
}

/// `otlp-endpoint`: an http(s) URL of a collector, without credentials in
/// it (they would be logged by the exporter's errors).
fn otlp_endpoint(c: &Check<'_>) -> Result<Option<String>, ConfigError> {
    let Some(url) = &c.0.settings.server.otlp_endpoint else {
        return Ok(None);
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| c.invalid("otlp-endpoint", "must be an http:// or https:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(c.invalid(
            "otlp-endpoint",
            "needs a host and no user:password (use the collector's network policy)",
        ));
    }
    Ok(Some(url.trim_end_matches('/').to_string()))
}

/// `meta-store` (with `meta-store-password-file`, `meta-store-ca-file`):
/// `rocksdb` or a `postgres://` URL without a password.
fn meta_store(
    c: &Check<'_>,
    data_dir: &std::path::Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<MetaStore, ConfigError> {
    let s = &c.0.settings.meta;
    let url: String = c.given(&s.meta_store, "meta-store")?;
    if url == "rocksdb" {
        return Ok(MetaStore::RocksDb(data_dir.join("meta")));
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(c.invalid(
            "meta-store",
            "must be `rocksdb` or a postgres://user@host[:port]/db URL",
        ));
    }
    PgSettings::from_url(
        &url,
        s.meta_store_password_file.as_deref(),
        s.meta_store_ca_file.clone(),
        env,
    )
    .map(|pg| MetaStore::Postgres(Box::new(pg)))
    .map_err(|detail| c.invalid("meta-store", detail))
}

/// `lease`, `lease-duration`, `lease-heartbeat`. The heartbeat must be
/// under half the duration so a holder gets two chances to renew before it
/// fences itself; unset, it is 10s or a quarter of the duration.
fn lease(c: &Check<'_>) -> Result<Option<LeaseSettings>, ConfigError> {
    let s = &c.0.settings.lease;
    if !c.given(&s.lease, "lease")? {
        return Ok(None);
    }
    let mut l = LeaseSettings {
        duration: c.given(&s.lease_duration, "lease-duration")?.0,
        ..LeaseSettings::default()
    };
    l.heartbeat = match s.lease_heartbeat {
        Some(h) => h.0,
        None => l.heartbeat.min(l.duration / 4),
    };
    if l.duration < Duration::from_secs(2) {
        return Err(c.invalid("lease-duration", "must be at least 2s"));
    }
    if l.heartbeat.is_zero() || l.heartbeat * 2 >= l.duration {
        return Err(c.invalid(
            "lease-heartbeat",
            format!(
                "must be positive and under half of lease-duration ({})",
                Span(l.duration)
            ),
        ));
    }
    Ok(Some(l))
}

/// The blob store: backend choice (validated by `blobs::backend`) and
/// client tunables.
fn blob_config(
    c: &Check<'_>,
    data_dir: &std::path::Path,
    pack_target_bytes: u64,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BlobConfig, ConfigError> {
    let s = &c.0.settings;
    let backend = s
        .blob
        .resolve(data_dir, env)
        .map_err(|e| c.invalid(&e.setting, e.detail))?;
    let t = &s.blob_tuning;
    let mut cfg = BlobConfig::new(backend);
    cfg.timeout = c.given(&t.blob_timeout, "blob-timeout")?.0;
    if cfg.timeout < Duration::from_secs(1) {
        return Err(c.invalid("blob-timeout", "must be at least 1s"));
    }
    cfg.retries = c.within(
        c.given(&t.blob_retries, "blob-retries")?,
        0..=20,
        "blob-retries",
        "0 to 20",
    )?;
    cfg.max_concurrency = c.within(
        c.given(&t.blob_concurrency, "blob-concurrency")?,
        1..=4096,
        "blob-concurrency",
        "1 to 4096",
    )?;
    cfg.part_bytes = match t.blob_part_bytes {
        Some(Size(n)) => c.within(
            n,
            5 << 20..=5 << 30,
            "blob-part-bytes",
            "between 5MiB and 5GiB (S3 multipart limits)",
        )? as usize,
        None => part_bytes_for(pack_target_bytes),
    };
    if let Some(Size(n)) = t.chunk_cache_bytes {
        cfg.chunk_cache_bytes = n;
    }
    Ok(cfg)
}
