//! Tests of `config`: every setting reachable as flag and TOML key (and
//! named after its environment variable; `tests/settings.rs` sets them),
//! layering, validation with errors naming the setting and its source, and
//! the shipped file.

use std::path::Path;
use std::time::Duration;

use clap::{Args as _, Command};

use super::*;
use crate::blobs::lease::LeaseSettings;

/// The flag/env layer of `args` (`--key value …`), the environment ignored.
fn flags(args: &[&str]) -> Result<Layer, clap::Error> {
    let cmd = Settings::augment_args(Command::new("t").no_binary_name(true))
        .mut_args(|a| a.env(None::<&str>));
    Layer::from_matches(&cmd.try_get_matches_from(args)?)
}

/// Defaults < `toml` (if any) < `args`, validated with no provider
/// variables; the file is written to a temporary directory.
fn resolve(toml: Option<&str>, args: &[&str]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let file = match toml {
        Some(t) => {
            let path = dir.path().join("eden-cas.toml");
            std::fs::write(&path, t).unwrap();
            Layer::from_file(&path)?
        }
        None => Layer::default(),
    };
    let cli = flags(args).unwrap();
    let effective = Effective::merge([Layer::defaults()?, file, cli])?;
    Config::validate(&effective, &|_| None)
}

fn err(toml: Option<&str>, args: &[&str]) -> String {
    resolve(toml, args).unwrap_err().to_string()
}

/// A value for every setting, other than its default, in flag form and in
/// TOML form. A new setting fails `every_setting_is_a_flag_an_env_var_and_a_key`
/// until it is listed here.
const SAMPLES: &[(&str, &str, &str)] = &[
    ("data-dir", "/srv/eden", "\"/srv/eden\""),
    ("listen", "0.0.0.0:9", "\"0.0.0.0:9\""),
    ("admin-listen", "127.0.0.1:9", "\"127.0.0.1:9\""),
    ("http-workers", "3", "3"),
    ("shutdown-timeout", "5s", "\"5s\""),
    ("body-idle-timeout", "1m", "\"1m\""),
    ("metrics-token-file", "/etc/t", "\"/etc/t\""),
    ("log-format", "json", "\"json\""),
    (
        "otlp-endpoint",
        "http://127.0.0.1:4318",
        "\"http://127.0.0.1:4318\"",
    ),
    ("tls-cert", "/etc/c.pem", "\"/etc/c.pem\""),
    ("tls-key", "/etc/k.pem", "\"/etc/k.pem\""),
    ("pack-target-bytes", "8MiB", "8388608"),
    ("compression-level", "5", "5"),
    ("byte-planes", "false", "false"),
    ("upload-idle-timeout", "2h", "\"2h\""),
    ("scrub-bytes-per-hour", "1GiB", "\"1GiB\""),
    ("max-artifact-bytes", "2MiB", "\"2MiB\""),
    ("default-experiment-quota", "1GiB", "1073741824"),
    ("experiment-quota", "exp_a=2MiB", "{ exp_a = \"2MiB\" }"),
    ("gc-interval", "0s", "\"0s\""),
    ("gc-compact-below", "0.5", "0.5"),
    ("default-artifact-ttl", "30d", "\"30d\""),
    ("experiment-ttl", "exp_a=1h", "{ exp_a = \"1h\" }"),
    ("lease", "false", "false"),
    (
        "meta-store",
        "postgres://eden@db.internal:5432/eden",
        "\"postgres://eden@db.internal:5432/eden\"",
    ),
    ("meta-store-password-file", "/etc/pg", "\"/etc/pg\""),
    ("meta-store-ca-file", "/etc/ca.pem", "\"/etc/ca.pem\""),
    ("migrate", "true", "true"),
    ("lease-duration", "20s", "\"20s\""),
    ("lease-heartbeat", "2s", "\"2s\""),
    ("blob-store", "s3://b/p", "\"s3://b/p\""),
    (
        "s3-endpoint",
        "http://127.0.0.1:1",
        "\"http://127.0.0.1:1\"",
    ),
    ("s3-region", "eu-west-1", "\"eu-west-1\""),
    ("s3-path-style", "false", "false"),
    ("s3-storage-class", "STANDARD_IA", "\"STANDARD_IA\""),
    (
        "gcs-endpoint",
        "http://127.0.0.1:2",
        "\"http://127.0.0.1:2\"",
    ),
    ("gcs-storage-class", "NEARLINE", "\"NEARLINE\""),
    ("gcs-unsigned", "true", "true"),
    ("gcs-unsigned-allow-remote", "true", "true"),
    (
        "azblob-endpoint",
        "http://127.0.0.1:3",
        "\"http://127.0.0.1:3\"",
    ),
    ("azblob-account", "acct", "\"acct\""),
    ("blob-timeout", "30s", "\"30s\""),
    ("blob-retries", "2", "2"),
    ("blob-concurrency", "8", "8"),
    ("blob-part-bytes", "8MiB", "\"8MiB\""),
    ("chunk-cache-bytes", "0", "0"),
    ("audit-retention", "90d", "\"90d\""),
    ("audit-flush-events", "50", "50"),
    ("audit-flush-interval", "2s", "\"2s\""),
];

