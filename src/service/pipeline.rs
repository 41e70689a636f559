//! The source → match → sink loop with checkpoints (SPEC §5.1, §5.5, §5.7).
//!
//! # Data flow and states
//!
//! One thread owns the Kafka consumer and runs the loop:
//!
//! 1. **Poll** a message; parse it (a bad one goes to the dead letters with
//!    its reason and coordinates), match it, hand its match records to the
//!    output sink, and note `processed[partition] = offset + 1`. Messages of
//!    a partition arrive in order and every one is either matched or a dead
//!    letter, so `processed` is a contiguous low-water mark: nothing before
//!    it is skipped.
//! 2. **Close the batch** after `batch_max_messages` or `batch_max_wait`:
//!    its records become one *group* per output (the sink's `seal`), and the
//!    batch's offsets wait in a queue of closed batches. The loop goes on
//!    polling; on every turn it checks, without blocking, which groups the
//!    output has acknowledged, and for the newest closed batch whose groups
//!    (and all before) are acknowledged it writes the offsets in **one
//!    synced RocksDB WriteBatch**, then commits them to the group (async) so
//!    lag tools and other instances see them.
//! 3. **Output behind or down** (a closed batch unacknowledged for 5 s,
//!    more than 8 closed batches waiting, or `max_in_flight_bytes` pending):
//!    the loop flushes everything; if that fails it pauses every
//!    assigned partition — fetching stops, nothing queues up — and keeps
//!    polling (so the group membership and rebalances stay served) while it
//!    retries the flush with capped exponential backoff. When the flush
//!    succeeds it checkpoints and resumes. A broker that disappears is the
//!    same: polls return nothing, the flush waits, the checkpoint is not
//!    advanced until the records are acknowledged.
//!
//! # Assignment and revocation
//!
//! The consumer context's `rebalance` runs inside `poll`, on this thread.
//! On **assign** it writes start offsets into the assignment itself (trap 1
//! and 4 of the Kafka notes): the RocksDB checkpoint if there is one, else
//! the group's committed offset (a partition that moved from another
//! instance), else the configured start position; paused state is
//! re-applied. On **revoke** it drains: flushes outputs up to the drain
//! deadline, checkpoints and commits synchronously, then forgets the
//! partitions' RocksDB checkpoints (the next owner starts from the group's
//! offset; should the partition come back, so do we) and releases them.
//!
//! `auto.offset.reset` is `error`: when a checkpoint is older than the log
//! start, the lost range is reported (error log and metric) and consumption
//! continues from the log start.
//!
//! # Shutdown
//!
//! Stop polling new messages → flush the output (up to the drain
//! deadline) → checkpoint → commit synchronously → leave the group.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Message};

use super::metrics::{now_ms, Metrics, PartitionStatus};
use super::reload::{Active, Searches};
use super::sink::{self, base64, Sink, SinkError};
use crate::checkpoint::{Checkpoints, TopicPartition};
use crate::config::{Config, StartPosition, Target};
use crate::document::Document;
use crate::record::{now_rfc3339, write_record, InputCoords, RecordContext};

/// Shutdown requests: 0 running, 1 graceful, 2 immediate.
pub type ShutdownFlag = Arc<AtomicU8>;

/// Why the pipeline stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The consumer could not be created or subscribed.
    #[error("Kafka consumer: {0}")]
    Kafka(#[from] KafkaError),
    /// An output could not be opened.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] crate::checkpoint::StoreError),
}

/// Dead letters: the original bytes with the reason and coordinates.
struct DeadLetters {
    sink: Box<dyn Sink>,
    /// JSONL target: one JSON object per bad message (bytes in base64);
    /// Kafka: the original value and key, reason and coordinates as headers.
    json: bool,
}

impl DeadLetters {
    fn send(&mut self, msg: &BorrowedMessage<'_>, reason: &str) -> Result<(), SinkError> {
        let value = msg.payload().unwrap_or_default();
        let key = msg.key().unwrap_or_default();
        if self.json {
            let line = serde_json::json!({
                "reason": reason,
                "topic": msg.topic(),
                "partition": msg.partition(),
                "offset": msg.offset(),
                "key_base64": base64(key),
                "value_base64": base64(value),
                "value_preview": String::from_utf8_lossy(&value[..value.len().min(200)]),
                "failed_at": now_rfc3339(),
            });
            self.sink.send(key, line.to_string().as_bytes(), &[])
        } else {
            let partition = msg.partition().to_string();
            let offset = msg.offset().to_string();
            self.sink.send(
                key,
                value,
                &[
                    ("reason", reason.as_bytes()),
                    ("topic", msg.topic().as_bytes()),
                    ("partition", partition.as_bytes()),
                    ("offset", offset.as_bytes()),
                ],
            )
        }
    }
}

