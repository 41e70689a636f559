//! `bench --brokers H:P --catch-up`: the simulated incident. Measures, in
//! one run against the same broker:
//!
//! 1. **Steady state**: the service reading N documents from the start with
//!    no catch-up (threshold out of reach), from its first message to the
//!    checkpoint covering the last.
//! 2. **Catch-up**: a fresh service (new group, new state) finds the same N
//!    documents as its backlog; live documents keep arriving at
//!    `--live-rate`; timed from the catch-up job's creation to its end
//!    (the drain report), with each class's finish time.
//!
//! Documents are 10% `critical` (type dm), 30% `high` (type mention), 60%
//! `low`. `--by-topic` puts each class on its own topic (classes by input
//! topic: every partition read once); otherwise all classes share one topic
//! (read once per class).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::kafka_client::{KafkaClients, Role};
use anyhow::Context;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::broker::{bare_read, bare_read_per_partition, create_topics, time_service};
use crate::commands::Outcome;
use crate::config::{Overrides, RawConfig};
use crate::workload;

/// Options of the catch-up benchmark.
#[derive(Clone, Debug)]
pub struct CatchUpBenchOptions {
    /// The brokers and the client properties (`--kafka-config`).
    pub kafka: KafkaClients,
    /// Generated searches.
    pub searches: usize,
    /// Backlog documents.
    pub docs: usize,
    /// Seed.
    pub seed: u64,
    /// The service's output (default: a JSONL file in a temporary
    /// directory).
    pub output: Option<String>,
    /// One topic per class instead of one shared topic.
    pub by_topic: bool,
    /// How the classes share the drain.
    pub policy: crate::classes::PolicyName,
    /// Live documents per second during the catch-up.
    pub live_rate: u64,
    /// The service's matching threads (`[matching] threads`; 0: one per
    /// core).
    pub threads: usize,
}

const CLASSES: [(&str, &str); 3] = [("critical", "dm"), ("high", "mention"), ("low", "post")];

fn class_of(i: usize) -> usize {
    match i % 10 {
        0 => 0,
        1..=3 => 1,
        _ => 2,
    }
}

fn send(p: &BaseProducer, topic: &str, key: &str, value: &[u8]) -> rdkafka::error::KafkaResult<()> {
    crate::produce::send_retrying(p, BaseRecord::to(topic).key(key).payload(value))
}

