//! A production-shaped connection, for real: the broker (tansu) requires
//! SASL/SCRAM-SHA-512, and is reached only through a TLS terminator
//! (Debian's `stunnel4`; the test broker has no TLS listener of its own)
//! whose certificate is signed by a certificate authority this test makes
//! with `openssl`. The broker advertises the TLS port, so every client the
//! service creates must speak SASL_SSL to get anywhere. Input is produced
//! zstd-compressed and the output producer compresses with zstd.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;

const USER: &str = "matcher";
const PASSWORD: &str = "pw-8c1f-never-shown";

/// A certificate authority and a server certificate for 127.0.0.1.
fn make_certificates(dir: &Path) -> PathBuf {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (install-deps installs it)");
        assert_ok(&out, &format!("openssl {args:?}"));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=topic-matcher test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    dir.join("ca.pem")
}

/// stunnel accepting TLS on `accept` and forwarding to `connect`; killed
/// when dropped (and by its watchdog when the test process is gone).
struct Terminator {
    _process: Watched,
    dir: PathBuf,
}

impl Terminator {
    fn start(dir: &Path, accept: u16, connect: u16) -> Terminator {
        let conf = format!(
            "foreground = yes\npid =\noutput = {log}\n[kafka]\naccept = 127.0.0.1:{accept}\nconnect = 127.0.0.1:{connect}\ncert = {cert}\nkey = {key}\n",
            log = dir.join("stunnel.log").display(),
            cert = dir.join("server.pem").display(),
            key = dir.join("server.key").display(),
        );
        std::fs::write(dir.join("stunnel.conf"), conf).unwrap();
        let bin = if Command::new("stunnel4").arg("-version").output().is_ok() {
            "stunnel4"
        } else {
            "stunnel"
        };
        let process = Watched::spawn(dir, "stunnel-run", &format!("{bin} stunnel.conf"));
        let up = poll_until(
            Duration::from_secs(20),
            Duration::from_millis(100),
            || std::net::TcpStream::connect(("127.0.0.1", accept)).is_ok(),
            |up| *up,
        );
        assert!(up, "stunnel did not listen on {accept}");
        Terminator {
            _process: process,
            dir: dir.to_path_buf(),
        }
    }

    /// TLS connections it accepted so far.
    fn accepted(&self) -> usize {
        std::fs::read_to_string(self.dir.join("stunnel.log"))
            .unwrap_or_default()
            .matches("accepted connection")
            .count()
    }
}

/// The client properties of this cluster, as the test's own clients use
/// them.
fn secure(cfg: &mut ClientConfig, brokers: &str, ca: &Path) {
    cfg.set("bootstrap.servers", brokers)
        .set("security.protocol", "SASL_SSL")
        .set("ssl.ca.location", ca.display().to_string())
        .set("sasl.mechanisms", "SCRAM-SHA-512")
        .set("sasl.username", USER)
        .set("sasl.password", PASSWORD);
}

fn tansu(broker: &Broker, args: &[&str]) {
    let bin = std::env::var("TANSU").unwrap_or_else(|_| "tansu".into());
    let out = Command::new(bin)
        .args(args)
        .args(["--broker", &format!("tcp://{}", broker.addr())])
        .output()
        .expect("tansu");
    assert_ok(&out, &format!("tansu {args:?}"));
}

