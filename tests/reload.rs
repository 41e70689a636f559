//! Hot reload of searches against a real broker (tansu, sqlite storage):
//! reload under a steady stream, broken file, rollback and restart,
//! authorization, and two instances converging on the Kafka searches topic.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{free_port, poll_until, produce, shared_broker, temp_dir, Service, ServiceOpts};

const TOKEN: &str = "s3cret-token";

fn searches(topics: &[(&str, &str)]) -> String {
    let t: Vec<serde_json::Value> = topics
        .iter()
        .map(|(id, q)| serde_json::json!({"id": id, "searches": [{"id": format!("{id}-s"), "query": q}]}))
        .collect();
    serde_json::json!({ "topics": t }).to_string()
}

fn docs(tag: &str, from: usize, n: usize, text: &str) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| {
            serde_json::json!({"id": format!("{tag}-{i}"), "text": format!("{text} number {i}")})
                .to_string()
                .into_bytes()
        })
        .collect()
}

/// Complete lines of a JSONL output file.
fn records(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn wait_records(
    path: &Path,
    timeout: Duration,
    cond: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    poll_until(
        timeout,
        Duration::from_millis(100),
        || records(path),
        |r| cond(r),
    )
}

fn opts<'a>(
    brokers: &'a str,
    group: &'a str,
    input: &'a str,
    dir: &Path,
    name: &str,
) -> ServiceOpts<'a> {
    ServiceOpts {
        brokers,
        group,
        input,
        output: format!("file:{}", dir.join(format!("{name}-out.jsonl")).display()),
        dead_letter: format!("file:{}", dir.join(format!("{name}-dead.jsonl")).display()),
        state: dir.join(format!("{name}-state")),
        log: dir.join(format!("{name}.log")),
    }
}

