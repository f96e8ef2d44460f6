//! How to reach the PostgreSQL metadata store: the URL (libpq's form),
//! the password from libpq's usual sources (never from the URL), and the
//! TLS connector.

use std::path::{Path, PathBuf};

use tokio_postgres_rustls::MakeRustlsConnect;

use super::pg_err;
use crate::meta::MetaError;

/// How to reach the database.
#[derive(Clone)]
pub struct PgSettings {
    /// Connection settings, password included (never printed).
    pub config: postgres::Config,
    /// PEM file of the certificate authorities trusted for TLS to the
    /// database (the Mozilla roots when `None`).
    pub ca_file: Option<PathBuf>,
    /// The URL without credentials, for messages.
    pub display: String,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &self.display)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl PgSettings {
    /// Settings from a `postgres://user@host[:port]/db[?…]` URL (libpq's
    /// form; `sslmode` and `options` are honoured). The password comes
    /// from `password_file`, else `PGPASSWORD`, else the first matching
    /// line of `PGPASSFILE` (default `~/.pgpass`); the user from the URL,
    /// else `PGUSER`, else `USER`. `env` reads the environment (injected
    /// for tests).
    ///
    /// # Errors
    /// A message naming the problem: a URL that does not parse or carries a
    /// password (it would show in process listings and logs), an unreadable
    /// password file, no user.
    pub fn from_url(
        url: &str,
        password_file: Option<&Path>,
        ca_file: Option<PathBuf>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        if config.get_password().is_some() {
            return Err("carries a password: give it in PGPASSWORD, PGPASSFILE or \
                        meta-store-password-file instead (a URL shows in process listings \
                        and logs)"
                .into());
        }
        if config.get_hosts().is_empty() {
            return Err("names no host".into());
        }
        let user = match config.get_user() {
            Some(u) => u.to_string(),
            None => env("PGUSER")
                .or_else(|| env("USER"))
                .ok_or("names no user (and neither PGUSER nor USER is set)")?,
        };
        config.user(&user);
        let host = match &config.get_hosts()[0] {
            postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            postgres::config::Host::Unix(p) => p.display().to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let db = config.get_dbname().unwrap_or(&user).to_string();
        let password = match password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("meta-store-password-file {}: {e}", path.display()))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            ),
            None => env("PGPASSWORD").or_else(|| {
                let file = env("PGPASSFILE")
                    .map(PathBuf::from)
                    .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
                let text = std::fs::read_to_string(file).ok()?;
                pgpass_lookup(&text, &host, port, &db, &user)
            }),
        };
        if let Some(p) = password {
            config.password(p);
        }
        let mut display = format!("postgres://{user}@{host}:{port}/{db}");
        if let Some(o) = config.get_options() {
            display.push_str(&format!(" (options {o})"));
        }
        Ok(PgSettings {
            config,
            ca_file,
            display,
        })
    }
}

/// The password of the first line of a libpq password file that matches
/// (`host:port:database:user:password`, `*` matching anything, `\:` and
/// `\\` escaping).
fn pgpass_lookup(text: &str, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|line| {
            let mut fields = Vec::with_capacity(5);
            let mut cur = String::new();
            let mut chars = line.chars();
            while let Some(ch) = chars.next() {
                match ch {
                    '\\' => cur.extend(chars.next()),
                    ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                    c => cur.push(c),
                }
            }
            fields.push(cur);
            let [h, p, d, u, pw] = <[String; 5]>::try_from(fields).ok()?;
            let hit = |pat: &str, v: &str| pat == "*" || pat == v;
            (hit(&h, host) && hit(&p, &port) && hit(&d, db) && hit(&u, user)).then_some(pw)
        })
}

/// The TLS connector: rustls with ring, trusting `ca_file` or the Mozilla
/// roots. Used only when the URL's `sslmode` asks for TLS (`prefer`, the
/// default, falls back to plain text when the server offers none).
pub(super) fn tls(settings: &PgSettings) -> Result<MakeRustlsConnect, MetaError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                MetaError::Postgres(format!(
                    "cannot read the database CA file {}: {e}",
                    path.display()
                ))
            })?;
            for cert in rustls_pki_certs(&pem, path)? {
                roots.add(cert).map_err(pg_err)?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The certificates of a PEM file.
fn rustls_pki_certs(
    pem: &[u8],
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, MetaError> {
    use rustls::pki_types::pem::PemObject;
    let certs: Result<Vec<_>, _> = rustls::pki_types::CertificateDer::pem_slice_iter(pem).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(MetaError::Postgres(format!(
            "{} holds no PEM certificate",
            path.display()
        ))),
        Err(e) => Err(MetaError::Postgres(format!("{}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_string())
        }
    }

    #[test]
    fn urls_take_no_password_and_credentials_come_from_the_libpq_environment() {
        let none = env_of(&[]);
        let err = PgSettings::from_url("postgres://u:secret@h/db", None, None, &none)
            .err()
            .unwrap();
        assert!(
            err.contains("PGPASSWORD") && !err.contains("secret"),
            "{err}"
        );
        assert!(PgSettings::from_url("mysql://h/db", None, None, &none).is_err());

        let env = env_of(&[("PGPASSWORD", "pw1")]);
        let s = PgSettings::from_url("postgres://u@h:6000/db", None, None, &env).unwrap();
        assert_eq!(s.config.get_password(), Some(&b"pw1"[..]));
        assert_eq!(s.display, "postgres://u@h:6000/db");
        assert!(!format!("{s:?}").contains("pw1"));

        // A password file wins; its trailing newline is not part of it.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "pw2\n").unwrap();
        let s = PgSettings::from_url("postgres://u@h/db", Some(&f), None, &env).unwrap();
        assert_eq!(s.config.get_password(), Some(&b"pw2"[..]));

        // The user defaults to PGUSER, then USER.
        let env = env_of(&[("USER", "osuser")]);
        let s = PgSettings::from_url("postgres://h/db", None, None, &env).unwrap();
        assert_eq!(s.config.get_user(), Some("osuser"));
    }

    #[test]
    fn pgpass_lines_match_with_wildcards_and_escapes() {
        let text = "# comment\nother:5432:db:u:no\nh:*:db:u:p\\:w\\\\1\n*:*:*:*:fallback\n";
        assert_eq!(
            pgpass_lookup(text, "h", 5432, "db", "u").as_deref(),
            Some("p:w\\1")
        );
        assert_eq!(
            pgpass_lookup(text, "x", 1, "y", "z").as_deref(),
            Some("fallback")
        );
        assert_eq!(pgpass_lookup("h:1:d:u\n", "h", 1, "d", "u"), None);
    }
}
