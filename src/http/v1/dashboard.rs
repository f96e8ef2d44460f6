//! The storage dashboard, deployment admin only ([`AdminViewer`]: the admin
//! bearer, or the browser's Basic login with user `admin`):
//!
//! - `GET /cas/v1/admin/stats` → [`StoreStats`] as JSON;
//! - `GET /cas/v1/admin/dashboard` → one HTML page of the same figures with
//!   server-rendered SVG charts (savings over time, per-experiment bars,
//!   pack fill histogram). No script, no external asset: the page's
//!   Content-Security-Policy allows inline styles and nothing else.
//!
//! Each figure on the page also carries its exact value in a `data-bytes`
//! (or `data-count`) attribute next to an `id`, so tools and tests read it
//! without parsing the human form.

use std::fmt::Write as _;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, engine, json};
use crate::engine::stats::{FILL_BUCKETS, Figures, HistoryPoint, StoreStats};
use crate::http::auth::AdminViewer;
use crate::http::problem::{ApiError, ProblemType};

/// Experiments drawn as bars (the largest by logical bytes); the table
/// lists all of them.
const BAR_EXPERIMENTS: usize = 20;

async fn compute(state: &web::Data<AppState>) -> Result<StoreStats, ApiError> {
    engine(state)
        .store_stats(state.gc_compact_below)
        .await
        .map_err(ApiError::from)
}

/// `GET /cas/v1/admin/stats` → 200 with the figures (a full metadata scan
/// per request).
pub async fn stats(
    req: HttpRequest,
    _admin: AdminViewer,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let stats = compute(&state).await.map_err(|e| e.at(&req))?;
    let body = serde_json::to_value(&stats).map_err(|e| {
        tracing::error!(error = %e, "stats encoding failed");
        ApiError::new(ProblemType::Internal, "stats encoding failed").at(&req)
    })?;
    Ok(json(StatusCode::OK, &body))
}

/// `GET /cas/v1/admin/dashboard` → 200 `text/html`.
pub async fn dashboard(
    req: HttpRequest,
    _admin: AdminViewer,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let stats = compute(&state).await.map_err(|e| e.at(&req))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ))
        .body(page(&stats)))
}

/// The whole page.
pub fn page(s: &StoreStats) -> String {
    let mut h = String::with_capacity(16 * 1024);
    h.push_str(concat!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>eden-cas storage</title><style>",
        "body{font:14px system-ui,sans-serif;margin:24px;color:#1d2330;background:#f7f8fa}",
        "h1{font-size:20px}h2{font-size:16px;margin-top:28px}",
        ".cards{display:flex;flex-wrap:wrap;gap:12px}",
        ".card{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:10px 14px;min-width:150px}",
        ".card .v{font-size:20px;font-weight:600}.card .l{color:#5b6475}",
        "table{border-collapse:collapse;background:#fff}td,th{border:1px solid #dde1e8;padding:4px 8px;text-align:right}",
        "th:first-child,td:first-child{text-align:left}svg{background:#fff;border:1px solid #dde1e8;border-radius:6px}",
        ".muted{color:#5b6475}</style></head><body>"
    ));
    let _ = write!(
        h,
        "<h1>eden-cas storage</h1><p class=\"muted\">computed <time id=\"computed-at\">{}</time></p>",
        s.computed_at.to_rfc3339()
    );
    cards(&mut h, &s.store, s);
    h.push_str("<h2>Savings over time</h2>");
    history_chart(&mut h, &s.history);
    h.push_str("<h2>Per experiment</h2>");
    experiment_bars(&mut h, s);
    experiment_table(&mut h, s);
    h.push_str("<h2>Pack fill</h2>");
    fill_chart(&mut h, &s.packs.fill_histogram);
    let _ = write!(
        h,
        "<p class=\"muted\">{} chunk index entries; a GC run at the configured threshold would free {}.</p>",
        count("index-entries", s.packs.index_entries),
        bytes_span("packs-reclaimable", s.packs.reclaimable_bytes)
    );
    h.push_str("</body></html>");
    h
}

