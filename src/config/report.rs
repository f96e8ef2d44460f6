//! What `eden-cas check-config` prints: the probe's findings, then every
//! setting with its effective value and where that value came from. Never a
//! secret: credentials are not settings, and the tokens are shown only as
//! present or absent with their source.

use std::fmt::Write as _;

use super::{Config, Source, Span};
use crate::blobs::Backend;
use crate::blobs::probe::ProbeReport;

/// The summary printed by `check-config` once the startup checks passed.
pub fn render(config: &Config, probe: &ProbeReport) -> String {
    let mut out = format!(
        "configuration ok\n\
         data-dir           {}\n\
         listen             {}\n\
         blob-store         {}{}\n\
         create-only writes {}\n\
         delete allowed     {}\n\
         probe              {} ms\n",
        config.data_dir.display(),
        config.listen,
        probe.store,
        backend_detail(&config.blobs.backend),
        if probe.conditional_writes {
            "enforced by the service"
        } else {
            "NOT enforced by the service (see docs/operations/blob-backends.md)"
        },
        if probe.delete_allowed {
            "yes"
        } else {
            "no (GC cannot reclaim space)"
        },
        probe.elapsed.as_millis(),
    );
    out.push_str(&settings_table(config, &|k| std::env::var_os(k).is_some()));
    out
}

fn backend_detail(b: &Backend) -> String {
    match b {
        Backend::S3(o) => format!(
            " (endpoint {}, region {}, {}{})",
            b.endpoint(),
            o.region,
            if o.path_style {
                "path-style"
            } else {
                "virtual-host style"
            },
            o.storage_class
                .as_ref()
                .map(|c| format!(", storage class {c}"))
                .unwrap_or_default()
        ),
        Backend::Gcs(o) => format!(
            " (endpoint {}{})",
            b.endpoint(),
            if o.unsigned {
                ", unsigned requests: emulator"
            } else {
                ""
            }
        ),
        Backend::Azblob(o) => format!(
            " (endpoint {}, account {})",
            b.endpoint(),
            o.account.as_deref().unwrap_or("from the credential")
        ),
        Backend::Fs { .. } | Backend::Memory => String::new(),
    }
}

/// The value a setting left unset takes, where it is computed from other
/// settings or the machine.
fn derived(config: &Config, key: &str) -> Option<String> {
    Some(match key {
        "http-workers" => config.http_workers.to_string(),
        "lease-heartbeat" => Span(config.lease.as_ref()?.heartbeat).to_string(),
        "blob-store" => config.blobs.backend.to_string(),
        "blob-part-bytes" => super::Size(config.blobs.part_bytes as u64).to_string(),
        "chunk-cache-bytes" => super::Size(config.blobs.chunk_cache_bytes).to_string(),
        _ => return None,
    })
}

/// One line per setting, `--help` order: key, value, source. `is_set`
/// says whether an environment variable is present (injected for tests).
pub fn settings_table(config: &Config, is_set: &dyn Fn(&str) -> bool) -> String {
    let mut out =
        String::from("\nsetting                    value                          source\n");
    let mut row = |key: &str, value: &str, source: &str| {
        let _ = writeln!(out, "{key:<26} {value:<30} {source}");
    };
    for (key, value, source) in config.effective.rows() {
        match (value, source) {
            (Some(v), Some(s)) => row(key, &v, &s.to_string()),
            (Some(v), None) => row(key, &v, &Source::Default.to_string()),
            (None, _) => match derived(config, key) {
                Some(v) => row(key, &v, "default (derived)"),
                None => row(key, "-", "not set"),
            },
        }
    }
    // Secrets: present or absent, and from where; never the value.
    let admin = if is_set("EDEN_CAS_ADMIN_TOKEN") {
        "env EDEN_CAS_ADMIN_TOKEN".to_string()
    } else {
        format!(
            "file {}",
            config
                .data_dir
                .join(crate::server::ADMIN_TOKEN_FILE)
                .display()
        )
    };
    row("admin token", "(hidden)", &admin);
    let metrics = match (is_set("EDEN_CAS_METRICS_TOKEN"), &config.metrics_token_file) {
        (true, _) => ("(hidden)", "env EDEN_CAS_METRICS_TOKEN".to_string()),
        (false, Some(f)) => ("(hidden)", format!("file {}", f.display())),
        (false, None) => ("-", "not set".to_string()),
    };
    row("metrics token", metrics.0, &metrics.1);
    out
}
