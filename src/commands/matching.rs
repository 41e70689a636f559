//! `match --searches F [--input F] [--output F]`: JSONL documents in, JSONL
//! match records out (docs/formats.md §2.3, without `searches_version` and `input`).
//!
//! Bad lines (not UTF-8, not JSON, no `id`, no text, longer than the limit)
//! and documents that spend the matching work budget (`too expensive`, with
//! the search that spent it) are reported on the error stream with their
//! line number and skipped; the command exits 0 unless `strict` is set. A
//! line longer than the limit is never held in memory whole: its excess is
//! read and discarded.
//!
//! # Threads
//!
//! This thread reads the input in chunks (up to 1,024 lines or 1 MiB,
//! numbered), `threads` workers each match whole chunks with their own
//! scratch space into a record buffer, and this thread writes the buffers
//! and the bad-line reports in chunk order, so the output is the same
//! bytes (but `matched_at`) for any number of threads. At most two chunks
//! per worker wait to be matched: memory is bounded by the chunk size,
//! not the input. With one thread no worker is started. A chunk's input
//! and record buffers are handed back once used and taken by the next
//! chunks (`Buffers`), so they are not grown from small again each time.
//!
//! # Output
//!
//! At 100,000 searches the records are ~2 KB per post. An `--output`
//! file is written by a [`DirectOutput`]: in 4 MiB blocks, around the page
//! cache (direct I/O), by a thread of its own, so the cores match instead
//! of copying records into the kernel; if the disk is slower than the
//! records, or refuses direct I/O, the rest goes the way standard output
//! goes. Standard output goes through a [`DropBehind`] writer: when it is
//! redirected to a regular file, its pages leave the page cache soon after
//! they are written instead of piling up.
//!
//! # Ending
//!
//! The command line's `match` ([`run_files`]) does not free the searches
//! and the matcher when it is done: the process ends next and the OS takes
//! its memory back at once (freeing the syntax trees of a million
//! searches one by one took 0.5–0.8 s). [`run`] frees them as usual.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::Context;

use super::{print_problems, Outcome};
use crate::direct_output::DirectOutput;
use crate::document::Document;
use crate::drop_behind::DropBehind;
use crate::engine::Matcher;
use crate::huge_pages::back_with_huge_pages;
use crate::query::Limits;
use crate::record::{now_rfc3339, DocumentRecords, RecordContext};
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
    /// Threads that match (1: this thread alone). Output order is the
    /// input's whatever the number.
    pub threads: usize,
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
        Some(p) => {
            Box::new(DirectOutput::new(File::create(p).with_context(|| {
                format!("cannot create the output {}", p.display())
            })?))
        }
        None => Box::new(BufWriter::with_capacity(
            BUFFER,
            DropBehind::new(stdout.lock()),
        )),
    };
    let (outcome, summary, loaded) = load_and_match(opts, &mut reader, &mut writer, err)?;
    // The process ends after this command, and the OS takes its memory
    // back at once: freeing the parsed searches and the matcher piece by
    // piece made the wall clock after matching 0.6–0.9 s at a million
    // searches (0.12 s without) and ~0.1 s at 100,000 (0.04 s without).
    std::mem::forget(loaded);
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
    let (outcome, summary, _loaded) = load_and_match(opts, input, output, err)?;
    Ok((outcome, summary))
}

