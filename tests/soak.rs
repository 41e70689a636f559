//! The chaos soak (docs/operations.md §5.8): the service against a real
//! broker while, round after round, it is killed with SIGKILL during live
//! processing and during a drain, the broker restarts, the output's and
//! the state store's disks fill up, the searches change and floods of bad
//! messages arrive. At the end, every match the offline matcher finds in
//! the produced documents must be in the output (lost = 0); duplicates are
//! only re-emitted records (same `match_id`) and are counted; the
//! service's peak memory is recorded per round. One summary table is
//! printed.
//!
//! CI runs the short form (one round). `scripts/soak.sh --long` runs the
//! long one (`TM_SOAK_ROUNDS`, default 20 there).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

/// Peak resident memory of a process, KiB.
fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

struct Soak {
    broker: Broker,
    dir: PathBuf,
    out: PathBuf,
    state: PathBuf,
    searches: PathBuf,
    config: PathBuf,
    svc: Option<Service>,
    produced: Vec<Vec<u8>>,
    batch: usize,
    peaks: Vec<(String, u64)>,
    counts: BTreeMap<&'static str, usize>,
}

impl Soak {
    fn start(&mut self) {
        let brokers = self.broker.addr();
        let svc = Service::start_with(
            &ServiceOpts {
                brokers: &brokers,
                group: "soak",
                input: "soak.in",
                output: format!("file:{}", self.out.display()),
                dead_letter: format!("file:{}", self.dir.join("dead.jsonl").display()),
                state: self.state.clone(),
                log: self.dir.join("service.log"),
            },
            &self.searches,
            &[
                "--admin-token",
                "tok",
                "--config",
                self.config.to_str().unwrap(),
            ],
        );
        svc.wait_ready(Duration::from_secs(120));
        self.svc = Some(svc);
    }

    fn svc(&self) -> &Service {
        self.svc.as_ref().expect("running")
    }

    fn note_peak(&mut self, what: &str) {
        let pid = self.svc().child.id();
        self.peaks.push((what.to_string(), peak_kib(pid)));
    }

    /// Produces `n` new documents (unique ids) and `bad` bad messages.
    fn produce(&mut self, n: usize, bad: usize) {
        self.batch += 1;
        let (docs, _) = sample_docs(n, &format!("s{}", self.batch));
        let mut all = docs.clone();
        all.extend((0..bad).map(|i| format!("not json {i}").into_bytes()));
        produce(&self.broker.addr(), "soak.in", &all);
        self.produced.extend(docs);
    }

    fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }

    fn kill9_live(&mut self) {
        let brokers = self.broker.addr();
        let (docs, _) = sample_docs(3000, &format!("k{}", self.batch));
        self.batch += 1;
        let feeder = std::thread::spawn(move || produce(&brokers, "soak.in", &docs));
        std::thread::sleep(Duration::from_millis(700));
        self.note_peak("before kill -9 (live)");
        self.svc.as_mut().unwrap().kill9();
        let (docs, _) = sample_docs(3000, &format!("k{}", self.batch - 1));
        self.produced.extend(docs);
        feeder.join().unwrap();
        self.start();
        self.count("kill -9 live");
    }

    fn kill9_drain(&mut self) {
        self.svc.as_mut().unwrap().terminate();
        self.produce(4000, 0); // above the catch-up threshold: a drain job
        self.start();
        std::thread::sleep(Duration::from_millis(500));
        self.note_peak("before kill -9 (drain)");
        self.svc.as_mut().unwrap().kill9();
        self.start();
        self.count("kill -9 during a drain");
    }

    fn broker_restart(&mut self) {
        self.broker.stop();
        std::thread::sleep(Duration::from_secs(2));
        self.broker.restart();
        self.produce(500, 0);
        self.count("broker restart");
    }

    fn output_outage(&mut self, fs: &SmallFs) {
        let filler = fs.fill();
        self.produce(1000, 0);
        let down = poll_until(
            Duration::from_secs(30),
            Duration::from_millis(200),
            || {
                self.svc()
                    .get("/metrics")
                    .is_some_and(|m| m.lines().any(|l| l == "topic_matcher_output_down 1"))
            },
            |d| *d,
        );
        std::fs::remove_file(filler).unwrap();
        assert!(down, "the full output disk was not reported");
        let recovered = poll_until(
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                self.svc()
                    .get("/metrics")
                    .is_some_and(|m| m.lines().any(|l| l == "topic_matcher_output_down 0"))
            },
            |r| *r,
        );
        assert!(recovered, "the output did not recover");
        self.count("output outage (disk full)");
    }

    fn state_disk_full(&mut self, fs: &SmallFs) {
        let filler = fs.fill();
        // A checkpoint adds tens of bytes to the write-ahead log, whose last
        // page may still have up to 4 KiB free, and on a loaded machine
        // several trickles share one checkpoint: documents trickle in until
        // a write fails (48 trickles here, more than 100 once in CI), for
        // at most two minutes.
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.svc().request("GET", "/readyz", None, &[]).0 != 503 && Instant::now() < deadline
        {
            self.produce(10, 0);
            std::thread::sleep(Duration::from_millis(150));
        }
        let full = self.svc().request("GET", "/readyz", None, &[]).0 == 503;
        std::fs::remove_file(filler).unwrap();
        assert!(full, "the full state disk was not reported");
        let (code, _) = poll_until(
            Duration::from_secs(60),
            Duration::from_millis(200),
            || self.svc().request("GET", "/readyz", None, &[]),
            |(code, _)| *code == 200,
        );
        assert_eq!(code, 200, "not ready again after the state disk was freed");
        self.count("state disk full");
    }

    fn searches_change(&mut self) {
        let original = std::fs::read_to_string(&self.searches).unwrap();
        let mut doc: serde_json::Value = serde_json::from_str(&original).unwrap();
        doc["topics"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "id": "soak-extra", "searches": [{"id": "soak-extra-1", "query": "zzsoakneverzz"}]
            }));
        let before = self.svc().status()["searches_version"].as_u64().unwrap();
        std::fs::write(&self.searches, doc.to_string()).unwrap();
        self.svc().wait_status(Duration::from_secs(30), |s| {
            s["searches_version"].as_u64() > Some(before)
        });
        self.produce(300, 0);
        std::fs::write(&self.searches, original).unwrap();
        // The original searches are a stored version: it becomes active again.
        self.svc().wait_status(Duration::from_secs(30), |s| {
            s["searches_version"].as_u64() == Some(before)
        });
        self.count("searches change");
        self.count("searches change");
    }

    fn bad_flood(&mut self) {
        self.produce(200, 1000);
        self.count("bad-message flood (1,000)");
    }
}

