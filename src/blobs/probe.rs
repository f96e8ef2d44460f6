//! The startup probe: before serving (and in `eden-cas check-config`), prove
//! that the blob store works the way the engine relies on, and turn any
//! failure into one line naming the setting (or environment) to fix.
//!
//! Under `_eden_cas_probe/` it writes a small object create-only, reads a
//! range of it, tries to overwrite it (which must be refused: invariant 5),
//! stats and reads it back, reads a key that does not exist (which must be a
//! not-found, not an error), and deletes it. A missing bucket, refused
//! credentials, an unreachable endpoint or a missing permission each fail
//! here, at startup, rather than on the first deposit.
//!
//! A service that ignores create-only writes (some emulators) passes with a
//! warning: the overwrite lands, and the checks after it expect the new
//! bytes. Every failure is one line with a non-empty reason and the setting
//! or credential to fix.

use std::time::{Duration, Instant};

use bytes::Bytes;
use opendal::ErrorKind;

use super::{Backend, BlobConfig, BlobError, BlobStore, PutOutcome};

/// Prefix of probe objects.
pub const PROBE_PREFIX: &str = "_eden_cas_probe/";

/// What the probe found.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// The store, safe to log.
    pub store: String,
    /// Whether a create-only write over an existing object was refused by
    /// the service itself (`If-None-Match: *` honoured).
    pub conditional_writes: bool,
    /// Whether deleting the probe object was allowed (GC will need it).
    pub delete_allowed: bool,
    /// Time the probe took.
    pub elapsed: Duration,
}

/// A probe failure: one line, naming what to fix.
#[derive(Debug, Clone, thiserror::Error)]
#[error("blob store {store}: {detail} (fix: {fix})")]
pub struct ProbeError {
    /// The store, safe to log.
    pub store: String,
    /// What went wrong.
    pub detail: String,
    /// The setting or environment to fix.
    pub fix: String,
}

/// The step that failed, for messages.
#[derive(Debug, Clone, Copy)]
enum Step {
    Open,
    Write,
    Read,
    Stat,
    Delete,
}

impl Step {
    fn verb(self) -> &'static str {
        match self {
            Step::Open => "open",
            Step::Write => "write",
            Step::Read => "read",
            Step::Stat => "stat",
            Step::Delete => "delete",
        }
    }

    fn permission(self, backend: &Backend) -> &'static str {
        match (backend, self) {
            (Backend::S3(_), Step::Open | Step::Write) => "s3:PutObject",
            (Backend::S3(_), Step::Read | Step::Stat) => "s3:GetObject",
            (Backend::S3(_), Step::Delete) => "s3:DeleteObject",
            (Backend::Gcs(_), Step::Open | Step::Write) => "storage.objects.create",
            (Backend::Gcs(_), Step::Read | Step::Stat) => "storage.objects.get",
            (Backend::Gcs(_), Step::Delete) => "storage.objects.delete",
            (Backend::Azblob(_), Step::Open | Step::Write) => "Microsoft.Storage/.../blobs/write",
            (Backend::Azblob(_), Step::Read | Step::Stat) => "Microsoft.Storage/.../blobs/read",
            (Backend::Azblob(_), Step::Delete) => "Microsoft.Storage/.../blobs/delete",
            _ => "write access",
        }
    }
}

/// The innermost cause of an error, on one line.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    one_line(&cur.to_string())
}

