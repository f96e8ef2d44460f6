//! `eden-cas get` and `eden-cas verify`: streamed downloads, byte ranges,
//! bundle extraction, and digest checks.
//!
//! A full download is hashed while it streams and compared with the
//! server's `X-Eden-Blake3` (else the `ETag`, else the recorded digest); a
//! file is written under a new temporary name next to its destination and
//! only moved into place once the digest matched, so a failed or tampered
//! download never leaves a file that looks complete. Ranges cannot be checked
//! against the whole-content digest; their length is checked.
//!
//! Server data is untrusted (`local.rs`): without `-o FILE` the local name
//! is the recorded filename made safe, and it never replaces an existing
//! path unless `--force` (exit code 5 otherwise, checked before the
//! download and again, atomically, when the file is moved into place).
//! `--extract` stages the bundle and installs it only after the digest
//! matched (`unbundle.rs`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, ETAG, HeaderMap};
use reqwest::{Response, StatusCode};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::api::{Api, transport};
use super::local::{
    create_partial, display_safe, exists_error, occupied, place_new, safe_file_name,
};
use super::output::{human_bytes, print_json, print_stdout, progress};
use super::scan::{Source, hash_only};
use super::unbundle::{self, Staging};
use super::wire::parse_blake3;
use super::{ClientError, Result};
use crate::cli::{GetArgs, VerifyArgs};
use crate::hash::Digest;

/// A single byte range, as `--range` accepts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// `A-B` (inclusive) or `A-` (to the end).
    From(u64, Option<u64>),
    /// `-N`: the last N bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parses `A-B`, `A-` or `-N` (an optional `bytes=` prefix is accepted).
    pub fn parse(s: &str) -> Result<ByteRange> {
        let bad = || ClientError::Usage(format!("--range {s:?}: expected A-B, A- or -N"));
        let t = s.trim().strip_prefix("bytes=").unwrap_or(s.trim());
        let (a, b) = t.split_once('-').ok_or_else(bad)?;
        let num = |x: &str| {
            if x.bytes().all(|c| c.is_ascii_digit()) {
                x.parse::<u64>().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        match (a.is_empty(), b.is_empty()) {
            (true, true) => Err(bad()),
            (true, false) => match num(b)? {
                0 => Err(ClientError::Usage("--range -0 selects nothing".into())),
                n => Ok(ByteRange::Suffix(n)),
            },
            (false, true) => Ok(ByteRange::From(num(a)?, None)),
            (false, false) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(ClientError::Usage(format!(
                        "--range {s:?}: start after end"
                    )));
                }
                Ok(ByteRange::From(a, Some(b)))
            }
        }
    }

    /// The `Range` header value.
    pub fn header(&self) -> String {
        match self {
            ByteRange::From(a, Some(b)) => format!("bytes={a}-{b}"),
            ByteRange::From(a, None) => format!("bytes={a}-"),
            ByteRange::Suffix(n) => format!("bytes=-{n}"),
        }
    }
}

/// The digest the server announces for a full body: `X-Eden-Blake3`, else the ETag.
pub fn announced_blake3(headers: &HeaderMap) -> Option<Digest> {
    if let Some(d) = headers
        .get("x-eden-blake3")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| parse_blake3(s.trim()))
    {
        return Some(d);
    }
    let etag = headers.get(ETAG)?.to_str().ok()?;
    parse_blake3(etag.trim().trim_start_matches("W/").trim_matches('"'))
}

/// Where a download goes.
enum Dest {
    Stdout,
    /// A file; `from_server` when its name came from the artifact's record
    /// (then it never replaces an existing path without `--force`).
    File {
        path: PathBuf,
        from_server: bool,
    },
}

