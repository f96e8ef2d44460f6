//! What the client prints: machine output on stdout (`--json`: one JSON
//! document per command), human summaries, and the progress bar on stderr.
//!
//! The bar draws only when stderr is a terminal (indicatif hides it
//! otherwise), so scripts and logs never see control sequences.

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::local::display_safe;
use super::wire::Artifact;
use super::{ClientError, Result};

/// `1.50 MiB`-style size.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2} {}", UNITS[unit])
}

/// A progress bar on stderr, hidden unless stderr is a terminal.
pub fn progress(len: Option<u64>, prefix: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    let template = if len.is_some() {
        "{prefix:>8} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}"
    } else {
        "{prefix:>8} {spinner} {bytes} {binary_bytes_per_sec} {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(prefix);
    if !bar.is_hidden() && len.is_none() {
        bar.enable_steady_tick(Duration::from_millis(200));
    }
    bar
}

/// Prints `v` on stdout as one JSON document.
pub fn print_json(v: &serde_json::Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(v).unwrap_or_default();
    text.push('\n');
    print_stdout(&text)
}

/// Writes `text` to stdout, reporting a closed pipe as an error instead of panicking.
pub fn print_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| ClientError::io("cannot write to stdout", e))
}

/// One `ls` line: id, size, creation time, creator, filename (control
/// characters escaped).
pub fn list_line(a: &Artifact) -> String {
    format!(
        "{}  {:>12}  {}  {}  {}\n",
        display_safe(&a.id),
        human_bytes(a.size_bytes),
        display_safe(&a.created_at),
        display_safe(&a.created_by),
        display_safe(a.filename.as_deref().unwrap_or("-")),
    )
}

/// `stat` text: one `key: value` line per field.
pub fn stat_text(a: &Artifact) -> String {
    let mut s = String::new();
    // Every value may come from another principal (filename, grants): escape
    // control characters so it cannot drive the terminal.
    let mut line = |k: &str, v: &str| s.push_str(&format!("{k:<16}{}\n", display_safe(v)));
    line("uri", &a.uri);
    line(
        "size",
        &format!("{} ({} bytes)", human_bytes(a.size_bytes), a.size_bytes),
    );
    line("content_type", &a.content_type);
    if let Some(f) = &a.filename {
        line("filename", f);
    }
    line("created_by", &a.created_by);
    line("created_at", &a.created_at);
    if let Some(t) = &a.expires_at {
        line("expires_at", t);
    }
    line("blake3", &a.digests.blake3);
    line("sha256", &a.digests.sha256);
    line("digest_verified", &a.digest_verified.to_string());
    line("chunks", &a.chunks.to_string());
    // `new_raw_bytes` is relative to what the depositor could read; other
    // readers are not shown it. Servers before it existed sent `new_bytes`.
    let new = a
        .dedup
        .new_raw_bytes
        .or_else(|| a.raw["dedup"]["new_bytes"].as_u64());
    let logical = human_bytes(a.dedup.logical_bytes);
    match new {
        Some(new) => line(
            "dedup",
            &format!(
                "{logical} logical, {} new to the depositor",
                human_bytes(new)
            ),
        ),
        None => line("dedup", &format!("{logical} logical")),
    }
    let grants = if a.grants.is_empty() {
        "-".to_string()
    } else {
        a.grants.join(" ")
    };
    line("grants", &grants);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(1 << 30), "1.00 GiB");
    }

    fn sample(filename: &str) -> Artifact {
        let id = "0193c2a5b1e04c7f8d2e9a1b3c4d5e6f";
        Artifact::from_value(json!({
            "chunks": 1, "content_type": "application/octet-stream",
            "created_at": "2026-01-01T00:00:00.000Z", "created_by": "admin",
            "dedup": {"chunks": 1, "logical_bytes": 2048},
            "digest_verified": true,
            "digests": {"blake3": format!("blake3:{}", "0".repeat(64)),
                        "sha256": format!("sha256:{}", "0".repeat(64))},
            "filename": filename, "grants": [], "id": id,
            "size_bytes": 2048, "uri": format!("eden://artifacts/{id}"),
        }))
        .unwrap()
    }

    #[test]
    fn stat_lists_fields() {
        let a = sample("ckpt.tar");
        let t = stat_text(&a);
        assert!(t.contains("size            2.00 KiB (2048 bytes)"), "{t}");
        let evil = sample("x\u{1b}]0;pwned\u{7}");
        assert!(!stat_text(&evil).contains('\u{1b}'));
        assert!(!list_line(&evil).contains('\u{1b}'));
        assert!(t.contains("grants          -"), "{t}");
        assert!(list_line(&a).starts_with(&a.id));
    }
}
