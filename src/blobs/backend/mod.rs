//! Which blob store to use: the `blob-store` URL, the per-backend named
//! settings that go with it, and the opendal service built from them.
//!
//! One setting picks the backend — a path or `fs://…` (the default, under the
//! data directory), `s3://bucket/prefix`, `gs://bucket/prefix`,
//! `azblob://container/prefix` or `memory://` (tests only). Options are named
//! per backend (`s3-endpoint`, `gcs-storage-class`, `azblob-account`, …); one
//! set for another backend is an error, never silently ignored.
//!
//! Credentials are never settings: they come from the environment or the
//! provider's default chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`,
//! profiles, instance roles; `GOOGLE_APPLICATION_CREDENTIALS`, VM metadata;
//! `AZURE_STORAGE_*`, managed identity), so they never appear in argv, in
//! config files or in a log line. A `blob-store` URL carrying user info or a
//! query is refused without being echoed.

mod operator;
mod settings;
#[cfg(test)]
mod tests;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub(crate) use operator::operator;
pub use settings::BlobSettings;
use validate::{
    azblob_account_from_endpoint, check_bucket_gcs, check_bucket_s3, check_container,
    check_endpoint, check_gcs_storage_class, check_s3_storage_class, is_loopback_endpoint,
    split_bucket,
};

/// A configuration error: the setting to fix and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// Setting name (TOML key; the flag is `--<name>`).
    pub setting: String,
    /// What is wrong, one line.
    pub detail: String,
}

fn invalid(setting: impl Into<String>, detail: impl Into<String>) -> SettingError {
    SettingError {
        setting: setting.into(),
        detail: detail.into(),
    }
}

/// S3 (and S3-compatible) settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Options {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// Endpoint; `None` is AWS for the region.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Path-style addressing instead of virtual-host style.
    pub path_style: bool,
    /// Storage class of new objects.
    pub storage_class: Option<String>,
}

/// Google Cloud Storage settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsOptions {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix.
    pub prefix: String,
    /// Endpoint; `None` is `https://storage.googleapis.com`.
    pub endpoint: Option<String>,
    /// Storage class of new objects.
    pub storage_class: Option<String>,
    /// Requests are sent unsigned and no credential is loaded (emulators:
    /// `gcs-unsigned` or `STORAGE_EMULATOR_HOST`).
    pub unsigned: bool,
}

/// Azure Blob Storage settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzblobOptions {
    /// Container name.
    pub container: String,
    /// Key prefix.
    pub prefix: String,
    /// Blob service endpoint.
    pub endpoint: String,
    /// Storage account (from `azblob-account`, `AZURE_STORAGE_ACCOUNT_NAME`,
    /// `AZURE_STORAGE_ACCOUNT`, or the endpoint: `https://ACCOUNT.blob.…` or
    /// Azurite's path-style `http://127.0.0.1:10000/ACCOUNT`).
    pub account: Option<String>,
}

/// A validated backend choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A local directory.
    Fs {
        /// Root directory of the store.
        root: PathBuf,
    },
    /// Process memory: nothing is durable. Tests only.
    Memory,
    /// Amazon S3 or an S3-compatible service.
    S3(S3Options),
    /// Google Cloud Storage.
    Gcs(GcsOptions),
    /// Azure Blob Storage.
    Azblob(AzblobOptions),
}

impl Backend {
    /// Whether this backend is an object store reached over HTTP (multipart
    /// writes, per-request costs) rather than local disk or memory.
    pub fn is_object_store(&self) -> bool {
        matches!(self, Backend::S3(_) | Backend::Gcs(_) | Backend::Azblob(_))
    }

