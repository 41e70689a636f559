//! The source → match → sink loop with checkpoints (SPEC §5.1, §5.5, §5.7).
//!
//! # Data flow and states
//!
//! One thread owns the Kafka consumer and runs the loop:
//!
//! 1. **Poll** a message; parse it (a bad one goes to the dead letters with
//!    its reason and coordinates), match it under the per-document guard
//!    (`guard`: a document that spends the work budget or makes matching
//!    panic becomes a dead letter; the loop goes on), hand its match records
//!    to the output sink (a record over the output's size limit sends the
//!    document to the dead letters), and note
//!    `processed[partition] = offset + 1`. Messages of
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
//! re-applied. A checkpoint is stale when the group's offset is past what
//! this instance last committed (its checkpoint, or the low-water mark of
//! its unfinished drain): another instance processed the partition since,
//! so the group's offset wins and the partition's drain ranges here are
//! dropped. On **revoke** it drains: flushes outputs up to the drain
//! deadline, checkpoints and commits synchronously, then forgets the
//! partitions' RocksDB checkpoints and drain ranges (the next owner starts
//! from the group's offset; should the partition come back, so do we) and
//! releases them — except when the service stops: then the checkpoints and
//! unfinished drains stay, and the next start resumes them without redoing
//! finished classes (a static member gets its partitions back).
//!
//! `auto.offset.reset` is `error`: when a checkpoint is older than the log
//! start, the lost range is reported (error log and metric) and consumption
//! continues from the log start.
//!
//! # Shutdown
//!
//! Stop polling new messages → flush the output (up to the drain
//! deadline) → checkpoint → commit synchronously → leave the group. A stop
//! asked while the output is down waits for it no longer than the drain
//! deadline either; what was not acknowledged is read again next time.

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

use super::dead_letters::{Coords, DeadLetters};
use super::drain::{Advance, Finish, Inbox, JobKind, Jobs, LanePlan, Request, SLICE};
use super::guard::{self, DocRecords, Outcome};
use super::metrics::{Metrics, PartitionStatus};
use super::reload::{Active, ActiveScratch, Masks, Searches};
use super::sink::{self, Sink, SinkError};
use crate::checkpoint::{Checkpoints, TopicPartition};
use crate::config::{Config, StartPosition, Target};
use crate::document::Document;
use crate::record::{now_ms, now_rfc3339, InputCoords, RecordContext};

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

