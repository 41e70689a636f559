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

/// The replay test's searches after the reload: `s-new` takes the direct
/// messages and mentions only.
const REPLAY_SEARCHES: &str = r#"{"topics": [
  {"id": "all", "searches": [{"id": "s-all", "query": "catchup"}]},
  {"id": "new", "searches": [{"id": "s-new", "query": "backfill (type:dm OR type:mention)"}]}]}"#;

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
        format!(
            "{CLASSES}\n{catch_up}\n[limits]\nbatch_max_messages = 500\nbatch_max_wait_ms = 100\n"
        ),
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
        &["--config", config.to_str().unwrap(), "--admin-token", "tok"],
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
    build_backlog_with(name, policy, backlog, "")
}

/// [`build_backlog`] with `extra` appended to the configuration.
fn build_backlog_with(
    name: &str,
    policy: &str,
    backlog: usize,
    extra: &str,
) -> (PathBuf, PathBuf, PathBuf, String) {
    let b = shared_broker();
    let topic = format!("{name}.in");
    b.create_topic(&topic, 3);
    let (dir, searches, config) = setup(name, policy);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(extra);
    std::fs::write(&config, text).unwrap();
    let mut svc = start(name, &dir, &searches, &config, &topic);
    produce(&b.addr(), &topic, &docs("warm", 60));
    wait_output(&dir, Duration::from_secs(60), |o| {
        ids_of(o, "all").len() >= 60
    });
    assert_eq!(svc.terminate(), Some(0));
    produce(&b.addr(), &topic, &docs("bk", backlog));
    (dir, searches, config, topic)
}

