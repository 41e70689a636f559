//! `bench`: throughput of the matcher on generated or given searches and
//! documents. Prints compile time and memory, engine docs/s and MB/s with
//! per-document latency percentiles, end-to-end docs/s (JSON in, match
//! records out), and the reference evaluator on a prefix of the documents as
//! the baseline, checking that both return the same matches there.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::commands::{human_bytes, peak_rss_bytes, print_problems, Outcome};
use crate::document::Document;
use crate::engine::reference::Reference;
use crate::engine::Matcher;
use crate::query::Limits;
use crate::record::{write_record, RecordContext};
use crate::searches::Catalog;
use crate::workload;

/// Options of `bench`.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Generated searches (ignored with `searches_file`).
    pub searches: usize,
    /// A searches file instead of generated searches.
    pub searches_file: Option<PathBuf>,
    /// Generated documents (ignored with `input`).
    pub docs: usize,
    /// A JSONL file of documents instead of generated ones.
    pub input: Option<PathBuf>,
    /// Long-form generated documents (articles) instead of tweets.
    pub long_form: bool,
    /// Seed of the generator.
    pub seed: u64,
    /// Documents to run through the reference evaluator (0 = skip).
    pub baseline_docs: usize,
    /// Passes over the documents for the engine measurement.
    pub passes: usize,
    /// Write the workload (`searches.json`, `documents.jsonl`) to this
    /// directory instead of benchmarking, for `check` and `match`.
    pub emit: Option<PathBuf>,
    /// Generate the searches from the vocabulary of the `input` documents
    /// ([`workload::realistic`]) instead of the brand generator.
    pub realistic: bool,
    /// Learn the terms' document frequencies from the first this many
    /// documents and choose anchors by them (0: by search counts).
    pub learn_frequencies: usize,
    /// Percent of the generated searches given a regex leaf
    /// ([`workload::with_regex_leaves`]).
    pub regex_percent: u32,
    /// Also measure what counting per-search costs costs: passes with and
    /// without counting, alternating, this many pairs (0: skip).
    pub cost_overhead_pairs: usize,
    /// Move the matcher's randomly read arrays to 2 MiB pages
    /// ([`crate::huge_pages`]) before the passes, as `match` does.
    pub huge_pages: bool,
}

/// Figures of one run, also printed.
#[derive(Clone, Debug, Default)]
pub struct BenchReport {
    /// Engine documents per second.
    pub docs_per_sec: f64,
    /// Engine input megabytes (of field text) per second.
    pub mb_per_sec: f64,
    /// Median per-document latency.
    pub p50: Duration,
    /// 99th percentile per-document latency.
    pub p99: Duration,
    /// Match records per pass.
    pub matches: u64,
    /// End-to-end documents per second.
    pub end_to_end_docs_per_sec: f64,
    /// Reference documents per second (0 when skipped).
    pub reference_docs_per_sec: f64,
    /// Compile time.
    pub compile: Duration,
}

