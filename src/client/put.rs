//! `eden-cas put FILE|DIR`: chunk and hash locally, open (or resume) an
//! upload session, ask which chunks the server is missing, upload only
//! those with bounded parallelism, commit, report.
//!
//! Resumability: the session id is saved ([`super::state`]) as soon as the
//! session exists and removed after the commit, so a `put` killed at any
//! point continues where it stopped when run again. Memory is bounded by the
//! chunk list plus `(parallel + 3)` batches of at most
//! the batch size ([`upload::DEFAULT_BATCH_BYTES`] unless `--batch-bytes`).
//!
//! Test hook (documented in `docs/client.md`, for tests only):
//! `EDEN_CAS_TEST_PAUSE_AFTER_BATCHES=N` makes the client print
//! `EDEN_CAS_TEST_PAUSED` on stderr after N acknowledged batches and hang,
//! so a test can `kill -9` it mid-upload.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use indicatif::ProgressBar;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::api::{Api, MAX_MISSING_IDS};
use super::output::{human_bytes, print_json, print_stdout, progress};
use super::scan::{Scan, Source, scan};
use super::state::{StateKey, StateStore};
use super::upload::{self, Batch, DEFAULT_BATCH_BYTES};
use super::wire::{Artifact, chunker_params};
use super::{ClientError, Result, bundle};
use crate::api::v1::SessionRequest;
use crate::chunking::ChunkerParams;
use crate::cli::PutArgs;
use crate::hash::Digest;

/// Environment variable of the test-only pause hook.
pub const TEST_PAUSE_ENV: &str = "EDEN_CAS_TEST_PAUSE_AFTER_BATCHES";
/// Line printed on stderr when the test hook pauses.
pub const TEST_PAUSED_LINE: &str = "EDEN_CAS_TEST_PAUSED";

/// An open upload session.
struct Session {
    id: String,
    chunker: ChunkerParams,
    max_batch_bytes: u64,
    resumed: bool,
    received: HashSet<Digest>,
}

/// What the upload phase did.
#[derive(Default)]
struct Sent {
    chunks: u64,
    raw_bytes: u64,
    batches: u64,
}

/// Runs `put`.
pub async fn run(api: Api, args: &PutArgs) -> Result<()> {
    let started = Instant::now();
    let source = Source::open(&args.path)?;
    let (content_type, filename) = describe(&source, args);

    let bar = progress(source.size_hint(), "hashing");
    let mut scanned = scan_blocking(&source, ChunkerParams::default(), &bar).await?;
    bar.finish_and_clear();
    let hashed_at = Instant::now();

    let key = StateKey {
        experiment: api.experiment().to_string(),
        principal: api.principal().to_string(),
        blake3: scanned.blake3,
        size: scanned.size,
    };
    let store = StateStore::from_env();
    let new = SessionRequest {
        content_type: Some(content_type.clone()),
        filename: filename.clone(),
        expires_in: args.expires_in.clone(),
        size: Some(scanned.size),
    };
    let extra = commit_extras(args)?;
    let session = open_session(&api, &store, &key, &source, &new).await?;
    if session.chunker != scanned.params {
        let bar = progress(Some(scanned.size), "hashing");
        scanned = scan_blocking(&source, session.chunker, &bar).await?;
        bar.finish_and_clear();
    }
    let scanned = Arc::new(scanned);
    let limit = session
        .max_batch_bytes
        .min(args.batch_bytes.unwrap_or(DEFAULT_BATCH_BYTES));
    let min_batch = upload::FRAME_HEADER_BYTES as u64 + u64::from(session.chunker.max_bytes);
    if limit < min_batch {
        let why = format!("a batch limit of {limit} bytes cannot hold one {min_batch}-byte frame");
        return Err(match args.batch_bytes {
            Some(b) if b < min_batch => ClientError::Usage(format!("--batch-bytes: {why}")),
            _ => ClientError::Protocol(why),
        });
    }

    let mut sent = Sent::default();
    let mut committed = None;
    for round in 0..2 {
        let known = if round == 0 {
            &session.received
        } else {
            &HashSet::new()
        };
        let missing = ask_missing(&api, &session.id, &scanned, known).await?;
        let part =
            match send_missing(&api, &session.id, &source, &scanned, missing, limit, args).await {
                Ok(p) => p,
                Err(e) => return Err(give_up_if_refused(&api, &store, &key, &session, e).await),
            };
        sent.chunks += part.chunks;
        sent.raw_bytes += part.raw_bytes;
        sent.batches += part.batches;
        let body = commit_body(&scanned, &content_type, filename.as_deref(), &extra);
        match api.commit(&session.id, body).await {
            Ok(a) => {
                committed = Some(a);
                break;
            }
            // Chunks the session had vanished (e.g. pins lost): send again once.
            Err(e) if e.is_kind("chunks-missing") && round == 0 => continue,
            Err(e) => {
                if e.is_status(404) || e.is_status(410) || e.is_kind("digest-mismatch") {
                    store.remove(&key);
                }
                return Err(give_up_if_refused(&api, &store, &key, &session, e).await);
            }
        }
    }
    let artifact = committed
        .ok_or_else(|| ClientError::Protocol("commit kept reporting missing chunks".into()))?;
    store.remove(&key);
    let uploaded_at = Instant::now();
    report(
        &api,
        args,
        &artifact,
        &scanned,
        &session,
        &sent,
        started,
        hashed_at,
        uploaded_at,
    )
}

