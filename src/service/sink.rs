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

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message};

use crate::config::Target;

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
    /// acknowledged, without waiting. Files are written and synced here.
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
    brokers: &str,
    overrides: &std::collections::BTreeMap<String, String>,
) -> Result<Box<dyn Sink>, SinkError> {
    Ok(match target {
        Target::Stdout => Box::new(LineSink::stdout()),
        Target::File(p) => {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            Box::new(LineSink::file(p)?)
        }
        Target::Kafka(topic) => Box::new(KafkaSink::new(topic, brokers, overrides)?),
    })
}

/// Longest a send waits for room in a full producer queue before the record
/// is kept as failed (the output is then reported down and retried).
const QUEUE_FULL_WAIT: Duration = Duration::from_secs(1);

/// JSONL to a file (appended, synced at each seal or flush) or to stdout:
/// written records are acknowledged records.
///
/// A failed write (a full disk, an I/O error) is cut back: the file is
/// truncated to its length before the write, so it never holds a partial
/// line, and the records stay buffered. The batch is then not acknowledged,
/// and the pipeline pauses and retries as for a Kafka outage
/// (docs/operations.md §5.5). A file whose last line was cut by a crash is
/// cut back to its last complete line when opened (those records come again:
/// they were after the last checkpoint).
struct LineSink {
    /// `None` writes to stdout.
    file: Option<File>,
    /// Bytes of complete records in the file.
    len: u64,
    /// A write failed and its part may still be in the file.
    cut_pending: bool,
    buf: Vec<u8>,
    /// The last group handed out by `seal`, and the last one written.
    sealed: u64,
    written: u64,
}

impl LineSink {
    fn stdout() -> LineSink {
        LineSink {
            file: None,
            len: 0,
            cut_pending: false,
            buf: Vec::new(),
            sealed: 0,
            written: 0,
        }
    }

    fn file(path: &std::path::Path) -> Result<LineSink, SinkError> {
        let mut f = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let len = complete_length(&mut f)?;
        if len < f.metadata()?.len() {
            tracing::warn!(path = %path.display(), kept = len, "the output file ended in a partial line (a crash while writing); cut back to its last complete record");
            f.set_len(len)?;
        }
        Ok(LineSink {
            file: Some(f),
            len,
            ..LineSink::stdout()
        })
    }

    fn write_buffered(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => {
                if self.cut_pending {
                    f.set_len(self.len)?;
                    self.cut_pending = false;
                }
                let written = f.write_all(&self.buf).and_then(|()| f.sync_data());
                if let Err(e) = written {
                    // No partial line: back to the last complete record.
                    self.cut_pending = f.set_len(self.len).is_err();
                    return Err(e);
                }
                self.len += self.buf.len() as u64;
            }
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(&self.buf)?;
                out.flush()?;
            }
        }
        self.buf.clear();
        Ok(())
    }
}

/// The length of `f` up to and including its last newline (0 when it has
/// none).
fn complete_length(f: &mut File) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut end = f.metadata()?.len();
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut chunk[..n])?;
        if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

impl Sink for LineSink {
    fn send(
        &mut self,
        _key: &[u8],
        value: &[u8],
        _headers: &[(&str, &[u8])],
    ) -> Result<(), SinkError> {
        self.buf.extend_from_slice(value);
        if !value.ends_with(b"\n") {
            self.buf.push(b'\n');
        }
        Ok(())
    }

    fn flush(&mut self, _timeout: Duration) -> Result<(), SinkError> {
        if !self.buf.is_empty() {
            self.write_buffered()?;
        }
        self.written = self.sealed;
        Ok(())
    }

    fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    fn seal(&mut self) -> Result<u64, SinkError> {
        self.sealed += 1;
        // A failed write leaves the group unacknowledged: the pipeline
        // stalls on it and retries through `flush`.
        if self.write_buffered().is_ok() {
            self.written = self.sealed;
        }
        Ok(self.sealed)
    }

    fn is_acked(&mut self, id: u64) -> Result<bool, SinkError> {
        Ok(id <= self.written)
    }
}