#[test]
fn every_setting_is_a_flag_an_env_var_and_a_key() {
    let defaults = Effective::merge([Layer::defaults().unwrap()]).unwrap();
    assert_eq!(catalog().len(), SAMPLES.len(), "one sample per setting");
    for k in catalog() {
        let Some(&(_, flag_value, toml_value)) = SAMPLES.iter().find(|s| s.0 == k.key) else {
            panic!("setting `{}` has no sample in SAMPLES", k.key);
        };
        let env = format!("EDEN_CAS_{}", k.key.to_uppercase().replace('-', "_"));
        assert_eq!(k.env.as_deref(), Some(env.as_str()), "{}", k.key);
        assert_eq!(k.id.replace('_', "-"), k.key, "serde and clap names agree");

        let flag = format!("--{}", k.key);
        let by_flag = Effective::merge([flags(&[flag.as_str(), flag_value]).unwrap()]).unwrap();
        assert_eq!(
            by_flag.source(&k.key),
            Some(&Source::Flag(format!("--{}", k.key)))
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, format!("{} = {toml_value}\n", k.key)).unwrap();
        let by_file = Effective::merge([Layer::from_file(&path).unwrap()]).unwrap();
        assert_eq!(by_file.source(&k.key), Some(&Source::File(path.clone())));
        assert_eq!(by_flag.settings, by_file.settings, "{}: same value", k.key);
        assert_ne!(by_flag.settings, Settings::default(), "{}: read", k.key);
        let row = by_file.rows().into_iter().find(|r| r.0 == k.key).unwrap();
        let default_row = defaults.rows().into_iter().find(|r| r.0 == k.key).unwrap();
        assert_ne!(
            row.1, default_row.1,
            "{}: sample differs from default",
            k.key
        );
    }
}

#[test]
fn built_in_defaults_agree_with_the_library_defaults() {
    let c = resolve(None, &[]).unwrap();
    let e = crate::engine::EngineConfig::default();
    assert_eq!(c.engine.max_artifact_bytes, e.max_artifact_bytes);
    assert_eq!(c.engine.pack_target_bytes, e.pack_target_bytes);
    assert_eq!(c.engine.compression_level, e.compression_level);
    assert_eq!(c.engine.byte_planes, e.byte_planes);
    assert_eq!(
        c.engine.codec_settings(),
        crate::codec::CodecSettings::default()
    );
    assert_eq!(c.lease, Some(LeaseSettings::default()));
    assert_eq!(c.gc_compact_below, crate::engine::gc::DEFAULT_COMPACT_BELOW);
    assert_eq!(
        c.scrub_bytes_per_hour,
        crate::engine::DEFAULT_SCRUB_BYTES_PER_HOUR
    );
    assert_eq!(
        c.body_idle_timeout,
        crate::http::body::DEFAULT_BODY_IDLE_TIMEOUT
    );
    assert_eq!(
        c.upload_idle_timeout,
        crate::engine::DEFAULT_UPLOAD_IDLE_TIMEOUT
    );
    let b = crate::blobs::BlobConfig::new(c.blobs.backend.clone());
    assert_eq!(
        (c.blobs.timeout, c.blobs.retries, c.blobs.max_concurrency),
        (b.timeout, b.retries, b.max_concurrency)
    );
    assert_eq!(c.gc_interval, Some(Duration::from_secs(6 * 3600)));
    assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(c.listen, "127.0.0.1:8080");
    assert_eq!(c.data_dir, Path::new("./eden-cas-data"));
}

