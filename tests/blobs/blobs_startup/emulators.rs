//! Startup checks and an HTTP deposit/fetch through the real binary against
//! Azurite (azblob) and gcp-storage-emulator (gs), started by
//! `support::blobs::emulators`: what passes, what each misconfiguration
//! says, and the probe's "create-only writes NOT enforced" path on the GCS
//! emulator, which ignores `ifGenerationMatch=0`.

use super::{both_fail_with, eden, fails_with, http_round_trip};
use crate::support::blobs::emulators::{Azurite, azurite, gcs_emulator, run_in_azurite_child};
use crate::support::blobs::{closed_port, in_child};
use crate::support::server::random_hex;

fn azblob_args<'a>(a: &'a Azurite, url: &'a str) -> Vec<&'a str> {
    vec![
        "--blob-store",
        url,
        "--azblob-endpoint",
        &a.endpoint,
        "--azblob-account",
        &a.account,
    ]
}

#[test]
fn azblob_check_config_passes_and_never_prints_the_key() {
    let Some(a) = azurite() else { return };
    let url = format!("azblob://{}/startup", a.container);
    let out = eden(
        &[&["check-config"], &azblob_args(a, &url)[..]].concat(),
        &a.client_env(),
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "blob-store         azblob://{}/startup (endpoint {}, account {})",
            a.container, a.endpoint, a.account
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("create-only writes enforced by the service"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&a.key) && !stderr.contains(&a.key),
        "the account key must never be printed, even at debug level"
    );
    // The account may come from a path-style endpoint alone.
    let out = eden(
        &[
            "check-config",
            "--blob-store",
            &url,
            "--azblob-endpoint",
            &a.endpoint,
        ],
        &a.client_env(),
    );
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn azblob_missing_container_or_account_path_is_a_clear_not_found() {
    let Some(a) = azurite() else { return };
    let line = both_fail_with(
        &azblob_args(a, "azblob://eden-no-such-container/x"),
        &a.client_env(),
        &["container `eden-no-such-container`", "setting `blob-store`"],
    );
    assert!(!line.contains("vanished"), "{line}");
    // The account left out of a path-style endpoint: Azurite reads the
    // container as the account.
    let bare = a.endpoint.trim_end_matches(&format!("/{}", a.account));
    let url = format!("azblob://{}/startup", a.container);
    let line = both_fail_with(
        &[
            "--blob-store",
            &url,
            "--azblob-endpoint",
            bare,
            "--azblob-account",
            &a.account,
        ],
        &a.client_env(),
        &[
            "or the endpoint was not found",
            "`azblob-endpoint`",
            "ends with the account",
        ],
    );
    assert!(
        !line.contains("vanished") && !line.contains(&a.key),
        "{line}"
    );
}

#[test]
fn azblob_bad_keys_name_the_credential() {
    let Some(a) = azurite() else { return };
    let url = format!("azblob://{}/keys", a.container);
    let wrong = "d3Jvbmcta2V5LW5vdC10aGUtYWNjb3VudHMta2V5MDA=";
    let line = both_fail_with(
        &azblob_args(a, &url),
        &[("AZURE_STORAGE_ACCOUNT_KEY", wrong.into())],
        &[
            "access denied on write",
            "AZURE_STORAGE_ACCOUNT_KEY",
            "setting `azblob-account`",
        ],
    );
    assert!(!line.contains(wrong), "{line}");
    let line = both_fail_with(
        &azblob_args(a, &url),
        &[("AZURE_STORAGE_ACCOUNT_KEY", "not base64 at all!".into())],
        &["AZURE_STORAGE_ACCOUNT_KEY", "base64"],
    );
    assert!(
        !line.contains("not base64 at all") && !line.contains("azblob-endpoint"),
        "{line}"
    );
}

#[test]
fn azblob_key_without_an_account_is_a_config_error() {
    let endpoint = format!("http://localhost:{}", closed_port());
    both_fail_with(
        &[
            "--blob-store",
            "azblob://eden-artifacts",
            "--azblob-endpoint",
            &endpoint,
        ],
        &[(
            "AZURE_STORAGE_ACCOUNT_KEY",
            "c2VjcmV0LWF6dXJlLWtleS1ub3QtcmVhbA==".into(),
        )],
        &[
            "setting `azblob-account`",
            "AZURE_STORAGE_ACCOUNT_KEY is set",
        ],
    );
}

#[test]
fn azblob_serve_deposits_and_fetches_over_http() {
    run_in_azurite_child("blobs_startup::emulators::azblob_http_in_child");
}

#[test]
#[ignore = "run by azblob_serve_deposits_and_fetches_over_http in a child process holding the key"]
fn azblob_http_in_child() {
    assert!(
        in_child(),
        "run through azblob_serve_deposits_and_fetches_over_http"
    );
    let a = azurite().expect("Azurite in child");
    let url = format!("azblob://{}/http-{}", a.container, random_hex(8));
    http_round_trip(&azblob_args(a, &url));
}

#[test]
fn gcs_emulator_host_needs_no_credentials_and_create_only_is_reported_not_enforced() {
    let Some(g) = gcs_emulator() else { return };
    let url = format!("gs://{}/startup", g.bucket);
    let host = g.endpoint.trim_start_matches("http://");
    let out = eden(
        &["check-config", "--blob-store", &url],
        &[("STORAGE_EMULATOR_HOST", host.into())],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "blob-store         gs://{}/startup (endpoint {}, unsigned requests: emulator)",
            g.bucket, g.endpoint
        )),
        "{stdout}"
    );
    // The emulator ignores ifGenerationMatch=0: the probe says so, warns,
    // and goes on.
    assert!(
        stdout.contains("create-only writes NOT enforced by the service"),
        "{stdout}"
    );
    assert!(stderr.contains("ignores create-only writes"), "{stderr}");
    assert!(stdout.contains("delete allowed     yes"), "{stdout}");
    // The emulator's endpoint without saying it is one: the credential
    // error points at the emulator settings.
    let out = eden(
        &[
            "check-config",
            "--blob-store",
            &url,
            "--gcs-endpoint",
            &g.endpoint,
        ],
        &[],
    );
    fails_with(
        &out,
        &[
            "cannot load credentials",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "STORAGE_EMULATOR_HOST or setting `gcs-unsigned`",
        ],
    );
}

