//! Unit tests of the configuration: the shipped files, every rule and its
//! error message.

use super::*;

/// `config/NAME`, validated with no overrides.
fn shipped(name: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name);
    RawConfig::from_file(&path)
        .unwrap()
        .validate(Overrides::default())
        .unwrap()
}

#[test]
fn the_example_config_is_valid() {
    let c = shipped("topic-matcher.example.toml");
    assert_eq!(c.input_topics, vec!["social.twitter", "social.owned"]);
    assert_eq!(c.output, Target::Kafka("matches".into()));
}

/// The configuration of `docker-compose.yml`'s service (not run here).
#[test]
fn the_docker_config_is_valid() {
    let c = shipped("docker.toml");
    assert_eq!(c.input_topics, vec!["social.owned", "social.posts"]);
    assert_eq!(c.classes.names(), ["critical", "high", "low"]);
    assert_eq!(c.kafka.brokers, "kafka:29092");
}

/// Every required setting, given on the command line.
fn required() -> Overrides {
    Overrides {
        brokers: Some("b:1".into()),
        group: Some("g".into()),
        input: Some("a".into()),
        output: Some("stdout".into()),
        dead_letter: Some("file:/tmp/d".into()),
        state_dir: Some("/tmp/s".into()),
        searches: Some("s.json".into()),
        ..Overrides::default()
    }
}

#[test]
fn matching_threads_default_to_one_per_core_and_are_bounded() {
    let threads = |toml: &str| {
        RawConfig::from_toml(toml)
            .unwrap()
            .validate(required())
            .map(|c| c.matching_threads)
    };
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(threads("").unwrap(), cores);
    assert_eq!(threads("[matching]\nthreads = 0\n").unwrap(), cores);
    assert_eq!(threads("[matching]\nthreads = 3\n").unwrap(), 3);
    let e = threads("[matching]\nthreads = 100000\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("matching.threads is 100000; at most 256"), "{e}");
    assert!(RawConfig::from_toml("[matching]\nthread = 2\n").is_err());
}

#[test]
fn classes_in_the_spec_form() {
    let raw = RawConfig::from_toml(
        r#"
[[classes]]
name = "critical"
topics = ["social.owned"]
when = { type = ["dm", "mention"] }
[[classes]]
name = "high"
when = { source = ["twitter", "facebook", "instagram"] }
[[classes]]
name = "low"

[catch_up]
policy = "weighted"
weights = { critical = 60, high = 30, low = 10 }
threshold = 500
"#,
    )
    .unwrap();
    let o = required();
    let c = raw.validate(o.clone()).unwrap();
    assert_eq!(c.classes.names(), ["critical", "high", "low"]);
    assert_eq!(
        c.catch_up.policy,
        crate::classes::Policy::Weighted(vec![60, 30, 10])
    );
    assert_eq!(c.catch_up.threshold, 500);
    let e = RawConfig::from_toml("[[classes]]\nname = \"a\"\nwhen = { mood = [\"x\"] }\n")
        .unwrap()
        .validate(o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("mood"), "{e}");
}

#[test]
fn unknown_keys_are_named() {
    let e = RawConfig::from_toml("[kafka]\nbrokerz = \"x\"\n").unwrap_err();
    assert!(e.contains("brokerz"), "{e}");
    let e = RawConfig::from_toml("[nope]\n").unwrap_err();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn flags_alone_are_enough() {
    let o = Overrides {
        brokers: Some("127.0.0.1:9092".into()),
        group: Some("g".into()),
        input: Some("a,b".into()),
        output: Some("file:/tmp/out.jsonl".into()),
        dead_letter: Some("kafka:dlq".into()),
        state_dir: Some("/tmp/state".into()),
        searches: Some("s.json".into()),
        admin_addr: Some("127.0.0.1:0".into()),
        admin_token: None,
    };
    let c = RawConfig::default().validate(o).unwrap();
    assert_eq!(c.input_topics, vec!["a", "b"]);
    assert_eq!(c.dead_letter, Target::Kafka("dlq".into()));
    assert_eq!(c.output, Target::File("/tmp/out.jsonl".into()));
}

#[test]
fn missing_values_are_named() {
    let e = RawConfig::default()
        .validate(Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--brokers"), "{e}");
    assert!(Target::parse("kafka:").is_err());
    assert!(Target::parse("s3://x").is_err());
}
