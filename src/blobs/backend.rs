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

use std::fmt;
use std::path::{Path, PathBuf};

use opendal::Operator;

/// A configuration error: the setting to fix and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// Setting name (TOML key; the flag is `--<name>`).
    pub setting: &'static str,
    /// What is wrong, one line.
    pub detail: String,
}

fn invalid(setting: &'static str, detail: impl Into<String>) -> SettingError {
    SettingError {
        setting,
        detail: detail.into(),
    }
}

/// Raw blob settings after merging file < environment < flags; not yet
/// validated. Every field is a named setting of the same name in kebab-case.
#[derive(Debug, Default, Clone)]
pub struct BlobSettings {
    /// `blob-store`: where packs and manifests live.
    pub blob_store: Option<String>,
    /// `s3-endpoint`: S3-compatible endpoint URL (MinIO, SeaweedFS, R2, …).
    pub s3_endpoint: Option<String>,
    /// `s3-region`: bucket region.
    pub s3_region: Option<String>,
    /// `s3-path-style`: path-style addressing (`endpoint/bucket/key`).
    pub s3_path_style: Option<bool>,
    /// `s3-storage-class`: storage class of new objects.
    pub s3_storage_class: Option<String>,
    /// `gcs-endpoint`: GCS endpoint (emulators).
    pub gcs_endpoint: Option<String>,
    /// `gcs-storage-class`: storage class of new objects.
    pub gcs_storage_class: Option<String>,
    /// `azblob-endpoint`: blob service endpoint (Azurite, sovereign clouds).
    pub azblob_endpoint: Option<String>,
    /// `azblob-account`: storage account name.
    pub azblob_account: Option<String>,
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
    /// Storage account (from `azblob-account`, `AZURE_STORAGE_ACCOUNT_NAME`
    /// or the endpoint).
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

/// Per-backend settings and the scheme they belong to.
const OWNED: &[(&str, &str)] = &[
    ("s3-endpoint", "s3"),
    ("s3-region", "s3"),
    ("s3-path-style", "s3"),
    ("s3-storage-class", "s3"),
    ("gcs-endpoint", "gs"),
    ("gcs-storage-class", "gs"),
    ("azblob-endpoint", "azblob"),
    ("azblob-account", "azblob"),
];

impl BlobSettings {
    fn is_set(&self, name: &str) -> bool {
        match name {
            "s3-endpoint" => self.s3_endpoint.is_some(),
            "s3-region" => self.s3_region.is_some(),
            "s3-path-style" => self.s3_path_style.is_some(),
            "s3-storage-class" => self.s3_storage_class.is_some(),
            "gcs-endpoint" => self.gcs_endpoint.is_some(),
            "gcs-storage-class" => self.gcs_storage_class.is_some(),
            "azblob-endpoint" => self.azblob_endpoint.is_some(),
            "azblob-account" => self.azblob_account.is_some(),
            _ => false,
        }
    }

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
                let endpoint = self
                    .gcs_endpoint
                    .as_deref()
                    .map(|e| check_endpoint("gcs-endpoint", e))
                    .transpose()?;
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
                }))
            }
            "azblob" => {
                self.reject_foreign("azblob")?;
                let (container, prefix) = split_bucket(rest, "container")?;
                check_container(&container)?;
                let account = self
                    .azblob_account
                    .clone()
                    .or_else(|| env("AZURE_STORAGE_ACCOUNT_NAME"))
                    .or_else(|| env("AZURE_STORAGE_ACCOUNT"))
                    .filter(|a| !a.is_empty());
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
                let endpoint = match (&self.azblob_endpoint, &account) {
                    (Some(e), _) => check_endpoint("azblob-endpoint", e)?,
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

    /// An option set for a backend other than the one chosen is an error.
    fn reject_foreign(&self, scheme: &str) -> Result<(), SettingError> {
        for (name, owner) in OWNED {
            if *owner != scheme && self.is_set(name) {
                return Err(invalid(
                    name,
                    format!(
                        "only applies to a {owner}:// blob-store, but blob-store is {}",
                        match scheme {
                            "fs" => "a local directory".to_string(),
                            s => format!("{s}://"),
                        }
                    ),
                ));
            }
        }
        Ok(())
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

/// Splits `bucket/prefix/…` and normalises the prefix.
fn split_bucket(rest: &str, what: &str) -> Result<(String, String), SettingError> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(invalid(
            "blob-store",
            format!("missing {what} name (expected scheme://{what}/optional/prefix)"),
        ));
    }
    let prefix = prefix.trim_matches('/');
    if !prefix.is_empty() && prefix.split('/').any(|seg| matches!(seg, "" | "." | "..")) {
        return Err(invalid(
            "blob-store",
            "the prefix must not contain empty, `.` or `..` segments",
        ));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

fn check_bucket_s3(b: &str) -> Result<(), SettingError> {
    let ok_chars = b
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-');
    let ok_ends = b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.ends_with(|c: char| c.is_ascii_alphanumeric());
    if (3..=63).contains(&b.len()) && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(invalid(
            "blob-store",
            "an S3 bucket name is 3-63 lowercase letters, digits, `.` and `-`",
        ))
    }
}

fn check_bucket_gcs(b: &str) -> Result<(), SettingError> {
    let ok_chars = b.bytes().all(|c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-' || c == b'_'
    });
    let ok_ends = b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.ends_with(|c: char| c.is_ascii_alphanumeric());
    if (3..=222).contains(&b.len()) && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(invalid(
            "blob-store",
            "a GCS bucket name is 3-222 lowercase letters, digits, `.`, `_` and `-`",
        ))
    }
}