/// Content type and filename to record.
fn describe(source: &Source, args: &PutArgs) -> (String, Option<String>) {
    let (default_ct, default_name) = match source {
        Source::File(p) => (
            "application/octet-stream",
            p.file_name().and_then(|n| n.to_str()).map(str::to_string),
        ),
        Source::Bundle(p) => (
            bundle::BUNDLE_CONTENT_TYPE,
            std::fs::canonicalize(p)
                .ok()
                .as_deref()
                .and_then(Path::file_name)
                .and_then(|n| n.to_str())
                .map(|n| format!("{n}.tar")),
        ),
    };
    let ct = args.content_type.clone().unwrap_or(default_ct.into());
    let name = args.filename.clone().or_else(|| {
        // The server accepts visible ASCII only; omit names it would refuse.
        default_name.filter(|n| n.len() <= 255 && n.bytes().all(|b| (0x20..0x7f).contains(&b)))
    });
    (ct, name)
}

async fn scan_blocking(source: &Source, params: ChunkerParams, bar: &ProgressBar) -> Result<Scan> {
    let (source, bar) = (source.clone(), bar.clone());
    tokio::task::spawn_blocking(move || scan(&source, params, &bar))
        .await
        .map_err(|_| ClientError::Local("the hashing task panicked".into()))?
}

/// A 413 (the content can never fit: over the size cap or the session's
/// claim) ends the upload for good: the session is abandoned, so the server
/// releases what it received, and the resume file is removed. Returns `e`.
async fn give_up_if_refused(
    api: &Api,
    store: &StateStore,
    key: &StateKey,
    session: &Session,
    e: ClientError,
) -> ClientError {
    if e.is_status(413) {
        if let Err(why) = api.abandon(&session.id).await {
            eprintln!("eden-cas: warning: the refused upload session was not abandoned: {why}");
        }
        store.remove(key);
    }
    e
}

/// Resumes the saved session for `key` if the server still has it, else opens one.
async fn open_session(
    api: &Api,
    store: &StateStore,
    key: &StateKey,
    source: &Source,
    new: &SessionRequest,
) -> Result<Session> {
    if let Some(saved) = store.load(key) {
        if let Some(status) = api.session(&saved.session_id).await? {
            let received = status
                .received
                .iter()
                .filter_map(|h| h.parse().ok())
                .collect();
            return Ok(Session {
                id: saved.session_id,
                chunker: saved.chunker,
                max_batch_bytes: saved.max_batch_bytes,
                resumed: true,
                received,
            });
        }
        store.remove(key);
    }
    let created = api.create_session(new).await?;
    let chunker = chunker_params(&created.chunker)?;
    let state = StateStore::new_state(
        key,
        api.server(),
        &created.session_id,
        chunker,
        created.max_batch_bytes,
        source.path(),
    );
    if let Err(e) = store.save(key, &state) {
        eprintln!("eden-cas: warning: {e}; this upload cannot be resumed");
    }
    Ok(Session {
        id: created.session_id,
        chunker,
        max_batch_bytes: created.max_batch_bytes,
        resumed: false,
        received: HashSet::new(),
    })
}

