//! The drain report: when each class was in, as JSON and an HTML chart.

use super::*;

/// Writes `drain-ID.json` and `drain-ID.html` into `dir`.
/// Where the drain reports of a service with state directory `state_dir`
/// are written (`drain-<id>.json` and `.html`).
pub fn reports_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("reports")
}

pub(super) fn write_report(
    dir: &Path,
    run: &Run,
    live_docs: u64,
    classes: &Classes,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let j = &run.job;
    // From when this process began the job (its creation, unless resumed
    // after a restart) to its end.
    let secs = j
        .finished_ms
        .map_or(run.began.elapsed().as_secs_f64(), |f| {
            f.saturating_sub(run.began_ms) as f64 / 1e3
        })
        .max(1e-3);
    let total = j.total();
    let live = live_docs.saturating_sub(run.live_at_start);
    let classes: Vec<serde_json::Value> = j
        .classes
        .iter()
        .enumerate()
        .map(|(c, name)| {
            serde_json::json!({
                "class": name,
                "documents": j.emitted[c],
                "messages_read": j.to_read(c, classes),
                "finished_after_seconds": j.class_finished_s[c],
                "finished_at": j.class_finished_s[c].map(|s| rfc3339_ms(j.created_ms + (s * 1e3) as u64)),
            })
        })
        .collect();
    let report = serde_json::json!({
        "job": j.id,
        "kind": j.kind,
        "policy": j.policy,
        "started_at": j.created_at,
        "finished_at": j.finished_ms.map(rfc3339_ms),
        "backlog_messages": total,
        "deleted_by_retention": j.deleted_messages,
        "partitions": j.ranges.len(),
        "drain_seconds": secs,
        "drain_rate_messages_per_second": total as f64 / secs,
        "live_documents_during_drain": live,
        "live_rate_documents_per_second": live as f64 / secs,
        "classes": classes,
        "samples": run.samples.iter().map(|(t, r)| serde_json::json!({"t": t, "remaining": r})).collect::<Vec<_>>(),
        "note": "samples are taken while this process ran the job; after a restart they begin at the restart",
    });
    let json_path = dir.join(format!("drain-{}.json", j.id));
    std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?)?;
    std::fs::write(
        dir.join(format!("drain-{}.html", j.id)),
        report_html(j, run, &report),
    )?;
    Ok(json_path)
}

/// A self-contained page: a table of classes and an SVG chart of the
/// backlog per class over time.
pub(super) fn report_html(j: &Job, run: &Run, report: &serde_json::Value) -> String {
    const COLORS: [&str; 6] = [
        "#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b",
    ];
    let (w, h, pad) = (760.0, 320.0, 50.0);
    let t_max = run.samples.last().map_or(1.0, |s| s.0).max(1.0);
    let y_max = run
        .samples
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        svg,
        r#"<line x1="{pad}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{pad}" y1="10" x2="{pad}" y2="{}" stroke="black"/>"#,
        h - pad,
        w - 10.0,
        h - pad,
        h - pad
    );
    let _ = write!(
        svg,
        r#"<text x="{pad}" y="{}">0 s</text><text x="{}" y="{}" text-anchor="end">{t_max:.1} s</text><text x="5" y="15">{y_max}</text>"#,
        h - pad + 15.0,
        w - 10.0,
        h - pad + 15.0
    );
    for c in 0..j.classes.len() {
        let color = COLORS[c % COLORS.len()];
        let pts: Vec<String> = run
            .samples
            .iter()
            .map(|(t, r)| {
                let x = pad + (w - pad - 10.0) * t / t_max;
                let y = (h - pad) - (h - pad - 10.0) * r[c] as f64 / y_max;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        if let Some(s) = j.class_finished_s[c] {
            // Finish times count from the job's creation, samples from
            // when this process began running it.
            let offset = run.began_ms.saturating_sub(j.created_ms) as f64 / 1e3;
            let x = pad + (w - pad - 10.0) * (s - offset).clamp(0.0, t_max) / t_max;
            let _ = write!(
                svg,
                r#"<line x1="{x:.1}" y1="10" x2="{x:.1}" y2="{}" stroke="{color}" stroke-dasharray="4 3"/>"#,
                h - pad
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" fill="{color}">{}</text>"#,
            w - 150.0,
            20.0 + 15.0 * c as f64,
            html_escape(&j.classes[c])
        );
    }
    svg.push_str("</svg>");
    let mut rows = String::new();
    for (c, name) in j.classes.iter().enumerate() {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(name),
            j.emitted[c],
            j.class_finished_s[c].map_or("—".into(), |s| format!("{s:.1} s")),
            report["classes"][c]["finished_at"].as_str().unwrap_or("—"),
        );
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Drain report {id}</title>\
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd}}</style></head><body>\
<h1>Drain report — job {id} ({kind:?}, {policy})</h1>\
<p>Backlog: <b>{total}</b> messages in {parts} partitions; started {start}; drained in <b>{secs:.1} s</b> \
({rate:.0} messages/s) while {live} live documents were processed.</p>\
<table><tr><th>class</th><th>documents</th><th>finished after</th><th>finished at</th></tr>{rows}</table>\
<h2>Backlog per class over time (messages still to read)</h2>{svg}</body></html>",
        id = j.id,
        kind = j.kind,
        policy = j.policy,
        total = j.total(),
        parts = j.ranges.len(),
        start = j.created_at,
        secs = report["drain_seconds"].as_f64().unwrap_or(0.0),
        rate = report["drain_rate_messages_per_second"].as_f64().unwrap_or(0.0),
        live = report["live_documents_during_drain"],
    )
}

pub(super) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
