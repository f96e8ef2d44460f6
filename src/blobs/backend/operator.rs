//! The opendal service built from a validated [`Backend`]: which builder
//! options each backend gets, and where its credentials come from.

use opendal::Operator;

use super::Backend;

/// Installs, once per process, the rustls crypto provider (ring) and
/// opendal's reqwest transport. TLS to S3, GCS and Azure goes through
/// rustls with the `ring` provider, the one our own HTTP client (reqwest's
/// `rustls-tls`) already uses, instead of reqwest 0.13's default
/// `aws-lc-rs`, whose C build is minutes of every cold build
/// (`docs/building.md`). Installing is first-wins: a provider installed
/// earlier by the embedding process stays in force.
fn install_http_transport() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    opendal_http_transport_reqwest::install_default();
    opendal::install_default();
}

/// Builds the opendal operator (no layers) for a backend. HTTP backends use
/// the process-wide reqwest transport (rustls), installed here on first use.
pub(crate) fn operator(backend: &Backend) -> Result<Operator, opendal::Error> {
    fn root(prefix: &str) -> String {
        if prefix.is_empty() {
            "/".into()
        } else {
            format!("/{prefix}/")
        }
    }
    if backend.is_object_store() {
        install_http_transport();
    }
    Ok(match backend {
        Backend::Fs { root } => {
            Operator::new(opendal::services::Fs::default().root(&root.to_string_lossy()))?
        }
        Backend::Memory => Operator::new(opendal::services::Memory::default())?,
        Backend::S3(o) => {
            let mut b = opendal::services::S3::default()
                .bucket(&o.bucket)
                .root(&root(&o.prefix))
                .region(&o.region);
            if let Some(e) = &o.endpoint {
                b = b.endpoint(e);
            }
            if !o.path_style {
                b = b.enable_virtual_host_style();
            }
            if let Some(c) = &o.storage_class {
                b = b.default_storage_class(c);
            }
            // The AWS SDKs' switch for hosts with no instance metadata service.
            if std::env::var("AWS_EC2_METADATA_DISABLED")
                .is_ok_and(|v| v.eq_ignore_ascii_case("true"))
            {
                b = b.disable_ec2_metadata();
            }
            Operator::new(b)?
        }
        Backend::Gcs(o) => {
            let mut b = opendal::services::Gcs::default()
                .bucket(&o.bucket)
                .root(&root(&o.prefix));
            if let Some(e) = &o.endpoint {
                b = b.endpoint(e);
            }
            if let Some(c) = &o.storage_class {
                b = b.default_storage_class(c);
            }
            if o.unsigned {
                // An emulator: no credential is looked for (no metadata
                // server probe, no credentials file) and nothing is signed.
                b = b
                    .skip_signature()
                    .disable_vm_metadata()
                    .disable_config_load();
            }
            Operator::new(b)?
        }
        Backend::Azblob(o) => {
            let mut b = opendal::services::Azblob::default()
                .container(&o.container)
                .root(&root(&o.prefix))
                .endpoint(&o.endpoint);
            if let Some(a) = &o.account {
                b = b.account_name(a);
                // A key in the environment pairs with the configured account;
                // it is handed to the signer and never logged.
                if let Ok(key) = std::env::var("AZURE_STORAGE_ACCOUNT_KEY")
                    && !key.is_empty()
                {
                    b = b.account_key(&key);
                }
            }
            Operator::new(b)?
        }
    })
}
