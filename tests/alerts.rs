//! The shipped alert rules (`config/alerts.yml`) and dashboard
//! (`config/grafana/dashboards/`), checked by Prometheus itself: `promtool`
//! validates and unit-tests the rules, and a real Prometheus (Debian's
//! package) scraping a real service sees the alerts go pending when the
//! output goes down, the lag grows and the instance dies.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use rdkafka::producer::{BaseRecord, Producer};

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(repo("config"))
            .output()
            .expect("promtool (install-deps installs Debian's prometheus)");
        assert_ok(&out, &format!("promtool {args:?}"));
    }
}

/// A Prometheus server on a free port; killed when dropped (and by its
/// watchdog when the test process is gone).
struct Prometheus {
    _process: Watched,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, target: u16) -> Prometheus {
        let port = free_port();
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: topic-matcher\n    static_configs:\n      - targets: [\"127.0.0.1:{target}\"]\n",
                repo("config/alerts.yml").display()
            ),
        )
        .unwrap();
        let process = Watched::spawn(
            dir,
            "prometheus",
            &format!(
                "prometheus --config.file=prometheus.yml --storage.tsdb.path=tsdb --web.listen-address=127.0.0.1:{port}"
            ),
        );
        let p = Prometheus {
            _process: process,
            port,
        };
        let ready = poll_until(
            Duration::from_secs(60),
            Duration::from_millis(200),
            || p.get("/-/ready").map(|(code, _)| code),
            |c| *c == Some(200),
        );
        assert_eq!(
            ready,
            Some(200),
            "prometheus did not start: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        p
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        topic_matcher::commands::admin_client::http(
            ([127, 0, 0, 1], self.port).into(),
            "GET",
            path,
            None,
            &[],
        )
        .ok()
    }

    /// Alert name → state ("pending" or "firing") of every active alert.
    fn alerts(&self) -> Vec<(String, String)> {
        let Some((200, body)) = self.get("/api/v1/alerts") else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        (
                            x["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                            x["state"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs `expr` as an instant query; the answer's status.
    fn query_status(&self, expr: &str) -> String {
        let path = format!("/api/v1/query?query={}", url_encode(expr));
        let (_, body) = self.get(&path).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        format!(
            "{} {}",
            v["status"].as_str().unwrap_or("no answer"),
            v["error"]
        )
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Produces `docs` with timestamps from `first_ms` on, and waits.
fn produce_at(brokers: &str, topic: &str, docs: &[Vec<u8>], first_ms: i64) {
    let p = producer(brokers);
    for (i, d) in docs.iter().enumerate() {
        let key = i.to_string();
        topic_matcher::produce::send_retrying(
            &p,
            BaseRecord::to(topic)
                .key(&key)
                .payload(d)
                .timestamp(first_ms + i as i64),
        )
        .expect("produce");
    }
    p.flush(Duration::from_secs(30)).expect("flush input");
}

/// Every `topic_matcher_*` name in `text`, histogram suffixes dropped.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("topic_matcher_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(base.to_string());
        rest = &tail[end..];
    }
    out
}

/// The PromQL expressions of the shipped dashboards.
fn dashboard_exprs() -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo("config/grafana/dashboards")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let d: serde_json::Value = serde_json::from_str(&text).unwrap();
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                out.push(t["expr"].as_str().unwrap().to_string());
            }
        }
    }
    assert!(!out.is_empty(), "no dashboard found");
    out
}