    /// The setting that names the endpoint to fix when it cannot be reached.
    pub fn endpoint_setting(&self) -> &'static str {
        match self {
            Backend::S3(o) if o.endpoint.is_some() => "s3-endpoint",
            Backend::S3(_) => "s3-region",
            Backend::Gcs(_) => "gcs-endpoint",
            Backend::Azblob(_) => "azblob-endpoint",
            Backend::Fs { .. } | Backend::Memory => "blob-store",
        }
    }

    /// Where the credentials of this backend come from, for error messages.
    pub fn credential_sources(&self) -> &'static str {
        match self {
            Backend::S3(_) => {
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the instance role"
            }
            Backend::Gcs(o) if o.unsigned => {
                "none (gcs-unsigned / STORAGE_EMULATOR_HOST: requests are unsigned; an emulator \
                 needs none, a real GCS endpoint refuses them)"
            }
            Backend::Gcs(_) => "GOOGLE_APPLICATION_CREDENTIALS or the VM service account",
            Backend::Azblob(_) => {
                "AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN or the managed identity"
            }
            Backend::Fs { .. } | Backend::Memory => "file permissions of the directory",
        }
    }

    /// The endpoint requests go to, for messages (never holds credentials).
    pub fn endpoint(&self) -> String {
        match self {
            Backend::S3(o) => o
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", o.region)),
            Backend::Gcs(o) => o
                .endpoint
                .clone()
                .unwrap_or_else(|| "https://storage.googleapis.com".into()),
            Backend::Azblob(o) => o.endpoint.clone(),
            Backend::Fs { root } => root.display().to_string(),
            Backend::Memory => "memory".into(),
        }
    }
}

impl fmt::Display for Backend {
    /// The `blob-store` URL in canonical form; safe to log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |scheme: &str, bucket: &str, prefix: &str| {
            if prefix.is_empty() {
                format!("{scheme}://{bucket}")
            } else {
                format!("{scheme}://{bucket}/{prefix}")
            }
        };
        match self {
            Backend::Fs { root } => write!(f, "fs://{}", root.display()),
            Backend::Memory => f.write_str("memory://"),
            Backend::S3(o) => f.write_str(&join("s3", &o.bucket, &o.prefix)),
            Backend::Gcs(o) => f.write_str(&join("gs", &o.bucket, &o.prefix)),
            Backend::Azblob(o) => f.write_str(&join("azblob", &o.container, &o.prefix)),
        }
    }
}

