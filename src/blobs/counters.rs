//! Per-kind request counters of a blob store, and the model that turns one
//! finished object write into the requests the service saw (which differs
//! per service: S3 multipart, GCS resumable uploads, Azure block lists).

use std::sync::atomic::{AtomicU64, Ordering};

use super::Backend;

/// Requests issued to the backend, by kind, since the store was opened.
///
/// Reads, stats, lists and deletes are counted one per opendal call (each is
/// one HTTP request on object stores). Writes are counted as the service
/// sees them (see [`WriteModel`]): on S3 an object of one part is one PUT, a
/// larger one a PUT per part plus two POSTs (initiate, complete); on GCS a
/// POST opening a resumable upload plus a PUT per 8 MiB; on Azure one PUT,
/// or a PUT per block plus one for the block list. On fs and memory each
/// object counts as one PUT.
#[derive(Debug, Default)]
pub struct BlobCounters {
    /// Reads (one ranged GET each).
    pub get: AtomicU64,
    /// Metadata reads (HEAD).
    pub head: AtomicU64,
    /// Object PUTs, multipart parts, resumable-upload chunks, Azure blocks
    /// and block lists.
    pub put: AtomicU64,
    /// Multipart initiations and completions (S3), resumable-upload
    /// sessions (GCS).
    pub post: AtomicU64,
    /// List calls.
    pub list: AtomicU64,
    /// Deletes (and aborts of multipart uploads or resumable sessions).
    pub delete: AtomicU64,
    /// Retries of transient failures (each one more request).
    pub retries: AtomicU64,
    /// Bytes read from the backend.
    pub bytes_read: AtomicU64,
    /// Bytes written to the backend.
    pub bytes_written: AtomicU64,
}

/// A copy of [`BlobCounters`] at one instant.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestCounts {
    /// See [`BlobCounters::get`].
    pub get: u64,
    /// See [`BlobCounters::head`].
    pub head: u64,
    /// See [`BlobCounters::put`].
    pub put: u64,
    /// See [`BlobCounters::post`].
    pub post: u64,
    /// See [`BlobCounters::list`].
    pub list: u64,
    /// See [`BlobCounters::delete`].
    pub delete: u64,
    /// See [`BlobCounters::retries`].
    pub retries: u64,
    /// See [`BlobCounters::bytes_read`].
    pub bytes_read: u64,
    /// See [`BlobCounters::bytes_written`].
    pub bytes_written: u64,
}

impl RequestCounts {
    /// Difference `self - earlier`, per field.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            get: self.get - earlier.get,
            head: self.head - earlier.head,
            put: self.put - earlier.put,
            post: self.post - earlier.post,
            list: self.list - earlier.list,
            delete: self.delete - earlier.delete,
            retries: self.retries - earlier.retries,
            bytes_read: self.bytes_read - earlier.bytes_read,
            bytes_written: self.bytes_written - earlier.bytes_written,
        }
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.get + self.head + self.put + self.post + self.list + self.delete + self.retries
    }
}

impl BlobCounters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// A snapshot.
    pub fn snapshot(&self) -> RequestCounts {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RequestCounts {
            get: l(&self.get),
            head: l(&self.head),
            put: l(&self.put),
            post: l(&self.post),
            list: l(&self.list),
            delete: l(&self.delete),
            retries: l(&self.retries),
            bytes_read: l(&self.bytes_read),
            bytes_written: l(&self.bytes_written),
        }
    }
}

/// Bytes per request of a GCS resumable upload as opendal 0.59 sends it:
/// one chunk at a time, in order, whatever `blob-part-bytes` says.
pub const GCS_RESUMABLE_CHUNK_BYTES: u64 = 8 << 20;

/// How one finished object write turns into requests on the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteModel {
    /// fs, memory: one write per object, counted as one PUT.
    Local,
    /// S3: one `PutObject` up to a part; above, `CreateMultipartUpload`
    /// (POST), one `UploadPart` (PUT) per part, `CompleteMultipartUpload`
    /// (POST).
    S3 {
        /// Part size.
        part: u64,
    },
    /// GCS: create-only writes (`ifGenerationMatch=0`) go through a
    /// resumable upload: one POST opens the session, then one PUT per
    /// 8 MiB chunk, sequentially (the last PUT finalises the object).
    GcsResumable,
    /// Azure: one `Put Blob` up to a part; above, one `Put Block` per part
    /// and a `Put Block List`, all PUTs.
    AzureBlocks {
        /// Part (block) size.
        part: u64,
    },
}

impl WriteModel {
    /// The model of `backend` with parts of `part_bytes`.
    pub(crate) fn for_backend(backend: &Backend, part_bytes: u64) -> WriteModel {
        match backend {
            Backend::Fs { .. } | Backend::Memory => WriteModel::Local,
            Backend::S3(_) => WriteModel::S3 { part: part_bytes },
            Backend::Gcs(_) => WriteModel::GcsResumable,
            Backend::Azblob(_) => WriteModel::AzureBlocks { part: part_bytes },
        }
    }

    /// `(puts, posts)` of one object of `written` bytes.
    pub(crate) fn requests(self, written: u64) -> (u64, u64) {
        match self {
            WriteModel::Local => (1, 0),
            WriteModel::S3 { part } if written > part => (written.div_ceil(part), 2),
            WriteModel::S3 { .. } => (1, 0),
            WriteModel::GcsResumable => (written.div_ceil(GCS_RESUMABLE_CHUNK_BYTES).max(1), 1),
            WriteModel::AzureBlocks { part } if written > part => (written.div_ceil(part) + 1, 0),
            WriteModel::AzureBlocks { .. } => (1, 0),
        }
    }

    /// Requests an abort sends after `written` bytes: S3 aborts a started
    /// multipart upload, GCS cancels a started session (both a DELETE);
    /// Azure's uncommitted blocks expire on their own.
    pub(crate) fn abort_requests(self, written: u64) -> u64 {
        match self {
            WriteModel::S3 { part } => u64::from(written > part),
            WriteModel::GcsResumable => u64::from(written > GCS_RESUMABLE_CHUNK_BYTES),
            WriteModel::Local | WriteModel::AzureBlocks { .. } => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_models() {
        let mib = 1u64 << 20;
        assert_eq!(WriteModel::Local.requests(100 * mib), (1, 0));
        let s3 = WriteModel::S3 { part: 24 * mib };
        assert_eq!(s3.requests(24 * mib), (1, 0));
        assert_eq!(s3.requests(68 * mib), (3, 2));
        let gcs = WriteModel::GcsResumable;
        assert_eq!(gcs.requests(0), (1, 1));
        assert_eq!(gcs.requests(8 * mib), (1, 1));
        assert_eq!(gcs.requests(68 * mib), (9, 1));
        let az = WriteModel::AzureBlocks { part: 24 * mib };
        assert_eq!(az.requests(1), (1, 0));
        assert_eq!(az.requests(68 * mib), (4, 0));
        assert_eq!(s3.abort_requests(25 * mib), 1);
        assert_eq!(az.abort_requests(100 * mib), 0);
    }
}