/// Produces live documents, one every 10 ms, until `stop` is set.
fn live_producer(
    topic: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
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
        assert!(
            Instant::now() < deadline,
            "no drain report in {}",
            reports.display()
        );
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
    // It cannot be cancelled (its backlog has not been matched yet): the
    // answer says why, and the drain goes on (checked below: nothing lost).
    let id = svc.status()["jobs"][0]["id"].as_u64().unwrap();
    let (code, body) = svc.request("DELETE", &format!("/replays/{id}"), Some("tok"), &[]);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("catch_up_not_cancellable"), "{body}");
    wait_output(&dir, Duration::from_secs(300), |o| {
        ids_of(o, "all")
            .iter()
            .filter(|id| id.starts_with("bk-"))
            .count()
            == BACKLOG
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let live_n = live.join().unwrap();
    wait_output(&dir, Duration::from_secs(60), |o| {
        ids_of(o, "all")
            .iter()
            .filter(|id| id.starts_with("live-"))
            .count()
            == live_n
    });
    let out: Vec<_> = output(&dir)
        .into_iter()
        .skip(before)
        .filter(|r| r.1 == "all")
        .collect();

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
    assert!(
        c.iter().max() < h.iter().min(),
        "a high backlog record came before the last critical one"
    );
    assert!(
        h.iter().max() < l.iter().min(),
        "a low backlog record came before the last high one"
    );
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
    assert!(
        live_early > 0,
        "no live record before the lowest class finished (live docs: {live_n})"
    );
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

#[test]
fn weighted_advances_every_class_by_its_share() {
    const BACKLOG: usize = 30_000;
    let (dir, searches, config, topic) = build_backlog("cu-weighted", "weighted", BACKLOG);
    let before = output(&dir).len();
    let _svc = start("cu-weighted", &dir, &searches, &config, &topic);
    wait_output(&dir, Duration::from_secs(300), |o| {
        ids_of(o, "all")
            .iter()
            .filter(|id| id.starts_with("bk-"))
            .count()
            == BACKLOG
    });
    let bk: Vec<String> = output(&dir)
        .into_iter()
        .skip(before)
        .filter(|r| r.1 == "all" && r.0.starts_with("bk-"))
        .map(|r| r.2)
        .collect();
    assert_eq!(bk.len(), BACKLOG, "one record per backlog document");
    // Every class advances from the start: each appears in the first half
    // of the drain (its lanes' first fetch takes a moment).
    let first: BTreeSet<&str> = bk[..BACKLOG / 2].iter().map(String::as_str).collect();
    assert_eq!(
        first.len(),
        3,
        "classes in the first half of the drain: {first:?}"
    );
    // While all three have work (from the first record of the last class
    // to start until critical, the smallest, is done), the documents
    // emitted follow the weights 50/30/20.
    let started = ["critical", "high", "low"]
        .iter()
        .map(|c| bk.iter().position(|x| x == c).unwrap())
        .max()
        .unwrap();
    let last_critical = bk.iter().rposition(|c| c == "critical").unwrap();
    assert!(
        started < last_critical,
        "critical finished before every class started"
    );
    let window = &bk[started..=last_critical];
    let share = |c: &str| window.iter().filter(|x| *x == c).count() as f64 / window.len() as f64;
    let (c, h, l) = (share("critical"), share("high"), share("low"));
    eprintln!("weighted shares while every class drained: critical {c:.2} high {h:.2} low {l:.2} over {} records", window.len());
    assert!(
        (c - 0.5).abs() < 0.1 && (h - 0.3).abs() < 0.1 && (l - 0.2).abs() < 0.1,
        "shares {c:.2}/{h:.2}/{l:.2} vs 0.5/0.3/0.2"
    );
}

#[test]
fn kill_9_during_the_drain_loses_nothing_and_does_not_redo_finished_classes() {
    stop_during_the_drain("cu-kill", Stop::Kill9);
}

#[test]
fn a_graceful_stop_during_the_drain_resumes_it_emitting_nothing_twice() {
    stop_during_the_drain("cu-stop", Stop::Graceful);
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stop {
    Kill9,
    Graceful,
}

/// Stops the service mid-drain (after the critical class finished), starts
/// it again, and checks the drain resumed: nothing lost, the finished class
/// not emitted again, other duplicates only from unacknowledged batches
/// (none after a graceful stop).
fn stop_during_the_drain(name: &str, how: Stop) {
    const BACKLOG: usize = 30_000;
    let (dir, searches, config, topic) = build_backlog(name, "strict", BACKLOG);
    let before = output(&dir).len();
    let mut svc = start(name, &dir, &searches, &config, &topic);
    // Stop as soon as the critical class is drained and checkpointed,
    // mid-drain. No pause after it: the rest of this backlog drains in well
    // under a second on a quiet machine (a 700 ms pause once let the whole
    // drain end before the stop).
    svc.wait_status(Duration::from_secs(300), |s| {
        s["jobs"][0]["classes"][0]["finished_after_seconds"].is_number()
    });
    match how {
        Stop::Kill9 => svc.kill9(),
        Stop::Graceful => assert_eq!(svc.terminate(), Some(0)),
    }
    let at_kill = output(&dir).len() - before;
    let low_at_kill = output(&dir)
        .iter()
        .skip(before)
        .filter(|r| r.1 == "all" && r.2 == "low")
        .count();
    let svc = start(name, &dir, &searches, &config, &topic);
    wait_output(&dir, Duration::from_secs(300), |o| {
        ids_of(o, "all")
            .iter()
            .filter(|id| id.starts_with("bk-"))
            .count()
            == BACKLOG
    });
    // The job ends and is reported once.
    let r = report(&dir);
    drop(svc);
    let out: Vec<_> = output(&dir)
        .into_iter()
        .skip(before)
        .filter(|r| r.1 == "all")
        .collect();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &out {
        *count.entry(r.0.as_str()).or_insert(0) += 1;
    }
    let dup = |class: &str| -> usize {
        out.iter()
            .filter(|r| r.2 == class)
            .map(|r| r.0.as_str())
            .collect::<BTreeSet<_>>()
            .iter()
            .map(|id| count[id] - 1)
            .sum()
    };
    let (dc, dh, dl) = (dup("critical"), dup("high"), dup("low"));
    eprintln!(
        "{how:?} after {at_kill} records ({low_at_kill} low): duplicates critical {dc}, high {dh}, low {dl}"
    );
    assert!(
        low_at_kill < BACKLOG * 6 / 10,
        "the kill came after the drain ended"
    );
    for i in 0..BACKLOG {
        assert!(
            count.contains_key(format!("bk-{i}").as_str()),
            "bk-{i} lost"
        );
    }
    assert_eq!(dc, 0, "the finished critical class was emitted again");
    match how {
        // Duplicates only from the unacknowledged batches at the kill (at
        // most 8 batches of 500 messages).
        Stop::Kill9 => assert!(dh + dl <= 4_000, "duplicates {dh} + {dl}"),
        // A graceful stop drained its batches before leaving.
        Stop::Graceful => assert_eq!(dh + dl, 0, "duplicates after a graceful stop"),
    }
    if how == Stop::Graceful {
        let log = std::fs::read_to_string(dir.join("service.log")).unwrap();
        assert!(
            log.contains("resuming from the checkpoint"),
            "the restart did not resume from its checkpoint"
        );
    }
    assert_eq!(
        r["classes"][2]["documents"].as_u64().map(|d| d > 0),
        Some(true)
    );
}

/// Produces `n` documents tagged `tag` with message timestamps from
/// `start_ms`, one per millisecond.
fn produce_at(topic: &str, tag: &str, n: usize, start_ms: i64) {
    let p = producer(&shared_broker().addr());
    for i in 0..n {
        let d = doc(tag, i);
        let key = i.to_string();
        let r = BaseRecord::to(topic)
            .key(&key)
            .payload(&d)
            .timestamp(start_ms + i as i64);
        topic_matcher::produce::send_retrying(&p, r).expect("produce");
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

fn cli(args: &[&str]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_topic-matcher"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

const HOUR: i64 = 3_600_000;
/// 2026-01-01T00:00:00Z
const BASE: i64 = 1_767_225_600_000;

#[test]
fn replay_backfills_a_new_search_over_exactly_its_window() {
    let b = shared_broker();
    let topic = "rp.in";
    b.create_topic(topic, 3);
    let (dir, searches, config) = setup("rp", "strict");
    // Only the first topic at first.
    std::fs::write(
        &searches,
        r#"{"topics": [{"id": "all", "searches": [{"id": "s-all", "query": "catchup"}]}]}"#,
    )
    .unwrap();
    produce_at(topic, "a", 500, BASE);
    produce_at(topic, "b", 700, BASE + HOUR);
    produce_at(topic, "c", 400, BASE + 2 * HOUR);
    let svc = start("rp", &dir, &searches, &config, topic);
    wait_output(&dir, Duration::from_secs(120), |o| {
        ids_of(o, "all").len() == 1600
    });
    // The new search arrives: the file changes and is reloaded. It takes
    // the direct messages and mentions (40% of the documents).
    std::fs::write(&searches, REPLAY_SEARCHES).unwrap();
    svc.wait_status(Duration::from_secs(60), |s| s["searches_version"] == 2);
    let addr = format!("127.0.0.1:{}", svc.admin);
    // `replay` against the running service, with or without the token.
    let brokers = b.addr();
    let replay = |token: bool, extra: &[&str]| -> (i32, String) {
        let mut args = vec!["replay"];
        args.extend(extra);
        args.extend([
            "--admin-addr",
            &addr,
            "--brokers",
            &brokers,
            "--group",
            "rp",
            "--input",
            topic,
            "--output",
            "stdout",
            "--dead-letter",
            "file:/dev/null",
            "--state-dir",
            "/nonexistent",
            "--searches-file",
            searches.to_str().unwrap(),
        ]);
        if token {
            args.extend(["--admin-token", "tok"]);
        }
        cli(&args)
    };
    let window = [
        "--from",
        "2026-01-01T01:00:00Z",
        "--to",
        "2026-01-01T02:00:00Z",
    ];
    // Refused without the token; unknown searches refused with a reason.
    let (code, out) = replay(false, &window);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("403") || out.contains("token"), "{out}");
    let (code, out) = replay(true, &[&window[..], &["--searches", "s-nope"]].concat());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("s-nope"), "{out}");
    // The backfill: window [01:00, 02:00) = the 700 "b" documents, only
    // the new search.
    let (code, out) = replay(true, &[&window[..], &["--searches", "s-new"]].concat());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("done"), "{out}");
    // What it must emit: the offline `match` of the window's documents
    // (the 700 "b" documents) with the same searches file.
    let window_docs = dir.join("window.jsonl");
    let mut jsonl = docs("b", 700).join(&b'\n');
    jsonl.push(b'\n');
    std::fs::write(&window_docs, jsonl).unwrap();
    let (code, offline) = cli(&[
        "match",
        "--searches",
        searches.to_str().unwrap(),
        "--input",
        window_docs.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{offline}");
    let want: BTreeSet<String> = offline
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["topic_id"] == "new")
        .map(|r| r["doc_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(want.len(), 280, "the offline match takes dm and mention");
    let out = output(&dir);
    let new = ids_of(&out, "new");
    assert_eq!(
        new, want,
        "the backfill emits exactly what the offline match finds in the window"
    );
    assert_eq!(
        out.iter().filter(|r| r.1 == "new").count(),
        280,
        "once each"
    );
    assert_eq!(
        out.iter().filter(|r| r.1 == "all").count(),
        1600,
        "the other search is not replayed"
    );
    // Listed by status.
    let st = svc.status();
    let job = &st["jobs"][0];
    assert_eq!(job["kind"], "replay", "{st:#}");
    assert_eq!(job["state"], "done", "{st:#}");
    // A finished job cannot be cancelled; cancelling needs the token.
    let id = job["id"].as_u64().unwrap().to_string();
    let (code, body) = svc.request("DELETE", &format!("/replays/{id}"), None, &[]);
    assert_eq!(code, 401, "{body}");
    let (code, out) = replay(true, &["--cancel", &id]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no running replay"), "{out}");

    // A running replay cancelled: 20,000 documents at 05:00 (8,000 of them
    // taken by the new search live), replayed and cancelled at once; it
    // then emits no more.
    produce_at(topic, "d", 20_000, BASE + 5 * HOUR);
    let replayed_d = |o: &[(String, String, String)]| {
        o.iter()
            .filter(|r| r.1 == "new" && r.0.starts_with("d-"))
            .count()
    };
    wait_output(&dir, Duration::from_secs(120), |o| replayed_d(o) >= 8_000);
    let (code, out) = replay(
        true,
        &[
            "--from",
            "2026-01-01T05:00:00Z",
            "--to",
            "2026-01-01T06:00:00Z",
            "--searches",
            "s-new",
            "--detach",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let id = out
        .split("replay job ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .expect("the job id")
        .to_string();
    // Accepted only for a running job (a finished one gets 404, exit 1).
    let (code, out) = replay(true, &["--cancel", &id]);
    assert_eq!(code, 0, "{out}");
    svc.wait_status(Duration::from_secs(10), |st| {
        st["jobs"].as_array().into_iter().flatten().any(|j| {
            j["id"].as_u64().is_some_and(|v| v.to_string() == id) && j["state"] == "cancelled"
        })
    });
    let at_cancel = replayed_d(&output(&dir));
    std::thread::sleep(Duration::from_secs(2));
    let later = replayed_d(&output(&dir));
    eprintln!(
        "replay cancelled after {} of 8000 records",
        at_cancel - 8_000
    );
    // Only the batch open at the cancel may still land.
    assert!(
        later - at_cancel <= 500,
        "the cancelled replay went on: {at_cancel} then {later}"
    );
    assert!(
        later < 16_000,
        "the replay ran to its end before the cancel"
    );
}

/// Classes by input topic drain in order; a standalone replay killed with
/// -9 resumes; `replay --classes` replays only the chosen class, and a
/// window past the newest message says so.
#[test]
fn classes_on_separate_topics_drain_in_order_and_replay_resumes_after_kill_9() {
    let b = shared_broker();
    let (owned, social) = ("sep-owned.in", "sep-social.in");
    b.create_topic(owned, 3);
    b.create_topic(social, 3);
    let dir = temp_dir("sep");
    let searches = dir.join("searches.json");
    std::fs::write(&searches, SEARCHES).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!("[[classes]]\nname = \"owned\"\ntopics = [\"{owned}\"]\n[[classes]]\nname = \"rest\"\n\n[catch_up]\nthreshold = 100\n[limits]\nbatch_max_messages = 500\nbatch_max_wait_ms = 100\n"),
    )
    .unwrap();
    let input = format!("{owned},{social}");
    let mut svc = start("sep", &dir, &searches, &config, &input);
    assert_eq!(svc.terminate(), Some(0));
    // The backlog: both topics, timestamps in one hour.
    produce_at(social, "s", 6000, BASE);
    produce_at(owned, "o", 1500, BASE + 10_000);
    // A malformed message in the owned topic's backlog: only the `owned`
    // lane reads that topic, and it must send it to the dead letters.
    produce(&b.addr(), owned, &[b"{\"id\": broken".to_vec()]);
    let svc = start("sep", &dir, &searches, &config, &input);
    wait_output(&dir, Duration::from_secs(300), |o| {
        ids_of(o, "all").len() == 7500
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let dead = || std::fs::read_to_string(dir.join("dead.jsonl")).unwrap_or_default();
    while !dead().contains("broken") {
        assert!(
            Instant::now() < deadline,
            "the bad backlog message was not dead-lettered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(svc);
    let out: Vec<_> = output(&dir).into_iter().filter(|r| r.1 == "all").collect();
    let last_owned = out.iter().rposition(|r| r.2 == "owned").unwrap();
    let first_rest = out.iter().position(|r| r.2 == "rest").unwrap();
    assert!(
        last_owned < first_rest,
        "a record of the lower class came before the owned topic's last"
    );
    assert!(
        out.iter()
            .all(|r| (r.2 == "owned") == r.0.starts_with("o-")),
        "class by input topic"
    );

    // A standalone replay (no service running) of the whole hour, killed
    // mid-way and resumed: every document of the window at least once.
    let before = output(&dir).len();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "replay",
            "--config",
            config.to_str().unwrap(),
            "--brokers",
            &b.addr(),
            "--group",
            "sep",
            "--input",
            &input,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend([
            "--output".into(),
            format!("file:{}", dir.join("out.jsonl").display()),
        ]);
        a.extend([
            "--dead-letter".into(),
            format!("file:{}", dir.join("dead.jsonl").display()),
        ]);
        a.extend([
            "--state-dir".into(),
            dir.join("state").display().to_string(),
        ]);
        a.extend(["--searches-file".into(), searches.display().to_string()]);
        a.extend(["--admin-addr".into(), format!("127.0.0.1:{}", free_port())]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_topic-matcher"))
        .args(args(&[
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "2026-01-01T01:00:00Z",
            "--searches",
            "s-new",
        ]))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("replay.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while output(&dir).len() < before + 200 {
        assert!(Instant::now() < deadline, "the replay emitted nothing");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the replay ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    let _ = child.wait();
    let at_kill = ids_of(&output(&dir)[before..], "new").len();
    // `status` with nothing running lists the interrupted job from the
    // state directory: its window, searches and what is left per class.
    let status: Vec<String> = args(&[])
        .into_iter()
        .map(|a| match a.as_str() {
            "replay" => "status".into(),
            "--searches-file" => "--searches".into(),
            _ => a,
        })
        .collect();
    let (code, text) = cli(&status.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("service not answering"), "{text}");
    let job = text
        .lines()
        .find(|l| l.contains(": replay, running, strict; 750"))
        .unwrap_or_else(|| panic!("the interrupted replay is not listed:\n{text}"));
    assert!(
        text.contains("window [2026-01-01T00:00:00.000Z, 2026-01-01T01:00:00.000Z)")
            && text.contains("searches s-new")
            && text.contains("replay --resume"),
        "{text}"
    );
    let left: i64 = text
        .lines()
        .filter(|l| l.contains("messages left"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<i64>().unwrap())
        .sum();
    assert!(left > 0, "nothing left at the kill? {job}\n{text}");
    let (code, text) = cli(&args(&["--resume"])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert_eq!(code, 0, "{text}");
    let replayed: Vec<_> = output(&dir)[before..].to_vec();
    assert!(
        replayed.iter().all(|r| r.1 == "new"),
        "only the chosen search"
    );
    let new = ids_of(&replayed, "new");
    eprintln!(
        "standalone replay: {at_kill} documents before kill -9, {} after --resume ({} records)",
        new.len(),
        replayed.len()
    );
    assert!(at_kill < 7500, "the kill came after the replay ended");
    assert_eq!(
        new.len(),
        7500,
        "every document of the window, after the resume"
    );

    // `--classes owned`: the owned topic's documents alone; a window ending
    // after the newest message ends at the high watermark, and says so.
    let before = output(&dir).len();
    let (code, text) = cli(&args(&[
        "--from",
        "2026-01-01T00:00:00Z",
        "--to",
        "2030-01-01T00:00:00Z",
        "--searches",
        "s-new",
        "--classes",
        "owned",
    ])
    .iter()
    .map(String::as_str)
    .collect::<Vec<_>>());
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("--to is after the newest message"),
        "no note on the bound past the newest message:\n{text}"
    );
    let replayed: Vec<_> = output(&dir)[before..].to_vec();
    assert!(
        replayed
            .iter()
            .all(|r| r.1 == "new" && r.2 == "owned" && r.0.starts_with("o-")),
        "only the chosen class"
    );
    assert_eq!(
        ids_of(&replayed, "new").len(),
        1500,
        "every document of the chosen class"
    );
}

/// A second instance joins the group mid-drain: the first drops the ranges
/// of the partitions it loses, both catch up from the group's low-water
/// mark, nothing is lost.
///
/// With static members (the service's default) the test broker's group
/// stalled in 3 of 22 runs: after the first instance released its
/// partitions, neither member was assigned for 90 s. The instances here
/// use dynamic membership from their first start (10 of 10 runs passed);
/// nextest still retries this test once, on a fresh broker
/// (`.config/nextest.toml`), and reports it as flaky if the retry passes.
/// To capture a stall: `TM_TEST_LOG="info,librdkafka=debug"`.
#[test]
fn a_rebalance_during_the_drain_loses_nothing() {
    const BACKLOG: usize = 60_000;
    // Dynamic membership, from the first start: the stall below was seen
    // with static members, which the test broker handles less well (see
    // tests/service.rs).
    let (dir, searches, config, topic) = build_backlog_with(
        "cu-rebal",
        "strict",
        BACKLOG,
        "\n[kafka]\ninstance_id = \"\"\n",
    );
    let a = start("cu-rebal", &dir, &searches, &config, &topic);
    a.wait_status(Duration::from_secs(60), |s| {
        s["jobs"].as_array().is_some_and(|j| !j.is_empty())
    });
    // A second instance joins mid-drain: the partitions are shared anew.
    let dir_b = temp_dir("cu-rebal-b");
    let b = start("cu-rebal", &dir_b, &searches, &config, &topic);
    let got = |d: &Path| ids_of(&output(d), "all");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut all = got(&dir);
        all.extend(got(&dir_b));
        let n = all.iter().filter(|id| id.starts_with("bk-")).count();
        if n == BACKLOG {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {BACKLOG} backlog documents after the rebalance; status of the first: {:?}; of the second: {:?}",
            a.get("/status"),
            b.get("/status")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop((a, b));
    let log = std::fs::read_to_string(dir.join("service.log")).unwrap();
    let dropped = log.contains("no longer assigned dropped");
    eprintln!("rebalance mid-drain: ranges handed over = {dropped}");
    assert!(
        dropped,
        "the second instance joined after the drain ended; nothing was handed over"
    );
}