/// The service's error code (`AccessDenied`, `SignatureDoesNotMatch`, …)
/// when the message carries one, else the message; else the HTTP status and
/// the error kind. Never empty, one line; it leaves out request ids and keys,
/// so the same fault reads the same.
fn service_reason(e: &opendal::Error) -> String {
    let m = e.message();
    let code = m
        .split_once("code: \"")
        .or_else(|| m.split_once("<Code>"))
        .and_then(|(_, rest)| rest.split_once(['"', '<']))
        .map(|(code, _)| code.trim().to_string())
        .filter(|c| !c.is_empty());
    if let Some(code) = code {
        return code;
    }
    let m = one_line(m);
    if !m.is_empty() {
        return m;
    }
    match http_status(e) {
        Some(status) => format!("HTTP {status}, {}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// The HTTP status opendal recorded in the error's context, if any.
fn http_status(e: &opendal::Error) -> Option<u16> {
    let s = e.to_string();
    let (_, rest) = s.split_once("status: ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn one_line(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 300 {
        let mut t: String = s.chars().take(300).collect();
        t.push('…');
        t
    } else {
        s
    }
}

/// Turns a blob error at `step` into a one-line probe error.
fn classify(backend: &Backend, step: Step, err: BlobError) -> ProbeError {
    let store = backend.to_string();
    let mk = |detail: String, fix: String| ProbeError {
        store: store.clone(),
        detail,
        fix,
    };
    let bucket = match backend {
        Backend::S3(o) => o.bucket.clone(),
        Backend::Gcs(o) => o.bucket.clone(),
        Backend::Azblob(o) => o.container.clone(),
        _ => String::new(),
    };
    let cannot = |why: &str| {
        format!(
            "cannot {} under {}: {}",
            step.verb(),
            backend.endpoint(),
            one_line(why)
        )
    };
    let e = match err {
        BlobError::Backend(e) => e,
        BlobError::Io(e) => {
            return mk(
                cannot(&e.to_string()),
                "setting `blob-store` (or `data-dir`): a writable directory".into(),
            );
        }
        e @ BlobError::ShortRead { .. } => {
            return mk(
                cannot(&e.to_string()),
                "the store answered with fewer bytes than it holds: check its health".into(),
            );
        }
        BlobError::NotFound(_) if matches!(step, Step::Open | Step::Write) => {
            // A create-only write has nothing to find: a not-found is the
            // bucket or container, or a wrong path in the endpoint.
            let what = if matches!(backend, Backend::Azblob(_)) {
                "container"
            } else {
                "bucket"
            };
            let hint = match backend {
                Backend::Azblob(_) => {
                    " (a path-style endpoint such as Azurite's ends with the account: \
                     http://127.0.0.1:10000/ACCOUNT)"
                }
                _ => "",
            };
            return mk(
                format!(
                    "{what} `{bucket}` or the endpoint was not found: {} answered not-found to \
                     the first write",
                    backend.endpoint()
                ),
                format!(
                    "setting `blob-store` ({what} name; create the {what} if it is missing) or \
                     `{}`{hint}",
                    backend.endpoint_setting()
                ),
            );
        }
        BlobError::NotFound(key) => {
            return mk(
                format!("{key} vanished during the probe"),
                "setting `blob-store`: is another process deleting objects under this prefix?"
                    .into(),
            );
        }
        BlobError::AlreadyExists(key) => {
            return mk(
                format!("{key} already exists (probe keys are unique)"),
                "setting `blob-store`".into(),
            );
        }
    };
    let msg = e.to_string();
    let missing_container = msg.contains("NoSuchBucket")
        || msg.contains("ContainerNotFound")
        || msg.contains("bucket does not exist");
    if missing_container {
        let what = if matches!(backend, Backend::Azblob(_)) {
            "container"
        } else {
            "bucket"
        };
        return mk(
            format!("{what} `{bucket}` does not exist at {}", backend.endpoint()),
            format!("setting `blob-store`, or create the {what}"),
        );
    }
    if matches!(backend, Backend::Azblob(_)) && msg.contains("account_key") {
        // opendal refuses a key that is not base64 before any request.
        return mk(
            format!("the Azure shared key is unusable: {}", service_reason(&e)),
            "credentials: AZURE_STORAGE_ACCOUNT_KEY must be the storage account's base64 \
             access key (or use AZURE_STORAGE_SAS_TOKEN)"
                .into(),
        );
    }
    let reason = service_reason(&e);
    let plain = format!("{} {}", e.message(), root_cause(&e));
    // Azure answers a key that does not match the account with
    // AuthenticationFailed (Azurite: AuthorizationFailure): name the
    // account setting as well as the credential.
    if let Backend::Azblob(o) = backend
        && matches!(
            reason.as_str(),
            "AuthenticationFailed" | "AuthorizationFailure"
        )
    {
        return mk(
            format!("access denied on {} ({reason})", step.verb()),
            format!(
                "credentials: AZURE_STORAGE_ACCOUNT_KEY (or AZURE_STORAGE_SAS_TOKEN) must be \
                 valid for the account `{}` (setting `azblob-account`) and allow {}",
                o.account.as_deref().unwrap_or("named by the credential"),
                step.permission(backend)
            ),
        );
    }
    match e.kind() {
        ErrorKind::PermissionDenied => mk(
            format!("access denied on {} ({reason})", step.verb()),
            format!(
                "credentials: {} must be present, valid, and allow {}",
                backend.credential_sources(),
                step.permission(backend)
            ),
        ),
        ErrorKind::ConfigInvalid => mk(
            reason,
            format!("setting `blob-store` / `{}`", backend.endpoint_setting()),
        ),
        // The message and the cause only: the context holds response
        // headers, where words like "timeout" (keep-alive) appear on answers.
        _ if plain.contains("send http request") || plain.contains("timeout") => mk(
            format!("cannot reach {}: {}", backend.endpoint(), root_cause(&e)),
            format!(
                "setting `{}` (is the service up and reachable?)",
                backend.endpoint_setting()
            ),
        ),
        _ if plain.contains("credential") || plain.contains("token") => mk(
            format!("cannot load credentials: {}", root_cause(&e)),
            match backend {
                // A custom endpoint without credentials is most often an
                // emulator.
                Backend::Gcs(o) if o.endpoint.is_some() && !o.unsigned => format!(
                    "credentials: {}; for an emulator, STORAGE_EMULATOR_HOST or setting \
                     `gcs-unsigned`",
                    backend.credential_sources()
                ),
                _ => format!("credentials: {}", backend.credential_sources()),
            },
        ),
        _ => mk(
            format!("{} failed: {reason}", step.verb()),
            format!("setting `blob-store` / `{}`", backend.endpoint_setting()),
        ),
    }
}

/// Probes the store described by `cfg` with a short deadline and one retry,
/// so that a misconfiguration fails in seconds, not after minutes of backoff.
pub async fn check(cfg: &BlobConfig) -> Result<ProbeReport, ProbeError> {
    let quick = BlobConfig {
        timeout: cfg.timeout.min(Duration::from_secs(15)),
        retries: cfg.retries.min(1),
        chunk_cache_bytes: 0,
        ..cfg.clone()
    };
    let store = BlobStore::open(&quick).map_err(|e| classify(&cfg.backend, Step::Open, e))?;
    probe(&store).await
}

/// Runs the probe against an opened store.
pub async fn probe(store: &BlobStore) -> Result<ProbeReport, ProbeError> {
    let started = Instant::now();
    let backend = store.backend().clone();
    let fail = |step: Step| {
        let backend = backend.clone();
        move |e: BlobError| classify(&backend, step, e)
    };
    let invariant = |detail: String| ProbeError {
        store: backend.to_string(),
        detail,
        fix: format!(
            "setting `blob-store` / `{}`: this service does not behave like object storage",
            backend.endpoint_setting()
        ),
    };
    let id = ulid::Ulid::new().to_string().to_ascii_lowercase();
    let key = format!("{PROBE_PREFIX}{id}");
    let body = Bytes::from(format!("eden-cas probe {id}\n"));

    match store
        .put_new(&key, body.clone())
        .await
        .map_err(fail(Step::Write))?
    {
        PutOutcome::Created => {}
        PutOutcome::AlreadyPresent => {
            return Err(invariant(format!(
                "fresh probe key {key} reported as existing"
            )));
        }
    }
    // The range is read before the overwrite attempt, from bytes known to
    // be there: a service that ignores the condition replaces the object
    // with a shorter one.
    let range = store
        .read_range(&key, 6, 8)
        .await
        .map_err(fail(Step::Read))?;
    if body.get(6..14) != Some(&range[..]) {
        return Err(invariant("ranged read returned the wrong bytes".into()));
    }
    let overwrite = Bytes::from_static(b"overwritten\n");
    let conditional_writes = match store
        .put_new(&key, overwrite.clone())
        .await
        .map_err(fail(Step::Write))?
    {
        PutOutcome::AlreadyPresent => true,
        PutOutcome::Created => false,
    };
    let size = store.size(&key).await.map_err(fail(Step::Stat))?;
    let back = store.read(&key).await.map_err(fail(Step::Read))?;
    let expected = if conditional_writes {
        &body
    } else {
        &overwrite
    };
    if back != *expected || size != expected.len() as u64 {
        return Err(invariant(if conditional_writes {
            format!("{key} changed after a refused overwrite")
        } else {
            format!("{key} does not hold the bytes of the overwrite the service accepted")
        }));
    }
    if !conditional_writes {
        tracing::warn!(
            store = %backend,
            "blob store ignores create-only writes (If-None-Match / ifGenerationMatch=0): an \
             existing object was overwritten by the probe. Packs use unique ULID keys and \
             manifests are content-addressed, so eden-cas never writes a colliding key with \
             different bytes, but the service cannot enforce it (fine for an emulator, not \
             for production)"
        );
    }
    match store.read(&format!("{key}.absent")).await {
        Err(BlobError::NotFound(_)) => {}
        Ok(_) => {
            return Err(invariant(
                "a key never written reads back as present".into(),
            ));
        }
        Err(e) => return Err(fail(Step::Read)(e)),
    }
    let delete_allowed = match store.delete(&key).await {
        Ok(()) => true,
        Err(BlobError::Backend(e)) if e.kind() == ErrorKind::PermissionDenied => {
            tracing::warn!(
                store = %backend,
                "blob store: delete is not allowed; garbage collection will not be able to \
                 reclaim space (grant {})",
                Step::Delete.permission(&backend)
            );
            false
        }
        Err(e) => return Err(fail(Step::Delete)(e)),
    };
    let report = ProbeReport {
        store: backend.to_string(),
        conditional_writes,
        delete_allowed,
        elapsed: started.elapsed(),
    };
    tracing::info!(
        store = %report.store,
        endpoint = %backend.endpoint(),
        conditional_writes,
        delete_allowed,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "blob store probe passed"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::backend::{AzblobOptions, GcsOptions};

    fn gcs() -> Backend {
        Backend::Gcs(GcsOptions {
            bucket: "eden".into(),
            prefix: "p".into(),
            endpoint: Some("http://127.0.0.1:9023".into()),
            storage_class: None,
            unsigned: true,
        })
    }

    fn azblob() -> Backend {
        Backend::Azblob(AzblobOptions {
            container: "eden".into(),
            prefix: String::new(),
            endpoint: "http://127.0.0.1:10000/edenacct".into(),
            account: Some("edenacct".into()),
        })
    }

    #[test]
    fn every_failure_has_a_reason() {
        let e = opendal::Error::new(ErrorKind::Unexpected, "");
        let err = classify(&gcs(), Step::Write, BlobError::Backend(e)).to_string();
        assert!(err.contains("write failed: Unexpected"), "{err}");
        assert!(!err.contains("failed: ("), "{err}");
        let e = opendal::Error::new(ErrorKind::Unexpected, "  \n ");
        let err = classify(&gcs(), Step::Read, BlobError::Backend(e)).to_string();
        assert!(err.contains("read failed: Unexpected"), "{err}");
    }

    #[test]
    fn a_not_found_first_write_names_bucket_and_endpoint() {
        let err = classify(&gcs(), Step::Write, BlobError::NotFound("k".into())).to_string();
        assert!(
            err.contains("bucket `eden` or the endpoint was not found")
                && err.contains("setting `blob-store`")
                && err.contains("`gcs-endpoint`"),
            "{err}"
        );
        assert!(!err.contains("vanished"), "{err}");
        let err = classify(&azblob(), Step::Write, BlobError::NotFound("k".into())).to_string();
        assert!(
            err.contains("container `eden` or the endpoint was not found")
                && err.contains("`azblob-endpoint`")
                && err.contains("ends with the account"),
            "{err}"
        );
        // After a successful write, a not-found is a vanished object.
        let err = classify(&gcs(), Step::Stat, BlobError::NotFound("k".into())).to_string();
        assert!(err.contains("vanished"), "{err}");
    }

    #[test]
    fn a_bad_azure_key_names_the_credential() {
        let e = opendal::Error::new(
            ErrorKind::ConfigInvalid,
            "invalid account_key: cannot decode as base64: Invalid byte 33, offset 3.",
        );
        let err = classify(&azblob(), Step::Open, BlobError::Backend(e)).to_string();
        assert!(err.contains("AZURE_STORAGE_ACCOUNT_KEY"), "{err}");
        assert!(!err.contains("azblob-endpoint"), "{err}");
    }

    #[tokio::test]
    async fn memory_and_fs_pass() {
        let r = probe(&BlobStore::memory().unwrap()).await.unwrap();
        assert!(r.conditional_writes && r.delete_allowed);
        let dir = tempfile::tempdir().unwrap();
        let r = check(&BlobConfig::new(Backend::Fs {
            root: dir.path().join("blobs"),
        }))
        .await
        .unwrap();
        assert!(r.conditional_writes);
    }
}