#[test]
fn sizes_parse() {
    assert_eq!(parse_size("100MiB").unwrap(), 100 << 20);
    assert_eq!(parse_size("12").unwrap(), 12);
    assert_eq!(parse_size("1 GB").unwrap(), 1_000_000_000);
    assert!(parse_size("12 parsecs").is_err());
    assert!(parse_size("").is_err());
    assert_eq!(Size(100 << 20).to_string(), "100MiB");
    assert_eq!(Size(1000).to_string(), "1000");
}

#[test]
fn layers_merge_in_order() {
    let file = "listen = \"127.0.0.1:9\"\nmax-artifact-bytes = \"1MiB\"\nbyte-planes = false\n";
    let c = resolve(Some(file), &[]).unwrap();
    assert_eq!(c.listen, "127.0.0.1:9");
    assert_eq!(c.engine.max_artifact_bytes, 1 << 20);
    assert!(!c.engine.byte_planes);
    assert_eq!(c.engine.compression_level, 3, "default under the file");
    let c = resolve(Some(file), &["--max-artifact-bytes", "2MiB"]).unwrap();
    assert_eq!(c.engine.max_artifact_bytes, 2 << 20, "flag over file");
    assert_eq!(c.listen, "127.0.0.1:9");
    let e = &c.effective;
    assert_eq!(
        e.source("max-artifact-bytes"),
        Some(&Source::Flag("--max-artifact-bytes".into()))
    );
    assert!(matches!(e.source("listen"), Some(Source::File(_))));
    assert_eq!(e.source("compression-level"), Some(&Source::Default));
    assert_eq!(e.source("default-artifact-ttl"), None);
}

#[test]
fn a_per_experiment_map_on_a_higher_layer_replaces_the_lower_one() {
    let file = "[experiment-ttl]\nexp_a = \"1h\"\nexp_b = \"2h\"\n";
    let c = resolve(Some(file), &[]).unwrap();
    assert_eq!(
        c.engine.retention.ttl_for("exp_b"),
        Some(Duration::from_secs(7200))
    );
    let args = [
        "--experiment-ttl",
        "exp_c=3h,exp_d=4h",
        "--experiment-ttl",
        "exp_e=5h",
    ];
    let c = resolve(Some(file), &args).unwrap();
    let r = &c.engine.retention;
    assert_eq!(r.ttl_for("exp_b"), None, "whole value replaced");
    assert_eq!(r.ttl_for("exp_c"), Some(Duration::from_secs(3 * 3600)));
    assert_eq!(r.ttl_for("exp_e"), Some(Duration::from_secs(5 * 3600)));
}

#[test]
fn unknown_keys_and_bad_values_name_the_key_and_source() {
    let e = err(Some("lisen = \"x\"\n"), &[]);
    assert!(e.contains("unknown setting `lisen`"), "{e}");
    let e = err(Some("pack-target-bytes = \"lots\"\n"), &[]);
    assert!(e.starts_with("setting `pack-target-bytes` (file "), "{e}");
    assert!(e.contains("is not a size"), "{e}");
    let e = err(Some("byte-planes = \"yes\"\n"), &[]);
    assert!(e.starts_with("setting `byte-planes` (file "), "{e}");
    let e = err(Some("pack-target-bytes = \"8GiB\"\n"), &[]);
    assert!(e.starts_with("setting `pack-target-bytes` (file "), "{e}");
    assert!(e.ends_with("must be between 1MiB and 4GiB"), "{e}");
    let e = err(None, &["--compression-level", "30"]);
    assert_eq!(
        e,
        "setting `compression-level` (flag --compression-level): must be 0 (off) to 19"
    );

    // Values clap refuses while parsing: explained the same way.
    for (args, env_given, want) in [
        (
            ["--scrub-bytes-per-hour", "lots"],
            false,
            "setting `scrub-bytes-per-hour` (flag --scrub-bytes-per-hour): \"lots\" is not a size",
        ),
        (
            ["--lease", "maybe"],
            true,
            "setting `lease` (env EDEN_CAS_LEASE): \"maybe\" is not one of true, false",
        ),
        (
            ["--gc-compact-below", "1.5"],
            false,
            "setting `gc-compact-below` (flag --gc-compact-below): 1.5 is not a fraction between 0 and 1",
        ),
    ] {
        let e = flags(&args).unwrap_err();
        let line = explain_value_error(&e, &|_| !env_given).unwrap();
        assert_eq!(line, want);
    }
}

