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
use std::path::PathBuf;
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

/// The demo's priority classes: replies (customer care) first, then
/// English posts, then the rest; a backlog above 1,000 messages per
/// partition starts a catch-up.
pub const DEMO_CLASSES: &str = r#"
[[classes]]
name = "critical"
when = { type = ["reply"] }
[[classes]]
name = "high"
when = { lang = ["en"] }
[[classes]]
name = "low"

[catch_up]
policy = "strict"
threshold = 1000
"#;

/// Options of `demo`.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// How long to stream.
    pub duration: Duration,
    /// Documents per second produced.
    pub rate: u64,
    /// How long the matcher is down, in the middle of the run (zero: no
    /// outage).
    pub outage: Duration,
}

/// Runs the demo, writing the dashboard and summary to `out`.
///
/// # Errors
///
/// When the embedded cluster or the service cannot start.
pub fn run(opts: &DemoOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let cluster = MockCluster::new(1).context("cannot start the embedded Kafka cluster")?;
    // 12 partitions: the mock cluster keeps about 10,000 messages per
    // partition, and the outage's backlog must stay in Kafka.
    cluster.create_topic("social.posts", 12, 1)?;
    cluster.create_topic("matches", 3, 1)?;
    cluster.create_topic("matches.dead-letter", 1, 1)?;
    let brokers = cluster.bootstrap_servers();
    writeln!(out, "embedded Kafka (mock cluster) at {brokers}: topics social.posts (12 partitions), matches, matches.dead-letter")?;

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

    let mut config = RawConfig::from_toml(DEMO_CLASSES)
        .map_err(|e| anyhow::anyhow!("{e}"))?
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
    let running = crate::service::start(config.clone())?;
    // After the outage the service comes back on the same address, so the
    // console stays open in the browser through it.
    config.admin_addr = running.admin_addr;
    writeln!(
        out,
        "service running; console on http://{}/ (live numbers, catch-up bars, playground), metrics on /metrics",
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
                let record = BaseRecord::to("social.posts").key(&key).payload(&payload);
                if let Err(e) = crate::produce::send_retrying(&producer, record) {
                    tracing::error!(error = %e, "the demo's producer failed");
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
    // Live → outage (the matcher down, the stream still flowing into
    // Kafka) → back: live at once, the backlog drained by class.
    let live_first = if opts.outage.is_zero() {
        opts.duration
    } else {
        opts.duration.saturating_sub(opts.outage) / 3
    };
    let mut running = Some(running);
    let mut totals = (0u64, 0u64, 0u64); // in, bad, records of stopped runs
    let mut dash = Dashboard::default();
    // Joining the group takes a few seconds on the embedded cluster.
    let m = running.as_ref().expect("running").metrics.clone();
    while m.assigned_partitions.load(Relaxed) == 0 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
        let line = format!(
            "t={:>3}s  joining the consumer group…  produced {:>7}",
            started.elapsed().as_secs(),
            produced.load(Relaxed)
        );
        dash.line(out, tty, &line)?;
    }
    let live_first = started.elapsed() + live_first.max(Duration::from_secs(5));
    while started.elapsed() < live_first {
        std::thread::sleep(Duration::from_secs(1));
        let m = &running.as_ref().expect("running").metrics;
        dash.live(out, tty, "live", started, m, totals, produced.load(Relaxed))?;
    }
    if !opts.outage.is_zero() {
        let r = running.take().expect("running");
        let m = r.metrics.clone();
        r.stop()?;
        totals = add(totals, &m);
        dash.newline(out, tty)?;
        writeln!(
            out,
            "\n*** the matcher goes down for {} s; the stream keeps flowing into Kafka ***",
            opts.outage.as_secs()
        )?;
        let down = Instant::now();
        let at_down = produced.load(Relaxed);
        while down.elapsed() < opts.outage {
            std::thread::sleep(Duration::from_secs(1));
            let line = format!(
                "t={:>3}s  MATCHER DOWN  backlog {:>7} messages and growing",
                started.elapsed().as_secs(),
                produced.load(Relaxed) - at_down
            );
            dash.line(out, tty, &line)?;
        }
        dash.newline(out, tty)?;
        writeln!(
            out,
            "\n*** the matcher is back: live data first, the backlog drained by priority class ***"
        )?;
        let reports = crate::service::drain::reports_dir(&config.state_dir);
        let done_before = std::fs::read_dir(&reports).map_or(0, |d| d.count());
        let r = crate::service::start(config.clone())?;
        let new_report = || -> Option<PathBuf> {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&reports)
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            if found.len() * 2 <= done_before {
                return None;
            }
            found.sort_by_key(|p| {
                p.file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.strip_prefix("drain-"))
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
            });
            found.pop()
        };
        let back = Instant::now();
        let mut shown = 0;
        while new_report().is_none() && back.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(500));
            let progress = r.metrics.drain.lock().expect("drain lock").0.clone();
            let live = format!(
                "t={:>3}s  matched {:>8} docs (live and backlog), live lag {:>6}",
                started.elapsed().as_secs(),
                r.metrics.documents_in.load(Relaxed),
                r.metrics.lag_total.load(Relaxed).max(0)
            );
            let mut lines = vec![live];
            if r.metrics.assigned_partitions.load(Relaxed) == 0 {
                // No drain job before the assignment: no bars to show yet.
                lines.push("rejoining the consumer group… the backlog waits in Kafka".into());
            } else {
                lines.extend(progress.iter().map(crate::terminal::bar_line));
            }
            if tty {
                shown = crate::terminal::redraw(out, &lines, shown)?;
            } else if back.elapsed().as_millis() % 2000 < 500 {
                writeln!(out, "{}", lines.join(" | "))?;
            }
        }
        let report = new_report();
        match report
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        {
            Some(rep) => {
                writeln!(
                    out,
                    "\ndrain report: {} backlog messages drained in {:.1} s ({:.0} msg/s) while {} live documents were matched",
                    rep["backlog_messages"],
                    rep["drain_seconds"].as_f64().unwrap_or(0.0),
                    rep["drain_rate_messages_per_second"].as_f64().unwrap_or(0.0),
                    rep["live_documents_during_drain"]
                )?;
                for c in rep["classes"].as_array().into_iter().flatten() {
                    writeln!(
                        out,
                        "  {:<9} {:>6} documents, in after {:>5.1} s (at {})",
                        c["class"].as_str().unwrap_or(""),
                        c["documents"],
                        c["finished_after_seconds"].as_f64().unwrap_or(0.0),
                        c["finished_at"].as_str().unwrap_or("")
                    )?;
                }
                let keep = std::env::temp_dir().join("topic-matcher-demo-drain-report.html");
                let html = report.as_ref().map(|p| p.with_extension("html"));
                if html.is_some_and(|h| std::fs::copy(h, &keep).is_ok()) {
                    writeln!(out, "  chart of the backlog per class: {}", keep.display())?;
                }
            }
            None => writeln!(out, "\nthe catch-up did not finish within 120 s")?,
        }
        running = Some(r);
        let end = started
            .elapsed()
            .max(opts.duration.saturating_sub(Duration::from_secs(3)))
            + Duration::from_secs(3);
        while started.elapsed() < end {
            std::thread::sleep(Duration::from_secs(1));
            let m = &running.as_ref().expect("running").metrics;
            dash.live(out, tty, "live", started, m, totals, produced.load(Relaxed))?;
        }
    }
    dash.newline(out, tty)?;
    let running = running.expect("running");
    let m = running.metrics.clone();
    stop.store(true, Relaxed);
    let _ = feeder.join();
    // Let the service catch up with the last produced messages.
    let total = produced.load(Relaxed);
    let catch_up = Instant::now();
    while add(totals, &m).0 < total && catch_up.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    running.stop()?;
    let (din, bad, rout) = add(totals, &m);

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
        "  bad messages (dead letter) {bad} (topic received {in_dlq})"
    )?;
    writeln!(
        out,
        "  match records             {rout} (topic received {in_topic})"
    )?;
    writeln!(
        out,
        "  throughput                {:.0} docs/s average",
        din as f64
            / opts
                .duration
                .saturating_sub(opts.outage)
                .as_secs_f64()
                .max(1.0)
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        din == total,
        "the service consumed {din} of {total} documents"
    );
    anyhow::ensure!(
        in_topic >= rout as i64,
        "the output topic received {in_topic} records, the service wrote {rout}"
    );
    writeln!(out, "  nothing lost: every produced document was consumed and every record reached the output topic")?;
    Ok(())
}