/// Runs the benchmark, printing to `out`.
///
/// # Errors
///
/// When inputs cannot be read or the engine cannot be built.
pub fn run(opts: &BenchOptions, out: &mut dyn Write) -> anyhow::Result<(Outcome, BenchReport)> {
    let input_lines = opts.input.as_deref().map(super::read_lines).transpose()?;
    let (searches_json, what) = match (&opts.searches_file, &input_lines) {
        (Some(p), _) => (
            std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
            format!("searches from {}", p.display()),
        ),
        (None, Some(lines)) if opts.realistic => {
            let vocabulary = workload::realistic::Vocabulary::of(lines);
            anyhow::ensure!(
                vocabulary.is_usable(),
                "too few documents to draw searches from every frequency band"
            );
            (
                vocabulary
                    .searches_json(opts.searches, opts.seed)
                    .into_bytes(),
                format!(
                    "{} searches from the documents' vocabulary (seed {}; {} rare, {} mid, {} common words)",
                    opts.searches,
                    opts.seed,
                    vocabulary.rare.len(),
                    vocabulary.mid.len(),
                    vocabulary.common.len()
                ),
            )
        }
        (None, None) if opts.realistic => {
            anyhow::bail!("--realistic needs --input FILE (scripts/fetch-real-posts.py makes one)")
        }
        (None, _) => (
            workload::with_regex_leaves(
                &workload::searches_json(opts.searches, opts.seed),
                opts.regex_percent,
            )
            .into_bytes(),
            format!(
                "{} generated searches (seed {}{})",
                opts.searches,
                opts.seed,
                if opts.regex_percent > 0 {
                    format!("; a regex leaf in {}% of them", opts.regex_percent)
                } else {
                    String::new()
                }
            ),
        ),
    };
    let catalog = match Catalog::from_json(&searches_json, &Limits::default()) {
        Ok(c) => c,
        Err(e) => {
            print_problems(&e, out)?;
            return Ok((Outcome::InvalidInput, BenchReport::default()));
        }
    };
    let lines: Vec<String> = match input_lines {
        Some(lines) => lines,
        None => {
            let groups = workload::brand_groups(std::str::from_utf8(&searches_json).unwrap_or(""));
            workload::documents(opts.docs, groups.max(1), opts.long_form, opts.seed)
        }
    };
    if let Some(dir) = &opts.emit {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(dir.join("searches.json"), &searches_json)?;
        let mut body = lines.join("\n");
        body.push('\n');
        std::fs::write(dir.join("documents.jsonl"), body)?;
        writeln!(
            out,
            "wrote {what} and {} documents to {}",
            lines.len(),
            dir.display()
        )?;
        return Ok((Outcome::Success, BenchReport::default()));
    }
    let docs: Vec<Document<'_>> = lines
        .iter()
        .filter_map(|l| Document::parse(l.as_bytes(), 1 << 24).ok())
        .collect();
    anyhow::ensure!(!docs.is_empty(), "no valid documents to benchmark");
    let text_bytes: usize = docs
        .iter()
        .map(|d| d.title.as_deref().map_or(0, str::len) + d.text.as_deref().map_or(0, str::len))
        .sum();
    writeln!(
        out,
        "workload: {what}; {} {} documents (avg {} bytes of text)",
        docs.len(),
        match (&opts.input, opts.long_form) {
            (Some(p), _) => format!("from {}", p.display()),
            (None, true) => "generated long-form".into(),
            (None, false) => "generated tweet-length".into(),
        },
        text_bytes / docs.len()
    )?;

    let mut matcher = Matcher::new(&catalog)?;
    if opts.learn_frequencies > 0 {
        let sample = &docs[..opts.learn_frequencies.min(docs.len())];
        let started = Instant::now();
        let frequencies = matcher.learn_frequencies(sample);
        let learnt = started.elapsed();
        matcher = Matcher::with_frequencies(&catalog, &frequencies)?;
        writeln!(
            out,
            "anchors:  by document frequency, learnt from the first {} documents ({} of the catalog's terms seen) in {:.3} s",
            frequencies.documents(),
            frequencies.terms(),
            learnt.as_secs_f64()
        )?;
    }
    let matcher = matcher;
    let stats = matcher.stats().clone();
    writeln!(
        out,
        "compile:  {:.3} s for {} searches ({} terms, {} wildcards, {} regexes, {} of them literal-filtered), automaton {}, peak memory {}",
        stats.compile_time.as_secs_f64(),
        stats.searches,
        stats.terms,
        stats.wildcards,
        stats.regexes,
        stats.regexes_filtered,
        human_bytes(stats.heap_bytes as u64),
        peak_rss_bytes().map_or("unknown".into(), human_bytes)
    )?;

    // Engine: warm-up pass, then timed passes with per-document latency.
    let mut scratch = matcher.scratch();
    if opts.huge_pages {
        let mut arrays = matcher.hot_memory();
        arrays.extend(scratch.hot_memory());
        let started = Instant::now();
        let backed = crate::huge_pages::back_with_huge_pages(&arrays);
        writeln!(
            out,
            "memory:   the matcher's randomly read arrays in 2 MiB pages: {} collapsed, {} refused, in {:.3} s",
            human_bytes(backed.collapsed as u64),
            human_bytes(backed.refused as u64),
            started.elapsed().as_secs_f64()
        )?;
    }
    let mut matches = 0u64;
    let (mut candidates, mut occurrences, mut matched_searches) = (0usize, 0usize, 0usize);
    let (mut gated, mut evaluated, mut decided) = (0usize, 0usize, 0usize);
    for d in &docs {
        let found = matcher.match_document(d, &mut scratch);
        matches += found.len() as u64;
        matched_searches += found.iter().map(|t| t.searches.len()).sum::<usize>();
        candidates += scratch.last_candidates();
        gated += scratch.last_gated();
        evaluated += scratch.last_evaluated();
        decided += scratch.last_decided();
        occurrences += scratch.last_occurrences();
    }
    let per_doc = |n: usize| n as f64 / docs.len() as f64;
    writeln!(
        out,
        "work:     {:.2} candidate searches woken, {:.2} through their gates, {:.2} evaluated ({:.2} of them decided by their exact branches), {:.2} matched searches, {:.2} match records and {:.1} feature occurrences per document",
        per_doc(candidates),
        per_doc(gated),
        per_doc(evaluated),
        per_doc(decided),
        per_doc(matched_searches),
        matches as f64 / docs.len() as f64,
        per_doc(occurrences)
    )?;
    let mut lat = Vec::with_capacity(docs.len() * opts.passes.max(1));
    let started = Instant::now();
    for _ in 0..opts.passes.max(1) {
        let mut pass_matches = 0u64;
        for d in &docs {
            let t = Instant::now();
            pass_matches += matcher.match_document(d, &mut scratch).len() as u64;
            lat.push(t.elapsed());
        }
        anyhow::ensure!(
            pass_matches == matches,
            "match count changed between passes"
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n = (docs.len() * opts.passes.max(1)) as f64;
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    let mut report = BenchReport {
        docs_per_sec: n / elapsed,
        mb_per_sec: text_bytes as f64 * opts.passes.max(1) as f64 / elapsed / 1e6,
        p50: pct(0.5),
        p99: pct(0.99),
        matches,
        compile: stats.compile_time,
        ..BenchReport::default()
    };
    writeln!(
        out,
        "engine:   {:.0} docs/s, {:.1} MB/s, latency p50 {:.2} µs p99 {:.2} µs, {} match records per pass ({:.1}% of documents match)",
        report.docs_per_sec,
        report.mb_per_sec,
        report.p50.as_secs_f64() * 1e6,
        report.p99.as_secs_f64() * 1e6,
        matches,
        100.0 * docs.iter().filter(|d| !matcher.match_document(d, &mut scratch).is_empty()).count() as f64 / docs.len() as f64
    )?;

    if opts.cost_overhead_pairs > 0 {
        cost_overhead(
            &matcher,
            &docs,
            matches,
            evaluated,
            opts.cost_overhead_pairs,
            out,
        )?;
    }

    // End to end: parse JSON, match, write records (to memory).
    let started = Instant::now();
    let mut buf = Vec::with_capacity(1 << 20);
    let mut records = 0u64;
    let ctx = RecordContext {
        matched_at: "2019-07-24T14:16:02.113Z",
        ..RecordContext::default()
    };
    for l in &lines {
        let Ok(d) = Document::parse(l.as_bytes(), 1 << 24) else {
            continue;
        };
        for m in matcher.match_document(&d, &mut scratch) {
            write_record(&mut buf, &matcher, &d, m, &ctx);
            records += 1;
        }
        if buf.len() > 1 << 20 {
            buf.clear();
        }
    }
    anyhow::ensure!(
        records == matches,
        "end-to-end produced {records} records, engine {matches}"
    );
    report.end_to_end_docs_per_sec = lines.len() as f64 / started.elapsed().as_secs_f64();
    writeln!(
        out,
        "end-to-end (JSON in, match records out): {:.0} docs/s",
        report.end_to_end_docs_per_sec
    )?;

    if opts.baseline_docs > 0 {
        let reference = Reference::new(&catalog);
        let k = opts.baseline_docs.min(docs.len());
        let started = Instant::now();
        let mut agree = true;
        for d in &docs[..k] {
            let want = reference.match_document(d);
            agree &= matcher.match_document(d, &mut scratch) == want.as_slice();
        }
        report.reference_docs_per_sec = k as f64 / started.elapsed().as_secs_f64();
        writeln!(
            out,
            "baseline: reference evaluator (each search on its own) {:.1} docs/s on the first {k} documents; engine is {:.0}× faster; results {}",
            report.reference_docs_per_sec,
            report.docs_per_sec / report.reference_docs_per_sec,
            if agree { "identical" } else { "DIFFER" }
        )?;
        anyhow::ensure!(agree, "the engine and the reference evaluator disagree");
    }
    Ok((Outcome::Success, report))
}

/// Documents per slice in [`cost_overhead`]: about a tenth of a second at
/// 100,000 real-post searches, so a burst of load elsewhere on the machine
/// falls on both sides of a few slices rather than on one whole pass.
const COST_SLICE: usize = 1_000;

/// Slices between two takes of the counts (and their time counted): about
/// a second's documents at 100,000 real-post searches, as the service
/// takes them once a second.
const COST_TAKE_EVERY: usize = 10;

/// Passes over `docs` without and with per-search costs counted (as the
/// service counts them: one document in 64 timed, the counts taken every
/// [`COST_TAKE_EVERY`] slices, the take's time counted), `pairs`
/// times. Within a pass the two alternate slice by slice, in turn first
/// (ABBA), so the machine's drift falls on both alike; a pair's ratio is
/// the counting slices' total time over the others'. Prints each pair's
/// ratio and the median.
fn cost_overhead(
    matcher: &Matcher,
    docs: &[Document<'_>],
    matches: u64,
    evaluated: usize,
    pairs: usize,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut plain = matcher.scratch();
    let mut counting = matcher.scratch();
    counting.count_costs(crate::service::cost::SAMPLE_EVERY);
    let slice_pass = |scratch: &mut crate::engine::Scratch,
                      slice: &[Document<'_>],
                      found: &mut u64,
                      counted: &mut u64,
                      take: bool|
     -> f64 {
        let started = Instant::now();
        *found += slice
            .iter()
            .map(|d| matcher.match_document(d, scratch).len() as u64)
            .sum::<u64>();
        if take {
            scratch.take_costs(|_, c| *counted += c.evaluations);
        }
        started.elapsed().as_secs_f64()
    };
    let mut ratios = Vec::with_capacity(pairs);
    for _ in 0..pairs {
        let (mut without, mut with) = (0.0, 0.0);
        let (mut found_without, mut found_with, mut counted) = (0u64, 0u64, 0u64);
        let slices = docs.chunks(COST_SLICE).count();
        for (i, slice) in docs.chunks(COST_SLICE).enumerate() {
            let take = (i + 1) % COST_TAKE_EVERY == 0 || i + 1 == slices;
            let mut run_plain =
                || without += slice_pass(&mut plain, slice, &mut found_without, &mut 0, take);
            if i % 2 == 0 {
                run_plain();
                with += slice_pass(&mut counting, slice, &mut found_with, &mut counted, take);
            } else {
                with += slice_pass(&mut counting, slice, &mut found_with, &mut counted, take);
                run_plain();
            }
        }
        anyhow::ensure!(
            found_without == matches && found_with == matches,
            "match count changed between passes"
        );
        anyhow::ensure!(
            counted == evaluated as u64,
            "costs counted {counted} evaluations, the engine made {evaluated}"
        );
        ratios.push(with / without);
    }
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
    ratios.sort_by(f64::total_cmp);
    writeln!(
        out,
        "costs:    counting per-search costs takes {:.3}× the time of not counting (median of {} pairs of passes alternating every {} documents: {})",
        ratios[ratios.len() / 2],
        pairs,
        COST_SLICE,
        shown.join(", ")
    )?;
    Ok(())
}
