//! The layers of settings and the one rule that merges them.
//!
//! A layer is the set of keys one source gives, each with its value in
//! serde's data model (a `serde_json` value) and its [`Source`]:
//!
//! 1. built-in defaults — the `default_value`s of [`Settings`];
//! 2. the TOML file named by `--config` / `EDEN_CAS_CONFIG`;
//! 3. flags and `EDEN_CAS_…` variables (clap: a flag beats its variable).
//!
//! The merge is generic: per key, the value of the highest layer that
//! gives it wins, whole (a per-experiment map given by a flag replaces the
//! file's table). No code names a setting here; the settings list is read
//! from the clap definition of [`Settings`] ([`catalog`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command, FromArgMatches};
use serde_json::{Map, Value};

use super::ConfigError;
use super::settings::Settings;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// A key of this TOML file.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// This command-line flag (`--foo`).
    Flag(String),
    /// Set by the program embedding the library ([`super::Config::from_settings`]).
    Caller,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Caller => f.write_str("caller"),
        }
    }
}

/// The names of one setting.
#[derive(Debug, Clone)]
pub struct Key {
    /// TOML key and flag name without `--` (kebab-case).
    pub key: String,
    /// clap's id (the field name).
    pub id: String,
    /// The environment variable.
    pub env: Option<String>,
}

fn settings_command() -> Command {
    Settings::augment_args(Command::new("eden-cas-settings").no_binary_name(true))
}

/// Every setting, in `--help` order, read from the clap definition.
pub fn catalog() -> &'static [Key] {
    static KEYS: OnceLock<Vec<Key>> = OnceLock::new();
    KEYS.get_or_init(|| {
        settings_command()
            .get_arguments()
            .map(|a| Key {
                key: a.get_long().unwrap_or(a.get_id().as_str()).to_string(),
                id: a.get_id().to_string(),
                env: a.get_env().map(|e| e.to_string_lossy().into_owned()),
            })
            .collect()
    })
}

/// The settings a layer gives, with their sources.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    values: Map<String, Value>,
    sources: BTreeMap<String, Source>,
}

fn to_map(s: &Settings) -> Result<Map<String, Value>, ConfigError> {
    match serde_json::to_value(s) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ConfigError::Internal("settings are not a map".into())),
        Err(e) => Err(ConfigError::Internal(format!("settings: {e}"))),
    }
}

impl Layer {
    /// The keys `s` sets (its `Some` fields), all from `source`.
    ///
    /// # Errors
    /// [`ConfigError::Internal`] only (a value serde cannot write).
    pub fn from_settings(s: &Settings, source: &Source) -> Result<Layer, ConfigError> {
        let values: Map<String, Value> = to_map(s)?
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .collect();
        let sources = values.keys().map(|k| (k.clone(), source.clone())).collect();
        Ok(Layer { values, sources })
    }

    /// The built-in defaults: the settings' `default_value`s, read
    /// without the environment.
    ///
    /// # Errors
    /// [`ConfigError::Internal`] if a declared default does not parse
    /// (a bug, caught by the tests).
    pub fn defaults() -> Result<Layer, ConfigError> {
        let m = settings_command()
            .mut_args(|a| a.env(None::<&str>))
            .try_get_matches_from(std::iter::empty::<String>())
            .and_then(|m| Settings::from_arg_matches(&m))
            .map_err(|e| ConfigError::Internal(format!("built-in defaults: {e}")))?;
        Layer::from_settings(&m, &Source::Default)
    }

    /// The keys given by flags or environment variables in `m` (defaults
    /// that clap filled in are left to [`Layer::defaults`]).
    ///
    /// # Errors
    /// As [`Settings::from_arg_matches`].
    pub fn from_matches(m: &ArgMatches) -> Result<Layer, clap::Error> {
        let settings = Settings::from_arg_matches(m)?;
        let all = Layer::from_settings(&settings, &Source::Default)
            .map_err(|e| clap::Error::raw(clap::error::ErrorKind::ValueValidation, e))?;
        let mut layer = Layer::default();
        for k in catalog() {
            let source = match m.value_source(&k.id) {
                Some(ValueSource::CommandLine) => Source::Flag(format!("--{}", k.key)),
                Some(ValueSource::EnvVariable) => {
                    Source::Env(k.env.clone().unwrap_or_else(|| k.key.clone()))
                }
                _ => continue,
            };
            if let Some(v) = all.values.get(&k.key) {
                layer.values.insert(k.key.clone(), v.clone());
                layer.sources.insert(k.key.clone(), source);
            }
        }
        Ok(layer)
    }

