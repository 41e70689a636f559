//! `demo`: the service on an embedded Kafka.
//!
//! Starts librdkafka's mock cluster in-process, creates the input topic
//! (3 partitions), the output and the dead-letter topics, streams the
//! bundled sample documents at a steady rate (with an occasional malformed
//! message), and runs the real service — the same [`crate::service`] code
//! path as `run` — with the bundled searches. A one-line dashboard shows
//! documents/s, matches/s, lag and bad messages; after the configured
//! duration the service shuts down in order and a summary is printed,
//! checked against the output topic.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::config::{Overrides, RawConfig};
use crate::query::Limits;
use crate::searches::Catalog;

/// The bundled real tweets (Debian r-cran-rtweet fixtures, MIT).
const SAMPLE_TWEETS: &str = include_str!("../samples/tweets.jsonl");
/// The bundled searches.
const SAMPLE_SEARCHES: &str = include_str!("../samples/searches.json");

/// Options of `demo`.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// How long to stream.
    pub duration: Duration,
    /// Documents per second produced.
    pub rate: u64,
}

/// Runs the demo, writing the dashboard and summary to `out`.
///
/// # Errors
///
/// When the embedded cluster or the service cannot start.
pub fn run(opts: &DemoOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let cluster = MockCluster::new(1).context("cannot start the embedded Kafka cluster")?;
    cluster.create_topic("social.posts", 3, 1)?;
    cluster.create_topic("matches", 3, 1)?;
    cluster.create_topic("matches.dead-letter", 1, 1)?;
    let brokers = cluster.bootstrap_servers();
    writeln!(out, "embedded Kafka (mock cluster) at {brokers}: topics social.posts (3 partitions), matches, matches.dead-letter")?;

    let dir = std::env::temp_dir().join(format!("topic-matcher-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let searches_path = dir.join("searches.json");
    std::fs::write(&searches_path, SAMPLE_SEARCHES)?;
    let catalog = Catalog::from_json(SAMPLE_SEARCHES.as_bytes(), &Limits::default())
        .map_err(|e| anyhow::anyhow!("bundled searches invalid: {e}"))?;
    writeln!(
        out,
        "searches: {} topics, {} searches (samples/searches.json)",
        catalog.topics.len(),
        catalog.searches.len()
    )?;

    let config = RawConfig::default()
        .validate(Overrides {
            brokers: Some(brokers.clone()),
            group: Some("topic-matcher-demo".into()),
            input: Some("social.posts".into()),
            output: Some("kafka:matches".into()),
            dead_letter: Some("kafka:matches.dead-letter".into()),
            state_dir: Some(dir.join("state")),
            searches: Some(searches_path),
            admin_addr: Some("127.0.0.1:0".into()),
            admin_token: None,
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let running = crate::service::start(config)?;
    writeln!(
        out,
        "service running; admin API on http://{}/metrics",
        running.admin_addr
    )?;

    // The stream: the sample documents, again and again with fresh ids,
    // at a steady rate; one message in 500 is malformed.
    let docs: Vec<serde_json::Value> = SAMPLE_TWEETS
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let produced = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .create()?;
    let (p_produced, p_stop, rate) = (produced.clone(), stop.clone(), opts.rate.max(1));
    let feeder = std::thread::spawn(move || {
        let started = Instant::now();
        let mut i: u64 = 0;
        while !p_stop.load(Relaxed) {
            let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
            while i < due {
                let payload = if i % 500 == 499 {
                    format!("{{\"broken\": {i}")
                } else {
                    let mut d = docs[(i as usize) % docs.len()].clone();
                    let id = format!(
                        "{}#{}",
                        d["id"].as_str().unwrap_or("doc"),
                        i / docs.len() as u64
                    );
                    d["id"] = serde_json::Value::String(id);
                    d.to_string()
                };
                let key = i.to_string();
                let mut record = BaseRecord::to("social.posts").key(&key).payload(&payload);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((_, r)) => {
                            record = r;
                            producer.poll(Duration::from_millis(10));
                        }
                    }
                }
                i += 1;
                p_produced.store(i, Relaxed);
            }
            producer.poll(Duration::from_millis(5));
        }
        let _ = producer.flush(Duration::from_secs(10));
    });

    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    let m = running.metrics.clone();
    let (mut last_in, mut last_out, mut last_t) = (0u64, 0u64, Instant::now());
    while started.elapsed() < opts.duration {
        std::thread::sleep(Duration::from_secs(1));
        let (din, rout) = (m.documents_in.load(Relaxed), m.records_out.load(Relaxed));
        let dt = last_t.elapsed().as_secs_f64();
        let lag = produced.load(Relaxed).saturating_sub(din);
        let line = format!(
            "t={:>3}s  in {:>7.0} docs/s  out {:>7.0} matches/s  lag {:>6}  total in {:>8}  matches {:>8}  bad {:>4}  checkpoints {:>5}",
            started.elapsed().as_secs(),
            (din - last_in) as f64 / dt,
            (rout - last_out) as f64 / dt,
            lag,
            din,
            rout,
            m.documents_bad.load(Relaxed),
            m.checkpoints.load(Relaxed),
        );
        if tty {
            write!(out, "\r{line}")?;
            out.flush()?;
        } else {
            writeln!(out, "{line}")?;
        }
        (last_in, last_out, last_t) = (din, rout, Instant::now());
    }
    if tty {
        writeln!(out)?;
    }
    stop.store(true, Relaxed);
    let _ = feeder.join();
    // Let the service catch up with the last produced messages.
    let total = produced.load(Relaxed);
    let catch_up = Instant::now();
    while m.documents_in.load(Relaxed) < total && catch_up.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (din, bad, rout) = (
        m.documents_in.load(Relaxed),
        m.documents_bad.load(Relaxed),
        m.records_out.load(Relaxed),
    );
    running.stop()?;

    // Check the output topic holds every record the service reported.
    let in_topic = count_messages(&brokers, "matches")?;
    let in_dlq = count_messages(&brokers, "matches.dead-letter")?;
    writeln!(
        out,
        "\nsummary after {:.0} s:",
        started.elapsed().as_secs_f64()
    )?;
    writeln!(out, "  documents produced        {total}")?;
    writeln!(out, "  documents consumed        {din}")?;
    writeln!(
        out,
        "  bad messages (dead letter) {bad} (topic holds {in_dlq})"
    )?;
    writeln!(
        out,
        "  match records             {rout} (topic holds {in_topic})"
    )?;
    writeln!(
        out,
        "  throughput                {:.0} docs/s average",
        din as f64 / opts.duration.as_secs_f64()
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        din == total,
        "the service consumed {din} of {total} documents"
    );
    anyhow::ensure!(
        in_topic >= rout as i64,
        "the output topic holds {in_topic} records, the service wrote {rout}"
    );
    writeln!(out, "  nothing lost: every produced document was consumed and every record is in the output topic")?;
    Ok(())
}

fn count_messages(brokers: &str, topic: &str) -> anyhow::Result<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "demo-counter")
        .create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let mut total = 0;
    for t in md.topics() {
        for p in t.partitions() {
            let (lo, hi) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(5))?;
            total += hi - lo;
        }
    }
    Ok(total)
}
