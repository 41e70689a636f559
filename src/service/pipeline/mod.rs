//! The source → match → sink loop with checkpoints (docs/operations.md §5.1, §5.5, §5.7).
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
//! On **assign** it writes start offsets into the assignment itself (not
//! with a seek after the callback, which races the first fetch, and not
//! from the group's offset alone, which may lag the checkpoint): the RocksDB checkpoint if there is one, else
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

//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | `mod.rs` | [`Pipeline`]: the consumer, the run loop, shutdown |
//! | `process` | one message: parse, match under the guard, records or dead letters |
//! | `run` | a run of fetched messages: parsed, matched on every core, handled in order |
//! | `parallel` | the matching threads: documents matched ahead, handed back in order |
//! | `batches` | sealing batches, acknowledgements, checkpoints, refused records |
//! | `rebalance` | the consumer context: assignment, revocation, backlogs becoming drain jobs |
//! | `lanes` | the drain lanes: reading a job's ranges per class |
//! | `idle` | an instance without partitions while its group is stuck: detect, say so, rejoin |

mod batches;
mod idle;
mod lanes;
mod parallel;
mod process;
mod rebalance;
mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::kafka_client::Role;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Message};

use super::dead_letters::{Coords, DeadLetters};
use super::drain::{CancelError, Finish, Inbox, JobKind, Jobs, LanePlan, Lookup, Request, SLICE};
use super::guard::{self, DocRecords, Outcome};
use super::metrics::Metrics;
use super::reload::{Active, ActiveScratch, Masks, SearchVersions};
use super::shutdown::Shutdown;
use super::sink::{self, Sink, SinkError};
use crate::config::{Config, StartPosition, Target};
use crate::document::Document;
use crate::record::{now_ms, now_rfc3339, InputCoords, RecordContext};
use crate::state_store::{StateStore, StoreError, StoredJob, TopicPartition};

use batches::Sealed;
use lanes::Lanes;
use parallel::Parallel;
use process::MatchInput;
use rebalance::RebalanceContext;
use run::RunInput;

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
    Store(#[from] StoreError),
    /// A checkpoint could not be written (the loop retries).
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The consumer hit a fatal error and cannot go on.
    #[error(
        "the Kafka consumer cannot go on: {0}. If it says fenced, another running instance uses \
         the same group instance id (a copied state directory, or the same kafka.instance_id): \
         give each instance its own state directory or instance_id"
    )]
    Fatal(String),
    /// A stored drain job cannot be decoded.
    #[error(transparent)]
    UnreadableJob(#[from] crate::service::drain::UnreadableJob),
}