/// Removes a partial download unless disarmed.
struct PartialFile {
    path: Option<PathBuf>,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Runs `get`.
pub async fn run(api: Api, args: &GetArgs) -> Result<()> {
    let id = super::resolve_target(&api, &args.target).await?;
    if let Some(dir) = &args.extract {
        return extract(&api, &id, dir, args.force, args.client.json).await;
    }
    let range = args.range.as_deref().map(ByteRange::parse).transpose()?;
    let dest = match &args.output {
        Some(p) if p.as_os_str() == "-" => Dest::Stdout,
        Some(p) if p.is_dir() => Dest::File {
            path: p.join(default_name(&api, &id).await?),
            from_server: true,
        },
        Some(p) => Dest::File {
            path: p.clone(),
            from_server: false,
        },
        None => Dest::File {
            path: default_name(&api, &id).await?,
            from_server: true,
        },
    };
    // Refuse before downloading; the move into place checks again, atomically.
    if let Dest::File {
        path,
        from_server: true,
    } = &dest
        && !args.force
        && occupied(path)
    {
        return Err(exists_error(path, "get"));
    }
    let resp = api
        .fetch(&id, range.as_ref().map(ByteRange::header).as_deref())
        .await?;
    let status = resp.status();
    if range.is_some() && status != StatusCode::PARTIAL_CONTENT {
        return Err(ClientError::Protocol(format!(
            "asked for a range, got {status}"
        )));
    }
    let expected = match range {
        Some(_) => None,
        None => Some(match announced_blake3(resp.headers()) {
            Some(d) => d,
            None => recorded_blake3(&api, &id).await?,
        }),
    };
    let content_range = resp
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    let (written, actual, where_to) = match &dest {
        Dest::Stdout => {
            let (n, d) = stream_body(resp, &mut Sink::Stdout).await?;
            (n, d, "stdout".to_string())
        }
        Dest::File { path, from_server } => {
            let (tmp, f) = create_partial(path)?;
            let mut guard = PartialFile {
                path: Some(tmp.clone()),
            };
            let ctx = |e| ClientError::io(format!("cannot write {}", tmp.display()), e);
            let mut sink = Sink::File(tokio::fs::File::from_std(f));
            let (n, d) = stream_body(resp, &mut sink).await?;
            let Sink::File(mut f) = sink else {
                return Err(ClientError::Local("download sink changed".into()));
            };
            f.flush().await.map_err(ctx)?;
            f.sync_all().await.map_err(ctx)?;
            drop(f);
            check(expected, d, &id)?;
            if *from_server {
                place_new(&tmp, path, args.force)?;
            } else {
                // `-o FILE`: the user chose this path; replacing it is asked for.
                tokio::fs::rename(&tmp, path).await.map_err(|e| {
                    ClientError::io(format!("cannot move the download to {}", path.display()), e)
                })?;
            }
            guard.path = None;
            (n, d, path.display().to_string())
        }
    };
    check(expected, actual, &id)?;
    if args.client.json {
        print_json(&json!({
            "id": id,
            "output": where_to,
            "bytes": written,
            "content_range": content_range,
            "blake3": expected.map(|_| format!("blake3:{actual}")),
            "verified": expected.is_some(),
        }))
    } else {
        if !matches!(dest, Dest::Stdout) {
            eprintln!(
                "wrote {} to {}{}",
                human_bytes(written),
                display_safe(&where_to),
                if expected.is_some() {
                    " (BLAKE3 verified)"
                } else {
                    ""
                }
            );
        }
        Ok(())
    }
}

fn check(expected: Option<Digest>, actual: Digest, id: &str) -> Result<()> {
    match expected {
        Some(want) if want != actual => Err(ClientError::Mismatch(format!(
            "downloaded bytes of {id} hash to blake3:{actual}, the server announced blake3:{want}"
        ))),
        _ => Ok(()),
    }
}

/// The recorded filename made safe for a local name ([`safe_file_name`]),
/// else the id (for `-o` absent or a directory).
async fn default_name(api: &Api, id: &str) -> Result<PathBuf> {
    let meta = api.meta(id).await?;
    let recorded = meta.filename.as_deref().filter(|n| !n.is_empty());
    let name = match recorded.map(|n| (n, safe_file_name(n))) {
        Some((_, Some(safe))) => safe,
        Some((raw, None)) => {
            eprintln!(
                "eden-cas: the recorded filename {:?} is not a safe local name; using {id}",
                display_safe(raw)
            );
            id.to_string()
        }
        None => id.to_string(),
    };
    Ok(PathBuf::from(name))
}

async fn recorded_blake3(api: &Api, id: &str) -> Result<Digest> {
    api.meta(id)
        .await?
        .blake3
        .ok_or_else(|| ClientError::Protocol(format!("{id} has no recorded BLAKE3")))
}

/// Where downloaded bytes go.
enum Sink {
    Stdout,
    File(tokio::fs::File),
    Discard,
}

impl Sink {
    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout => tokio::task::block_in_place(|| {
                let mut out = std::io::stdout().lock();
                out.write_all(data)?;
                out.flush()
            }),
            Sink::File(f) => f.write_all(data).await,
            Sink::Discard => Ok(()),
        }
    }
}

