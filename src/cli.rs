//! The command line: clap's types for every command and the conversion of
//! the configuration flags into the library's [`Config`]. `main.rs` only
//! dispatches.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use topic_matcher::config::{Config, RawConfig};

use crate::Invalid;

/// Matches social posts against stored boolean keyword searches.
#[derive(Parser, Debug)]
#[command(name = "topic-matcher", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// The `--config` file of the command, if it takes one.
    pub(crate) fn config_path(&self) -> Option<&std::path::Path> {
        match &self.command {
            Command::Run { args } | Command::Status { args, .. } => args.common.config.as_deref(),
            Command::Replay { args, .. } => args.common.config.as_deref(),
            Command::Searches { config, .. } => config.as_deref(),
            _ => None,
        }
    }
}

/// The command-line overrides of the configuration (docs/operations.md §4) shared by
/// `run`, `status` and `replay`; the searches file flag differs (see
/// [`ServiceArgs`], [`ReplayArgs`]).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct CommonArgs {
    /// The configuration file (TOML); optional when the flags suffice.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Bootstrap brokers, HOST:PORT[,…].
    #[arg(long)]
    pub(crate) brokers: Option<String>,
    /// Consumer group id.
    #[arg(long)]
    pub(crate) group: Option<String>,
    /// Input topics, TOPIC[,…].
    #[arg(long)]
    pub(crate) input: Option<String>,
    /// kafka:TOPIC, file:PATH or stdout.
    #[arg(long)]
    pub(crate) output: Option<String>,
    /// kafka:TOPIC or file:PATH.
    #[arg(long)]
    pub(crate) dead_letter: Option<String>,
    /// RocksDB state directory.
    #[arg(long)]
    pub(crate) state_dir: Option<PathBuf>,
    /// Admin API address, HOST:PORT (port 0 picks one).
    #[arg(long)]
    pub(crate) admin_addr: Option<String>,
    /// Admin bearer token.
    #[arg(long, env = "TOPIC_MATCHER_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
}

/// The overrides of `run` and `status`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ServiceArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Searches file.
    #[arg(long)]
    pub(crate) searches: Option<PathBuf>,
}

/// The overrides of `replay`, where `--searches` names search ids: the
/// searches file is `--searches-file`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Searches file.
    #[arg(long)]
    pub(crate) searches_file: Option<PathBuf>,
}

impl CommonArgs {
    pub(crate) fn load(self, searches: Option<PathBuf>) -> anyhow::Result<Config> {
        self.load_with(searches, |raw| raw)
    }

    /// Loads the file, lets `adjust` change it, then applies the flags.
    pub(crate) fn load_with(
        self,
        searches: Option<PathBuf>,
        adjust: impl FnOnce(RawConfig) -> RawConfig,
    ) -> anyhow::Result<Config> {
        use topic_matcher::config::Overrides;
        let raw = adjust(read_config(self.config.as_deref())?);
        let config = raw.validate(Overrides {
            brokers: self.brokers,
            group: self.group,
            input: self.input,
            output: self.output,
            dead_letter: self.dead_letter,
            state_dir: self.state_dir,
            searches,
            admin_addr: self.admin_addr,
            admin_token: self.admin_token,
        });
        config.map_err(|e| Invalid(format!("error: {e}")).into())
    }
}

/// The configuration file (or none) with the `TOPIC_MATCHER__…`
/// environment variables applied.
///
/// # Errors
///
/// [`Invalid`] when the file cannot be read or parsed, or a variable is
/// wrong.
pub(crate) fn read_config(path: Option<&std::path::Path>) -> anyhow::Result<RawConfig> {
    RawConfig::load(path).map_err(|e| Invalid(format!("error: {e}")).into())
}

/// The Kafka clients of `bench --brokers`: the brokers given, the client
/// properties of `--kafka-config` (and the environment's variables).
///
/// # Errors
///
/// [`Invalid`] when the file or a secret cannot be read.
pub(crate) fn bench_kafka(
    brokers: String,
    path: Option<&std::path::Path>,
) -> anyhow::Result<topic_matcher::kafka_client::KafkaClients> {
    let k = read_config(path)?.kafka;
    topic_matcher::kafka_client::KafkaClients::new(
        brokers,
        k.client,
        k.client_secret_files,
        k.client_secret_env,
        k.consumer,
        k.producer,
    )
    .map_err(|e| Invalid(format!("error: {e}")).into())
}

