//! The connection settings every Kafka client shares (docs/operations.md §4.1).
//!
//! A production cluster needs the same connection properties on every
//! client — TLS (`security.protocol`, `ssl.ca.location`, …), SASL
//! (`sasl.mechanisms`, `sasl.username`, `sasl.password`) — and the service
//! and its commands create many: the group consumer, the drain lanes, the
//! output and dead-letter producers, the searches-topic reader and
//! publisher, the lag monitor, `replay`'s planner, `bench`. They all build
//! their librdkafka configuration here, in one order:
//!
//! ```text
//! bootstrap.servers ← [kafka] brokers
//!   → [kafka.client]            every client
//!   → secrets                   [kafka.client_secret_files] / [kafka.client_secret_env]
//!   → the role's defaults       (set by the code that creates the client)
//!   → [kafka.consumer] or [kafka.producer]   the role's overrides
//!   → what the role cannot work without     (set by the caller afterwards)
//! ```
//!
//! Secrets are read once, at start: a file's content (one trailing newline
//! dropped, at most 64 KiB) or an environment variable's value. Their values
//! and those of properties named like secrets (`*password*`, `*secret*`,
//! `ssl.key.pem`, `sasl.oauthbearer.config`) never leave this type: its
//! `Debug` and [`KafkaClients::describe`] print `<redacted>`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rdkafka::ClientConfig;

/// Which overrides a client takes on top of the shared properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Consumers: `[kafka.consumer]`.
    Consumer,
    /// Producers: `[kafka.producer]`.
    Producer,
    /// Metadata and topic administration: the shared properties only.
    Admin,
}

/// The shared connection properties and the per-role overrides.
#[derive(Clone, Default)]
pub struct KafkaClients {
    /// Bootstrap brokers.
    pub brokers: String,
    /// Every client, secrets resolved.
    client: BTreeMap<String, String>,
    /// Property names whose values came from a secret source.
    secret_keys: Vec<String>,
    /// Consumers only.
    consumer: BTreeMap<String, String>,
    /// Producers only.
    producer: BTreeMap<String, String>,
}

/// Largest secret file read.
const MAX_SECRET_BYTES: u64 = 64 << 10;

impl KafkaClients {
    /// Plain connection to `brokers` with no extra properties (tests, the
    /// demo's own broker).
    #[must_use]
    pub fn plain(brokers: &str) -> KafkaClients {
        KafkaClients {
            brokers: brokers.to_string(),
            ..KafkaClients::default()
        }
    }

    /// `brokers` with only producer overrides (unit tests).
    #[cfg(test)]
    pub(crate) fn with_producer(brokers: &str, producer: BTreeMap<String, String>) -> KafkaClients {
        KafkaClients {
            producer,
            ..KafkaClients::plain(brokers)
        }
    }

    /// Builds the settings, resolving secrets.
    ///
    /// # Errors
    ///
    /// A secret file that cannot be read or is too large, an environment
    /// variable that is not set, a property given both plainly and as a
    /// secret; the message names the property and the file or variable,
    /// never a value.
    pub fn new(
        brokers: String,
        client: BTreeMap<String, String>,
        secret_files: BTreeMap<String, PathBuf>,
        secret_env: BTreeMap<String, String>,
        consumer: BTreeMap<String, String>,
        producer: BTreeMap<String, String>,
    ) -> Result<KafkaClients, String> {
        let mut resolved = client;
        let mut secret_keys = Vec::new();
        for (key, path) in secret_files {
            let value = read_secret_file(&path).map_err(|e| {
                format!(
                    "kafka.client_secret_files.\"{key}\": {}: {e}",
                    path.display()
                )
            })?;
            secret_keys.push(key.clone());
            if resolved.insert(key.clone(), value).is_some() {
                return Err(format!(
                    "kafka property \"{key}\" is given both in [kafka.client] and as a secret"
                ));
            }
        }
        for (key, var) in secret_env {
            let value = std::env::var(&var).map_err(|_| {
                format!(
                    "kafka.client_secret_env.\"{key}\": the environment variable {var} is not set"
                )
            })?;
            secret_keys.push(key.clone());
            if resolved.insert(key.clone(), value).is_some() {
                return Err(format!(
                    "kafka property \"{key}\" is given more than once ([kafka.client] or another secret source)"
                ));
            }
        }
        for (table, map) in [("consumer", &consumer), ("producer", &producer)] {
            if let Some(k) = map.keys().find(|k| *k == "bootstrap.servers") {
                return Err(format!(
                    "kafka.{table}.\"{k}\": set the brokers with kafka.brokers"
                ));
            }
        }
        if resolved.contains_key("bootstrap.servers") {
            return Err(
                "kafka.client.\"bootstrap.servers\": set the brokers with kafka.brokers".into(),
            );
        }
        Ok(KafkaClients {
            brokers,
            client: resolved,
            secret_keys,
            consumer,
            producer,
        })
    }

