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
use topic_matcher::config::RawConfig;
use topic_matcher::query::Limits;

/// Matches social posts against stored boolean keyword searches.
#[derive(Parser, Debug)]
#[command(name = "topic-matcher", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The command-line overrides of the configuration (docs/operations.md §4) shared by
/// `run`, `status` and `replay`; the searches file flag differs (see
/// [`ServiceArgs`], [`ReplayArgs`]).
#[derive(clap::Args, Debug, Clone)]
struct CommonArgs {
    /// The configuration file (TOML); optional when the flags suffice.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Bootstrap brokers, HOST:PORT[,…].
    #[arg(long)]
    brokers: Option<String>,
    /// Consumer group id.
    #[arg(long)]
    group: Option<String>,
    /// Input topics, TOPIC[,…].
    #[arg(long)]
    input: Option<String>,
    /// kafka:TOPIC, file:PATH or stdout.
    #[arg(long)]
    output: Option<String>,
    /// kafka:TOPIC or file:PATH.
    #[arg(long)]
    dead_letter: Option<String>,
    /// RocksDB state directory.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Admin API address, HOST:PORT (port 0 picks one).
    #[arg(long)]
    admin_addr: Option<String>,
    /// Admin bearer token.
    #[arg(long, env = "TOPIC_MATCHER_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

/// The overrides of `run` and `status`.
#[derive(clap::Args, Debug, Clone)]
struct ServiceArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Searches file.
    #[arg(long)]
    searches: Option<PathBuf>,
}

/// The overrides of `replay`, where `--searches` names search ids: the
/// searches file is `--searches-file`.
#[derive(clap::Args, Debug, Clone)]
struct ReplayArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Searches file.
    #[arg(long)]
    searches_file: Option<PathBuf>,
}

impl CommonArgs {
    fn load(
        self,
        searches: Option<PathBuf>,
    ) -> Result<topic_matcher::config::Config, topic_matcher::config::ConfigError> {
        self.load_with(searches, |raw| raw)
    }

    /// Loads the file, lets `adjust` change it, then applies the flags.
    fn load_with(
        self,
        searches: Option<PathBuf>,
        adjust: impl FnOnce(RawConfig) -> RawConfig,
    ) -> Result<topic_matcher::config::Config, topic_matcher::config::ConfigError> {
        use topic_matcher::config::Overrides;
        let raw = adjust(match &self.config {
            Some(p) => RawConfig::from_file(p)?,
            None => RawConfig::default(),
        });
        raw.validate(Overrides {
            brokers: self.brokers,
            group: self.group,
            input: self.input,
            output: self.output,
            dead_letter: self.dead_letter,
            state_dir: self.state_dir,
            searches,
            admin_addr: self.admin_addr,
            admin_token: self.admin_token,
        })
    }
}

impl ServiceArgs {
    fn load(self) -> Result<topic_matcher::config::Config, topic_matcher::config::ConfigError> {
        self.common.load(self.searches)
    }
}

