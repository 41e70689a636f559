//! The `topic-matcher` binary: parse arguments, set up logging, call into
//! the library, map the outcome to an exit code (0 success, 1 invalid input,
//! 2 runtime failure).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use topic_matcher::commands::{self, bench::BenchOptions, matching::MatchOptions, Outcome};
use topic_matcher::query::Limits;

/// Matches social posts against stored boolean keyword searches.
#[derive(Parser, Debug)]
#[command(name = "topic-matcher", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Offline matching: JSONL documents in, JSONL match records out.
    Match {
        /// The searches file (JSON, SPEC §2.2).
        #[arg(long)]
        searches: PathBuf,
        /// Documents, one JSON object per line (default: stdin).
        #[arg(long)]
        input: Option<PathBuf>,
        /// Where to write match records (default: stdout).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Exit 1 if any input line was bad.
        #[arg(long)]
        strict: bool,
        /// Longest accepted input line in bytes.
        #[arg(long, default_value_t = 1 << 20)]
        max_line_bytes: usize,
    },
    /// Compile and validate searches; print every error, or counts and sizes.
    Check {
        /// The searches file (JSON, SPEC §2.2).
        #[arg(long)]
        searches: PathBuf,
    },
    /// Throughput benchmark on generated or given searches and documents.
    Bench {
        /// Number of generated searches.
        #[arg(long = "searches", default_value_t = 10_000, conflicts_with = "searches_file")]
        searches: usize,
        /// Use this searches file instead of generated searches.
        #[arg(long)]
        searches_file: Option<PathBuf>,
        /// Number of generated documents.
        #[arg(long, default_value_t = 100_000)]
        docs: usize,
        /// Use these JSONL documents instead of generated ones.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Generate long-form documents (articles) instead of tweets.
        #[arg(long)]
        long_form: bool,
        /// Seed of the workload generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Documents to run through the reference evaluator as the baseline
        /// (0 skips it).
        #[arg(long, default_value_t = 200)]
        baseline_docs: usize,
        /// Timed passes over the documents.
        #[arg(long, default_value_t = 3)]
        passes: usize,
        /// Write the workload (searches.json, documents.jsonl) to this
        /// directory instead of benchmarking.
        #[arg(long, value_name = "DIR")]
        emit_workload: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            };
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::InvalidInput) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let stderr = std::io::stderr();
    match cli.command {
        Command::Match { searches, input, output, strict, max_line_bytes } => {
            let opts = MatchOptions { searches, max_line_bytes, strict, max_reported: 100 };
            let stdin = std::io::stdin();
            let mut reader: Box<dyn std::io::BufRead> = match &input {
                Some(p) => Box::new(BufReader::with_capacity(
                    256 * 1024,
                    File::open(p).with_context(|| format!("cannot open the input {}", p.display()))?,
                )),
                None => Box::new(BufReader::with_capacity(256 * 1024, stdin.lock())),
            };
            let stdout = std::io::stdout();
            let mut writer: Box<dyn Write> = match &output {
                Some(p) => Box::new(BufWriter::with_capacity(
                    256 * 1024,
                    File::create(p).with_context(|| format!("cannot create the output {}", p.display()))?,
                )),
                None => Box::new(BufWriter::with_capacity(256 * 1024, stdout.lock())),
            };
            let (outcome, summary) = commands::matching::run(&opts, &mut reader, &mut writer, &mut stderr.lock())?;
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
        Command::Check { searches } => {
            commands::check::run(&searches, &Limits::default(), &mut std::io::stdout().lock(), &mut stderr.lock())
        }
        Command::Bench { searches, searches_file, docs, input, long_form, seed, baseline_docs, passes, emit_workload } => {
            let opts = BenchOptions {
                searches,
                searches_file,
                docs,
                input,
                long_form,
                seed,
                baseline_docs,
                passes,
                emit: emit_workload,
            };
            Ok(commands::bench::run(&opts, &mut std::io::stdout().lock())?.0)
        }
    }
}
