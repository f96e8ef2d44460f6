//! Metadata backups (`eden-cas backup`, `POST /cas/v1/admin/backup`) and the
//! download half of `eden-cas restore`.
//!
//! A backup is a RocksDB checkpoint — a consistent point-in-time copy of
//! every column family, taken while the store serves — written beside the
//! metadata directory, copied file by file to
//! `backups/<UTC yyyymmddThhmmssZ>/`, and completed by [`BACKUP_INDEX`]
//! (each file's name, size and BLAKE3), written last: a backup without it
//! was interrupted and restore ignores it. Files stream through one buffer
//! of [`PART_BYTES`]; no file is held whole. Every object is create-only
//! (invariant 5), so a backup is never overwritten.
//!
//! Restore refuses to write over existing metadata, checks every file's
//! size and BLAKE3 while writing it into a temporary directory beside the
//! target, marks it as owing a reindex, fsyncs, and renames the directory
//! into place last: a crash leaves either no metadata directory or a
//! complete one that is reindexed when next opened.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Engine, EngineError, blocking, recovery};
use crate::blobs::{BlobStore, PutOutcome, keys};
use crate::hash::Digest;
use crate::meta::Meta;

/// Name of the file that completes a backup.
pub const BACKUP_INDEX: &str = "BACKUP.json";
/// Version of the [`BACKUP_INDEX`] format.
pub const BACKUP_FORMAT: u32 = 1;
/// Bytes moved per blob request.
const PART_BYTES: usize = 8 << 20;
/// Checkpoint directory, beside the metadata directory (same file system,
/// so RocksDB hard-links the SST files instead of copying them).
const CHECKPOINT_DIR: &str = "meta.backup-checkpoint";
/// Directory a restore writes into before renaming it into place.
const RESTORE_DIR: &str = "meta.restoring";

/// One backup at a time per process (each needs its own checkpoint).
static BACKUP_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The contents of [`BACKUP_INDEX`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupIndex {
    /// [`BACKUP_FORMAT`].
    pub format: u32,
    /// Backup name (`yyyymmddThhmmssZ`, UTC; `-N` appended on a collision).
    pub name: String,
    /// RFC 3339 UTC time the checkpoint was taken.
    pub created_at: String,
    /// The checkpoint's files.
    pub files: Vec<BackupFile>,
    /// Sum of the files' sizes.
    pub bytes: u64,
}

/// One file of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFile {
    /// File name inside the metadata directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// BLAKE3 of the contents, 64 lowercase hex characters.
    pub blake3: String,
}

/// What a finished backup answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// Backup name; `eden-cas restore --from <name>` takes it.
    pub name: String,
    /// Files written (not counting [`BACKUP_INDEX`]).
    pub files: u64,
    /// Bytes written (not counting [`BACKUP_INDEX`]).
    pub bytes: u64,
}

/// Backups found in the blob store, by name, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupListing {
    /// Backups with a [`BACKUP_INDEX`].
    pub complete: Vec<String>,
    /// Backups without one (interrupted; restore ignores them).
    pub incomplete: Vec<String>,
}

/// What a restore put in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredBackup {
    /// Backup name.
    pub name: String,
    /// When the backup's checkpoint was taken (RFC 3339 UTC).
    pub created_at: String,
    /// Files restored.
    pub files: u64,
    /// Bytes restored.
    pub bytes: u64,
}

/// Whether `dir` exists and holds at least one entry.
pub fn dir_has_entries(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

fn io_err(path: &Path, e: std::io::Error) -> EngineError {
    EngineError::Internal(format!("{}: {e}", path.display()))
}

fn remove_dir_if_exists(dir: &Path) -> Result<(), EngineError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(dir, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), EngineError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// A file name a backup may carry: one plain path component.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && name != BACKUP_INDEX
}

fn utc_stamp() -> (String, String) {
    let now = time::OffsetDateTime::from_unix_timestamp(crate::clock::Timestamp::now().unix_secs())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let name = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let rfc = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    (
        now.format(&name)
            .unwrap_or_else(|_| "19700101T000000Z".into()),
        now.format(&rfc)
            .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into()),
    )
}

impl Engine {
    /// Writes a consistent RocksDB checkpoint of the metadata to the blob
    /// store under `backups/<name>/`, [`BACKUP_INDEX`] last. Safe while the
    /// server runs; one backup at a time per process.
    ///
    /// # Errors
    /// Blob store and metadata failures; a checkpoint that cannot be written
    /// locally.
    pub async fn backup(&self) -> Result<BackupReport, EngineError> {
        let _one = BACKUP_LOCK.lock().await;
        let (stamp, created_at) = utc_stamp();
        let name = free_backup_name(&self.blobs, &stamp).await?;
        let checkpoint = self
            .meta
            .dir()
            .ok_or(EngineError::Meta(crate::meta::MetaError::Unsupported(
                "metadata backups are RocksDB checkpoints; back up PostgreSQL with its own \
                 tools (pg_dump, base backups) or rebuild with `eden-cas reindex`",
            )))?
            .with_file_name(CHECKPOINT_DIR);
        let (meta, dir) = (self.meta.clone(), checkpoint.clone());
        blocking(move || {
            // A leftover of an interrupted backup: only this process (it
            // holds the RocksDB lock) and only under BACKUP_LOCK writes it.
            remove_dir_if_exists(&dir)?;
            Ok(meta.checkpoint(&dir)?)
        })
        .await?;
        let result = upload_checkpoint(&self.blobs, &name, &created_at, &checkpoint).await;
        let dir = checkpoint.clone();
        if let Err(e) = blocking(move || remove_dir_if_exists(&dir)).await {
            tracing::warn!(dir = %checkpoint.display(), error = %e, "could not remove the backup checkpoint");
        }
        let report = result?;
        tracing::info!(
            backup = %report.name,
            files = report.files,
            bytes = report.bytes,
            "metadata backup written"
        );
        Ok(report)
    }
}

