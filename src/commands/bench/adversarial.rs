//! `bench --adversarial [--adversarial-bytes N] [--emit-workload DIR]`: the
//! hostile documents of `workload::adversarial`, each matched against the
//! search that used to be exponential or quadratic on it, within the
//! default work budget. Prints per case the median time of five runs, the
//! work units spent and whether it matched (or was too expensive).
//!
//! With `--emit-workload DIR` it writes each case as `NN-searches.json` and
//! `NN-document.jsonl` instead, so that any build's `match` can be timed on
//! the same input (how BENCHMARKS.md measures the before/after).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::commands::Outcome;
use crate::document::Document;
use crate::engine::Matcher;
use crate::query::Limits;
use crate::searches::Catalog;
use crate::workload;

/// Runs the adversarial bench on documents of about `bytes` bytes.
///
/// # Errors
///
/// When the emitted files cannot be written, or a case's searches do not
/// compile.
pub fn run(bytes: usize, emit: Option<&Path>, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let cases = workload::adversarial(bytes);
    if let Some(dir) = emit {
        std::fs::create_dir_all(dir)?;
        for (i, c) in cases.iter().enumerate() {
            std::fs::write(
                dir.join(format!("{i:02}-searches.json")),
                searches_json(c.query),
            )?;
            let doc = serde_json::json!({"id": format!("adversarial-{i}"), "text": c.text});
            std::fs::write(
                dir.join(format!("{i:02}-document.jsonl")),
                format!("{doc}\n"),
            )?;
        }
        writeln!(out, "wrote {} cases to {}", cases.len(), dir.display())?;
        return Ok(Outcome::Success);
    }
    writeln!(
        out,
        "{:<30} {:>9} {:>10} {:>12}  outcome",
        "case", "bytes", "median ms", "work units"
    )?;
    for c in &cases {
        let catalog = Catalog::from_json(searches_json(c.query).as_bytes(), &Limits::default())
            .map_err(|e| anyhow::anyhow!("{}: {}", c.name, e.render()))?;
        let matcher = Matcher::new(&catalog)?;
        let mut scratch = matcher.scratch();
        let doc = Document::with_text("d", &c.text);
        let mut times: Vec<Duration> = Vec::with_capacity(5);
        let mut outcome = String::new();
        for _ in 0..5 {
            let t = Instant::now();
            outcome = match matcher.try_match_document(&doc, None, &mut scratch) {
                Ok([]) => "no match".into(),
                Ok(_) => "match".into(),
                Err(e) => format!("too expensive ({e})"),
            };
            times.push(t.elapsed());
        }
        times.sort();
        anyhow::ensure!(
            outcome.starts_with("too expensive") || (outcome == "match") == c.matches,
            "{}: {outcome}, expected {}",
            c.name,
            if c.matches { "a match" } else { "no match" }
        );
        writeln!(
            out,
            "{:<30} {:>9} {:>10.2} {:>12}  {}",
            c.name,
            c.text.len(),
            times[2].as_secs_f64() * 1e3,
            scratch.last_work(),
            outcome
        )?;
    }
    Ok(Outcome::Success)
}

fn searches_json(query: &str) -> String {
    serde_json::json!({"topics": [{"id": "t", "searches": [{"id": "s", "query": query}]}]})
        .to_string()
}
