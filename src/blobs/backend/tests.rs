//! Unit tests of the blob-store settings.

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn resolve(s: &BlobSettings) -> Result<Backend, SettingError> {
    s.resolve(Path::new("/data"), &no_env)
}

fn url(u: &str) -> BlobSettings {
    BlobSettings {
        blob_store: Some(u.into()),
        ..BlobSettings::default()
    }
}

#[test]
fn default_is_fs_under_the_data_dir() {
    assert_eq!(
        resolve(&BlobSettings::default()).unwrap(),
        Backend::Fs {
            root: PathBuf::from("/data/blobs")
        }
    );
    assert_eq!(
        resolve(&url("/srv/packs")).unwrap(),
        Backend::Fs {
            root: PathBuf::from("/srv/packs")
        }
    );
    assert_eq!(
        resolve(&url("fs:///srv/packs")).unwrap(),
        Backend::Fs {
            root: PathBuf::from("/srv/packs")
        }
    );
    assert_eq!(resolve(&url("memory://")).unwrap(), Backend::Memory);
}

#[test]
fn s3_urls_and_options() {
    let mut s = url("s3://my-bucket/a/b/");
    s.s3_endpoint = Some("http://127.0.0.1:8333/".into());
    let Backend::S3(o) = resolve(&s).unwrap() else {
        panic!()
    };
    assert_eq!(o.bucket, "my-bucket");
    assert_eq!(o.prefix, "a/b");
    assert_eq!(o.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
    assert_eq!(o.region, "us-east-1");
    assert!(o.path_style, "custom endpoints default to path style");
    assert_eq!(Backend::S3(o).to_string(), "s3://my-bucket/a/b");

    let err = resolve(&url("s3://my-bucket")).unwrap_err();
    assert_eq!(err.setting, "s3-region", "AWS needs a region");
    let env = |k: &str| (k == "AWS_REGION").then(|| "eu-west-1".to_string());
    let Backend::S3(o) = url("s3://my-bucket")
        .resolve(Path::new("/d"), &env)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(o.region, "eu-west-1");
    assert!(!o.path_style, "AWS defaults to virtual-host style");

    let mut s = url("s3://b-1");
    s.s3_region = Some("us-east-2".into());
    s.s3_storage_class = Some("deep_archive".into());
    assert_eq!(resolve(&s).unwrap_err().setting, "s3-storage-class");
    s.s3_storage_class = Some("standard_ia".into());
    let Backend::S3(o) = resolve(&s).unwrap() else {
        panic!()
    };
    assert_eq!(o.storage_class.as_deref(), Some("STANDARD_IA"));
}

#[test]
fn missing_or_bad_bucket_names_the_setting() {
    for u in ["s3://", "s3:///prefix", "gs://", "azblob://"] {
        let err = resolve(&url(u)).unwrap_err();
        assert_eq!(err.setting, "blob-store", "{u}");
        assert!(err.detail.contains("missing"), "{u}: {}", err.detail);
    }
    assert_eq!(
        resolve(&url("s3://Bad_Bucket")).unwrap_err().setting,
        "blob-store"
    );
    assert_eq!(
        resolve(&url("s3://b/x/../y")).unwrap_err().setting,
        "blob-store"
    );
}

#[test]
fn unknown_scheme_is_refused() {
    let err = resolve(&url("ftp://host/x")).unwrap_err();
    assert_eq!(err.setting, "blob-store");
    assert!(
        err.detail.contains("unknown scheme `ftp://`"),
        "{}",
        err.detail
    );
}

#[test]
fn options_of_another_backend_are_refused() {
    let mut s = url("gs://bucket/p");
    s.s3_endpoint = Some("http://x".into());
    let err = resolve(&s).unwrap_err();
    assert_eq!(err.setting, "s3-endpoint");
    assert!(err.detail.contains("s3://"), "{}", err.detail);

    let mut s = url("s3://bucket");
    s.s3_region = Some("us-east-1".into());
    s.azblob_account = Some("acct".into());
    assert_eq!(resolve(&s).unwrap_err().setting, "azblob-account");

    let mut s = BlobSettings {
        gcs_storage_class: Some("NEARLINE".into()),
        ..BlobSettings::default()
    };
    assert_eq!(resolve(&s).unwrap_err().setting, "gcs-storage-class");
    s.gcs_storage_class = None;
    s.s3_path_style = Some(true);
    assert_eq!(resolve(&s).unwrap_err().setting, "s3-path-style");
}

#[test]
fn credentials_in_the_url_are_refused_without_echo() {
    for u in [
        "s3://AKIAEXAMPLE:hunter2@bucket/p",
        "s3://bucket/p?secret=hunter2",
        "azblob://c?sv=2020&sig=hunter2",
    ] {
        let err = resolve(&url(u)).unwrap_err();
        assert_eq!(err.setting, "blob-store");
        assert!(!err.detail.contains("hunter2"), "{}", err.detail);
    }
}

#[test]
fn gcs_and_azblob() {
    let mut s = url("gcs://my_bucket.example/pre");
    s.gcs_storage_class = Some("nearline".into());
    let Backend::Gcs(o) = resolve(&s).unwrap() else {
        panic!()
    };
    assert_eq!(o.bucket, "my_bucket.example");
    assert_eq!(o.storage_class.as_deref(), Some("NEARLINE"));

    let err = resolve(&url("azblob://artifacts")).unwrap_err();
    assert_eq!(err.setting, "azblob-account");
    let mut s = url("azblob://artifacts/eden");
    s.azblob_account = Some("edenstore".into());
    let Backend::Azblob(o) = resolve(&s).unwrap() else {
        panic!()
    };
    assert_eq!(o.endpoint, "https://edenstore.blob.core.windows.net");
    s.azblob_endpoint = Some("127.0.0.1:10000".into());
    assert_eq!(resolve(&s).unwrap_err().setting, "azblob-endpoint");
    s.azblob_account = Some("Not_Valid".into());
    s.azblob_endpoint = None;
    assert_eq!(resolve(&s).unwrap_err().setting, "azblob-account");
}

fn with_env(s: &BlobSettings, vars: &[(&str, &str)]) -> Result<Backend, SettingError> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s.resolve(Path::new("/data"), &move |k: &str| {
        vars.iter().find(|(vk, _)| vk == k).map(|(_, v)| v.clone())
    })
}