#[test]
fn chaos_soak_loses_nothing() {
    let rounds: usize = std::env::var("TM_SOAK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let dir = temp_dir("soak");
    let (Some(out_fs), Some(state_fs)) = (
        small_fs(&dir.join("outfs"), 256),
        small_fs(&dir.join("statefs"), 32),
    ) else {
        eprintln!("skipped: the soak fills small filesystems, which needs root");
        return;
    };
    let searches = dir.join("searches.json");
    std::fs::copy(repo("samples/searches.json"), &searches).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[catch_up]\nthreshold = 1000\n[searches]\ndebounce_ms = 100\n[limits]\nbatch_max_wait_ms = 100\n",
    )
    .unwrap();
    let broker = Broker::start("soak");
    broker.create_topic("soak.in", 3);
    let mut soak = Soak {
        broker,
        out: out_fs.0.join("out.jsonl"),
        state: state_fs.0.join("state"),
        dir: dir.clone(),
        searches,
        config,
        svc: None,
        produced: Vec::new(),
        batch: 0,
        peaks: Vec::new(),
        counts: BTreeMap::new(),
    };
    let t = Instant::now();
    soak.start();
    soak.produce(1000, 0);
    std::thread::sleep(Duration::from_secs(2));
    soak.note_peak("steady state");
    for _ in 0..rounds {
        soak.kill9_live();
        soak.bad_flood();
        soak.broker_restart();
        soak.output_outage(&out_fs);
        soak.state_disk_full(&state_fs);
        soak.searches_change();
        soak.kill9_drain();
    }
    // Everything the offline matcher finds must come out.
    let want = expected_match_ids(&soak.produced);
    let got = poll_until(
        Duration::from_secs(300),
        Duration::from_secs(1),
        || file_match_ids(&soak.out),
        |got| want.keys().all(|k| got.contains_key(k)),
    );
    soak.note_peak("end");
    let lost: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let records: usize = got.values().sum();
    let duplicates = records - got.len();
    let unexpected = got.keys().filter(|k| !want.contains_key(*k)).count();
    let steady = soak.peaks[0].1.max(1);
    let peak = soak.peaks.iter().map(|p| p.1).max().unwrap_or(0);
    let mut table = String::new();
    table.push_str("| what | value |\n|---|---|\n");
    table.push_str(&format!("| rounds | {rounds} |\n"));
    for (what, n) in &soak.counts {
        table.push_str(&format!("| {what} | {n} |\n"));
    }
    table.push_str(&format!(
        "| documents produced | {} |\n",
        soak.produced.len()
    ));
    table.push_str(&format!("| expected matches | {} |\n", want.len()));
    table.push_str(&format!("| lost | {} |\n", lost.len()));
    table.push_str(&format!("| re-emitted (same match_id) | {duplicates} |\n"));
    table.push_str(&format!(
        "| records not in the offline match | {unexpected} |\n"
    ));
    table.push_str(&format!(
        "| memory: steady / peak (MiB) | {} / {} |\n",
        steady / 1024,
        peak / 1024
    ));
    table.push_str(&format!(
        "| wall time | {:.0} s |\n",
        t.elapsed().as_secs_f64()
    ));
    eprintln!("\nchaos soak summary\n{table}");
    assert!(
        lost.is_empty(),
        "lost {} matches, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(unexpected, 0, "records no offline match produces");
    assert!(
        peak <= 2 * steady + 64 * 1024,
        "memory peak {peak} KiB vs steady {steady} KiB"
    );
    let _ = soak.svc.as_mut().unwrap().terminate();
}