    /// The keys of the TOML file at `path`. Unknown keys and values of the
    /// wrong type are errors naming the key and the file.
    ///
    /// # Errors
    /// [`ConfigError::Read`], [`ConfigError::Parse`] (with the key when
    /// one is at fault).
    pub fn from_file(path: &Path) -> Result<Layer, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            detail: e.to_string(),
        })?;
        let source = Source::File(path.into());
        let mut layer = Layer::default();
        for (key, value) in table {
            if !catalog().iter().any(|k| k.key == key) {
                return Err(ConfigError::Parse {
                    path: path.into(),
                    detail: format!("unknown setting `{key}`"),
                });
            }
            // One key at a time, so a type error names its key.
            let one = toml::Table::from_iter([(key.clone(), value)]);
            let settings: Settings =
                toml::Value::Table(one)
                    .try_into()
                    .map_err(|e: toml::de::Error| ConfigError::Invalid {
                        setting: key.clone(),
                        origin: Some(source.clone()),
                        detail: e.message().trim().to_string(),
                    })?;
            if let Some(v) = to_map(&settings)?.remove(&key) {
                layer.values.insert(key.clone(), v);
                layer.sources.insert(key, source.clone());
            }
        }
        Ok(layer)
    }
}

/// The merged settings, and where each value came from.
#[derive(Debug, Clone)]
pub struct Effective {
    /// The winning value of each setting.
    pub settings: Settings,
    values: Map<String, Value>,
    sources: BTreeMap<String, Source>,
}

impl Effective {
    /// Merges `layers`, lowest first: per key, the last layer giving it wins.
    ///
    /// # Errors
    /// [`ConfigError::Internal`] only: each layer's values were read by the
    /// same types they are merged back into.
    pub fn merge(layers: impl IntoIterator<Item = Layer>) -> Result<Effective, ConfigError> {
        let (mut values, mut sources) = (Map::new(), BTreeMap::new());
        for layer in layers {
            values.extend(layer.values);
            sources.extend(layer.sources);
        }
        let settings = serde_json::from_value(Value::Object(values.clone()))
            .map_err(|e| ConfigError::Internal(format!("merged settings: {e}")))?;
        Ok(Effective {
            settings,
            values,
            sources,
        })
    }

    /// Where the value of `key` came from; `None` when no layer gives it.
    pub fn source(&self, key: &str) -> Option<&Source> {
        self.sources.get(key)
    }

    /// Every setting in `--help` order: key, value as an operator would
    /// write it (`None`: not set), and its source.
    pub fn rows(&self) -> Vec<(&'static str, Option<String>, Option<&Source>)> {
        catalog()
            .iter()
            .map(|k| {
                let shown = self.values.get(&k.key).map(show);
                (k.key.as_str(), shown, self.sources.get(&k.key))
            })
            .collect()
    }
}

/// A value as an operator writes it: strings bare, maps as `K=V,K=V`.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", show(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// The settings from flags and environment, as clap parses them into a
/// command's arguments (`#[command(flatten)]`); remembers which were given
/// and how.
#[derive(Debug, Clone, Default)]
pub struct SettingsArgs {
    /// The keys given by flag or environment variable.
    pub layer: Layer,
}

impl FromArgMatches for SettingsArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(SettingsArgs {
            layer: Layer::from_matches(m)?,
        })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = SettingsArgs::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for SettingsArgs {
    fn augment_args(cmd: Command) -> Command {
        Settings::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Settings::augment_args_for_update(cmd)
    }
}

/// A clap error about the value of a setting, rewritten to name the
/// setting and where the value came from (a flag, else its environment
/// variable: clap reads the variable only when the flag is absent).
/// `flag_given` says whether `--<key>` is on the command line. `None` for
/// other errors.
pub fn explain_value_error(e: &clap::Error, flag_given: &dyn Fn(&str) -> bool) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = arg.split_whitespace().next()?;
    let k = catalog()
        .iter()
        .find(|k| flag.strip_prefix("--") == Some(k.key.as_str()))?;
    let source = match &k.env {
        Some(env) if !flag_given(flag) => Source::Env(env.clone()),
        _ => Source::Flag(flag.to_string()),
    };
    let raw = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => v.as_str(),
        _ => "",
    };
    let value = format!("{raw:?}");
    let detail = match (
        std::error::Error::source(e).map(ToString::to_string),
        e.get(ContextKind::ValidValue),
    ) {
        // The value parsers of `config::values` quote the value themselves.
        (Some(cause), _) if !raw.is_empty() && cause.contains(raw) => cause,
        (Some(cause), _) => format!("{value}: {cause}"),
        (None, Some(ContextValue::Strings(valid))) => {
            format!("{value} is not one of {}", valid.join(", "))
        }
        _ => format!("{value} is not valid"),
    };
    Some(
        ConfigError::Invalid {
            setting: k.key.clone(),
            origin: Some(source),
            detail,
        }
        .to_string(),
    )
}
