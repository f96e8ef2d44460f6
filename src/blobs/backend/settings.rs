//! The blob-store backend settings as the operator gives them: one section
//! of the settings (`config::Settings`), so each is a flag, an `EDEN_CAS_…`
//! variable and a key of the config file, by construction. Validation into a
//! [`Backend`](super::Backend) is in `mod.rs`.

use clap::Args;
use serde::{Deserialize, Serialize};

use super::{SettingError, invalid};

/// Raw blob settings after merging the layers; not yet validated. Field
/// `foo_bar` is the setting `foo-bar`: TOML key, `--foo-bar`,
/// `EDEN_CAS_FOO_BAR`.
#[derive(Debug, Default, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
#[command(next_help_heading = "Blob store")]
pub struct BlobSettings {
    /// A path or fs://…, s3://bucket/prefix, gs://bucket/prefix,
    /// azblob://container/prefix, or memory:// (tests only) [default: <data-dir>/blobs].
    #[arg(long, env = "EDEN_CAS_BLOB_STORE", value_name = "URL")]
    pub blob_store: Option<String>,
    /// S3-compatible endpoint, e.g. http://127.0.0.1:8333 (MinIO, SeaweedFS)
    /// [default: AWS_ENDPOINT_URL, else AWS for the region].
    #[arg(long, env = "EDEN_CAS_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// S3 region [default: AWS_REGION; us-east-1 with a custom endpoint].
    #[arg(long, env = "EDEN_CAS_S3_REGION")]
    pub s3_region: Option<String>,
    /// Path-style S3 addressing (true/false) [default: true with a custom endpoint].
    #[arg(long, env = "EDEN_CAS_S3_PATH_STYLE", value_name = "BOOL")]
    pub s3_path_style: Option<bool>,
    /// S3 storage class of new objects (STANDARD, STANDARD_IA, INTELLIGENT_TIERING, …)
    /// [default: the bucket's].
    #[arg(long, env = "EDEN_CAS_S3_STORAGE_CLASS", value_name = "CLASS")]
    pub s3_storage_class: Option<String>,
    /// GCS endpoint (emulators) [default: STORAGE_EMULATOR_HOST, else https://storage.googleapis.com].
    #[arg(long, env = "EDEN_CAS_GCS_ENDPOINT", value_name = "URL")]
    pub gcs_endpoint: Option<String>,
    /// GCS storage class of new objects (STANDARD, NEARLINE, COLDLINE, ARCHIVE)
    /// [default: the bucket's].
    #[arg(long, env = "EDEN_CAS_GCS_STORAGE_CLASS", value_name = "CLASS")]
    pub gcs_storage_class: Option<String>,
    /// Send GCS requests unsigned, loading no credentials: for emulators on this
    /// machine (true/false) [default: true when STORAGE_EMULATOR_HOST is set].
    #[arg(long, env = "EDEN_CAS_GCS_UNSIGNED", value_name = "BOOL")]
    pub gcs_unsigned: Option<bool>,
    /// Allow gcs-unsigned with an endpoint that is not on this machine (true/false) [default: false].
    #[arg(long, env = "EDEN_CAS_GCS_UNSIGNED_ALLOW_REMOTE", value_name = "BOOL")]
    pub gcs_unsigned_allow_remote: Option<bool>,
    /// Azure blob endpoint (Azurite, sovereign clouds) [default: https://<account>.blob.core.windows.net].
    #[arg(long, env = "EDEN_CAS_AZBLOB_ENDPOINT", value_name = "URL")]
    pub azblob_endpoint: Option<String>,
    /// Azure storage account [default: AZURE_STORAGE_ACCOUNT_NAME].
    #[arg(long, env = "EDEN_CAS_AZBLOB_ACCOUNT", value_name = "NAME")]
    pub azblob_account: Option<String>,
}

/// Settings named after a backend belong to it: `s3-…` to `s3://`, `gcs-…`
/// to `gs://`, `azblob-…` to `azblob://`.
const OWNERS: &[(&str, &str)] = &[("s3-", "s3"), ("gcs-", "gs"), ("azblob-", "azblob")];

impl BlobSettings {
    /// An option set for a backend other than the one chosen is an error,
    /// never silently ignored. Walks the fields through their serde names,
    /// so a new per-backend field is covered by its prefix alone.
    pub(super) fn reject_foreign(&self, scheme: &str) -> Result<(), SettingError> {
        let serde_json::Value::Object(fields) = serde_json::to_value(self).unwrap_or_default()
        else {
            return Ok(());
        };
        for (name, _) in fields.iter().filter(|(_, v)| !v.is_null()) {
            let Some((_, owner)) = OWNERS.iter().find(|(p, _)| name.starts_with(p)) else {
                continue;
            };
            if *owner != scheme {
                return Err(invalid(
                    name.as_str(),
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
}
