//! Service configuration (docs/formats.md §2.4) in two stages: [`RawConfig`] is the
//! TOML as written (serde, unknown keys rejected by name, every section
//! optional), [`Config`] the validated, typed result after command-line
//! overrides. `config/topic-matcher.example.toml` documents every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub mod env;

/// Why a configuration is invalid (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML of the config form (names an unknown key).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value is missing or wrong.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The TOML file as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[kafka]`
    #[serde(default)]
    pub kafka: RawKafka,
    /// `[output]`
    #[serde(default)]
    pub output: RawOutput,
    /// `[dead_letter]`
    #[serde(default)]
    pub dead_letter: RawOutput,
    /// `[state]`
    #[serde(default)]
    pub state: RawState,
    /// `[searches]`
    #[serde(default)]
    pub searches: RawSearches,
    /// `[admin]`
    #[serde(default)]
    pub admin: RawAdmin,
    /// `[limits]`
    #[serde(default)]
    pub limits: RawLimits,
    /// `[[classes]]`, highest priority first.
    #[serde(default)]
    pub classes: Vec<RawClass>,
    /// `[catch_up]`
    #[serde(default)]
    pub catch_up: RawCatchUp,
    /// `[log]`
    #[serde(default)]
    pub log: RawLog,
    /// `[matching]`
    #[serde(default)]
    pub matching: RawMatching,
}

/// `[matching]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatching {
    /// Threads that match documents (0 or absent: one per core).
    pub threads: Option<usize>,
}

/// Most matching threads accepted in the configuration.
pub const MAX_MATCHING_THREADS: usize = 256;

/// `[log]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `text` (default) or `json` (one JSON object per line).
    pub format: Option<String>,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields).
    Json,
}

impl LogFormat {
    /// Parses `text` or `json`.
    ///
    /// # Errors
    ///
    /// Any other value, named.
    pub fn parse(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log.format: `{other}` is not text or json")),
        }
    }
}

impl RawConfig {
    /// For `status`, which reads only the admin address and the state
    /// directory: the values only the service uses, when missing, get
    /// placeholders so that they need not be given.
    #[must_use]
    pub fn for_status(mut self) -> RawConfig {
        let k = &mut self.kafka;
        k.brokers.get_or_insert_with(|| "unused:9092".into());
        // `status` never connects to Kafka: its secrets need not be at hand.
        k.client_secret_files.clear();
        k.client_secret_env.clear();
        k.group_id.get_or_insert_with(|| "unused".into());
        k.input_topics.get_or_insert_with(|| vec!["unused".into()]);
        self.output.target.get_or_insert_with(|| "stdout".into());
        self.dead_letter
            .target
            .get_or_insert_with(|| "file:/dev/null".into());
        if self.searches.kafka_topic.is_none() {
            self.searches
                .file
                .get_or_insert_with(|| PathBuf::from("unused.json"));
        }
        self
    }
}

/// One `[[classes]]` entry (docs/operations.md §5.2).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClass {
    /// The class name.
    pub name: String,
    /// Every message of these input topics.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Document field → accepted values.
    #[serde(default)]
    pub when: BTreeMap<String, Vec<String>>,
}

/// `[catch_up]` (docs/operations.md §5.2, §5.3)
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCatchUp {
    /// `strict` or `weighted`.
    pub policy: Option<String>,
    /// Class name → share, for `weighted`.
    #[serde(default)]
    pub weights: BTreeMap<String, u32>,
    /// Backlog messages per partition that start a catch-up.
    pub threshold: Option<i64>,
}

