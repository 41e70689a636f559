//! The streaming service against a real broker (tansu with sqlite storage):
//! end-to-end matching to a Kafka output, dead letters, kill -9 and
//! restart, two instances in one group. Every test compares the output
//! with what the offline matcher expects for the same documents.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn wait_for_ids(
    brokers: &str,
    topic: &str,
    want: &std::collections::BTreeMap<String, usize>,
    timeout: Duration,
) -> std::collections::BTreeMap<String, usize> {
    poll_until(
        timeout,
        Duration::from_millis(500),
        || {
            match_ids(&read_all(brokers, topic, 3, Duration::from_secs(5), |_| {
                false
            }))
        },
        |got| want.keys().all(|k| got.contains_key(k)),
    )
}

#[test]
fn end_to_end_matches_to_kafka_and_bad_messages_to_dead_letters() {
    let b = shared_broker();
    let brokers = b.addr();
    b.create_topic("e2e.in", 3);
    b.create_topic("e2e.out", 3);
    let (mut docs, want) = sample_docs(600, "e2e");
    // A poison flood: not JSON, not UTF-8, no id, no text.
    let bad: Vec<Vec<u8>> = (0..40)
        .map(|i| match i % 4 {
            0 => b"not json".to_vec(),
            1 => vec![0xff, 0xfe, b'{'],
            2 => br#"{"text": "no id"}"#.to_vec(),
            _ => format!(r#"{{"id": "x{i}"}}"#).into_bytes(),
        })
        .collect();
    docs.extend(bad);
    produce(&brokers, "e2e.in", &docs);

    let dir = temp_dir("e2e");
    let dlq = dir.join("dead.jsonl");
    let mut svc = Service::start(&ServiceOpts {
        brokers: &brokers,
        group: "e2e",
        input: "e2e.in",
        output: "kafka:e2e.out".into(),
        dead_letter: format!("file:{}", dlq.display()),
        state: dir.join("state"),
        log: dir.join("service.log"),
    });
    let got = wait_for_ids(&brokers, "e2e.out", &want, Duration::from_secs(120));
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} match records missing, e.g. {:?}; log:\n{}",
        missing.len(),
        want.len(),
        &missing[..missing.len().min(5)],
        std::fs::read_to_string(dir.join("service.log")).unwrap_or_default()
    );
    let unexpected: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(unexpected.is_empty(), "unexpected records {unexpected:?}");

    // Records carry their Kafka coordinates and are keyed by match id.
    let recs = read_all(&brokers, "e2e.out", 3, Duration::from_secs(5), |n| n > 0);
    let r: serde_json::Value = serde_json::from_slice(&recs[0].1).unwrap();
    assert_eq!(recs[0].0, r["match_id"].as_str().unwrap().as_bytes());
    assert_eq!(r["input"]["topic"], "e2e.in");

    // Every bad message is a dead letter with its reason and coordinates.
    let deadline = Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&dlq)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 40 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(dead.len(), 40);
    assert!(dead
        .iter()
        .all(|d| d["reason"] == "bad_message" && d["offset"].is_i64() && d["topic"] == "e2e.in"));
    assert!(dead
        .iter()
        .any(|d| d["detail"].as_str().unwrap().contains("UTF-8")));
    assert!(dead
        .iter()
        .any(|d| d["detail"].as_str().unwrap().contains("no `id`")));

    // Metrics and status are served; a graceful stop exits 0.
    let metrics = svc.get("/metrics").unwrap();
    assert!(
        metrics.contains("topic_matcher_documents_bad_total 40"),
        "{metrics}"
    );
    let status = svc.get("/status").unwrap();
    assert!(status.contains("\"partitions\""), "{status}");
    assert_eq!(svc.terminate(), Some(0));
    let log = std::fs::read_to_string(dir.join("service.log")).unwrap();
    assert!(
        log.contains("drained and checkpointed") && log.contains("left the group"),
        "{log}"
    );
}