#[test]
fn a_real_prometheus_raises_output_down_lag_growing_and_instance_down() {
    let b = shared_broker();
    let brokers = b.addr();
    b.create_topic("al.in", 3);
    let dir = temp_dir("alerts");
    let Some(fs) = small_fs(&dir.join("outfs"), 2) else {
        eprintln!("skipped: mounting a small tmpfs for the output needs root");
        return;
    };
    let out = fs.0.join("out.jsonl");
    let mut svc = Service::start(&ServiceOpts {
        brokers: &brokers,
        group: "al",
        input: "al.in",
        output: format!("file:{}", out.display()),
        dead_letter: format!("file:{}", dir.join("dead.jsonl").display()),
        state: dir.join("state"),
        log: dir.join("service.log"),
    });
    svc.wait_ready(Duration::from_secs(60));
    // Documents written an hour ago: once the service falls behind, its
    // lag in seconds (the age of the last message it processed) is an hour
    // and grows.
    let (docs, _) = sample_docs(600, "al");
    let hour_ago = topic_matcher::record::now_ms() as i64 - 3_600_000;
    produce_at(&brokers, "al.in", &docs[..100], hour_ago);
    let lag = poll_until(
        Duration::from_secs(60),
        Duration::from_millis(300),
        || metric(&svc, "consumer_lag_messages"),
        |v| *v == Some(0.0),
    );
    assert_eq!(lag, Some(0.0), "the service caught up before the fault");

    // Every metric the rules and the dashboard name is one the service
    // exports.
    let exported = metric_names(&svc.get("/metrics").unwrap());
    let rules = std::fs::read_to_string(repo("config/alerts.yml")).unwrap();
    let mut named = metric_names(&rules);
    for e in dashboard_exprs() {
        named.extend(metric_names(&e));
    }
    let unknown: Vec<_> = named.difference(&exported).collect();
    assert!(unknown.is_empty(), "named but not exported: {unknown:?}");
    // And the exposition follows Prometheus's naming conventions
    // (`promtool check metrics`: counters end in _total, gauges do not, …).
    let lint = {
        use std::io::Write;
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let text = svc.get("/metrics").unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    assert_ok(&lint, "promtool check metrics");

    let prom = Prometheus::start(&dir, svc.admin);
    let up = poll_until(
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            prom.get("/api/v1/query?query=up")
                .map(|(_, b)| b)
                .unwrap_or_default()
        },
        |b| b.contains("\"1\"]"),
    );
    assert!(up.contains("\"1\"]"), "prometheus does not scrape: {up}");
    // The dashboard's queries are valid PromQL.
    for e in dashboard_exprs() {
        let s = prom.query_status(&e);
        assert!(s.starts_with("success"), "dashboard query {e}: {s}");
    }
    // (TopicMatcherAbsent may be pending for the evaluations before the
    // first scrape; it clears by itself.)
    let healthy = poll_until(
        Duration::from_secs(20),
        Duration::from_millis(500),
        || prom.alerts(),
        Vec::is_empty,
    );
    assert!(healthy.is_empty(), "alerts while healthy: {healthy:?}");

    // The output disk fills: input pauses and the lag grows.
    let filler = fs.fill();
    produce_at(&brokers, "al.in", &docs[100..], hour_ago + 100);
    let want = |alerts: &Vec<(String, String)>, name: &str| {
        alerts
            .iter()
            .any(|(n, s)| n == name && (s == "pending" || s == "firing"))
    };
    let seen = poll_until(
        Duration::from_secs(120),
        Duration::from_millis(500),
        || prom.alerts(),
        |a| want(a, "TopicMatcherOutputDown") && want(a, "TopicMatcherLagGrowing"),
    );
    assert!(
        want(&seen, "TopicMatcherOutputDown") && want(&seen, "TopicMatcherLagGrowing"),
        "output down and lag growing not raised: {seen:?}"
    );
    assert!(
        !want(&seen, "TopicMatcherDown"),
        "instance down while it runs: {seen:?}"
    );

    // The instance dies: Prometheus cannot scrape it.
    svc.kill9();
    let seen = poll_until(
        Duration::from_secs(60),
        Duration::from_millis(500),
        || prom.alerts(),
        |a| want(a, "TopicMatcherDown"),
    );
    assert!(
        want(&seen, "TopicMatcherDown"),
        "instance down not raised: {seen:?}"
    );
    std::fs::remove_file(filler).unwrap();
}