impl ServiceArgs {
    pub(crate) fn load(self) -> anyhow::Result<Config> {
        self.common.load(self.searches)
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum SearchesAction {
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
    /// Add one topic, or replace the topic with its id; the others stay.
    SetTopic {
        /// One topic as in the searches file (JSON with its `id`).
        file: PathBuf,
        /// Accept a change that removes more topics than searches.max_shrink.
        #[arg(long)]
        force: bool,
    },
    /// Delete one topic; the others stay.
    DeleteTopic {
        /// The topic's id.
        id: String,
        /// Accept a change that removes more topics than searches.max_shrink.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
        /// One JSON object on standard output, live or from the state
        /// directory (`"source"` says which).
        #[arg(long)]
        json: bool,
    },
    /// Admin operations on the searches of a running service.
    Searches {
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
        /// Where to write match records (default: stdout). A file is
        /// written with direct I/O, around the page cache (README, `match`)
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
        /// Threads that match (default: one per core). Records come out in
        /// input order whatever the number.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: Option<u16>,
    },
    /// Why a document matches its searches, or why one search does not.
    Explain {
        /// The searches file (JSON, docs/formats.md §2.2).
        #[arg(long)]
        searches: PathBuf,
        /// Explain this search whatever its verdict (default: every search that matches).
        #[arg(long)]
        search: Option<String>,
        /// The document's text.
        #[arg(long, conflicts_with = "input", required_unless_present = "input")]
        text: Option<String>,
        /// The document as a JSON file (docs/formats.md §2.1).
        #[arg(long)]
        input: Option<PathBuf>,
        /// Print the explanations as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compile and validate searches; print every error, or counts and sizes.
    Check {
        /// The searches file (JSON, docs/formats.md §2.2).
        #[arg(long)]
        searches: PathBuf,
        /// Also rank the searches by what they cost on these sample
        /// documents (JSONL, docs/formats.md §2.1): work, evaluations, matches.
        #[arg(long, value_name = "DOCS.jsonl")]
        cost: Option<PathBuf>,
        /// How many searches each cost ranking lists.
        #[arg(long, default_value_t = 20, requires = "cost")]
        top: usize,
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
        #[arg(long, conflicts_with = "brokers")]
        long_form: bool,
        /// With --input: generate the --searches searches from the
        /// documents' own vocabulary across the frequency range (real posts:
        /// scripts/fetch-real-posts.py) instead of invented brands.
        #[arg(long, requires = "input", conflicts_with_all = ["searches_file", "brokers"])]
        realistic: bool,
        /// Choose anchors by the terms' document frequencies, learnt from
        /// the first N documents (0: by how many searches use a term).
        #[arg(long, default_value_t = 0, conflicts_with = "brokers")]
        learn_frequencies: usize,
        /// Give this percent of the generated searches a regex leaf
        /// (`(query) OR /brand-?[0-9]{2,4}/`), to compare with 0.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100), conflicts_with_all = ["searches_file", "realistic", "brokers"])]
        regex_percent: u32,
        /// Also measure the overhead of counting per-search costs (as the
        /// service does): this many pairs of passes, without and with,
        /// alternating (0: skip).
        #[arg(long, default_value_t = 0, conflicts_with = "brokers")]
        cost_overhead_pairs: usize,
        /// Leave the matcher's arrays in the pages they were built in,
        /// instead of moving them to 2 MiB pages as `match` and the
        /// service do (docs/operations.md §5.6): to measure what that brings.
        #[arg(long, conflicts_with = "brokers")]
        no_huge_pages: bool,
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
        #[arg(long, value_name = "DIR", conflicts_with = "brokers")]
        emit_workload: Option<PathBuf>,
        /// Benchmark end to end through this broker instead: the service
        /// against a bare consumer reading the same topic.
        #[arg(long, value_name = "HOST:PORT")]
        brokers: Option<String>,
        /// With --brokers: the service's output (kafka:TOPIC, file:PATH;
        /// default a new topic on the same broker).
        #[arg(long, requires = "brokers")]
        output: Option<String>,
        /// With --brokers: a configuration file whose Kafka client
        /// properties ([kafka.client], its secrets, [kafka.consumer],
        /// [kafka.producer]) every client of the benchmark uses (TLS, SASL).
        #[arg(long, value_name = "FILE", requires = "brokers")]
        kafka_config: Option<PathBuf>,
        /// With --brokers: the service's matching threads ([matching]
        /// threads; 0: one per core).
        #[arg(long, default_value_t = 0, requires = "brokers", value_parser = clap::value_parser!(u16).range(0..=256))]
        matching_threads: u16,
        /// Benchmark searches changes instead: start, one-search change to
        /// first match, full reload, batch latency during reloads.
        #[arg(long, conflicts_with_all = ["brokers", "searches_file", "input"])]
        reload: bool,
        /// With --brokers: the simulated incident instead — steady state,
        /// then the same documents drained as a backlog by class.
        #[arg(long, requires = "brokers", conflicts_with_all = ["searches_file", "input"])]
        catch_up: bool,
        /// With --catch-up: one topic per class instead of one shared topic.
        #[arg(long, requires = "catch_up")]
        by_topic: bool,
        /// With --catch-up: strict or weighted.
        #[arg(long, default_value = "strict", requires = "catch_up")]
        policy: topic_matcher::classes::PolicyName,
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