fn check_container(c: &str) -> Result<(), SettingError> {
    let ok_chars = c
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        && c.ends_with(|ch: char| ch.is_ascii_alphanumeric());
    if (3..=63).contains(&c.len()) && ok_chars && ok_ends && !c.contains("--") {
        Ok(())
    } else {
        Err(invalid(
            "blob-store",
            "an Azure container name is 3-63 lowercase letters, digits and single `-`",
        ))
    }
}

fn check_endpoint(setting: &'static str, e: &str) -> Result<String, SettingError> {
    let e = e.trim().trim_end_matches('/');
    let Some(host) = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"))
    else {
        return Err(invalid(setting, "must start with http:// or https://"));
    };
    if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
        return Err(invalid(
            setting,
            "must be scheme://host[:port] with no user info or query",
        ));
    }
    Ok(e.to_string())
}

fn check_s3_storage_class(c: &str) -> Result<String, SettingError> {
    const READABLE: &[&str] = &[
        "STANDARD",
        "REDUCED_REDUNDANCY",
        "STANDARD_IA",
        "ONEZONE_IA",
        "INTELLIGENT_TIERING",
        "GLACIER_IR",
        "OUTPOSTS",
        "EXPRESS_ONEZONE",
    ];
    let c = c.trim().to_ascii_uppercase();
    if READABLE.contains(&c.as_str()) {
        Ok(c)
    } else if matches!(c.as_str(), "GLACIER" | "DEEP_ARCHIVE" | "SNOW") {
        Err(invalid(
            "s3-storage-class",
            format!(
                "{c} objects cannot be read without a restore; use GLACIER_IR or a lifecycle rule instead"
            ),
        ))
    } else {
        Err(invalid(
            "s3-storage-class",
            format!("unknown class; expected one of {}", READABLE.join(", ")),
        ))
    }
}

fn check_gcs_storage_class(c: &str) -> Result<String, SettingError> {
    let c = c.trim().to_ascii_uppercase();
    if matches!(c.as_str(), "STANDARD" | "NEARLINE" | "COLDLINE" | "ARCHIVE") {
        Ok(c)
    } else {
        Err(invalid(
            "gcs-storage-class",
            "expected STANDARD, NEARLINE, COLDLINE or ARCHIVE",
        ))
    }
}