#[test]
fn lease_settings_merge_and_validate() {
    let file = Some("lease-duration = \"20s\"\n");
    let l = resolve(file, &[]).unwrap().lease.unwrap();
    assert_eq!(
        (l.duration, l.heartbeat),
        (Duration::from_secs(20), Duration::from_secs(5))
    );
    let l = resolve(file, &["--lease-heartbeat", "2s"])
        .unwrap()
        .lease
        .unwrap();
    assert_eq!(l.heartbeat, Duration::from_secs(2));
    let e = err(file, &["--lease-heartbeat", "10s"]);
    assert!(e.starts_with("setting `lease-heartbeat` (flag"), "{e}");
    let c = resolve(file, &["--lease-heartbeat", "10s", "--lease", "false"]).unwrap();
    assert!(c.lease.is_none(), "switchable");
}

#[test]
fn lifecycle_settings_resolve_and_validate() {
    let c = resolve(Some(""), &[]).unwrap();
    assert_eq!(c.engine.retention.ttl_for("exp_a"), None);
    let c = resolve(
        Some(
            "gc-interval = \"0s\"\ngc-compact-below = 0.5\ndefault-artifact-ttl = \"30d\"\n\
             [experiment-ttl]\nexp_a = \"1h\"\n",
        ),
        &[],
    )
    .unwrap();
    assert_eq!(c.gc_interval, None, "0s disables");
    assert_eq!(c.gc_compact_below, 0.5);
    let r = &c.engine.retention;
    assert_eq!(r.ttl_for("exp_a"), Some(Duration::from_secs(3600)));
    assert_eq!(r.ttl_for("exp_b"), Some(Duration::from_secs(30 * 86400)));
    for (bad, setting) in [
        ("gc-compact-below = 1.5\n", "gc-compact-below"),
        ("gc-interval = \"soon\"\n", "gc-interval"),
        ("default-artifact-ttl = \"0s\"\n", "default-artifact-ttl"),
        ("[experiment-ttl]\nexp_a = \"0s\"\n", "experiment-ttl"),
    ] {
        let e = err(Some(bad), &[]);
        assert!(e.starts_with(&format!("setting `{setting}` (file ")), "{e}");
    }
}

#[test]
fn limit_settings_resolve_and_validate() {
    let c = resolve(None, &[]).unwrap();
    assert_eq!(c.engine.quotas.limit_for("exp_a"), None);
    let file = Some(
        "body-idle-timeout = \"5s\"\ndefault-experiment-quota = \"1GiB\"\n\
         [experiment-quota]\nexp_a = \"2MiB\"\nexp_b = 1000\n",
    );
    let c = resolve(file, &[]).unwrap();
    assert_eq!(c.body_idle_timeout, Duration::from_secs(5));
    let q = &c.engine.quotas;
    assert_eq!(q.limit_for("exp_a"), Some(2 << 20));
    assert_eq!(q.limit_for("exp_b"), Some(1000));
    assert_eq!(q.limit_for("exp_c"), Some(1 << 30));
    let args = [
        "--body-idle-timeout",
        "1m",
        "--default-experiment-quota",
        "3GiB",
    ];
    let c = resolve(file, &args).unwrap();
    assert_eq!(c.body_idle_timeout, Duration::from_secs(60));
    assert_eq!(c.engine.quotas.limit_for("exp_c"), Some(3 << 30));
    let e = err(file, &["--body-idle-timeout", "0s"]);
    assert!(e.starts_with("setting `body-idle-timeout` (flag"), "{e}");
}