#[test]
fn gcs_emulator_host_means_unsigned_requests_to_it() {
    let Backend::Gcs(o) = with_env(
        &url("gs://eden/p"),
        &[("STORAGE_EMULATOR_HOST", "127.0.0.1:9023")],
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(o.endpoint.as_deref(), Some("http://127.0.0.1:9023"));
    assert!(o.unsigned);
    // The same through settings; localhost and ::1 are on this machine too.
    for e in [
        "http://localhost:4443",
        "http://[::1]:4443/",
        "http://127.0.0.2",
    ] {
        let mut s = url("gs://eden");
        s.gcs_endpoint = Some(e.into());
        s.gcs_unsigned = Some(true);
        let Backend::Gcs(o) = resolve(&s).unwrap() else {
            panic!()
        };
        assert!(o.unsigned, "{e}");
    }
    // A signed store by default, even with an endpoint.
    let mut s = url("gs://eden");
    s.gcs_endpoint = Some("http://127.0.0.1:9023".into());
    let Backend::Gcs(o) = resolve(&s).unwrap() else {
        panic!()
    };
    assert!(!o.unsigned);
}

#[test]
fn unsigned_gcs_requests_stay_on_this_machine_unless_allowed() {
    let err = with_env(
        &url("gs://eden"),
        &[("STORAGE_EMULATOR_HOST", "gcs.internal:4443")],
    )
    .unwrap_err();
    assert_eq!(err.setting, "gcs-unsigned-allow-remote");
    assert!(err.detail.contains("gcs.internal:4443"), "{}", err.detail);
    let mut s = url("gs://eden");
    s.gcs_unsigned = Some(true);
    let err = resolve(&s).unwrap_err();
    assert_eq!(err.setting, "gcs-unsigned-allow-remote");
    assert!(
        err.detail.contains("storage.googleapis.com"),
        "{}",
        err.detail
    );
    // 127.0.0.1.example.com is not loopback.
    s.gcs_endpoint = Some("http://127.0.0.1.example.com:80".into());
    assert_eq!(
        resolve(&s).unwrap_err().setting,
        "gcs-unsigned-allow-remote"
    );
    s.gcs_unsigned_allow_remote = Some(true);
    let Backend::Gcs(o) = resolve(&s).unwrap() else {
        panic!()
    };
    assert!(o.unsigned);
    // Allowing remote unsigned requests without asking for them is a mistake.
    let mut s = url("gs://eden");
    s.gcs_unsigned_allow_remote = Some(true);
    assert_eq!(
        resolve(&s).unwrap_err().setting,
        "gcs-unsigned-allow-remote"
    );
}

#[test]
fn gcs_endpoint_and_emulator_host_must_agree() {
    let mut s = url("gs://eden");
    s.gcs_endpoint = Some("http://127.0.0.1:1111".into());
    let err = with_env(&s, &[("STORAGE_EMULATOR_HOST", "http://127.0.0.1:2222")]).unwrap_err();
    assert_eq!(err.setting, "gcs-endpoint");
    assert!(
        err.detail.contains("STORAGE_EMULATOR_HOST"),
        "{}",
        err.detail
    );
    s.gcs_endpoint = Some("http://127.0.0.1:2222/".into());
    assert!(with_env(&s, &[("STORAGE_EMULATOR_HOST", "127.0.0.1:2222")]).is_ok());
    s.gcs_unsigned = Some(false);
    let err = with_env(&s, &[("STORAGE_EMULATOR_HOST", "127.0.0.1:2222")]).unwrap_err();
    assert_eq!(err.setting, "gcs-unsigned");
    // Settings of gs:// only.
    let mut s = url("s3://eden");
    s.s3_region = Some("us-east-1".into());
    s.gcs_unsigned = Some(true);
    assert_eq!(resolve(&s).unwrap_err().setting, "gcs-unsigned");
}

#[test]
fn azure_account_comes_from_the_endpoint_and_a_key_needs_one() {
    let mut s = url("azblob://eden");
    s.azblob_endpoint = Some("http://127.0.0.1:10000/devstoreaccount1".into());
    let Backend::Azblob(o) = resolve(&s).unwrap() else {
        panic!()
    };
    assert_eq!(o.account.as_deref(), Some("devstoreaccount1"));
    s.azblob_endpoint = Some("https://edenprod.blob.core.usgovcloudapi.net".into());
    let Backend::Azblob(o) = resolve(&s).unwrap() else {
        panic!()
    };
    assert_eq!(o.account.as_deref(), Some("edenprod"));
    // An endpoint naming no account and a shared key: the key would be
    // ignored, so this is an error naming the setting.
    s.azblob_endpoint = Some("http://azurite.internal:10000".into());
    let err = with_env(&s, &[("AZURE_STORAGE_ACCOUNT_KEY", "a2V5")]).unwrap_err();
    assert_eq!(err.setting, "azblob-account");
    assert!(
        err.detail.contains("AZURE_STORAGE_ACCOUNT_KEY is set") && !err.detail.contains("a2V5"),
        "{}",
        err.detail
    );
    let Backend::Azblob(o) = with_env(
        &s,
        &[
            ("AZURE_STORAGE_ACCOUNT_KEY", "a2V5"),
            ("AZURE_STORAGE_ACCOUNT_NAME", "edenacct"),
        ],
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(o.account.as_deref(), Some("edenacct"));
    // Without a key, an account is not needed (SAS, managed identity).
    assert!(resolve(&s).is_ok());
}
