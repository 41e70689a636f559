//! Fault injection a real broker cannot do, with librdkafka's mock cluster:
//! the output topic refuses writes for a while. The service must pause its
//! input instead of queueing (SPEC §5.5), report the outage, and lose
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

/// Ids of the documents with an `rstats` record in `topic`, read from the
/// start until `want` are found or 30 s pass.
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
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("in", 3, 1).unwrap();
    cluster.create_topic("out", 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = std::env::temp_dir().join(format!("tm-outage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = RawConfig::default()
        .validate(Overrides {
            brokers: Some(brokers.clone()),
            group: Some("outage".into()),
            input: Some("in".into()),
            output: Some("kafka:out".into()),
            dead_letter: Some(format!("file:{}", dir.join("dead.jsonl").display())),
            state_dir: Some(dir.join("state")),
            searches: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/searches.json").into()),
            admin_addr: Some("127.0.0.1:0".into()),
            admin_token: None,
        })
        .unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let all = docs(3000);
    for (i, d) in all.iter().enumerate() {
        let k = i.to_string();
        producer
            .send(BaseRecord::to("in").key(&k).payload(d))
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
    let ids = rstats_doc_ids(&brokers, "out", 3, 3000);
    assert_eq!(ids.len(), 3000, "records lost across the output outage");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_slow_broker_slows_the_service_down_and_loses_nothing() {
    // Every request to the (only) broker takes 250 ms more: fetches,
    // produce acknowledgements, offset commits.
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("slow-in", 2, 1).unwrap();
    cluster.create_topic("slow-out", 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = std::env::temp_dir().join(format!("tm-slow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
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
    let config = RawConfig::default()
        .validate(Overrides {
            brokers: Some(brokers.clone()),
            group: Some("slow".into()),
            input: Some("slow-in".into()),
            output: Some("kafka:slow-out".into()),
            dead_letter: Some(format!("file:{}", dir.join("dead.jsonl").display())),
            state_dir: Some(dir.join("state")),
            searches: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/searches.json").into()),
            admin_addr: Some("127.0.0.1:0".into()),
            admin_token: None,
        })
        .unwrap();
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