/// A closed batch: the output groups holding its records and the offsets
/// it advances to.
struct Sealed {
    output: u64,
    dead: u64,
    offsets: Vec<(TopicPartition, i64)>,
    at: Instant,
}

/// A batch unacknowledged for this long means the output is down.
const STALL: Duration = Duration::from_secs(5);
/// Most closed batches waiting for acknowledgements before input stops.
const MAX_SEALED: usize = 8;

/// State shared by the loop and the rebalance callback (which runs inside
/// `poll` on the same thread, so the lock is never contended; the loop
/// never holds it while polling).
struct Shared {
    store: Arc<Checkpoints>,
    output: Box<dyn Sink>,
    dead: DeadLetters,
    owned: BTreeSet<TopicPartition>,
    /// Next offset after the last processed message.
    processed: BTreeMap<TopicPartition, i64>,
    /// Next offset last written to RocksDB.
    checkpointed: BTreeMap<TopicPartition, i64>,
    output_down: bool,
    /// Closed batches waiting for their acknowledgements, oldest first.
    sealed: std::collections::VecDeque<Sealed>,
    start: StartPosition,
    drain_deadline: Duration,
    metrics: Arc<Metrics>,
}

impl Shared {
    /// Closes the current batch: its records form one group per output,
    /// and its offsets are checkpointed once both groups are acknowledged.
    fn seal(&mut self) -> Result<(), SinkError> {
        let output = self.output.seal()?;
        let dead = self.dead.sink.seal()?;
        let offsets = self
            .processed
            .iter()
            .map(|(tp, &n)| (tp.clone(), n))
            .collect();
        self.sealed.push_back(Sealed {
            output,
            dead,
            offsets,
            at: Instant::now(),
        });
        Ok(())
    }

    /// Checkpoints every closed batch whose records are all acknowledged
    /// (without waiting); returns whether the oldest one still waiting has
    /// waited longer than [`STALL`] or too many are waiting.
    fn advance(&mut self, consumer: &BaseConsumer<Ctx>) -> Result<bool, SinkError> {
        let mut done = None;
        while let Some(front) = self.sealed.front() {
            if self.output.is_acked(front.output)? && self.dead.sink.is_acked(front.dead)? {
                done = self.sealed.pop_front().map(|s| s.offsets);
            } else {
                break;
            }
        }
        if let Some(offsets) = done {
            self.write_checkpoint(consumer, offsets, CommitMode::Async);
        }
        Ok(self.sealed.len() > MAX_SEALED
            || self.sealed.front().is_some_and(|f| f.at.elapsed() > STALL))
    }

    /// Flushes the outputs (waiting for every acknowledgement) and writes
    /// the processed offsets in one WriteBatch, then commits them.
    fn checkpoint(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
        timeout: Duration,
        mode: CommitMode,
    ) -> Result<(), SinkError> {
        self.output.flush(timeout)?;
        self.dead.sink.flush(timeout)?;
        self.sealed.clear();
        let offsets = self
            .processed
            .iter()
            .map(|(tp, &n)| (tp.clone(), n))
            .collect();
        self.write_checkpoint(consumer, offsets, mode);
        Ok(())
    }

    /// Writes the offsets that advance an owned partition's checkpoint.
    fn write_checkpoint(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
        offsets: Vec<(TopicPartition, i64)>,
        mode: CommitMode,
    ) {
        let advance: Vec<(TopicPartition, i64)> = offsets
            .into_iter()
            .filter(|(tp, next)| {
                self.owned.contains(tp) && self.checkpointed.get(tp).is_none_or(|c| next > c)
            })
            .collect();
        if advance.is_empty() {
            return;
        }
        if let Err(e) = self.store.commit(&advance, &[]) {
            // Not checkpointed: the records are delivered, so a crash now
            // only re-emits them (same match ids).
            tracing::error!(error = %e, "checkpoint write failed; will retry with the next batch");
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (tp, next) in advance {
            let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(next));
            self.checkpointed.insert(tp, next);
        }
        self.metrics.checkpoints.fetch_add(1, Relaxed);
        self.metrics.last_checkpoint_ms.store(now_ms(), Relaxed);
        self.publish_status();
        if let Err(e) = consumer.commit(&tpl, mode) {
            tracing::warn!(error = %e, "committing offsets to the group failed; the RocksDB checkpoint stands");
        }
    }

