//! `check --cost DOCS.jsonl`: ranks the searches by what they cost on
//! sample documents, offline (the service's `/searches/cost` ranks them
//! on the live stream).
//!
//! Every document is matched once with costs counted (engine `cost`
//! module), every evaluation timed; the searches are then ranked by work
//! units (deterministic: the same file ranks alike on any machine) with the
//! mean evaluation time beside them, and by matches (the noisiest). Lines
//! are read as `match` reads them: at most `max_line_bytes` each, bad
//! lines counted and skipped; a document that spends the work budget is
//! counted as too expensive (its searches' work up to then is lost).

use std::io::{BufRead, Write};

use crate::document::Document;
use crate::engine::{Matcher, SearchCost, DEFAULT_WORK_BUDGET};
use crate::searches::SearchIdx;

/// What ranking read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CostSummary {
    /// Documents matched.
    pub documents: u64,
    /// Bad lines skipped.
    pub bad: u64,
    /// Documents that spent the work budget.
    pub too_expensive: u64,
}

/// Matches every document of `input` with `matcher`, then prints the `top`
/// searches by work and by matches to `out`.
///
/// # Errors
///
/// Reading or writing failed.
pub fn rank(
    matcher: &Matcher,
    input: &mut dyn BufRead,
    max_line_bytes: usize,
    top: usize,
    out: &mut dyn Write,
) -> anyhow::Result<CostSummary> {
    let mut scratch = matcher.scratch();
    scratch.set_budget(DEFAULT_WORK_BUDGET);
    scratch.count_costs(1);
    let mut summary = CostSummary::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        let (len, too_long) = super::matching::read_line_limited(input, &mut line, max_line_bytes)?;
        if len == 0 {
            break;
        }
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        if too_long {
            summary.bad += 1;
            continue;
        }
        match Document::parse(trimmed, max_line_bytes) {
            Ok(doc) => match matcher.try_match_document(&doc, None, &mut scratch) {
                Ok(_) => summary.documents += 1,
                Err(_) => summary.too_expensive += 1,
            },
            Err(_) => summary.bad += 1,
        }
    }
    let mut costs: Vec<(SearchIdx, SearchCost)> = Vec::new();
    scratch.take_costs(|s, c| costs.push((s, *c)));
    writeln!(
        out,
        "cost on {} documents ({} bad lines skipped, {} too expensive); {} of {} searches evaluated",
        summary.documents,
        summary.bad,
        summary.too_expensive,
        costs.len(),
        matcher.search_count()
    )?;
    let total_work: u64 = costs.iter().map(|(_, c)| c.work).sum::<u64>().max(1);
    costs.sort_by(|a, b| {
        (b.1.work, b.1.evaluations)
            .cmp(&(a.1.work, a.1.evaluations))
            .then_with(|| matcher.search_id(a.0).cmp(matcher.search_id(b.0)))
    });
    writeln!(
        out,
        "\nmost expensive (work units; share of all searches' work):"
    )?;
    writeln!(
        out,
        "  {:<4} {:<28} {:<20} {:>12} {:>6} {:>10} {:>8} {:>10} {:>10}",
        "rank", "search", "topic", "work", "share", "evaluated", "matched", "mean µs", "max work"
    )?;
    for (i, (s, c)) in costs.iter().take(top).enumerate() {
        writeln!(
            out,
            "  {:<4} {:<28} {:<20} {:>12} {:>5.1}% {:>10} {:>8} {:>10.2} {:>10}",
            i + 1,
            matcher.search_id(*s),
            matcher.topic_id(matcher.search_topic(*s)),
            c.work,
            100.0 * c.work as f64 / total_work as f64,
            c.evaluations,
            c.matches,
            c.mean_nanos() as f64 / 1e3,
            c.max_work
        )?;
    }
    costs.sort_by(|a, b| {
        (b.1.matches, b.1.evaluations)
            .cmp(&(a.1.matches, a.1.evaluations))
            .then_with(|| matcher.search_id(a.0).cmp(matcher.search_id(b.0)))
    });
    writeln!(out, "\nnoisiest (matches; share of the documents):")?;
    writeln!(
        out,
        "  {:<4} {:<28} {:<20} {:>8} {:>6} {:>10}",
        "rank", "search", "topic", "matched", "share", "evaluated"
    )?;
    for (i, (s, c)) in costs.iter().take(top).enumerate() {
        writeln!(
            out,
            "  {:<4} {:<28} {:<20} {:>8} {:>5.1}% {:>10}",
            i + 1,
            matcher.search_id(*s),
            matcher.topic_id(matcher.search_topic(*s)),
            c.matches,
            100.0 * c.matches as f64 / summary.documents.max(1) as f64,
            c.evaluations
        )?;
    }
    Ok(summary)
}