    /// A configuration for one client of `role`: brokers, the shared
    /// properties, `defaults`, then the role's overrides. The caller sets
    /// what the client cannot work without afterwards.
    #[must_use]
    pub fn config(&self, role: Role, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.client {
            cfg.set(k, v);
        }
        for (k, v) in defaults {
            cfg.set(*k, *v);
        }
        let overrides = match role {
            Role::Consumer => &self.consumer,
            Role::Producer => &self.producer,
            Role::Admin => return cfg,
        };
        for (k, v) in overrides {
            cfg.set(k, v);
        }
        cfg
    }

    /// A property as a client of `role` would see it (the shared value, or
    /// the role's override).
    #[must_use]
    pub fn get(&self, role: Role, key: &str) -> Option<&str> {
        let overrides = match role {
            Role::Consumer => Some(&self.consumer),
            Role::Producer => Some(&self.producer),
            Role::Admin => None,
        };
        overrides
            .and_then(|o| o.get(key))
            .or_else(|| self.client.get(key))
            .map(String::as_str)
    }

    /// `security.protocol` of the shared properties (`plaintext` when
    /// unset), for the start log line.
    #[must_use]
    pub fn security_protocol(&self) -> &str {
        self.client
            .get("security.protocol")
            .map_or("plaintext", String::as_str)
    }

    /// Every property by table, secret values replaced by `<redacted>`.
    #[must_use]
    pub fn describe(&self) -> BTreeMap<&'static str, BTreeMap<String, String>> {
        let shown = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| {
                    let secret = self.secret_keys.contains(k) || is_secret_property(k);
                    (
                        k.clone(),
                        if secret {
                            "<redacted>".into()
                        } else {
                            v.clone()
                        },
                    )
                })
                .collect()
        };
        BTreeMap::from([
            ("client", shown(&self.client)),
            ("consumer", shown(&self.consumer)),
            ("producer", shown(&self.producer)),
        ])
    }
}

impl std::fmt::Debug for KafkaClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaClients")
            .field("brokers", &self.brokers)
            .field("properties", &self.describe())
            .finish()
    }
}

/// How the service logs librdkafka's client-wide errors (every client's
/// context calls it): end-of-partition notices of the drain lanes are not
/// errors (debug); a broker connection lost is retried by librdkafka and
/// watched by the lag monitor and the alerts (warn); the rest is an error.
pub fn log_client_error(error: &rdkafka::error::KafkaError, reason: &str) {
    use rdkafka::types::RDKafkaErrorCode as C;
    match error.rdkafka_error_code() {
        Some(C::PartitionEOF) => tracing::debug!("librdkafka: {error}: {reason}"),
        Some(C::BrokerTransportFailure | C::AllBrokersDown | C::Resolve) => {
            tracing::warn!("librdkafka: {error}: {reason}");
        }
        _ => tracing::error!("librdkafka: {error}: {reason}"),
    }
}

/// A client context with the service's error logging ([`log_client_error`])
/// for clients that need no other callback.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoggingContext;

