//! The `check`, `match` and `bench` commands as a user runs them: the real
//! binary, real files, exit codes and output (docs/operations.md §4).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_topic-matcher"))
}

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// The standard output of a command that must have exited 0.
fn stdout_of_success(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("topic-matcher-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

fn lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn check_accepts_the_bundled_searches_and_reports_sizes() {
    let out = bin()
        .args(["check", "--searches"])
        .arg(repo("samples/searches.json"))
        .output()
        .unwrap();
    let stdout = stdout_of_success(&out);
    for what in [
        "topics",
        "searches",
        "leaves",
        "terms",
        "automaton size",
        "compile time",
        "peak memory",
    ] {
        assert!(stdout.contains(what), "missing {what:?} in:\n{stdout}");
    }
}

#[test]
fn check_reports_every_bad_search_with_its_column_and_exits_1() {
    let file = temp_file(
        "bad.json",
        br#"{"topics": [
            {"id": "a", "searches": [{"id": "a1", "query": "(acme OR corp"}, {"id": "a2", "query": "fine"}]},
            {"id": "b", "searches": [{"id": "b1", "query": "ab* NOT x"}, {"id": "b2", "query": "NOT job"}]}]}"#,
    );
    let out = bin()
        .args(["check", "--searches"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("topic \"a\", search \"a1\", column 1"),
        "{err}"
    );
    assert!(err.contains("unclosed parenthesis"), "{err}");
    assert!(
        err.contains("topic \"b\", search \"b1\", column 1"),
        "{err}"
    );
    assert!(err.contains("at least 3"), "{err}");
    assert!(err.contains("search \"b2\""), "{err}");
    assert!(err.contains("nothing positive"), "{err}");
    assert!(
        err.contains("   | (acme OR corp\n   | ^"),
        "caret under the column:\n{err}"
    );
    assert!(err.contains("3 problem(s)"), "{err}");
}

#[test]
fn check_refuses_queries_that_used_to_crash_it_with_a_caret() {
    let deep = format!("{}a{}", "(".repeat(40), ")".repeat(40));
    let searches = serde_json::json!({"topics": [{"id": "t", "searches": [
        {"id": "not", "query": "acme NEAR/2 NOT outage"},
        {"id": "minus", "query": "acme NEAR/2 -outage"},
        {"id": "onear", "query": "acme ONEAR/2 NOT outage"},
        {"id": "phrase", "query": "\"acme corp\" NEAR/2 NOT outage"},
        {"id": "deep", "query": deep}]}]});
    let file = temp_file("crashers.json", searches.to_string().as_bytes());
    let out = bin()
        .args(["check", "--searches"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("5 problem(s)"), "{err}");
    assert!(
        err.contains("   | acme NEAR/2 NOT outage\n   |             ^^^"),
        "caret under NOT:\n{err}"
    );
    assert!(err.contains("cannot be negated"), "{err}");
    assert!(err.contains("more than 32 levels deep"), "{err}");
}

#[test]
fn match_reports_a_too_expensive_document_and_goes_on() {
    let searches = temp_file(
        "near.json",
        br#"{"topics": [{"id": "t", "searches": [{"id": "s", "query": "acme NEAR/5 outage"}]}]}"#,
    );
    // Two normal documents around one that spends the budget given (100,000
    // units) on its tokens alone.
    let huge = serde_json::json!({"id": "huge", "text": "a ".repeat(200_000)}).to_string();
    let input = format!(
        "{}\n{huge}\n{}\n",
        r#"{"id": "1", "text": "acme is down, outage again"}"#,
        r#"{"id": "2", "text": "acme outage"}"#
    );
    let out = run_with_stdin(
        bin()
            .args(["match", "--searches"])
            .arg(&searches)
            .args(["--max-work-per-document", "100000"]),
        input.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0));
    let records = lines(&out.stdout);
    let ids: Vec<&str> = records
        .iter()
        .map(|r| r["doc_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2"]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("line 2: skipped: too expensive"), "{err}");
}

#[test]
fn check_warns_about_mixed_precedence_without_rejecting() {
    let file = temp_file(
        "warn.json",
        br#"{"topics": [{"id": "a", "searches": [{"id": "a1", "query": "a OR b NOT c"}]}]}"#,
    );
    let out = bin()
        .args(["check", "--searches"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("read as: a OR (b AND NOT c)"), "{err}");
}

/// `check --cost`: the searches ranked by work and by matches on sample
/// documents; the noisiest search's matches are the records `match` writes
/// for it.
#[test]
fn check_cost_ranks_searches_by_work_and_by_matches() {
    let docs = temp_file(
        "cost-docs.jsonl",
        b"{\"id\": \"1\", \"text\": \"#rstats and ggplot2\"}\n{\"id\": \"2\", \"text\": \"more #rstats\"}\nnot json\n{\"id\": \"3\", \"text\": \"kfc is closed\"}\n",
    );
    let out = bin()
        .args(["check", "--searches"])
        .arg(repo("samples/searches.json"))
        .arg("--cost")
        .arg(&docs)
        .args(["--top", "2"])
        .output()
        .unwrap();
    let text = stdout_of_success(&out);
    assert!(
        text.contains("cost on 3 documents (1 bad lines skipped, 0 too expensive)"),
        "{text}"
    );
    let section = |title: &str| -> Vec<Vec<String>> {
        text.split(title)
            .nth(1)
            .unwrap_or_else(|| panic!("no {title:?} in {text}"))
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with("  "))
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect()
    };
    let expensive = section("most expensive");
    assert_eq!(expensive.len(), 2, "{text}");
    let work = |row: &Vec<String>| row[3].parse::<u64>().unwrap();
    assert!(work(&expensive[0]) >= work(&expensive[1]), "{text}");
    let noisy = section("noisiest");
    assert_eq!(noisy[0][1], "rstats-tags", "{text}");
    assert_eq!(noisy[0][3], "2", "{text}");
    // --top needs --cost.
    let out = bin()
        .args(["check", "--searches"])
        .arg(repo("samples/searches.json"))
        .args(["--top", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn missing_or_broken_searches_files_exit_1() {
    let out = bin()
        .args(["check", "--searches", "/nonexistent/searches.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the searches file"));
    let file = temp_file("truncated.json", br#"{"topics": ["#);
    let out = bin()
        .args(["check", "--searches"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid searches file"));
    let out = bin()
        .args(["match", "--searches"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bad_arguments_exit_1() {
    assert_eq!(bin().arg("match").output().unwrap().status.code(), Some(1));
    assert_eq!(
        bin().arg("frobnicate").output().unwrap().status.code(),
        Some(1)
    );
    assert_eq!(bin().arg("--help").output().unwrap().status.code(), Some(0));
}

#[test]
fn match_writes_one_record_per_document_and_topic() {
    let searches = temp_file(
        "s.json",
        br#"{"topics": [
            {"id": "acme", "searches": [
                {"id": "acme-brand", "query": "(\"acme corp\" OR #acme) NOT (job OR hiring)"},
                {"id": "acme-outage", "query": "acme NEAR/3 (down OR outage OR \"not working\")"}]},
            {"id": "other", "searches": [{"id": "o", "query": "globex"}]}]}"#,
    );
    let input = concat!(
        r##"{"id": "1", "source": "twitter", "text": "#acme is down again", "created_at": "2019-07-24T09:31:07Z"}"##,
        "\n",
        r#"{"id": "2", "text": "Acme Corp is hiring"}"#,
        "\n",
        r#"{"id": "3", "title": "Globex", "text": "acme corp"}"#,
        "\n"
    );
    let out = run_with_stdin(
        bin().args(["match", "--searches"]).arg(&searches),
        input.as_bytes(),
    );
    stdout_of_success(&out);
    let recs = lines(&out.stdout);
    let pairs: Vec<(String, String, Vec<String>)> = recs
        .iter()
        .map(|r| {
            (
                r["doc_id"].as_str().unwrap().to_string(),
                r["topic_id"].as_str().unwrap().to_string(),
                r["searches"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        vec![
            (
                "1".into(),
                "acme".into(),
                vec!["acme-brand".into(), "acme-outage".into()]
            ),
            ("3".into(), "acme".into(), vec!["acme-brand".into()]),
            ("3".into(), "other".into(), vec!["o".into()]),
        ]
    );
    assert_eq!(recs[0]["match_id"], "1/acme");
    assert_eq!(recs[0]["source"], "twitter");
    assert_eq!(recs[0]["created_at"], "2019-07-24T09:31:07Z");
    assert!(recs[0]["matched_at"].as_str().unwrap().ends_with('Z'));
    assert!(recs[0].get("input").is_none() && recs[0].get("searches_version").is_none());
    // "#acme" at bytes 0..5 and "down" at 9..13 of the text.
    let hl: Vec<(u64, u64)> = recs[0]["highlights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["start"].as_u64().unwrap(), h["end"].as_u64().unwrap()))
        .collect();
    assert!(hl.contains(&(0, 5)) && hl.contains(&(9, 13)), "{hl:?}");
}

#[test]
fn match_skips_bad_lines_with_their_numbers() {
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"id\":\"1\",\"text\":\"python rocks\"}\n");
    input.extend_from_slice(b"not json\n");
    input.extend_from_slice(b"{\"text\":\"no id\"}\n");
    input.extend_from_slice(b"\xff\xfe\xfd\n");
    input.extend_from_slice(b"\n");
    input.extend_from_slice(
        format!(
            "{{\"id\":\"big\",\"text\":\"{}\"}}\n",
            "python ".repeat(300_000)
        )
        .as_bytes(),
    );
    input.extend_from_slice(b"{\"id\":\"2\",\"text\":\"more python\"}");
    let searches = repo("samples/searches.json");
    let out = run_with_stdin(bin().args(["match", "--searches"]).arg(&searches), &input);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2: skipped: not a valid document"),
        "{err}"
    );
    assert!(
        err.contains("line 3: skipped: the document has no `id`"),
        "{err}"
    );
    assert!(err.contains("line 4: skipped: not valid UTF-8"), "{err}");
    assert!(
        err.contains("line 6: skipped: message is 2100023 bytes"),
        "{err}"
    );
    let ids: Vec<String> = lines(&out.stdout)
        .iter()
        .map(|r| r["doc_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["1", "2"]);
    let strict = run_with_stdin(
        bin()
            .args(["match", "--strict", "--searches"])
            .arg(&searches),
        &input,
    );
    assert_eq!(strict.status.code(), Some(1));
    assert_eq!(
        lines(&strict.stdout).len(),
        2,
        "strict still writes the good records"
    );
}

#[test]
fn match_reads_and_writes_files_and_handles_empty_input() {
    let empty = temp_file("empty.jsonl", b"");
    let out_path = std::env::temp_dir().join(format!(
        "topic-matcher-cli-{}-out.jsonl",
        std::process::id()
    ));
    let out = bin()
        .args(["match", "--searches"])
        .arg(repo("samples/searches.json"))
        .arg("--input")
        .arg(&empty)
        .arg("--output")
        .arg(&out_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read(&out_path).unwrap(), b"");
}

#[test]
fn match_on_the_bundled_sample_finds_every_topic() {
    let out = bin()
        .args(["match", "--searches"])
        .arg(repo("samples/searches.json"))
        .arg("--input")
        .arg(repo("samples/tweets.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let recs = lines(&out.stdout);
    let topics: std::collections::BTreeSet<&str> = recs
        .iter()
        .map(|r| r["topic_id"].as_str().unwrap())
        .collect();
    assert_eq!(topics.len(), 10, "{topics:?}");
    // match_id is unique per (document, topic) and deterministic.
    let ids: std::collections::BTreeSet<&str> = recs
        .iter()
        .map(|r| r["match_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), recs.len());
}

#[test]
fn bench_runs_a_small_workload_and_agrees_with_the_reference() {
    let out = bin()
        .args([
            "bench",
            "--searches",
            "500",
            "--docs",
            "2000",
            "--passes",
            "1",
            "--baseline-docs",
            "300",
        ])
        .output()
        .unwrap();
    let s = stdout_of_success(&out);
    for what in [
        "docs/s",
        "MB/s",
        "p50",
        "p99",
        "compile",
        "peak memory",
        "results identical",
    ] {
        assert!(s.contains(what), "missing {what:?} in:\n{s}");
    }
}

#[test]
fn run_without_configuration_names_what_is_missing_and_exits_1() {
    let out = bin().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--brokers"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = temp_file(
        "bad.toml",
        b"[kafka]\nbrokers = \"x:1\"\nbroker_list = \"y\"\n",
    );
    let out = bin().args(["run", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broker_list"),
        "the unknown key is named: {err}"
    );
}

#[test]
fn run_with_invalid_searches_exits_1_with_the_errors() {
    let searches = temp_file(
        "run-bad-searches.json",
        br#"{"topics": [{"id": "a", "searches": [{"id": "a1", "query": "acme OR"}]}]}"#,
    );
    let out = bin()
        .args([
            "run",
            "--brokers",
            "127.0.0.1:1",
            "--group",
            "g",
            "--input",
            "in",
            "--output",
            "stdout",
        ])
        .args([
            "--dead-letter",
            "file:/tmp/tm-dead.jsonl",
            "--state-dir",
            "/tmp/tm-state-unused",
            "--searches",
        ])
        .arg(&searches)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("column 6"));
}

#[test]
fn status_reads_the_state_directory_when_the_service_is_not_running() {
    let dir = std::env::temp_dir().join(format!("topic-matcher-cli-{}-status", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let store = topic_matcher::state_store::StateStore::open(&dir).unwrap();
        store
            .commit(
                &[(
                    topic_matcher::state_store::TopicPartition::new("social.posts", 2),
                    1234,
                )],
                &[],
            )
            .unwrap();
    }
    // Only what `status` reads: the admin address (nothing answers there)
    // and the state directory.
    let out = bin()
        .args(["status", "--admin-addr", "127.0.0.1:1", "--state-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let s = stdout_of_success(&out);
    assert!(
        s.contains("social.posts/2") && s.contains("next offset 1234"),
        "{s}"
    );
    // The same as one JSON object, for scripts.
    let out = bin()
        .args([
            "status",
            "--json",
            "--admin-addr",
            "127.0.0.1:1",
            "--state-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["source"], "state_dir", "{v}");
    assert_eq!(
        v["checkpoints"][0],
        serde_json::json!({"topic": "social.posts", "partition": 2, "next_offset": 1234}),
        "{v}"
    );
    // The same from a config file that gives only those two; a wrong
    // value in it is still refused.
    let config = dir.with_extension("toml");
    let status_with = |addr: &str| {
        std::fs::write(
            &config,
            format!(
                "[state]\ndir = {:?}\n[admin]\naddr = {addr:?}\n",
                dir.display().to_string()
            ),
        )
        .unwrap();
        bin()
            .args(["status", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = status_with("127.0.0.1:1");
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{s}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.contains("next offset 1234"), "{s}");
    let out = status_with("nowhere");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin.addr"));
}

/// `run` configured only by a file's `[log]` section and environment
/// variables (docs/operations.md §4.2): JSON log lines, the admin address
/// given by host name, a wrong variable named with exit 1.
#[test]
fn run_logs_json_and_takes_its_keys_from_the_environment() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("tm-cli-env-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("c.toml"), "[log]\nformat = \"json\"\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let vars = [
        ("TOPIC_MATCHER__KAFKA__BROKERS", "127.0.0.1:1".to_string()),
        ("TOPIC_MATCHER__KAFKA__GROUP_ID", "1234".to_string()),
        ("TOPIC_MATCHER__KAFKA__INPUT_TOPICS", "[\"in\"]".to_string()),
        ("TOPIC_MATCHER__OUTPUT__TARGET", "stdout".to_string()),
        (
            "TOPIC_MATCHER__DEAD_LETTER__TARGET",
            format!("file:{}", dir.join("dead.jsonl").display()),
        ),
        (
            "TOPIC_MATCHER__STATE__DIR",
            dir.join("state").display().to_string(),
        ),
        (
            "TOPIC_MATCHER__SEARCHES__FILE",
            repo("samples/searches.json").display().to_string(),
        ),
        ("TOPIC_MATCHER__ADMIN__ADDR", format!("localhost:{port}")),
    ];
    let mut child = bin()
        .args(["run", "--config"])
        .arg(dir.join("c.toml"))
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut listening = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while listening.is_none() && std::time::Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(1)) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        if v["fields"]["message"] == "admin API listening" {
            listening = v["fields"]["admin_addr"].as_str().map(String::from);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(listening, Some(format!("127.0.0.1:{port}")));

    let out = bin()
        .args(["run", "--config"])
        .arg(dir.join("c.toml"))
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .env("TOPIC_MATCHER__LIMITS__BATCH_MAX_MESSAGEZ", "5")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TOPIC_MATCHER__LIMITS__BATCH_MAX_MESSAGEZ"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explain_shows_why_a_search_matches_and_why_another_does_not() {
    let searches = temp_file(
        "explain-searches.json",
        br#"{"topics": [{"id": "acme", "searches": [
            {"id": "outage", "query": "acme NEAR/2 (outage OR down)"},
            {"id": "hiring", "query": "acme -job*"}]}]}"#,
    );
    let s = searches.to_str().unwrap();
    let out = bin()
        .args([
            "explain",
            "--searches",
            s,
            "--text",
            "acme is down, job ads too",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("search outage: MATCHES"), "{text}");
    assert!(text.contains("«down»"), "{text}");
    assert!(
        !text.contains("search hiring"),
        "only matches without --search: {text}"
    );
    let out = bin()
        .args([
            "explain",
            "--searches",
            s,
            "--search",
            "hiring",
            "--text",
            "acme is down, job ads too",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("search hiring: does not match"), "{text}");
    assert!(text.contains("vetoed: job* occurs"), "{text}");
    let out = bin()
        .args([
            "explain",
            "--searches",
            s,
            "--search",
            "nope",
            "--text",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no search \"nope\""));
}

/// Options the broker benchmarks do not use are refused, not ignored: a
/// figure measured on other searches than the ones asked for is worse than
/// an error.
#[test]
fn bench_refuses_options_its_broker_variants_would_ignore() {
    let refused = [
        vec![
            "--brokers",
            "127.0.0.1:1",
            "--realistic",
            "--input",
            "x.jsonl",
        ],
        vec!["--brokers", "127.0.0.1:1", "--regex-percent", "1"],
        vec!["--brokers", "127.0.0.1:1", "--cost-overhead-pairs", "3"],
        vec!["--brokers", "127.0.0.1:1", "--emit-workload", "/tmp/x"],
        vec![
            "--brokers",
            "127.0.0.1:1",
            "--catch-up",
            "--searches-file",
            "s.json",
        ],
    ];
    for args in refused {
        let out = bin().arg("bench").args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("cannot be used with"), "{args:?}: {err}");
    }
}