/// Documents in, bad and records out of the stopped runs plus `m`.
fn add(t: (u64, u64, u64), m: &crate::service::metrics::Metrics) -> (u64, u64, u64) {
    (
        t.0 + m.documents_in.load(Relaxed),
        t.1 + m.documents_bad.load(Relaxed),
        t.2 + m.records_out.load(Relaxed),
    )
}

/// The one-line live dashboard.
#[derive(Default)]
struct Dashboard {
    last: Option<(u64, u64, Instant)>,
    open: bool,
}

impl Dashboard {
    #[allow(clippy::too_many_arguments)]
    fn live(
        &mut self,
        out: &mut dyn Write,
        tty: bool,
        label: &str,
        started: Instant,
        m: &crate::service::metrics::Metrics,
        totals: (u64, u64, u64),
        produced: u64,
    ) -> std::io::Result<()> {
        let (din, bad, rout) = add(totals, m);
        let (last_in, last_out, last_t) = self.last.unwrap_or((din, rout, started));
        let dt = last_t.elapsed().as_secs_f64().max(1e-3);
        let line = format!(
            "t={:>3}s  {label}  in {:>7.0} docs/s  out {:>7.0} matches/s  lag {:>6}  total in {:>8}  matches {:>8}  bad {:>4}  checkpoints {:>5}",
            started.elapsed().as_secs(),
            din.saturating_sub(last_in) as f64 / dt,
            rout.saturating_sub(last_out) as f64 / dt,
            produced.saturating_sub(din),
            din,
            rout,
            bad,
            m.checkpoints.load(Relaxed),
        );
        self.last = Some((din, rout, Instant::now()));
        self.line(out, tty, &line)
    }

    fn line(&mut self, out: &mut dyn Write, tty: bool, line: &str) -> std::io::Result<()> {
        if tty {
            write!(out, "\r\x1b[2K{line}")?;
            self.open = true;
            out.flush()
        } else {
            writeln!(out, "{line}")
        }
    }

    fn newline(&mut self, out: &mut dyn Write, tty: bool) -> std::io::Result<()> {
        if tty && self.open {
            self.open = false;
            writeln!(out)?;
        }
        Ok(())
    }
}

/// Messages ever written to `topic`: the sum of its partitions' high
/// watermarks (offsets start at 0). Not high − low: the embedded cluster
/// keeps at most 5 MB or 100,000 messages per partition and deletes the
/// oldest beyond that, as retention would.
fn count_messages(brokers: &str, topic: &str) -> anyhow::Result<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "demo-counter")
        .create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let mut total = 0;
    for t in md.topics() {
        for p in t.partitions() {
            let (_, hi) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(5))?;
            total += hi;
        }
    }
    Ok(total)
}