#[test]
fn kill_9_mid_stream_then_restart_loses_nothing() {
    let b = shared_broker();
    let brokers = b.addr();
    b.create_topic("k9.in", 3);
    b.create_topic("k9.out", 3);
    let (docs, want) = sample_docs(6000, "k9");
    let dir = temp_dir("k9");
    let opts = ServiceOpts {
        brokers: &brokers,
        group: "k9",
        input: "k9.in",
        output: "kafka:k9.out".into(),
        dead_letter: format!("file:{}", dir.join("dead.jsonl").display()),
        state: dir.join("state"),
        log: dir.join("service.log"),
    };
    let mut svc = Service::start(&opts);
    // Stream the input while the service runs, then kill it mid-stream.
    let feeder = {
        let brokers = brokers.clone();
        let docs = docs.clone();
        std::thread::spawn(move || {
            for chunk in docs.chunks(500) {
                produce(&brokers, "k9.in", chunk);
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    svc.wait_ready(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_all(&brokers, "k9.out", 3, Duration::from_secs(2), |n| n > 200).len() <= 200 {
        assert!(Instant::now() < deadline, "no output before the kill");
    }
    svc.kill9();
    feeder.join().unwrap();
    let mut svc = Service::start(&opts);
    let got = wait_for_ids(&brokers, "k9.out", &want, Duration::from_secs(180));
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} records lost after kill -9",
        missing.len(),
        want.len()
    );
    let duplicates: usize = got.values().map(|n| n - 1).sum();
    eprintln!(
        "kill -9: {} expected records, {} duplicates after restart",
        want.len(),
        duplicates
    );
    // Duplicates come only from the in-flight window (batches emitted but
    // not yet checkpointed at the kill), never more than one copy each.
    assert!(
        got.values().all(|&n| n <= 2),
        "a record was emitted more than twice"
    );
    assert!(duplicates <= want.len(), "{duplicates} duplicates");
    assert_eq!(svc.terminate(), Some(0));
}

#[test]
fn two_instances_in_one_group_share_partitions_and_lose_nothing() {
    let b = shared_broker();
    let brokers = b.addr();
    b.create_topic("rb.in", 3);
    b.create_topic("rb.out", 3);
    let (docs, want) = sample_docs(4000, "rb");
    let dir = temp_dir("rb");
    let opts = |n: &str| ServiceOpts {
        brokers: &brokers,
        group: "rb",
        input: "rb.in",
        output: "kafka:rb.out".into(),
        dead_letter: format!("file:{}", dir.join(format!("dead-{n}.jsonl")).display()),
        state: dir.join(format!("state-{n}")),
        log: dir.join(format!("service-{n}.log")),
    };
    let mut first = Service::start(&opts("a"));
    first.wait_ready(Duration::from_secs(60));
    produce(&brokers, "rb.in", &docs[..2000]);
    // A second instance joins: partitions are rebalanced between the two.
    let mut second = Service::start(&opts("b"));
    let log_b = dir.join("service-b.log");
    let deadline = Instant::now() + Duration::from_secs(90);
    let owns = |log: &str| {
        log.lines()
            .filter(|l| l.contains("partitions assigned"))
            .any(|l| !l.contains("owned=0"))
    };
    while !owns(&std::fs::read_to_string(&log_b).unwrap_or_default()) {
        assert!(
            Instant::now() < deadline,
            "the second instance never got partitions:\n{}",
            std::fs::read_to_string(&log_b).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    produce(&brokers, "rb.in", &docs[2000..]);
    let got = wait_for_ids(&brokers, "rb.out", &want, Duration::from_secs(180));
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} records lost across the rebalance",
        missing.len(),
        want.len()
    );
    let log_a = std::fs::read_to_string(dir.join("service-a.log")).unwrap_or_default();
    assert!(
        log_a.contains("partitions revoked"),
        "the first instance gave partitions up:\n{log_a}"
    );
    assert_eq!(second.terminate(), Some(0));
    assert_eq!(first.terminate(), Some(0));
}

fn wait_for_file_ids(
    path: &std::path::Path,
    want: &std::collections::BTreeMap<String, usize>,
    timeout: Duration,
) {
    let got = poll_until(
        timeout,
        Duration::from_millis(300),
        || file_match_ids(path),
        |got| want.keys().all(|k| got.contains_key(k)),
    );
    let missing = want.keys().filter(|k| !got.contains_key(*k)).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} records missing in {}",
        want.len(),
        path.display()
    );
}

#[test]
fn a_checkpoint_that_another_instance_moved_past_is_not_resumed() {
    let b = shared_broker();
    let brokers = b.addr();
    b.create_topic("st.in", 3);
    let (docs, _) = sample_docs(2300, "st");
    let dir = temp_dir("st");
    let opts = |n: &str| ServiceOpts {
        brokers: &brokers,
        group: "st",
        input: "st.in",
        output: format!("file:{}", dir.join(format!("out-{n}.jsonl")).display()),
        dead_letter: format!("file:{}", dir.join(format!("dead-{n}.jsonl")).display()),
        state: dir.join(format!("state-{n}")),
        log: dir.join(format!("service-{n}.log")),
    };
    let out_a = dir.join("out-a.jsonl");
    // Dynamic membership: a stopping instance leaves the group, so the other
    // one gets its partitions at once (the test broker may never expire a
    // static member that stopped).
    let config = dir.join("dynamic.toml");
    std::fs::write(&config, "[kafka]\ninstance_id = \"\"\n").unwrap();
    let searches = repo("samples/searches.json");
    let start =
        |n: &str| Service::start_with(&opts(n), &searches, &["--config", config.to_str().unwrap()]);
    // A processes the first documents and stops; its checkpoints stay.
    let mut a = start("a");
    a.wait_ready(Duration::from_secs(60));
    produce(&brokers, "st.in", &docs[..1000]);
    wait_for_file_ids(
        &out_a,
        &expected_match_ids(&docs[..1000]),
        Duration::from_secs(120),
    );
    assert_eq!(a.terminate(), Some(0));
    // Meanwhile B processes the next ones: the group's offsets move on.
    let mut b2 = start("b");
    b2.wait_ready(Duration::from_secs(60));
    produce(&brokers, "st.in", &docs[1000..2000]);
    let by_b = expected_match_ids(&docs[1000..2000]);
    wait_for_file_ids(&dir.join("out-b.jsonl"), &by_b, Duration::from_secs(180));
    assert_eq!(b2.terminate(), Some(0));
    // A comes back: it goes on from the group's offsets, not its own.
    let seen_by_a = std::fs::read_to_string(&out_a).unwrap().lines().count();
    let mut a = start("a");
    a.wait_ready(Duration::from_secs(60));
    produce(&brokers, "st.in", &docs[2000..]);
    wait_for_file_ids(
        &out_a,
        &expected_match_ids(&docs[2000..]),
        Duration::from_secs(180),
    );
    assert_eq!(a.terminate(), Some(0));
    let text = std::fs::read_to_string(&out_a).unwrap();
    let again: Vec<(Vec<u8>, Vec<u8>)> = text
        .lines()
        .skip(seen_by_a)
        .map(|l| (Vec::new(), l.as_bytes().to_vec()))
        .collect();
    let redone = match_ids(&again)
        .keys()
        .filter(|k| by_b.contains_key(*k))
        .count();
    assert_eq!(
        redone, 0,
        "the restarted instance re-emitted what the other one had processed"
    );
    let log = std::fs::read_to_string(dir.join("service-a.log")).unwrap();
    assert!(
        log.contains("another instance processed this partition since"),
        "the stale checkpoint was not noticed"
    );
}

/// More members than partitions: the spare member, with no partition, is
/// ready (it is in the group and takes over when the other leaves), and
/// `/readyz` says why (docs/operations.md §6).
#[test]
fn a_spare_member_without_partitions_is_ready() {
    let b = shared_broker();
    let brokers = b.addr();
    b.create_topic("sp.in", 1);
    let dir = temp_dir("sp");
    let opts = |n: &str| ServiceOpts {
        brokers: &brokers,
        group: "sp",
        input: "sp.in",
        output: format!("file:{}", dir.join(format!("out-{n}.jsonl")).display()),
        dead_letter: format!("file:{}", dir.join(format!("dead-{n}.jsonl")).display()),
        state: dir.join(format!("state-{n}")),
        log: dir.join(format!("service-{n}.log")),
    };
    let first = Service::start(&opts("a"));
    first.wait_ready(Duration::from_secs(60));
    let second = Service::start(&opts("b"));
    second.wait_ready(Duration::from_secs(90));
    // Once the group settled, one owns the partition and the other is spare.
    let settled = poll_until(
        Duration::from_secs(90),
        Duration::from_millis(300),
        || {
            (
                metric(&first, "assigned_partitions"),
                metric(&second, "assigned_partitions"),
            )
        },
        |(a, b)| matches!((a, b), (Some(x), Some(y)) if x + y == 1.0),
    );
    assert!(
        matches!(settled, (Some(x), Some(y)) if x + y == 1.0),
        "partitions: {settled:?}"
    );
    let spare = if settled.0 == Some(0.0) {
        &first
    } else {
        &second
    };
    let (code, body) = spare.request("GET", "/readyz", None, &[]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("no partitions"), "{body}");
    assert_eq!(spare.status()["ready"], true);
}

/// The records of one input partition in the order the file has them:
/// (input offset, match id).
fn records_by_partition(
    path: &std::path::Path,
) -> std::collections::BTreeMap<i64, Vec<(i64, String)>> {
    let mut by = std::collections::BTreeMap::<i64, Vec<(i64, String)>>::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let input = &r["input"];
        by.entry(input["partition"].as_i64().unwrap())
            .or_default()
            .push((
                input["offset"].as_i64().unwrap(),
                r["match_id"].as_str().unwrap().to_string(),
            ));
    }
    by
}

