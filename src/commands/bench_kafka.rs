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

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::Outcome;
use crate::config::{Overrides, RawConfig};
use crate::workload;

/// Options of the broker benchmark.
#[derive(Clone, Debug)]
pub struct KafkaBenchOptions {
    /// Bootstrap brokers.
    pub brokers: String,
    /// Generated searches.
    pub searches: usize,
    /// Generated documents.
    pub docs: usize,
    /// Seed.
    pub seed: u64,
    /// The service's output (default: a new Kafka topic on the same broker).
    pub output: Option<String>,
}

pub(crate) fn create_topics(brokers: &str, names: &[&str], partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = rt.block_on(admin.create_topics(
        &topics,
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ))?;
    for r in results {
        if let Err((name, code)) = r {
            anyhow::ensure!(
                code == rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                "creating topic {name}: {code}"
            );
        }
    }
    Ok(())
}

/// Reads the `n` messages of `topics` (3 partitions each) from the start
/// with a bare consumer; the seconds from the first message to the last.
pub(crate) fn bare_read(
    brokers: &str,
    topics: &[&str],
    n: usize,
    tag: &str,
) -> anyhow::Result<f64> {
    let bare: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-bare-{tag}"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        for p in 0..3 {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
    }
    bare.assign(&tpl)?;
    let mut read = 0usize;
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while read < n && Instant::now() < deadline {
        if let Some(Ok(_)) = bare.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            read += 1;
        }
    }
    anyhow::ensure!(read == n, "the bare consumer read {read} of {n} messages");
    Ok(first.map_or(0.0, |t| t.elapsed().as_secs_f64()))
}

/// Reads the `n` messages of `topics` (3 partitions each) from the start
/// with one bare consumer per partition, all at once (as the drain lanes
/// read); the seconds from the first message to the last.
pub(crate) fn bare_read_per_partition(
    brokers: &str,
    topics: &[&str],
    n: usize,
) -> anyhow::Result<f64> {
    let read = std::sync::atomic::AtomicUsize::new(0);
    let spans = std::thread::scope(|scope| {
        let mut readers = Vec::new();
        for topic in topics {
            for p in 0..3 {
                let read = &read;
                readers.push(
                    scope.spawn(move || -> anyhow::Result<Option<(Instant, Instant)>> {
                        let c: BaseConsumer = ClientConfig::new()
                            .set("bootstrap.servers", brokers)
                            .set("group.id", "bench-bare-per-partition")
                            .set("enable.auto.commit", "false")
                            .set("enable.partition.eof", "true")
                            .create()?;
                        let mut tpl = TopicPartitionList::new();
                        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
                        c.assign(&tpl)?;
                        let (mut first, mut last) = (None, None);
                        let deadline = Instant::now() + Duration::from_secs(600);
                        while Instant::now() < deadline {
                            match c.poll(Duration::from_millis(100)) {
                                Some(Ok(_)) => {
                                    first.get_or_insert_with(Instant::now);
                                    last = Some(Instant::now());
                                    read.fetch_add(1, Relaxed);
                                }
                                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                                _ => {}
                            }
                        }
                        Ok(first.zip(last))
                    }),
                );
            }
        }
        readers
            .into_iter()
            .map(|r| r.join().expect("reader thread"))
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let read = read.into_inner();
    anyhow::ensure!(read == n, "the bare consumers read {read} of {n} messages");
    let first = spans.iter().flatten().map(|s| s.0).min();
    let last = spans.iter().flatten().map(|s| s.1).max();
    Ok(first.zip(last).map_or(0.0, |(f, l)| (l - f).as_secs_f64()))
}

/// Seconds from the service's first message to the checkpoint covering
/// its `n`-th (group join and set-up are outside).
pub(crate) fn time_service(m: &crate::service::metrics::Metrics, n: u64, limit: Duration) -> f64 {
    let deadline = Instant::now() + limit;
    while m.documents_in.load(Relaxed) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let first = Instant::now();
    // Done when every message is read and a checkpoint after that covers it.
    while m.documents_in.load(Relaxed) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let read_all_at = crate::record::now_ms();
    while m.last_checkpoint_ms.load(Relaxed) < read_all_at && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    first.elapsed().as_secs_f64()
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
    create_topics(&opts.brokers, &[&input, &output], 3)
        .context("cannot create the benchmark topics")?;

    let searches_json = workload::searches_json(opts.searches, opts.seed);
    let groups = workload::brand_groups(&searches_json);
    let docs = workload::documents(opts.docs, groups, false, opts.seed);
    let bytes: usize = docs.iter().map(String::len).sum();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &opts.brokers)
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
    let bare_secs = bare_read(&opts.brokers, &[input.as_str()], docs.len(), &tag)?;
    let n = docs.len();
    let bare_rate = n as f64 / bare_secs;
    writeln!(
        out,
        "bare consumer: {n} messages in {bare_secs:.2} s = {bare_rate:.0} msg/s"
    )?;

    // The service.
    let dir = std::env::temp_dir().join(format!("topic-matcher-bench-{tag}"));
    std::fs::create_dir_all(&dir)?;
    let searches_path = dir.join("searches.json");
    std::fs::write(&searches_path, &searches_json)?;
    let config = RawConfig::default()
        .validate(Overrides {
            brokers: Some(opts.brokers.clone()),
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
    let running = crate::service::start(config)?;
    let m = running.metrics.clone();
    let secs = time_service(&m, docs.len() as u64, Duration::from_secs(600));
    let rate = docs.len() as f64 / secs;
    let records = m.records_out.load(Relaxed);
    running.stop()?;
    let _ = std::fs::remove_dir_all(&dir);
    writeln!(
        out,
        "service ({} searches, parse + match + {} match records to {} + checkpoint): {} messages in {secs:.2} s = {rate:.0} msg/s",
        opts.searches,
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
