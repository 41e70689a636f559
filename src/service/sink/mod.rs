//! Outputs: match records and dead letters go to a Kafka topic (idempotent
//! producer), a JSONL file or stdout, behind one [`Sink`] interface whose
//! `flush` is the acknowledgement the checkpoint waits for.
//!
//! A Kafka delivery that fails (after librdkafka's own retries) is kept and
//! sent again on the next `flush`: nothing is dropped, and the batch's
//! checkpoint waits until everything is acknowledged.
//!
//! # Transient and permanent errors
//!
//! A delivery error is *transient* (broker down, leader moving, timeouts,
//! authorization being fixed: retried for ever, the pipeline pauses input
//! meanwhile) unless the broker refused that one record for what it is —
//! too large, invalid, corrupt ([`is_permanent`]). Retrying such a record
//! would jam the pipeline for good, so it is set aside as [`Refused`]: it
//! stays unacknowledged (its batch is not checkpointed) until the pipeline
//! has taken it with [`Sink::take_refused`], written it to the dead letters
//! and called [`Sink::resolve`]. Records are sized against the producer's
//! `message.max.bytes` before they are sent ([`Sink::max_record_bytes`]),
//! so this path is for brokers whose own limit is lower.

mod kafka;
mod line;

use std::time::Duration;

use crate::config::Target;
use kafka::KafkaSink;
use line::LineSink;

/// Why an output did not take or acknowledge records.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// File or stdout I/O failed.
    #[error("output I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Kafka refused or has not acknowledged yet.
    #[error("output Kafka: {0}")]
    Kafka(String),
    /// Not everything was acknowledged in time.
    #[error("output not acknowledged within {0:?} ({1} records pending)")]
    Timeout(Duration, usize),
}

/// A destination for records.
pub trait Sink: Send {
    /// Queues one record. Never drops it: on a full client queue it waits.
    ///
    /// # Errors
    ///
    /// I/O errors of files; Kafka errors other than a full queue.
    fn send(
        &mut self,
        key: &[u8],
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<(), SinkError>;

    /// Waits until every record sent so far is acknowledged (Kafka) or
    /// written and synced (file), up to `timeout`.
    ///
    /// # Errors
    ///
    /// When not everything is acknowledged in time: the records stay queued
    /// and a later `flush` tries again.
    fn flush(&mut self, timeout: Duration) -> Result<(), SinkError>;

    /// Bytes sent and not yet acknowledged.
    fn pending_bytes(&self) -> usize;

    /// Closes the group of records sent since the last seal and returns its
    /// id; [`Sink::is_acked`] tells when the group (and all before it) is
    /// acknowledged, without waiting. A file hands the group to its writer
    /// thread here (acknowledged once written and synced).
    ///
    /// # Errors
    ///
    /// File I/O errors.
    fn seal(&mut self) -> Result<u64, SinkError>;

    /// Whether every record of group `id` and of the groups before it is
    /// acknowledged. Serves delivery reports and re-sends failed records.
    ///
    /// # Errors
    ///
    /// When a failed record cannot be queued again.
    fn is_acked(&mut self, id: u64) -> Result<bool, SinkError>;

    /// The largest record (key, value and headers, in bytes) the output
    /// takes; `None`: no limit (files, stdout).
    fn max_record_bytes(&self) -> Option<usize> {
        None
    }

    /// Records the output refused for good since the last call (module
    /// doc). Each stays unacknowledged until [`Sink::resolve`].
    fn take_refused(&mut self) -> Vec<Refused> {
        Vec::new()
    }

    /// Counts a refused record of `group` as done (it was dead-lettered).
    fn resolve(&mut self, _group: u64) {}
}

/// A record the output refused permanently.
#[derive(Clone, Debug)]
pub struct Refused {
    /// The group it was sent in.
    pub group: u64,
    /// Its key.
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
    /// Its headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Why it was refused.
    pub error: String,
}

/// Bytes of a produce request's framing that `message.max.bytes` counts
/// beyond a record's key, value and headers (librdkafka's own wire overhead
/// per message is under 100 bytes; the rest is margin).
const RECORD_OVERHEAD: usize = 1024;

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Whether a delivery error means the broker will never take this record,
/// whatever is retried: too large, invalid, corrupt.
pub fn is_permanent(code: rdkafka::types::RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        code,
        C::MessageSizeTooLarge
            | C::MessageBatchTooLarge
            | C::InvalidMessageSize
            | C::InvalidMessage
            | C::InvalidRecord
            | C::InvalidTimestamp
            | C::BadMessage
    )
}

/// Opens the sink for `target`.
///
/// # Errors
///
/// When the file cannot be opened or the producer cannot be created.
pub fn open(
    target: &Target,
    clients: &crate::kafka_client::KafkaClients,
) -> Result<Box<dyn Sink>, SinkError> {
    Ok(match target {
        Target::Stdout => Box::new(LineSink::stdout()),
        Target::File(p) => {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            Box::new(LineSink::file(p)?)
        }
        Target::Kafka(topic) => Box::new(KafkaSink::new(topic, clients)?),
    })
}

/// Standard base64 (RFC 4648, with padding), for original message bytes in
/// JSONL dead letters.
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn only_errors_about_the_record_itself_are_permanent() {
        use rdkafka::types::RDKafkaErrorCode as C;
        for c in [
            C::MessageSizeTooLarge,
            C::MessageBatchTooLarge,
            C::InvalidRecord,
            C::InvalidMessage,
        ] {
            assert!(is_permanent(c), "{c:?}");
        }
        for c in [
            C::BrokerTransportFailure,
            C::AllBrokersDown,
            C::NotLeaderForPartition,
            C::RequestTimedOut,
            C::MessageTimedOut,
            C::QueueFull,
            C::TopicAuthorizationFailed,
            C::UnknownTopicOrPartition,
        ] {
            assert!(!is_permanent(c), "{c:?}");
        }
    }

    #[test]
    fn a_kafka_sink_sizes_records_by_message_max_bytes() {
        let mut o = std::collections::BTreeMap::new();
        o.insert("message.max.bytes".to_string(), "200000".to_string());
        let s = open(
            &Target::Kafka("t".into()),
            &crate::kafka_client::KafkaClients::with_producer("127.0.0.1:1", o),
        )
        .unwrap();
        assert_eq!(s.max_record_bytes(), Some(200_000 - RECORD_OVERHEAD));
        let d = open(
            &Target::Kafka("t".into()),
            &crate::kafka_client::KafkaClients::plain("127.0.0.1:1"),
        )
        .unwrap();
        assert_eq!(
            d.max_record_bytes(),
            Some(DEFAULT_MESSAGE_MAX_BYTES - RECORD_OVERHEAD)
        );
        let p = std::env::temp_dir().join(format!("tm-sink-max-{}.jsonl", std::process::id()));
        let f = open(&Target::File(p.clone()), &Default::default()).unwrap();
        assert_eq!(f.max_record_bytes(), None);
        let _ = std::fs::remove_file(&p);
    }
}