#[derive(Subcommand, Debug)]
enum SearchesAction {
    /// Re-read the searches sources now.
    Reload {
        /// Accept a change that removes more topics than searches.max_shrink.
        #[arg(long)]
        force: bool,
    },
    /// Return to the previous version (or --to N).
    Rollback {
        /// The version to return to.
        #[arg(long)]
        to: Option<u64>,
    },
    /// List the stored versions; `*` marks the active one.
    History,
    /// Upload a whole searches file as the next version.
    Put {
        /// The searches file (JSON, docs/formats.md §2.2).
        file: PathBuf,
        /// Accept a change that removes more topics than searches.max_shrink.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The streaming service: Kafka in, match records out, checkpoints in RocksDB.
    Run {
        #[command(flatten)]
        args: ServiceArgs,
    },
    /// The service on an embedded Kafka with the bundled sample, and a live dashboard.
    Demo {
        /// How long to stream, in seconds.
        #[arg(long, default_value_t = 30)]
        duration: u64,
        /// Documents produced per second.
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        /// Seconds the matcher is down mid-run (the backlog then drains by
        /// class); 0 for none.
        #[arg(long, default_value_t = 10)]
        outage: u64,
    },
    /// Replay a time window of the input (docs/operations.md §5.4), in the running service or standalone.
    Replay {
        /// Window start: RFC 3339 (UTC without a zone) or Unix milliseconds.
        #[arg(long)]
        from: Option<String>,
        /// Window end (exclusive), same forms.
        #[arg(long)]
        to: Option<String>,
        /// Only these search ids, ID[,…] (backfill of new searches).
        #[arg(long = "searches", value_delimiter = ',')]
        searches_only: Option<Vec<String>>,
        /// Only these priority classes, NAME[,…].
        #[arg(long, value_delimiter = ',')]
        classes: Option<Vec<String>>,
        /// Resume stored replay jobs (no service running) instead of starting one.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        resume: bool,
        /// Cancel a running replay job of the service.
        #[arg(long, value_name = "ID", conflicts_with_all = ["from", "to", "resume"])]
        cancel: Option<u64>,
        /// Return once the service has registered the job.
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        args: ReplayArgs,
    },
    /// Checkpoints, lag and progress of a service (its admin API, or its state directory).
    Status {
        #[command(flatten)]
        args: ServiceArgs,
    },
    /// Admin operations on the searches of a running service.
    SearchVersions {
        #[command(subcommand)]
        action: SearchesAction,
        /// Configuration file (its [admin] section gives address and token).
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// Admin API address, HOST:PORT (default from the config, else 127.0.0.1:9464).
        #[arg(long, global = true)]
        admin_addr: Option<String>,
        /// Admin bearer token.
        #[arg(
            long,
            global = true,
            env = "TOPIC_MATCHER_ADMIN_TOKEN",
            hide_env_values = true
        )]
        admin_token: Option<String>,
    },
    /// Offline matching: JSONL documents in, JSONL match records out.
    Match {
        /// The searches file (JSON, docs/formats.md §2.2).
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
        /// Work units one document may spend in matching; a document that
        /// spends more is reported and skipped.
        #[arg(long, default_value_t = topic_matcher::engine::DEFAULT_WORK_BUDGET)]
        max_work_per_document: u64,
    },
    /// Compile and validate searches; print every error, or counts and sizes.
    Check {
        /// The searches file (JSON, docs/formats.md §2.2).
        #[arg(long)]
        searches: PathBuf,
    },
    /// Throughput benchmark on generated or given searches and documents.
    Bench {
        /// Number of generated searches.
        #[arg(
            long = "searches",
            default_value_t = 10_000,
            conflicts_with = "searches_file"
        )]
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
        /// Benchmark end to end through this broker instead: the service
        /// against a bare consumer reading the same topic.
        #[arg(long, value_name = "HOST:PORT")]
        brokers: Option<String>,
        /// With --brokers: the service's output (kafka:TOPIC, file:PATH;
        /// default a new topic on the same broker).
        #[arg(long, requires = "brokers")]
        output: Option<String>,
        /// Benchmark searches changes instead: start, one-search change to
        /// first match, full reload, batch latency during reloads.
        #[arg(long, conflicts_with_all = ["brokers", "searches_file", "input"])]
        reload: bool,
        /// With --brokers: the simulated incident instead — steady state,
        /// then the same documents drained as a backlog by class.
        #[arg(long, requires = "brokers")]
        catch_up: bool,
        /// With --catch-up: one topic per class instead of one shared topic.
        #[arg(long, requires = "catch_up")]
        by_topic: bool,
        /// With --catch-up: strict or weighted.
        #[arg(long, default_value = "strict", requires = "catch_up")]
        policy: String,
        /// With --catch-up: live documents per second during the drain.
        #[arg(long, default_value_t = 1000, requires = "catch_up")]
        live_rate: u64,
        /// With --reload: how many one-search changes to time.
        #[arg(long, default_value_t = 5, requires = "reload")]
        repeats: usize,
        /// Hostile documents instead: each against the search that used to
        /// be slow on it, within the work budget (with --emit-workload: write
        /// them for `match`).
        #[arg(long, conflicts_with_all = ["brokers", "reload", "searches_file", "input"])]
        adversarial: bool,
        /// With --adversarial: bytes of each document.
        #[arg(long, default_value_t = 1 << 20, requires = "adversarial")]
        adversarial_bytes: usize,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(1),
            };
        }
    };
    // The demo draws a dashboard: only errors interrupt it by default.
    let default_filter = if matches!(cli.command, Command::Demo { .. }) {
        "error"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        // Log lines scroll above the progress bars of a catch-up.
        .with_writer(topic_matcher::terminal::log_line)
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
        Command::Run { args } => {
            let config = match args.load() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(Outcome::InvalidInput);
                }
            };
            let running = match topic_matcher::service::start(config) {
                Ok(r) => r,
                Err(topic_matcher::service::StartError::Searches(e)) => {
                    eprintln!("{e}");
                    return Ok(Outcome::InvalidInput);
                }
                Err(topic_matcher::service::StartError::Replay(e)) => {
                    eprintln!("error: {e}");
                    return Ok(Outcome::InvalidInput);
                }
                Err(topic_matcher::service::StartError::Other(e)) => return Err(e),
            };
            running.handle_signals();
            // On a terminal, a catch-up shows a bar per class.
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            while !running.is_finished() {
                std::thread::sleep(std::time::Duration::from_millis(500));
                if tty {
                    topic_matcher::commands::replay::draw_bars(&running.metrics);
                }
            }
            topic_matcher::terminal::Screen::stderr().set_bars(Vec::new());
            running.wait()?;
            Ok(Outcome::Success)
        }
        Command::Demo {
            duration,
            rate,
            outage,
        } => {
            let opts = topic_matcher::demo::DemoOptions {
                duration: std::time::Duration::from_secs(duration),
                rate,
                outage: std::time::Duration::from_secs(outage.min(duration / 2)),
            };
            topic_matcher::demo::run(&opts, &mut std::io::stdout().lock())?;
            Ok(Outcome::Success)
        }
        Command::Replay {
            from,
            to,
            searches_only,
            classes,
            resume,
            cancel,
            detach,
            args,
        } => {
            let config = match args.common.load(args.searches_file) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(Outcome::InvalidInput);
                }
            };
            let o = commands::replay::ReplayOptions {
                from,
                to,
                searches: searches_only,
                classes,
                resume,
                cancel,
                detach,
            };
            commands::replay::run(&config, &o, &mut std::io::stdout().lock())
        }
        Command::Status { args } => {
            let config = match args.common.load_with(args.searches, RawConfig::for_status) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(Outcome::InvalidInput);
                }
            };
            commands::status::run(&config, &mut std::io::stdout().lock())
        }
        Command::SearchVersions {
            action,
            config,
            admin_addr,
            admin_token,
        } => {
            use topic_matcher::commands::searches::{Action, Endpoint};
            let raw = match &config {
                Some(p) => match topic_matcher::config::RawConfig::from_file(p) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return Ok(Outcome::InvalidInput);
                    }
                },
                None => topic_matcher::config::RawConfig::default(),
            };
            let addr = admin_addr
                .or(raw.admin.addr)
                .unwrap_or_else(|| "127.0.0.1:9464".into());
            let Ok(addr) = addr.parse() else {
                eprintln!("error: admin address `{addr}` is not HOST:PORT");
                return Ok(Outcome::InvalidInput);
            };
            let ep = Endpoint {
                addr,
                token: admin_token.or(raw.admin.token).filter(|t| !t.is_empty()),
            };
            let action = match action {
                SearchesAction::Reload { force } => Action::Reload { force },
                SearchesAction::Rollback { to } => Action::Rollback { to },
                SearchesAction::History => Action::History,
                SearchesAction::Put { file, force } => Action::Put { file, force },
            };
            commands::searches::run(&ep, &action, &mut std::io::stdout().lock())
        }
        Command::Match {
            searches,
            input,
            output,
            strict,
            max_line_bytes,
            max_work_per_document,
        } => {
            let opts = MatchOptions {
                searches,
                max_line_bytes,
                strict,
                max_reported: 100,
                max_work_per_document,
            };
            let stdin = std::io::stdin();
            let mut reader: Box<dyn std::io::BufRead> = match &input {
                Some(p) => Box::new(BufReader::with_capacity(
                    256 * 1024,
                    File::open(p)
                        .with_context(|| format!("cannot open the input {}", p.display()))?,
                )),
                None => Box::new(BufReader::with_capacity(256 * 1024, stdin.lock())),
            };
            let stdout = std::io::stdout();
            let mut writer: Box<dyn Write> = match &output {
                Some(p) => Box::new(BufWriter::with_capacity(
                    256 * 1024,
                    File::create(p)
                        .with_context(|| format!("cannot create the output {}", p.display()))?,
                )),
                None => Box::new(BufWriter::with_capacity(256 * 1024, stdout.lock())),
            };
            let (outcome, summary) =
                commands::matching::run(&opts, &mut reader, &mut writer, &mut stderr.lock())?;
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
        Command::Check { searches } => commands::check::run(
            &searches,
            &Limits::default(),
            &mut std::io::stdout().lock(),
            &mut stderr.lock(),
        ),
        Command::Bench {
            adversarial: true,
            adversarial_bytes,
            emit_workload,
            ..
        } => commands::bench_adversarial::run(
            adversarial_bytes,
            emit_workload.as_deref(),
            &mut std::io::stdout().lock(),
        ),
        Command::Bench {
            searches,
            seed,
            reload: true,
            repeats,
            ..
        } => commands::bench_reload::run(
            &commands::bench_reload::ReloadBenchOptions {
                searches,
                seed,
                repeats,
            },
            &mut std::io::stdout().lock(),
        ),
        Command::Bench {
            searches,
            docs,
            seed,
            brokers: Some(brokers),
            output,
            catch_up: true,
            by_topic,
            policy,
            live_rate,
            ..
        } => commands::bench_catchup::run(
            &commands::bench_catchup::CatchUpBenchOptions {
                brokers,
                searches,
                docs,
                seed,
                output,
                by_topic,
                policy,
                live_rate,
            },
            &mut std::io::stdout().lock(),
        ),
        Command::Bench {
            searches,
            docs,
            seed,
            brokers: Some(brokers),
            output,
            ..
        } => {
            let opts = commands::bench_kafka::KafkaBenchOptions {
                brokers,
                searches,
                docs,
                seed,
                output,
            };
            commands::bench_kafka::run(&opts, &mut std::io::stdout().lock())
        }
        Command::Bench {
            searches,
            searches_file,
            docs,
            input,
            long_form,
            seed,
            baseline_docs,
            passes,
            emit_workload,
            brokers: None,
            ..
        } => {
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
