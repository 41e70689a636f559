//! Faults that must neither lose data nor go unseen, against a real broker
//! (tansu): the disk of the state store, then of the output file, fills up
//! while documents flow.

mod common;

use std::time::Duration;

use common::*;

fn readyz(svc: &Service) -> (u16, String) {
    svc.request("GET", "/readyz", None, &[])
}

#[test]
fn a_full_state_disk_pauses_input_fails_readiness_and_resumes_losing_nothing() {
    let b = shared_broker();
    let brokers = b.addr();
    b.create_topic("fd.in", 3);
    let dir = temp_dir("fd");
    let Some(fs) = small_fs(&dir.join("statefs"), 6) else {
        eprintln!("skipped: mounting a small tmpfs for the state directory needs root");
        return;
    };
    let (docs, _) = sample_docs(4000, "fd");
    let out = dir.join("out.jsonl");
    let mut svc = Service::start(&ServiceOpts {
        brokers: &brokers,
        group: "fd",
        input: "fd.in",
        output: format!("file:{}", out.display()),
        dead_letter: format!("file:{}", dir.join("dead.jsonl").display()),
        state: fs.0.join("state"),
        log: dir.join("service.log"),
    });
    svc.wait_ready(Duration::from_secs(60));
    produce(&brokers, "fd.in", &docs[..300]);
    let first = expected_match_ids(&docs[..300]);
    let got = poll_until(
        Duration::from_secs(120),
        Duration::from_millis(300),
        || file_match_ids(&out),
        |got| first.keys().all(|k| got.contains_key(k)),
    );
    assert!(first.keys().all(|k| got.contains_key(k)));

    // The disk fills up; documents keep coming.
    let filler = fs.fill();
    // A checkpoint is a few dozen bytes, the WAL's last page may still
    // have up to 4 KiB free, and on a loaded machine several trickles share
    // one checkpoint: documents trickle in until a write finds the disk
    // full (up to 360 trickles; more than 100 were once needed).
    let mut sent = 300;
    let mut answer = readyz(&svc);
    while sent + 10 < 3900 && answer.0 != 503 {
        produce(&brokers, "fd.in", &docs[sent..sent + 10]);
        sent += 10;
        std::thread::sleep(Duration::from_millis(150));
        answer = readyz(&svc);
    }
    let (code, body) = poll_until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || readyz(&svc),
        |(code, _)| *code == 503,
    );
    assert_eq!(code, 503, "not ready while checkpoints fail: {body}");
    assert!(body.contains("state store"), "{body}");
    assert_eq!(metric(&svc, "state_store_down"), Some(1.0));
    assert!(metric(&svc, "state_store_errors_total").unwrap_or(0.0) >= 1.0);
    let log = std::fs::read_to_string(dir.join("service.log")).unwrap();
    assert_eq!(
        log.matches("checkpoint write failed").count(),
        1,
        "logged once per state change, not per retry:\n{log}"
    );

    // Space is back: the store is reopened, checkpoints and input resume.
    std::fs::remove_file(&filler).unwrap();
    let (code, body) = poll_until(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || readyz(&svc),
        |(code, _)| *code == 200,
    );
    assert_eq!(code, 200, "ready again once the store takes writes: {body}");
    assert_eq!(metric(&svc, "state_store_down"), Some(0.0));
    produce(&brokers, "fd.in", &docs[sent..]);
    let want = expected_match_ids(&docs);
    let got = poll_until(
        Duration::from_secs(120),
        Duration::from_millis(300),
        || file_match_ids(&out),
        |got| want.keys().all(|k| got.contains_key(k)),
    );
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    // Every message is checkpointed in the end.
    svc.wait_status(Duration::from_secs(60), |s| {
        s["partitions"].as_object().is_some_and(|p| {
            p.values()
                .filter_map(|v| v["checkpoint"].as_i64())
                .sum::<i64>()
                == 4000
        })
    });
    let log = std::fs::read_to_string(dir.join("service.log")).unwrap();
    assert!(log.contains("state store reopened"), "{log}");
    assert!(log.contains("state store writable again"), "{log}");
    assert_eq!(svc.terminate(), Some(0));
}