#[test]
fn the_shipped_config_file_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/eden-cas.toml");
    let e =
        Effective::merge([Layer::defaults().unwrap(), Layer::from_file(&path).unwrap()]).unwrap();
    assert_eq!(e.settings.lifecycle.gc_compact_below, Some(Fraction(0.8)));
    assert_eq!(
        e.settings.lifecycle.gc_interval,
        Some(Span(Duration::from_secs(6 * 3600)))
    );
    assert!(matches!(e.source("gc-interval"), Some(Source::File(_))));
}

#[test]
fn check_config_lists_every_setting_with_its_source() {
    let c = resolve(Some("listen = \"127.0.0.1:9\"\n"), &["--http-workers", "3"]).unwrap();
    let table = report::settings_table(&c, &|k| k == "EDEN_CAS_ADMIN_TOKEN");
    let line = |key: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no line for {key} in\n{table}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    for k in catalog() {
        line(&k.key);
    }
    assert!(
        line("listen").starts_with("listen 127.0.0.1:9 file "),
        "{table}"
    );
    assert_eq!(line("http-workers"), "http-workers 3 flag --http-workers");
    assert_eq!(
        line("max-artifact-bytes"),
        "max-artifact-bytes 100MiB default"
    );
    assert_eq!(
        line("blob-part-bytes"),
        "blob-part-bytes 24MiB default (derived)"
    );
    assert_eq!(line("s3-region"), "s3-region - not set");
    assert_eq!(
        line("admin"),
        "admin token (hidden) env EDEN_CAS_ADMIN_TOKEN"
    );
    assert_eq!(line("metrics"), "metrics token - not set");
}

#[test]
fn blob_settings_merge_and_validate() {
    let c = resolve(None, &["--data-dir", "/data"]).unwrap();
    assert_eq!(c.blobs.backend.to_string(), "fs:///data/blobs");
    assert_eq!(c.blobs.part_bytes, 24 << 20);
    assert_eq!(
        c.blobs.chunk_cache_bytes, 0,
        "no chunk cache on local disk by default"
    );

    let file = Some(
        "blob-store = \"s3://eden/prod\"\ns3-endpoint = \"http://127.0.0.1:8333\"\n\
         blob-timeout = \"30s\"\nchunk-cache-bytes = \"8MiB\"\n",
    );
    let c = resolve(file, &[]).unwrap();
    assert_eq!(c.blobs.backend.to_string(), "s3://eden/prod");
    assert_eq!(c.blobs.timeout, Duration::from_secs(30));
    assert_eq!(c.blobs.chunk_cache_bytes, 8 << 20);
    let c = resolve(
        Some("blob-store = \"s3://eden/prod\"\ns3-region = \"x\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(
        c.blobs.chunk_cache_bytes,
        64 << 20,
        "on by default on object stores"
    );

    // A flag switching the backend makes the file's s3 option foreign.
    let e = err(file, &["--blob-store", "gs://eden-bucket"]);
    assert!(e.starts_with("setting `s3-endpoint` (file "), "{e}");

    let e = err(
        None,
        &["--blob-store", "s3://eden", "--gcs-endpoint", "http://x"],
    );
    assert_eq!(
        e,
        "setting `gcs-endpoint` (flag --gcs-endpoint): only applies to a gs:// blob-store, \
         but blob-store is s3://"
    );
    let e = err(Some("blob-part-bytes = \"1MiB\"\n"), &[]);
    assert!(e.starts_with("setting `blob-part-bytes` (file "), "{e}");
    let e = err(None, &["--blob-store", "nfs://x"]);
    assert!(
        e.starts_with("setting `blob-store` (flag --blob-store): unknown scheme"),
        "{e}"
    );
    let e = err(None, &["--blob-store", "s3://eden"]);
    assert!(e.starts_with("setting `s3-region`: required"), "{e}");
}
