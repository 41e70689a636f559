//! The `topic-matcher` binary: parse arguments, set up logging, call into
//! the library, map the outcome to an exit code (0 success, 1 invalid input,
//! 2 runtime failure).

use std::process::ExitCode;

use clap::Parser;
use topic_matcher::commands::{self, bench::engine::BenchOptions, matching::MatchOptions, Outcome};
use topic_matcher::config::{LogFormat, RawConfig};
use topic_matcher::query::Limits;

mod cli;

use cli::{Cli, Command, SearchesAction};

/// Invalid input (exit 1): the message is printed as it is.
#[derive(Debug)]
pub(crate) struct Invalid(pub(crate) String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_filter.into());
    // The format is read before the command loads its configuration; an
    // invalid file or value is reported by the command itself.
    let format = RawConfig::load(cli.config_path())
        .ok()
        .and_then(|raw| raw.log.format)
        .and_then(|f| LogFormat::parse(&f).ok())
        .unwrap_or_default();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Log lines scroll above the progress bars of a catch-up.
        .with_writer(topic_matcher::terminal::log_line);
    match format {
        LogFormat::Json => logs.json().with_current_span(false).init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    match run(cli) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::InvalidInput) => ExitCode::from(1),
        Err(e) => match e.downcast_ref::<Invalid>() {
            Some(invalid) => {
                eprintln!("{invalid}");
                ExitCode::from(1)
            }
            None => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let stderr = std::io::stderr();
    match cli.command {
        Command::Run { args } => {
            let config = args.load()?;
            let running = match topic_matcher::service::start(config) {
                Ok(r) => r,
                Err(e) => return e.outcome(&mut std::io::stderr()),
            };
            running.handle_signals();
            // On a terminal, a catch-up shows a bar per class.
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            while !running.is_finished() {
                std::thread::sleep(std::time::Duration::from_millis(500));
                if tty {
                    topic_matcher::terminal::draw_bars(&running.metrics);
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
            let config = args.common.load(args.searches_file)?;
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
        Command::Status { args, json } => {
            let config = args
                .common
                .load_with(args.searches, RawConfig::for_status)?;
            commands::status::run(&config, json, &mut std::io::stdout().lock())
        }
        Command::Searches {
            action,
            config,
            admin_addr,
            admin_token,
        } => {
            use topic_matcher::commands::searches::{Action, Endpoint};
            let raw = cli::read_config(config.as_deref())?;
            let addr = admin_addr
                .or(raw.admin.addr)
                .unwrap_or_else(|| "127.0.0.1:9464".into());
            let addr = match topic_matcher::config::resolve_addr(&addr) {
                Ok(a) => a,
                Err(why) => {
                    eprintln!("error: admin address {why}");
                    return Ok(Outcome::InvalidInput);
                }
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
                SearchesAction::SetTopic { file, force } => Action::SetTopic { file, force },
                SearchesAction::DeleteTopic { id, force } => Action::DeleteTopic { id, force },
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
            threads,
        } => {
            let opts = MatchOptions {
                searches,
                max_line_bytes,
                strict,
                max_reported: 100,
                max_work_per_document,
                threads: threads.map_or_else(
                    || std::thread::available_parallelism().map_or(1, |n| n.get()),
                    usize::from,
                ),
            };
            commands::matching::run_files(
                &opts,
                input.as_deref(),
                output.as_deref(),
                &mut stderr.lock(),
            )
        }
        Command::Explain {
            searches,
            search,
            text,
            input,
            json,
        } => commands::explain::run(
            &commands::explain::ExplainOptions {
                searches,
                search,
                text,
                input,
                json,
            },
            &mut std::io::stdout().lock(),
            &mut stderr.lock(),
        ),
        Command::Check {
            searches,
            cost,
            top,
        } => commands::check::run(
            &searches,
            cost.as_deref().map(|docs| (docs, top)),
            &Limits::default(),
            &mut std::io::stdout().lock(),
            &mut stderr.lock(),
        ),
        Command::Bench {
            adversarial: true,
            adversarial_bytes,
            emit_workload,
            ..
        } => commands::bench::adversarial::run(
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
        } => commands::bench::reload::run(
            &commands::bench::reload::ReloadBenchOptions {
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
            kafka_config,
            catch_up: true,
            by_topic,
            policy,
            live_rate,
            matching_threads,
            ..
        } => commands::bench::catchup::run(
            &commands::bench::catchup::CatchUpBenchOptions {
                kafka: cli::bench_kafka(brokers, kafka_config.as_deref())?,
                searches,
                docs,
                seed,
                output,
                by_topic,
                policy,
                live_rate,
                threads: usize::from(matching_threads),
            },
            &mut std::io::stdout().lock(),
        ),
        Command::Bench {
            searches,
            docs,
            seed,
            brokers: Some(brokers),
            output,
            kafka_config,
            searches_file,
            input,
            matching_threads,
            ..
        } => {
            let opts = commands::bench::kafka::KafkaBenchOptions {
                kafka: cli::bench_kafka(brokers, kafka_config.as_deref())?,
                searches,
                docs,
                seed,
                output,
                searches_file,
                input,
                threads: usize::from(matching_threads),
            };
            commands::bench::kafka::run(&opts, &mut std::io::stdout().lock())
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
            realistic,
            regex_percent,
            learn_frequencies,
            cost_overhead_pairs,
            no_huge_pages,
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
                realistic,
                regex_percent,
                learn_frequencies,
                cost_overhead_pairs,
                huge_pages: !no_huge_pages,
            };
            Ok(commands::bench::engine::run(&opts, &mut std::io::stdout().lock())?.0)
        }
    }
}