/// Unique chunk ids not in `known`, asked in batches; returns the missing set.
async fn ask_missing(
    api: &Api,
    session: &str,
    scanned: &Scan,
    known: &HashSet<Digest>,
) -> Result<HashSet<Digest>> {
    let mut seen = HashSet::with_capacity(scanned.chunks.len());
    let ask: Vec<Digest> = scanned
        .chunks
        .iter()
        .map(|c| c.id)
        .filter(|id| !known.contains(id) && seen.insert(*id))
        .collect();
    let mut missing = HashSet::new();
    for ids in ask.chunks(MAX_MISSING_IDS) {
        missing.extend(api.missing(session, ids).await?);
    }
    Ok(missing)
}

/// Uploads the `missing` chunks: a blocking producer packs batches, at most
/// `args.parallel` of them are in flight.
async fn send_missing(
    api: &Api,
    session: &str,
    source: &Source,
    scanned: &Arc<Scan>,
    missing: HashSet<Digest>,
    limit: u64,
    args: &PutArgs,
) -> Result<Sent> {
    if missing.is_empty() {
        return Ok(Sent::default());
    }
    let mut first = HashSet::new();
    let total: u64 = scanned
        .chunks
        .iter()
        .filter(|c| missing.contains(&c.id) && first.insert(c.id))
        .map(|c| u64::from(c.len))
        .sum();
    let bar = progress(Some(total), "sending");
    bar.set_message(format!(
        "skipped {}",
        human_bytes(scanned.size.saturating_sub(total))
    ));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(2);
    let producer = {
        let (source, scanned) = (source.clone(), Arc::clone(scanned));
        tokio::task::spawn_blocking(move || {
            upload::produce(&source, &scanned.chunks, &missing, limit, |b| {
                tx.blocking_send(b)
                    .map_err(|_| ClientError::Local("upload stopped".into()))
            })
        })
    };
    let pause_after: Option<u64> = std::env::var(TEST_PAUSE_ENV)
        .ok()
        .and_then(|v| v.parse().ok());
    let parallel = usize::from(args.parallel);
    let mut in_flight: JoinSet<Result<(u64, u64)>> = JoinSet::new();
    let mut sent = Sent::default();
    let uploading: Result<()> = async {
        let mut open = true;
        while open || !in_flight.is_empty() {
            tokio::select! {
                next = rx.recv(), if open && in_flight.len() < parallel => match next {
                    Some(batch) => {
                        let (api, session) = (api.clone(), session.to_string());
                        in_flight.spawn(async move {
                            api.put_chunks(&session, batch.body).await?;
                            Ok((batch.chunks, batch.raw_bytes))
                        });
                    }
                    None => open = false,
                },
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    let (chunks, raw) = done
                        .map_err(|_| ClientError::Local("an upload task panicked".into()))??;
                    sent.chunks += chunks;
                    sent.raw_bytes += raw;
                    sent.batches += 1;
                    bar.inc(raw);
                    if pause_after.is_some_and(|n| sent.batches >= n) {
                        eprintln!("{TEST_PAUSED_LINE}");
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    drop(rx);
    in_flight.abort_all();
    let produced = producer
        .await
        .map_err(|_| ClientError::Local("the reading task panicked".into()))?;
    bar.finish_and_clear();
    // An upload error explains a stopped producer, not the other way round.
    uploading?;
    produced?;
    Ok(sent)
}

/// The `labels` and `ref` members of the commit body from `--label`,
/// `--ref`, `--ref-if-match` and `--ref-expires-in`.
fn commit_extras(args: &PutArgs) -> Result<serde_json::Map<String, Value>> {
    let mut extra = serde_json::Map::new();
    if !args.labels.is_empty() {
        let mut labels = serde_json::Map::new();
        for l in &args.labels {
            let (k, v) = crate::naming::parse_label(l)
                .map_err(|why| ClientError::Usage(format!("--label {l:?}: {why}")))?;
            labels.insert(k, Value::from(v));
        }
        extra.insert("labels".into(), Value::Object(labels));
    }
    if let Some(name) = &args.reference {
        let mut r = serde_json::Map::new();
        r.insert("name".into(), Value::from(name.as_str()));
        match args.ref_if_match.as_deref() {
            Some("*") => r.insert("if_match".into(), Value::from("*")),
            Some(id) => r.insert(
                "if_match".into(),
                Value::from(super::parse_artifact_ref(id)?),
            ),
            None => r.insert("if_none_match".into(), Value::from("*")),
        };
        if let Some(d) = &args.ref_expires_in {
            r.insert("expires_in".into(), Value::from(d.as_str()));
        }
        extra.insert("ref".into(), Value::Object(r));
    }
    Ok(extra)
}

/// `{"chunks": [[id, len], …], "blake3": …, "content_type": …, "filename": …}`.
fn commit_body(
    scanned: &Scan,
    content_type: &str,
    filename: Option<&str>,
    extra: &serde_json::Map<String, Value>,
) -> bytes::Bytes {
    let mut out = Vec::with_capacity(scanned.chunks.len() * 80 + 256);
    out.extend_from_slice(b"{\"chunks\":[");
    for (i, c) in scanned.chunks.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(format!("[\"{}\",{}]", c.id, c.len).as_bytes());
    }
    out.extend_from_slice(format!("],\"blake3\":\"blake3:{}\"", scanned.blake3).as_bytes());
    let mut tail = serde_json::Map::new();
    tail.insert("content_type".into(), Value::from(content_type));
    if let Some(f) = filename {
        tail.insert("filename".into(), Value::from(f));
    }
    tail.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (k, v) in tail {
        out.extend_from_slice(format!(",\"{k}\":{v}").as_bytes());
    }
    out.push(b'}');
    out.into()
}

#[allow(clippy::too_many_arguments)]
fn report(
    api: &Api,
    args: &PutArgs,
    artifact: &Artifact,
    scanned: &Scan,
    session: &Session,
    sent: &Sent,
    started: Instant,
    hashed_at: Instant,
    uploaded_at: Instant,
) -> Result<()> {
    let unique: HashSet<Digest> = scanned.chunks.iter().map(|c| c.id).collect();
    let skipped = scanned.size.saturating_sub(sent.raw_bytes);
    let wire = api.bytes_sent();
    let secs = |a: Instant, b: Instant| (b - a).as_secs_f64();
    if args.client.json {
        return print_json(&json!({
            "uri": artifact.uri,
            "id": artifact.id,
            "size_bytes": artifact.size_bytes,
            "digests": artifact.raw["digests"],
            "bytes_sent": wire,
            "chunk_bytes_sent": sent.raw_bytes,
            "bytes_skipped": skipped,
            "chunks": scanned.chunks.len(),
            "unique_chunks": unique.len(),
            "chunks_sent": sent.chunks,
            "batches_sent": sent.batches,
            "resumed": session.resumed,
            "session_id": session.id,
            "dedup": artifact.raw["dedup"],
            "seconds": {
                "total": secs(started, uploaded_at),
                "hash": secs(started, hashed_at),
                "upload_and_commit": secs(hashed_at, uploaded_at),
            },
        }));
    }
    print_stdout(&format!("{}\n", artifact.uri))?;
    let pct = if scanned.size == 0 {
        100.0
    } else {
        skipped as f64 * 100.0 / scanned.size as f64
    };
    eprintln!(
        "stored {} in {:.1} s{}: sent {} on the wire, saved {} ({pct:.1} %)",
        human_bytes(scanned.size),
        secs(started, uploaded_at),
        if session.resumed { " (resumed)" } else { "" },
        human_bytes(wire),
        human_bytes(skipped),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::scan::ChunkRef;

    #[test]
    fn commit_body_is_the_documented_json() {
        let a = Digest::of(b"a");
        let scanned = Scan {
            chunks: vec![
                ChunkRef {
                    id: a,
                    offset: 0,
                    len: 1,
                },
                ChunkRef {
                    id: a,
                    offset: 1,
                    len: 1,
                },
            ],
            size: 2,
            blake3: Digest::of(b"aa"),
            params: ChunkerParams::default(),
        };
        let body = commit_body(
            &scanned,
            "text/plain",
            Some("a \"b\".txt"),
            &serde_json::Map::new(),
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({
                "chunks": [[a.to_hex(), 1], [a.to_hex(), 1]],
                "blake3": format!("blake3:{}", Digest::of(b"aa")),
                "content_type": "text/plain",
                "filename": "a \"b\".txt",
            })
        );
        let empty = Scan {
            chunks: vec![],
            size: 0,
            blake3: Digest::of(b""),
            params: ChunkerParams::default(),
        };
        let v: Value =
            serde_json::from_slice(&commit_body(&empty, "x", None, &serde_json::Map::new()))
                .unwrap();
        assert_eq!(v["chunks"], json!([]));
        assert!(v.get("filename").is_none());
    }
}