/// [`run`], also giving back the searches it loaded (`None` when they
/// were rejected), for the caller to free or not.
fn load_and_match(
    opts: &MatchOptions,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<(Outcome, MatchSummary, Option<Loaded>)> {
    let started = std::time::Instant::now();
    let Some(loaded) = load(opts, err)? else {
        return Ok((Outcome::InvalidInput, MatchSummary::default(), None));
    };
    let (outcome, summary) =
        match_all(&loaded.matcher, started.elapsed(), opts, input, output, err)?;
    Ok((outcome, summary, Some(loaded)))
}

/// The searches of a run, parsed and compiled.
struct Loaded {
    /// Kept with the matcher, so that both are freed (or not) together.
    _catalog: Catalog,
    matcher: Matcher,
}

/// Loads `opts.searches`, or reports their problems to `err` (`None`).
fn load(opts: &MatchOptions, err: &mut dyn Write) -> anyhow::Result<Option<Loaded>> {
    let catalog = match Catalog::from_path(&opts.searches, &Limits::default()) {
        Ok(c) => c,
        Err(e) => {
            print_problems(&e, err)?;
            return Ok(None);
        }
    };
    let matcher = Matcher::new(&catalog)?;
    // Its arrays in 2 MiB pages (`huge_pages`; each scratch space's too,
    // where it is made; how much the kernel granted is in `bench`'s
    // output).
    let _ = back_with_huge_pages(&matcher.hot_memory());
    Ok(Some(Loaded {
        _catalog: catalog,
        matcher,
    }))
}

/// Matches every line of `input` with `matcher` (loaded in `load_time`).
fn match_all(
    matcher: &Matcher,
    load_time: std::time::Duration,
    opts: &MatchOptions,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<(Outcome, MatchSummary)> {
    let mut summary = MatchSummary {
        load: load_time,
        ..MatchSummary::default()
    };
    let started = std::time::Instant::now();
    let buffers = Buffers::new(opts.threads.max(1) * 3 + 2);
    let mut written = Written {
        output,
        err,
        summary: &mut summary,
        max_reported: opts.max_reported as u64,
        buffers: &buffers,
    };
    if opts.threads <= 1 {
        let mut scratch = matcher.scratch();
        scratch.set_budget(opts.max_work_per_document);
        let _ = back_with_huge_pages(&scratch.hot_memory());
        let mut reader = ChunkReader {
            input,
            limit: opts.max_line_bytes,
            seq: 0,
            next_line: 1,
            buffers: &buffers,
        };
        while let Some(chunk) = reader.next()? {
            written.write(match_chunk(matcher, &mut scratch, opts, chunk, &buffers))?;
        }
    } else {
        match_in_parallel(matcher, opts, input, &mut written, &buffers)?;
    }
    output_done(&mut written)?;
    summary.matching = started.elapsed();
    let outcome = if opts.strict && summary.bad > 0 {
        Outcome::InvalidInput
    } else {
        Outcome::Success
    };
    Ok((outcome, summary))
}

/// Lines read together and matched as a unit by one thread.
struct Chunk {
    /// Its place in the input (results are written in this order).
    seq: u64,
    /// Line number of its first line (1-based).
    first_line: u64,
    /// The lines' bytes, one after another (a line longer than the limit
    /// cut after `limit + 2` bytes).
    data: Vec<u8>,
    /// Per line: its end in `data`, its full length and whether it was
    /// longer than the limit.
    lines: Vec<(usize, usize, bool)>,
}

/// What matching a chunk produced, to be written in input order.
struct ChunkResult {
    seq: u64,
    records: Vec<u8>,
    /// Bad lines, in order: (line number, why).
    problems: Vec<(u64, String)>,
    documents: u64,
    written: u64,
}

/// Byte buffers handed back after use (a chunk's input once matched, its
/// records once written) and taken again, so that each chunk does not
/// allocate megabytes anew, and fault them in, as it grows them. Keeps at
/// most as many as can be in use at once.
struct Buffers {
    kept: std::sync::Mutex<Vec<Vec<u8>>>,
    most: usize,
}

impl Buffers {
    fn new(most: usize) -> Buffers {
        Buffers {
            kept: std::sync::Mutex::new(Vec::new()),
            most,
        }
    }

    /// An empty buffer, one handed back if there is one.
    fn take(&self) -> Vec<u8> {
        let kept = self.kept.lock().ok().and_then(|mut kept| kept.pop());
        kept.unwrap_or_else(|| Vec::with_capacity(64 * 1024))
    }

    /// Hands `buf` back for another chunk.
    fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        if let Ok(mut kept) = self.kept.lock() {
            if kept.len() < self.most {
                kept.push(buf);
            }
        }
    }
}

/// A chunk closes at this many lines or bytes.
const CHUNK_LINES: usize = 1024;
const CHUNK_BYTES: usize = 1 << 20;

/// Cuts the input into chunks, numbering them and their lines.
struct ChunkReader<'a> {
    input: &'a mut dyn BufRead,
    limit: usize,
    seq: u64,
    next_line: u64,
    buffers: &'a Buffers,
}

impl ChunkReader<'_> {
    /// The next chunk (`None` at the end of the input).
    fn next(&mut self) -> std::io::Result<Option<Chunk>> {
        let mut data = self.buffers.take();
        let mut lines = Vec::new();
        while lines.len() < CHUNK_LINES && data.len() < CHUNK_BYTES {
            let (read, overflow) = read_line_limited(self.input, &mut data, self.limit)?;
            if read == 0 {
                break;
            }
            lines.push((data.len(), read, overflow));
        }
        if lines.is_empty() {
            self.buffers.give(data);
            return Ok(None);
        }
        let chunk = Chunk {
            seq: self.seq,
            first_line: self.next_line,
            data,
            lines,
        };
        self.seq += 1;
        self.next_line += chunk.lines.len() as u64;
        Ok(Some(chunk))
    }
}

