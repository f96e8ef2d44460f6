//! `eden-cas audit export`: the audit log from the blob store as JSON
//! lines on stdout, oldest first (format: `docs/operations/audit.md`).
//!
//! It opens the blob store only — no metadata, no lease, nothing written —
//! so it works after the metadata directory is lost and beside a running
//! server (whose last few seconds of events may still be buffered there).

use std::io::Write as _;
use std::process::ExitCode;

use futures_util::StreamExt as _;

use crate::blobs::BlobStore;
use crate::cli::AuditExportArgs;
use crate::clock::Timestamp;
use crate::engine::audit::{AuditFilter, export_stream, parse_since, segment_keys};

/// Runs `eden-cas audit export`; errors go to stderr with exit code 1.
pub fn export(args: &AuditExportArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eden-cas: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &AuditExportArgs) -> anyhow::Result<()> {
    let config = args.serve.load()?;
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, Timestamp::now()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--{e}"))?;
    let filter = AuditFilter {
        since,
        experiment: args.experiment.clone(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let blobs = BlobStore::open(&config.blobs)?;
        let keys = segment_keys(&blobs, &filter).await?;
        let mut out = std::io::stdout().lock();
        let mut lines = std::pin::pin!(export_stream(blobs, keys, filter));
        while let Some(part) = lines.next().await {
            out.write_all(&part?)?;
        }
        out.flush()?;
        Ok(())
    })
}
