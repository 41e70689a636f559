//! `match --searches F [--input F] [--output F]`: JSONL documents in, JSONL
//! match records out (docs/formats.md §2.3, without `searches_version` and `input`).
//!
//! Bad lines (not UTF-8, not JSON, no `id`, no text, longer than the limit)
//! and documents that spend the matching work budget (`too expensive`, with
//! the search that spent it) are reported on the error stream with their
//! line number and skipped; the command exits 0 unless `strict` is set. A line longer than the limit is
//! never held in memory whole: its excess is read and discarded.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::Context;

use super::{print_problems, Outcome};
use crate::document::Document;
use crate::engine::Matcher;
use crate::query::Limits;
use crate::record::{now_rfc3339, write_record, RecordContext};
use crate::searches::Catalog;

/// Options of `match`.
#[derive(Clone, Debug)]
pub struct MatchOptions {
    /// The searches file.
    pub searches: std::path::PathBuf,
    /// Longest accepted line, in bytes.
    pub max_line_bytes: usize,
    /// Exit 1 when any line was bad.
    pub strict: bool,
    /// Report bad lines at most this many times (then count silently).
    pub max_reported: usize,
    /// Work budget of one document ([`crate::engine::DEFAULT_WORK_BUDGET`]).
    pub max_work_per_document: u64,
}

/// Counts of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatchSummary {
    /// Documents matched (good lines).
    pub documents: u64,
    /// Bad lines skipped.
    pub bad: u64,
    /// Match records written.
    pub records: u64,
    /// Reading, compiling and validating the searches.
    pub load: std::time::Duration,
    /// Reading, matching and writing the documents.
    pub matching: std::time::Duration,
}

/// Runs `match` from the file `input` (standard input when `None`) to the
/// file `output` (standard output when `None`), reporting bad lines to
/// `err`; logs the counts and the matching time apart from loading the
/// searches.
///
/// # Errors
///
/// When a file cannot be opened or created, or [`run`] fails.
pub fn run_files(
    opts: &MatchOptions,
    input: Option<&Path>,
    output: Option<&Path>,
    err: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    const BUFFER: usize = 256 * 1024;
    let stdin = std::io::stdin();
    let mut reader: Box<dyn BufRead> = match input {
        Some(p) => Box::new(BufReader::with_capacity(
            BUFFER,
            File::open(p).with_context(|| format!("cannot open the input {}", p.display()))?,
        )),
        None => Box::new(BufReader::with_capacity(BUFFER, stdin.lock())),
    };
    let stdout = std::io::stdout();
    let mut writer: Box<dyn Write> = match output {
        Some(p) => Box::new(BufWriter::with_capacity(
            BUFFER,
            File::create(p).with_context(|| format!("cannot create the output {}", p.display()))?,
        )),
        None => Box::new(BufWriter::with_capacity(BUFFER, stdout.lock())),
    };
    let (outcome, summary) = run(opts, &mut reader, &mut writer, err)?;
    if outcome == Outcome::Success || summary.documents > 0 {
        let secs = summary.matching.as_secs_f64();
        tracing::info!(
            documents = summary.documents,
            bad_lines = summary.bad,
            records = summary.records,
            searches_load_secs = format!("{:.3}", summary.load.as_secs_f64()),
            match_secs = format!("{secs:.3}"),
            docs_per_sec = format!("{:.0}", summary.documents as f64 / secs.max(1e-9)),
            "match finished"
        );
    }
    Ok(outcome)
}