#[test]
fn gcs_missing_bucket_is_a_clear_not_found() {
    let Some(g) = gcs_emulator() else { return };
    let line = both_fail_with(
        &[
            "--blob-store",
            "gs://eden-no-such-bucket/x",
            "--gcs-endpoint",
            &g.endpoint,
            "--gcs-unsigned",
            "true",
        ],
        &[],
        &[
            "bucket `eden-no-such-bucket`",
            "not found",
            "setting `blob-store`",
            "`gcs-endpoint`",
        ],
    );
    assert!(!line.contains("vanished"), "{line}");
}

#[test]
fn gcs_unsigned_requests_stay_on_this_machine() {
    both_fail_with(
        &[
            "--blob-store",
            "gs://eden-bucket",
            "--gcs-endpoint",
            "http://gcs.example.com:4443",
            "--gcs-unsigned",
            "true",
        ],
        &[],
        &["setting `gcs-unsigned-allow-remote`", "gcs.example.com"],
    );
    both_fail_with(
        &["--blob-store", "gs://eden-bucket"],
        &[("STORAGE_EMULATOR_HOST", "gcs.example.com:4443".into())],
        &[
            "setting `gcs-unsigned-allow-remote`",
            "STORAGE_EMULATOR_HOST",
        ],
    );
    // Allowed on purpose, it reaches the probe (nothing listens there).
    let endpoint = format!("http://127.0.0.2:{}", closed_port());
    let out = eden(
        &[
            "check-config",
            "--blob-store",
            "gs://eden-bucket",
            "--gcs-endpoint",
            &endpoint,
            "--gcs-unsigned",
            "true",
        ],
        &[],
    );
    fails_with(&out, &["cannot reach", "setting `gcs-endpoint`"]);
}

#[test]
fn gcs_serve_deposits_and_fetches_over_http() {
    let Some(g) = gcs_emulator() else { return };
    let url = format!("gs://{}/http-{}", g.bucket, random_hex(8));
    http_round_trip(&[
        "--blob-store",
        &url,
        "--gcs-endpoint",
        &g.endpoint,
        "--gcs-unsigned",
        "true",
    ]);
}