impl rdkafka::ClientContext for LoggingContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        log_client_error(&error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for LoggingContext {}

/// Whether a librdkafka property holds a secret by its name.
#[must_use]
pub fn is_secret_property(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k == "ssl.key.pem"
        || k == "sasl.oauthbearer.config"
}

fn read_secret_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_SECRET_BYTES {
        return Err(format!("larger than {MAX_SECRET_BYTES} bytes"));
    }
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn layers_apply_in_order_and_roles_take_only_their_overrides() {
        let c = KafkaClients::new(
            "b:9092".into(),
            map(&[("security.protocol", "SSL"), ("client.id", "shared")]),
            BTreeMap::new(),
            BTreeMap::new(),
            map(&[("session.timeout.ms", "7000"), ("client.id", "consumer")]),
            map(&[("linger.ms", "9")]),
        )
        .unwrap();
        let cons = c.config(Role::Consumer, &[("session.timeout.ms", "10000")]);
        assert_eq!(cons.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(cons.get("security.protocol"), Some("SSL"));
        assert_eq!(cons.get("session.timeout.ms"), Some("7000"));
        assert_eq!(cons.get("client.id"), Some("consumer"));
        assert_eq!(cons.get("linger.ms"), None);
        let prod = c.config(Role::Producer, &[("linger.ms", "50")]);
        assert_eq!(prod.get("linger.ms"), Some("9"));
        assert_eq!(prod.get("security.protocol"), Some("SSL"));
        assert_eq!(prod.get("client.id"), Some("shared"));
        let admin = c.config(Role::Admin, &[]);
        assert_eq!(admin.get("security.protocol"), Some("SSL"));
        assert_eq!(admin.get("session.timeout.ms"), None);
    }

    #[test]
    fn secrets_come_from_files_and_environment_and_are_never_shown() {
        let dir = std::env::temp_dir().join(format!("tm-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "file-s3cret\n").unwrap();
        std::env::set_var("TM_TEST_KEY_PASSWORD", "env-s3cret");
        let c = KafkaClients::new(
            "b:9092".into(),
            map(&[
                ("sasl.username", "matcher"),
                ("ssl.keystore.password", "plain-s3cret"),
            ]),
            BTreeMap::from([("sasl.password".to_string(), file.clone())]),
            map(&[("ssl.key.password", "TM_TEST_KEY_PASSWORD")]),
            BTreeMap::new(),
            BTreeMap::new(),
        )
        .unwrap();
        let cfg = c.config(Role::Producer, &[]);
        assert_eq!(cfg.get("sasl.password"), Some("file-s3cret"));
        assert_eq!(cfg.get("ssl.key.password"), Some("env-s3cret"));
        let shown = format!("{c:?} {:?}", c.describe());
        assert!(shown.contains("matcher"), "{shown}");
        assert!(!shown.contains("s3cret"), "a secret was shown: {shown}");

        let missing = KafkaClients::new(
            "b:9092".into(),
            BTreeMap::new(),
            BTreeMap::new(),
            map(&[("sasl.password", "TM_TEST_NOT_SET_ANYWHERE")]),
            BTreeMap::new(),
            BTreeMap::new(),
        )
        .unwrap_err();
        assert!(missing.contains("TM_TEST_NOT_SET_ANYWHERE"), "{missing}");
        let unreadable = KafkaClients::new(
            "b:9092".into(),
            BTreeMap::new(),
            BTreeMap::from([("sasl.password".to_string(), dir.join("absent"))]),
            BTreeMap::new(),
            BTreeMap::new(),
            BTreeMap::new(),
        )
        .unwrap_err();
        assert!(
            unreadable.contains("absent") && unreadable.contains("sasl.password"),
            "{unreadable}"
        );
        std::fs::write(&file, vec![b'x'; 70_000]).unwrap();
        let huge = KafkaClients::new(
            "b:9092".into(),
            BTreeMap::new(),
            BTreeMap::from([("sasl.password".to_string(), file)]),
            BTreeMap::new(),
            BTreeMap::new(),
            BTreeMap::new(),
        )
        .unwrap_err();
        assert!(huge.contains("larger than"), "{huge}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn brokers_are_set_in_one_place_only() {
        let e = KafkaClients::new(
            "b:9092".into(),
            map(&[("bootstrap.servers", "other:9092")]),
            BTreeMap::new(),
            BTreeMap::new(),
            BTreeMap::new(),
            BTreeMap::new(),
        )
        .unwrap_err();
        assert!(e.contains("kafka.brokers"), "{e}");
    }
}