/// Streams the body into `out`, hashing it; checks `Content-Length`.
async fn stream_body(mut resp: Response, out: &mut Sink) -> Result<(u64, Digest)> {
    let length = content_length(&resp);
    let bar = progress(length, "fetching");
    let mut hasher = blake3::Hasher::new();
    let mut n = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport(&e))? {
        hasher.update(&chunk);
        out.write(&chunk)
            .await
            .map_err(|e| ClientError::io("cannot write the download", e))?;
        n += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    short_body(length, n)?;
    Ok((n, Digest::from(hasher.finalize())))
}

fn content_length(resp: &Response) -> Option<u64> {
    resp.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok())
}

fn short_body(length: Option<u64>, n: u64) -> Result<()> {
    match length {
        Some(l) if l != n => Err(ClientError::Transport(format!(
            "the body ended after {n} of {l} bytes"
        ))),
        _ => Ok(()),
    }
}

/// `get --extract DIR`: streams the bundle into the tar reader (unpacking
/// into a staging directory inside DIR) while hashing it; the staged tree
/// is moved into DIR only once the whole content's digest matched.
async fn extract(api: &Api, id: &str, dir: &Path, force: bool, json_out: bool) -> Result<()> {
    if std::fs::symlink_metadata(dir).is_ok_and(|m| !m.is_dir()) {
        return Err(ClientError::Local(format!(
            "{} exists and is not a directory",
            dir.display()
        )));
    }
    let created = !occupied(dir);
    let (got, n, actual) = match extract_verified(api, id, dir, force).await {
        Ok(done) => done,
        Err(e) => {
            if created {
                // Only if still empty: never remove anything else.
                let _ = std::fs::remove_dir(dir);
            }
            return Err(e);
        }
    };
    if json_out {
        print_json(&json!({
            "id": id, "extracted_to": dir.display().to_string(), "bytes": n,
            "files": got.files, "dirs": got.dirs, "symlinks": got.symlinks,
            "blake3": format!("blake3:{actual}"), "verified": true,
        }))
    } else {
        eprintln!(
            "extracted {} files, {} directories, {} symlinks into {} (BLAKE3 verified)",
            got.files,
            got.dirs,
            got.symlinks,
            dir.display()
        );
        Ok(())
    }
}

/// Downloads, stages, verifies and installs; what was extracted, the bytes
/// read and the digest.
async fn extract_verified(
    api: &Api,
    id: &str,
    dir: &Path,
    force: bool,
) -> Result<(unbundle::Extracted, u64, Digest)> {
    let mut resp = api.fetch(id, None).await?;
    let expected = match announced_blake3(resp.headers()) {
        Some(d) => d,
        None => recorded_blake3(api, id).await?,
    };
    let length = content_length(&resp);
    let staging = Staging::new(dir)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let worker = {
        let into = staging.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            unbundle::extract(
                ChannelReader {
                    rx,
                    cur: Bytes::new(),
                },
                &into,
            )
        })
    };
    let bar = progress(length, "fetching");
    let mut hasher = blake3::Hasher::new();
    let mut n = 0u64;
    let mut reader_gone = false;
    let downloaded: Result<()> = async {
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport(&e))? {
            hasher.update(&chunk);
            n += chunk.len() as u64;
            bar.inc(chunk.len() as u64);
            // The tar reader stops at the end-of-archive marker (or at a
            // refused entry); hash the rest anyway.
            if !reader_gone && tx.send(chunk).await.is_err() {
                reader_gone = true;
            }
        }
        short_body(length, n)
    }
    .await;
    drop(tx);
    bar.finish_and_clear();
    let extracted = worker
        .await
        .map_err(|_| ClientError::Local("the extraction task panicked".into()))?;
    downloaded?;
    let actual = Digest::from(hasher.finalize());
    if actual != expected {
        return Err(ClientError::Mismatch(format!(
            "bundle {id} hashes to blake3:{actual}, the server announced blake3:{expected}; \
             nothing was extracted into {}",
            dir.display()
        )));
    }
    let got = extracted?;
    let dest = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let installed = unbundle::install(&staging, &dest, force);
        drop(staging);
        installed
    })
    .await
    .map_err(|_| ClientError::Local("the extraction task panicked".into()))??;
    Ok((got, n, actual))
}

