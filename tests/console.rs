//! The console page in a real headless browser (Chromium over the DevTools
//! protocol) against a real service on librdkafka's mock cluster, with an
//! admin token: the live numbers move, the catch-up bars appear during an
//! outage and the finished drain lists its classes in order, the
//! playground explains a pasted post and a draft query, a rollback from the
//! page changes `/searches/history`, the cost view ranks searches.
//! Screenshots of every view are left in `target/console-screenshots`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::browser::Browser;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use topic_matcher::config::{Overrides, RawConfig};

const TOKEN: &str = "console-test-token";

/// The demo's classes (replies, then English, then the rest), with a
/// catch-up from 300 messages per partition.
fn classes() -> String {
    let classes = topic_matcher::demo::DEMO_CLASSES.replace("threshold = 1000", "threshold = 300");
    assert!(classes.contains("threshold = 300"), "{classes}");
    classes
}

struct Setup {
    cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    dir: std::path::PathBuf,
    config: topic_matcher::config::Config,
}

fn setup(name: &str) -> Setup {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(&format!("{name}-in"), 3, 1).unwrap();
    cluster.create_topic(&format!("{name}-out"), 3, 1).unwrap();
    let dir = std::env::temp_dir().join(format!("tm-console-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let brokers = cluster.bootstrap_servers();
    let config = RawConfig::from_toml(&classes())
        .unwrap()
        .validate(Overrides {
            brokers: Some(brokers),
            group: Some(name.into()),
            input: Some(format!("{name}-in")),
            output: Some(format!("kafka:{name}-out")),
            dead_letter: Some(format!("file:{}", dir.join("dead.jsonl").display())),
            state_dir: Some(dir.join("state")),
            searches: Some(common::repo("samples/searches.json")),
            admin_addr: Some(format!("127.0.0.1:{}", common::free_port())),
            admin_token: Some(TOKEN.into()),
        })
        .unwrap();
    Setup {
        cluster,
        dir,
        config,
    }
}

/// Produces the sample tweets (fresh ids) at about `rate` a second until
/// stopped.
struct Feeder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Feeder {
    fn start(brokers: &str, topic: &str, rate: u64) -> Feeder {
        let docs = sample_tweets();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .create()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, topic) = (stop.clone(), topic.to_string());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut i = 0u64;
            while !stop2.load(Relaxed) {
                let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                while i < due {
                    let mut d = docs[i as usize % docs.len()].clone();
                    d["id"] = format!("c{i}").into();
                    let (k, v) = (i.to_string(), d.to_string());
                    let _ = producer.send(BaseRecord::to(&topic).key(&k).payload(&v));
                    i += 1;
                }
                producer.poll(Duration::from_millis(5));
            }
            let _ = producer.flush(Duration::from_secs(10));
        });
        Feeder {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The bundled sample tweets.
fn sample_tweets() -> Vec<serde_json::Value> {
    std::fs::read_to_string(common::repo("samples/tweets.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `n` sample tweets with fresh ids, as message values.
fn burst(n: usize) -> Vec<Vec<u8>> {
    let docs = sample_tweets();
    (0..n)
        .map(|i| {
            let mut d = docs[i % docs.len()].clone();
            d["id"] = format!("burst{i}").into();
            d.to_string().into_bytes()
        })
        .collect()
}

fn wait_assigned(running: &topic_matcher::service::Running) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while running.metrics.assigned_partitions.load(Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no partitions within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Opens the console with the token typed in, on `view`.
fn open_console(b: &mut Browser, addr: std::net::SocketAddr, view: &str) {
    b.navigate(&format!("http://{addr}/#{view}"));
    b.eval(&format!(
        "(() => {{ const t = document.getElementById('token'); t.value = {TOKEN:?}; t.dispatchEvent(new Event('change')); return true; }})()"
    ));
}

fn api(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let (code, body) =
        topic_matcher::commands::admin_client::http(addr, method, path, Some(TOKEN), body).unwrap();
    (
        code,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn live_and_catch_up_views_follow_an_outage_and_the_report_lists_classes_in_order() {
    let s = setup("console-live");
    let brokers = s.cluster.bootstrap_servers();
    let feeder = Feeder::start(&brokers, "console-live-in", 1500);
    let running = topic_matcher::service::start(s.config.clone()).unwrap();
    let addr = running.admin_addr;
    wait_assigned(&running);
    let mut b = Browser::launch("live");

    // The page without a token asks for it and shows no data.
    b.navigate(&format!("http://{addr}/#live"));
    b.wait_for(
        "document.getElementById('notice').textContent.includes('token')",
        Duration::from_secs(10),
    );

    // Live: the totals grow and the rate is positive, refreshing on its own.
    open_console(&mut b, addr, "live");
    let num = "(id) => Number(document.getElementById(id).textContent.replace(/,/g, ''))";
    let first = b.wait_for(
        &format!("(({num})('live-docs-in') > 0) && ({num})('live-docs-in')"),
        Duration::from_secs(20),
    );
    let later = b.wait_for(
        &format!("(({num})('live-docs-in') > {first}) && ({num})('live-docs-in')"),
        Duration::from_secs(20),
    );
    assert!(later.as_f64() > first.as_f64());
    b.wait_for(
        &format!("({num})('live-docs-rate') > 0"),
        Duration::from_secs(20),
    );
    assert_eq!(
        b.eval("document.getElementById('live-output').textContent"),
        "ok"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#live-partitions tbody tr').length"),
        3
    );
    b.screenshot("live");

    // Cost: the searches that ran are ranked, with their topics.
    open_console(&mut b, addr, "cost");
    b.wait_for(
        "document.querySelectorAll('#cost-table tbody tr td code').length > 0",
        Duration::from_secs(20),
    );
    let top = b.eval("document.querySelector('#noise-table tbody tr td code').textContent");
    let (_, cost) = api(addr, "GET", "/searches/cost?top=1", &[]);
    assert_eq!(top, cost["by_matches"][0]["search"], "{cost}");
    b.screenshot("cost");

    // The matcher goes down while the stream flows (and a burst arrives);
    // back on the same address, the catch-up view shows one bar per
    // class while the backlog drains.
    running.stop().unwrap();
    common::produce(&brokers, "console-live-in", &burst(120_000));
    let running = topic_matcher::service::start(s.config.clone()).unwrap();
    open_console(&mut b, addr, "catchup");
    // The page refreshes every 2 s on its own; a drain of this size can
    // take about as long here, so the test also asks it to refresh each
    // time it looks.
    b.wait_for(
        "(refresh(), document.querySelectorAll('#catchup-bars .bar').length === 3 && document.querySelector('#catchup-bars .bar:not(.done)'))",
        Duration::from_secs(120),
    );
    let classes = b.eval(
        "[...document.querySelectorAll('#catchup-bars .bar')].map(e => e.dataset.class).join(',')",
    );
    assert_eq!(classes, "critical,high,low");
    assert!(b
        .eval("document.getElementById('catchup-headline').textContent")
        .as_str()
        .unwrap()
        .contains("of 3 classes done"));
    b.screenshot("catchup");
    b.viewport(390, 844, true);
    b.screenshot("catchup-phone");
    b.viewport(1280, 900, false);

    // The drain finishes: its report lists the classes in the order they
    // finished — the strict order of the configuration.
    let order = b.wait_for(
        "(document.querySelector('#reports-list td.order') || {}).textContent",
        Duration::from_secs(120),
    );
    let order = order.as_str().unwrap();
    let (c, h, l) = (
        order.find("critical").unwrap(),
        order.find("high").unwrap(),
        order.find("low").unwrap(),
    );
    assert!(c < h && h < l, "classes out of order: {order}");
    b.eval("document.querySelector('#reports-list a[data-report]').click()");
    b.wait_for(
        "(() => { const f = document.querySelector('#report-view iframe'); return f && f.srcdoc.includes('<svg'); })()",
        Duration::from_secs(10),
    );
    b.screenshot("catchup-report");

    drop(feeder);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&s.dir);
}

#[test]
fn playground_explains_a_pasted_post_and_a_draft_query_with_its_error() {
    let s = setup("console-play");
    let running = topic_matcher::service::start(s.config.clone()).unwrap();
    let addr = running.admin_addr;
    let mut b = Browser::launch("play");
    open_console(&mut b, addr, "playground");

    // A post pasted as text: the active searches that match, highlighted.
    b.eval(
        "(() => { const t = document.getElementById('pg-text'); t.value = 'Loving the new ggplot2 release #rstats'; t.dispatchEvent(new Event('input')); return true; })()",
    );
    b.wait_for(
        "(document.getElementById('pg-verdict') || {}).textContent?.startsWith('Matches')",
        Duration::from_secs(10),
    );
    let marks = b.eval("[...document.querySelectorAll('#pg-result .matched mark')].map(m => m.textContent).join('|')");
    assert!(marks.as_str().unwrap().contains("#rstats"), "{marks}");
    let searches = b.eval(
        "[...document.querySelectorAll('#pg-result .expl')].map(e => e.dataset.search).join(',')",
    );
    assert!(
        searches.as_str().unwrap().contains("rstats-tags"),
        "{searches}"
    );
    b.screenshot("playground");

    // A draft query that fails: why not, part by part.
    b.eval(
        "(() => { const q = document.getElementById('pg-query'); q.value = 'ggplot* AND python'; q.dispatchEvent(new Event('input')); return true; })()",
    );
    b.wait_for(
        "(document.getElementById('pg-verdict') || {}).textContent?.startsWith('No match')",
        Duration::from_secs(10),
    );
    let tree = b.eval("document.querySelector('#pg-result .tree').innerText");
    assert!(tree.as_str().unwrap().contains("python"), "{tree}");
    b.screenshot("playground-why-not");

    // A draft with a syntax error: the caret diagnostics.
    b.eval(
        "(() => { const q = document.getElementById('pg-query'); q.value = 'ggplot AND (python'; q.dispatchEvent(new Event('input')); return true; })()",
    );
    let err = b.wait_for(
        "(document.getElementById('pg-error') || {}).textContent",
        Duration::from_secs(10),
    );
    assert!(err.as_str().unwrap().contains('^'), "{err}");

    // A shared link opens the playground filled in.
    b.navigate(&format!(
        "http://{addr}/#playground?text=kfc%20is%20closed%20again&query=kfc%20NEAR%2F4%20closed"
    ));
    b.eval(&format!(
        "(() => {{ const t = document.getElementById('token'); t.value = {TOKEN:?}; t.dispatchEvent(new Event('change')); document.getElementById('pg-query').dispatchEvent(new Event('input')); return true; }})()"
    ));
    b.wait_for(
        "(document.getElementById('pg-verdict') || {}).textContent?.startsWith('Matches 1 search')",
        Duration::from_secs(10),
    );
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&s.dir);
}

#[test]
fn rollback_from_the_searches_view_changes_the_history() {
    let s = setup("console-rollback");
    let running = topic_matcher::service::start(s.config.clone()).unwrap();
    let addr = running.admin_addr;
    // Version 2: one topic more.
    let topic = br#"{"id": "console-added", "searches": [{"id": "console-added-1", "query": "console AND page"}]}"#;
    let (code, reply) = api(addr, "PUT", "/searches/topics/console-added", topic);
    assert!(code < 300, "{reply}");
    let (_, history) = api(addr, "GET", "/searches/history", &[]);
    assert_eq!(history["active"], 2, "{history}");

    let mut b = Browser::launch("rollback");
    open_console(&mut b, addr, "searches");
    b.wait_for(
        "document.querySelector('#history-table button[data-rollback=\"1\"]')",
        Duration::from_secs(10),
    );
    // The diff between the two versions names the added topic.
    b.eval("document.getElementById('diff-from').value = '1'; document.getElementById('diff-to').value = '2'; document.getElementById('diff-go').click(); true");
    let diff = b.wait_for(
        "(document.getElementById('diff-table') || {}).innerText",
        Duration::from_secs(10),
    );
    assert!(diff.as_str().unwrap().contains("console-added"), "{diff}");
    b.screenshot("searches-diff");

    // Roll back from the page (the confirmation accepted).
    b.eval("window.confirm = () => true; document.querySelector('#history-table button[data-rollback=\"1\"]').click(); true");
    let deadline = Instant::now() + Duration::from_secs(20);
    let history = loop {
        let (_, h) = api(addr, "GET", "/searches/history", &[]);
        if h["active"] != 2 {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "the rollback never took effect: {h}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (_, doc) = api(addr, "GET", "/searches", &[]);
    assert!(
        !doc.to_string().contains("console-added"),
        "rolled back, but the added topic is still active: {history}"
    );
    b.wait_for(
        &format!(
            "document.querySelector('#history-table tr[data-version=\"{}\"] b.ok')",
            history["active"]
        ),
        Duration::from_secs(10),
    );
    b.screenshot("searches-rolled-back");

    // The page's data follows the read rules: nothing without the token;
    // the page itself is open (it holds no data).
    let anonymous = |method: &str, path: &str| {
        topic_matcher::commands::admin_client::http(addr, method, path, None, &[])
            .unwrap()
            .0
    };
    assert_eq!(anonymous("POST", "/searches/rollback?to=2"), 401);
    for path in [
        "/searches/cost",
        "/searches/diff?from=1",
        "/reports",
        "/reports/1",
    ] {
        assert_eq!(anonymous("GET", path), 401, "{path}");
    }
    assert_eq!(anonymous("GET", "/"), 200);
    assert_eq!(api(addr, "GET", "/reports/x", &[]).0, 400);
    assert_eq!(api(addr, "GET", "/reports/99", &[]).0, 404);
    assert_eq!(api(addr, "GET", "/searches/diff?from=77", &[]).0, 404);
    running.stop().unwrap();
    let _ = std::fs::remove_dir_all(&s.dir);
}
