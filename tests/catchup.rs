//! The incident in miniature against the real broker: documents of three
//! priority classes pile up while the service is stopped; on restart live
//! data flows at once and the backlog drains class by class (`strict`) or
//! by shares (`weighted`); a kill -9 mid-drain loses nothing and does not
//! re-emit finished classes; replays emit exactly their window.
//!
//! The output is a JSONL file: its line order is the order of emission.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::producer::{BaseRecord, Producer};

/// One topic, one search: every document matches exactly once, so the
/// output has one record per document.
const SEARCHES: &str = r#"{"topics": [
  {"id": "all", "searches": [{"id": "s-all", "query": "catchup"}]},
  {"id": "new", "searches": [{"id": "s-new", "query": "backfill"}]}]}"#;

const CLASSES: &str = r#"
[[classes]]
name = "critical"
when = { type = ["dm"] }
[[classes]]
name = "high"
when = { type = ["mention"] }
[[classes]]
name = "low"
"#;

/// Class of document `i`: 10% critical, 30% high, 60% low.
fn kind(i: usize) -> &'static str {
    match i % 10 {
        0 => "dm",
        1..=3 => "mention",
        _ => "post",
    }
}

fn class_of(kind: &str) -> &'static str {
    match kind {
        "dm" => "critical",
        "mention" => "high",
        _ => "low",
    }
}

fn doc(tag: &str, i: usize) -> Vec<u8> {
    serde_json::json!({
        "id": format!("{tag}-{i}"), "source": "twitter", "type": kind(i), "lang": "en",
        "text": format!("catchup test document {i} backfill"),
    })
    .to_string()
    .into_bytes()
}

fn docs(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| doc(tag, i)).collect()
}

fn setup(name: &str, policy: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = temp_dir(name);
    let searches = dir.join("searches.json");
    std::fs::write(&searches, SEARCHES).unwrap();
    let config = dir.join("config.toml");
    let catch_up = match policy {
        "weighted" => "[catch_up]\npolicy = \"weighted\"\nweights = { critical = 50, high = 30, low = 20 }\nthreshold = 100\n",
        _ => "[catch_up]\npolicy = \"strict\"\nthreshold = 100\n",
    };
    std::fs::write(
        &config,
        format!("{CLASSES}\n{catch_up}\n[limits]\nbatch_max_messages = 500\nbatch_max_wait_ms = 100\n"),
    )
    .unwrap();
    (dir, searches, config)
}

fn start(name: &str, dir: &Path, searches: &Path, config: &Path, topic: &str) -> Service {
    let b = shared_broker();
    let brokers = b.addr();
    let svc = Service::start_with(
        &ServiceOpts {
            brokers: &brokers,
            group: name,
            input: topic,
            output: format!("file:{}", dir.join("out.jsonl").display()),
            dead_letter: format!("file:{}", dir.join("dead.jsonl").display()),
            state: dir.join("state"),
            log: dir.join("service.log"),
        },
        searches,
        &["--config", config.to_str().unwrap()],
    );
    svc.wait_ready(Duration::from_secs(90));
    svc
}