/// `[kafka]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    /// `host:port,…`
    pub brokers: Option<String>,
    /// Consumer group id.
    pub group_id: Option<String>,
    /// Input topics.
    pub input_topics: Option<Vec<String>>,
    /// `earliest` or `latest`: where a partition with no checkpoint and no
    /// committed offset starts.
    pub start: Option<String>,
    /// Stable `group.instance.id` (static membership), optional; empty:
    /// dynamic membership.
    pub instance_id: Option<String>,
    /// librdkafka properties for every client (TLS, SASL, …).
    #[serde(default)]
    pub client: BTreeMap<String, String>,
    /// librdkafka property → file holding its value (secrets).
    #[serde(default)]
    pub client_secret_files: BTreeMap<String, PathBuf>,
    /// librdkafka property → environment variable holding its value.
    #[serde(default)]
    pub client_secret_env: BTreeMap<String, String>,
    /// librdkafka properties for the consumers, applied last.
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
    /// librdkafka properties for the producers (output, dead letters).
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
}

/// `[output]` and `[dead_letter]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    /// `kafka:TOPIC`, `file:PATH` or `stdout`.
    pub target: Option<String>,
}

/// `[state]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// RocksDB directory.
    pub dir: Option<PathBuf>,
}

/// `[searches]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearches {
    /// The searches file.
    pub file: Option<PathBuf>,
    /// A compacted Kafka topic with one record per topic id.
    pub kafka_topic: Option<String>,
    /// Reload when the file changes (default true).
    pub watch: Option<bool>,
    /// Quiet time after a file change before reloading, in milliseconds.
    pub debounce_ms: Option<u64>,
    /// Share of topics that may disappear in one change without `force`.
    pub max_shrink: Option<f64>,
    /// Stored versions kept (oldest pruned; never the active one or the
    /// rollback target). Default 100, at least 2.
    pub keep_versions: Option<usize>,
}

/// `[admin]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Listen address; port 0 picks a free port.
    pub addr: Option<String>,
    /// Bearer token for mutating endpoints (and for reading customer data
    /// when set).
    pub token: Option<String>,
    /// Largest request body, bytes (default 512 MiB: a searches document of
    /// a million searches).
    pub max_body_bytes: Option<usize>,
    /// Connections served at once (default 64).
    pub max_connections: Option<usize>,
}

/// `[limits]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest accepted message value in bytes.
    pub max_message_bytes: Option<usize>,
    /// Most messages per batch (one checkpoint per batch).
    pub batch_max_messages: Option<usize>,
    /// Longest a batch stays open, in milliseconds.
    pub batch_max_wait_ms: Option<u64>,
    /// Most bytes of match records waiting for the output's acknowledgement.
    pub max_in_flight_bytes: Option<usize>,
    /// Shutdown and rebalance drain deadline, in milliseconds.
    pub drain_deadline_ms: Option<u64>,
    /// Work units one document may spend in matching before it is
    /// dead-lettered as `too_expensive`.
    pub max_work_per_document: Option<u64>,
    /// Work units one evaluation of one search may spend before the search
    /// is logged as slow (the slow-search log).
    pub slow_search_work: Option<u64>,
}

/// Where records go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A Kafka topic on the configured brokers.
    Kafka(String),
    /// A JSONL file (appended).
    File(PathBuf),
    /// Standard output.
    Stdout,
}

impl Target {
    /// Parses `kafka:TOPIC`, `file:PATH` or `stdout`.
    ///
    /// # Errors
    ///
    /// When the form is none of those.
    pub fn parse(s: &str) -> Result<Target, ConfigError> {
        if let Some(t) = s.strip_prefix("kafka:") {
            if t.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "`{s}`: the Kafka topic is empty"
                )));
            }
            Ok(Target::Kafka(t.to_string()))
        } else if let Some(p) = s.strip_prefix("file:") {
            if p.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "`{s}`: the file path is empty"
                )));
            }
            Ok(Target::File(PathBuf::from(p)))
        } else if s == "stdout" {
            Ok(Target::Stdout)
        } else {
            Err(ConfigError::Invalid(format!(
                "`{s}` is not kafka:TOPIC, file:PATH or stdout"
            )))
        }
    }
}