fn cards(h: &mut String, f: &Figures, s: &StoreStats) {
    h.push_str("<div class=\"cards\">");
    let card = |h: &mut String, label: &str, value: String| {
        let _ = write!(
            h,
            "<div class=\"card\"><div class=\"v\">{value}</div><div class=\"l\">{label}</div></div>"
        );
    };
    card(
        h,
        "logical (deposited)",
        bytes_span("store-logical", f.logical_bytes),
    );
    card(
        h,
        "unique (after dedup)",
        bytes_span("store-unique", f.unique_bytes),
    );
    card(
        h,
        "stored (after compression)",
        bytes_span("store-stored", f.stored_bytes),
    );
    let saving = |id: &str, saved: u64, of: u64| {
        format!(
            "{} <span class=\"muted\">{}</span>",
            bytes_span(id, saved),
            percent(saved, of)
        )
    };
    let dedup = saving("store-dedup-saved", f.dedup_saved_bytes, f.logical_bytes);
    card(h, "saved by dedup", dedup);
    let compression = saving(
        "store-compression-saved",
        f.compression_saved_bytes,
        f.unique_bytes,
    );
    card(h, "saved by compression", compression);
    card(h, "artifacts", count("store-artifacts", f.artifacts));
    card(h, "distinct chunks", count("store-chunks", f.chunks));
    card(h, "packs", count("packs", s.packs.packs));
    card(
        h,
        "pack bytes",
        bytes_span("packs-bytes", s.packs.pack_bytes),
    );
    card(
        h,
        "dead bytes in packs",
        bytes_span("packs-dead", s.packs.dead_bytes),
    );
    h.push_str("</div>");
}

/// Logical, unique and stored bytes over time as three lines.
fn history_chart(h: &mut String, points: &[HistoryPoint]) {
    const W: f64 = 760.0;
    const H: f64 = 240.0;
    const PAD: f64 = 48.0;
    if points.len() < 2 {
        h.push_str("<p class=\"muted\">Too few samples yet: one is recorded at most every 10 minutes, when this page or the stats are requested and after each scheduled GC.</p>");
    }
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return;
    };
    let t0 = first.at.unix_millis() as f64;
    let span = (last.at.unix_millis() as f64 - t0).max(1.0);
    let top = points
        .iter()
        .map(|p| p.logical_bytes)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let x = |p: &HistoryPoint| PAD + (p.at.unix_millis() as f64 - t0) / span * (W - 2.0 * PAD);
    let y = |v: u64| H - PAD + -(v as f64 / top) * (H - 2.0 * PAD);
    let _ = write!(
        h,
        "<svg id=\"history\" role=\"img\" aria-label=\"logical, unique and stored bytes over time\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">"
    );
    let _ = write!(
        h,
        "<line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#99a\"/><line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{b}\" stroke=\"#99a\"/>",
        b = H - PAD,
        r = W - PAD
    );
    let _ = write!(
        h,
        "<text x=\"{tx}\" y=\"{ty}\" font-size=\"11\" fill=\"#5b6475\">{}</text><text x=\"{PAD}\" y=\"{by}\" font-size=\"11\" fill=\"#5b6475\">{}</text>",
        human(top as u64),
        escape(first.at.to_rfc3339().get(..16).unwrap_or_default()),
        tx = PAD + 4.0,
        ty = PAD + 4.0,
        by = H - PAD + 16.0,
    );
    let _ = write!(
        h,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#5b6475\" text-anchor=\"end\">{}</text>",
        W - PAD,
        H - PAD + 16.0,
        escape(last.at.to_rfc3339().get(..16).unwrap_or_default())
    );
    type Series = (&'static str, &'static str, fn(&HistoryPoint) -> u64);
    let series: [Series; 3] = [
        ("logical", "#3867d6", |p| p.logical_bytes),
        ("unique", "#20bf6b", |p| p.unique_bytes),
        ("stored", "#eb3b5a", |p| p.stored_bytes),
    ];
    for (i, (name, colour, value)) in series.iter().enumerate() {
        let mut pts = String::new();
        for p in points {
            let _ = write!(pts, "{:.1},{:.1} ", x(p), y(value(p)));
        }
        let _ = write!(
            h,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/><text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"{colour}\">{name}</text>",
            pts.trim_end(),
            W - PAD - 170.0 + 60.0 * i as f64,
            PAD - 20.0
        );
    }
    h.push_str("</svg>");
}