/// `stamp`, or `stamp-N` when a backup of that name already exists.
async fn free_backup_name(blobs: &BlobStore, stamp: &str) -> Result<String, EngineError> {
    for n in 0..100 {
        let name = if n == 0 {
            stamp.to_string()
        } else {
            format!("{stamp}-{n}")
        };
        if blobs.list(&keys::backup_file(&name, "")).await?.is_empty() {
            return Ok(name);
        }
    }
    Err(EngineError::Internal(format!(
        "backup names {stamp}…{stamp}-99 are all taken"
    )))
}

async fn upload_checkpoint(
    blobs: &BlobStore,
    name: &str,
    created_at: &str,
    dir: &Path,
) -> Result<BackupReport, EngineError> {
    let d = dir.to_path_buf();
    let files = blocking(move || {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&d).map_err(|e| io_err(&d, e))? {
            let entry = entry.map_err(|e| io_err(&d, e))?;
            let is_file = entry.file_type().map_err(|e| io_err(&d, e))?.is_file();
            let file = entry.file_name().to_string_lossy().into_owned();
            if !is_file || !is_plain_file_name(&file) {
                return Err(EngineError::Internal(format!(
                    "unexpected entry {file:?} in the checkpoint"
                )));
            }
            names.push(file);
        }
        names.sort();
        Ok(names)
    })
    .await?;
    let mut index = BackupIndex {
        format: BACKUP_FORMAT,
        name: name.to_string(),
        created_at: created_at.to_string(),
        files: Vec::with_capacity(files.len()),
        bytes: 0,
    };
    for file in files {
        let (bytes, hash) =
            upload_file(blobs, &dir.join(&file), &keys::backup_file(name, &file)).await?;
        index.bytes += bytes;
        index.files.push(BackupFile {
            name: file,
            bytes,
            blake3: hash.to_hex(),
        });
    }
    let json = serde_json::to_vec_pretty(&index)
        .map_err(|e| EngineError::Internal(format!("backup index: {e}")))?;
    match blobs
        .put_new(&keys::backup_file(name, BACKUP_INDEX), Bytes::from(json))
        .await?
    {
        PutOutcome::Created => Ok(BackupReport {
            name: name.to_string(),
            files: index.files.len() as u64,
            bytes: index.bytes,
        }),
        PutOutcome::AlreadyPresent => Err(EngineError::Internal(format!(
            "backup {name} was completed by someone else"
        ))),
    }
}

/// Streams one local file to a new object; returns its size and BLAKE3.
async fn upload_file(
    blobs: &BlobStore,
    path: &Path,
    key: &str,
) -> Result<(u64, Digest), EngineError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| io_err(path, e))?;
    let mut writer = blobs.create(key).await?;
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    loop {
        let mut buf = Vec::with_capacity(PART_BYTES);
        let read = (&mut file)
            .take(PART_BYTES as u64)
            .read_to_end(&mut buf)
            .await;
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                writer.abort().await;
                return Err(io_err(path, e));
            }
        };
        if n == 0 {
            break;
        }
        hasher.update(&buf);
        total += n as u64;
        if let Err(e) = writer.write(Bytes::from(buf)).await {
            writer.abort().await;
            return Err(e.into());
        }
    }
    writer.close().await?;
    Ok((total, hasher.finalize().into()))
}

/// The backups in the blob store, oldest first.
///
/// # Errors
/// Blob store failures.
pub async fn list_backups(blobs: &BlobStore) -> Result<BackupListing, EngineError> {
    let mut names: BTreeMap<String, bool> = BTreeMap::new();
    for (key, _) in blobs.list(keys::BACKUPS).await? {
        let Some((name, file)) = key
            .strip_prefix(keys::BACKUPS)
            .and_then(|rest| rest.split_once('/'))
        else {
            continue;
        };
        let complete = names.entry(name.to_string()).or_insert(false);
        *complete |= file == BACKUP_INDEX;
    }
    let mut listing = BackupListing::default();
    for (name, complete) in names {
        if complete {
            listing.complete.push(name);
        } else {
            listing.incomplete.push(name);
        }
    }
    Ok(listing)
}

