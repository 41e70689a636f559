//! `bench --brokers H:P`: end-to-end throughput through a broker, as a
//! ratio against a bare rdkafka consumer reading the same topic from the
//! same broker in the same run.
//!
//! 1. Produces the generated documents to a fresh input topic.
//! 2. **Bare consumer**: reads every message (assign, from the start),
//!    nothing else; timed from its first message to its last.
//! 3. **Service**: the real pipeline (parse, match with the generated
//!    searches, produce match records to a Kafka topic, checkpoint in
//!    RocksDB), timed from its first message to the checkpoint that covers
//!    the last one.
//!
//! Group joins and connection set-up are outside both timings.

use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::kafka_client::{KafkaClients, Role};
use anyhow::Context;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::broker::{bare_read, create_topics, time_service};
use crate::commands::Outcome;
use crate::config::{Overrides, RawConfig};
use crate::workload;

/// Options of the broker benchmark.
#[derive(Clone, Debug)]
pub struct KafkaBenchOptions {
    /// The brokers and the client properties (`--kafka-config`).
    pub kafka: KafkaClients,
    /// Generated searches.
    pub searches: usize,
    /// Generated documents.
    pub docs: usize,
    /// Seed.
    pub seed: u64,
    /// The service's output (default: a new Kafka topic on the same broker).
    pub output: Option<String>,
    /// This searches file instead of generated searches.
    pub searches_file: Option<std::path::PathBuf>,
    /// These JSONL documents (one per line) instead of generated ones.
    pub input: Option<std::path::PathBuf>,
    /// The service's matching threads (`[matching] threads`; 0: one per
    /// core).
    pub threads: usize,
}

/// Runs the broker benchmark.
///
/// # Errors
///
/// When the broker cannot be reached or the service cannot start.
pub fn run(opts: &KafkaBenchOptions, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let tag = format!("{}-{}", std::process::id(), crate::record::now_ms());
    let input = format!("bench.in.{tag}");
    let output = format!("bench.out.{tag}");
    create_topics(&opts.kafka, &[&input, &output], 3)
        .context("cannot create the benchmark topics")?;

    // A given searches file is used where it is; generated searches are
    // written next to the service's state.
    let dir = std::env::temp_dir().join(format!("topic-matcher-bench-{tag}"));
    std::fs::create_dir_all(&dir)?;
    let (searches_path, generated) = match &opts.searches_file {
        Some(path) => (path.clone(), None),
        None => {
            let json = workload::searches_json(opts.searches, opts.seed);
            let path = dir.join("searches.json");
            std::fs::write(&path, &json)?;
            (path, Some(json))
        }
    };
    let docs: Vec<String> = match &opts.input {
        Some(path) => super::read_lines(path)?,
        None => {
            let json = match generated {
                Some(json) => json,
                None => std::fs::read_to_string(&searches_path)
                    .with_context(|| format!("cannot read {}", searches_path.display()))?,
            };
            workload::documents(opts.docs, workload::brand_groups(&json), false, opts.seed)
        }
    };
    let bytes: usize = docs.iter().map(String::len).sum();
    let producer: BaseProducer = opts
        .kafka
        .config(Role::Producer, &[])
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .create()?;
    let started = Instant::now();
    for (i, d) in docs.iter().enumerate() {
        let key = i.to_string();
        crate::produce::send_retrying(&producer, BaseRecord::to(&input).key(&key).payload(d))?;
    }
    producer.flush(Duration::from_secs(300))?;
    writeln!(
        out,
        "produced {} documents ({:.1} MB) to {input} in {:.1} s",
        docs.len(),
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    )?;

    // Bare consumer.
    let bare_secs = bare_read(&opts.kafka, &[input.as_str()], docs.len(), &tag)?;
    let n = docs.len();
    let bare_rate = n as f64 / bare_secs;
    writeln!(
        out,
        "bare consumer: {n} messages in {bare_secs:.2} s = {bare_rate:.0} msg/s"
    )?;

    // The service.
    let mut config = RawConfig::default()
        .validate(Overrides {
            brokers: Some(opts.kafka.brokers.clone()),
            group: Some(format!("bench-service-{tag}")),
            input: Some(input.clone()),
            output: Some(opts.output.clone().unwrap_or(format!("kafka:{output}"))),
            dead_letter: Some(format!("file:{}", dir.join("dead.jsonl").display())),
            state_dir: Some(dir.join("state")),
            searches: Some(searches_path),
            admin_addr: Some("127.0.0.1:0".into()),
            admin_token: None,
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    config.kafka = opts.kafka.clone();
    if opts.threads > 0 {
        config.matching_threads = opts.threads;
    }
    let threads = config.matching_threads;
    let running = crate::service::start(config)?;
    let m = running.metrics.clone();
    let secs = time_service(&m, docs.len() as u64, Duration::from_secs(600));
    let rate = docs.len() as f64 / secs;
    let records = m.records_out.load(Relaxed);
    running.stop()?;
    let _ = std::fs::remove_dir_all(&dir);
    writeln!(
        out,
        "service ({}, {threads} matching threads, parse + match + {} match records to {} + checkpoint): {} messages in {secs:.2} s = {rate:.0} msg/s",
        opts.searches_file.as_ref().map_or_else(
            || format!("{} searches", opts.searches),
            |p| p.display().to_string()
        ),
        records,
        opts.output.as_deref().unwrap_or("a Kafka topic on the same broker"),
        docs.len()
    )?;
    writeln!(
        out,
        "ratio service / bare consumer: {:.2}",
        rate / bare_rate
    )?;
    Ok(Outcome::Success)
}
