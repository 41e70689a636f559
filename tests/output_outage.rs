//! Fault injection a real broker cannot do, with librdkafka's mock cluster:
//! the output topic refuses writes for a while. The service must pause its
//! input instead of queueing (docs/operations.md §5.5), report the outage, and lose
//! nothing once the output recovers.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::Message;
use topic_matcher::config::{Overrides, RawConfig};

fn docs(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r##"{{"id": "o{i}", "text": "#rstats and python number {i}"}}"##))
        .collect()
}

/// The service on the mock cluster: group `name`, input `name-in`, output
/// topic `name-out`, the bundled searches.
fn service_config(
    raw: RawConfig,
    brokers: &str,
    name: &str,
    dir: &std::path::Path,
) -> topic_matcher::config::Config {
    raw.validate(Overrides {
        brokers: Some(brokers.to_string()),
        group: Some(name.into()),
        input: Some(format!("{name}-in")),
        output: Some(format!("kafka:{name}-out")),
        dead_letter: Some(format!("file:{}", dir.join("dead.jsonl").display())),
        state_dir: Some(dir.join("state")),
        searches: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/searches.json").into()),
        admin_addr: Some("127.0.0.1:0".into()),
        admin_token: None,
    })
    .unwrap()
}

/// Ids of the documents with an `rstats` record in `topic`, read from the
/// start until `want` are found or 30 s pass.
/// A mock cluster of `brokers` brokers with topics `NAME-in` and
/// `NAME-out` of `partitions` partitions, and an empty state directory.
fn cluster(
    brokers: i32,
    name: &str,
    partitions: i32,
) -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    std::path::PathBuf,
) {
    let cluster = MockCluster::new(brokers).unwrap();
    cluster
        .create_topic(&format!("{name}-in"), partitions, 1)
        .unwrap();
    cluster
        .create_topic(&format!("{name}-out"), partitions, 1)
        .unwrap();
    let dir = std::env::temp_dir().join(format!("tm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    (cluster, dir)
}

fn rstats_doc_ids(
    brokers: &str,
    topic: &str,
    partitions: i32,
    want: usize,
) -> std::collections::BTreeSet<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("check-{topic}"))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut ids = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ids.len() < want && Instant::now() < deadline {
        if let Some(Ok(msg)) = c.poll(Duration::from_millis(200)) {
            let v: serde_json::Value = serde_json::from_slice(msg.payload().unwrap()).unwrap();
            if v["topic_id"] == "rstats" {
                ids.insert(v["doc_id"].as_str().unwrap().to_string());
            }
        }
    }
    ids
}

