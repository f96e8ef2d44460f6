//! One configuration tree: defaults < TOML file < environment (`EDEN_CAS_…`)
//! < command-line flags. The flag/env layer comes from clap (`cli.rs`); this
//! file merges it over the file and the defaults and validates the result.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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
    /// HTTP worker threads.
    pub http_workers: Option<usize>,
    /// Grace period for in-flight requests on shutdown (humantime, e.g. `30s`).
    pub shutdown_timeout: Option<String>,
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
    /// `--http-workers` / `EDEN_CAS_HTTP_WORKERS`.
    pub http_workers: Option<usize>,
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
    /// Engine tunables.
    pub engine: EngineConfig,
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
        Ok(Config {
            data_dir: o
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./eden-cas-data")),
            listen: o
                .listen
                .clone()
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8080".into()),
            http_workers,
            shutdown_timeout,
            engine,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("100MiB").unwrap(), 100 << 20);
        assert_eq!(parse_size("12").unwrap(), 12);
        assert_eq!(parse_size("1 GB").unwrap(), 1_000_000_000);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn layers_merge_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9\"\nmax-artifact-bytes = \"1MiB\"\n",
        )
        .unwrap();
        let mut o = Overrides {
            config: Some(path.clone()),
            ..Overrides::default()
        };
        let c = Config::resolve(&o).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9");
        assert_eq!(c.engine.max_artifact_bytes, 1 << 20);
        o.max_artifact_bytes = Some("2MiB".into());
        assert_eq!(
            Config::resolve(&o).unwrap().engine.max_artifact_bytes,
            2 << 20
        );
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let err = Config::resolve(&o).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
    }
}
