//! Group commit of small deposits: concurrent deposits whose new chunks
//! and manifest are small share one pack object, one manifest bundle
//! object and one synced metadata batch.
//!
//! The classic leader/follower scheme, without a timer: a deposit ready to
//! commit queues itself; if no commit is running, one starts at once (so a
//! deposit alone waits for nothing but its own commit); a commit takes
//! everything queued, up to [`MAX_GROUP_DEPOSITS`] and
//! [`MAX_GROUP_BYTES`], and the deposits that arrive while it runs form
//! the next group. The commit runs on its own task, so a client that goes
//! away does not abandon the deposits queued behind it.
//!
//! Durability (invariant 3), per group:
//! 1. the staged chunks of every deposit go into one pack, written
//!    create-only and made durable;
//! 2. the manifests not stored yet go into one manifest bundle, written
//!    create-only and made durable;
//! 3. one synced batch indexes the pack's chunks, records the pack, and
//!    records every manifest (with its bundle row) and every artifact.
//!
//! Each deposit is answered only after step 3, so it is durable before its
//! 201. A failure at any step fails every deposit of the group with the
//! same error and records nothing: the batch is atomic, and a pack or a
//! bundle no batch names is garbage for GC. Both objects are registered
//! with the pins as written-in-progress from before they exist until the
//! batch is committed, so GC never takes them for crash leftovers; the
//! chunks, segments and manifests of queued deposits stay pinned by their
//! deposits (`PreparedContent::pins`) until they are answered.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::PackSink;
use super::sink::SealedPack;
use crate::auth::ExperimentId;
use crate::blobs::keys;
use crate::engine::manifest_object::{BUNDLE_MAGIC, encode_manifest_object};
use crate::engine::{Engine, EngineError, blocking};
use crate::hash::Digest;
use crate::ids::{ArtifactId, PackId};
use crate::meta::records::{ArtifactRecord, ChunkLocation, Manifest, PackRecord};
use crate::pack::{PackBuilder, PackEntry};

/// A deposit is committed in a group when its new chunks take at most this
/// many stored bytes (and no pack part was written yet)…
pub(crate) const SMALL_DEPOSIT_BYTES: u64 = 256 << 10;
/// … and its manifest lists at most this many chunks (one segment).
pub(crate) const SMALL_MANIFEST_CHUNKS: u64 = 256;
/// Most deposits one group commit takes.
pub(crate) const MAX_GROUP_DEPOSITS: usize = 256;
/// Most staged chunk bytes one group commit takes (at least one deposit).
pub(crate) const MAX_GROUP_BYTES: u64 = 16 << 20;

/// The new chunks of a small deposit, stored (encoded) but not written yet.
#[derive(Debug)]
pub(crate) struct Staged {
    /// The deposit's pack bytes as its builder laid them out (the pack
    /// header first; entry offsets point into these bytes).
    pub bytes: Bytes,
    /// Its chunks.
    pub entries: Vec<PackEntry>,
}

impl Staged {
    /// Takes a builder's content (which must not have handed out any part).
    pub(crate) fn from_builder(mut builder: PackBuilder) -> Self {
        let entries = builder.entries().to_vec();
        // Copied out: the builder's buffer is sized for a large pack.
        let bytes = Bytes::copy_from_slice(&builder.take_pending());
        Staged { bytes, entries }
    }

    /// Stored chunk bytes.
    fn chunk_bytes(&self) -> u64 {
        self.entries.iter().map(|e| u64::from(e.stored_len)).sum()
    }
}

/// One deposit ready to commit: everything the group's batch records.
pub(crate) struct GroupItem {
    /// Its new chunks.
    pub staged: Arc<Staged>,
    /// Manifest id and manifest.
    pub manifest_id: Digest,
    pub manifest: Manifest,
    /// The manifest's blob-store object, whole.
    pub manifest_object: Bytes,
    /// Where the artifact is recorded.
    pub experiment: ExperimentId,
    pub id: ArtifactId,
    pub record: ArtifactRecord,
}