    fn process(
        &mut self,
        msg: &BorrowedMessage<'_>,
        active: &Active,
        scratch: &mut super::reload::ActiveScratch,
        buf: &mut Vec<u8>,
        matched_at: &str,
        max_bytes: usize,
    ) -> Result<(), SinkError> {
        let tp = TopicPartition::new(msg.topic(), msg.partition());
        if !self.owned.contains(&tp) {
            return Ok(()); // fetched before a revocation; the next owner reads it
        }
        self.metrics.documents_in.fetch_add(1, Relaxed);
        let payload = msg.payload().unwrap_or_default();
        match Document::parse(payload, max_bytes) {
            Ok(doc) => {
                let coords = InputCoords {
                    topic: msg.topic(),
                    partition: msg.partition(),
                    offset: msg.offset(),
                };
                let ctx = RecordContext {
                    matched_at,
                    input: Some(coords),
                    searches_version: Some(active.meta.version),
                    class: None,
                };
                let mut matched = false;
                let mut failed = None;
                let (output, metrics) = (&mut self.output, &self.metrics);
                active.for_each_match(&doc, scratch, |matcher, m| {
                    matched = true;
                    if failed.is_some() {
                        return;
                    }
                    buf.clear();
                    let id = write_record(buf, matcher, &doc, m, &ctx);
                    match output.send(id.as_bytes(), buf.strip_suffix(b"\n").unwrap_or(buf), &[]) {
                        Ok(()) => {
                            metrics.records_out.fetch_add(1, Relaxed);
                        }
                        Err(e) => failed = Some(e),
                    }
                });
                if matched {
                    self.metrics.documents_matched.fetch_add(1, Relaxed);
                }
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            Err(reason) => {
                let reason = reason.to_string();
                tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), %reason, "bad message sent to the dead letters");
                self.metrics.documents_bad.fetch_add(1, Relaxed);
                self.dead.send(msg, &reason)?;
            }
        }
        self.processed.insert(tp, msg.offset() + 1);
        Ok(())
    }

    fn publish_status(&self) {
        let mut parts = self.metrics.partitions.lock().expect("status lock");
        parts.retain(|k, _| self.owned.iter().any(|tp| tp.to_string() == *k));
        for tp in &self.owned {
            let e = parts
                .entry(tp.to_string())
                .or_insert_with(PartitionStatus::default);
            e.checkpoint = self.checkpointed.get(tp).copied();
        }
        self.metrics
            .assigned_partitions
            .store(self.owned.len() as i64, Relaxed);
    }
}

/// The consumer context: rebalances (see the module doc).
pub(crate) struct Ctx {
    shared: Arc<Mutex<Shared>>,
}