/// Builds the opendal operator (no layers) for a backend. HTTP backends use
/// the process-wide reqwest transport (rustls), installed here on first use.
pub(crate) fn operator(backend: &Backend) -> Result<Operator, opendal::Error> {
    fn root(prefix: &str) -> String {
        if prefix.is_empty() {
            "/".into()
        } else {
            format!("/{prefix}/")
        }
    }
    if backend.is_object_store() {
        opendal::install_default();
    }
    Ok(match backend {
        Backend::Fs { root } => {
            Operator::new(opendal::services::Fs::default().root(&root.to_string_lossy()))?
        }
        Backend::Memory => Operator::new(opendal::services::Memory::default())?,
        Backend::S3(o) => {
            let mut b = opendal::services::S3::default()
                .bucket(&o.bucket)
                .root(&root(&o.prefix))
                .region(&o.region);
            if let Some(e) = &o.endpoint {
                b = b.endpoint(e);
            }
            if !o.path_style {
                b = b.enable_virtual_host_style();
            }
            if let Some(c) = &o.storage_class {
                b = b.default_storage_class(c);
            }
            // The AWS SDKs' switch for hosts with no instance metadata service.
            if std::env::var("AWS_EC2_METADATA_DISABLED")
                .is_ok_and(|v| v.eq_ignore_ascii_case("true"))
            {
                b = b.disable_ec2_metadata();
            }
            Operator::new(b)?
        }
        Backend::Gcs(o) => {
            let mut b = opendal::services::Gcs::default()
                .bucket(&o.bucket)
                .root(&root(&o.prefix));
            if let Some(e) = &o.endpoint {
                b = b.endpoint(e);
            }
            if let Some(c) = &o.storage_class {
                b = b.default_storage_class(c);
            }
            Operator::new(b)?
        }
        Backend::Azblob(o) => {
            let mut b = opendal::services::Azblob::default()
                .container(&o.container)
                .root(&root(&o.prefix))
                .endpoint(&o.endpoint);
            if let Some(a) = &o.account {
                b = b.account_name(a);
                // A key in the environment pairs with the configured account;
                // it is handed to the signer and never logged.
                if let Ok(key) = std::env::var("AZURE_STORAGE_ACCOUNT_KEY")
                    && !key.is_empty()
                {
                    b = b.account_key(&key);
                }
            }
            Operator::new(b)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn resolve(s: &BlobSettings) -> Result<Backend, SettingError> {
        s.resolve(Path::new("/data"), &no_env)
    }

    fn url(u: &str) -> BlobSettings {
        BlobSettings {
            blob_store: Some(u.into()),
            ..BlobSettings::default()
        }
    }

    #[test]
    fn default_is_fs_under_the_data_dir() {
        assert_eq!(
            resolve(&BlobSettings::default()).unwrap(),
            Backend::Fs {
                root: PathBuf::from("/data/blobs")
            }
        );
        assert_eq!(
            resolve(&url("/srv/packs")).unwrap(),
            Backend::Fs {
                root: PathBuf::from("/srv/packs")
            }
        );
        assert_eq!(
            resolve(&url("fs:///srv/packs")).unwrap(),
            Backend::Fs {
                root: PathBuf::from("/srv/packs")
            }
        );
        assert_eq!(resolve(&url("memory://")).unwrap(), Backend::Memory);
    }

    #[test]
    fn s3_urls_and_options() {
        let mut s = url("s3://my-bucket/a/b/");
        s.s3_endpoint = Some("http://127.0.0.1:8333/".into());
        let Backend::S3(o) = resolve(&s).unwrap() else {
            panic!()
        };
        assert_eq!(o.bucket, "my-bucket");
        assert_eq!(o.prefix, "a/b");
        assert_eq!(o.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(o.region, "us-east-1");
        assert!(o.path_style, "custom endpoints default to path style");
        assert_eq!(Backend::S3(o).to_string(), "s3://my-bucket/a/b");

        let err = resolve(&url("s3://my-bucket")).unwrap_err();
        assert_eq!(err.setting, "s3-region", "AWS needs a region");
        let env = |k: &str| (k == "AWS_REGION").then(|| "eu-west-1".to_string());
        let Backend::S3(o) = url("s3://my-bucket")
            .resolve(Path::new("/d"), &env)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(o.region, "eu-west-1");
        assert!(!o.path_style, "AWS defaults to virtual-host style");

        let mut s = url("s3://b-1");
        s.s3_region = Some("us-east-2".into());
        s.s3_storage_class = Some("deep_archive".into());
        assert_eq!(resolve(&s).unwrap_err().setting, "s3-storage-class");
        s.s3_storage_class = Some("standard_ia".into());
        let Backend::S3(o) = resolve(&s).unwrap() else {
            panic!()
        };
        assert_eq!(o.storage_class.as_deref(), Some("STANDARD_IA"));
    }

    #[test]
    fn missing_or_bad_bucket_names_the_setting() {
        for u in ["s3://", "s3:///prefix", "gs://", "azblob://"] {
            let err = resolve(&url(u)).unwrap_err();
            assert_eq!(err.setting, "blob-store", "{u}");
            assert!(err.detail.contains("missing"), "{u}: {}", err.detail);
        }
        assert_eq!(
            resolve(&url("s3://Bad_Bucket")).unwrap_err().setting,
            "blob-store"
        );
        assert_eq!(
            resolve(&url("s3://b/x/../y")).unwrap_err().setting,
            "blob-store"
        );
    }

    #[test]
    fn unknown_scheme_is_refused() {
        let err = resolve(&url("ftp://host/x")).unwrap_err();
        assert_eq!(err.setting, "blob-store");
        assert!(
            err.detail.contains("unknown scheme `ftp://`"),
            "{}",
            err.detail
        );
    }

    #[test]
    fn options_of_another_backend_are_refused() {
        let mut s = url("gs://bucket/p");
        s.s3_endpoint = Some("http://x".into());
        let err = resolve(&s).unwrap_err();
        assert_eq!(err.setting, "s3-endpoint");
        assert!(err.detail.contains("s3://"), "{}", err.detail);

        let mut s = url("s3://bucket");
        s.s3_region = Some("us-east-1".into());
        s.azblob_account = Some("acct".into());
        assert_eq!(resolve(&s).unwrap_err().setting, "azblob-account");

        let mut s = BlobSettings {
            gcs_storage_class: Some("NEARLINE".into()),
            ..BlobSettings::default()
        };
        assert_eq!(resolve(&s).unwrap_err().setting, "gcs-storage-class");
        s.gcs_storage_class = None;
        s.s3_path_style = Some(true);
        assert_eq!(resolve(&s).unwrap_err().setting, "s3-path-style");
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_echo() {
        for u in [
            "s3://AKIAEXAMPLE:hunter2@bucket/p",
            "s3://bucket/p?secret=hunter2",
            "azblob://c?sv=2020&sig=hunter2",
        ] {
            let err = resolve(&url(u)).unwrap_err();
            assert_eq!(err.setting, "blob-store");
            assert!(!err.detail.contains("hunter2"), "{}", err.detail);
        }
    }

    #[test]
    fn gcs_and_azblob() {
        let mut s = url("gcs://my_bucket.example/pre");
        s.gcs_storage_class = Some("nearline".into());
        let Backend::Gcs(o) = resolve(&s).unwrap() else {
            panic!()
        };
        assert_eq!(o.bucket, "my_bucket.example");
        assert_eq!(o.storage_class.as_deref(), Some("NEARLINE"));

        let err = resolve(&url("azblob://artifacts")).unwrap_err();
        assert_eq!(err.setting, "azblob-account");
        let mut s = url("azblob://artifacts/eden");
        s.azblob_account = Some("edenstore".into());
        let Backend::Azblob(o) = resolve(&s).unwrap() else {
            panic!()
        };
        assert_eq!(o.endpoint, "https://edenstore.blob.core.windows.net");
        s.azblob_endpoint = Some("127.0.0.1:10000".into());
        assert_eq!(resolve(&s).unwrap_err().setting, "azblob-endpoint");
        s.azblob_account = Some("Not_Valid".into());
        s.azblob_endpoint = None;
        assert_eq!(resolve(&s).unwrap_err().setting, "azblob-account");
    }
}