/// Logical vs stored bytes per experiment, largest first.
fn experiment_bars(h: &mut String, s: &StoreStats) {
    let mut rows: Vec<_> = s.experiments.iter().collect();
    rows.sort_by_key(|e| std::cmp::Reverse(e.figures.logical_bytes));
    rows.truncate(BAR_EXPERIMENTS);
    if rows.is_empty() {
        h.push_str("<p class=\"muted\">No artifacts.</p>");
        return;
    }
    const W: f64 = 760.0;
    const LABEL: f64 = 250.0;
    const ROW: f64 = 34.0;
    let height = ROW * rows.len() as f64 + 30.0;
    let top = rows
        .iter()
        .map(|e| e.figures.logical_bytes)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let _ = write!(
        h,
        "<svg id=\"experiments\" role=\"img\" aria-label=\"logical and stored bytes per experiment\" width=\"{W}\" height=\"{height}\" viewBox=\"0 0 {W} {height}\">"
    );
    let _ = write!(
        h,
        "<text x=\"{LABEL}\" y=\"14\" font-size=\"12\" fill=\"#3867d6\">logical</text><text x=\"{}\" y=\"14\" font-size=\"12\" fill=\"#eb3b5a\">stored</text>",
        LABEL + 60.0
    );
    for (i, e) in rows.iter().enumerate() {
        let y0 = 24.0 + ROW * i as f64;
        let width = |v: u64| (v as f64 / top * (W - LABEL - 150.0)).max(1.0);
        let _ = write!(
            h,
            "<text x=\"4\" y=\"{}\" font-size=\"12\">{}</text>\
             <rect x=\"{LABEL}\" y=\"{y0}\" width=\"{:.1}\" height=\"12\" fill=\"#3867d6\"/>\
             <rect x=\"{LABEL}\" y=\"{}\" width=\"{:.1}\" height=\"12\" fill=\"#eb3b5a\"/>\
             <text x=\"{:.1}\" y=\"{}\" font-size=\"11\" fill=\"#5b6475\">{} → {}</text>",
            y0 + 16.0,
            escape(&e.experiment),
            width(e.figures.logical_bytes),
            y0 + 14.0,
            width(e.figures.stored_bytes),
            LABEL + width(e.figures.logical_bytes) + 6.0,
            y0 + 10.0,
            human(e.figures.logical_bytes),
            human(e.figures.stored_bytes),
        );
    }
    h.push_str("</svg>");
}

fn experiment_table(h: &mut String, s: &StoreStats) {
    h.push_str("<table id=\"experiment-table\"><tr><th>experiment</th><th>artifacts</th><th>logical</th><th>unique</th><th>stored</th><th>saved</th><th>quota use</th></tr>");
    for e in &s.experiments {
        let f = &e.figures;
        let id = escape(&e.experiment);
        let quota = match e.quota_bytes {
            Some(q) => format!("{} of {}", human(e.quota_used_bytes), human(q)),
            None => format!("{} (no quota)", human(e.quota_used_bytes)),
        };
        let _ = write!(
            h,
            "<tr data-experiment=\"{id}\"><td>{id}</td><td data-count=\"{}\">{}</td><td data-bytes=\"{}\">{}</td><td data-bytes=\"{}\">{}</td><td data-bytes=\"{}\">{}</td><td>{}</td><td data-bytes=\"{}\">{}</td></tr>",
            f.artifacts,
            f.artifacts,
            f.logical_bytes,
            human(f.logical_bytes),
            f.unique_bytes,
            human(f.unique_bytes),
            f.stored_bytes,
            human(f.stored_bytes),
            percent(
                f.logical_bytes.saturating_sub(f.stored_bytes),
                f.logical_bytes
            ),
            e.quota_used_bytes,
            quota,
        );
    }
    h.push_str("</table>");
}

/// Packs by live share, one bar per tenth.
fn fill_chart(h: &mut String, buckets: &[u64; FILL_BUCKETS]) {
    const W: f64 = 520.0;
    const H: f64 = 200.0;
    const PAD: f64 = 30.0;
    let top = buckets.iter().copied().max().unwrap_or(0).max(1) as f64;
    let slot = (W - 2.0 * PAD) / FILL_BUCKETS as f64;
    let _ = write!(
        h,
        "<svg id=\"pack-fill\" role=\"img\" aria-label=\"packs by live share\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">"
    );
    for (i, &n) in buckets.iter().enumerate() {
        let bar = n as f64 / top * (H - 2.0 * PAD - 14.0);
        let x = PAD + slot * i as f64;
        let _ = write!(
            h,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar:.1}\" fill=\"#8854d0\" data-count=\"{n}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{n}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#5b6475\">{}%</text>",
            x + 4.0,
            H - PAD - bar,
            slot - 8.0,
            x + slot / 2.0,
            H - PAD - bar - 4.0,
            x + slot / 2.0,
            H - PAD + 14.0,
            i * 100 / FILL_BUCKETS,
        );
    }
    h.push_str("</svg><p class=\"muted\">Live share of each pack's chunk bytes; GC compacts packs below <code>gc-compact-below</code> and deletes packs with none.</p>");
}

fn bytes_span(id: &str, v: u64) -> String {
    format!("<span id=\"{id}\" data-bytes=\"{v}\">{}</span>", human(v))
}

fn count(id: &str, v: u64) -> String {
    format!("<span id=\"{id}\" data-count=\"{v}\">{v}</span>")
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "–".into()
    } else {
        format!("{:.1} %", part as f64 * 100.0 / whole as f64)
    }
}

/// Binary units with one decimal (`1.5 GiB`), bytes below 1 KiB.
fn human(v: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if v < 1024 {
        return format!("{v} B");
    }
    let mut x = v as f64 / 1024.0;
    let mut unit = 0;
    while x >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    format!("{x:.1} {}", UNITS[unit])
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