#[test]
fn output_refusing_writes_pauses_input_and_loses_nothing() {
    let (cluster, dir) = cluster(1, "outage", 3);
    let brokers = cluster.bootstrap_servers();
    let config = service_config(RawConfig::default(), &brokers, "outage", &dir);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let all = docs(3000);
    for (i, d) in all.iter().enumerate() {
        let k = i.to_string();
        producer
            .send(BaseRecord::to("outage-in").key(&k).payload(d))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let running = topic_matcher::service::start(config).unwrap();
    // Every produce request fails for a while: the service's output is
    // down from its first record on.
    let errors = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 200];
    cluster.request_errors(RDKafkaApiKey::Produce, &errors);
    let m = running.metrics.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while m.output_errors.load(Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the outage was never reported");
        std::thread::sleep(Duration::from_millis(50));
    }
    let in_during = m.documents_in.load(Relaxed);
    let saw_outage = m.output_down.load(Relaxed) == 1;
    // The errors run out: the service recovers and catches up.
    let deadline = Instant::now() + Duration::from_secs(120);
    while m.checkpoints.load(Relaxed) == 0 || m.output_down.load(Relaxed) == 1 {
        assert!(
            Instant::now() < deadline,
            "no recovery: {} records, down {}",
            m.records_out.load(Relaxed),
            m.output_down.load(Relaxed)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    running.stop().unwrap();
    eprintln!("documents read while the output was first found down: {in_during}");
    assert!(
        saw_outage,
        "the injected produce errors never surfaced as an output outage"
    );

    // Every document's record is in the output topic.
    let ids = rstats_doc_ids(&brokers, "outage-out", 3, 3000);
    assert_eq!(ids.len(), 3000, "records lost across the output outage");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_slow_broker_slows_the_service_down_and_loses_nothing() {
    // Every request to the (only) broker takes 250 ms more: fetches,
    // produce acknowledgements, offset commits.
    let (cluster, dir) = cluster(1, "slow", 2);
    let brokers = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let all = docs(2000);
    for (i, d) in all.iter().enumerate() {
        let k = i.to_string();
        producer
            .send(BaseRecord::to("slow-in").key(&k).payload(d))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    cluster
        .broker_round_trip_time(1, Duration::from_millis(250))
        .unwrap();
    let config = service_config(RawConfig::default(), &brokers, "slow", &dir);
    let running = topic_matcher::service::start(config).unwrap();
    let m = running.metrics.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Done when every document is read and a checkpoint covers them all.
    loop {
        let covered: i64 = m
            .partitions
            .lock()
            .unwrap()
            .values()
            .filter_map(|p| p.checkpoint)
            .sum();
        if m.documents_in.load(Relaxed) >= 2000 && covered >= 2000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not drained through the slow broker: {} read, {covered} checkpointed",
            m.documents_in.load(Relaxed)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let records = m.records_out.load(Relaxed);
    running.stop().unwrap();
    assert_eq!(m.documents_bad.load(Relaxed), 0);

    cluster
        .broker_round_trip_time(1, Duration::from_millis(0))
        .unwrap();
    let ids = rstats_doc_ids(&brokers, "slow-out", 2, 2000);
    assert_eq!(ids.len(), 2000, "records lost through the slow broker");
    assert!(records >= 2000, "{records} match records written");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Resident memory of this process in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[test]
fn a_long_output_outage_pauses_input_and_keeps_memory_bounded() {
    // Two brokers: the input (and the group) on broker 1, the output
    // topic's partitions led by broker 2, which goes down for 15 s while
    // the input keeps arriving.
    let (cluster, dir) = cluster(2, "long", 3);
    for p in 0..3 {
        cluster.partition_leader("long-in", p, Some(1)).unwrap();
        cluster.partition_leader("long-out", p, Some(2)).unwrap();
    }
    cluster
        .coordinator(rdkafka::mocking::MockCoordinator::Group("long".into()), 1)
        .unwrap();
    let brokers = cluster.bootstrap_servers();
    // A backlog above 1,000 messages per partition after the outage is
    // drained as a catch-up (live data from the head at once).
    let config = service_config(
        RawConfig::from_toml("[catch_up]\nthreshold = 1000\n").unwrap(),
        &brokers,
        "long",
        &dir,
    );
    let running = topic_matcher::service::start(config).unwrap();
    let m = running.metrics.clone();
    // The input: 1,000 documents a second until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = {
        let (stop, brokers) = (stop.clone(), brokers.clone());
        std::thread::spawn(move || {
            let p: BaseProducer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("linger.ms", "5")
                .create()
                .unwrap();
            let started = Instant::now();
            let mut n = 0usize;
            while !stop.load(Relaxed) {
                let due = (started.elapsed().as_secs_f64() * 1000.0) as usize;
                while n < due {
                    let d =
                        format!(r##"{{"id": "l{n}", "text": "#rstats and python number {n}"}}"##);
                    let k = n.to_string();
                    let _ = p.send(BaseRecord::to("long-in").key(&k).payload(&d));
                    n += 1;
                }
                p.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_millis(5));
            }
            p.flush(Duration::from_secs(30)).unwrap();
            n
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while m.checkpoints.load(Relaxed) < 2 {
        assert!(Instant::now() < deadline, "no checkpoint before the outage");
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.broker_down(2).unwrap();
    let down_at = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.output_down.load(Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "the output outage was never reported"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Paused: from here on nothing more is read while the input grows.
    std::thread::sleep(Duration::from_secs(3));
    let (in_a, rss_a) = (m.documents_in.load(Relaxed), rss_bytes());
    while down_at.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (in_b, rss_b) = (m.documents_in.load(Relaxed), rss_bytes());
    eprintln!(
        "during the outage: documents read {in_a} → {in_b}, resident memory {:.1} → {:.1} MiB",
        rss_a as f64 / 1048576.0,
        rss_b as f64 / 1048576.0
    );
    assert!(
        in_b - in_a <= 100,
        "input kept being read while the output was down: {in_a} → {in_b}"
    );
    assert!(
        rss_b < rss_a + (32 << 20),
        "memory grew during the outage: {rss_a} → {rss_b}"
    );
    cluster.broker_up(2).unwrap();
    stop.store(true, Relaxed);
    let produced = feeder.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while m.documents_in.load(Relaxed) < produced as u64 || m.output_down.load(Relaxed) == 1 {
        assert!(
            Instant::now() < deadline,
            "no recovery: {} of {produced} read",
            m.documents_in.load(Relaxed)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let caught_up = |jobs: &serde_json::Value| {
        jobs.as_array()
            .into_iter()
            .flatten()
            .any(|j| j["kind"] == "catch_up" && j["state"] == "done")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut jobs = m.drain.lock().unwrap().1.clone();
    while !caught_up(&jobs) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        jobs = m.drain.lock().unwrap().1.clone();
    }
    running.stop().unwrap();
    assert!(
        caught_up(&jobs),
        "the backlog after the outage was not drained as a catch-up: {jobs}"
    );
    let ids = rstats_doc_ids(&brokers, "long-out", 3, produced);
    assert_eq!(ids.len(), produced, "records lost across the long outage");
    let _ = std::fs::remove_dir_all(&dir);
}

fn big_doc_producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("batch.size", "100000")
        .create()
        .unwrap()
}

/// Produces documents `{tag}{i}` of about 10 KB each (the mock broker keeps
/// 5 MB per partition, so 600 of them no longer fit), of type `kind(i)`.
fn produce_big(
    producer: &BaseProducer,
    topic: &str,
    partition: Option<i32>,
    range: std::ops::Range<usize>,
    tag: &str,
    kind: impl Fn(usize) -> &'static str,
) {
    for i in range {
        let d = format!(
            r##"{{"id": "{tag}{i}", "type": "{}", "text": "#rstats number {i} {}"}}"##,
            kind(i),
            "padding ".repeat(1250)
        );
        let mut record = BaseRecord::<(), _>::to(topic).payload(&d);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        producer.send(record).unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Retention deletes backlog messages of a stored drain job before its
/// classes read them: the drain reports the deleted range (metric, job)
/// instead of jumping silently, and drains everything still in the log.
#[test]
fn backlog_deleted_by_retention_before_the_drain_read_it_is_reported() {
    let (cluster, dir) = cluster(1, "ret", 1);
    let brokers = cluster.bootstrap_servers();
    let raw = || {
        RawConfig::from_toml(
            "[[classes]]\nname = \"critical\"\nwhen = { type = [\"dm\"] }\n[[classes]]\nname = \"low\"\n\
             [catch_up]\nthreshold = 10\n[limits]\ndrain_deadline_ms = 1000\n",
        )
        .unwrap()
    };
    let producer = big_doc_producer(&brokers);
    let produce = |range: std::ops::Range<usize>| {
        produce_big(&producer, "ret-in", None, range, "r", |i| {
            if i % 10 == 0 {
                "dm"
            } else {
                "post"
            }
        });
    };
    produce(0..300);

    // First run: the backlog becomes a drain job, but the output refuses
    // every write, so nothing of it is acknowledged before the stop.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 100_000],
    );
    let running =
        topic_matcher::service::start(service_config(raw(), &brokers, "ret", &dir)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while running.metrics.output_down.load(Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the output never went down");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A graceful stop with the output down gives up after the drain
    // deadline (it used to wait for the output forever).
    running.stop().unwrap();
    cluster.clear_request_errors(RDKafkaApiKey::Produce);
    // Every class was read, but no record got out: nothing is finished.
    assert!(
        !dir.join("state/reports/drain-1.json").exists(),
        "a drain whose records never reached the output was reported finished"
    );

    // Meanwhile the log outgrows the broker's retention.
    produce(300..600);
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "ret-probe")
        .create()
        .unwrap();
    let (low, high) = probe
        .fetch_watermarks("ret-in", 0, Duration::from_secs(10))
        .unwrap();
    assert!(low > 0 && low < 300, "log now {low}..{high}");

    // Second run: the job resumes; its classes find their cursors deleted.
    let running =
        topic_matcher::service::start(service_config(raw(), &brokers, "ret", &dir)).unwrap();
    let m = running.metrics.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = |m: &topic_matcher::service::metrics::Metrics| {
        let jobs = m.drain.lock().unwrap().1.clone();
        jobs.as_array()
            .and_then(|j| j.first().cloned())
            .filter(|j| j["state"] == "done")
    };
    let job = loop {
        if let Some(job) = done(&m) {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "the drain never ended: {:?}",
            m.drain.lock().unwrap().1
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    running.stop().unwrap();
    eprintln!("log {low}..{high}; job: {job}");
    assert_eq!(
        m.retention_lost.load(Relaxed),
        low as u64,
        "the deleted offsets [0, {low}) counted once"
    );
    assert_eq!(job["deleted_by_retention"], low);
    assert!(dir.join("state/reports/drain-1.json").exists());
    // Everything still in the log got its record.
    let ids = rstats_doc_ids(&brokers, "ret-out", 1, (high - low) as usize);
    let missing: Vec<i64> = (low..high)
        .filter(|i| !ids.contains(&format!("r{i}")))
        .collect();
    assert!(
        missing.is_empty(),
        "records missing for offsets {missing:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A partition started at `latest` with no checkpoint and no group offset
/// lost nothing, whatever its log start: when another partition's
/// checkpoint fell behind retention, only that one's loss is reported, and
/// the new partition does not jump back to its log start.
#[test]
fn starting_at_latest_with_a_truncated_log_reports_no_false_loss() {
    let (cluster, dir) = cluster(1, "lat", 2);
    let brokers = cluster.bootstrap_servers();
    let producer = big_doc_producer(&brokers);
    let produce = |partition: i32, range: std::ops::Range<usize>, tag: &str| {
        produce_big(&producer, "lat-in", Some(partition), range, tag, |_| "post");
    };
    // More than the mock broker keeps: both logs start past 0.
    produce(0, 0..600, "a-old");
    produce(1, 0..600, "b-old");
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "lat-probe")
        .create()
        .unwrap();
    let (low0, _) = probe
        .fetch_watermarks("lat-in", 0, Duration::from_secs(10))
        .unwrap();
    let (low1, _) = probe
        .fetch_watermarks("lat-in", 1, Duration::from_secs(10))
        .unwrap();
    assert!(
        low0 > 5 && low1 > 0,
        "the logs were truncated: {low0}, {low1}"
    );
    // Partition 0 was checkpointed at 5 long ago; partition 1 never was.
    {
        let store = topic_matcher::state_store::StateStore::open(&dir.join("state")).unwrap();
        store
            .commit(
                &[(
                    topic_matcher::state_store::TopicPartition::new("lat-in", 0),
                    5,
                )],
                &[],
            )
            .unwrap();
    }
    let raw = RawConfig::from_toml("[kafka]\nstart = \"latest\"\n").unwrap();
    let running =
        topic_matcher::service::start(service_config(raw, &brokers, "lat", &dir)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while running.metrics.retention_lost.load(Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "the real loss of partition 0 was not reported"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    produce(1, 0..20, "b-new");
    let ids = rstats_doc_ids(&brokers, "lat-out", 2, 600 - low0 as usize + 20);
    let lost = running.metrics.retention_lost.load(Relaxed);
    running.stop().unwrap();
    assert_eq!(lost, (low0 - 5) as u64, "only partition 0's loss");
    let reread = ids.iter().filter(|i| i.starts_with("b-old")).count();
    assert_eq!(reread, 0, "partition 1 jumped back to its log start");
    assert_eq!(ids.iter().filter(|i| i.starts_with("b-new")).count(), 20);
}

/// The broker fences this instance (another member took its group
/// instance id, e.g. a copied state directory): the service stops with an
/// error that says so, instead of retrying forever.
#[test]
fn a_fenced_instance_stops_with_a_clear_error() {
    let (cluster, dir) = cluster(1, "fen", 1);
    let brokers = cluster.bootstrap_servers();
    let raw = RawConfig::from_toml("[kafka]\ninstance_id = \"cloned\"\n").unwrap();
    let running =
        topic_matcher::service::start(service_config(raw, &brokers, "fen", &dir)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while running.metrics.assigned_partitions.load(Relaxed) == 0 {
        assert!(Instant::now() < deadline, "never assigned");
        std::thread::sleep(Duration::from_millis(50));
    }
    for api in [
        RDKafkaApiKey::Heartbeat,
        RDKafkaApiKey::JoinGroup,
        RDKafkaApiKey::SyncGroup,
        RDKafkaApiKey::OffsetCommit,
    ] {
        cluster.request_errors(
            api,
            &vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID; 1000],
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !running.is_finished() {
        assert!(Instant::now() < deadline, "still running while fenced");
        std::thread::sleep(Duration::from_millis(100));
    }
    let err = running
        .wait()
        .expect_err("a fenced instance stops with an error");
    let text = format!("{err:#}");
    assert!(text.contains("same group instance id"), "{text}");
}