/// A record whose delivery failed, kept to be sent again.
struct Failed {
    group: u64,
    key: Vec<u8>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

#[derive(Default)]
struct DeliveryState {
    failed: Vec<Failed>,
    /// Refused for good, waiting for the pipeline (still outstanding).
    refused: Vec<Refused>,
    pending_bytes: usize,
    last_error: Option<String>,
    /// Unacknowledged records per group (failed ones included).
    outstanding: std::collections::BTreeMap<u64, usize>,
    /// A send found the queue full for QUEUE_FULL_WAIT: later sends do not
    /// wait again until one gets through.
    queue_stuck: bool,
}

struct DeliveryContext {
    state: Arc<Mutex<DeliveryState>>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    /// The record's group and size.
    type DeliveryOpaque = Box<(u64, usize)>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Box<(u64, usize)>) {
        let (group, size) = *opaque;
        let mut s = self.state.lock().expect("delivery state lock");
        s.pending_bytes = s.pending_bytes.saturating_sub(size);
        if result.is_ok() {
            if let Some(n) = s.outstanding.get_mut(&group) {
                *n -= 1;
                if *n == 0 {
                    s.outstanding.remove(&group);
                }
            }
        }
        if let Err((e, m)) = result {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            let (key, value) = (
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            );
            if e.rdkafka_error_code().is_some_and(is_permanent) {
                s.refused.push(Refused {
                    group,
                    key,
                    value,
                    headers,
                    error: e.to_string(),
                });
                return;
            }
            s.last_error = Some(e.to_string());
            s.failed.push(Failed {
                group,
                key,
                value,
                headers,
            });
        }
    }
}

struct KafkaSink {
    /// The group records are being added to.
    open_group: u64,
    /// The largest record the producer takes (`message.max.bytes` less
    /// the framing).
    max_record: usize,
    topic: String,
    producer: BaseProducer<DeliveryContext>,
    state: Arc<Mutex<DeliveryState>>,
}

impl KafkaSink {
    fn new(
        topic: &str,
        brokers: &str,
        overrides: &std::collections::BTreeMap<String, String>,
    ) -> Result<KafkaSink, SinkError> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Never give up on a record: the service stops taking input while
            // the output is down instead (docs/operations.md §5.5).
            .set("message.timeout.ms", "0")
            // Few, large produce requests: a batch is flushed at its end
            // anyway, so lingering costs no latency beyond the batch's.
            .set("linger.ms", "50")
            .set("batch.size", "1048576")
            .set("batch.num.messages", "100000")
            // Uncompressed by default: records are small and a broker that
            // re-encodes batches pays for decompression on the shared cores
            // (on the test broker lz4 cost a fifth of the throughput,
            // BENCHMARKS.md). Set `compression.type` under
            // `[kafka.producer]` where bandwidth is the scarce resource.
            .set("compression.type", "none");
        for (k, v) in overrides {
            cfg.set(k, v);
        }
        let max_message = overrides
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES);
        let state = Arc::new(Mutex::new(DeliveryState::default()));
        let producer = cfg
            .create_with_context(DeliveryContext {
                state: state.clone(),
            })
            .map_err(|e| SinkError::Kafka(e.to_string()))?;
        Ok(KafkaSink {
            open_group: 1,
            max_record: max_message.saturating_sub(RECORD_OVERHEAD),
            topic: topic.to_string(),
            producer,
            state,
        })
    }

    /// Queues a record of `group` (`retry`: already counted as outstanding).
    fn produce(
        &self,
        group: u64,
        retry: bool,
        key: &[u8],
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<(), SinkError> {
        let size = key.len() + value.len();
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let mut record = BaseRecord::with_opaque_to(&self.topic, Box::new((group, size)))
            .key(key)
            .payload(value);
        if !headers.is_empty() {
            record = record.headers(h);
        }
        {
            let mut s = self.state.lock().expect("delivery state lock");
            s.pending_bytes += size;
            if !retry {
                *s.outstanding.entry(group).or_insert(0) += 1;
            }
        }
        let stuck = self.state.lock().expect("delivery state lock").queue_stuck;
        let mut full_since: Option<std::time::Instant> = None;
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    if stuck {
                        self.state.lock().expect("delivery state lock").queue_stuck = false;
                    }
                    return Ok(());
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) if !stuck && full_since.is_none_or(|t| t.elapsed() < QUEUE_FULL_WAIT) => {
                    // The client queue is full: serve delivery reports and
                    // wait a little; this is the backpressure that slows
                    // input. Past QUEUE_FULL_WAIT the record is kept as
                    // failed instead, so the pipeline's own wait (which
                    // keeps the group membership and sees a stop) takes
                    // over.
                    full_since.get_or_insert_with(std::time::Instant::now);
                    record = r;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => {
                    // Not queued: refused for good, or kept as failed to be
                    // sent again.
                    let mut s = self.state.lock().expect("delivery state lock");
                    s.pending_bytes = s.pending_bytes.saturating_sub(size);
                    let owned_headers = headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_vec()))
                        .collect();
                    if e.rdkafka_error_code().is_some_and(is_permanent) {
                        s.refused.push(Refused {
                            group,
                            key: key.to_vec(),
                            value: value.to_vec(),
                            headers: owned_headers,
                            error: e.to_string(),
                        });
                        return Ok(());
                    }
                    if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) {
                        s.queue_stuck = true;
                    }
                    s.last_error = Some(e.to_string());
                    s.failed.push(Failed {
                        group,
                        key: key.to_vec(),
                        value: value.to_vec(),
                        headers: owned_headers,
                    });
                    return Ok(());
                }
            }
        }
    }
}

