//! Azurite (Azure Blob) and gcp-storage-emulator (GCS) on 127.0.0.1 for the
//! `blobs_*` tests: the server described by `EDEN_CAS_TEST_AZURITE_*` /
//! `EDEN_CAS_TEST_GCS_*` when set (`scripts/test.sh` starts one of each for
//! all test binaries), else one started now by `scripts/emulators.sh`
//! (which installs it if needed) and stopped by its watchdog when this
//! process exits. `EDEN_CAS_SKIP_AZURITE=1` / `EDEN_CAS_SKIP_GCS=1` skip on
//! purpose, loudly; CI never sets them.
//!
//! What the emulators lack compared with the real services is listed in
//! [`GCS_EMULATOR_GAPS`] and handled where a case meets it.

use std::process::Command;
use std::sync::OnceLock;

use super::repo_root;

/// A running Azurite and the account on it.
#[derive(Debug, Clone)]
pub struct Azurite {
    /// `http://127.0.0.1:<port>/<account>` (path-style, as Azurite wants).
    pub endpoint: String,
    /// A random account, valid only on this server.
    pub account: String,
    /// Its shared key (base64).
    pub key: String,
    /// A container that exists.
    pub container: String,
}

const AZURITE_KEYS: [&str; 4] = [
    "EDEN_CAS_TEST_AZURITE_ENDPOINT",
    "EDEN_CAS_TEST_AZURITE_ACCOUNT",
    "EDEN_CAS_TEST_AZURITE_KEY",
    "EDEN_CAS_TEST_AZURITE_CONTAINER",
];

impl Azurite {
    fn from_pairs(get: impl Fn(&str) -> Option<String>) -> Option<Azurite> {
        Some(Azurite {
            endpoint: get(AZURITE_KEYS[0])?,
            account: get(AZURITE_KEYS[1])?,
            key: get(AZURITE_KEYS[2])?,
            container: get(AZURITE_KEYS[3])?,
        })
    }

    /// The `EDEN_CAS_TEST_AZURITE_*` variables describing this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (AZURITE_KEYS[0], self.endpoint.clone()),
            (AZURITE_KEYS[1], self.account.clone()),
            (AZURITE_KEYS[2], self.key.clone()),
            (AZURITE_KEYS[3], self.container.clone()),
        ]
    }

    /// The environment an eden-cas process needs to use this account: the
    /// shared key (the account is a setting), no proxy.
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_STORAGE_ACCOUNT_KEY", self.key.clone()),
            ("NO_PROXY", "127.0.0.1,localhost".into()),
            ("no_proxy", "127.0.0.1,localhost".into()),
        ]
    }
}

/// A running GCS emulator.
#[derive(Debug, Clone)]
pub struct GcsEmulator {
    /// `http://127.0.0.1:<port>`; takes unsigned requests.
    pub endpoint: String,
    /// A bucket that exists.
    pub bucket: String,
}

/// What gcp-storage-emulator does differently from GCS, as far as eden-cas
/// relies on it; the suite skips (or inverts) the cases that need these.
pub const GCS_EMULATOR_GAPS: &str = "gcp-storage-emulator ignores the create-only precondition \
     (ifGenerationMatch=0): an existing object is overwritten, where GCS answers 412";

const GCS_KEYS: [&str; 2] = ["EDEN_CAS_TEST_GCS_ENDPOINT", "EDEN_CAS_TEST_GCS_BUCKET"];

impl GcsEmulator {
    fn from_pairs(get: impl Fn(&str) -> Option<String>) -> Option<GcsEmulator> {
        Some(GcsEmulator {
            endpoint: get(GCS_KEYS[0])?,
            bucket: get(GCS_KEYS[1])?,
        })
    }
}

/// Runs `scripts/emulators.sh start WHICH DIR PID 3600` and returns what it
/// printed as `KEY=VALUE` pairs.
fn start(which: &str) -> Result<Vec<(String, String)>, String> {
    let dir = std::env::temp_dir().join(format!(
        "eden-cas-{which}-{}-{}",
        std::process::id(),
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("temp dir {}: {e}", dir.display()))?;
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/emulators.sh"))
        .args(["start", which])
        .arg(&dir)
        .arg(std::process::id().to_string())
        .arg("3600")
        .output()
        .map_err(|e| format!("running scripts/emulators.sh: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!(
            "scripts/emulators.sh start {which} failed ({}):\n{}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn lookup(pairs: &[(String, String)], k: &str) -> Option<String> {
    pairs.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.clone())
}

/// Builds a server's settings from a variable lookup (`None`: incomplete).
type Parse<T> = fn(&dyn Fn(&str) -> Option<String>) -> Option<T>;

/// The server for this process, from the environment, started now, or
/// `None` when `skip_var=1`; panics (failing the test) when none can be had.
fn server<T>(
    cell: &'static OnceLock<Result<Option<T>, String>>,
    which: &str,
    skip_var: &str,
    parse: Parse<T>,
) -> Option<&'static T> {
    let res = cell.get_or_init(|| {
        if std::env::var(skip_var).as_deref() == Ok("1") {
            return Ok(None);
        }
        if let Some(s) = parse(&|k| std::env::var(k).ok()) {
            return Ok(Some(s));
        }
        let pairs = start(which)?;
        parse(&|k| lookup(&pairs, k))
            .map(Some)
            .ok_or_else(|| format!("scripts/emulators.sh start {which} printed no description"))
    });
    match res {
        Ok(Some(s)) => Some(s),
        Ok(None) => {
            eprintln!("SKIPPED: {which} test skipped because {skip_var}=1 (this is not coverage)");
            None
        }
        Err(e) => panic!(
            "no {which} server for the {which} tests: {e}\n(set {skip_var}=1 to skip them on \
             purpose; CI never does)"
        ),
    }
}

/// The Azurite for this test process (see the module docs).
pub fn azurite() -> Option<&'static Azurite> {
    static CELL: OnceLock<Result<Option<Azurite>, String>> = OnceLock::new();
    server(&CELL, "azurite", "EDEN_CAS_SKIP_AZURITE", |get| {
        Azurite::from_pairs(get)
    })
}

/// The GCS emulator for this test process (see the module docs).
pub fn gcs_emulator() -> Option<&'static GcsEmulator> {
    static CELL: OnceLock<Result<Option<GcsEmulator>, String>> = OnceLock::new();
    server(&CELL, "gcs", "EDEN_CAS_SKIP_GCS", |get| {
        GcsEmulator::from_pairs(get)
    })
}

/// Runs the ignored test `name` in a child process holding the Azurite
/// account key in its environment (see [`super::run_in_child_with`]).
pub fn run_in_azurite_child(name: &str) {
    let Some(a) = azurite() else { return };
    let mut env = a.env();
    env.extend(a.client_env());
    super::run_in_child_with(name, &env);
}