/// Parses and matches every line of `chunk`, writing its records (into a
/// buffer of `buffers`, to which the chunk's input goes back).
fn match_chunk(
    matcher: &Matcher,
    scratch: &mut crate::engine::Scratch,
    opts: &MatchOptions,
    chunk: Chunk,
    buffers: &Buffers,
) -> ChunkResult {
    let matched_at = now_rfc3339();
    let ctx = RecordContext {
        matched_at: &matched_at,
        ..RecordContext::default()
    };
    let mut result = ChunkResult {
        seq: chunk.seq,
        records: buffers.take(),
        problems: Vec::new(),
        documents: 0,
        written: 0,
    };
    let mut parts = DocumentRecords::default();
    let mut start = 0;
    for (i, &(end, read, overflow)) in chunk.lines.iter().enumerate() {
        let line = &chunk.data[start..end];
        start = end;
        let line_no = chunk.first_line + i as u64;
        let trimmed = trim_line(line);
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
                result.problems.push((line_no, e.to_string()));
                continue;
            }
        };
        match matcher.try_match_document(&doc, None, scratch) {
            Ok(matches) => {
                result.documents += 1;
                if !matches.is_empty() {
                    parts.begin(&doc, &ctx);
                }
                for m in matches {
                    parts.write(&mut result.records, matcher, m);
                    result.written += 1;
                }
            }
            Err(e) => {
                let search = e.search.map_or("(indexing)", |s| matcher.search_id(s));
                result
                    .problems
                    .push((line_no, format!("too expensive: {e} (search `{search}`)")));
            }
        }
    }
    buffers.give(chunk.data);
    result
}

/// Matches chunks on `opts.threads` threads while this one reads the
/// input and writes the results in input order. At most two chunks per
/// thread wait to be matched, so memory stays bounded however long the
/// input is.
fn match_in_parallel(
    matcher: &Matcher,
    opts: &MatchOptions,
    input: &mut dyn BufRead,
    written: &mut Written<'_>,
    buffers: &Buffers,
) -> anyhow::Result<()> {
    use std::sync::{mpsc, Mutex};
    let (work_tx, work_rx) = mpsc::sync_channel::<Chunk>(opts.threads * 2);
    let work_rx = Mutex::new(work_rx);
    let (done_tx, done_rx) = mpsc::channel::<ChunkResult>();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        for _ in 0..opts.threads {
            let done_tx = done_tx.clone();
            let work_rx = &work_rx;
            scope.spawn(move || {
                let mut scratch = matcher.scratch();
                scratch.set_budget(opts.max_work_per_document);
                let _ = back_with_huge_pages(&scratch.hot_memory());
                loop {
                    let next = work_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok(chunk)) = next else { return };
                    if done_tx
                        .send(match_chunk(matcher, &mut scratch, opts, chunk, buffers))
                        .is_err()
                    {
                        return; // the writer stopped
                    }
                }
            });
        }
        drop(done_tx);
        let mut reader = ChunkReader {
            input,
            limit: opts.max_line_bytes,
            seq: 0,
            next_line: 1,
            buffers,
        };
        let mut waiting = std::collections::BTreeMap::new();
        let mut next_seq = 0;
        let mut write_ready = |r: ChunkResult, written: &mut Written<'_>| -> anyhow::Result<()> {
            waiting.insert(r.seq, r);
            while let Some(r) = waiting.remove(&next_seq) {
                written.write(r)?;
                next_seq += 1;
            }
            Ok(())
        };
        // On an error the channels close and the threads end.
        while let Some(chunk) = reader.next()? {
            work_tx.send(chunk).ok();
            while let Ok(r) = done_rx.try_recv() {
                write_ready(r, written)?;
            }
        }
        drop(work_tx);
        for r in done_rx {
            write_ready(r, written)?;
        }
        Ok(())
    })
}

/// Where results go, in input order.
struct Written<'a> {
    output: &'a mut dyn Write,
    err: &'a mut dyn Write,
    summary: &'a mut MatchSummary,
    max_reported: u64,
    /// Where a chunk's records go once written.
    buffers: &'a Buffers,
}

