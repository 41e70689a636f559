//! `check --searches F [--cost DOCS.jsonl [--top N]]`: compile, validate
//! and probe (the engine's hostile documents); print every error, or on
//! success the counts, automaton size, compile time and memory — and with
//! `--cost`, the searches ranked by what they cost on the documents
//! (`commands::cost`).

use std::io::Write;

use anyhow::Context;
use std::path::Path;

use super::{human_bytes, peak_rss_bytes, print_problems, Outcome};
use crate::engine::Matcher;
use crate::query::Limits;
use crate::searches::Catalog;

/// Runs `check`. Errors and warnings go to `err`, the report to `out`.
///
/// # Errors
///
/// When the file cannot be read or the automata cannot be built.
pub fn run(
    searches: &Path,
    cost: Option<(&Path, usize)>,
    limits: &Limits,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let catalog = match Catalog::from_path(searches, limits) {
        Ok(c) => c,
        Err(e) => {
            print_problems(&e, err)?;
            return Ok(Outcome::InvalidInput);
        }
    };
    for (topic, search, w) in catalog.warnings() {
        writeln!(
            err,
            "warning: {}\n  --> topic {:?}, search {:?}, column {}\n   | {}\n   = note: read as: {}\n",
            w.message, topic.id, search.id, w.column, search.text, w.reading
        )?;
    }
    let matcher = Matcher::new(&catalog)?;
    // Searches that would panic or be too expensive on hostile documents
    // are refused here, as the service refuses them at reload.
    if let Some(e) = matcher.probe_catalog(&catalog) {
        print_problems(&e, err)?;
        return Ok(Outcome::InvalidInput);
    }
    let s = matcher.stats();
    writeln!(out, "ok: {}", searches.display())?;
    writeln!(out, "  topics            {}", s.topics)?;
    writeln!(out, "  searches          {}", s.searches)?;
    writeln!(
        out,
        "  leaves            {} ({} distinct)",
        s.leaves, s.distinct_leaves
    )?;
    writeln!(out, "  terms             {}", s.terms)?;
    writeln!(out, "  wildcards         {}", s.wildcards)?;
    writeln!(out, "  CJK substrings    {}", s.cjk)?;
    writeln!(
        out,
        "  regexes           {} ({} run only where their prefix literal occurs)",
        s.regexes, s.regexes_filtered
    )?;
    writeln!(out, "  warnings          {}", catalog.warnings().count())?;
    writeln!(
        out,
        "  automaton size    {}",
        human_bytes(s.heap_bytes as u64)
    )?;
    writeln!(
        out,
        "  compile time      {:.1} ms",
        s.compile_time.as_secs_f64() * 1e3
    )?;
    if let Some(peak) = peak_rss_bytes() {
        writeln!(out, "  peak memory       {}", human_bytes(peak))?;
    }
    if let Some((docs, top)) = cost {
        let file = std::fs::File::open(docs)
            .with_context(|| format!("cannot open the documents {}", docs.display()))?;
        let mut input = std::io::BufReader::with_capacity(256 * 1024, file);
        writeln!(out)?;
        super::cost::rank(&matcher, &mut input, 1 << 20, top, out)?;
    }
    Ok(Outcome::Success)
}