/// Why a checkpoint was not taken: the output did not acknowledge its
/// records, or the state store did not take the write.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The output failed.
    #[error(transparent)]
    Output(#[from] SinkError),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// State shared by the loop and the rebalance callback (which runs inside
/// `poll` on the same thread, so the lock is never contended; the loop
/// never holds it while polling).
struct LoopState {
    pub(super) store: Arc<StateStore>,
    pub(super) output: Box<dyn Sink>,
    pub(super) dead: DeadLetters,
    pub(super) owned: BTreeSet<TopicPartition>,
    /// Next offset after the last processed message.
    pub(super) processed: BTreeMap<TopicPartition, i64>,
    /// Kafka timestamp of the last live message processed, per partition
    /// (the lag monitor's lag in seconds).
    pub(super) last_message_ms: BTreeMap<TopicPartition, i64>,
    /// Next offset last written to RocksDB.
    pub(super) checkpointed: BTreeMap<TopicPartition, i64>,
    pub(super) output_down: bool,
    /// Drain-job states a failed checkpoint write did not store (written
    /// with the next one).
    pub(super) unwritten_jobs: BTreeMap<u64, StoredJob>,
    /// The last checkpoint write failed (input paused until one succeeds).
    pub(super) store_down: bool,
    /// Closed batches waiting for their acknowledgements, oldest first.
    pub(super) sealed: std::collections::VecDeque<Sealed>,
    pub(super) start: StartPosition,
    pub(super) drain_deadline: Duration,
    pub(super) metrics: Arc<Metrics>,
    /// Catch-up and replay jobs.
    pub(super) jobs: Jobs,
    /// Offsets last committed to the group.
    pub(super) group_committed: BTreeMap<TopicPartition, i64>,
    /// Live documents processed (for drain reports).
    pub(super) live_docs: u64,
    /// Whether this process also consumes live data (false: `replay`
    /// standalone).
    pub(super) live: bool,
    /// Set when the service stops: the last revocation keeps the drain
    /// jobs and checkpoints for the next start instead of handing them on.
    pub(super) closing: bool,
    /// Something was processed since the last seal.
    pub(super) batch_open: bool,
    /// The records of the document being emitted (reused).
    pub(super) doc_records: DocRecords,
    /// Fault tests: the id of a document whose matching panics.
    pub(super) fault_panic_doc: Option<String>,
    /// Where match records go (names the topic of refused records).
    pub(super) output_target: Target,
}

fn lock(m: &Mutex<LoopState>) -> MutexGuard<'_, LoopState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Everything the loop needs, built from the configuration.
pub struct Pipeline {
    consumer: BaseConsumer<RebalanceContext>,
    shared: Arc<Mutex<LoopState>>,
    searches: Arc<SearchVersions>,
    metrics: Arc<Metrics>,
    config: Config,
    inbox: Arc<Inbox>,
}

impl Pipeline {
    /// Moves the consumer's position on `tp` to `offset`; a failure is
    /// logged with `what` (the caller has no better recourse).
    fn seek(&self, tp: &TopicPartition, offset: i64, what: &str) {
        let to = Offset::Offset(offset);
        if let Err(e) = self
            .consumer
            .seek(&tp.topic, tp.partition, to, Duration::from_secs(5))
        {
            tracing::error!(partition = %tp, error = %e, "{what}");
        }
    }

    /// Opens the state store and outputs and creates the consumer; with
    /// `live` false it joins no group and only
    /// drains replay jobs, then stops (`replay` without a running service).
    ///
    /// # Errors
    ///
    /// When any part cannot be opened.
    pub fn with_mode(
        config: Config,
        searches: Arc<SearchVersions>,
        store: Arc<StateStore>,
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
        )?;
        // Empty: dynamic membership (a stopping member leaves the group).
        let instance_id = match &config.instance_id {
            Some(id) => id.clone(),
            None => store.instance_id(&config.group_id)?,
        };
        let output = sink::open(&config.output, &config.kafka)?;
        let dead = DeadLetters::new(
            sink::open(&config.dead_letter, &config.kafka)?,
            !matches!(config.dead_letter, Target::Kafka(_)),
            metrics.clone(),
        );
        let shared = Arc::new(Mutex::new(LoopState {
            store,
            output,
            dead,
            owned: BTreeSet::new(),
            processed: BTreeMap::new(),
            checkpointed: BTreeMap::new(),
            last_message_ms: BTreeMap::new(),
            output_down: false,
            unwritten_jobs: BTreeMap::new(),
            store_down: false,
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
        // Static membership (KIP-345): a restarted instance gets its
        // partitions back at once instead of after the session timeout.
        let mut defaults = vec![
            // Eager assignment works with every broker; cooperative-sticky
            // (handled too, see `rebalance`) can be set in [kafka.consumer]
            // where the broker supports incremental rebalancing.
            ("partition.assignment.strategy", "range"),
            ("enable.partition.eof", "false"),
            ("queued.max.messages.kbytes", "16384"),
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "1000"),
            ("max.poll.interval.ms", "300000"),
        ];
        if instance_id.is_empty() {
            tracing::info!("dynamic group membership (no instance id)");
        } else {
            defaults.push(("group.instance.id", &instance_id));
            tracing::info!(instance_id = %instance_id, "group member id");
        }
        let mut cfg = config.kafka.config(Role::Consumer, &defaults);
        // What the acknowledgement protocol cannot work without.
        cfg.set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "error");
        let consumer: BaseConsumer<RebalanceContext> =
            cfg.create_with_context(RebalanceContext {
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

    /// Takes the costs counted in `scratch` and in the helpers' (the
    /// cost book, `/searches/cost`).
    fn collect_costs(&self, active: &Active, scratch: &mut ActiveScratch, parallel: &mut Parallel) {
        let slow = self.config.slow_search_work;
        self.metrics.costs.collect(active, scratch, slow);
        parallel.each_scratch(|s| self.metrics.costs.collect(active, s, slow));
    }

    /// The poll errors of the loop: lost ranges, a fatal consumer error
    /// (returned), transport errors (logged at most every 10 s).
    fn on_poll_error(
        &self,
        error: KafkaError,
        last_poll_error: &mut Option<Instant>,
    ) -> Result<(), PipelineError> {
        match error {
            KafkaError::MessageConsumption(
                RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange,
            ) => self.recover_lost_ranges(),
            KafkaError::MessageConsumptionFatal(code) => {
                // The consumer is unusable (fenced by another member
                // with the same instance id, …): say so and stop,
                // keeping what is acknowledged.
                let reason = self
                    .consumer
                    .client()
                    .fatal_error()
                    .map_or_else(|| code.to_string(), |(c, why)| format!("{c}: {why}"));
                let _ = lock(&self.shared).checkpoint(
                    &self.consumer,
                    self.config.drain_deadline,
                    CommitMode::Sync,
                );
                return Err(PipelineError::Fatal(reason));
            }
            // Broker down, transport errors: librdkafka reconnects by
            // itself; report at most every 10 s.
            e if last_poll_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) => {
                tracing::warn!(error = %e, "consumer error (retrying)");
                *last_poll_error = Some(Instant::now());
            }
            _ => {}
        }
        Ok(())
    }

    /// Runs until `shutdown` is set, then shuts down in the documented
    /// order.
    ///
    /// # Errors
    ///
    /// Unrecoverable output errors (a file that cannot be written).
    pub fn run(self, shutdown: Shutdown) -> Result<(), PipelineError> {
        let mut parallel = Parallel::new(
            self.config.matching_threads,
            self.config.max_work_per_document,
        );
        let mut active = self.searches.current();
        let mut scratch = parallel.scratch_for(&active);
        let mut buf = Vec::with_capacity(4096);
        let mut matched_at = now_rfc3339();
        let mut matched_at_refreshed = Instant::now();
        let mut batch_started: Option<Instant> = None;
        let mut in_batch = 0usize;
        let mut last_ack_check = Instant::now();
        let mut last_poll_error: Option<Instant> = None;
        let mut lanes = Lanes::default();
        let mut last_tick = Instant::now() - Duration::from_secs(2);
        let live = lock(&self.shared).live;
        if live {
            tracing::info!(topics = ?self.config.input_topics, group = %self.config.group_id,
                matching_threads = parallel.threads(), "consuming");
        }
        let mut idle = idle::IdleWatch::default();
        while !shutdown.is_requested() {
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
                self.collect_costs(&active, &mut scratch, &mut parallel);
                parallel.retire();
                active = next;
                scratch = parallel.scratch_for(&active);
                lanes.masks = None;
            }
            if last_tick.elapsed() >= Duration::from_secs(1) {
                last_tick = Instant::now();
                // Once a second, not per message: the idle watch works in
                // tens of seconds.
                if live {
                    let owns = !lock(&self.shared).owned.is_empty();
                    if idle.observe(last_tick, owns) == idle::Verdict::Check {
                        self.check_idle_group(&mut idle);
                    }
                }
                self.serve_inbox();
                self.collect_costs(&active, &mut scratch, &mut parallel);
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
            // Records carry the time of matching (refreshed at most every
            // millisecond on the live path, at every slice of the lanes).
            let refresh = match &polled {
                Some(Ok(_)) => matched_at_refreshed.elapsed() >= Duration::from_millis(1),
                None => draining,
                Some(Err(_)) => false,
            };
            if refresh {
                matched_at = now_rfc3339();
                matched_at_refreshed = Instant::now();
            }
            let mut r = RunInput {
                active: &active,
                scratch: &mut scratch,
                parallel: &mut parallel,
                buf: &mut buf,
                matched_at: &matched_at,
                max_bytes: self.config.max_message_bytes,
                classes: &self.config.classes,
            };
            match polled {
                Some(Ok(msg)) => {
                    // A run: this message and those already fetched after
                    // it, matched ahead on every core (`parallel`).
                    let room = self.config.batch_max_messages.saturating_sub(in_batch);
                    let mut run = vec![msg];
                    let mut after = None;
                    while run.len() < room.clamp(1, parallel::RUN_MAX) {
                        match self.consumer.poll(Duration::ZERO) {
                            Some(Ok(msg)) => run.push(msg),
                            other => {
                                after = other;
                                break;
                            }
                        }
                    }
                    lock(&self.shared).process_run(&run, &mut r)?;
                    batch_started.get_or_insert_with(Instant::now);
                    in_batch += run.len();
                    if let Some(Err(e)) = after {
                        self.on_poll_error(e, &mut last_poll_error)?;
                    }
                }
                Some(Err(e)) => self.on_poll_error(e, &mut last_poll_error)?,
                None if draining => {
                    let n = lanes.slice(&self.shared, &mut r)?;
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
            if !due && last_ack_check.elapsed() < Duration::from_millis(5) {
                continue;
            }
            last_ack_check = Instant::now();
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
            let stalled = s.checkpoint_acknowledged(&self.consumer)?
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
                    let job = s.jobs.create(
                        JobKind::Replay,
                        spec.ranges,
                        Some((spec.from_ms, spec.to_ms)),
                        spec.searches,
                        spec.classes.as_deref(),
                        live_docs,
                    );
                    let id = job.id;
                    let stored = s.store.commit_with_jobs(&[], &[], &[job]);
                    let _ = reply.send(stored.map(|()| id).map_err(|e| e.to_string()));
                }
                Request::Cancel { id, reply } => {
                    let answer = match s.jobs.cancel(id) {
                        Ok(job) => s
                            .store
                            .commit_with_jobs(&[], &[], std::slice::from_ref(&job))
                            .map_err(|e| CancelError::NotStored(e.to_string())),
                        Err(refused) => Err(CancelError::Refused(refused)),
                    };
                    let _ = reply.send(answer);
                }
            }
        }
    }

    /// Flushes and checkpoints, pausing input and retrying with backoff
    /// while the output fails. Gives up after `give_up_at`, or a drain
    /// deadline after a stop was asked.
    fn finish_batch(&self, shutdown: &Shutdown, mut give_up_at: Option<Instant>) -> bool {
        let mut backoff = Duration::from_millis(100);
        let mut paused = false;
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
                        // What piled up meanwhile is a backlog (docs/operations.md §5.5):
                        // above the threshold, live data restarts at the
                        // head and the rest is drained by class.
                        let split = if s.live {
                            s.split_after_outage(&self.consumer)
                        } else {
                            Vec::new()
                        };
                        drop(s);
                        for (tp, head) in split {
                            self.seek(&tp, head, "cannot move the live lane to the head; live messages before it are skipped as they arrive (the job drains them)");
                        }
                        if let Ok(a) = self.consumer.assignment() {
                            let _ = self.consumer.resume(&a);
                        }
                        tracing::info!("output recovered; consumption resumed");
                    } else {
                        s.publish_status();
                        drop(s);
                        if paused {
                            // Paused for the state store, which took the
                            // write now.
                            if let Ok(a) = self.consumer.assignment() {
                                let _ = self.consumer.resume(&a);
                            }
                        }
                    }
                    return true;
                }
                Err(e) => {
                    if let CheckpointError::Output(e) = &e {
                        self.metrics.output_errors.fetch_add(1, Relaxed);
                        let mut s = lock(&self.shared);
                        if !s.output_down {
                            s.output_down = true;
                            self.metrics.output_down.store(1, Relaxed);
                            tracing::error!(error = %e, "output failing; consumption paused until it recovers");
                        }
                    }
                    // (A store failure was logged and counted where the
                    // write failed.)
                    if let Ok(a) = self.consumer.assignment() {
                        let _ = self.consumer.pause(&a);
                    }
                    paused = true;
                    // A stop asked while the output is down waits for it
                    // no longer than the drain deadline.
                    if shutdown.is_requested() && give_up_at.is_none() {
                        give_up_at = Some(Instant::now() + self.config.drain_deadline);
                    }
                    if give_up_at.is_some_and(|t| Instant::now() >= t) {
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
                            let mut m = MatchInput {
                                active: &active,
                                scratch: &mut scratch,
                                buf: &mut buf,
                                matched_at: &at,
                                max_bytes: self.config.max_message_bytes,
                                ready: None,
                            };
                            let _ = lock(&self.shared).process(&msg, None, &mut m);
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// After `auto.offset.reset=error`: for every owned partition whose next
    /// offset fell below the log start, report the lost range and continue
    /// from the log start. A partition with no position yet (no checkpoint,
    /// no group offset) lost nothing: it starts where `kafka.start` says.
    fn recover_lost_ranges(&self) {
        let (owned, start): (Vec<(TopicPartition, Option<i64>)>, StartPosition) = {
            let s = lock(&self.shared);
            let owned = s
                .owned
                .iter()
                .map(|tp| (tp.clone(), s.processed.get(tp).copied()))
                .collect();
            (owned, s.start)
        };
        for (tp, next) in owned {
            let Ok((low, high)) =
                self.consumer
                    .fetch_watermarks(&tp.topic, tp.partition, Duration::from_secs(5))
            else {
                continue;
            };
            let Some(next) = next else {
                let to = match start {
                    StartPosition::Earliest => low,
                    StartPosition::Latest => high,
                };
                tracing::info!(partition = %tp, offset = to, "no position yet; starting at kafka.start");
                lock(&self.shared).processed.insert(tp.clone(), to);
                self.seek(&tp, to, "seek to the start position failed");
                continue;
            };
            if next < low {
                tracing::error!(partition = %tp, lost_from = next, lost_to = low, lost = low - next,
                    "messages were deleted by retention before they were processed; continuing from the log start");
                self.metrics
                    .retention_lost
                    .fetch_add((low - next) as u64, Relaxed);
                lock(&self.shared).processed.insert(tp.clone(), low);
                self.seek(&tp, low, "seek to the log start failed");
            }
        }
    }

    /// Stop polling → flush to the deadline → checkpoint → commit
    /// synchronously → leave the group.
    fn shutdown(self, shutdown: &Shutdown) {
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