impl Sink for KafkaSink {
    fn send(
        &mut self,
        key: &[u8],
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<(), SinkError> {
        self.producer.poll(Duration::ZERO);
        self.produce(self.open_group, false, key, value, headers)
    }

    fn flush(&mut self, timeout: Duration) -> Result<(), SinkError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.resend_failed()?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let flushed = self.producer.flush(remaining);
            let s = self.state.lock().expect("delivery state lock");
            if flushed.is_ok() && s.failed.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let pending = self.producer.in_flight_count().max(0) as usize + s.failed.len();
                return Err(match &s.last_error {
                    Some(e) if !s.failed.is_empty() => SinkError::Kafka(e.clone()),
                    _ => SinkError::Timeout(timeout, pending),
                });
            }
        }
    }

    fn pending_bytes(&self) -> usize {
        self.state
            .lock()
            .expect("delivery state lock")
            .pending_bytes
    }

    fn seal(&mut self) -> Result<u64, SinkError> {
        let id = self.open_group;
        self.open_group += 1;
        // Send what lingers now: the checkpoint waits for it.
        self.producer.poll(Duration::ZERO);
        Ok(id)
    }

    fn is_acked(&mut self, id: u64) -> Result<bool, SinkError> {
        self.producer.poll(Duration::ZERO);
        self.resend_failed()?;
        let s = self.state.lock().expect("delivery state lock");
        Ok(s.outstanding.range(..=id).next().is_none())
    }

    fn max_record_bytes(&self) -> Option<usize> {
        Some(self.max_record)
    }

    fn take_refused(&mut self) -> Vec<Refused> {
        self.producer.poll(Duration::ZERO);
        std::mem::take(&mut self.state.lock().expect("delivery state lock").refused)
    }

    fn resolve(&mut self, group: u64) {
        let mut s = self.state.lock().expect("delivery state lock");
        if let Some(n) = s.outstanding.get_mut(&group) {
            *n -= 1;
            if *n == 0 {
                s.outstanding.remove(&group);
            }
        }
    }
}

