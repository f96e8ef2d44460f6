//! TLS on the listener: rustls (ring provider, TLS 1.2 and 1.3), the
//! certificate chain and private key read from PEM files (`tls-cert`,
//! `tls-key`). [`CertReloader`] is the server's certificate resolver: it
//! hands every new handshake the pair loaded last, so `serve` reloads both
//! files on SIGHUP without closing the listener or a connection; a reload
//! that fails keeps the previous pair and says why.
//!
//! Every error names the setting to fix and the file (never key material).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of `tls-cert` and `tls-key` is set.
    #[error("setting `{missing}`: required when `{given}` is set (TLS needs both)")]
    Half {
        /// The setting that is missing.
        missing: &'static str,
        /// The setting that is given.
        given: &'static str,
    },
    /// A file cannot be read or holds no usable PEM item.
    #[error("setting `{setting}`: {path}: {detail}")]
    File {
        /// `tls-cert` or `tls-key`.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The key does not belong to the certificate, or rustls refused them.
    #[error("settings `tls-cert` and `tls-key`: {0}")]
    Pair(String),
}

/// The rustls provider of the server side (ring, as for the blob stores).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the chain and key and checks that they belong together.
fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let file_err = |setting, path: &Path, detail: String| TlsError::File {
        setting,
        path: path.to_path_buf(),
        detail,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err("tls-cert", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err("tls-cert", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_err(
            "tls-cert",
            cert,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file".into(),
        ));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        file_err(
            "tls-key",
            key,
            format!("{e} (a PEM PKCS#8, PKCS#1 or SEC1 private key is expected)"),
        )
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| file_err("tls-key", key, format!("unusable private key: {e}")))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match()
        .map_err(|e| TlsError::Pair(format!("the key does not match the certificate: {e}")))?;
    Ok(Arc::new(pair))
}

/// The certificate resolver of the listener, reloadable in place.
#[derive(Debug)]
pub struct CertReloader {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertReloader {
    /// Loads `cert` and `key`.
    ///
    /// # Errors
    /// [`TlsError`] naming the setting and the file.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertReloader>, TlsError> {
        Ok(Arc::new(CertReloader {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(load_pair(cert, key)?),
        }))
    }

    /// The TLS settings of `tls-cert` / `tls-key`: `None` when neither is
    /// set.
    ///
    /// # Errors
    /// One of them set without the other; a file unusable.
    pub fn from_settings(
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<Arc<CertReloader>>, TlsError> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(TlsError::Half {
                missing: "tls-key",
                given: "tls-cert",
            }),
            (None, Some(_)) => Err(TlsError::Half {
                missing: "tls-cert",
                given: "tls-key",
            }),
            (Some(c), Some(k)) => CertReloader::load(c, k).map(Some),
        }
    }

    /// Reads both files again; on success new handshakes get the new pair,
    /// on failure the previous pair stays.
    ///
    /// # Errors
    /// As [`CertReloader::load`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = load_pair(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = pair;
        Ok(())
    }

    /// The server configuration: TLS 1.2 and 1.3, no client certificates,
    /// certificates from `self`.
    ///
    /// # Errors
    /// rustls refuses the provider's protocol versions (not expected).
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        Ok(rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Pair(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone()))
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}
