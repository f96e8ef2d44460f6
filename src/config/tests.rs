//! Tests of `config.rs`: layering, validation and the shipped file.

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
fn codec_settings_merge_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "byte-planes = false\ncompression-level = 6\n").unwrap();
    let mut o = Overrides {
        config: Some(path.clone()),
        ..Overrides::default()
    };
    let c = Config::resolve(&Overrides::default()).unwrap();
    assert_eq!(
        c.engine.codec_settings(),
        crate::codec::CodecSettings::default()
    );
    let c = Config::resolve(&o).unwrap();
    assert!(!c.engine.byte_planes);
    assert_eq!(c.engine.compression_level, 6);
    o.byte_planes = Some(true);
    assert!(Config::resolve(&o).unwrap().engine.byte_planes);
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

#[test]
fn lease_settings_merge_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "lease-duration = \"20s\"\n").unwrap();
    let mut o = Overrides {
        config: Some(path.clone()),
        ..Overrides::default()
    };
    let l = Config::resolve(&o).unwrap().lease.unwrap();
    assert_eq!(
        (l.duration, l.heartbeat),
        (Duration::from_secs(20), Duration::from_secs(5))
    );
    o.lease_heartbeat = Some("2s".into());
    assert_eq!(
        Config::resolve(&o).unwrap().lease.unwrap().heartbeat,
        Duration::from_secs(2)
    );
    o.lease_heartbeat = Some("10s".into());
    let err = Config::resolve(&o).unwrap_err().to_string();
    assert!(err.contains("lease-heartbeat"), "{err}");
    o.lease = Some(false);
    assert!(Config::resolve(&o).unwrap().lease.is_none(), "switchable");
    let d = Config::resolve(&Overrides::default())
        .unwrap()
        .lease
        .unwrap();
    assert_eq!(d, LeaseSettings::default());
}

#[test]
fn lifecycle_settings_resolve_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let o = Overrides {
        config: Some(path.clone()),
        ..Overrides::default()
    };
    std::fs::write(&path, "").unwrap();
    let c = Config::resolve(&o).unwrap();
    assert_eq!(c.gc_interval, Some(Duration::from_secs(6 * 3600)));
    assert_eq!(c.gc_compact_below, 0.8);
    assert_eq!(c.engine.retention.ttl_for("exp_a"), None);
    std::fs::write(
        &path,
        "gc-interval = \"0s\"\ngc-compact-below = 0.5\ndefault-artifact-ttl = \"30d\"\n\
         [experiment-ttl]\nexp_a = \"1h\"\n",
    )
    .unwrap();
    let c = Config::resolve(&o).unwrap();
    assert_eq!(c.gc_interval, None, "0s disables");
    assert_eq!(c.gc_compact_below, 0.5);
    let r = &c.engine.retention;
    assert_eq!(r.ttl_for("exp_a"), Some(Duration::from_secs(3600)));
    assert_eq!(r.ttl_for("exp_b"), Some(Duration::from_secs(30 * 86400)));
    for bad in [
        "gc-compact-below = 1.5\n",
        "gc-interval = \"soon\"\n",
        "default-artifact-ttl = \"0s\"\n",
    ] {
        std::fs::write(&path, bad).unwrap();
        assert!(Config::resolve(&o).is_err(), "{bad}");
    }
}

