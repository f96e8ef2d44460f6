//! Startup validation of the blob store through the real binary: every
//! misconfiguration is a one-line error naming the setting (or credential
//! source) to fix and a non-zero exit, from `serve` and from `check-config`
//! alike; credentials are never printed. s3 runs against SeaweedFS, azblob
//! against Azurite and gs against gcp-storage-emulator
//! (`blobs_startup/emulators.rs`), each including a full HTTP deposit and
//! fetch.

mod emulators;

use std::process::{Command, Output};

use crate::support::blobs::{S3Server, closed_port, s3_server};
use crate::support::server::*;

fn eden(args: &[&str], env: &[(&str, String)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eden-cas"));
    cmd.args(args)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "debug")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("EDEN_CAS_BLOB_STORE")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AZURE_STORAGE_ACCOUNT_NAME")
        .env_remove("AZURE_STORAGE_ACCOUNT_KEY")
        .env_remove("AZURE_STORAGE_SAS_TOKEN")
        .env_remove("AZURE_STORAGE_ACCOUNT")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("STORAGE_EMULATOR_HOST");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Asserts a failed start whose last stderr line is one `eden-cas:` line
/// containing every `needle`; returns that line.
fn fails_with(out: &Output, needles: &[&str]) -> String {
    assert!(!out.status.success(), "expected a failure: {out:?}");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("eden-cas: "))
        .unwrap_or_else(|| panic!("no eden-cas: error line in\n{stderr}"))
        .to_string();
    for n in needles {
        assert!(line.contains(n), "{n:?} not in {line:?}");
    }
    line
}

/// Both `check-config` and `serve` fail the same way; returns the line.
fn both_fail_with(args: &[&str], env: &[(&str, String)], needles: &[&str]) -> String {
    let serve = fails_with(&eden(&[&["serve"], args].concat(), env), needles);
    let check = fails_with(&eden(&[&["check-config"], args].concat(), env), needles);
    assert_eq!(serve, check, "serve and check-config report the same error");
    check
}

#[test]
fn check_config_passes_on_the_default_fs_store() {
    let out = eden(&["check-config"], &[]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("configuration ok"), "{stdout}");
    assert!(stdout.contains("blob-store         fs://"), "{stdout}");
    assert!(
        stdout.contains("create-only writes enforced by the service"),
        "{stdout}"
    );
}

#[test]
fn memory_store_warns_loudly() {
    let out = eden(&["check-config", "--blob-store", "memory://"], &[]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("NOTHING IS DURABLE"), "{stderr}");
}

#[test]
fn unknown_scheme_and_missing_bucket_name_the_setting() {
    both_fail_with(
        &["--blob-store", "ftp://host/x"],
        &[],
        &["setting `blob-store`", "unknown scheme `ftp://`"],
    );
    for url in ["s3://", "gs:///prefix", "azblob://"] {
        both_fail_with(
            &["--blob-store", url],
            &[],
            &["setting `blob-store`", "missing"],
        );
    }
}

#[test]
fn options_of_another_backend_are_refused() {
    both_fail_with(
        &[
            "--blob-store",
            "gs://eden-bucket",
            "--s3-endpoint",
            "http://127.0.0.1:9",
        ],
        &[],
        &[
            "setting `s3-endpoint`",
            "only applies to a s3:// blob-store",
            "gs://",
        ],
    );
    both_fail_with(
        &[
            "--blob-store",
            "azblob://eden/p",
            "--azblob-account",
            "eden",
            "--gcs-storage-class",
            "NEARLINE",
        ],
        &[],
        &["setting `gcs-storage-class`"],
    );
    // From the environment too, naming the same setting.
    both_fail_with(
        &["--blob-store", "s3://eden-bucket"],
        &[
            ("EDEN_CAS_AZBLOB_ACCOUNT", "eden".into()),
            ("AWS_REGION", "us-east-1".into()),
        ],
        &["setting `azblob-account`", "azblob://"],
    );
    // A local directory takes no object-store options.
    both_fail_with(&["--s3-region", "us-east-1"], &[], &["setting `s3-region`"]);
}