impl Written<'_> {
    fn write(&mut self, r: ChunkResult) -> std::io::Result<()> {
        self.output.write_all(&r.records)?;
        self.buffers.give(r.records);
        self.summary.documents += r.documents;
        self.summary.records += r.written;
        for (line_no, why) in r.problems {
            self.summary.bad += 1;
            if self.summary.bad <= self.max_reported {
                writeln!(self.err, "line {line_no}: skipped: {why}")?;
            }
        }
        Ok(())
    }
}

/// Flushes the output and says how many bad lines were not shown.
fn output_done(written: &mut Written<'_>) -> std::io::Result<()> {
    written.output.flush()?;
    let bad = written.summary.bad;
    if bad > written.max_reported {
        writeln!(
            written.err,
            "… {} more bad lines not shown",
            bad - written.max_reported
        )?;
    }
    Ok(())
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut l = line;
    while let [rest @ .., b'\n' | b'\r'] = l {
        l = rest;
    }
    l
}

/// Reads one line onto the end of `buf`, keeping at most `limit + 2` of its
/// bytes; returns the
/// line's full length (0 at end of input) and whether it exceeded `limit`.
pub(super) fn read_line_limited(
    input: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<(usize, bool)> {
    let base = buf.len();
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
        let room = (limit + 2).saturating_sub(buf.len() - base);
        buf.extend_from_slice(&chunk[..take.min(room)]);
        total += take;
        input.consume(take);
        if done {
            // The newline (and a CR before it) do not count toward the limit.
            let kept = buf.len() - base;
            let cr = kept >= 2 && buf[buf.len() - 2] == b'\r';
            let content = total - 1 - usize::from(cr);
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

    /// Records and bad-line reports, with `matched_at` blanked.
    fn run_with(
        threads: usize,
        input: &[u8],
        max_reported: usize,
    ) -> (String, String, MatchSummary) {
        let opts = MatchOptions {
            searches: concat!(env!("CARGO_MANIFEST_DIR"), "/samples/searches.json").into(),
            max_line_bytes: 4096,
            strict: false,
            max_reported,
            max_work_per_document: crate::engine::DEFAULT_WORK_BUDGET,
            threads,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (outcome, summary) = run(&opts, &mut &input[..], &mut out, &mut err).unwrap();
        assert_eq!(outcome, Outcome::Success);
        let records: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["matched_at"] = serde_json::Value::Null;
                v.to_string()
            })
            .collect();
        (records.join("\n"), String::from_utf8(err).unwrap(), summary)
    }

    #[test]
    fn every_thread_count_writes_the_same_records_and_reports_in_input_order() {
        let tweets =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/tweets.jsonl"))
                .unwrap();
        // Enough lines for several chunks, with bad, blank and too long
        // lines spread through them.
        let mut input = String::new();
        for round in 0..6 {
            for (i, line) in tweets.lines().enumerate() {
                match (round * 7 + i) % 97 {
                    0 => input.push_str("not json\n"),
                    1 => input.push('\n'),
                    2 => input.push_str(&format!(
                        "{{\"id\": \"long\", \"text\": \"{}\"}}\n",
                        "a".repeat(5000)
                    )),
                    _ => {}
                }
                let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
                v["id"] = format!("{round}-{i}").into();
                input.push_str(&v.to_string());
                input.push('\n');
            }
        }
        let one = run_with(1, input.as_bytes(), 1000);
        assert!(one.2.documents > CHUNK_LINES as u64 * 2, "{:?}", one.2);
        assert!(one.2.records > 0 && one.2.bad > 10, "{:?}", one.2);
        let numbers: Vec<u64> = one
            .1
            .lines()
            .map(|l| l["line ".len()..l.find(':').unwrap()].parse().unwrap())
            .collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
        for threads in [2, 3, 8] {
            let many = run_with(threads, input.as_bytes(), 1000);
            assert_eq!(many.2.documents, one.2.documents, "{threads} threads");
            assert_eq!(many.2.records, one.2.records, "{threads} threads");
            assert_eq!(many.2.bad, one.2.bad, "{threads} threads");
            assert!(many.0 == one.0, "{threads} threads: records differ");
            assert_eq!(many.1, one.1, "{threads} threads: reports differ");
        }
        // The report limit counts across chunks.
        let few = run_with(2, input.as_bytes(), 3);
        assert_eq!(few.1.lines().count(), 4, "{}", few.1);
        assert!(few.1.ends_with("more bad lines not shown\n"), "{}", few.1);
    }

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