impl GroupItem {
    /// A deposit's item: its manifest object is encoded here, on the
    /// deposit's own blocking thread, so the group's commit only
    /// concatenates.
    ///
    /// # Errors
    /// As `encode_manifest_object`.
    pub(crate) async fn prepare(
        engine: &Arc<Engine>,
        staged: Arc<Staged>,
        manifest_id: Digest,
        manifest: Manifest,
        experiment: ExperimentId,
        id: ArtifactId,
        record: ArtifactRecord,
    ) -> Result<Self, EngineError> {
        let meta = engine.meta.clone();
        let (manifest, object) = blocking(move || {
            let object = encode_manifest_object(&meta, &manifest)?;
            Ok((manifest, object))
        })
        .await?;
        Ok(GroupItem {
            staged,
            manifest_id,
            manifest,
            manifest_object: Bytes::from(object),
            experiment,
            id,
            record,
        })
    }
}

struct Pending {
    item: GroupItem,
    done: oneshot::Sender<Result<(), EngineError>>,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Pending>,
    running: bool,
    /// Tests hold commits to build a group of a known size.
    held: bool,
}

/// The group committer; one per engine.
#[derive(Default)]
pub(crate) struct GroupCommitter {
    queue: Mutex<Queue>,
}

impl GroupCommitter {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deposits waiting for a commit (tests).
    pub(crate) fn queued(&self) -> usize {
        self.lock().items.len()
    }

    /// Holds (or releases) commits: while held, deposits queue up.
    pub(crate) fn hold(engine: &Arc<Engine>, held: bool) {
        let start = {
            let mut q = engine.group.lock();
            q.held = held;
            let start = !held && !q.running && !q.items.is_empty();
            q.running |= start;
            start
        };
        if start {
            tokio::spawn(run(Arc::clone(engine)));
        }
    }
}

/// Queues `item` and waits until its group is committed.
///
/// # Errors
/// The group's failure, shared by every deposit of the group: a blob or
/// metadata failure becomes [`EngineError::Internal`] naming it,
/// [`EngineError::LeaseLost`] stays itself.
pub(crate) async fn submit(engine: &Arc<Engine>, item: GroupItem) -> Result<(), EngineError> {
    let (done, answer) = oneshot::channel();
    let start = {
        let mut q = engine.group.lock();
        q.items.push_back(Pending { item, done });
        let start = !q.running && !q.held;
        q.running |= start;
        start
    };
    if start {
        tokio::spawn(run(Arc::clone(engine)));
    }
    answer.await.map_err(|_| {
        EngineError::Internal("the group commit ended without answering this deposit".into())
    })?
}

/// Clears `running` if the committing task panics, dropping what is
/// queued, so those deposits are answered with an error rather than left
/// waiting, and the next deposit starts a fresh committer.
struct OnPanic<'a>(&'a GroupCommitter);

impl Drop for OnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut q = self.0.lock();
            q.running = false;
            q.items.clear();
        }
    }
}

