//! Settings through the real binary: every setting is read from its
//! `EDEN_CAS_…` variable, flags beat variables beat the config file, a bad
//! value is one line naming the setting and its source, `check-config`
//! lists every effective setting with its source, and `--help` shows the
//! defaults. (Flag and TOML forms of every setting: `src/config/tests.rs`.)

use std::process::{Command, Output};

use eden_cas::config::catalog;

/// Runs the binary with `env` as its only `EDEN_CAS_…` variables.
fn eden(args: &[&str], env: &[(String, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eden-cas"));
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("EDEN_CAS_") {
            cmd.env_remove(k);
        }
    }
    for k in ["AWS_REGION", "AWS_ENDPOINT_URL", "STORAGE_EMULATOR_HOST"] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.output().unwrap()
}

fn var(key: &str) -> String {
    format!("EDEN_CAS_{}", key.to_uppercase().replace('-', "_"))
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("eden-cas: "))
        .unwrap_or_else(|| panic!("no eden-cas: line in {stderr}"))
        .to_string()
}

/// The line of `key` in the settings table of `check-config`'s output,
/// spaces squeezed.
fn line(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("setting "))
        .find(|l| l.split_whitespace().next() == Some(key))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| panic!("no line for {key} in {stdout}"))
}

/// A valid value, other than the default, for every setting that a
/// `memory://` store accepts.
fn env_value(key: &str) -> Option<&'static str> {
    Some(match key {
        "listen" => "127.0.0.1:0",
        "admin-listen" => "127.0.0.1:0",
        "http-workers" => "3",
        "shutdown-timeout" => "5s",
        "body-idle-timeout" => "1m",
        "metrics-token-file" => "/nonexistent/metrics-token",
        "log-format" => "json",
        "otlp-endpoint" => "http://127.0.0.1:4318",
        "pack-target-bytes" => "8MiB",
        "compression-level" => "5",
        "byte-planes" => "false",
        "upload-idle-timeout" => "2h",
        "scrub-bytes-per-hour" => "1GiB",
        "max-artifact-bytes" => "2MiB",
        "default-experiment-quota" => "1GiB",
        "experiment-quota" => "exp_a=2MiB,exp_b=1MiB",
        "gc-interval" => "0s",
        "gc-compact-below" => "0.5",
        "default-artifact-ttl" => "12h",
        "experiment-ttl" => "exp_a=1h",
        "lease" => "false",
        "lease-duration" => "20s",
        "lease-heartbeat" => "2s",
        "blob-store" => "memory://",
        "blob-timeout" => "30s",
        "blob-retries" => "2",
        "blob-concurrency" => "8",
        "blob-part-bytes" => "8MiB",
        "chunk-cache-bytes" => "1MiB",
        "audit-retention" => "12h",
        "audit-flush-events" => "10",
        "audit-flush-interval" => "1s",
        // A postgres:// store is checked by connecting: see
        // `check_config_and_migrate_on_postgresql` below.
        "meta-store" => "rocksdb",
        "meta-store-password-file" => "/nonexistent/pg-password",
        "meta-store-ca-file" => "/nonexistent/ca.pem",
        "migrate" => "true",
        _ => return None,
    })
}

/// Per-backend settings need their backend; with `memory://` each one is
/// refused, naming its variable.
fn is_backend_option(key: &str) -> bool {
    ["s3-", "gcs-", "azblob-"]
        .iter()
        .any(|p| key.starts_with(p))
}

#[test]
fn every_setting_is_read_from_its_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_string_lossy().into_owned();
    let mut env = vec![(var("data-dir"), data.clone())];
    for k in catalog().iter().filter(|k| k.key != "data-dir") {
        // TLS files must exist and hold a certificate: `tls.rs` tests them.
        if is_backend_option(&k.key) || k.key.starts_with("tls-") {
            continue;
        }
        let value = env_value(&k.key)
            .unwrap_or_else(|| panic!("setting `{}` has no value in env_value", k.key));
        env.push((var(&k.key), value.to_string()));
    }
    let out = stdout(&eden(&["check-config"], &env));
    for (name, value) in &env {
        let key = catalog()
            .iter()
            .find(|k| k.env.as_deref() == Some(name))
            .unwrap();
        assert_eq!(
            line(&out, &key.key),
            format!("{} {} env {name}", key.key, value),
            "{out}"
        );
    }

    for k in catalog().iter().filter(|k| is_backend_option(&k.key)) {
        let value = if k.key.ends_with("-style") || k.key.contains("unsigned") {
            "true"
        } else {
            "http://127.0.0.1:1"
        };
        let env = [
            (var("data-dir"), data.clone()),
            (var("blob-store"), "memory://".to_string()),
            (var(&k.key), value.to_string()),
        ];
        let e = error_line(&eden(&["check-config"], &env));
        assert!(
            e.starts_with(&format!(
                "eden-cas: setting `{}` (env {}): only applies to",
                k.key,
                var(&k.key)
            )),
            "{e}"
        );
    }
}

