//! Configuration keys from environment variables (docs/operations.md §4.2).
//!
//! Every key of a section can be set by a variable named
//! `TOPIC_MATCHER__<SECTION>__<KEY>` (double underscores between the parts,
//! any case): `TOPIC_MATCHER__KAFKA__BROKERS=kafka:9092`,
//! `TOPIC_MATCHER__LIMITS__BATCH_MAX_MESSAGES=5000`. In the librdkafka
//! tables (`kafka.client`, `kafka.consumer`, `kafka.producer`) a property's
//! dots are written as single underscores:
//! `TOPIC_MATCHER__KAFKA__CLIENT__SECURITY_PROTOCOL=SASL_SSL` sets
//! `"security.protocol"`. A variable beats the file; a command-line flag
//! beats both.
//!
//! The value is read as TOML when the key takes a number, a boolean or a
//! list (`["a", "b"]`), as text otherwise: each variable is tried typed
//! first, then as a string, against the whole configuration form, so an
//! unknown key or a wrong type is an error naming the variable.
//! `[[classes]]` (a list of tables) cannot be set this way.

use serde::Deserialize;

use super::RawConfig;

/// The prefix of every configuration variable.
pub const PREFIX: &str = "TOPIC_MATCHER__";

/// The librdkafka property tables, whose keys are dotted.
const PROPERTY_TABLES: [&str; 3] = ["client", "consumer", "producer"];

/// `table` with the configuration variables among `vars` applied, as a
/// [`RawConfig`].
///
/// # Errors
///
/// A variable that names no key, or whose value the key cannot take; the
/// message names the variable, never its value (it may be a secret).
pub fn apply(
    mut table: toml::Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<RawConfig, String> {
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .collect();
    vars.sort();
    for (name, value) in vars {
        let path = key_path(&name)?;
        let typed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"));
        let mut accepted = false;
        for candidate in typed
            .into_iter()
            .chain(std::iter::once(toml::Value::String(value.clone())))
        {
            let mut trial = table.clone();
            set(&mut trial, &path, candidate)?;
            if RawConfig::deserialize(toml::Value::Table(trial.clone())).is_ok() {
                table = trial;
                accepted = true;
                break;
            }
        }
        if !accepted {
            let mut trial = table.clone();
            set(&mut trial, &path, toml::Value::String(value))?;
            let why = RawConfig::deserialize(toml::Value::Table(trial))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            return Err(format!(
                "environment variable {name} ({}): {}",
                path.join("."),
                why.trim()
            ));
        }
    }
    RawConfig::deserialize(toml::Value::Table(table)).map_err(|e| e.to_string().trim().to_string())
}

/// `TOPIC_MATCHER__KAFKA__CLIENT__SECURITY_PROTOCOL` →
/// `["kafka", "client", "security.protocol"]`.
fn key_path(name: &str) -> Result<Vec<String>, String> {
    let parts: Vec<String> = name[PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    if parts.len() < 2 || parts.iter().any(String::is_empty) {
        return Err(format!(
            "environment variable {name}: expected {PREFIX}SECTION__KEY"
        ));
    }
    let dotted =
        parts.len() == 3 && parts[0] == "kafka" && PROPERTY_TABLES.contains(&parts[1].as_str());
    Ok(if dotted {
        vec![
            parts[0].clone(),
            parts[1].clone(),
            parts[2].replace('_', "."),
        ]
    } else {
        parts
    })
}

fn set(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().expect("at least two parts");
    let mut at = table;
    for p in parents {
        at = match at
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => t,
            _ => return Err(format!("{} is not a section", path.join("."))),
        };
    }
    at.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn variables_set_keys_of_every_type_and_beat_the_file() {
        let file: toml::Table = "[kafka]\nbrokers = \"file:9092\"\ngroup_id = \"g\"\n"
            .parse()
            .unwrap();
        let raw = apply(
            file,
            vars(&[
                ("TOPIC_MATCHER__KAFKA__BROKERS", "env:9092"),
                ("TOPIC_MATCHER__KAFKA__INPUT_TOPICS", "[\"a\", \"b\"]"),
                // A group id of digits stays a string.
                ("topic_matcher__kafka__group_id", "1234"),
                ("TOPIC_MATCHER__LIMITS__BATCH_MAX_MESSAGES", "5000"),
                ("TOPIC_MATCHER__SEARCHES__WATCH", "false"),
                (
                    "TOPIC_MATCHER__KAFKA__CLIENT__SECURITY_PROTOCOL",
                    "SASL_SSL",
                ),
                ("TOPIC_MATCHER__KAFKA__PRODUCER__COMPRESSION_TYPE", "zstd"),
                ("TOPIC_MATCHER__ADMIN__ADDR", "localhost:9464"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        // Lower-case prefix is not ours: the file's group stays.
        assert_eq!(raw.kafka.group_id.as_deref(), Some("g"));
        assert_eq!(raw.kafka.brokers.as_deref(), Some("env:9092"));
        assert_eq!(raw.kafka.input_topics, Some(vec!["a".into(), "b".into()]));
        assert_eq!(raw.limits.batch_max_messages, Some(5000));
        assert_eq!(raw.searches.watch, Some(false));
        assert_eq!(
            raw.kafka
                .client
                .get("security.protocol")
                .map(String::as_str),
            Some("SASL_SSL")
        );
        assert_eq!(
            raw.kafka
                .producer
                .get("compression.type")
                .map(String::as_str),
            Some("zstd")
        );
        let digits = apply(
            toml::Table::new(),
            vars(&[("TOPIC_MATCHER__KAFKA__GROUP_ID", "1234")]),
        )
        .unwrap();
        assert_eq!(digits.kafka.group_id.as_deref(), Some("1234"));
    }

    #[test]
    fn a_wrong_variable_is_named_and_its_value_is_not_shown() {
        let e = apply(
            toml::Table::new(),
            vars(&[("TOPIC_MATCHER__KAFKA__BROKERZ", "s3cret-value")]),
        )
        .unwrap_err();
        assert!(e.contains("TOPIC_MATCHER__KAFKA__BROKERZ"), "{e}");
        assert!(e.contains("brokerz"), "{e}");
        assert!(!e.contains("s3cret-value"), "{e}");
        let e = apply(
            toml::Table::new(),
            vars(&[("TOPIC_MATCHER__LIMITS__BATCH_MAX_MESSAGES", "many")]),
        )
        .unwrap_err();
        assert!(
            e.contains("TOPIC_MATCHER__LIMITS__BATCH_MAX_MESSAGES"),
            "{e}"
        );
        let e = apply(toml::Table::new(), vars(&[("TOPIC_MATCHER__KAFKA", "x")])).unwrap_err();
        assert!(e.contains("SECTION__KEY"), "{e}");
    }
}