/// Commits groups until the queue is empty (or held).
async fn run(engine: Arc<Engine>) {
    let _on_panic = OnPanic(&engine.group);
    loop {
        let group = {
            let mut q = engine.group.lock();
            if q.items.is_empty() || q.held {
                q.running = false;
                return;
            }
            take_group(&mut q.items)
        };
        let items: Vec<&GroupItem> = group.iter().map(|p| &p.item).collect();
        let res = commit_group(&engine, &items).await;
        let n = group.len();
        match res {
            Ok(()) => {
                for p in group {
                    let _ = p.done.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(deposits = n, error = %e, "group commit failed");
                for p in group {
                    let _ = p.done.send(Err(shared_error(&e, n)));
                }
            }
        }
    }
}

/// The next group: the oldest deposits, within the bounds (at least one).
fn take_group(items: &mut VecDeque<Pending>) -> Vec<Pending> {
    let mut group = Vec::new();
    let mut bytes = 0u64;
    while let Some(next) = items.front() {
        let b = next.item.staged.chunk_bytes();
        if !group.is_empty()
            && (group.len() >= MAX_GROUP_DEPOSITS || bytes.saturating_add(b) > MAX_GROUP_BYTES)
        {
            break;
        }
        bytes += b;
        if let Some(p) = items.pop_front() {
            group.push(p);
        }
    }
    group
}

/// The error every deposit of a failed group is answered with.
fn shared_error(e: &EngineError, n: usize) -> EngineError {
    match e {
        EngineError::LeaseLost(m) => EngineError::LeaseLost(m.clone()),
        _ => EngineError::Internal(format!(
            "group commit of {n} deposits failed, nothing of it was recorded: {e}"
        )),
    }
}

/// Steps 1–3 of the module docs for one group. The pack and the bundle are
/// written concurrently (their durability waits overlap); the batch waits
/// for both.
async fn commit_group(engine: &Arc<Engine>, items: &[&GroupItem]) -> Result<(), EngineError> {
    engine.check_writer()?;
    let builder = group_pack(items)?;
    let (body, in_bundle) = bundle_body(engine, items).await?;
    let bundle = (!in_bundle.is_empty()).then(PackId::mint);
    if let Some(id) = bundle {
        engine.pins.pack_opened(id);
    }
    let mut sink = PackSink::new(Arc::clone(engine));
    let (pack, written) = tokio::join!(write_pack(&mut sink, builder), async {
        match bundle {
            Some(id) => write_bundle(engine, id, body).await,
            None => Ok(()),
        }
    });
    let pack_id = match &pack {
        Ok(Some(p)) => Some(p.id),
        _ => None,
    };
    let result = match (pack, written) {
        (Ok(pack), Ok(())) => record(engine, items, pack.as_ref(), bundle, in_bundle).await,
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    };
    if let Some(id) = pack_id {
        engine.pins.pack_closed(id);
    }
    if let Some(id) = bundle {
        engine.pins.pack_closed(id);
    }
    result
}

/// One pack builder with the staged chunks of every deposit, each distinct
/// chunk once. A frame (consecutive entries sharing one stored run) is
/// copied whole, as it was encoded; it is skipped only when every chunk in
/// it is already in the group's pack.
fn group_pack(items: &[&GroupItem]) -> Result<PackBuilder, EngineError> {
    pack_of(items.iter().map(|i| &*i.staged))
}

/// One pack builder with the chunks of `staged`, each distinct chunk once.
fn pack_of<'a>(staged: impl Iterator<Item = &'a Staged>) -> Result<PackBuilder, EngineError> {
    let mut builder = PackBuilder::new();
    let mut seen = HashSet::new();
    for staged in staged {
        let stored = |e: &PackEntry| {
            let at = e.offset as usize;
            staged
                .bytes
                .get(at..at + e.stored_len as usize)
                .ok_or_else(|| EngineError::Internal("staged chunk out of range".into()))
        };
        let mut i = 0;
        while i < staged.entries.len() {
            let e = staged.entries[i];
            if e.frame.is_none() {
                i += 1;
                if seen.insert(e.id) {
                    builder.add_stored(e.id, stored(&e)?, e.raw_len, e.codec);
                }
                continue;
            }
            let run: Vec<PackEntry> = staged.entries[i..]
                .iter()
                .take_while(|m| m.frame.is_some() && m.offset == e.offset)
                .copied()
                .collect();
            i += run.len();
            let fresh = run.iter().filter(|m| seen.insert(m.id)).count();
            if fresh == 0 {
                continue;
            }
            let members: Vec<_> = run
                .iter()
                .filter_map(|m| m.frame.map(|slot| (m.id, m.raw_len, slot)))
                .collect();
            builder.add_stored_frame(stored(&e)?, e.codec, &members);
        }
    }
    Ok(builder)
}

/// Writes a staged deposit on its own, as a deposit that is not small
/// would have been: its pack (sealed and indexed) and its manifest object.
/// For a small deposit whose commit cannot join a group (one that sets a
/// reference decides it under the reference lock, in its own batch).
///
/// # Errors
/// Blob store and metadata failures; nothing of the deposit is visible.
pub(crate) async fn write_alone(
    engine: &Arc<Engine>,
    staged: &Staged,
    manifest_id: &Digest,
    manifest: &Manifest,
) -> Result<(), EngineError> {
    let builder = pack_of(std::iter::once(staged))?;
    if !builder.is_empty() {
        let mut sink = PackSink::new(Arc::clone(engine));
        sink.seal(builder).await?;
    }
    super::write_manifest_object(engine, manifest_id, manifest).await
}