/// The output records: (doc id, topic id, class), in emission order.
fn output(dir: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(dir.join("out.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|r| {
            (
                r["doc_id"].as_str().unwrap_or_default().to_string(),
                r["topic_id"].as_str().unwrap_or_default().to_string(),
                r["class"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn wait_output(dir: &Path, timeout: Duration, ok: impl Fn(&[(String, String, String)]) -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let out = output(dir);
        if ok(&out) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "output not complete within {timeout:?}: {} records; log: {}",
            out.len(),
            std::fs::read_to_string(dir.join("service.log"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn ids_of(out: &[(String, String, String)], topic: &str) -> BTreeSet<String> {
    out.iter()
        .filter(|r| r.1 == topic)
        .map(|r| r.0.clone())
        .collect()
}

/// Stops the service with a backlog behind it: `warm` documents processed,
/// then `backlog` documents produced while it is down.
fn build_backlog(name: &str, policy: &str, backlog: usize) -> (PathBuf, PathBuf, PathBuf, String) {
    let b = shared_broker();
    let topic = format!("{name}.in");
    b.create_topic(&topic, 3);
    let (dir, searches, config) = setup(name, policy);
    let mut svc = start(name, &dir, &searches, &config, &topic);
    produce(&b.addr(), &topic, &docs("warm", 60));
    wait_output(&dir, Duration::from_secs(60), |o| ids_of(o, "all").len() >= 60);
    assert_eq!(svc.terminate(), Some(0));
    produce(&b.addr(), &topic, &docs("bk", backlog));
    (dir, searches, config, topic)
}

/// Produces live documents, one every 10 ms, until `stop` is set.
fn live_producer(topic: String, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<usize> {
    let brokers = shared_broker().addr();
    std::thread::spawn(move || {
        let p = producer(&brokers);
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let d = doc("live", n);
            let key = n.to_string();
            let _ = p.send(BaseRecord::to(&topic).key(&key).payload(&d));
            p.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(10));
            n += 1;
        }
        p.flush(Duration::from_secs(30)).unwrap();
        n
    })
}

fn report(dir: &Path) -> serde_json::Value {
    let reports = dir.join("state/reports");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(t) = std::fs::read_to_string(reports.join("drain-1.json")) {
            return serde_json::from_str(&t).unwrap();
        }
        assert!(Instant::now() < deadline, "no drain report in {}", reports.display());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn strict_drains_class_by_class_while_live_data_flows() {
    const BACKLOG: usize = 9_000;
    let (dir, searches, config, topic) = build_backlog("cu-strict", "strict", BACKLOG);
    let before = output(&dir).len();
    let svc = start("cu-strict", &dir, &searches, &config, &topic);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let live = live_producer(topic.clone(), stop.clone());
    // The catch-up job is visible while it runs.
    svc.wait_status(Duration::from_secs(60), |s| {
        s["jobs"].as_array().is_some_and(|j| !j.is_empty())
    });
    wait_output(&dir, Duration::from_secs(300), |o| {
        ids_of(o, "all").iter().filter(|id| id.starts_with("bk-")).count() == BACKLOG
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let live_n = live.join().unwrap();
    wait_output(&dir, Duration::from_secs(60), |o| {
        ids_of(o, "all").iter().filter(|id| id.starts_with("live-")).count() == live_n
    });
    let out: Vec<_> = output(&dir).into_iter().skip(before).filter(|r| r.1 == "all").collect();

    // Classes of the backlog in order: every record of class k before any of k+1.
    let pos = |class: &str| -> Vec<usize> {
        out.iter()
            .enumerate()
            .filter(|(_, r)| r.0.starts_with("bk-") && r.2 == class)
            .map(|(i, _)| i)
            .collect()
    };
    let (c, h, l) = (pos("critical"), pos("high"), pos("low"));
    assert_eq!(
        (c.len(), h.len(), l.len()),
        (BACKLOG / 10, BACKLOG * 3 / 10, BACKLOG * 6 / 10),
        "one record per backlog document, by class"
    );
    assert!(c.iter().max() < h.iter().min(), "a high backlog record came before the last critical one");
    assert!(h.iter().max() < l.iter().min(), "a low backlog record came before the last high one");
    // Records carry the class of their document.
    for r in &out {
        let i: usize = r.0.rsplit('-').next().unwrap().parse().unwrap();
        assert_eq!(r.2, class_of(kind(i)), "{r:?}");
    }
    // Live data did not wait for the backlog.
    let last_low = *l.iter().max().unwrap();
    let live_early = out
        .iter()
        .take(last_low)
        .filter(|r| r.0.starts_with("live-"))
        .count();
    assert!(live_early > 0, "no live record before the lowest class finished (live docs: {live_n})");
    // Nothing lost.
    let all = ids_of(&out, "all");
    for i in 0..BACKLOG {
        assert!(all.contains(&format!("bk-{i}")), "bk-{i} missing");
    }
    // The drain report says when each class finished, in order.
    let r = report(&dir);
    let fin: Vec<f64> = (0..3)
        .map(|k| r["classes"][k]["finished_after_seconds"].as_f64().unwrap())
        .collect();
    assert!(fin[0] <= fin[1] && fin[1] <= fin[2], "{r:#}");
    assert_eq!(r["backlog_messages"], BACKLOG as i64, "{r:#}");
    assert!(dir.join("state/reports/drain-1.html").exists());
    eprintln!(
        "strict: {} backlog + {live_n} live docs; {live_early} live records before the low class finished; classes finished after {fin:?} s",
        BACKLOG
    );
}