impl KafkaSink {
    fn resend_failed(&self) -> Result<(), SinkError> {
        let failed = std::mem::take(&mut self.state.lock().expect("delivery state lock").failed);
        let mut rest = failed.into_iter();
        while let Some(f) = rest.next() {
            let headers: Vec<(&str, &[u8])> = f
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            self.produce(f.group, true, &f.key, &f.value, &headers)?;
            let mut s = self.state.lock().expect("delivery state lock");
            if !s.failed.is_empty() {
                // Failed again: keep the rest for the next retry rather
                // than meet the same error once per record.
                s.failed.extend(rest);
                break;
            }
        }
        Ok(())
    }
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
        let s = open(&Target::Kafka("t".into()), "127.0.0.1:1", &o).unwrap();
        assert_eq!(s.max_record_bytes(), Some(200_000 - RECORD_OVERHEAD));
        let d = open(
            &Target::Kafka("t".into()),
            "127.0.0.1:1",
            &Default::default(),
        )
        .unwrap();
        assert_eq!(
            d.max_record_bytes(),
            Some(DEFAULT_MESSAGE_MAX_BYTES - RECORD_OVERHEAD)
        );
        let p = std::env::temp_dir().join(format!("tm-sink-max-{}.jsonl", std::process::id()));
        let f = open(&Target::File(p.clone()), "", &Default::default()).unwrap();
        assert_eq!(f.max_record_bytes(), None);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn file_sink_appends_and_syncs_on_flush() {
        let p = std::env::temp_dir().join(format!("tm-sink-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let mut s = open(&Target::File(p.clone()), "", &Default::default()).unwrap();
        s.send(b"k", b"{\"a\":1}", &[]).unwrap();
        assert_eq!(s.pending_bytes(), 8);
        assert_eq!(std::fs::read(&p).unwrap(), b"");
        s.flush(Duration::from_secs(1)).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}\n");
        assert_eq!(s.pending_bytes(), 0);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_file_cut_by_a_crash_is_cut_back_to_its_last_complete_line() {
        let p = std::env::temp_dir().join(format!("tm-sink-cut-{}.jsonl", std::process::id()));
        std::fs::write(&p, b"{\"a\":1}\n{\"b\":").unwrap();
        let mut s = open(&Target::File(p.clone()), "", &Default::default()).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}\n");
        s.send(b"k", b"{\"b\":2}", &[]).unwrap();
        s.flush(Duration::from_secs(1)).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}\n{\"b\":2}\n");
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_full_disk_leaves_no_partial_line_and_the_batch_unacknowledged_until_space_is_back() {
        let Some(fs) = crate::small_fs::small_fs("sinkfull", 1) else {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        };
        let p = fs.0.join("out.jsonl");
        let mut s = open(&Target::File(p.clone()), "", &Default::default()).unwrap();
        s.send(b"k", b"{\"first\":1}", &[]).unwrap();
        let g1 = s.seal().unwrap();
        assert!(s.is_acked(g1).unwrap());
        let filler = fs.fill();
        // A batch larger than what is left: the write fails part way.
        let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(100_000));
        for _ in 0..3 {
            s.send(b"k", big.as_bytes(), &[]).unwrap();
        }
        let g2 = s.seal().unwrap();
        assert!(
            !s.is_acked(g2).unwrap(),
            "a batch not written is not acknowledged"
        );
        assert!(s.flush(Duration::from_secs(1)).is_err());
        let text = std::fs::read(&p).unwrap();
        assert_eq!(text, b"{\"first\":1}\n", "no partial line, nothing twice");
        std::fs::remove_file(&filler).unwrap();
        s.flush(Duration::from_secs(1)).unwrap();
        assert!(s.is_acked(g2).unwrap());
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(text
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    }

    #[test]
    fn a_full_producer_queue_does_not_block_the_caller() {
        // An unreachable broker and room for 5 records: the 6th finds the
        // queue full. It waits a little, then is kept as failed, and the
        // ones after it do not wait again.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut o = std::collections::BTreeMap::new();
            o.insert("queue.buffering.max.messages".to_string(), "5".to_string());
            o.insert("message.timeout.ms".to_string(), "600000".to_string());
            let mut s = open(&Target::Kafka("t".into()), "127.0.0.1:1", &o).unwrap();
            let t = std::time::Instant::now();
            for i in 0..30 {
                s.send(b"k", format!("{{\"i\":{i}}}").as_bytes(), &[])
                    .unwrap();
            }
            let sent_in = t.elapsed();
            let flushed = s.flush(Duration::from_millis(200));
            let _ = tx.send((sent_in, flushed.is_err()));
        });
        let (sent_in, flush_failed) = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("sending into a full queue blocked the caller");
        assert!(sent_in < Duration::from_secs(5), "{sent_in:?}");
        assert!(
            flush_failed,
            "the records are not delivered: the flush says so"
        );
    }
}