#[test]
fn the_service_runs_over_tls_and_sasl_scram_with_zstd_in_and_out() {
    let dir = temp_dir("security");
    let ca = make_certificates(&dir);
    let tls_port = free_port();
    // The user and topics are made while the broker is open, then it is
    // restarted requiring authentication (its CLI cannot authenticate).
    let mut broker = Broker::start_advertising("security", tls_port);
    tansu(
        &broker,
        &["user", "create", "--mechanism", "scram512", USER, PASSWORD],
    );
    broker.create_topic("sec.in", 3);
    broker.create_topic("sec.out", 3);
    broker.create_topic("sec.dead", 1);
    broker.args = vec!["--authentication".into()];
    broker.stop();
    broker.restart();
    let tls = Terminator::start(&dir, tls_port, broker.port);
    let brokers = format!("127.0.0.1:{tls_port}");

    // The plain port now refuses an unauthenticated client: the test below
    // cannot pass by going around the security.
    let plain: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("group.id", "sec-plain")
        .create()
        .unwrap();
    assert!(
        plain
            .fetch_metadata(Some("sec.in"), Duration::from_secs(3))
            .is_err(),
        "the broker answered an unauthenticated client"
    );
    drop(plain);

    // Input, zstd-compressed, through TLS and SASL.
    let (docs, want) = sample_docs(300, "sec");
    let mut pc = ClientConfig::new();
    secure(&mut pc, &brokers, &ca);
    pc.set("compression.type", "zstd").set("linger.ms", "20");
    let p: BaseProducer = pc.create().unwrap();
    for (i, d) in docs.iter().enumerate() {
        let key = i.to_string();
        topic_matcher::produce::send_retrying(&p, BaseRecord::to("sec.in").key(&key).payload(d))
            .expect("produce");
    }
    p.flush(Duration::from_secs(60)).expect("flush input");

    // The service: connection properties once, in [kafka.client], the
    // password from a file.
    std::fs::write(dir.join("password"), format!("{PASSWORD}\n")).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka.client]\n\"security.protocol\" = \"SASL_SSL\"\n\"ssl.ca.location\" = \"{}\"\n\"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"{USER}\"\n\
             [kafka.client_secret_files]\n\"sasl.password\" = \"{}\"\n\
             [kafka.producer]\n\"compression.type\" = \"zstd\"\n",
            ca.display(),
            dir.join("password").display()
        ),
    )
    .unwrap();
    let opts = ServiceOpts {
        brokers: &brokers,
        group: "sec",
        input: "sec.in",
        output: "kafka:sec.out".into(),
        dead_letter: "kafka:sec.dead".into(),
        state: dir.join("state"),
        log: dir.join("service.log"),
    };
    let svc = Service::start_with(
        &opts,
        &repo("samples/searches.json"),
        &["--config", config.to_str().unwrap()],
    );

    // Every expected record arrives, read back through TLS and SASL.
    let mut cc = ClientConfig::new();
    secure(&mut cc, &brokers, &ca);
    cc.set("group.id", "sec-reader")
        .set("enable.auto.commit", "false");
    let reader: BaseConsumer = cc.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for part in 0..3 {
        tpl.add_partition_offset("sec.out", part, Offset::Beginning)
            .unwrap();
    }
    reader.assign(&tpl).unwrap();
    let mut records = Vec::new();
    let total: usize = want.values().sum();
    let got = poll_until(
        Duration::from_secs(120),
        Duration::ZERO,
        || {
            if let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) {
                records.push((Vec::new(), m.payload().unwrap_or_default().to_vec()));
            }
            records.len()
        },
        |n| *n >= total,
    );
    assert_eq!(got, total, "records read back over TLS");
    assert_eq!(
        match_ids(&records),
        want,
        "the records are the expected ones"
    );

    // The lag monitor reached the broker too (it would read unknown, not a
    // number, if it could not connect), and the group caught up.
    let lag = poll_until(
        Duration::from_secs(60),
        Duration::from_millis(500),
        || metric(&svc, "consumer_lag_messages"),
        |v| *v == Some(0.0),
    );
    assert_eq!(lag, Some(0.0), "lag through TLS");
    assert!(
        tls.accepted() >= 3,
        "clients went through the TLS terminator"
    );

    // The output batches were stored zstd-compressed (the record batch's
    // compression attribute, 4 = zstd, as the broker keeps it).
    let codecs = stored_codecs(&broker, "sec.out");
    assert!(
        !codecs.is_empty() && codecs.iter().all(|c| *c == 4),
        "compression codecs of the stored output batches: {codecs:?}"
    );
    let codecs = stored_codecs(&broker, "sec.in");
    assert!(
        !codecs.is_empty() && codecs.iter().all(|c| *c == 4),
        "compression codecs of the stored input batches: {codecs:?}"
    );

    // The password is never shown.
    let status = svc.get("/status").unwrap_or_default();
    assert!(status.contains("sec.in"), "{status}");
    assert!(!status.contains(PASSWORD), "/status shows the password");
    drop(svc);
    let log = std::fs::read_to_string(dir.join("service.log")).unwrap();
    assert!(log.contains("SASL_SSL"), "the start log names the protocol");
    assert!(!log.contains(PASSWORD), "the log shows the password");

    // `bench --brokers` takes the same client properties: its topics, its
    // producer, its bare consumer and its service all go through TLS and
    // SASL (the password from the environment this time).
    std::fs::write(
        &config,
        format!(
            "[kafka.client]\n\"security.protocol\" = \"SASL_SSL\"\n\"ssl.ca.location\" = \"{}\"\n\"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"{USER}\"\n\
             [kafka.client_secret_env]\n\"sasl.password\" = \"TM_TEST_KAFKA_PASSWORD\"\n",
            ca.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_topic-matcher"))
        .args([
            "bench",
            "--searches",
            "200",
            "--docs",
            "2000",
            "--brokers",
            &brokers,
        ])
        .arg("--kafka-config")
        .arg(&config)
        .env("TM_TEST_KAFKA_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_ok(&out, "bench through TLS and SASL");
    assert!(
        text.contains("bare consumer: 2000 messages")
            && text.contains("2000 messages in")
            && text.contains("ratio service / bare consumer"),
        "{text}"
    );
}

/// The distinct compression codecs of `topic`'s stored records, read from
/// the broker's sqlite storage (the low 3 bits of the batch attributes).
fn stored_codecs(broker: &Broker, topic: &str) -> Vec<i64> {
    let script = format!(
        "import sqlite3\nc = sqlite3.connect('file:broker.db?mode=ro', uri=True)\n\
         rows = c.execute(\"select distinct r.attributes & 7 from record r join topition p on r.topition = p.id join topic t on p.topic = t.id where t.name = ?\", ('{topic}',))\n\
         print(' '.join(str(r[0]) for r in rows))\n"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .current_dir(&broker.dir)
        .output()
        .expect("python3");
    assert_ok(&out, "reading the broker's storage");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect()
}
