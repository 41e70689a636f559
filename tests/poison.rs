//! Poison input against the real broker: a document whose match record is
//! larger than the output takes, a near-1 MiB bad message whose dead letter
//! is larger than the dead-letter output takes, a document that spends the
//! work budget and one whose matching panics (fault injection) — each
//! becomes one dead letter with its reason, and the documents after them
//! still get their match records.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rdkafka::message::Headers;
use rdkafka::Message;

/// One dead letter read from Kafka: its headers and value length.
#[derive(Debug)]
struct Dead {
    headers: std::collections::BTreeMap<String, String>,
    value_len: usize,
}

fn read_dead(brokers: &str, topic: &str, want: usize, timeout: Duration) -> Vec<Dead> {
    let c = reader(brokers, topic, 1);
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && out.len() < want {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Dead {
                headers,
                value_len: m.payload().map_or(0, <[u8]>::len),
            });
        }
    }
    out
}

#[test]
fn poison_documents_become_dead_letters_and_the_stream_goes_on() {
    let b = shared_broker();
    let brokers = b.addr();
    b.create_topic("poison.in", 1);
    b.create_topic("poison.out", 1);
    b.create_topic("poison.dead", 1);
    let (before, want_before) = sample_docs(200, "pb");
    let (after, want_after) = sample_docs(200, "pa");
    // A matching document (the first sample that matches) with an id of
    // 150 KB: its record (id twice) exceeds the output's 200 KB limit.
    let matching: serde_json::Value = before
        .iter()
        .map(|d| serde_json::from_slice::<serde_json::Value>(d).unwrap())
        .find(|d| {
            want_before
                .keys()
                .any(|k| k.starts_with(&format!("{}/", d["id"].as_str().unwrap())))
        })
        .expect("a sample document matches");
    let topics_of_matching = want_before
        .keys()
        .filter(|k| k.starts_with(&format!("{}/", matching["id"].as_str().unwrap())))
        .count();
    let mut huge_id = matching.clone();
    huge_id["id"] = serde_json::Value::String(format!("big-{}", "i".repeat(150_000)));
    // Not JSON, near 1 MiB: its dead letter exceeds the dead-letter limit.
    let junk = vec![b'x'; 900_000];
    // 400,000 tokens: more work than the budget of 300,000 units.
    let expensive = serde_json::json!({"id": "expensive", "text": "a ".repeat(400_000)});
    let mut panicking = matching.clone();
    panicking["id"] = "panic-me".into();

    let mut docs = before.clone();
    docs.push(huge_id.to_string().into_bytes());
    docs.push(junk);
    docs.push(expensive.to_string().into_bytes());
    docs.push(panicking.to_string().into_bytes());
    docs.extend(after.iter().cloned());
    produce(&brokers, "poison.in", &docs);

    let dir = temp_dir("poison");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        // slow_search_work = 1: every evaluation is a slow one, so the
        // slow-search log must name each search once, however often it runs.
        "[kafka.producer]\n\"message.max.bytes\" = \"200000\"\n\n[limits]\nmax_work_per_document = 300000\nslow_search_work = 1\n",
    )
    .unwrap();
    let mut svc = Service::start_with_env(
        &ServiceOpts {
            brokers: &brokers,
            group: "poison",
            input: "poison.in",
            output: "kafka:poison.out".into(),
            dead_letter: "kafka:poison.dead".into(),
            state: dir.join("state"),
            log: dir.join("service.log"),
        },
        &repo("samples/searches.json"),
        &["--config", config.to_str().unwrap()],
        &[("TOPIC_MATCHER_FAULT_PANIC_DOC_ID", "panic-me")],
    );
    let log = || std::fs::read_to_string(dir.join("service.log")).unwrap_or_default();

    // Every normal document before and after the poison has its records.
    let mut want = want_before.clone();
    want.extend(want_after.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    let got = loop {
        let recs = read_all(&brokers, "poison.out", 1, Duration::from_secs(5), |_| false);
        let got = match_ids(&recs);
        if want.keys().all(|k| got.contains_key(k)) || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(missing.is_empty(), "missing {missing:?}; log:\n{}", log());
    assert!(
        !got.keys()
            .any(|k| k.starts_with("big-") || k.starts_with("panic-me")),
        "no record of a refused document"
    );

    // The four poison messages are dead letters with their reasons.
    let dead = read_dead(&brokers, "poison.dead", 4, Duration::from_secs(60));
    let reasons: Vec<&str> = dead.iter().map(|d| d.headers["reason"].as_str()).collect();
    assert_eq!(
        reasons,
        [
            "record_too_large",
            "bad_message",
            "too_expensive",
            "internal_error"
        ],
        "{dead:?}; log:\n{}",
        log()
    );
    for d in &dead {
        assert_eq!(d.headers["topic"], "poison.in");
        assert!(d.value_len <= 200_000, "{:?}", d.headers);
    }
    let offsets: Vec<i64> = dead
        .iter()
        .map(|d| d.headers["offset"].parse().unwrap())
        .collect();
    assert_eq!(offsets, [200, 201, 202, 203]);
    // The too-large record's document is whole in the dead letters.
    assert!(dead[0].value_len > 150_000 && !dead[0].headers.contains_key("truncated"));
    assert!(dead[0].headers["detail"].contains("the output takes at most"));
    // The near-1 MiB junk was cut to fit, saying so.
    assert_eq!(dead[1].headers["truncated"], "true");
    // Its key ("201") and value.
    assert_eq!(dead[1].headers["original_size"], "900003");
    assert!(dead[2].headers["detail"].contains("budget of 300000"));
    assert!(dead[3].headers["detail"].contains("panicked"));

    let metrics = svc.get("/metrics").unwrap();
    // Each of the too-large document's records was refused.
    let refused = format!("topic_matcher_records_refused_total {topics_of_matching}");
    assert!(metrics.contains(&refused), "{refused} in\n{metrics}");
    for line in [
        "topic_matcher_documents_too_expensive_total 1",
        "topic_matcher_documents_internal_error_total 1",
        "topic_matcher_documents_bad_total 1",
        "topic_matcher_dead_letters_total 4",
        "topic_matcher_dead_letters_dropped_total 0",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    let l = log();
    assert!(l.contains("document too expensive to match"), "{l}");
    assert!(l.contains("matching panicked"), "{l}");

    // The slow-search log: search, topic and work, at most once a minute
    // per search (the run is shorter than a minute), counted in
    // /searches/cost. Costs are collected every second: wait for the last.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let l = log();
    let slow: Vec<&str> = l
        .lines()
        .filter(|line| {
            line.contains(
                "slow search: one evaluation spent more work than limits.slow_search_work",
            )
        })
        .collect();
    assert!(!slow.is_empty(), "no slow-search line in:\n{l}");
    let mut searches = std::collections::BTreeSet::new();
    for line in &slow {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name}= in {line}"))
                .trim_matches('"')
                .to_string()
        };
        assert!(field("work").parse::<u64>().unwrap() > 1, "{line}");
        assert_eq!(field("slow_search_work"), "1", "{line}");
        assert!(!field("topic").is_empty(), "{line}");
        assert!(
            searches.insert(field("search")),
            "logged twice within a minute: {line}"
        );
    }
    let cost: serde_json::Value =
        serde_json::from_str(&svc.get("/searches/cost").unwrap()).unwrap();
    assert_eq!(
        cost["slow_searches"].as_u64(),
        Some(searches.len() as u64),
        "{cost}"
    );
    assert_eq!(svc.terminate(), Some(0));
}