/// Blocking `Read` over the chunks of an async download.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// Runs `verify`: a local path against the recorded digest, or the fetched
/// artifact against it. A mismatch exits with code 4.
pub async fn verify(api: Api, args: &VerifyArgs) -> Result<()> {
    let id = super::resolve_target(&api, &args.target).await?;
    let meta = api.meta(&id).await?;
    let expected = meta
        .blake3
        .ok_or_else(|| ClientError::Protocol(format!("{id} has no recorded BLAKE3")))?;
    let (actual, size, what) = match &args.path {
        Some(p) => {
            let source = Source::open(p)?;
            let s = source.clone();
            let (d, n) = tokio::task::spawn_blocking(move || hash_only(&s))
                .await
                .map_err(|_| ClientError::Local("the hashing task panicked".into()))??;
            (d, n, p.display().to_string())
        }
        None => {
            let resp = api.fetch(&id, None).await?;
            let announced = announced_blake3(resp.headers());
            let (n, d) = stream_body(resp, &mut Sink::Discard).await?;
            if announced.is_some_and(|a| a != expected) {
                return Err(ClientError::Mismatch(format!(
                    "{id}: the server announces a BLAKE3 different from the recorded one"
                )));
            }
            (d, n, format!("{} (fetched)", meta.uri))
        }
    };
    let ok = actual == expected && size == meta.size_bytes;
    if args.client.json {
        print_json(&json!({
            "id": id, "uri": meta.uri, "checked": what, "ok": ok,
            "expected": format!("blake3:{expected}"), "actual": format!("blake3:{actual}"),
            "expected_size_bytes": meta.size_bytes, "actual_size_bytes": size,
        }))?;
    }
    if !ok {
        return Err(ClientError::Mismatch(format!(
            "MISMATCH: {what} is blake3:{actual} ({size} bytes); {} records blake3:{expected} ({} bytes)",
            meta.uri, meta.size_bytes
        )));
    }
    if !args.client.json {
        print_stdout(&format!(
            "OK {what} matches {} blake3:{expected}\n",
            meta.uri
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn ranges() {
        assert_eq!(
            ByteRange::parse("0-99").unwrap(),
            ByteRange::From(0, Some(99))
        );
        assert_eq!(
            ByteRange::parse("bytes=5-").unwrap(),
            ByteRange::From(5, None)
        );
        assert_eq!(ByteRange::parse("-10").unwrap(), ByteRange::Suffix(10));
        assert_eq!(ByteRange::parse("7-7").unwrap().header(), "bytes=7-7");
        assert_eq!(ByteRange::parse("-10").unwrap().header(), "bytes=-10");
        for bad in ["", "-", "5", "9-3", "a-b", "-0", "1-2-3", "+1-2", "1 -2"] {
            assert!(ByteRange::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn announced_digest() {
        let d = Digest::of(b"x");
        let mut h = HeaderMap::new();
        assert_eq!(announced_blake3(&h), None);
        h.insert(
            ETAG,
            HeaderValue::from_str(&format!("\"blake3:{d}\"")).unwrap(),
        );
        assert_eq!(announced_blake3(&h), Some(d));
        let e = Digest::of(b"y");
        h.insert("x-eden-blake3", HeaderValue::from_str(&e.to_hex()).unwrap());
        assert_eq!(announced_blake3(&h), Some(e), "X-Eden-Blake3 wins");
    }
}