/// Matching on several threads (`[matching] threads`) writes, partition
/// by partition, exactly the records of one thread in the same order.
#[test]
fn records_keep_their_partitions_order_on_every_thread_count() {
    let b = shared_broker();
    let brokers = b.addr();
    b.create_topic("threads.in", 3);
    // Produced before the services start: each poll finds many messages
    // fetched, so runs are long and shared between the threads.
    let (docs, want) = sample_docs(3000, "th");
    produce(&brokers, "threads.in", &docs);
    let run = |threads: usize| {
        let dir = temp_dir(&format!("threads-{threads}"));
        let config = dir.join("config.toml");
        std::fs::write(&config, format!("[matching]\nthreads = {threads}\n")).unwrap();
        let out = dir.join("out.jsonl");
        let mut svc = Service::start_with(
            &ServiceOpts {
                brokers: &brokers,
                group: &format!("threads-{threads}"),
                input: "threads.in",
                output: format!("file:{}", out.display()),
                dead_letter: format!("file:{}", dir.join("dead.jsonl").display()),
                state: dir.join("state"),
                log: dir.join("service.log"),
            },
            &repo("samples/searches.json"),
            &["--config", config.to_str().unwrap()],
        );
        wait_for_file_ids(&out, &want, Duration::from_secs(120));
        assert_eq!(svc.terminate(), Some(0));
        let log = std::fs::read_to_string(dir.join("service.log")).unwrap();
        assert!(
            log.contains(&format!("matching_threads={threads}")),
            "{log}"
        );
        records_by_partition(&out)
    };
    let one = run(1);
    assert_eq!(one.len(), 3, "records from every input partition");
    for (p, recs) in &one {
        assert!(
            recs.windows(2).all(|w| w[0].0 <= w[1].0),
            "partition {p}: one thread writes records in offset order"
        );
    }
    let total: usize = one.values().map(Vec::len).sum();
    assert_eq!(total, want.values().sum::<usize>(), "each record once");
    for threads in [2, 4] {
        assert!(
            run(threads) == one,
            "{threads} threads: other records or another order"
        );
    }
}
