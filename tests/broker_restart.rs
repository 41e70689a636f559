//! A broker that disappears mid-stream and returns (sqlite storage survives
//! it): the service keeps running, reports it, and loses nothing. Its own
//! test binary, because it stops the broker.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn broker_stopped_and_restarted_mid_stream_loses_nothing() {
    let mut b = Broker::start("restart");
    let brokers = b.addr();
    b.create_topic("br.in", 3);
    b.create_topic("br.out", 3);
    let (docs, want) = sample_docs(3000, "br");
    produce(&brokers, "br.in", &docs[..1500]);
    let dir = temp_dir("br");
    let mut svc = Service::start(&ServiceOpts {
        brokers: &brokers,
        group: "br",
        input: "br.in",
        output: "kafka:br.out".into(),
        dead_letter: format!("file:{}", dir.join("dead.jsonl").display()),
        state: dir.join("state"),
        log: dir.join("service.log"),
    });
    svc.wait_ready(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_all(&brokers, "br.out", 3, Duration::from_secs(2), |n| n > 50).len() <= 50 {
        assert!(
            Instant::now() < deadline,
            "no output before the broker stop"
        );
    }
    b.stop();
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        svc.child.try_wait().unwrap().is_none(),
        "the service must survive the broker outage"
    );
    b.restart();
    produce(&brokers, "br.in", &docs[1500..]);
    let deadline = Instant::now() + Duration::from_secs(180);
    let got = loop {
        let got = match_ids(&read_all(
            &brokers,
            "br.out",
            3,
            Duration::from_secs(5),
            |_| false,
        ));
        if want.keys().all(|k| got.contains_key(k)) || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} records lost across the broker restart; log:\n{}",
        missing.len(),
        want.len(),
        std::fs::read_to_string(dir.join("service.log")).unwrap_or_default()
    );
    assert_eq!(svc.terminate(), Some(0));
}
