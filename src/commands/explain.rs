//! `explain --searches F [--search ID] (--text T | --input DOC.json)`: why
//! a document matches its searches, or why one search does not
//! (`engine::explain`). Without `--search` it explains every search that
//! matches; with it, that search whatever the verdict.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::{print_problems, Outcome};
use crate::document::Document;
use crate::engine::explain::{Explanation, Step, MAX_EXPLAIN_BYTES};
use crate::engine::reference::Reference;
use crate::query::Limits;
use crate::searches::{Catalog, SearchIdx};

/// Options of `explain`.
#[derive(Clone, Debug)]
pub struct ExplainOptions {
    /// The searches file.
    pub searches: PathBuf,
    /// Only this search (any verdict).
    pub search: Option<String>,
    /// The document: its text, or a JSON document file.
    pub text: Option<String>,
    pub input: Option<PathBuf>,
    /// Print JSON instead of text.
    pub json: bool,
}

fn print_step(
    out: &mut dyn Write,
    step: &Step,
    doc: &Document<'_>,
    depth: usize,
) -> std::io::Result<()> {
    let mark = if step.holds { "✓" } else { "✗" };
    const SHOWN: usize = 10;
    let mut places: Vec<String> = step
        .found
        .iter()
        .take(SHOWN)
        .map(|f| {
            let field = if f.field == "title" { 0 } else { 1 };
            let text = doc.field(field).unwrap_or("");
            let quoted = text.get(f.start as usize..f.end as usize).unwrap_or("?");
            format!("{} {}–{} «{quoted}»", f.field, f.start, f.end)
        })
        .collect();
    if step.found.len() > SHOWN {
        places.push(format!("… {} more", step.found.len() - SHOWN));
    }
    let at = if places.is_empty() {
        String::new()
    } else {
        format!(": {}", places.join(", "))
    };
    writeln!(
        out,
        "{:indent$}{mark} {} — {}{at}",
        "",
        step.part,
        step.why,
        indent = depth * 2
    )?;
    for p in &step.parts {
        print_step(out, p, doc, depth + 1)?;
    }
    Ok(())
}

fn print_explanation(
    out: &mut dyn Write,
    e: &Explanation,
    doc: &Document<'_>,
) -> std::io::Result<()> {
    let verdict = match (&e.excluded_by, e.matched) {
        (_, true) => "MATCHES".to_string(),
        (Some(f), false) => format!("does not match: excluded by its filter {f}"),
        (None, false) => "does not match".to_string(),
    };
    writeln!(out, "topic {}, search {}: {verdict}", e.topic, e.search)?;
    writeln!(out, "  query: {}", e.query)?;
    print_step(out, &e.tree, doc, 1)
}

/// Runs `explain`.
///
/// # Errors
///
/// When a file cannot be read or the output cannot be written.
pub fn run(
    opts: &ExplainOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let catalog = match Catalog::from_path(&opts.searches, &Limits::default()) {
        Ok(c) => c,
        Err(e) => {
            print_problems(&e, err)?;
            return Ok(Outcome::InvalidInput);
        }
    };
    let bytes = match (&opts.text, &opts.input) {
        (Some(t), _) => serde_json::json!({"id": "text", "text": t})
            .to_string()
            .into_bytes(),
        (None, Some(p)) => {
            std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        (None, None) => {
            writeln!(
                err,
                "give the document with --text TEXT or --input DOC.json"
            )?;
            return Ok(Outcome::InvalidInput);
        }
    };
    let doc = match Document::parse(bytes.trim_ascii(), MAX_EXPLAIN_BYTES) {
        Ok(d) => d,
        Err(e) => {
            writeln!(err, "the document is not valid: {e}")?;
            return Ok(Outcome::InvalidInput);
        }
    };
    let reference = Reference::new(&catalog);
    let chosen: Vec<SearchIdx> = match &opts.search {
        Some(id) => match catalog.searches.iter().position(|s| &s.id == id) {
            Some(i) => vec![SearchIdx(i as u32)],
            None => {
                writeln!(err, "no search {id:?} in {}", opts.searches.display())?;
                return Ok(Outcome::InvalidInput);
            }
        },
        None => (0..catalog.searches.len() as u32).map(SearchIdx).collect(),
    };
    let explained: Vec<Explanation> = chosen
        .into_iter()
        .map(|s| reference.explain(&doc, s))
        .filter(|e| opts.search.is_some() || e.matched)
        .collect();
    if opts.json {
        writeln!(out, "{}", serde_json::to_string(&explained)?)?;
        return Ok(Outcome::Success);
    }
    if explained.is_empty() {
        writeln!(out, "no search matches (explain one with --search ID)")?;
    }
    for e in &explained {
        print_explanation(out, e, &doc)?;
    }
    Ok(Outcome::Success)
}
