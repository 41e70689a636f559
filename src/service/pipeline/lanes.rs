//! The drain lanes: consumers outside the group that read a job's ranges
//! class by class.

use super::*;
use crate::kafka_client::LoggingContext;

/// Longest wait for backlog data when no lane has any fetched: live data
/// arriving meanwhile waits at most this long.
const LANE_WAIT: Duration = Duration::from_millis(2);

/// Documents a class emits per turn when several classes share the drain.
const QUANTUM: usize = 16;

/// One lane: a consumer outside the group reading one partition's range
/// for one class. One consumer per partition, because a broker may answer a
/// fetch with one partition's data only (the test broker does), which
/// would read a lane's partitions one after the other.
pub(super) struct Lane {
    pub(super) class: usize,
    pub(super) tp: TopicPartition,
    pub(super) consumer: BaseConsumer<LoggingContext>,
}

/// The drain lanes of the running job (see `drain`).
#[derive(Default)]
pub(super) struct Lanes {
    pub(super) generation: u64,
    pub(super) plan: Option<LanePlan>,
    pub(super) lanes: Vec<Lane>,
    /// The searches mask of a replay restricted to some searches.
    pub(super) masks: Option<Masks>,
    /// Round-robin start among a class's lanes.
    pub(super) turn: usize,
}

impl Lanes {
    /// Re-reads the plan from the jobs: lanes that stay keep reading where
    /// they are; new ones start at their class's cursor.
    pub(super) fn rebuild(&mut self, s: &mut LoopState, config: &Config) {
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
    pub(super) fn slice(
        &mut self,
        shared: &Mutex<LoopState>,
        r: &mut RunInput<'_>,
    ) -> Result<usize, SinkError> {
        let Some(plan) = &self.plan else {
            return Ok(0);
        };
        let job = plan.job;
        let mut s = lock(shared);
        if self.masks.is_none() {
            if let Some(ids) = s.jobs.running(job).and_then(|j| j.searches.clone()) {
                self.masks = Some(r.active.masks(&ids));
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
                    // A run of this lane's messages, matched ahead on every
                    // core (`parallel`), then handled one by one.
                    let mut want = (per_lane - taken).min(parallel::RUN_MAX);
                    if shared_out {
                        want = want.min(QUANTUM.saturating_sub(emitted).max(1));
                    }
                    let mut run = Vec::new();
                    // Why the run ended before `want`: nothing fetched
                    // (`None`) or an error.
                    let mut ended: Option<Option<KafkaError>> = None;
                    while run.len() < want {
                        // The last resort waits a little on one lane.
                        let wait = if attempt && n == 0 && k == 0 && taken == 0 && run.is_empty() {
                            LANE_WAIT
                        } else {
                            Duration::ZERO
                        };
                        match lane.consumer.poll(wait) {
                            Some(Ok(msg)) => run.push(msg),
                            Some(Err(e)) => {
                                ended = Some(Some(e));
                                break;
                            }
                            None => {
                                ended = Some(None);
                                break;
                            }
                        }
                    }
                    emitted += s.process_backlog_run(&run, job, class, self.masks.as_ref(), r)?;
                    taken += run.len();
                    match ended {
                        None => {}
                        Some(Some(KafkaError::PartitionEOF(_))) => {
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
                        Some(Some(KafkaError::MessageConsumption(
                            RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange,
                        ))) => {
                            // Retention deleted the class's next messages
                            // before it read them: never a silent jump.
                            s.skip_deleted(job, class, lane);
                            break;
                        }
                        Some(Some(e)) => {
                            tracing::warn!(partition = %lane.tp, error = %e, "drain consumer error (retrying)");
                            break;
                        }
                        Some(None) => break,
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
pub(super) fn lane_consumer(config: &Config) -> Result<BaseConsumer<LoggingContext>, KafkaError> {
    let mut cfg = config
        .kafka
        .config(crate::kafka_client::Role::Consumer, &[]);
    cfg.set("group.id", format!("{}.drain", config.group_id))
        .remove("group.instance.id")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A cursor behind the log start is reported, not skipped silently.
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "true")
        .set("queued.max.messages.kbytes", "8192");
    cfg.create_with_context(LoggingContext)
}

impl LoopState {
    /// A lane's cursor fell behind the log start (retention): report the
    /// deleted range (error log, `retention_lost` metric, the job's
    /// `deleted_by_retention`) and go on from the log start.
    pub(super) fn skip_deleted(&mut self, job: u64, class: usize, lane: &Lane) {
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
}
