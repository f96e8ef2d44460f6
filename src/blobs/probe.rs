//! The startup probe: before serving (and in `eden-cas check-config`), prove
//! that the blob store works the way the engine relies on, and turn any
//! failure into one line naming the setting (or environment) to fix.
//!
//! Under `_eden_cas_probe/` it writes a small object create-only, tries to
//! overwrite it (which must be refused: invariant 5), stats it, reads a range
//! of it, reads a key that does not exist (which must be a not-found, not an
//! error), and deletes it. A missing bucket, refused credentials, an
//! unreachable endpoint or a missing permission each fail here, at startup,
//! rather than on the first deposit.

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
    Write,
    Read,
    Stat,
    Delete,
}

impl Step {
    fn verb(self) -> &'static str {
        match self {
            Step::Write => "write",
            Step::Read => "read",
            Step::Stat => "stat",
            Step::Delete => "delete",
        }
    }

    fn permission(self, backend: &Backend) -> &'static str {
        match (backend, self) {
            (Backend::S3(_), Step::Write) => "s3:PutObject",
            (Backend::S3(_), Step::Read | Step::Stat) => "s3:GetObject",
            (Backend::S3(_), Step::Delete) => "s3:DeleteObject",
            (Backend::Gcs(_), Step::Write) => "storage.objects.create",
            (Backend::Gcs(_), Step::Read | Step::Stat) => "storage.objects.get",
            (Backend::Gcs(_), Step::Delete) => "storage.objects.delete",
            (Backend::Azblob(_), Step::Write) => "Microsoft.Storage/.../blobs/write",
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
/// when the message carries one, else the message; one line either way. It
/// leaves out request ids and keys, so the same fault reads the same.
fn service_reason(e: &opendal::Error) -> String {
    let m = e.message();
    m.split_once("code: \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(code, _)| code.to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| one_line(m))
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
    let e = match err {
        BlobError::Backend(e) => e,
        BlobError::Io(e) => {
            return mk(
                format!(
                    "cannot {} under {}: {}",
                    step.verb(),
                    backend.endpoint(),
                    one_line(&e.to_string())
                ),
                "setting `blob-store` (or `data-dir`): a writable directory".into(),
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
    match e.kind() {
        ErrorKind::PermissionDenied => mk(
            format!("access denied on {} ({})", step.verb(), service_reason(&e)),
            format!(
                "credentials: {} must be present, valid, and allow {}",
                backend.credential_sources(),
                step.permission(backend)
            ),
        ),
        ErrorKind::ConfigInvalid => mk(
            service_reason(&e),
            format!("setting `blob-store` / `{}`", backend.endpoint_setting()),
        ),
        _ if msg.contains("send http request") || msg.contains("timeout") => mk(
            format!("cannot reach {}: {}", backend.endpoint(), root_cause(&e)),
            format!(
                "setting `{}` (is the service up and reachable?)",
                backend.endpoint_setting()
            ),
        ),
        _ if msg.contains("credential") || msg.contains("token") => mk(
            format!("cannot load credentials: {}", root_cause(&e)),
            format!("credentials: {}", backend.credential_sources()),
        ),
        _ => mk(
            format!("{} failed: {}", step.verb(), service_reason(&e)),
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
    let store = BlobStore::open(&quick).map_err(|e| classify(&cfg.backend, Step::Write, e))?;
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
    let conditional_writes = match store
        .put_new(&key, Bytes::from_static(b"overwritten\n"))
        .await
        .map_err(fail(Step::Write))?
    {
        PutOutcome::AlreadyPresent => true,
        PutOutcome::Created => false,
    };
    let size = store.size(&key).await.map_err(fail(Step::Stat))?;
    let back = store.read(&key).await.map_err(fail(Step::Read))?;
    if conditional_writes && (back != body || size != body.len() as u64) {
        return Err(invariant(format!(
            "{key} changed after a refused overwrite"
        )));
    }
    if !conditional_writes {
        tracing::warn!(
            store = %backend,
            "blob store ignores create-only writes (If-None-Match): an existing object was \
             overwritten by the probe. Packs use unique ULID keys and manifests are \
             content-addressed, so eden-cas never writes a colliding key with different bytes, \
             but the service cannot enforce it"
        );
    }
    let range = store
        .read_range(&key, 6, 8)
        .await
        .map_err(fail(Step::Read))?;
    if range[..] != back[6..14] {
        return Err(invariant("ranged read returned the wrong bytes".into()));
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