/// Runs `match` from `input` to `output`, reporting to `err`.
///
/// # Errors
///
/// When the searches cannot be read, or reading or writing fails.
pub fn run(
    opts: &MatchOptions,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<(Outcome, MatchSummary)> {
    let started = std::time::Instant::now();
    let catalog = match Catalog::from_path(&opts.searches, &Limits::default()) {
        Ok(c) => c,
        Err(e) => {
            print_problems(&e, err)?;
            return Ok((Outcome::InvalidInput, MatchSummary::default()));
        }
    };
    let matcher = Matcher::new(&catalog)?;
    let mut scratch = matcher.scratch();
    scratch.set_budget(opts.max_work_per_document);
    let mut summary = MatchSummary {
        load: started.elapsed(),
        ..MatchSummary::default()
    };
    let started = std::time::Instant::now();
    let mut line = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(64 * 1024);
    let mut matched_at = now_rfc3339();
    let mut line_no = 0u64;
    loop {
        line.clear();
        let (read, overflow) = read_line_limited(input, &mut line, opts.max_line_bytes)?;
        if read == 0 {
            break;
        }
        line_no += 1;
        if line_no.is_multiple_of(512) {
            matched_at = now_rfc3339();
        }
        let trimmed = trim_line(&line);
        if trimmed.is_empty() && !overflow {
            continue; // blank lines separate nothing in JSONL; not an error
        }
        let parsed = if overflow {
            Err(crate::document::BadDocument::TooLarge {
                size: read,
                limit: opts.max_line_bytes,
            })
        } else {
            Document::parse(trimmed, opts.max_line_bytes)
        };
        let doc = match parsed {
            Ok(d) => d,
            Err(e) => {
                summary.bad += 1;
                if summary.bad <= opts.max_reported as u64 {
                    writeln!(err, "line {line_no}: skipped: {e}")?;
                }
                continue;
            }
        };
        let ctx = RecordContext {
            matched_at: &matched_at,
            ..RecordContext::default()
        };
        let matches = match matcher.try_match_document(&doc, None, &mut scratch) {
            Ok(m) => m,
            Err(e) => {
                summary.bad += 1;
                if summary.bad <= opts.max_reported as u64 {
                    let search = e.search.map_or("(indexing)", |s| matcher.search_id(s));
                    writeln!(
                        err,
                        "line {line_no}: skipped: too expensive: {e} (search `{search}`)"
                    )?;
                }
                continue;
            }
        };
        summary.documents += 1;
        for m in matches {
            write_record(&mut out, &matcher, &doc, m, &ctx);
            summary.records += 1;
        }
        if out.len() >= 60 * 1024 {
            output.write_all(&out)?;
            out.clear();
        }
    }
    output.write_all(&out)?;
    output.flush()?;
    summary.matching = started.elapsed();
    if summary.bad > opts.max_reported as u64 {
        writeln!(
            err,
            "… {} more bad lines not shown",
            summary.bad - opts.max_reported as u64
        )?;
    }
    let outcome = if opts.strict && summary.bad > 0 {
        Outcome::InvalidInput
    } else {
        Outcome::Success
    };
    Ok((outcome, summary))
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut l = line;
    while let [rest @ .., b'\n' | b'\r'] = l {
        l = rest;
    }
    l
}

/// Reads one line into `buf`, keeping at most `limit + 1` bytes; returns the
/// line's full length (0 at end of input) and whether it exceeded `limit`.
fn read_line_limited(
    input: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<(usize, bool)> {
    let mut total = 0;
    loop {
        let chunk = match input.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok((total, total > limit));
        }
        let (take, done) = match memchr_newline(chunk) {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = (limit + 2).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..take.min(room)]);
        total += take;
        input.consume(take);
        if done {
            // The newline (and a CR before it) do not count toward the limit.
            let content = total - 1 - usize::from(buf.len() >= 2 && buf[buf.len() - 2] == b'\r');
            return Ok((total, content > limit));
        }
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_and_flagged() {
        let data = format!("{}\nshort\n{}", "x".repeat(100), "y".repeat(11));
        let mut r = std::io::BufReader::with_capacity(7, data.as_bytes());
        let mut buf = Vec::new();
        assert_eq!(
            read_line_limited(&mut r, &mut buf, 10).unwrap(),
            (101, true)
        );
        assert!(buf.len() <= 12);
        buf.clear();
        assert_eq!(read_line_limited(&mut r, &mut buf, 10).unwrap(), (6, false));
        assert_eq!(buf, b"short\n");
        buf.clear();
        assert_eq!(read_line_limited(&mut r, &mut buf, 10).unwrap(), (11, true));
        buf.clear();
        assert_eq!(read_line_limited(&mut r, &mut buf, 10).unwrap(), (0, false));
    }
}