impl ClientContext for Ctx {}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut s = lock(&self.shared);
                let mut without = TopicPartitionList::new();
                let assigned: Vec<TopicPartition> = tpl
                    .elements()
                    .iter()
                    .map(|e| TopicPartition::new(e.topic(), e.partition()))
                    .collect();
                for tp in assigned {
                    match s.store.get(&tp) {
                        Ok(Some(next)) => {
                            let _ = tpl.set_partition_offset(
                                &tp.topic,
                                tp.partition,
                                Offset::Offset(next),
                            );
                            tracing::info!(partition = %tp, next, "resuming from the checkpoint");
                            s.checkpointed.insert(tp, next);
                        }
                        Ok(None) => {
                            let _ = without.add_partition(&tp.topic, tp.partition);
                        }
                        Err(err) => {
                            tracing::error!(partition = %tp, error = %err, "cannot read the checkpoint; using the group's offset");
                            let _ = without.add_partition(&tp.topic, tp.partition);
                        }
                    }
                }
                if without.count() > 0 {
                    let committed =
                        consumer.committed_offsets(without.clone(), Duration::from_secs(10));
                    for e in without.elements() {
                        let group = committed
                            .as_ref()
                            .ok()
                            .and_then(|c| c.find_partition(e.topic(), e.partition()))
                            .map(|c| c.offset());
                        let (offset, from) = match group {
                            Some(Offset::Offset(o)) if o >= 0 => (Offset::Offset(o), "group"),
                            _ => match s.start {
                                StartPosition::Earliest => (Offset::Beginning, "earliest"),
                                StartPosition::Latest => (Offset::End, "latest"),
                            },
                        };
                        tracing::info!(
                            topic = e.topic(),
                            partition = e.partition(),
                            ?offset,
                            from,
                            "no checkpoint for partition"
                        );
                        let _ = tpl.set_partition_offset(e.topic(), e.partition(), offset);
                    }
                }
                let result = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "assigning partitions failed");
                }
                for e in tpl.elements() {
                    let tp = TopicPartition::new(e.topic(), e.partition());
                    if let Offset::Offset(o) = e.offset() {
                        s.processed.entry(tp.clone()).or_insert(o);
                    }
                    s.owned.insert(tp);
                }
                if s.output_down {
                    // A paused partition stays paused across a rebalance only
                    // if we say so again (trap 8).
                    let _ = consumer.pause(tpl);
                }
                tracing::info!(
                    partitions = tpl.count(),
                    owned = s.owned.len(),
                    "partitions assigned"
                );
                s.publish_status();
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let mut s = lock(&self.shared);
                let deadline = s.drain_deadline;
                if let Err(e) = s.checkpoint(consumer, deadline, CommitMode::Sync) {
                    tracing::warn!(error = %e, "revocation: output not drained in time; the next owner re-reads from the last checkpoint");
                }
                let revoked: Vec<TopicPartition> = tpl
                    .elements()
                    .iter()
                    .map(|e| TopicPartition::new(e.topic(), e.partition()))
                    .collect();
                // The next owner starts from the group's offset; so do we if
                // the partition comes back.
                if let Err(e) = s.store.commit(&[], &revoked) {
                    tracing::error!(error = %e, "cannot forget revoked checkpoints");
                }
                for tp in &revoked {
                    s.owned.remove(tp);
                    s.processed.remove(tp);
                    s.checkpointed.remove(tp);
                }
                let result = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "releasing partitions failed");
                }
                tracing::info!(
                    partitions = revoked.len(),
                    owned = s.owned.len(),
                    "partitions revoked"
                );
                s.publish_status();
            }
            other => {
                tracing::error!(error = ?other, "rebalance error; releasing the assignment");
                let _ = consumer.unassign();
                let mut s = lock(&self.shared);
                s.owned.clear();
                s.processed.clear();
                s.checkpointed.clear();
                s.publish_status();
            }
        }
    }
}

/// Everything the loop needs, built from the configuration.
pub struct Pipeline {
    consumer: BaseConsumer<Ctx>,
    shared: Arc<Mutex<Shared>>,
    searches: Arc<Searches>,
    metrics: Arc<Metrics>,
    config: Config,
}