#[test]
fn gcs_and_azblob_settings_are_validated() {
    both_fail_with(
        &["--blob-store", "gs://Not_A_Bucket!"],
        &[],
        &["setting `blob-store`", "GCS bucket name"],
    );
    both_fail_with(
        &[
            "--blob-store",
            "gs://eden-bucket",
            "--gcs-storage-class",
            "FROZEN",
        ],
        &[],
        &["setting `gcs-storage-class`"],
    );
    both_fail_with(
        &[
            "--blob-store",
            "gs://eden-bucket",
            "--gcs-endpoint",
            "storage.local",
        ],
        &[],
        &["setting `gcs-endpoint`", "http"],
    );
    both_fail_with(
        &["--blob-store", "azblob://eden-artifacts"],
        &[],
        &["setting `azblob-account`", "AZURE_STORAGE_ACCOUNT_NAME"],
    );
    both_fail_with(
        &[
            "--blob-store",
            "azblob://Bad_Container",
            "--azblob-account",
            "eden",
        ],
        &[],
        &["setting `blob-store`", "container"],
    );
    // Well-formed settings reach the probe. Without credentials the error
    // names where they come from; with nothing listening at the endpoint it
    // names the endpoint setting.
    both_fail_with(
        &["--blob-store", "gs://eden-bucket/p"],
        &[],
        &["cannot load credentials", "GOOGLE_APPLICATION_CREDENTIALS"],
    );
    let endpoint = format!("http://127.0.0.1:{}/edenacct", closed_port());
    let line = both_fail_with(
        &[
            "--blob-store",
            "azblob://eden-artifacts/p",
            "--azblob-endpoint",
            &endpoint,
            "--azblob-account",
            "edenacct",
        ],
        &[(
            "AZURE_STORAGE_ACCOUNT_KEY",
            "c2VjcmV0LWF6dXJlLWtleS1ub3QtcmVhbA==".into(),
        )],
        &["cannot reach", "setting `azblob-endpoint`"],
    );
    assert!(!line.contains("c2VjcmV0"), "{line}");
}

#[test]
fn credentials_are_never_taken_from_the_url_nor_echoed() {
    let line = both_fail_with(
        &[
            "--blob-store",
            "s3://AKIAEXAMPLE:wJalrXUtnFEMI@eden-bucket/p",
        ],
        &[],
        &[
            "setting `blob-store`",
            "credentials come only from the environment",
        ],
    );
    assert!(
        !line.contains("wJalrXUtnFEMI") && !line.contains("AKIAEXAMPLE"),
        "{line}"
    );
}

#[test]
fn aws_s3_needs_a_region() {
    both_fail_with(
        &["--blob-store", "s3://eden-bucket"],
        &[],
        &["setting `s3-region`", "AWS_REGION"],
    );
}

// ---- against the SeaweedFS S3 server ----

fn s3_args<'a>(s: &'a S3Server, url: &'a str) -> Vec<&'a str> {
    vec!["--blob-store", url, "--s3-endpoint", &s.endpoint]
}

#[test]
fn s3_check_config_passes_and_never_prints_the_secret() {
    let Some(s) = s3_server() else { return };
    let url = format!("s3://{}/startup", s.bucket);
    let out = eden(
        &[&["check-config"], &s3_args(s, &url)[..]].concat(),
        &s.client_env(&s.access_key, &s.secret_key),
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("blob-store         s3://{}/startup", s.bucket)),
        "{stdout}"
    );
    assert!(stdout.contains("path-style"), "{stdout}");
    assert!(
        stdout.contains("create-only writes enforced by the service"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&s.secret_key) && !stderr.contains(&s.secret_key),
        "the secret key must never be printed, even at debug level"
    );
}

#[test]
fn s3_missing_bucket_fails_fast() {
    let Some(s) = s3_server() else { return };
    let line = both_fail_with(
        &s3_args(s, "s3://eden-no-such-bucket/x"),
        &s.client_env(&s.access_key, &s.secret_key),
        &[
            "bucket `eden-no-such-bucket` does not exist",
            "setting `blob-store`",
        ],
    );
    assert!(!line.contains(&s.secret_key));
}

