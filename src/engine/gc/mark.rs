//! Phase 1 of a GC run: open the pin window, then collect every live
//! chunk (by fingerprint), segment and manifest. A live artifact whose
//! manifest or segment is missing stops the run: its chunks would look dead.

use std::collections::HashSet;

use super::{GcRun, fp};
use crate::clock::Timestamp;
use crate::engine::{EngineError, Record, blocking};
use crate::hash::Digest;
use crate::meta::Meta;

impl GcRun {
    /// Phase 1: open the pin window, then collect everything live.
    pub(super) async fn mark(&mut self) -> Result<(), EngineError> {
        // References past their own expiry or whose target is gone go
        // first, so the artifacts only they held expire in this run.
        if !self.opts.dry_run {
            self.engine.remove_dead_refs(Timestamp::now()).await?;
        }
        let snapshot = self.engine.pins.open_window();
        let meta = self.engine.meta.clone();
        let now = Timestamp::now();
        let (live, live_ids, expired, alive) = blocking(move || {
            let mut m = Marker {
                meta: &meta,
                live: HashSet::new(),
                ids: HashSet::new(),
            };
            m.live.extend(snapshot.chunks.iter().map(fp));
            for id in &snapshot.sealed {
                // A pinned id is a segment or a manifest; either may not be
                // written yet (then its chunks are still loose pins).
                m.keep_segment(id, false)?;
                if let Some(manifest) = meta.manifest(id)? {
                    for seg in &manifest.segments {
                        m.keep_segment(&seg.id, false)?;
                    }
                }
            }
            // Kept whether written yet or not: a segment pinned before the
            // window and written after it is live too.
            m.ids.extend(snapshot.sealed.iter().copied());
            meta.scan_all_upload_chunks(|c| {
                m.live.insert(fp(&c));
            })?;
            let mut expired = Vec::new();
            let mut manifests = HashSet::new();
            let mut alive = 0u64;
            meta.scan_artifacts(|exp, id, rec| {
                if rec.expired(now) {
                    expired.push((exp, id));
                } else {
                    alive += 1;
                    manifests.insert(rec.manifest);
                }
                true
            })?;
            for id in manifests {
                if !m.ids.insert(id) {
                    continue;
                }
                // A live artifact whose manifest is unreadable would make its
                // chunks look dead: refuse to collect anything.
                let Some(manifest) = meta.manifest(&id)? else {
                    tracing::error!(manifest = %id, "a live artifact's manifest is missing; run `eden-cas fsck` before GC");
                    return Err(EngineError::missing(Record::Manifest(id)));
                };
                for seg in &manifest.segments {
                    m.keep_segment(&seg.id, true)?;
                }
            }
            Ok((m.live, m.ids, expired, alive))
        })
        .await?;
        self.report.chunks_live = live.len() as u64;
        self.report.artifacts_live = alive;
        self.report.artifacts_expired = expired.len() as u64;
        self.live = live;
        self.live_ids = live_ids;
        self.expired = expired;
        Ok(())
    }
}

/// Collects live segments and their chunks.
struct Marker<'a> {
    meta: &'a Meta,
    live: HashSet<u64>,
    ids: HashSet<Digest>,
}

impl Marker<'_> {
    /// Marks a segment and its chunks; a missing segment is an error when
    /// `required` (a live manifest names it), else ignored.
    fn keep_segment(&mut self, id: &Digest, required: bool) -> Result<(), EngineError> {
        if self.ids.contains(id) {
            return Ok(());
        }
        match self.meta.segment(id)? {
            Some(seg) => {
                self.ids.insert(*id);
                self.live.extend(seg.entries.iter().map(|e| fp(&e.id)));
                Ok(())
            }
            None if required => {
                tracing::error!(segment = %id, "a live manifest's segment is missing; run `eden-cas fsck` before GC");
                Err(EngineError::missing(Record::Segment(*id)))
            }
            None => Ok(()),
        }
    }
}