#[test]
fn a_full_output_disk_pauses_input_and_resumes_with_no_partial_line_and_nothing_lost() {
    let b = shared_broker();
    let brokers = b.addr();
    b.create_topic("fo.in", 3);
    let dir = temp_dir("fo");
    let Some(fs) = small_fs(&dir.join("outfs"), 2) else {
        eprintln!("skipped: mounting a small tmpfs for the output needs root");
        return;
    };
    let (docs, _) = sample_docs(1500, "fo");
    let out = fs.0.join("out.jsonl");
    let mut svc = Service::start(&ServiceOpts {
        brokers: &brokers,
        group: "fo",
        input: "fo.in",
        output: format!("file:{}", out.display()),
        dead_letter: format!("file:{}", dir.join("dead.jsonl").display()),
        state: dir.join("state"),
        log: dir.join("service.log"),
    });
    svc.wait_ready(Duration::from_secs(60));
    produce(&brokers, "fo.in", &docs[..300]);
    let first = expected_match_ids(&docs[..300]);
    poll_until(
        Duration::from_secs(120),
        Duration::from_millis(300),
        || file_match_ids(&out),
        |got| first.keys().all(|k| got.contains_key(k)),
    );

    let filler = fs.fill();
    produce(&brokers, "fo.in", &docs[300..1000]);
    let down = poll_until(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || metric(&svc, "output_down"),
        |v| *v == Some(1.0),
    );
    assert_eq!(down, Some(1.0), "the output is reported down");
    std::fs::remove_file(&filler).unwrap();
    let down = poll_until(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || metric(&svc, "output_down"),
        |v| *v == Some(0.0),
    );
    assert_eq!(down, Some(0.0), "the output recovers");
    produce(&brokers, "fo.in", &docs[1000..]);
    let want = expected_match_ids(&docs);
    let got = poll_until(
        Duration::from_secs(120),
        Duration::from_millis(300),
        || file_match_ids(&out),
        |got| want.keys().all(|k| got.contains_key(k)),
    );
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert_eq!(svc.terminate(), Some(0));
    let text = std::fs::read_to_string(&out).unwrap();
    let broken: Vec<&str> = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        .collect();
    assert!(broken.is_empty(), "partial lines in the output: {broken:?}");
    let log = std::fs::read_to_string(dir.join("service.log")).unwrap();
    assert!(log.contains("output failing"), "{log}");
    assert!(log.contains("output recovered"), "{log}");
}

#[test]
fn a_component_that_dies_fails_healthz_naming_it_while_matching_goes_on() {
    let b = shared_broker();
    let brokers = b.addr();
    b.create_topic("cd.in", 3);
    let dir = temp_dir("cd");
    let out = dir.join("out.jsonl");
    // The searches worker panics at its next task (fault injection).
    let mut svc = Service::start_with_env(
        &ServiceOpts {
            brokers: &brokers,
            group: "cd",
            input: "cd.in",
            output: format!("file:{}", out.display()),
            dead_letter: format!("file:{}", dir.join("dead.jsonl").display()),
            state: dir.join("state"),
            log: dir.join("service.log"),
        },
        &repo("samples/searches.json"),
        &["--admin-token", "tok"],
        &[("TOPIC_MATCHER_FAULT_KILL_COMPONENT", "searches-worker")],
    );
    svc.wait_ready(Duration::from_secs(60));
    let h = svc.request("GET", "/healthz", None, &[]);
    assert_eq!(h.0, 200, "{}", h.1);
    let (code, body) = svc.request("POST", "/searches/reload", Some("tok"), &[]);
    assert_ne!(code, 200, "the worker died on this reload: {body}");
    let (code, body) = poll_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || svc.request("GET", "/healthz", None, &[]),
        |(code, _)| *code == 503,
    );
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("searches-worker down: panicked"), "{body}");
    let metrics = svc.get("/metrics").unwrap();
    assert!(
        metrics.contains("topic_matcher_component_up{component=\"searches-worker\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("topic_matcher_component_up{component=\"lag-monitor\"} 1"),
        "{metrics}"
    );
    // Matching is not a background component: it goes on.
    let (docs, _) = sample_docs(200, "cd");
    produce(&brokers, "cd.in", &docs);
    let want = expected_match_ids(&docs);
    let got = poll_until(
        Duration::from_secs(120),
        Duration::from_millis(300),
        || file_match_ids(&out),
        |got| want.keys().all(|k| got.contains_key(k)),
    );
    assert!(want.keys().all(|k| got.contains_key(k)));
    assert_eq!(svc.terminate(), Some(0));
}

