//! Harness for the integration tests: a real Kafka-compatible broker
//! (tansu, sqlite storage) on a free loopback port, the real service binary,
//! and helpers to produce input and read output.
//!
//! The broker is started once per test binary and stopped when the binary
//! exits (a watchdog kills it when the test process is gone), because a
//! consumer-group join against it takes up to ~20 s.

#![allow(dead_code)]

pub mod browser;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;

pub fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Asserts that a finished command (`what`) succeeded, showing what it
/// printed when it did not.
pub fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tm-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU") {
        return p.into();
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("tansu");
        if p.exists() {
            return p;
        }
    }
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo/bin/tansu");
    assert!(
        home.exists(),
        "the tansu broker is not installed: run ./scripts/test.sh, which installs it"
    );
    home
}

/// A tansu broker process.
pub struct Broker {
    pub port: u16,
    pub dir: PathBuf,
    /// The port advertised to clients (default: `port`); a TLS terminator
    /// in front of the broker listens there.
    pub advertised: Option<u16>,
    /// Extra arguments of `tansu broker` (e.g. `--authentication`).
    pub args: Vec<String>,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker on a free port with sqlite storage in a new directory.
    pub fn start(name: &str) -> Broker {
        let mut b = Broker {
            port: free_port(),
            dir: temp_dir(&format!("broker-{name}")),
            advertised: None,
            args: Vec::new(),
            child: None,
        };
        b.restart();
        b
    }