#[test]
fn limit_settings_resolve_and_validate() {
    let c = Config::resolve(&Overrides::default()).unwrap();
    assert_eq!(c.body_idle_timeout, Duration::from_secs(30));
    assert_eq!(c.engine.quotas.limit_for("exp_a"), None);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "body-idle-timeout = \"5s\"\ndefault-experiment-quota = \"1GiB\"\n\
         [experiment-quota]\nexp_a = \"2MiB\"\nexp_b = 1000\n",
    )
    .unwrap();
    let mut o = Overrides {
        config: Some(path.clone()),
        ..Overrides::default()
    };
    let c = Config::resolve(&o).unwrap();
    assert_eq!(c.body_idle_timeout, Duration::from_secs(5));
    let q = &c.engine.quotas;
    assert_eq!(q.limit_for("exp_a"), Some(2 << 20));
    assert_eq!(q.limit_for("exp_b"), Some(1000));
    assert_eq!(q.limit_for("exp_c"), Some(1 << 30));
    o.body_idle_timeout = Some("1m".into());
    o.default_experiment_quota = Some("3GiB".into());
    let c = Config::resolve(&o).unwrap();
    assert_eq!(c.body_idle_timeout, Duration::from_secs(60));
    assert_eq!(c.engine.quotas.limit_for("exp_c"), Some(3 << 30));
    for (bad, setting) in [("0s", "body-idle-timeout"), ("soon", "body-idle-timeout")] {
        o.body_idle_timeout = Some(bad.into());
        let err = Config::resolve(&o).unwrap_err().to_string();
        assert!(err.starts_with(&format!("setting `{setting}`")), "{err}");
    }
}

#[test]
fn the_shipped_config_file_parses() {
    let file: FileConfig = toml::from_str(include_str!("../../deploy/eden-cas.toml")).unwrap();
    assert_eq!(file.gc_compact_below, Some(0.8));
    assert_eq!(file.gc_interval.as_deref(), Some("6h"));
}

#[test]
fn scrub_budget_merges_and_defaults() {
    let c = Config::resolve(&Overrides::default()).unwrap();
    assert_eq!(c.scrub_bytes_per_hour, 10 << 30);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "scrub-bytes-per-hour = \"1GiB\"\n").unwrap();
    let mut o = Overrides {
        config: Some(path),
        ..Overrides::default()
    };
    assert_eq!(Config::resolve(&o).unwrap().scrub_bytes_per_hour, 1 << 30);
    o.scrub_bytes_per_hour = Some("0".into());
    assert_eq!(Config::resolve(&o).unwrap().scrub_bytes_per_hour, 0);
    o.scrub_bytes_per_hour = Some("lots".into());
    let err = Config::resolve(&o).unwrap_err().to_string();
    assert!(err.starts_with("setting `scrub-bytes-per-hour`"), "{err}");
}

fn blobs(file: &str, o: &Overrides) -> Result<BlobConfig, ConfigError> {
    let file: FileConfig = toml::from_str(file).unwrap();
    resolve_blobs(o, &file, Path::new("/data"), 64 << 20, &|_| None)
}

#[test]
fn blob_settings_merge_and_validate() {
    let c = blobs("", &Overrides::default()).unwrap();
    assert_eq!(c.backend.to_string(), "fs:///data/blobs");
    assert_eq!(c.part_bytes, 24 << 20);
    assert_eq!(
        c.chunk_cache_bytes, 0,
        "no chunk cache on local disk by default"
    );

    let file = "blob-store = \"s3://eden/prod\"\ns3-endpoint = \"http://127.0.0.1:8333\"\n\
                blob-timeout = \"30s\"\nchunk-cache-bytes = \"8MiB\"\n";
    let c = blobs(file, &Overrides::default()).unwrap();
    assert_eq!(c.backend.to_string(), "s3://eden/prod");
    assert_eq!(c.timeout, Duration::from_secs(30));
    assert_eq!(c.chunk_cache_bytes, 8 << 20);

    // A flag switching the backend makes the file's s3 option foreign.
    let mut o = Overrides::default();
    o.blob.blob_store = Some("gs://eden-bucket".into());
    let err = blobs(file, &o).unwrap_err().to_string();
    assert!(err.starts_with("setting `s3-endpoint`"), "{err}");

    let err = blobs(
        "blob-store = \"s3://eden\"\ngcs-endpoint = \"http://x\"\n",
        &Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "setting `gcs-endpoint`: only applies to a gs:// blob-store, but blob-store is s3://"
    );

    let err = blobs("blob-part-bytes = \"1MiB\"\n", &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("setting `blob-part-bytes`"), "{err}");
    let err = blobs("blob-store = \"nfs://x\"\n", &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("setting `blob-store`: unknown scheme"),
        "{err}"
    );
}