/// Where a partition with neither a checkpoint nor a committed offset starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartPosition {
    /// The log start.
    Earliest,
    /// The head.
    Latest,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The brokers and the properties of every Kafka client.
    pub kafka: crate::kafka_client::KafkaClients,
    /// Consumer group.
    pub group_id: String,
    /// Input topics.
    pub input_topics: Vec<String>,
    /// Start position without checkpoint or committed offset.
    pub start: StartPosition,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Match records.
    pub output: Target,
    /// Bad messages.
    pub dead_letter: Target,
    /// RocksDB directory.
    pub state_dir: PathBuf,
    /// Where searches come from and how changes are accepted.
    pub searches: SearchesConfig,
    /// Admin listen address.
    pub admin_addr: SocketAddr,
    /// Admin bearer token.
    pub admin_token: Option<String>,
    /// Largest admin request body.
    pub admin_max_body_bytes: usize,
    /// Admin connections served at once.
    pub admin_max_connections: usize,
    /// Largest message value.
    pub max_message_bytes: usize,
    /// Most messages per batch.
    pub batch_max_messages: usize,
    /// Longest a batch stays open.
    pub batch_max_wait: Duration,
    /// In-flight bound for output bytes.
    pub max_in_flight_bytes: usize,
    /// Matching work budget of one document (`too_expensive` past it).
    pub max_work_per_document: u64,
    /// One search's evaluation past this many work units is logged as slow.
    pub slow_search_work: u64,
    /// Threads that match documents (docs/operations.md §5.1).
    pub matching_threads: usize,
    /// Drain deadline for shutdown and rebalance.
    pub drain_deadline: Duration,
    /// Priority classes.
    pub classes: crate::classes::Classes,
    /// Catch-up policy and threshold.
    pub catch_up: crate::classes::CatchUp,
    /// How log lines are written.
    pub log_format: LogFormat,
}

/// The searches sources (docs/operations.md §5.6).
#[derive(Clone, Debug, PartialEq)]
pub struct SearchesConfig {
    /// The searches file.
    pub file: Option<PathBuf>,
    /// The compacted Kafka topic of searches.
    pub kafka_topic: Option<String>,
    /// Watch the file for changes.
    pub watch: bool,
    /// Quiet time after a file change before reloading.
    pub debounce: Duration,
    /// Share of topics (0–1) that may disappear in one change without
    /// `force`.
    pub max_shrink: f64,
    /// Stored versions kept.
    pub keep_versions: usize,
}

impl SearchesConfig {
    /// Only a file, watched, with the default guards.
    pub fn file(path: impl Into<PathBuf>) -> SearchesConfig {
        SearchesConfig {
            file: Some(path.into()),
            kafka_topic: None,
            watch: true,
            debounce: Duration::from_millis(300),
            max_shrink: 0.5,
            keep_versions: 100,
        }
    }
}

/// Command-line overrides of docs/operations.md §4 (`None` keeps the file's value).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--brokers`
    pub brokers: Option<String>,
    /// `--group`
    pub group: Option<String>,
    /// `--input`
    pub input: Option<String>,
    /// `--output`
    pub output: Option<String>,
    /// `--dead-letter`
    pub dead_letter: Option<String>,
    /// `--state-dir`
    pub state_dir: Option<PathBuf>,
    /// `--searches`
    pub searches: Option<PathBuf>,
    /// `--admin-addr`
    pub admin_addr: Option<String>,
    /// `--admin-token` or `TOPIC_MATCHER_ADMIN_TOKEN`
    pub admin_token: Option<String>,
}