/// Downloads backup `name` into `meta_dir`, which must be absent or empty:
/// every file is checked against [`BACKUP_INDEX`] (size, BLAKE3) in a
/// temporary directory beside it, which is renamed into place last. The
/// restored metadata carries the reindex-pending marker
/// ([`recovery::REINDEX_PENDING`]): the next opener reindexes before use.
///
/// # Errors
/// [`EngineError::AlreadyExists`] when `meta_dir` holds anything;
/// [`EngineError::BadRequest`] for a malformed name; [`EngineError::Integrity`]
/// ([`crate::engine::IntegrityError::Inconsistent`]) when the index or a
/// file does not match; blob store, metadata and local I/O failures.
pub async fn restore_backup(
    blobs: &BlobStore,
    meta_dir: &Path,
    name: &str,
) -> Result<RestoredBackup, EngineError> {
    if dir_has_entries(meta_dir) {
        return Err(EngineError::AlreadyExists);
    }
    if name.is_empty() || name.contains(['/', '\\', '\0']) {
        return Err(EngineError::BadRequest(format!(
            "{name:?} is not a backup name"
        )));
    }
    let raw = blobs.read(&keys::backup_file(name, BACKUP_INDEX)).await?;
    let index: BackupIndex = serde_json::from_slice(&raw)
        .map_err(|e| EngineError::inconsistent(format!("backup {name}: {BACKUP_INDEX}: {e}")))?;
    let mut seen = HashSet::new();
    if index.format != BACKUP_FORMAT
        || index.name != name
        || index
            .files
            .iter()
            .any(|f| !is_plain_file_name(&f.name) || !seen.insert(f.name.as_str()))
    {
        return Err(EngineError::inconsistent(format!(
            "backup {name}: {BACKUP_INDEX} is not a format-{BACKUP_FORMAT} index of this backup"
        )));
    }
    let tmp = meta_dir.with_file_name(RESTORE_DIR);
    let t = tmp.clone();
    blocking(move || {
        // A leftover of an interrupted restore; never anything else.
        remove_dir_if_exists(&t)?;
        std::fs::create_dir_all(&t).map_err(|e| io_err(&t, e))
    })
    .await?;
    let result = restore_into(blobs, &index, &tmp, meta_dir).await;
    if result.is_err() {
        let t = tmp.clone();
        if let Err(e) = blocking(move || remove_dir_if_exists(&t)).await {
            tracing::warn!(dir = %tmp.display(), error = %e, "could not remove the partial restore");
        }
    }
    result?;
    Ok(RestoredBackup {
        name: index.name,
        created_at: index.created_at,
        files: index.files.len() as u64,
        bytes: index.bytes,
    })
}

async fn restore_into(
    blobs: &BlobStore,
    index: &BackupIndex,
    tmp: &Path,
    meta_dir: &Path,
) -> Result<(), EngineError> {
    for f in &index.files {
        download_file(
            blobs,
            &keys::backup_file(&index.name, &f.name),
            &tmp.join(&f.name),
            f,
        )
        .await?;
    }
    let (tmp, meta_dir): (PathBuf, PathBuf) = (tmp.to_path_buf(), meta_dir.to_path_buf());
    blocking(move || {
        // Packs written after the backup are not in its index, and packs
        // collected since may still be: the restored metadata owes a
        // reindex before anything uses it, even if this process dies now.
        let meta = Meta::open(&tmp)?;
        recovery::mark_reindex_pending(&meta)?;
        meta.flush()?;
        drop(meta);
        sync_dir(&tmp)?;
        // An empty directory may stand where the metadata goes.
        if meta_dir.exists() {
            std::fs::remove_dir(&meta_dir).map_err(|e| io_err(&meta_dir, e))?;
        }
        std::fs::rename(&tmp, &meta_dir).map_err(|e| io_err(&meta_dir, e))?;
        match meta_dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
            _ => Ok(()),
        }
    })
    .await
}

/// Downloads one file, checking its size and BLAKE3, and fsyncs it.
async fn download_file(
    blobs: &BlobStore,
    key: &str,
    path: &Path,
    expected: &BackupFile,
) -> Result<(), EngineError> {
    let size = blobs.size(key).await?;
    if size != expected.bytes {
        return Err(EngineError::inconsistent(format!(
            "{key}: {size} bytes, the backup index says {}",
            expected.bytes
        )));
    }
    let mut out = tokio::fs::File::create(path)
        .await
        .map_err(|e| io_err(path, e))?;
    let mut hasher = blake3::Hasher::new();
    let mut offset = 0u64;
    while offset < size {
        let n = (size - offset).min(PART_BYTES as u64);
        let part = blobs.read_range(key, offset, n).await?;
        hasher.update(&part);
        out.write_all(&part).await.map_err(|e| io_err(path, e))?;
        offset += n;
    }
    out.sync_all().await.map_err(|e| io_err(path, e))?;
    let actual = Digest::from(hasher.finalize()).to_hex();
    if actual != expected.blake3 {
        return Err(EngineError::inconsistent(format!(
            "{key}: BLAKE3 {actual}, the backup index says {}",
            expected.blake3
        )));
    }
    Ok(())
}