#[test]
fn lag_is_unknown_not_zero_while_the_broker_cannot_be_reached() {
    let mut broker = Broker::start("lagmon");
    let brokers = broker.addr();
    broker.create_topic("lm.in", 3);
    let dir = temp_dir("lm");
    let mut svc = Service::start(&ServiceOpts {
        brokers: &brokers,
        group: "lm",
        input: "lm.in",
        output: format!("file:{}", dir.join("out.jsonl").display()),
        dead_letter: format!("file:{}", dir.join("dead.jsonl").display()),
        state: dir.join("state"),
        log: dir.join("service.log"),
    });
    svc.wait_ready(Duration::from_secs(60));
    let (docs, _) = sample_docs(100, "lm");
    produce(&brokers, "lm.in", &docs);
    let known = poll_until(
        Duration::from_secs(60),
        Duration::from_millis(300),
        || metric(&svc, "consumer_lag_messages"),
        |v| *v == Some(0.0),
    );
    assert_eq!(known, Some(0.0), "lag known and 0 once caught up");
    assert_eq!(metric(&svc, "lag_monitor_up"), Some(1.0));
    assert_eq!(metric(&svc, "consumer_lag_seconds"), Some(0.0));

    broker.stop();
    let up = poll_until(
        Duration::from_secs(60),
        Duration::from_millis(300),
        || metric(&svc, "lag_monitor_up"),
        |v| *v == Some(0.0),
    );
    assert_eq!(up, Some(0.0), "the monitor says it cannot see the lag");
    assert_eq!(
        metric(&svc, "consumer_lag_messages"),
        None,
        "an unknown lag is absent, never 0"
    );
    assert!(svc.status()["consumer_lag"].is_null());

    broker.restart();
    let up = poll_until(
        Duration::from_secs(90),
        Duration::from_millis(300),
        || metric(&svc, "lag_monitor_up"),
        |v| *v == Some(1.0),
    );
    assert_eq!(up, Some(1.0), "known again once the broker is back");
    assert!(metric(&svc, "consumer_lag_messages").is_some());
    let log = std::fs::read_to_string(dir.join("service.log")).unwrap();
    assert_eq!(
        log.matches("lag unknown").count(),
        1,
        "logged once per change:\n{log}"
    );
    assert!(log.contains("lag known again"), "{log}");
    let _ = svc.terminate();
}

/// A drain job in the state store that cannot be decoded (written by
/// another version, or damaged) stops the start with exit 2 and an error
/// naming the job, instead of dropping the backlog it still has to drain
/// (docs/operations.md §5.3); the job is still there afterwards.
#[test]
fn an_unreadable_stored_job_stops_the_start_naming_it() {
    let b = shared_broker();
    let brokers = b.addr();
    b.create_topic("uj.in", 1);
    let dir = temp_dir("uj");
    {
        use topic_matcher::state_store::{StateStore, StoredJob};
        let store = StateStore::open(&dir.join("state")).unwrap();
        let truncated = StoredJob {
            id: 7,
            bytes: b"{\"kind\": \"catch_up\", \"rang".to_vec(),
        };
        store.commit_with_jobs(&[], &[], &[truncated]).unwrap();
    }
    let mut svc = Service::start(&ServiceOpts {
        brokers: &brokers,
        group: "uj",
        input: "uj.in",
        output: format!("file:{}", dir.join("out.jsonl").display()),
        dead_letter: format!("file:{}", dir.join("dead.jsonl").display()),
        state: dir.join("state"),
        log: dir.join("service.log"),
    });
    let exit = poll_until(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || svc.child.try_wait().ok().flatten().map(|s| s.code()),
        Option::is_some,
    );
    let log = std::fs::read_to_string(dir.join("service.log")).unwrap_or_default();
    assert_eq!(exit, Some(Some(2)), "exit status; log:\n{log}");
    assert!(
        log.contains("drain job 7") && log.contains("cannot be read"),
        "the error names the job:\n{log}"
    );
    let store = topic_matcher::state_store::StateStore::open(&dir.join("state")).unwrap();
    assert!(
        store.jobs().unwrap().iter().any(|(id, _)| *id == 7),
        "the job was kept"
    );
}