impl BlobSettings {
    /// Validates the settings. `data_dir` gives the default (`<data-dir>/blobs`);
    /// `env` reads the environment (injected so tests do not depend on it).
    pub fn resolve(
        &self,
        data_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Backend, SettingError> {
        let url = self
            .blob_store
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let Some(url) = url else {
            self.reject_foreign("fs")?;
            return Ok(Backend::Fs {
                root: data_dir.join("blobs"),
            });
        };
        let (scheme, rest) = match url.split_once("://") {
            Some((s, rest)) => (s.to_ascii_lowercase(), rest),
            None => ("fs".to_string(), url),
        };
        let scheme = match scheme.as_str() {
            "gcs" => "gs".to_string(),
            _ => scheme,
        };
        if scheme != "fs" && rest.contains(['@', '?', '#']) {
            // Never echo the value: it may hold a secret.
            return Err(invalid(
                "blob-store",
                "user info, query or fragment is not accepted in the URL; credentials come \
                 only from the environment (see docs/operations/blob-backends.md)",
            ));
        }
        match scheme.as_str() {
            "fs" => {
                self.reject_foreign("fs")?;
                if rest.is_empty() {
                    return Err(invalid("blob-store", "fs:// needs a directory path"));
                }
                Ok(Backend::Fs {
                    root: PathBuf::from(rest),
                })
            }
            "memory" => {
                self.reject_foreign("memory")?;
                if !rest.trim_matches('/').is_empty() {
                    return Err(invalid("blob-store", "memory:// takes no bucket or path"));
                }
                Ok(Backend::Memory)
            }
            "s3" => {
                self.reject_foreign("s3")?;
                let (bucket, prefix) = split_bucket(rest, "bucket")?;
                check_bucket_s3(&bucket)?;
                self.s3(bucket, prefix, env)
            }
            "gs" => {
                self.reject_foreign("gs")?;
                let (bucket, prefix) = split_bucket(rest, "bucket")?;
                check_bucket_gcs(&bucket)?;
                self.gcs(bucket, prefix, env)
            }
            "azblob" => {
                self.reject_foreign("azblob")?;
                let (container, prefix) = split_bucket(rest, "container")?;
                check_container(&container)?;
                self.azblob(container, prefix, env)
            }
            other => Err(invalid(
                "blob-store",
                format!(
                    "unknown scheme `{}://`; expected a path, fs://, s3://, gs://, azblob:// \
                     or memory://",
                    other.chars().take(16).collect::<String>()
                ),
            )),
        }
    }

    /// `gs://`: endpoint, emulator mode and storage class. Google's client
    /// libraries send requests unsigned to `STORAGE_EMULATOR_HOST` when it is
    /// set; so does eden-cas, and `gcs-unsigned` says the same as a setting.
    /// Unsigned requests may only go to this machine unless
    /// `gcs-unsigned-allow-remote` says otherwise: credentials are never sent
    /// and nothing authenticates the service, so it must be one you run.
    fn gcs(
        &self,
        bucket: String,
        prefix: String,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Backend, SettingError> {
        let emulator = env("STORAGE_EMULATOR_HOST")
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .map(|h| {
                let url = if h.contains("://") {
                    h
                } else {
                    format!("http://{h}")
                };
                check_endpoint("gcs-endpoint", &url).map_err(|e| {
                    invalid(
                        "gcs-endpoint",
                        format!("STORAGE_EMULATOR_HOST in the environment: {}", e.detail),
                    )
                })
            })
            .transpose()?;
        let configured = self
            .gcs_endpoint
            .as_deref()
            .map(|e| check_endpoint("gcs-endpoint", e))
            .transpose()?;
        let endpoint = match (configured, &emulator) {
            (Some(c), Some(e)) if &c != e => {
                return Err(invalid(
                    "gcs-endpoint",
                    format!(
                        "{c} conflicts with STORAGE_EMULATOR_HOST={e} in the environment; \
                         unset one of them"
                    ),
                ));
            }
            (Some(c), _) => Some(c),
            (None, e) => e.clone(),
        };
        let unsigned = match (self.gcs_unsigned, &emulator) {
            (Some(false), Some(_)) => {
                return Err(invalid(
                    "gcs-unsigned",
                    "is false, but STORAGE_EMULATOR_HOST is set in the environment (which \
                     means an emulator without credentials); unset one of them",
                ));
            }
            (Some(u), _) => u,
            (None, e) => e.is_some(),
        };
        let allow_remote = self.gcs_unsigned_allow_remote.unwrap_or(false);
        if allow_remote && !unsigned {
            return Err(invalid(
                "gcs-unsigned-allow-remote",
                "only applies with gcs-unsigned = true (or STORAGE_EMULATOR_HOST)",
            ));
        }
        if unsigned && !allow_remote {
            let shown = endpoint
                .clone()
                .unwrap_or_else(|| "https://storage.googleapis.com".into());
            if !endpoint.as_deref().is_some_and(is_loopback_endpoint) {
                return Err(invalid(
                    "gcs-unsigned-allow-remote",
                    format!(
                        "unsigned GCS requests (gcs-unsigned or STORAGE_EMULATOR_HOST) go only \
                         to an emulator on this machine (127.0.0.1, ::1, localhost), not to \
                         {shown}; set gcs-unsigned-allow-remote = true for an emulator on \
                         another host"
                    ),
                ));
            }
        }
        let storage_class = self
            .gcs_storage_class
            .as_deref()
            .map(check_gcs_storage_class)
            .transpose()?;
        Ok(Backend::Gcs(GcsOptions {
            bucket,
            prefix,
            endpoint,
            storage_class,
            unsigned,
        }))
    }

    /// `azblob://`: account and endpoint. A shared key in the environment
    /// needs an account name to sign with; without one it would be ignored
    /// and every request sent unsigned, so that is an error here.
    fn azblob(
        &self,
        container: String,
        prefix: String,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Backend, SettingError> {
        let endpoint = self
            .azblob_endpoint
            .as_deref()
            .map(|e| check_endpoint("azblob-endpoint", e))
            .transpose()?;
        let account = self
            .azblob_account
            .clone()
            .or_else(|| env("AZURE_STORAGE_ACCOUNT_NAME"))
            .or_else(|| env("AZURE_STORAGE_ACCOUNT"))
            .filter(|a| !a.is_empty())
            .or_else(|| endpoint.as_deref().and_then(azblob_account_from_endpoint));
        let valid_account = |a: &str| {
            (3..=24).contains(&a.len())
                && a.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if account.as_deref().is_some_and(|a| !valid_account(a)) {
            return Err(invalid(
                "azblob-account",
                "a storage account name is 3-24 lowercase letters and digits",
            ));
        }
        let has_key = env("AZURE_STORAGE_ACCOUNT_KEY").is_some_and(|k| !k.is_empty());
        if has_key && account.is_none() {
            return Err(invalid(
                "azblob-account",
                "AZURE_STORAGE_ACCOUNT_KEY is set, but no storage account is named to sign \
                 with; set azblob-account (or AZURE_STORAGE_ACCOUNT_NAME), or an endpoint \
                 naming it (https://ACCOUNT.blob.core.windows.net, \
                 http://127.0.0.1:10000/ACCOUNT)",
            ));
        }
        let endpoint = match (endpoint, &account) {
            (Some(e), _) => e,
            (None, Some(a)) => format!("https://{a}.blob.core.windows.net"),
            (None, None) => {
                return Err(invalid(
                    "azblob-account",
                    "required for azblob:// (or set azblob-endpoint, or \
                     AZURE_STORAGE_ACCOUNT_NAME in the environment)",
                ));
            }
        };
        Ok(Backend::Azblob(AzblobOptions {
            container,
            prefix,
            endpoint,
            account,
        }))
    }

    fn s3(
        &self,
        bucket: String,
        prefix: String,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Backend, SettingError> {
        let endpoint = match &self.s3_endpoint {
            Some(e) => Some(check_endpoint("s3-endpoint", e)?),
            None => env("AWS_ENDPOINT_URL")
                .or_else(|| env("AWS_ENDPOINT_URL_S3"))
                .filter(|e| !e.is_empty())
                .map(|e| check_endpoint("s3-endpoint", &e))
                .transpose()?,
        };
        let region = self
            .s3_region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .filter(|r| !r.is_empty());
        let region = match (region, &endpoint) {
            (Some(r), _) => {
                if !r
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(invalid("s3-region", "not a region name"));
                }
                r
            }
            // S3-compatible servers (MinIO, SeaweedFS, Ceph) accept any region.
            (None, Some(_)) => "us-east-1".to_string(),
            (None, None) => {
                return Err(invalid(
                    "s3-region",
                    "required for AWS S3 (or set AWS_REGION in the environment)",
                ));
            }
        };
        let storage_class = self
            .s3_storage_class
            .as_deref()
            .map(check_s3_storage_class)
            .transpose()?;
        let path_style = self.s3_path_style.unwrap_or(endpoint.is_some());
        if !path_style && bucket.contains('.') && endpoint.is_none() {
            return Err(invalid(
                "s3-path-style",
                "bucket names with dots need path-style addressing over TLS; set s3-path-style = true",
            ));
        }
        Ok(Backend::S3(S3Options {
            bucket,
            prefix,
            endpoint,
            region,
            path_style,
            storage_class,
        }))
    }
}
