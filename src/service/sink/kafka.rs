//! The Kafka output: an idempotent producer whose delivery reports are
//! the acknowledgements; failed deliveries kept and sent again, refused
//! ones set aside (module doc of `sink`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::kafka_client::{KafkaClients, Role};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message};

#[cfg(test)]
use super::open;
use super::{is_permanent, Refused, Sink, SinkError, DEFAULT_MESSAGE_MAX_BYTES, RECORD_OVERHEAD};
#[cfg(test)]
use crate::config::Target;

/// Longest a send waits for room in a full producer queue before the record
/// is kept as failed (the output is then reported down and retried).
const QUEUE_FULL_WAIT: Duration = Duration::from_secs(1);

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

impl ClientContext for DeliveryContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::kafka_client::log_client_error(&error, reason);
    }
}

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

pub(super) struct KafkaSink {
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
    pub(super) fn new(topic: &str, clients: &KafkaClients) -> Result<KafkaSink, SinkError> {
        let cfg = clients.config(
            Role::Producer,
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                // Never give up on a record: the service stops taking input
                // while the output is down instead (docs/operations.md §5.5).
                ("message.timeout.ms", "0"),
                // Few, large produce requests: a batch is flushed at its end
                // anyway, so lingering costs no latency beyond the batch's.
                ("linger.ms", "50"),
                ("batch.size", "1048576"),
                ("batch.num.messages", "100000"),
                // Uncompressed by default: records are small and a broker
                // that re-encodes batches pays for decompression on the
                // shared cores (on the test broker lz4 cost a fifth of the
                // throughput, BENCHMARKS.md). Set `compression.type` under
                // `[kafka.producer]` where bandwidth is the scarce resource.
                ("compression.type", "none"),
            ],
        );
        let max_message = clients
            .get(Role::Producer, "message.max.bytes")
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
        let stuck = {
            let mut s = self.state.lock().expect("delivery state lock");
            s.pending_bytes += size;
            if !retry {
                *s.outstanding.entry(group).or_insert(0) += 1;
            }
            s.queue_stuck
        };
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

#[cfg(test)]
mod tests {
    use super::*;
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
            let mut s = open(
                &Target::Kafka("t".into()),
                &crate::kafka_client::KafkaClients::with_producer("127.0.0.1:1", o),
            )
            .unwrap();
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