#[test]
fn flags_beat_variables_beat_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("eden-cas.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:1\"\ngc-interval = \"1h\"\n").unwrap();
    let mut env = vec![
        (var("config"), file.to_string_lossy().into_owned()),
        (var("data-dir"), dir.path().to_string_lossy().into_owned()),
        (var("blob-store"), "memory://".to_string()),
    ];
    let out = stdout(&eden(&["check-config"], &env));
    assert!(
        line(&out, "listen").starts_with("listen 127.0.0.1:1 file "),
        "{out}"
    );
    assert!(
        line(&out, "gc-interval").starts_with("gc-interval 1h file "),
        "{out}"
    );
    assert_eq!(line(&out, "lease"), "lease true default");
    env.push((var("listen"), "127.0.0.1:2".into()));
    let out = stdout(&eden(&["check-config"], &env));
    assert_eq!(
        line(&out, "listen"),
        "listen 127.0.0.1:2 env EDEN_CAS_LISTEN"
    );
    let out = stdout(&eden(&["check-config", "--listen", "127.0.0.1:3"], &env));
    assert_eq!(line(&out, "listen"), "listen 127.0.0.1:3 flag --listen");
    assert!(
        line(&out, "gc-interval").starts_with("gc-interval 1h file "),
        "{out}"
    );
}

#[test]
fn a_bad_value_names_the_setting_and_its_source() {
    let env = [(var("scrub-bytes-per-hour"), "lots".to_string())];
    let e = error_line(&eden(&["check-config"], &env));
    assert_eq!(
        e,
        "eden-cas: setting `scrub-bytes-per-hour` (env EDEN_CAS_SCRUB_BYTES_PER_HOUR): \
         \"lots\" is not a size"
    );
    let e = error_line(&eden(
        &["check-config", "--scrub-bytes-per-hour=lots"],
        &env,
    ));
    assert!(
        e.starts_with("eden-cas: setting `scrub-bytes-per-hour` (flag --scrub-bytes-per-hour)"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let env = [
        (var("data-dir"), dir.path().to_string_lossy().into_owned()),
        (var("lease-duration"), "1s".to_string()),
    ];
    let e = error_line(&eden(&["serve"], &env));
    assert_eq!(
        e,
        "eden-cas: setting `lease-duration` (env EDEN_CAS_LEASE_DURATION): must be at least 2s"
    );
}

#[test]
fn help_shows_each_setting_with_its_variable_and_default() {
    let out = stdout(&eden(&["serve", "--help"], &[]));
    for k in catalog() {
        assert!(
            out.contains(&format!("--{} ", k.key)),
            "--{} in {out}",
            k.key
        );
        assert!(
            out.contains(&format!("[env: {}=", var(&k.key))),
            "{} in {out}",
            k.key
        );
    }
    let squeezed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(squeezed.contains("[default: 64MiB]"), "{out}");
    assert!(
        squeezed
            .contains("[default: 64MiB on s3, gs and azblob; 0 on a local directory or memory://]"),
        "{out}"
    );
}

/// `check-config` connects to a PostgreSQL metadata store and checks its
/// schema like `serve` would, naming `eden-cas migrate` while it is
/// behind; `migrate` brings it up; a password in the URL is refused
/// without being echoed.
#[test]
fn check_config_and_migrate_on_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_string_lossy().into_owned();
    let schema = format!("t_{}", ulid::Ulid::new().to_string().to_lowercase());
    let admin = crate::support::pg::admin();
    crate::support::pg::sql(&admin, &format!("CREATE SCHEMA {schema}"));
    let (url, password) = crate::support::pg::server();
    let env = vec![
        (var("data-dir"), data.clone()),
        (var("blob-store"), "memory://".to_string()),
        (
            var("meta-store"),
            format!("{url}?options=-csearch_path%3D{schema}"),
        ),
        ("PGPASSWORD".to_string(), password.clone()),
    ];
    let e = String::from_utf8_lossy(&eden(&["check-config"], &env).stderr).into_owned();
    assert!(
        e.contains("version 0") && e.contains("eden-cas migrate"),
        "{e}"
    );
    let out = stdout(&eden(&["migrate"], &env));
    assert!(
        out.contains(&format!("schema {schema}")) && out.contains("version 0 ->"),
        "{out}"
    );
    let out = stdout(&eden(&["check-config"], &env));
    assert!(
        out.contains("env EDEN_CAS_META_STORE") && out.contains("postgres://eden@"),
        "{out}"
    );
    assert!(!out.contains(&password), "the password is never printed");

    // A password in the URL is refused, and not repeated.
    let with_pw = url.replacen("://eden@", "://eden:hunter2-secret@", 1);
    let bad = [(var("data-dir"), data), (var("meta-store"), with_pw)];
    let e = error_line(&eden(&["check-config"], &bad));
    assert!(e.contains("PGPASSWORD") && !e.contains("hunter2"), "{e}");
}