impl RawConfig {
    /// Reads and parses a config file.
    ///
    /// # Errors
    ///
    /// Unreadable file, invalid TOML, unknown keys.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        RawConfig::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.into(),
            message,
        })
    }

    /// The file (if any) with the environment's `TOPIC_MATCHER__…`
    /// variables applied on top ([`env`]).
    ///
    /// # Errors
    ///
    /// As [`RawConfig::from_file`]; a variable naming no key or holding a
    /// value its key cannot take.
    pub fn load(path: Option<&Path>) -> Result<RawConfig, ConfigError> {
        let table = match path {
            Some(p) => {
                // Parsed typed first: the file's own errors keep their line.
                let raw = RawConfig::from_file(p)?;
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.into(),
                    source,
                })?;
                match text.parse::<toml::Table>() {
                    Ok(t) => t,
                    Err(_) => return Ok(raw),
                }
            }
            None => toml::Table::new(),
        };
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        env::apply(table, vars).map_err(ConfigError::Invalid)
    }

    /// Parses TOML text.
    ///
    /// # Errors
    ///
    /// The parser's message, which names an unknown key.
    pub fn from_toml(text: &str) -> Result<RawConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim().to_string())
    }

    /// Applies overrides and validates.
    ///
    /// # Errors
    ///
    /// The first missing or invalid value, named.
    pub fn validate(mut self, o: Overrides) -> Result<Config, ConfigError> {
        let set = |slot: &mut Option<String>, v: Option<String>| {
            if v.is_some() {
                *slot = v;
            }
        };
        set(&mut self.kafka.brokers, o.brokers);
        set(&mut self.kafka.group_id, o.group);
        if let Some(i) = o.input {
            self.kafka.input_topics = Some(
                i.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
            );
        }
        set(&mut self.output.target, o.output);
        set(&mut self.dead_letter.target, o.dead_letter);
        if o.state_dir.is_some() {
            self.state.dir = o.state_dir;
        }
        if o.searches.is_some() {
            self.searches.file = o.searches;
        }
        set(&mut self.admin.addr, o.admin_addr);
        set(&mut self.admin.token, o.admin_token);

        let need = |v: Option<String>, what: &str| {
            v.filter(|s| !s.trim().is_empty())
                .ok_or_else(|| ConfigError::Invalid(format!("{what} is required")))
        };
        let brokers = need(self.kafka.brokers, "kafka.brokers (--brokers)")?;
        let group_id = need(self.kafka.group_id, "kafka.group_id (--group)")?;
        let input_topics = self.kafka.input_topics.unwrap_or_default();
        if input_topics.is_empty() {
            return Err(ConfigError::Invalid(
                "kafka.input_topics (--input) is required".into(),
            ));
        }
        let start = match self.kafka.start.as_deref().unwrap_or("earliest") {
            "earliest" => StartPosition::Earliest,
            "latest" => StartPosition::Latest,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "kafka.start: `{other}` is not earliest or latest"
                )))
            }
        };
        let output = Target::parse(&need(self.output.target, "output.target (--output)")?)?;
        let dead_letter = Target::parse(&need(
            self.dead_letter.target,
            "dead_letter.target (--dead-letter)",
        )?)?;
        if dead_letter == Target::Stdout {
            return Err(ConfigError::Invalid(
                "dead_letter.target must be kafka:TOPIC or file:PATH".into(),
            ));
        }
        let state_dir = self
            .state
            .dir
            .ok_or_else(|| ConfigError::Invalid("state.dir (--state-dir) is required".into()))?;
        let sr = self.searches;
        if sr.file.is_none() && sr.kafka_topic.is_none() {
            return Err(ConfigError::Invalid(
                "searches.file (--searches) or searches.kafka_topic is required".into(),
            ));
        }
        let max_shrink = sr.max_shrink.unwrap_or(0.5);
        if !(0.0..=1.0).contains(&max_shrink) {
            return Err(ConfigError::Invalid(format!(
                "searches.max_shrink must be between 0 and 1, not {max_shrink}"
            )));
        }
        let searches = SearchesConfig {
            file: sr.file,
            kafka_topic: sr.kafka_topic.filter(|t| !t.is_empty()),
            watch: sr.watch.unwrap_or(true),
            debounce: Duration::from_millis(sr.debounce_ms.unwrap_or(300)),
            max_shrink,
            keep_versions: match sr.keep_versions {
                Some(n) if n < 2 => {
                    return Err(ConfigError::Invalid(format!(
                        "searches.keep_versions must be at least 2 (the active version and its rollback target), not {n}"
                    )))
                }
                n => n.unwrap_or(100),
            },
        };
        let addr = self.admin.addr.unwrap_or_else(|| "127.0.0.1:9464".into());
        let admin_addr = resolve_addr(&addr)
            .map_err(|why| ConfigError::Invalid(format!("admin.addr: {why}")))?;
        let log_format = match self.log.format.as_deref() {
            Some(f) => LogFormat::parse(f).map_err(ConfigError::Invalid)?,
            None => LogFormat::Text,
        };
        let classes = crate::classes::Classes::new(
            self.classes
                .into_iter()
                .map(|c| (c.name, c.topics, c.when.into_iter().collect()))
                .collect(),
        )
        .map_err(ConfigError::Invalid)?;
        let catch_up = crate::classes::CatchUp::new(
            self.catch_up.policy.as_deref(),
            &self.catch_up.weights,
            self.catch_up.threshold,
            &classes,
        )
        .map_err(ConfigError::Invalid)?;
        let l = self.limits;
        let positive = |v: Option<usize>, default: usize, what: &str| match v {
            Some(0) => Err(ConfigError::Invalid(format!(
                "limits.{what} must be positive"
            ))),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let kafka = crate::kafka_client::KafkaClients::new(
            brokers,
            self.kafka.client,
            self.kafka.client_secret_files,
            self.kafka.client_secret_env,
            self.kafka.consumer,
            self.kafka.producer,
        )
        .map_err(ConfigError::Invalid)?;
        Ok(Config {
            kafka,
            group_id,
            input_topics,
            start,
            instance_id: self.kafka.instance_id,
            output,
            dead_letter,
            state_dir,
            searches,
            admin_addr,
            admin_token: self.admin.token.filter(|t| !t.is_empty()),
            admin_max_body_bytes: match self.admin.max_body_bytes {
                Some(0) => {
                    return Err(ConfigError::Invalid(
                        "admin.max_body_bytes must be positive".into(),
                    ))
                }
                v => v.unwrap_or(512 << 20),
            },
            admin_max_connections: match self.admin.max_connections {
                Some(0) => {
                    return Err(ConfigError::Invalid(
                        "admin.max_connections must be positive".into(),
                    ))
                }
                v => v.unwrap_or(64),
            },
            max_message_bytes: positive(l.max_message_bytes, 1 << 20, "max_message_bytes")?,
            batch_max_messages: positive(l.batch_max_messages, 20000, "batch_max_messages")?,
            batch_max_wait: Duration::from_millis(l.batch_max_wait_ms.unwrap_or(250).max(1)),
            max_in_flight_bytes: positive(l.max_in_flight_bytes, 64 << 20, "max_in_flight_bytes")?,
            max_work_per_document: positive(
                l.max_work_per_document.map(|v| v as usize),
                crate::engine::DEFAULT_WORK_BUDGET as usize,
                "max_work_per_document",
            )? as u64,
            slow_search_work: positive(
                l.slow_search_work.map(|v| v as usize),
                crate::engine::DEFAULT_SLOW_SEARCH_WORK as usize,
                "slow_search_work",
            )? as u64,
            drain_deadline: Duration::from_millis(l.drain_deadline_ms.unwrap_or(10_000)),
            matching_threads: match self.matching.threads {
                None | Some(0) => std::thread::available_parallelism().map_or(1, |n| n.get()),
                Some(n) if n > MAX_MATCHING_THREADS => {
                    return Err(ConfigError::Invalid(format!(
                        "matching.threads is {n}; at most {MAX_MATCHING_THREADS} (0: one per core)"
                    )))
                }
                Some(n) => n,
            },
            classes,
            catch_up,
            log_format,
        })
    }
}

/// `HOST:PORT` with an IP address or a host name (`localhost:9464`,
/// `matcher-1:9464`), resolved once; an IPv4 address is preferred.
///
/// # Errors
///
/// Not `HOST:PORT`, or a host name that does not resolve.
pub fn resolve_addr(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok(a);
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("`{addr}` is not HOST:PORT"));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("`{addr}` is not HOST:PORT"));
    }
    use std::net::ToSocketAddrs;
    let found: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("`{addr}`: {e}"))?
        .collect();
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| found.first())
        .copied()
        .ok_or_else(|| format!("`{addr}`: the host name has no address"))
}

#[cfg(test)]
mod tests;