#[test]
fn s3_missing_write_permission_fails_fast() {
    let Some(s) = s3_server() else { return };
    let url = format!("s3://{}/ro", s.bucket);
    both_fail_with(
        &s3_args(s, &url),
        &s.client_env(&s.ro_access_key, &s.ro_secret_key),
        &[
            "access denied on write",
            "s3:PutObject",
            "AWS_ACCESS_KEY_ID",
        ],
    );
}

#[test]
fn s3_wrong_or_missing_credentials_fail_fast() {
    let Some(s) = s3_server() else { return };
    let url = format!("s3://{}/creds", s.bucket);
    let line = both_fail_with(
        &s3_args(s, &url),
        &s.client_env(&s.access_key, "not-the-secret-key-0000"),
        &["access denied", "AWS_ACCESS_KEY_ID"],
    );
    assert!(!line.contains("not-the-secret-key-0000"));
    let out = eden(
        &[&["check-config"], &s3_args(s, &url)[..]].concat(),
        &[("AWS_EC2_METADATA_DISABLED", "true".into())],
    );
    fails_with(&out, &["AWS_ACCESS_KEY_ID"]);
}

#[test]
fn s3_unreachable_endpoint_fails_fast() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let started = std::time::Instant::now();
    both_fail_with(
        &[
            "--blob-store",
            "s3://eden-bucket/p",
            "--s3-endpoint",
            &endpoint,
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "eden-test-key".into()),
            ("AWS_SECRET_ACCESS_KEY", "eden-test-secret".into()),
        ],
        &["cannot reach", &endpoint, "setting `s3-endpoint`"],
    );
    assert!(
        started.elapsed().as_secs() < 60,
        "fails fast, not after minutes of retries"
    );
}

#[test]
fn s3_serve_deposits_and_fetches_over_http() {
    if s3_server().is_none() {
        return;
    }
    // The server process takes the credentials from its environment, which
    // it inherits from a child test process that holds them.
    crate::support::blobs::run_in_child("blobs_startup::s3_http_in_child");
}

#[test]
#[ignore = "run by s3_serve_deposits_and_fetches_over_http in a child process holding the S3 credentials"]
fn s3_http_in_child() {
    assert!(
        crate::support::blobs::in_child(),
        "run through s3_serve_deposits_and_fetches_over_http"
    );
    let s = s3_server().expect("server in child");
    let url = format!("s3://{}/http-{}", s.bucket, random_hex(8));
    http_round_trip(&["--blob-store", &url, "--s3-endpoint", &s.endpoint]);
}

/// Serves with `args` (a blob store and its settings; credentials come from
/// this process's environment), deposits 9 MiB twice over HTTP, fetches
/// both, and checks that nothing landed on local disk and that the blob
/// metrics are exported.
fn http_round_trip(args: &[&str]) {
    let server = Server::start_with(&[args, &["--pack-target-bytes", "4MiB"][..]].concat());
    let exp = exp_id();
    let admin = server.admin_bearer();
    let bytes = random_bytes(9 << 20);
    let uri = deposit_ok(&server, &exp, &admin, &bytes, "application/octet-stream");
    let again = deposit_ok(&server, &exp, &admin, &bytes, "application/octet-stream");
    assert_ne!(uri, again);
    for u in [&uri, &again] {
        let resp = fetch(&server, &exp, &admin, u);
        assert_eq!(resp.status().as_u16(), 200);
        assert!(resp.bytes().unwrap()[..] == bytes[..]);
    }
    // Nothing of the store is on local disk: packs live in the bucket.
    assert!(!server.data_dir().join("blobs").exists());
    let metrics = server.metrics_text();
    assert!(
        metrics.contains("eden_cas_blob_requests_total{kind=\"put\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("eden_cas_chunk_cache_hits_total"),
        "{metrics}"
    );
}