/// Writes the group's pack and makes it durable (`None`: no new chunk).
/// The pack stays registered as open until the caller closes it.
async fn write_pack(
    sink: &mut PackSink,
    mut builder: PackBuilder,
) -> Result<Option<SealedPack>, EngineError> {
    if builder.is_empty() {
        return Ok(None);
    }
    sink.write_part(builder.take_pending()).await?;
    sink.close(builder).await
}

/// The bundle of the manifests not recorded yet, and their ids. Manifests
/// already recorded have their blob-store copy (written before the batch
/// that recorded them; GC removes the row before the copy), and they are
/// pinned by their deposits, so that stays true.
async fn bundle_body(
    engine: &Arc<Engine>,
    items: &[&GroupItem],
) -> Result<(Bytes, HashSet<Digest>), EngineError> {
    let ids: Vec<Digest> = items.iter().map(|i| i.manifest_id).collect();
    let meta = engine.meta.clone();
    let stored: Vec<bool> = blocking(move || {
        ids.iter()
            .map(|id| Ok(meta.manifest(id)?.is_some()))
            .collect::<Result<_, EngineError>>()
    })
    .await?;
    let mut in_bundle = HashSet::new();
    let mut body = Vec::new();
    body.extend_from_slice(BUNDLE_MAGIC);
    for (item, stored) in items.iter().zip(&stored) {
        if !stored && in_bundle.insert(item.manifest_id) {
            body.extend_from_slice(&item.manifest_object);
        }
    }
    Ok((Bytes::from(body), in_bundle))
}

/// Writes a bundle create-only and makes it durable.
async fn write_bundle(engine: &Arc<Engine>, id: PackId, body: Bytes) -> Result<(), EngineError> {
    let mut w = engine.blobs.create(&keys::manifest_bundle(id)).await?;
    if let Err(e) = w.write(body).await {
        w.abort().await;
        return Err(e.into());
    }
    Ok(w.close().await?)
}

/// Step 3: one synced batch for the whole group.
async fn record(
    engine: &Arc<Engine>,
    items: &[&GroupItem],
    pack: Option<&SealedPack>,
    bundle: Option<PackId>,
    in_bundle: HashSet<Digest>,
) -> Result<(), EngineError> {
    let engine2 = Arc::clone(engine);
    let pack = pack.map(|p| (p.id, p.bytes, p.entries.clone()));
    let rows: Vec<(Digest, Manifest, ExperimentId, ArtifactId, ArtifactRecord)> = items
        .iter()
        .map(|i| {
            (
                i.manifest_id,
                i.manifest.clone(),
                i.experiment,
                i.id,
                i.record.clone(),
            )
        })
        .collect();
    blocking(move || {
        let meta = &engine2.meta;
        let mut b = meta.batch();
        if let Some((id, bytes, entries)) = &pack {
            b.put_pack(
                *id,
                &PackRecord {
                    bytes: *bytes,
                    chunks: entries.len() as u32,
                    raw_bytes: entries.iter().map(|e| u64::from(e.raw_len)).sum(),
                    created_at: crate::clock::Timestamp::now(),
                },
            );
            for e in entries {
                b.put_chunk(&e.id, &ChunkLocation::in_pack(*id, e));
            }
        }
        for (mid, manifest, experiment, id, rec) in &rows {
            b.put_manifest(mid, manifest);
            if let (Some(bundle), true) = (bundle, in_bundle.contains(mid)) {
                b.put_manifest_bundle(mid, bundle);
            }
            b.put_artifact(experiment, id, rec);
        }
        // Indexing takes the index lock, like `sink::index_pack`.
        let _index = engine2.index_lock.lock().unwrap_or_else(|e| e.into_inner());
        b.commit()?;
        Ok(())
    })
    .await
}