#[test]
fn reload_under_a_steady_stream_matches_every_document_exactly_once() {
    let broker = shared_broker();
    let brokers = broker.addr();
    broker.create_topic("reload-stream-in", 3);
    let dir = temp_dir("reload-stream");
    let file = dir.join("searches.json");
    std::fs::write(&file, searches(&[("t", "alpha")])).unwrap();
    let o = opts(&brokers, "reload-stream", "reload-stream-in", &dir, "svc");
    let out = dir.join("svc-out.jsonl");
    let svc = Service::start_with(&o, &file, &["--admin-token", TOKEN]);
    svc.wait_ready(Duration::from_secs(60));

    // A steady stream on another thread while the searches change twice:
    // once through the API, once through the watched file.
    const N: usize = 3000;
    let producer = {
        let brokers = brokers.clone();
        std::thread::spawn(move || {
            for chunk in 0..30 {
                produce(
                    &brokers,
                    "reload-stream-in",
                    &docs("s", chunk * 100, 100, "alpha"),
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(1000));
    let (code, body) = svc.request(
        "PUT",
        "/searches",
        Some(TOKEN),
        searches(&[("t", "alpha OR omega"), ("u", "omega")]).as_bytes(),
    );
    assert_eq!(code, 200, "{body}");
    std::thread::sleep(Duration::from_millis(1000));
    std::fs::write(&file, searches(&[("t", "alpha OR psi"), ("u", "omega")])).unwrap();
    producer.join().unwrap();
    svc.wait_status(Duration::from_secs(20), |s| s["searches_version"] == 3);

    let recs = wait_records(&out, Duration::from_secs(60), |r| r.len() >= N);
    // Exactly one record per document (topic t), none lost, none twice.
    let mut per_doc: BTreeMap<String, usize> = BTreeMap::new();
    for r in &recs {
        assert_eq!(r["topic_id"], "t", "{r}");
        *per_doc
            .entry(r["doc_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_doc.len(), N, "documents matched");
    assert!(
        per_doc.values().all(|n| *n == 1),
        "a document matched twice"
    );
    // Each partition switches versions once and in order: 1 … 2 … 3.
    let mut by_partition: BTreeMap<i64, Vec<(i64, u64)>> = BTreeMap::new();
    for r in &recs {
        by_partition
            .entry(r["input"]["partition"].as_i64().unwrap())
            .or_default()
            .push((
                r["input"]["offset"].as_i64().unwrap(),
                r["searches_version"].as_u64().unwrap(),
            ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (p, mut v) in by_partition {
        v.sort_unstable();
        assert!(
            v.windows(2).all(|w| w[0].1 <= w[1].1),
            "partition {p}: versions out of order"
        );
        seen.extend(v.iter().map(|x| x.1));
    }
    assert!(
        seen.contains(&1) && seen.len() >= 2,
        "versions seen: {seen:?}"
    );
    drop(svc);
}

fn cli(svc: &Service, args: &[&str], token: Option<&str>) -> (i32, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_topic-matcher"));
    c.arg("searches")
        .args(args)
        .args(["--admin-addr", &format!("127.0.0.1:{}", svc.admin)])
        .env_remove("TOPIC_MATCHER_ADMIN_TOKEN");
    if let Some(t) = token {
        c.args(["--admin-token", t]);
    }
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

#[test]
fn broken_file_rollback_restart_and_authorization() {
    let broker = shared_broker();
    let brokers = broker.addr();
    broker.create_topic("reload-admin-in", 1);
    let dir = temp_dir("reload-admin");
    let file = dir.join("searches.json");
    std::fs::write(&file, searches(&[("a", "alpha")])).unwrap();
    let o = opts(&brokers, "reload-admin", "reload-admin-in", &dir, "svc");
    let out = dir.join("svc-out.jsonl");
    let mut svc = Service::start_with(&o, &file, &["--admin-token", TOKEN]);
    svc.wait_ready(Duration::from_secs(60));
    assert_eq!(svc.status()["searches_version"], 1);

    // Unauthorized mutating requests change nothing.
    let v2 = searches(&[("a", "alpha"), ("b", "beta")]);
    for token in [None, Some("wrong")] {
        assert_eq!(svc.request("PUT", "/searches", token, v2.as_bytes()).0, 401);
        assert_eq!(svc.request("POST", "/searches/reload", token, &[]).0, 401);
        assert_eq!(svc.request("POST", "/searches/rollback", token, &[]).0, 401);
    }
    let (code, _) = cli(&svc, &["reload"], None);
    assert_eq!(code, 1, "the CLI without a token is refused");
    // With a token configured, reading the searches needs it too.
    assert_eq!(svc.request("GET", "/searches/history", None, &[]).0, 401);
    assert_eq!(svc.request("GET", "/searches", None, &[]).0, 401);
    let (code, history) = svc.request("GET", "/searches/history", Some(TOKEN), &[]);
    assert_eq!(code, 200, "{history}");
    let history: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history["versions"].as_array().unwrap().len(), 1);

    // A broken file: rejected with its column, version 1 keeps matching.
    std::fs::write(&file, searches(&[("a", "alpha"), ("b", "beta AND")])).unwrap();
    svc.wait_status(Duration::from_secs(10), |s| {
        s["searches_detail"]["last_error"]["error"] == "invalid"
    });
    let st = svc.status();
    assert_eq!(st["searches_version"], 1);
    let problems = st["searches_detail"]["last_error"]["problems"].to_string();
    assert!(problems.contains("column"), "{problems}");
    produce(&brokers, "reload-admin-in", &docs("x", 0, 1, "alpha beta"));
    let r = wait_records(&out, Duration::from_secs(30), |r| !r.is_empty());
    assert_eq!(
        (r.len(), &r[0]["topic_id"], &r[0]["searches_version"]),
        (1, &"a".into(), &1.into())
    );

    // Fixed: version 2 matches topic b too.
    std::fs::write(&file, &v2).unwrap();
    svc.wait_status(Duration::from_secs(10), |s| s["searches_version"] == 2);
    assert!(svc.status()["searches_detail"]["last_error"].is_null());
    produce(&brokers, "reload-admin-in", &docs("y", 0, 1, "alpha beta"));
    let r = wait_records(&out, Duration::from_secs(30), |r| r.len() >= 3);
    let y: Vec<(String, u64)> = r[1..]
        .iter()
        .map(|r| {
            (
                r["topic_id"].as_str().unwrap().to_string(),
                r["searches_version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(y, vec![("a".into(), 2), ("b".into(), 2)]);

    // Rollback through the CLI: back to version 1, topic b gone.
    let (code, text) = cli(&svc, &["rollback"], Some(TOKEN));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("now active: version 1"), "{text}");
    let (code, text) = cli(&svc, &["history"], Some(TOKEN));
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("* version 1") && text.contains("  version 2"),
        "{text}"
    );
    produce(&brokers, "reload-admin-in", &docs("z", 0, 1, "alpha beta"));
    let r = wait_records(&out, Duration::from_secs(30), |r| r.len() >= 4);
    assert_eq!(
        (
            &r[3]["doc_id"],
            &r[3]["topic_id"],
            &r[3]["searches_version"]
        ),
        (&"z-0".into(), &"a".into(), &1.into())
    );

    // A restart keeps the rollback although the file still holds version 2.
    assert_eq!(svc.terminate(), Some(0));
    let svc = Service::start_with(&o, &file, &["--admin-token", TOKEN]);
    svc.wait_ready(Duration::from_secs(60));
    assert_eq!(svc.status()["searches_version"], 1);
    produce(&brokers, "reload-admin-in", &docs("w", 0, 1, "alpha beta"));
    let r = wait_records(&out, Duration::from_secs(30), |r| r.len() >= 5);
    assert_eq!(r.len(), 5, "{r:?}");
    assert_eq!(
        (&r[4]["doc_id"], &r[4]["searches_version"]),
        (&"w-0".into(), &1.into())
    );
    drop(svc);
}

/// `PUT`/`DELETE /searches/topics/{id}` and `searches set-topic` /
/// `delete-topic`: one topic changes, the others stay, each change is live
/// when the request returns, and a bad request changes nothing.
#[test]
fn one_topic_set_and_deleted_through_the_api_and_the_cli() {
    let broker = shared_broker();
    let brokers = broker.addr();
    broker.create_topic("reload-topic-in", 1);
    let dir = temp_dir("reload-topic");
    let file = dir.join("searches.json");
    let four = [
        ("a", "alpha"),
        ("b", "beta"),
        ("c", "gamma"),
        ("d", "delta"),
    ];
    std::fs::write(&file, searches(&four)).unwrap();
    let o = opts(&brokers, "reload-topic", "reload-topic-in", &dir, "svc");
    let out = dir.join("svc-out.jsonl");
    let svc = Service::start_with(&o, &file, &["--admin-token", TOKEN]);
    svc.wait_ready(Duration::from_secs(60));
    assert_eq!(svc.status()["searches_version"], 1);

    let topic_e = r#"{"id": "e", "searches": [{"id": "e-s", "query": "epsilon"}]}"#;
    // Refused, and nothing changes: no token, an id unlike the address's,
    // an invalid query, an unknown key, a search id another topic has.
    assert_eq!(
        svc.request("PUT", "/searches/topics/e", None, topic_e.as_bytes())
            .0,
        401
    );
    assert_eq!(
        svc.request("DELETE", "/searches/topics/a", None, &[]).0,
        401
    );
    let (code, text) = svc.request("PUT", "/searches/topics/x", Some(TOKEN), topic_e.as_bytes());
    assert_eq!(code, 422, "{text}");
    assert!(text.contains("is not the id"), "{text}");
    let bad = r#"{"id": "e", "searches": [{"id": "e-s", "query": "epsilon AND"}]}"#;
    let (code, text) = svc.request("PUT", "/searches/topics/e", Some(TOKEN), bad.as_bytes());
    assert_eq!(code, 422, "{text}");
    assert!(text.contains("column"), "{text}");
    let typo = r#"{"id": "e", "serches": []}"#;
    assert_eq!(
        svc.request("PUT", "/searches/topics/e", Some(TOKEN), typo.as_bytes())
            .0,
        422
    );
    let clash = r#"{"id": "e", "searches": [{"id": "a-s", "query": "epsilon"}]}"#;
    let (code, text) = svc.request("PUT", "/searches/topics/e", Some(TOKEN), clash.as_bytes());
    assert_eq!(code, 422, "{text}");
    assert!(text.contains("a-s"), "{text}");
    let (code, text) = svc.request("DELETE", "/searches/topics/nope", Some(TOKEN), &[]);
    assert_eq!(code, 404, "{text}");
    assert_eq!(svc.status()["searches_version"], 1);

    // Added through the CLI: live when it answers.
    let e_file = dir.join("e.json");
    std::fs::write(&e_file, topic_e).unwrap();
    let (code, text) = cli(&svc, &["set-topic", e_file.to_str().unwrap()], Some(TOKEN));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("now active: version 2 (5 topics"), "{text}");
    produce(
        &brokers,
        "reload-topic-in",
        &docs("p", 0, 1, "alpha epsilon"),
    );
    let r = wait_records(&out, Duration::from_secs(30), |r| r.len() >= 2);
    let got: Vec<(String, u64)> = r
        .iter()
        .map(|r| {
            (
                r["topic_id"].as_str().unwrap().into(),
                r["searches_version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![("a".into(), 2), ("e".into(), 2)]);

    // Replaced through the API, deleted through the CLI.
    let a2 = r#"{"id": "a", "searches": [{"id": "a-s", "query": "omega"}]}"#;
    let (code, text) = svc.request("PUT", "/searches/topics/a", Some(TOKEN), a2.as_bytes());
    assert_eq!(code, 200, "{text}");
    let (code, text) = cli(&svc, &["delete-topic", "e"], Some(TOKEN));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("now active: version 4 (4 topics"), "{text}");
    let (code, text) = cli(&svc, &["delete-topic", "e"], Some(TOKEN));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no topic \"e\""), "{text}");
    produce(
        &brokers,
        "reload-topic-in",
        &docs("q", 0, 1, "alpha epsilon omega"),
    );
    let r = wait_records(&out, Duration::from_secs(30), |r| r.len() >= 3);
    assert_eq!(
        (
            &r[2]["doc_id"],
            &r[2]["topic_id"],
            &r[2]["searches_version"]
        ),
        (&"q-0".into(), &"a".into(), &4.into())
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(records(&out).len(), 3, "nothing else matched");
    let (code, doc) = svc.request("GET", "/searches", Some(TOKEN), &[]);
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let ids: Vec<&str> = doc["document"]["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    assert_eq!(
        doc["document"]["topics"][0]["searches"][0]["query"],
        "omega"
    );

    // POST /explain reads the running version (the token's read rules).
    let ask = |body: serde_json::Value, token| {
        svc.request("POST", "/explain", token, body.to_string().as_bytes())
    };
    let doc = serde_json::json!({"id": "x", "text": "omega and beta news"});
    assert_eq!(ask(serde_json::json!({"document": doc}), None).0, 401);
    let (code, text) = ask(serde_json::json!({"document": doc}), Some(TOKEN));
    assert_eq!(code, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["version"], 4, "{v}");
    let matched: Vec<&str> = v["explanations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["topic"].as_str().unwrap())
        .collect();
    assert_eq!(matched, ["a", "b"], "{v}");
    let (code, text) = ask(
        serde_json::json!({"document": doc, "search": "c-s"}),
        Some(TOKEN),
    );
    assert_eq!(code, 200, "{text}");
    assert!(
        text.contains("\"matched\":false") && text.contains("not in the document"),
        "{text}"
    );
    let draft = serde_json::json!({"document": doc, "query": "omega NEAR/0 beta"});
    let (code, text) = ask(draft, Some(TOKEN));
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("more than the 0 allowed"), "{text}");
    let (code, text) = ask(
        serde_json::json!({"document": doc, "query": "omega AND"}),
        Some(TOKEN),
    );
    assert_eq!(code, 422, "{text}");
    assert!(text.contains("column"), "{text}");
    let big = serde_json::json!({"id": "x", "text": "omega ".repeat(10_000)});
    assert_eq!(
        ask(serde_json::json!({"document": big}), Some(TOKEN)).0,
        400
    );
    assert_eq!(ask(serde_json::json!({"doc": doc}), Some(TOKEN)).0, 400);
    drop(svc);
}

#[test]
fn two_instances_converge_on_the_kafka_searches_topic() {
    let broker = shared_broker();
    let brokers = broker.addr();
    broker.create_topic("reload-kafka-in", 2);
    broker.create_topic("reload-kafka-searches", 1);
    // One topic already published before the instances start.
    let p = common::producer(&brokers);
    let a =
        serde_json::json!({"id": "a", "searches": [{"id": "a-s", "query": "alpha"}]}).to_string();
    p.send(
        rdkafka::producer::BaseRecord::to("reload-kafka-searches")
            .key("a")
            .payload(&a),
    )
    .unwrap();
    rdkafka::producer::Producer::flush(&p, Duration::from_secs(10)).unwrap();

    let dir = temp_dir("reload-kafka");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[searches]\nkafka_topic = \"reload-kafka-searches\"\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap().to_string();
    let start = |name: &str| {
        let o = opts(&brokers, "reload-kafka", "reload-kafka-in", &dir, name);
        let mut c = Command::new(env!("CARGO_BIN_EXE_topic-matcher"));
        let admin = free_port();
        let log = std::fs::File::create(&o.log).unwrap();
        c.args([
            "run",
            "--config",
            &cfg,
            "--brokers",
            &brokers,
            "--group",
            "reload-kafka",
            "--input",
            "reload-kafka-in",
        ])
        .args([
            "--output",
            &o.output,
            "--dead-letter",
            &o.dead_letter,
            "--admin-token",
            TOKEN,
        ])
        .arg("--state-dir")
        .arg(&o.state)
        .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        Service {
            child: c.spawn().unwrap(),
            admin,
            state: o.state.clone(),
            token: Some(TOKEN.into()),
        }
    };
    let one = start("one");
    let two = start("two");
    let converged = |want_topics: u64| {
        for s in [&one, &two] {
            s.wait_status(Duration::from_secs(30), |st| {
                st["searches_detail"]["topics"] == want_topics
            });
        }
        let (a, b) = (one.status(), two.status());
        assert_eq!(
            a["searches_detail"]["version"],
            b["searches_detail"]["version"]
        );
        assert_eq!(a["searches_detail"]["hash"], b["searches_detail"]["hash"]);
        a["searches_detail"].clone()
    };
    let v1 = converged(1);
    assert_eq!(v1["version"], 1, "version = position in the searches log");

    // A change through one instance's API is published and read by both.
    let (code, body) = one.request(
        "PUT",
        "/searches",
        Some(TOKEN),
        searches(&[("a", "alpha"), ("b", "beta")]).as_bytes(),
    );
    assert!(code == 200 || code == 202, "{code} {body}");
    let v2 = converged(2);
    assert_ne!(v2["hash"], v1["hash"]);
    // A tombstone written by anyone else deletes the topic everywhere.
    p.send(rdkafka::producer::BaseRecord::<str, [u8]>::to("reload-kafka-searches").key("b"))
        .unwrap();
    rdkafka::producer::Producer::flush(&p, Duration::from_secs(10)).unwrap();
    let v3 = converged(1);
    assert_eq!(v3["hash"], v1["hash"], "same searches, same hash");
    assert!(v3["version"].as_u64() > v2["version"].as_u64());
    // Rollback in this mode is published too, and both follow.
    let (code, body) = two.request("POST", "/searches/rollback?to=2", Some(TOKEN), &[]);
    assert!(code == 200 || code == 202, "{code} {body}");
    let v4 = converged(2);
    assert_eq!(v4["hash"], v2["hash"]);
    drop((one, two));
}