impl Pipeline {
    /// Opens the state store and outputs and creates the consumer.
    ///
    /// # Errors
    ///
    /// When any of them cannot be opened.
    pub fn new(
        config: Config,
        searches: Arc<Searches>,
        store: Arc<Checkpoints>,
        metrics: Arc<Metrics>,
    ) -> Result<Pipeline, PipelineError> {
        let instance_id = match &config.instance_id {
            Some(id) => id.clone(),
            None => store.instance_id(&config.group_id)?,
        };
        let output = sink::open(&config.output, &config.brokers, &config.producer_overrides)?;
        let dead = DeadLetters {
            sink: sink::open(
                &config.dead_letter,
                &config.brokers,
                &config.producer_overrides,
            )?,
            json: !matches!(config.dead_letter, Target::Kafka(_)),
        };
        let shared = Arc::new(Mutex::new(Shared {
            store,
            output,
            dead,
            owned: BTreeSet::new(),
            processed: BTreeMap::new(),
            checkpointed: BTreeMap::new(),
            output_down: false,
            sealed: std::collections::VecDeque::new(),
            start: config.start,
            drain_deadline: config.drain_deadline,
            metrics: metrics.clone(),
        }));
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "error")
            // Eager assignment works with every broker; cooperative-sticky
            // (handled too, see `rebalance`) can be set in [kafka.consumer]
            // where the broker supports incremental rebalancing.
            .set("partition.assignment.strategy", "range")
            .set("enable.partition.eof", "false")
            .set("queued.max.messages.kbytes", "16384")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("max.poll.interval.ms", "300000");
        // Static membership (KIP-345): a restarted instance gets its
        // partitions back at once instead of after the session timeout.
        cfg.set("group.instance.id", &instance_id);
        tracing::info!(instance_id = %instance_id, "group member id");
        for (k, v) in &config.consumer_overrides {
            cfg.set(k, v);
        }
        let consumer: BaseConsumer<Ctx> = cfg.create_with_context(Ctx {
            shared: shared.clone(),
        })?;
        let topics: Vec<&str> = config.input_topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(Pipeline {
            consumer,
            shared,
            searches,
            metrics,
            config,
        })
    }

    /// Runs until `shutdown` is set, then shuts down in the documented
    /// order.
    ///
    /// # Errors
    ///
    /// Unrecoverable output errors (a file that cannot be written).
    pub fn run(self, shutdown: ShutdownFlag) -> Result<(), PipelineError> {
        let mut active = self.searches.current();
        let mut scratch = active.scratch();
        let mut buf = Vec::with_capacity(4096);
        let mut matched_at = now_rfc3339();
        let mut matched_at_refreshed = Instant::now();
        let mut batch_started: Option<Instant> = None;
        let mut in_batch = 0usize;
        let mut last_advance = Instant::now();
        let mut last_poll_error: Option<Instant> = None;
        tracing::info!(topics = ?self.config.input_topics, group = %self.config.group_id, "consuming");
        while shutdown.load(Relaxed) == 0 {
            // A new searches version takes over between batches.
            // (A merged delta comes back under the same number.)
            if batch_started.is_none() && !self.searches.is_current(&active) {
                let next = self.searches.current();
                if next.meta.version != active.meta.version {
                    tracing::info!(
                        version = next.meta.version,
                        "matching with the new searches version"
                    );
                }
                active = next;
                scratch = active.scratch();
            }
            let wait = match batch_started {
                Some(t) => self
                    .config
                    .batch_max_wait
                    .saturating_sub(t.elapsed())
                    .max(Duration::from_millis(1)),
                None => Duration::from_millis(100),
            };
            match self.consumer.poll(wait) {
                Some(Ok(msg)) => {
                    if matched_at_refreshed.elapsed() >= Duration::from_millis(1) {
                        matched_at = now_rfc3339();
                        matched_at_refreshed = Instant::now();
                    }
                    let mut s = lock(&self.shared);
                    s.process(
                        &msg,
                        &active,
                        &mut scratch,
                        &mut buf,
                        &matched_at,
                        self.config.max_message_bytes,
                    )?;
                    drop(s);
                    batch_started.get_or_insert_with(Instant::now);
                    in_batch += 1;
                }
                Some(Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange,
                ))) => self.recover_lost_ranges(),
                Some(Err(e)) => {
                    // Broker down, transport errors: librdkafka reconnects by
                    // itself; report at most every 10 s.
                    if last_poll_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(error = %e, "consumer error (retrying)");
                        last_poll_error = Some(Instant::now());
                    }
                }
                None => {}
            }
            let due = batch_started.is_some_and(|t| t.elapsed() >= self.config.batch_max_wait)
                || in_batch >= self.config.batch_max_messages;
            // Acknowledgements are looked at every few milliseconds, not per
            // message: serving delivery reports has a cost of its own.
            if !due && last_advance.elapsed() < Duration::from_millis(5) {
                continue;
            }
            last_advance = Instant::now();
            let mut s = lock(&self.shared);
            if due {
                s.seal()?;
                self.metrics
                    .observe_batch(batch_started.take().map_or(Duration::ZERO, |t| t.elapsed()));
                in_batch = 0;
            }
            // Checkpoint what the output has acknowledged; when it lags too
            // far (stalled, too many batches or bytes waiting), stop taking
            // input and wait for it, pausing if it is down.
            let stalled = s.advance(&self.consumer)?
                || s.output.pending_bytes() >= self.config.max_in_flight_bytes;
            drop(s);
            if stalled {
                self.finish_batch(&shutdown, None);
            }
        }
        self.shutdown(&shutdown);
        Ok(())
    }

    /// Flushes and checkpoints, pausing input and retrying with backoff
    /// while the output fails. Gives up only on an immediate shutdown or
    /// after `give_up_at`.
    fn finish_batch(&self, shutdown: &ShutdownFlag, give_up_at: Option<Instant>) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            let result = lock(&self.shared).checkpoint(
                &self.consumer,
                Duration::from_secs(2),
                CommitMode::Async,
            );
            match result {
                Ok(()) => {
                    let mut s = lock(&self.shared);
                    if s.output_down {
                        s.output_down = false;
                        self.metrics.output_down.store(0, Relaxed);
                        drop(s);
                        if let Ok(a) = self.consumer.assignment() {
                            let _ = self.consumer.resume(&a);
                        }
                        tracing::info!("output recovered; consumption resumed");
                    } else {
                        s.publish_status();
                    }
                    return true;
                }
                Err(e) => {
                    self.metrics.output_errors.fetch_add(1, Relaxed);
                    let mut s = lock(&self.shared);
                    if !s.output_down {
                        s.output_down = true;
                        self.metrics.output_down.store(1, Relaxed);
                        tracing::error!(error = %e, "output failing; consumption paused until it recovers");
                    }
                    drop(s);
                    if let Ok(a) = self.consumer.assignment() {
                        let _ = self.consumer.pause(&a);
                    }
                    if shutdown.load(Relaxed) >= 2
                        || give_up_at.is_some_and(|t| Instant::now() >= t)
                    {
                        return false;
                    }
                    // Keep the group membership alive while waiting; a
                    // message fetched before the pause is still processed.
                    let until = Instant::now() + backoff;
                    while Instant::now() < until {
                        if let Some(Ok(msg)) = self
                            .consumer
                            .poll(until.saturating_duration_since(Instant::now()))
                        {
                            let active = self.searches.current();
                            let mut scratch = active.scratch();
                            let mut buf = Vec::new();
                            let at = now_rfc3339();
                            let _ = lock(&self.shared).process(
                                &msg,
                                &active,
                                &mut scratch,
                                &mut buf,
                                &at,
                                self.config.max_message_bytes,
                            );
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// After `auto.offset.reset=error`: for every owned partition whose next
    /// offset fell below the log start, report the lost range and continue
    /// from the log start.
    fn recover_lost_ranges(&self) {
        let owned: Vec<(TopicPartition, i64)> = {
            let s = lock(&self.shared);
            s.owned
                .iter()
                .map(|tp| (tp.clone(), s.processed.get(tp).copied().unwrap_or(0)))
                .collect()
        };
        for (tp, next) in owned {
            let Ok((low, _high)) =
                self.consumer
                    .fetch_watermarks(&tp.topic, tp.partition, Duration::from_secs(5))
            else {
                continue;
            };
            if next < low {
                tracing::error!(partition = %tp, lost_from = next, lost_to = low, lost = low - next,
                    "messages were deleted by retention before they were processed; continuing from the log start");
                self.metrics
                    .retention_lost
                    .fetch_add((low - next) as u64, Relaxed);
                lock(&self.shared).processed.insert(tp.clone(), low);
                if let Err(e) = self.consumer.seek(
                    &tp.topic,
                    tp.partition,
                    Offset::Offset(low),
                    Duration::from_secs(5),
                ) {
                    tracing::error!(partition = %tp, error = %e, "seek to the log start failed");
                }
            }
        }
    }

    /// Stop polling → flush to the deadline → checkpoint → commit
    /// synchronously → leave the group.
    fn shutdown(self, shutdown: &ShutdownFlag) {
        tracing::info!("shutting down: draining in-flight work");
        if let Ok(a) = self.consumer.assignment() {
            let _ = self.consumer.pause(&a);
        }
        let give_up = Instant::now() + self.config.drain_deadline;
        let drained = self.finish_batch(shutdown, Some(give_up));
        if drained {
            let s = lock(&self.shared);
            let mut tpl = TopicPartitionList::new();
            for (tp, next) in &s.checkpointed {
                let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*next));
            }
            drop(s);
            if tpl.count() > 0 {
                if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
                    tracing::warn!(error = %e, "final commit to the group failed; the RocksDB checkpoint stands");
                }
            }
            tracing::info!("drained and checkpointed");
        } else {
            tracing::warn!("output not drained before the deadline; unacknowledged messages will be re-read (at least once)");
        }
        self.consumer.unsubscribe();
        let _ = self.consumer.poll(Duration::from_millis(100));
        drop(self.consumer);
        tracing::info!("left the group");
    }
}