/// A closed batch: the output groups holding its records and the offsets
/// it advances to.
struct Sealed {
    output: u64,
    dead: u64,
    offsets: Vec<(TopicPartition, i64)>,
    /// The drain jobs this batch advanced, as they stood when it closed.
    jobs: Vec<(u64, Option<Vec<u8>>)>,
    /// Low-water marks of the catch-up ranges at that moment.
    lows: BTreeMap<TopicPartition, i64>,
    /// Classes and jobs whose last records are in this batch.
    finishes: Vec<Finish>,
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
    /// Catch-up and replay jobs.
    jobs: Jobs,
    /// Offsets last committed to the group.
    group_committed: BTreeMap<TopicPartition, i64>,
    /// Live documents processed (for drain reports).
    live_docs: u64,
    /// Whether this process also consumes live data (false: `replay`
    /// standalone).
    live: bool,
    /// Set when the service stops: the last revocation keeps the drain
    /// jobs and checkpoints for the next start instead of handing them on.
    closing: bool,
    /// Something was processed since the last seal.
    batch_open: bool,
    /// The records of the document being emitted (reused).
    doc_records: DocRecords,
    /// Fault tests: the id of a document whose matching panics.
    fault_panic_doc: Option<String>,
    /// Where match records go (names the topic of refused records).
    output_target: Target,
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
            jobs: self.jobs.snapshot(),
            lows: self.jobs.low_waters(),
            finishes: self.jobs.take_finishes(),
            at: Instant::now(),
        });
        self.batch_open = false;
        Ok(())
    }

    /// Checkpoints every closed batch whose records are all acknowledged
    /// (without waiting); returns whether the oldest one still waiting has
    /// waited longer than [`STALL`] or too many are waiting.
    fn advance(&mut self, consumer: &BaseConsumer<Ctx>) -> Result<bool, SinkError> {
        // Read to the end with no batch open: the last records are in the
        // newest sealed batch, or, with none waiting, already in.
        if !self.batch_open && self.jobs.has_finishes() {
            let finishes = self.jobs.take_finishes();
            match self.sealed.back_mut() {
                Some(newest) => newest.finishes.extend(finishes),
                None => {
                    let stamped = self.jobs.stamp(&finishes);
                    if let Err(e) = self.store.commit_with_jobs(&[], &[], &stamped) {
                        tracing::error!(error = %e, "cannot store the drain jobs");
                    }
                }
            }
        }
        self.reroute_refused()?;
        let mut done: Option<Sealed> = None;
        let mut jobs = BTreeMap::new();
        let mut finishes = Vec::new();
        while let Some(front) = self.sealed.front() {
            if self.output.is_acked(front.output)? && self.dead.sink.is_acked(front.dead)? {
                let mut s = self.sealed.pop_front().expect("front exists");
                jobs.extend(std::mem::take(&mut s.jobs));
                finishes.append(&mut s.finishes);
                done = Some(s);
            } else {
                break;
            }
        }
        if let Some(s) = done {
            jobs.extend(self.jobs.stamp(&finishes));
            let jobs: Vec<_> = jobs.into_iter().collect();
            self.write_checkpoint(consumer, s.offsets, &jobs, &s.lows, CommitMode::Async);
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
        self.reroute_refused()?;
        self.dead.sink.flush(timeout)?;
        let mut jobs: BTreeMap<u64, Option<Vec<u8>>> = BTreeMap::new();
        let mut finishes = Vec::new();
        for mut s in self.sealed.drain(..) {
            jobs.extend(s.jobs);
            finishes.append(&mut s.finishes);
        }
        jobs.extend(self.jobs.snapshot());
        // Everything read so far is acknowledged now.
        finishes.extend(self.jobs.take_finishes());
        jobs.extend(self.jobs.stamp(&finishes));
        self.batch_open = false;
        let offsets = self
            .processed
            .iter()
            .map(|(tp, &n)| (tp.clone(), n))
            .collect();
        let jobs: Vec<_> = jobs.into_iter().collect();
        let lows = self.jobs.low_waters();
        self.write_checkpoint(consumer, offsets, &jobs, &lows, mode);
        Ok(())
    }

    /// Writes the offsets that advance an owned partition's checkpoint and
    /// the drain jobs' cursors in one WriteBatch, then commits to the group
    /// the low-water mark of each partition: min(live checkpoint, cursors
    /// of its unfinished catch-up classes).
    fn write_checkpoint(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
        offsets: Vec<(TopicPartition, i64)>,
        jobs: &[(u64, Option<Vec<u8>>)],
        lows: &BTreeMap<TopicPartition, i64>,
        mode: CommitMode,
    ) {
        let advance: Vec<(TopicPartition, i64)> = offsets
            .into_iter()
            .filter(|(tp, next)| {
                self.owned.contains(tp) && self.checkpointed.get(tp).is_none_or(|c| next > c)
            })
            .collect();
        if advance.is_empty() && jobs.is_empty() {
            return;
        }
        if let Err(e) = self.store.commit_with_jobs(&advance, &[], jobs) {
            // Not checkpointed: the records are delivered, so a crash now
            // only re-emits them (same match ids).
            tracing::error!(error = %e, "checkpoint write failed; will retry with the next batch");
            return;
        }
        for (tp, next) in advance {
            self.checkpointed.insert(tp, next);
        }
        let mut tpl = TopicPartitionList::new();
        for (tp, &next) in &self.checkpointed {
            let low = lows.get(tp).map_or(next, |&l| l.min(next));
            if self.group_committed.get(tp) != Some(&low) {
                let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(low));
                self.group_committed.insert(tp.clone(), low);
            }
        }
        self.metrics.checkpoints.fetch_add(1, Relaxed);
        self.metrics.last_checkpoint_ms.store(now_ms(), Relaxed);
        self.publish_status();
        if tpl.count() > 0 {
            if let Err(e) = consumer.commit(&tpl, mode) {
                tracing::warn!(error = %e, "committing offsets to the group failed; the RocksDB checkpoint stands");
            }
        }
    }

    fn process(
        &mut self,
        msg: &BorrowedMessage<'_>,
        active: &Active,
        scratch: &mut ActiveScratch,
        buf: &mut Vec<u8>,
        matched_at: &str,
        max_bytes: usize,
    ) -> Result<(), SinkError> {
        let tp = TopicPartition::new(msg.topic(), msg.partition());
        if !self.owned.contains(&tp) {
            return Ok(()); // fetched before a revocation; the next owner reads it
        }
        self.batch_open = true;
        if self
            .processed
            .get(&tp)
            .is_some_and(|&next| msg.offset() < next)
        {
            return Ok(()); // fetched before the live lane moved to the head
        }
        self.metrics.documents_in.fetch_add(1, Relaxed);
        self.live_docs += 1;
        let payload = msg.payload().unwrap_or_default();
        match Document::parse(payload, max_bytes) {
            Ok(doc) => {
                let class = self.jobs.classes().classify(msg.topic(), &doc);
                self.emit(msg, &doc, class, None, active, scratch, buf, matched_at)?;
            }
            Err(reason) => self.bad(msg, &reason.to_string())?,
        }
        self.processed.insert(tp, msg.offset() + 1);
        Ok(())
    }

    /// A message read by the lane of `class` of drain job `job`: emitted if
    /// its document is of that class (and, for a replay, inside the window,
    /// restricted to `masks`); bad messages go to the dead letters once, by
    /// the lane of the last class that reads the topic, in a catch-up. Returns whether a document of
    /// the lane's class was matched.
    #[allow(clippy::too_many_arguments)]
    fn process_backlog(
        &mut self,
        msg: &BorrowedMessage<'_>,
        job: u64,
        class: usize,
        masks: Option<&Masks>,
        active: &Active,
        scratch: &mut ActiveScratch,
        buf: &mut Vec<u8>,
        matched_at: &str,
        max_bytes: usize,
    ) -> Result<bool, SinkError> {
        self.batch_open = true;
        let (topic, partition, offset) = (msg.topic(), msg.partition(), msg.offset());
        let Advance::Take(range) = self.jobs.look(job, class, topic, partition, offset) else {
            return Ok(false);
        };
        let Some(j) = self.jobs.running(job) else {
            return Ok(false);
        };
        let catch_up = j.kind == JobKind::CatchUp;
        if catch_up && !self.owned.contains(&TopicPartition::new(topic, partition)) {
            return Ok(false); // revoked meanwhile; the range is dropped
        }
        let ts = msg.timestamp().to_millis();
        let in_window = match (j.from_ms, j.to_ms) {
            (Some(from), Some(to)) => ts.is_some_and(|t| t >= from && t < to),
            _ => true,
        };
        let dead_letters = class == self.jobs.classes().last_reader(topic);
        let mut emitted = false;
        match Document::parse(msg.payload().unwrap_or_default(), max_bytes) {
            Ok(doc) => {
                if in_window && self.jobs.classes().classify(topic, &doc) == class {
                    self.metrics.documents_in.fetch_add(1, Relaxed);
                    self.emit(msg, &doc, class, masks, active, scratch, buf, matched_at)?;
                    emitted = true;
                }
            }
            Err(reason) if catch_up && dead_letters => {
                self.metrics.documents_in.fetch_add(1, Relaxed);
                self.bad(msg, &reason.to_string())?;
            }
            Err(_) => {}
        }
        self.jobs.advance(job, range, class, offset, ts, emitted);
        Ok(emitted)
    }

    /// Matches a document and hands its records to the output; a document
    /// that spends the work budget or makes matching panic becomes a dead
    /// letter instead (see `guard`), and a record the output cannot take
    /// for good sends the document to the dead letters too.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        msg: &BorrowedMessage<'_>,
        doc: &Document<'_>,
        class: usize,
        masks: Option<&Masks>,
        active: &Active,
        scratch: &mut ActiveScratch,
        buf: &mut Vec<u8>,
        matched_at: &str,
    ) -> Result<(), SinkError> {
        let classes = self.jobs.classes();
        let ctx = RecordContext {
            matched_at,
            input: Some(InputCoords {
                topic: msg.topic(),
                partition: msg.partition(),
                offset: msg.offset(),
            }),
            searches_version: Some(active.meta.version),
            class: classes.named().then(|| classes.name(class)),
        };
        let mut records = std::mem::take(&mut self.doc_records);
        std::mem::swap(&mut records.buf, buf);
        let outcome = guard::match_document(
            active,
            doc,
            scratch,
            masks,
            &ctx,
            &mut records,
            self.fault_panic_doc.as_deref(),
        );
        let sent = match outcome {
            Outcome::Matched => self.send_records(msg, &records),
            Outcome::TooExpensive(e) => {
                tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(),
                    doc_id = %doc.id, search = e.search.as_deref().unwrap_or("(indexing)"), budget = e.budget,
                    "document too expensive to match: sent to the dead letters");
                self.metrics.documents_too_expensive.fetch_add(1, Relaxed);
                self.dead_letter(msg, "too_expensive", &e.to_string())
            }
            Outcome::Panicked { search, message } => {
                tracing::error!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(),
                    doc_id = %doc.id, search = search.as_deref().unwrap_or("(none)"), panic = %message,
                    "matching panicked: document sent to the dead letters, the pipeline goes on");
                self.metrics.documents_internal_error.fetch_add(1, Relaxed);
                let detail = match &search {
                    Some(s) => format!("matching panicked in search `{s}`: {message}"),
                    None => format!("matching panicked: {message}"),
                };
                self.dead_letter(msg, "internal_error", &detail)
            }
        };
        std::mem::swap(&mut records.buf, buf);
        self.doc_records = records;
        sent
    }

    /// Sends a matched document's records. A record larger than the
    /// output takes is not sent: the document goes to the dead letters with
    /// reason `record_too_large` (its other records are still sent).
    fn send_records(
        &mut self,
        msg: &BorrowedMessage<'_>,
        records: &DocRecords,
    ) -> Result<(), SinkError> {
        if records.records.is_empty() {
            return Ok(());
        }
        self.metrics.documents_matched.fetch_add(1, Relaxed);
        let limit = self.output.max_record_bytes();
        let mut too_large = None;
        for (key, value) in records.iter() {
            let size = key.len() + value.len();
            if limit.is_some_and(|l| size > l) {
                // A key can be most of the record: keep its start.
                let mut shown: String = key.chars().take(80).collect();
                if shown.len() < key.len() {
                    shown.push('…');
                }
                too_large.get_or_insert((shown, size));
                self.metrics.records_refused.fetch_add(1, Relaxed);
                continue;
            }
            self.output.send(key.as_bytes(), value, &[])?;
            self.metrics.records_out.fetch_add(1, Relaxed);
        }
        if let Some((key, size)) = too_large {
            let limit = limit.unwrap_or_default();
            tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), match_id = %key, size, limit,
                "match record larger than the output takes: the document is sent to the dead letters");
            let detail = format!(
                "a match record of {size} bytes (match id `{key}`); the output takes at most {limit}"
            );
            self.dead_letter(msg, "record_too_large", &detail)?;
        }
        Ok(())
    }

    /// A bad message: counted, logged once, sent to the dead letters.
    fn bad(&mut self, msg: &BorrowedMessage<'_>, reason: &str) -> Result<(), SinkError> {
        tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), %reason, "bad message sent to the dead letters");
        self.metrics.documents_bad.fetch_add(1, Relaxed);
        self.dead_letter(msg, "bad_message", reason)
    }

    /// Sends the input message `msg` to the dead letters.
    fn dead_letter(
        &mut self,
        msg: &BorrowedMessage<'_>,
        reason: &str,
        detail: &str,
    ) -> Result<(), SinkError> {
        let at = Coords {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
        };
        let (key, value) = (
            msg.key().unwrap_or_default(),
            msg.payload().unwrap_or_default(),
        );
        self.dead.send(at, key, value, reason, detail)
    }

    /// Moves the records the output refused for good to the dead letters
    /// and, once those are acknowledged, counts them as done in the output
    /// (so a batch is checkpointed only when each of its records is in the
    /// output or in the dead letters). Dead letters the dead-letter output
    /// refused are logged, counted and dropped.
    fn reroute_refused(&mut self) -> Result<(), SinkError> {
        for r in self.dead.sink.take_refused() {
            self.dead.dropped(&r);
            self.dead.sink.resolve(r.group);
        }
        let refused = self.output.take_refused();
        if refused.is_empty() {
            return Ok(());
        }
        let topic = match &self.output_target {
            Target::Kafka(t) => t.clone(),
            _ => String::new(),
        };
        for r in &refused {
            self.dead.send_refused(&topic, r)?;
        }
        // Rare: wait for these dead letters here, so that the refused
        // records' batches can be acknowledged without a second state.
        self.dead.sink.flush(self.drain_deadline)?;
        for r in &refused {
            self.output.resolve(r.group);
        }
        Ok(())
    }

    /// Catch-up (SPEC §5.3): every partition of `tpl` whose backlog from
    /// its start offset to the high watermark exceeds the threshold becomes
    /// a range of a new drain job, and its live lane starts at the head.
    /// The job and the new live offsets are stored in one WriteBatch before
    /// the assignment takes them.
    fn split_backlogs(&mut self, consumer: &BaseConsumer<Ctx>, tpl: &mut TopicPartitionList) {
        let mut ranges = Vec::new();
        for e in tpl.elements() {
            let tp = TopicPartition::new(e.topic(), e.partition());
            if self.jobs.catching_up(&tp) {
                continue; // resumes its drain; live goes on from its checkpoint
            }
            let Ok((low, high)) =
                consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(5))
            else {
                continue;
            };
            let start = match e.offset() {
                Offset::Offset(o) if o < low => {
                    tracing::error!(partition = %tp, lost_from = o, lost_to = low, lost = low - o,
                        "messages were deleted by retention before they were processed; the catch-up starts at the log start");
                    self.metrics
                        .retention_lost
                        .fetch_add((low - o) as u64, Relaxed);
                    low
                }
                Offset::Offset(o) => o,
                Offset::Beginning => low,
                _ => continue,
            };
            if high - start > self.jobs.threshold() {
                ranges.push((tp, start, high));
            }
        }
        if ranges.is_empty() {
            return;
        }
        let heads: Vec<(TopicPartition, i64)> = ranges
            .iter()
            .map(|(tp, _, high)| (tp.clone(), *high))
            .collect();
        let (id, job) =
            self.jobs
                .create(JobKind::CatchUp, ranges, None, None, None, self.live_docs);
        if let Err(e) = self.store.commit_with_jobs(&heads, &[], &[(id, Some(job))]) {
            tracing::error!(error = %e, "cannot store the catch-up job; consuming the backlog in order instead");
            self.jobs.cancel(id);
            return;
        }
        for (tp, head) in heads {
            let _ = tpl.set_partition_offset(&tp.topic, tp.partition, Offset::Offset(head));
            tracing::info!(partition = %tp, live_from = head, "backlog above the threshold: live data from the head, the backlog drained by class");
            self.processed.insert(tp.clone(), head);
            self.checkpointed.insert(tp, head);
        }
    }

    /// After an output outage: the owned partitions whose backlog from the
    /// processed offset exceeds the threshold become a catch-up job
    /// ([`Shared::split_backlogs`]); returns their new live offsets (the
    /// heads) for the consumer to seek to.
    fn split_after_outage(&mut self, consumer: &BaseConsumer<Ctx>) -> Vec<(TopicPartition, i64)> {
        let mut tpl = TopicPartitionList::new();
        for tp in &self.owned {
            if let Some(&next) = self.processed.get(tp) {
                let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(next));
            }
        }
        let before: BTreeMap<TopicPartition, i64> = self.processed.clone();
        self.split_backlogs(consumer, &mut tpl);
        self.processed
            .iter()
            .filter(|(tp, next)| before.get(*tp) != Some(next))
            .map(|(tp, &next)| (tp.clone(), next))
            .collect()
    }

    /// A lane's cursor fell behind the log start (retention): report the
    /// deleted range (error log, `retention_lost` metric, the job's
    /// `deleted_by_retention`) and go on from the log start.
    fn skip_deleted(&mut self, job: u64, class: usize, lane: &Lane) {
        let tp = &lane.tp;
        let Ok((low, _)) =
            lane.consumer
                .fetch_watermarks(&tp.topic, tp.partition, Duration::from_secs(5))
        else {
            return; // asked again at the next error
        };
        let name = self.jobs.classes().name(class).to_string();
        let resume = match self
            .jobs
            .skip_deleted(job, class, &tp.topic, tp.partition, low)
        {
            Some((from, to, new)) => {
                tracing::error!(job, class = %name, partition = %tp, lost_from = from, lost_to = to, lost = to - from,
                    "backlog messages were deleted by retention before this class read them; its drain goes on from the log start");
                self.metrics.retention_lost.fetch_add(new, Relaxed);
                to
            }
            None => {
                let Some(cursor) = self.jobs.cursor(job, class, &tp.topic, tp.partition) else {
                    return; // the range is gone; the lanes are re-planned
                };
                tracing::warn!(job, class = %name, partition = %tp, cursor, log_start = low,
                    "drain consumer offset out of range, though not behind the log start; retrying");
                cursor
            }
        };
        // Assigned again rather than seeked: the partition's fetcher
        // stopped at the error.
        let mut tpl = TopicPartitionList::new();
        let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(resume));
        if let Err(e) = lane.consumer.assign(&tpl) {
            tracing::error!(partition = %tp, error = %e, "drain consumer assignment failed");
        }
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
                // The group's offsets tell whether another instance moved a
                // partition on since this one last owned it.
                let group: BTreeMap<TopicPartition, i64> = consumer
                    .committed_offsets(tpl.clone(), Duration::from_secs(10))
                    .map(|c| {
                        c.elements()
                            .iter()
                            .filter_map(|e| match e.offset() {
                                Offset::Offset(o) if o >= 0 => {
                                    Some((TopicPartition::new(e.topic(), e.partition()), o))
                                }
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let lows = s.jobs.low_waters();
                for tp in assigned {
                    let stored = match s.store.get(&tp) {
                        Ok(stored) => stored,
                        Err(err) => {
                            tracing::error!(partition = %tp, error = %err, "cannot read the checkpoint; using the group's offset");
                            None
                        }
                    };
                    // What this instance last committed: its checkpoint, or
                    // the low-water mark of its unfinished drain.
                    let ours = |next: i64| lows.get(&tp).map_or(next, |&l| l.min(next));
                    match (stored, group.get(&tp)) {
                        (Some(next), Some(&moved)) if moved > ours(next) => {
                            let ours = ours(next);
                            tracing::info!(partition = %tp, checkpoint = ours, group = moved,
                                "another instance processed this partition since; continuing from the group's offset");
                            let dropped = s.jobs.drop_partitions(|t| *t != tp);
                            if let Err(e) = s.store.commit_with_jobs(&[], &[tp.clone()], &dropped) {
                                tracing::error!(error = %e, "cannot store the drain jobs");
                            }
                            let _ = without.add_partition(&tp.topic, tp.partition);
                        }
                        (Some(next), _) => {
                            let _ = tpl.set_partition_offset(
                                &tp.topic,
                                tp.partition,
                                Offset::Offset(next),
                            );
                            tracing::info!(partition = %tp, next, "resuming from the checkpoint");
                            s.checkpointed.insert(tp, next);
                        }
                        (None, _) => {
                            let _ = without.add_partition(&tp.topic, tp.partition);
                        }
                    }
                }
                if without.count() > 0 {
                    for e in without.elements() {
                        let tp = TopicPartition::new(e.topic(), e.partition());
                        let (offset, from) = match group.get(&tp) {
                            Some(&o) => (Offset::Offset(o), "group"),
                            None => match s.start {
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
                if s.live {
                    s.split_backlogs(consumer, tpl);
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
                // What the lanes may read changed.
                s.jobs.generation += 1;
                if !cooperative {
                    // The whole assignment is known: catch-up ranges of
                    // partitions that went elsewhere are their owner's now.
                    let owned = s.owned.clone();
                    let dropped = s.jobs.drop_partitions(|tp| owned.contains(tp));
                    if let Err(e) = s.store.commit_with_jobs(&[], &[], &dropped) {
                        tracing::error!(error = %e, "cannot store the drain jobs");
                    }
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
                if s.closing {
                    // Stopping: the checkpoints and drain jobs stay, and the
                    // next start resumes them (a static member gets its
                    // partitions back). Should another instance take them
                    // meanwhile, the group's offset moves past ours and the
                    // next assignment notices.
                    tracing::info!(
                        "stopping: checkpoints and unfinished drains kept for the next start"
                    );
                } else {
                    // The next owner starts from the group's offset; so do
                    // we if the partition comes back.
                    let dropped = s.jobs.drop_partitions(|tp| !revoked.contains(tp));
                    if let Err(e) = s.store.commit_with_jobs(&[], &revoked, &dropped) {
                        tracing::error!(error = %e, "cannot forget revoked checkpoints");
                    }
                }
                s.jobs.generation += 1;
                for tp in &revoked {
                    s.owned.remove(tp);
                    s.processed.remove(tp);
                    s.checkpointed.remove(tp);
                    s.group_committed.remove(tp);
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
                s.group_committed.clear();
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
    inbox: Arc<Inbox>,
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
        inbox: Arc<Inbox>,
    ) -> Result<Pipeline, PipelineError> {
        Pipeline::with_mode(config, searches, store, metrics, inbox, true)
    }

    /// [`Pipeline::new`]; with `live` false it joins no group and only
    /// drains replay jobs, then stops (`replay` without a running service).
    ///
    /// # Errors
    ///
    /// When any part cannot be opened.
    pub fn with_mode(
        config: Config,
        searches: Arc<Searches>,
        store: Arc<Checkpoints>,
        metrics: Arc<Metrics>,
        inbox: Arc<Inbox>,
        live: bool,
    ) -> Result<Pipeline, PipelineError> {
        let jobs = Jobs::load(
            store.jobs()?,
            config.classes.clone(),
            config.catch_up.clone(),
            &config.state_dir,
            0,
        );
        // Empty: dynamic membership (a stopping member leaves the group).
        let instance_id = match &config.instance_id {
            Some(id) => id.clone(),
            None => store.instance_id(&config.group_id)?,
        };
        let output = sink::open(&config.output, &config.brokers, &config.producer_overrides)?;
        let dead = DeadLetters::new(
            sink::open(
                &config.dead_letter,
                &config.brokers,
                &config.producer_overrides,
            )?,
            !matches!(config.dead_letter, Target::Kafka(_)),
            metrics.clone(),
        );
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
            jobs,
            group_committed: BTreeMap::new(),
            live_docs: 0,
            live,
            closing: false,
            batch_open: false,
            doc_records: DocRecords::default(),
            fault_panic_doc: guard::fault_panic_doc_from_env(),
            output_target: config.output.clone(),
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
        if instance_id.is_empty() {
            tracing::info!("dynamic group membership (no instance id)");
        } else {
            cfg.set("group.instance.id", &instance_id);
            tracing::info!(instance_id = %instance_id, "group member id");
        }
        for (k, v) in &config.consumer_overrides {
            cfg.set(k, v);
        }
        let consumer: BaseConsumer<Ctx> = cfg.create_with_context(Ctx {
            shared: shared.clone(),
        })?;
        if live {
            let topics: Vec<&str> = config.input_topics.iter().map(String::as_str).collect();
            consumer.subscribe(&topics)?;
        }
        Ok(Pipeline {
            consumer,
            shared,
            searches,
            metrics,
            config,
            inbox,
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
        scratch.set_budget(self.config.max_work_per_document);
        let mut buf = Vec::with_capacity(4096);
        let mut matched_at = now_rfc3339();
        let mut matched_at_refreshed = Instant::now();
        let mut batch_started: Option<Instant> = None;
        let mut in_batch = 0usize;
        let mut last_advance = Instant::now();
        let mut last_poll_error: Option<Instant> = None;
        let mut lanes = Lanes::default();
        let mut last_tick = Instant::now() - Duration::from_secs(2);
        let live = lock(&self.shared).live;
        if live {
            tracing::info!(topics = ?self.config.input_topics, group = %self.config.group_id, "consuming");
        }
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
                scratch.set_budget(self.config.max_work_per_document);
                lanes.masks = None;
            }
            if last_tick.elapsed() >= Duration::from_secs(1) {
                last_tick = Instant::now();
                self.serve_inbox();
                let mut s = lock(&self.shared);
                let live_docs = s.live_docs;
                let progress = s.jobs.tick(live_docs);
                *self.metrics.drain.lock().expect("drain lock") = (progress, s.jobs.status_json());
            }
            if lanes.generation != lock(&self.shared).jobs.generation {
                lanes.rebuild(&mut lock(&self.shared), &self.config);
            }
            if !live && lanes.plan.is_none() && lock(&self.shared).sealed.is_empty() {
                break; // replay only: every job drained
            }
            let draining = lanes.plan.is_some() && !lock(&self.shared).output_down;
            let wait = match batch_started {
                Some(t) => self
                    .config
                    .batch_max_wait
                    .saturating_sub(t.elapsed())
                    .max(Duration::from_millis(1)),
                None => Duration::from_millis(100),
            };
            // Live data first: while a drain runs, the live consumer is
            // asked without waiting, and the lanes get a slice when it has
            // nothing.
            let live_wait = if draining { Duration::ZERO } else { wait };
            let polled = if live {
                self.consumer.poll(live_wait)
            } else {
                if !draining {
                    std::thread::sleep(live_wait);
                }
                None
            };
            match polled {
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
                None if draining => {
                    matched_at = now_rfc3339();
                    matched_at_refreshed = Instant::now();
                    let n = lanes.slice(
                        &self.shared,
                        &active,
                        &mut scratch,
                        &mut buf,
                        &matched_at,
                        self.config.max_message_bytes,
                    )?;
                    if n > 0 {
                        batch_started.get_or_insert_with(Instant::now);
                        in_batch += n;
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
        if in_batch > 0 || batch_started.is_some() {
            lock(&self.shared).seal()?;
        }
        self.shutdown(&shutdown);
        Ok(())
    }

    /// Replay and cancel requests from the admin API.
    fn serve_inbox(&self) {
        let requests: Vec<Request> =
            std::mem::take(&mut *self.inbox.requests.lock().expect("inbox lock"));
        if requests.is_empty() {
            return;
        }
        let mut s = lock(&self.shared);
        for r in requests {
            match r {
                Request::Replay { spec, reply } => {
                    let live_docs = s.live_docs;
                    let (id, job) = s.jobs.create(
                        JobKind::Replay,
                        spec.ranges,
                        Some((spec.from_ms, spec.to_ms)),
                        spec.searches,
                        spec.classes.as_deref(),
                        live_docs,
                    );
                    let stored = s.store.commit_with_jobs(&[], &[], &[(id, Some(job))]);
                    let _ = reply.send(stored.map(|()| id).map_err(|e| e.to_string()));
                }
                Request::Cancel { id, reply } => {
                    let found = s.jobs.cancel(id);
                    let ok = match &found {
                        Some(job) => s
                            .store
                            .commit_with_jobs(&[], &[], std::slice::from_ref(job))
                            .is_ok(),
                        None => false,
                    };
                    let _ = reply.send(ok);
                }
            }
        }
    }

    /// Flushes and checkpoints, pausing input and retrying with backoff
    /// while the output fails. Gives up on an immediate shutdown, after
    /// `give_up_at`, or a drain deadline after a graceful stop was asked.
    fn finish_batch(&self, shutdown: &ShutdownFlag, mut give_up_at: Option<Instant>) -> bool {
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
                        // What piled up meanwhile is a backlog (SPEC §5.5):
                        // above the threshold, live data restarts at the
                        // head and the rest is drained by class.
                        let split = if s.live {
                            s.split_after_outage(&self.consumer)
                        } else {
                            Vec::new()
                        };
                        drop(s);
                        for (tp, head) in split {
                            if let Err(e) = self.consumer.seek(
                                &tp.topic,
                                tp.partition,
                                Offset::Offset(head),
                                Duration::from_secs(5),
                            ) {
                                tracing::error!(partition = %tp, error = %e, "cannot move the live lane to the head; live messages before it are skipped as they arrive (the job drains them)");
                            }
                        }
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
                    // A stop asked while the output is down waits for it
                    // no longer than the drain deadline.
                    if shutdown.load(Relaxed) >= 1 && give_up_at.is_none() {
                        give_up_at = Some(Instant::now() + self.config.drain_deadline);
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
                            scratch.set_budget(self.config.max_work_per_document);
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
            let lows = s.jobs.low_waters();
            let mut tpl = TopicPartitionList::new();
            for (tp, &next) in &s.checkpointed {
                let low = lows.get(tp).map_or(next, |&l| l.min(next));
                let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(low));
            }
            drop(s);
            if tpl.count() > 0 {
                if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
                    tracing::warn!(error = %e, "final commit to the group failed; the RocksDB checkpoint stands");
                }
            }
            tracing::info!("drained and checkpointed");
            // Reports of jobs that ended with this last checkpoint.
            let mut s = lock(&self.shared);
            let live_docs = s.live_docs;
            let _ = s.jobs.tick(live_docs);
        } else {
            tracing::warn!("output not drained before the deadline; unacknowledged messages will be re-read (at least once)");
        }
        lock(&self.shared).closing = true;
        self.consumer.unsubscribe();
        let _ = self.consumer.poll(Duration::from_millis(100));
        drop(self.consumer);
        tracing::info!("left the group");
    }
}

/// Longest wait for backlog data when no lane has any fetched: live data
/// arriving meanwhile waits at most this long.
const LANE_WAIT: Duration = Duration::from_millis(2);

/// Documents a class emits per turn when several classes share the drain.
const QUANTUM: usize = 16;

/// One lane: a consumer outside the group reading one partition's range
/// for one class. One consumer per partition, because a broker may answer a
/// fetch with one partition's data only (the test broker does), which
/// would read a lane's partitions one after the other.
struct Lane {
    class: usize,
    tp: TopicPartition,
    consumer: BaseConsumer,
}

/// The drain lanes of the running job (see `drain`).
#[derive(Default)]
struct Lanes {
    generation: u64,
    plan: Option<LanePlan>,
    lanes: Vec<Lane>,
    /// The searches mask of a replay restricted to some searches.
    masks: Option<Masks>,
    /// Round-robin start among a class's lanes.
    turn: usize,
}

impl Lanes {
    /// Re-reads the plan from the jobs: lanes that stay keep reading where
    /// they are; new ones start at their class's cursor.
    fn rebuild(&mut self, s: &mut Shared, config: &Config) {
        self.generation = s.jobs.generation;
        let owned = &s.owned;
        let live = s.live;
        let plan = s.jobs.lanes(|job, tp| match job.kind {
            JobKind::Replay => true,
            JobKind::CatchUp => live && owned.contains(tp),
        });
        if plan.as_ref().map(|p| p.job) != self.plan.as_ref().map(|p| p.job) {
            self.masks = None;
            self.lanes.clear();
        }
        let Some(plan) = plan else {
            self.lanes.clear();
            self.plan = None;
            return;
        };
        let mut lanes = Vec::new();
        for (class, parts) in &plan.classes {
            for (tp, cursor) in parts {
                if let Some(i) = self
                    .lanes
                    .iter()
                    .position(|l| l.class == *class && l.tp == *tp)
                {
                    lanes.push(self.lanes.swap_remove(i));
                    continue;
                }
                let consumer = match lane_consumer(config) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot create a drain consumer; retrying");
                        self.generation = 0;
                        continue;
                    }
                };
                let mut tpl = TopicPartitionList::new();
                let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*cursor));
                if let Err(e) = consumer.assign(&tpl) {
                    tracing::error!(error = %e, "drain consumer assignment failed; retrying");
                    self.generation = 0;
                    continue;
                }
                lanes.push(Lane {
                    class: *class,
                    tp: tp.clone(),
                    consumer,
                });
            }
        }
        self.lanes = lanes;
        self.plan = Some(plan);
    }

    /// Handles at most [`SLICE`] lane messages, from the class furthest
    /// behind its share, spread over its partitions; returns how many were
    /// handled.
    fn slice(
        &mut self,
        shared: &Mutex<Shared>,
        active: &Active,
        scratch: &mut ActiveScratch,
        buf: &mut Vec<u8>,
        matched_at: &str,
        max_bytes: usize,
    ) -> Result<usize, SinkError> {
        let Some(plan) = &self.plan else {
            return Ok(0);
        };
        let job = plan.job;
        let mut s = lock(shared);
        if self.masks.is_none() {
            if let Some(ids) = s.jobs.running(job).and_then(|j| j.searches.clone()) {
                self.masks = Some(active.masks(&ids));
            }
        }
        let mut classes: Vec<usize> = self.lanes.iter().map(|l| l.class).collect();
        classes.dedup();
        let order = s.jobs.pick(job, &classes, 4 * QUANTUM);
        // Several classes at once (weighted): each turn gives the class
        // furthest behind a quantum of documents, so shares stay close.
        let shared_out = order.len() > 1;
        self.turn = self.turn.wrapping_add(1);
        for (attempt, class) in order
            .iter()
            .map(|&c| (false, c))
            .chain(order.first().map(|&c| (true, c)))
        {
            let lanes: Vec<&Lane> = self.lanes.iter().filter(|l| l.class == class).collect();
            if lanes.is_empty() {
                continue;
            }
            let per_lane = (SLICE / lanes.len()).max(16);
            let mut n = 0;
            let mut emitted = 0;
            for k in 0..lanes.len() {
                let lane = lanes[(k + self.turn) % lanes.len()];
                let mut taken = 0;
                while taken < per_lane {
                    // The last resort waits a little on one lane.
                    let wait = if attempt && n == 0 && k == 0 && taken == 0 {
                        LANE_WAIT
                    } else {
                        Duration::ZERO
                    };
                    match lane.consumer.poll(wait) {
                        Some(Ok(msg)) => {
                            emitted += usize::from(s.process_backlog(
                                &msg,
                                job,
                                class,
                                self.masks.as_ref(),
                                active,
                                scratch,
                                buf,
                                matched_at,
                                max_bytes,
                            )?);
                            taken += 1;
                        }
                        Some(Err(KafkaError::PartitionEOF(_))) => {
                            // Read up to the head: a range whose end is
                            // behind the position is done.
                            if let Ok(pos) = lane.consumer.position() {
                                for e in pos.elements() {
                                    if let Offset::Offset(o) = e.offset() {
                                        let _ =
                                            s.jobs.look(job, class, e.topic(), e.partition(), o);
                                    }
                                }
                            }
                            break;
                        }
                        Some(Err(KafkaError::MessageConsumption(
                            RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange,
                        ))) => {
                            // Retention deleted the class's next messages
                            // before it read them: never a silent jump.
                            s.skip_deleted(job, class, lane);
                            break;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(partition = %lane.tp, error = %e, "drain consumer error (retrying)");
                            break;
                        }
                        None => break,
                    }
                    if s.jobs.generation != self.generation {
                        return Ok(n + taken); // a range finished: re-plan
                    }
                    if shared_out && emitted >= QUANTUM {
                        return Ok(n + taken); // its share for this turn
                    }
                }
                n += taken;
            }
            if n > 0 {
                return Ok(n);
            }
        }
        Ok(0)
    }
}

/// A consumer outside the group, for one drain lane.
fn lane_consumer(config: &Config) -> Result<BaseConsumer, KafkaError> {
    let mut cfg = ClientConfig::new();
    for (k, v) in &config.consumer_overrides {
        cfg.set(k, v);
    }
    cfg.set("bootstrap.servers", &config.brokers)
        .set("group.id", format!("{}.drain", config.group_id))
        .remove("group.instance.id")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A cursor behind the log start is reported, not skipped silently.
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "true")
        .set("queued.max.messages.kbytes", "8192");
    cfg.create()
}