    /// Starts a broker that advertises `advertised` (where a TLS terminator
    /// will listen) instead of its own port.
    pub fn start_advertising(name: &str, advertised: u16) -> Broker {
        let mut b = Broker {
            port: free_port(),
            dir: temp_dir(&format!("broker-{name}")),
            advertised: Some(advertised),
            args: Vec::new(),
            child: None,
        };
        b.restart();
        b
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// (Re)starts the broker process on the same port and storage.
    pub fn restart(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised.unwrap_or(self.port));
        let args = self.args.join(" ");
        // The watchdog shell kills the broker when the test process is gone.
        let script = format!(
            "'{}' broker --listener-url {url} --advertised-listener-url {advertised} --storage-engine sqlite://broker.db {args} \
             >>broker.log 2>&1 & b=$!; echo $b >broker.pid; while kill -0 {} 2>/dev/null && kill -0 $b 2>/dev/null; do sleep 0.5; done; kill -9 $b 2>/dev/null",
            tansu_bin().display(),
            std::process::id()
        );
        let child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            // The watchdog outlives the test process by up to 0.5 s: it must
            // not hold the test's output open (the runner calls that a leak).
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(self.addr()).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {}",
                self.addr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the broker process (storage stays).
    pub fn stop(&mut self) {
        // The watchdog wrote the broker's own pid (the broker is its
        // background job, not our child).
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("broker.pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            let _ = std::fs::remove_file(self.dir.join("broker.pid"));
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(self.addr()).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(tansu_bin())
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://{}", self.addr()),
                "--partitions",
            ])
            .arg(partitions.to_string())
            .arg(name)
            .output()
            .unwrap();
        assert_ok(&out, &format!("topic create {name}"));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A helper process of a test (a TLS terminator, Prometheus) started by a
/// watchdog shell that kills it when the test process is gone; killed when
/// dropped.
pub struct Watched {
    child: Child,
    pid_file: PathBuf,
}

impl Watched {
    /// Runs the shell command line `command` in `dir`, its output in
    /// `NAME.log`, its pid in `NAME.pid`.
    pub fn spawn(dir: &Path, name: &str, command: &str) -> Watched {
        let script = format!(
            "{command} >{name}.log 2>&1 & p=$!; echo $p >{name}.pid; while kill -0 {} 2>/dev/null && kill -0 $p 2>/dev/null; do sleep 0.5; done; kill -9 $p 2>/dev/null",
            std::process::id()
        );
        let child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Watched {
            child,
            pid_file: dir.join(format!("{name}.pid")),
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The broker shared by the tests of one binary.
pub fn shared_broker() -> &'static Broker {
    static B: OnceLock<Broker> = OnceLock::new();
    B.get_or_init(|| Broker::start("shared"))
}

pub fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

/// Produces `docs` (raw values) to `topic`, keyed by index, and waits.
pub fn produce(brokers: &str, topic: &str, docs: &[Vec<u8>]) {
    let p = producer(brokers);
    for (i, d) in docs.iter().enumerate() {
        let key = i.to_string();
        topic_matcher::produce::send_retrying(&p, BaseRecord::to(topic).key(&key).payload(d))
            .expect("produce");
    }
    p.flush(Duration::from_secs(30)).expect("flush input");
}

/// A consumer outside any group assigned to partitions `0..partitions` of
/// `topic` from their start.
pub fn reader(brokers: &str, topic: &str, partitions: i32) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", free_port()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    c
}

/// Calls `probe` every `every` until `done` holds for its value or
/// `timeout` passes; returns the last value (the caller asserts on it, so a
/// failure shows what was seen).
pub fn poll_until<T>(
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let v = probe();
        if done(&v) || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(every);
    }
}

/// Reads every message of `topic` (all partitions, from the start) until
/// `want(count)` holds or `timeout` passes; returns (key, value) pairs.
pub fn read_all(
    brokers: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
    want: impl Fn(usize) -> bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let c = reader(brokers, topic, partitions);
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !want(out.len()) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

/// Documents for the tests: real sample tweets with unique ids, and the
/// match ids that the offline matcher expects for them.
pub fn sample_docs(n: usize, tag: &str) -> (Vec<Vec<u8>>, BTreeMap<String, usize>) {
    let text = std::fs::read_to_string(repo("samples/tweets.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let docs: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut d = lines[i % lines.len()].clone();
            d["id"] = serde_json::Value::String(format!("{tag}-{i}"));
            d.to_string().into_bytes()
        })
        .collect();
    (docs.clone(), expected_match_ids(&docs))
}

/// Match ids the offline matcher produces for `docs` with the bundled
/// searches (value: how many).
pub fn expected_match_ids(docs: &[Vec<u8>]) -> BTreeMap<String, usize> {
    use topic_matcher::document::Document;
    use topic_matcher::engine::Matcher;
    use topic_matcher::searches::Catalog;
    let catalog = Catalog::from_json(
        &std::fs::read(repo("samples/searches.json")).unwrap(),
        &Default::default(),
    )
    .unwrap();
    let m = Matcher::new(&catalog).unwrap();
    let mut s = m.scratch();
    let mut out = BTreeMap::new();
    for d in docs {
        if let Ok(doc) = Document::parse(d, 1 << 20) {
            for t in m.match_document(&doc, &mut s) {
                *out.entry(format!("{}/{}", doc.id, m.topic_id(t.topic)))
                    .or_insert(0) += 1;
            }
        }
    }
    out
}

/// The service binary, started with flags only.
pub struct Service {
    pub child: Child,
    pub admin: u16,
    pub state: PathBuf,
    /// The `--admin-token` it was started with: reads need it too.
    pub token: Option<String>,
}

pub struct ServiceOpts<'a> {
    pub brokers: &'a str,
    pub group: &'a str,
    pub input: &'a str,
    pub output: String,
    pub dead_letter: String,
    pub state: PathBuf,
    pub log: PathBuf,
}

impl Service {
    pub fn start(o: &ServiceOpts<'_>) -> Service {
        Service::start_with(o, &repo("samples/searches.json"), &[])
    }

    /// Starts with this searches file and extra arguments of `run`.
    pub fn start_with(o: &ServiceOpts<'_>, searches: &Path, extra: &[&str]) -> Service {
        Service::start_with_env(o, searches, extra, &[])
    }

    /// [`Service::start_with`] with extra environment variables for the
    /// service alone (a fault to inject): never the test process's own
    /// environment, which the other tests of the process share.
    pub fn start_with_env(
        o: &ServiceOpts<'_>,
        searches: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Service {
        let admin = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&o.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_topic-matcher"))
            .args([
                "run",
                "--brokers",
                o.brokers,
                "--group",
                o.group,
                "--input",
                o.input,
            ])
            .args(["--output", &o.output, "--dead-letter", &o.dead_letter])
            .arg("--state-dir")
            .arg(&o.state)
            .arg("--searches")
            .arg(searches)
            .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
            .args(extra)
            .envs(env.iter().copied())
            // TM_TEST_LOG widens the services' logs, e.g.
            // "info,librdkafka=debug" with `debug = "cgrp"` in their config.
            .env(
                "RUST_LOG",
                std::env::var("TM_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let token = extra
            .iter()
            .position(|a| *a == "--admin-token")
            .and_then(|i| extra.get(i + 1))
            .map(|t| t.to_string());
        Service {
            child,
            admin,
            state: o.state.clone(),
            token,
        }
    }

    /// GET on the admin API; the body.
    pub fn get(&self, path: &str) -> Option<String> {
        topic_matcher::commands::admin_client::http(
            ([127, 0, 0, 1], self.admin).into(),
            "GET",
            path,
            self.token.as_deref(),
            &[],
        )
        .ok()
        .map(|(_, body)| body)
    }

    /// Any request on the admin API: status code and body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> (u16, String) {
        topic_matcher::commands::admin_client::http(
            ([127, 0, 0, 1], self.admin).into(),
            method,
            path,
            token,
            body,
        )
        .unwrap()
    }

    /// `/status` as JSON.
    pub fn status(&self) -> serde_json::Value {
        let (code, body) = self.request("GET", "/status", self.token.as_deref(), &[]);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn try_status(&self) -> Option<serde_json::Value> {
        self.get("/status")
            .and_then(|b| serde_json::from_str(&b).ok())
    }

    /// Waits until `/status` satisfies `cond`; panics with the last status.
    pub fn wait_status(&self, timeout: Duration, cond: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.try_status().unwrap_or_default();
            if cond(&s) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "condition not reached within {timeout:?}; status: {s:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = topic_matcher::commands::admin_client::http(
                ([127, 0, 0, 1], self.admin).into(),
                "GET",
                "/readyz",
                None,
                &[],
            );
            if answer.is_ok_and(|(code, _)| code == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "service not ready within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            if Instant::now() > deadline {
                self.kill9();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Match ids (with multiplicity) in output records.
pub fn match_ids(records: &[(Vec<u8>, Vec<u8>)]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (_, v) in records {
        let r: serde_json::Value = serde_json::from_slice(v).unwrap();
        *out.entry(r["match_id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    out
}

/// Match ids (with multiplicity) in a JSONL output file, complete lines
/// only: the service's writer may be in the middle of a line when the
/// file is read.
pub fn file_match_ids(path: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let records: Vec<(Vec<u8>, Vec<u8>)> = text
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .map(|l| (Vec::new(), l.as_bytes().to_vec()))
        .collect();
    match_ids(&records)
}

/// One unlabelled metric of a running service (`topic_matcher_NAME`), if
/// present.
pub fn metric(svc: &Service, name: &str) -> Option<f64> {
    let text = svc.get("/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("topic_matcher_{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// A tmpfs of a few MiB for the disk-full tests, unmounted when dropped.
pub struct SmallFs(pub PathBuf);

impl SmallFs {
    /// Fills it up; returns the filler file.
    pub fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", filler.display()))
            .output();
        filler
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mounts a tmpfs of `mib` MiB at `dir`; `None` when not allowed (not
/// root): the caller skips with a message.
pub fn small_fs(dir: &Path, mib: u32) -> Option<SmallFs> {
    std::fs::create_dir_all(dir).ok()?;
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| SmallFs(dir.to_path_buf()))
}
