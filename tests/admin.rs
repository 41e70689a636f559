//! The admin surface under hostile or careless clients, against a running
//! service (real broker): who may read what, the token checked before a
//! body is read, and the server's bounds (body size, connections, slow
//! headers).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "s3cret";

fn start(name: &str, config: &str) -> Service {
    let b = shared_broker();
    let brokers = b.addr();
    b.create_topic(&format!("{name}.in"), 1);
    let dir = temp_dir(name);
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, config).unwrap();
    let input = format!("{name}.in");
    let svc = Service::start_with(
        &ServiceOpts {
            brokers: &brokers,
            group: name,
            input: &input,
            output: format!("file:{}", dir.join("out.jsonl").display()),
            dead_letter: format!("file:{}", dir.join("dead.jsonl").display()),
            state: dir.join("state"),
            log: dir.join("service.log"),
        },
        &repo("samples/searches.json"),
        &["--admin-token", TOKEN, "--config", cfg.to_str().unwrap()],
    );
    svc.wait_ready(Duration::from_secs(60));
    svc
}

fn connect(svc: &Service) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", svc.admin)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Reads what the server sends until it closes or the timeout passes.
fn read_reply(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn customer_data_needs_the_token_probes_and_scrapes_do_not() {
    let svc = start("adm-read", "");
    for path in ["/status", "/searches", "/searches/history", "/replays"] {
        let (code, _) = svc.request("GET", path, None, &[]);
        assert_eq!(code, 401, "{path} without the token");
        let (code, _) = svc.request("GET", path, Some("wrong"), &[]);
        assert_eq!(code, 401, "{path} with a wrong token");
        let (code, body) = svc.request("GET", path, Some(TOKEN), &[]);
        assert_eq!(code, 200, "{path}: {body}");
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (code, _) = svc.request("GET", path, None, &[]);
        assert_eq!(code, 200, "{path} stays open");
    }
}

#[test]
fn the_token_is_checked_before_the_body_is_read_and_bodies_are_bounded() {
    let svc = start("adm-body", "[admin]\nmax_body_bytes = 100000\n");
    // Announces a 1 GB body and sends none of it: refused at once.
    let mut s = connect(&svc);
    let t = Instant::now();
    write!(
        s,
        "PUT /searches HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n"
    )
    .unwrap();
    let reply = read_reply(&mut s);
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "answered without waiting for the body"
    );
    // With the token, a body over the limit is refused (413), and nothing
    // changes.
    let big = vec![b' '; 200_000];
    let (code, _) = svc.request("PUT", "/searches", Some(TOKEN), &big);
    assert_eq!(code, 413);
    assert_eq!(svc.status()["searches_version"], 1);
}

#[test]
fn connections_are_limited_and_slow_headers_are_cut_off() {
    let svc = start("adm-conn", "[admin]\nmax_connections = 3\n");
    // Three idle connections take every slot...
    let idle: Vec<TcpStream> = (0..3).map(|_| connect(&svc)).collect();
    std::thread::sleep(Duration::from_millis(300));
    // ...so the next one is closed without an answer.
    let mut extra = connect(&svc);
    let _ = write!(extra, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let reply = read_reply(&mut extra);
    assert!(!reply.contains("200 OK"), "served past the limit: {reply}");
    // A client that never finishes its headers is cut off (10 s), which
    // frees its slot.
    let t = Instant::now();
    let mut slow = idle.into_iter().next().unwrap();
    let _ = write!(slow, "GET /status HTTP/1.1\r\nHost:");
    let reply = read_reply(&mut slow);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "a slow client was held {:?}",
        t.elapsed()
    );
    assert!(!reply.contains("200 OK"), "{reply}");
    // Once the idle ones are gone, the server answers again.
    let (code, _) = poll_until(
        Duration::from_secs(15),
        Duration::from_millis(200),
        || svc.request("GET", "/healthz", None, &[]),
        |(code, _)| *code == 200,
    );
    assert_eq!(code, 200);
}

/// `status --json` (docs/operations.md §4) against the live service, with
/// its token: one JSON object whose `source` is `live` and whose `status`
/// is the service's `/status`; without the token it says the token is
/// missing (exit 1) instead of falling back to the state directory.
#[test]
fn status_json_reads_the_live_service_with_the_token() {
    let svc = start("adm-status", "");
    let status = |token: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_topic-matcher"));
        cmd.args(["status", "--json", "--admin-addr"])
            .arg(format!("localhost:{}", svc.admin))
            .arg("--state-dir")
            .arg(&svc.state)
            .env_remove("TOPIC_MATCHER_ADMIN_TOKEN");
        if let Some(t) = token {
            cmd.args(["--admin-token", t]);
        }
        cmd.output().unwrap()
    };
    let out = status(Some(TOKEN));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(live["source"], "live", "{live}");
    let keys = |v: &serde_json::Value| {
        v.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert!(!keys(&live["status"]).is_empty(), "{live}");
    assert_eq!(keys(&live["status"]), keys(&svc.status()), "{live}");

    let out = status(None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--admin-token"), "{err}");
}