/// Runs the benchmark.
///
/// # Errors
///
/// When the broker cannot be reached or the service cannot start.
pub fn run(o: &CatchUpBenchOptions, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let tag = format!("{}-{}", std::process::id(), crate::record::now_ms());
    let topics: Vec<String> = if o.by_topic {
        CLASSES
            .iter()
            .map(|(c, _)| format!("bench.cu.{c}.{tag}"))
            .collect()
    } else {
        vec![format!("bench.cu.mixed.{tag}")]
    };
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    create_topics(&o.kafka, &refs, 3).context("cannot create the benchmark topics")?;
    let searches_json = workload::searches_json(o.searches, o.seed);
    let groups = workload::brand_groups(&searches_json);
    let docs: Vec<(usize, Vec<u8>)> = workload::documents(o.docs, groups, false, o.seed)
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let mut v: serde_json::Value = serde_json::from_str(&d).expect("generated JSON");
            v["type"] = CLASSES[class_of(i)].1.into();
            (class_of(i), v.to_string().into_bytes())
        })
        .collect();
    let topic_of = |class: usize| -> &str {
        if o.by_topic {
            &topics[class]
        } else {
            &topics[0]
        }
    };
    let producer: BaseProducer = o
        .kafka
        .config(Role::Producer, &[])
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .create()?;
    let t = Instant::now();
    for (i, (class, d)) in docs.iter().enumerate() {
        send(&producer, topic_of(*class), &i.to_string(), d)?;
    }
    producer.flush(Duration::from_secs(300))?;
    writeln!(
        out,
        "backlog: {} documents ({} of them critical, {} high, {} low) produced to {} in {:.1} s",
        docs.len(),
        docs.iter().filter(|d| d.0 == 0).count(),
        docs.iter().filter(|d| d.0 == 1).count(),
        docs.iter().filter(|d| d.0 == 2).count(),
        if o.by_topic {
            "one topic per class"
        } else {
            "one topic"
        },
        t.elapsed().as_secs_f64()
    )?;

    let dir = std::env::temp_dir().join(format!("topic-matcher-bench-cu-{tag}"));
    std::fs::create_dir_all(&dir)?;
    let searches_path = dir.join("searches.json");
    std::fs::write(&searches_path, &searches_json)?;
    let classes_toml = if o.by_topic {
        format!(
            "[[classes]]\nname = \"critical\"\ntopics = [\"{}\"]\n[[classes]]\nname = \"high\"\ntopics = [\"{}\"]\n[[classes]]\nname = \"low\"\n",
            topics[0], topics[1]
        )
    } else {
        "[[classes]]\nname = \"critical\"\nwhen = { type = [\"dm\"] }\n[[classes]]\nname = \"high\"\nwhen = { type = [\"mention\"] }\n[[classes]]\nname = \"low\"\n".into()
    };
    let config = |name: &str, threshold: i64| -> anyhow::Result<crate::config::Config> {
        let toml = format!(
            "{classes_toml}\n[catch_up]\npolicy = \"{}\"\nweights = {{ critical = 60, high = 30, low = 10 }}\nthreshold = {threshold}\n",
            o.policy
        );
        RawConfig::from_toml(&toml)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .validate(Overrides {
                brokers: Some(o.kafka.brokers.clone()),
                group: Some(format!("bench-cu-{name}-{tag}")),
                input: Some(topics.join(",")),
                output: Some(o.output.clone().unwrap_or(format!(
                    "file:{}",
                    dir.join(format!("{name}.jsonl")).display()
                ))),
                dead_letter: Some(format!("file:{}", dir.join("dead.jsonl").display())),
                state_dir: Some(dir.join(format!("state-{name}"))),
                searches: Some(searches_path.clone()),
                admin_addr: Some("127.0.0.1:0".into()),
                admin_token: None,
            })
            .map(|mut c| {
                c.kafka = o.kafka.clone();
                if o.threads > 0 {
                    c.matching_threads = o.threads;
                }
                c
            })
            .map_err(|e| anyhow::anyhow!("{e}"))
    };

    // 1. Steady state: everything read as live data.
    let running = crate::service::start(config("steady", i64::MAX)?)?;
    let steady_secs = time_service(
        &running.metrics,
        docs.len() as u64,
        Duration::from_secs(900),
    );
    let steady = docs.len() as f64 / steady_secs;
    running.stop()?;
    writeln!(
        out,
        "steady state: {} documents in {steady_secs:.2} s = {steady:.0} docs/s",
        docs.len()
    )?;

    // One read of the data by a bare consumer: no drain of a class mixed
    // into a shared topic can end sooner.
    let scan_secs = bare_read(&o.kafka, &refs, docs.len(), &tag)?;
    writeln!(
        out,
        "one read by a bare consumer: {} messages in {scan_secs:.2} s = {:.0} msg/s",
        docs.len(),
        docs.len() as f64 / scan_secs
    )?;
    let parallel_secs = bare_read_per_partition(&o.kafka, &refs, docs.len())?;
    writeln!(
        out,
        "one read by a bare consumer per partition, all at once: {parallel_secs:.2} s = {:.0} msg/s",
        docs.len() as f64 / parallel_secs
    )?;
    let scan_secs = scan_secs.min(parallel_secs);

    // 2. Catch-up with live data arriving.
    let running = crate::service::start(config("catchup", 100)?)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while running.metrics.assigned_partitions.load(Relaxed) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let live = {
        let (stop, kafka, rate) = (stop.clone(), o.kafka.clone(), o.live_rate.max(1));
        let topic = topic_of(2).to_string();
        let sample = docs[docs.len() - 1].1.clone();
        std::thread::spawn(move || -> anyhow::Result<u64> {
            let p: BaseProducer = kafka
                .config(Role::Producer, &[])
                .set("linger.ms", "5")
                .create()?;
            let started = Instant::now();
            let mut n = 0u64;
            while !stop.load(Relaxed) {
                let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                while n < due {
                    send(&p, &topic, &format!("live-{n}"), &sample)?;
                    n += 1;
                }
                // (poll with a timeout spins in this client version)
                p.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_millis(2));
            }
            p.flush(Duration::from_secs(30))?;
            Ok(n)
        })
    };
    let report_path = dir.join("state-catchup/reports/drain-1.json");
    let deadline = Instant::now() + Duration::from_secs(1800);
    while !report_path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            crate::terminal::draw_bars(&running.metrics);
        }
    }
    crate::terminal::Screen::stderr().keep_bars();
    stop.store(true, Relaxed);
    let live_n = live
        .join()
        .map_err(|_| anyhow::anyhow!("live producer panicked"))??;
    running.stop()?;
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&report_path).context("no drain report: the catch-up did not finish")?,
    )?;
    let total = report["drain_seconds"].as_f64().unwrap_or(0.0);
    let backlog = report["backlog_messages"].as_i64().unwrap_or(0);
    let rate = backlog as f64 / total.max(1e-9);
    writeln!(
        out,
        "catch-up ({}, {}): backlog {backlog} messages drained in {total:.2} s = {rate:.0} msg/s while {live_n} live documents arrived ({} docs/s)",
        o.policy,
        if o.by_topic { "classes by topic" } else { "classes mixed in one topic" },
        o.live_rate
    )?;
    for c in report["classes"].as_array().into_iter().flatten() {
        let f = c["finished_after_seconds"].as_f64().unwrap_or(f64::NAN);
        writeln!(
            out,
            "  {:<9} {:>7} documents  finished after {f:>7.2} s  ({:.0}% of the drain)",
            c["class"].as_str().unwrap_or(""),
            c["documents"],
            100.0 * f / total.max(1e-9)
        )?;
    }
    writeln!(
        out,
        "drain rate / steady-state throughput: {:.2}",
        rate / steady
    )?;
    writeln!(
        out,
        "drain rate / live ingest rate: {:.1}x",
        rate / o.live_rate.max(1) as f64
    )?;
    if !o.by_topic {
        // The top class is spread over the whole topic: it is in only
        // after one full read. For it to be in within 20% of a drain
        // running at 0.75 of steady state, one read would have to take at
        // most 0.2 / 0.75 of the steady-state time.
        writeln!(
            out,
            "one full read = {:.0}% of this drain; the top class in after 20% of a drain at 0.75 of steady state needs one read in {:.2} s (measured {scan_secs:.2} s)",
            100.0 * scan_secs / total.max(1e-9),
            0.2 / 0.75 * steady_secs
        )?;
    }
    writeln!(out, "report: {}", report_path.display())?;
    Ok(Outcome::Success)
}
