//! Batches: sealing, acknowledgements, checkpoints, and the records the
//! output refused for good.

use super::*;

/// A closed batch: the output groups holding its records and the offsets
/// it advances to.
pub(super) struct Sealed {
    pub(super) output: u64,
    pub(super) dead: u64,
    pub(super) offsets: Vec<(TopicPartition, i64)>,
    /// The drain jobs this batch advanced, as they stood when it closed.
    pub(super) jobs: Vec<StoredJob>,
    /// Low-water marks of the catch-up ranges at that moment.
    pub(super) lows: BTreeMap<TopicPartition, i64>,
    /// Classes and jobs whose last records are in this batch.
    pub(super) finishes: Vec<Finish>,
    pub(super) at: Instant,
}

/// A batch unacknowledged for this long means the output is down.
pub(super) const STALL: Duration = Duration::from_secs(5);
/// Most closed batches waiting for acknowledgements before input stops.
pub(super) const MAX_SEALED: usize = 8;

impl LoopState {
    /// Closes the current batch: its records form one group per output,
    /// and its offsets are checkpointed once both groups are acknowledged.
    pub(super) fn seal(&mut self) -> Result<(), SinkError> {
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
    pub(super) fn checkpoint_acknowledged(
        &mut self,
        consumer: &BaseConsumer<RebalanceContext>,
    ) -> Result<bool, SinkError> {
        // Read to the end with no batch open: the last records are in the
        // newest sealed batch, or, with none waiting, already in.
        if !self.batch_open && self.jobs.has_finishes() {
            let finishes = self.jobs.take_finishes();
            match self.sealed.back_mut() {
                Some(newest) => newest.finishes.extend(finishes),
                None => {
                    let stamped = by_id(self.jobs.stamp(&finishes)).collect();
                    let lows = self.jobs.low_waters();
                    if self
                        .write_checkpoint(consumer, Vec::new(), stamped, &lows, CommitMode::Async)
                        .is_err()
                    {
                        return Ok(true);
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
                jobs.extend(by_id(std::mem::take(&mut s.jobs)));
                finishes.append(&mut s.finishes);
                done = Some(s);
            } else {
                break;
            }
        }
        let mut store_failed = false;
        if let Some(s) = done {
            jobs.extend(by_id(self.jobs.stamp(&finishes)));
            store_failed = self
                .write_checkpoint(consumer, s.offsets, jobs, &s.lows, CommitMode::Async)
                .is_err();
        }
        // A failed store write stops the input like a stalled output does
        // (finish_batch retries until the store takes it).
        Ok(store_failed
            || self.sealed.len() > MAX_SEALED
            || self.sealed.front().is_some_and(|f| f.at.elapsed() > STALL))
    }

    /// Flushes the outputs (waiting for every acknowledgement) and writes
    /// the processed offsets in one WriteBatch, then commits them.
    pub(super) fn checkpoint(
        &mut self,
        consumer: &BaseConsumer<RebalanceContext>,
        timeout: Duration,
        mode: CommitMode,
    ) -> Result<(), CheckpointError> {
        self.output.flush(timeout)?;
        self.reroute_refused()?;
        self.dead.sink.flush(timeout)?;
        let mut jobs: BTreeMap<u64, StoredJob> = BTreeMap::new();
        let mut finishes = Vec::new();
        for mut s in self.sealed.drain(..) {
            jobs.extend(by_id(s.jobs));
            finishes.append(&mut s.finishes);
        }
        jobs.extend(by_id(self.jobs.snapshot()));
        // Everything read so far is acknowledged now.
        finishes.extend(self.jobs.take_finishes());
        jobs.extend(by_id(self.jobs.stamp(&finishes)));
        self.batch_open = false;
        let offsets = self
            .processed
            .iter()
            .map(|(tp, &n)| (tp.clone(), n))
            .collect();
        let lows = self.jobs.low_waters();
        self.write_checkpoint(consumer, offsets, jobs, &lows, mode)?;
        Ok(())
    }

    /// Writes the offsets that advance an owned partition's checkpoint and
    /// the drain jobs' cursors in one WriteBatch, then commits to the group
    /// the low-water mark of each partition: min(live checkpoint, cursors
    /// of its unfinished catch-up classes).
    pub(super) fn write_checkpoint(
        &mut self,
        consumer: &BaseConsumer<RebalanceContext>,
        offsets: Vec<(TopicPartition, i64)>,
        jobs: BTreeMap<u64, StoredJob>,
        lows: &BTreeMap<TopicPartition, i64>,
        mode: CommitMode,
    ) -> Result<(), StoreError> {
        // Job states a failed write did not store go first; newer states of
        // the same jobs replace them.
        let mut all = std::mem::take(&mut self.unwritten_jobs);
        all.extend(jobs);
        let jobs: Vec<StoredJob> = all.into_values().collect();
        let advance: Vec<(TopicPartition, i64)> = offsets
            .into_iter()
            .filter(|(tp, next)| {
                self.owned.contains(tp) && self.checkpointed.get(tp).is_none_or(|c| next > c)
            })
            .collect();
        if advance.is_empty() && jobs.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.store.commit_with_jobs(&advance, &[], &jobs) {
            // Not checkpointed: the records are delivered, so a crash now
            // only re-emits them (same match ids). The offsets come again
            // with the next write (they only grow); the jobs are kept.
            self.unwritten_jobs.extend(by_id(jobs));
            if !self.store_down {
                self.store_down = true;
                self.metrics.state_store_down.store(1, Relaxed);
                tracing::error!(error = %e, "checkpoint write failed: input paused, not ready, retrying until the state store takes writes again");
            }
            self.metrics.state_store_errors.fetch_add(1, Relaxed);
            return Err(e);
        }
        if self.store_down {
            self.store_down = false;
            self.metrics.state_store_down.store(0, Relaxed);
            tracing::info!("state store writable again; checkpoints resumed");
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
        Ok(())
    }

    /// Moves the records the output refused for good to the dead letters
    /// and, once those are acknowledged, counts them as done in the output
    /// (so a batch is checkpointed only when each of its records is in the
    /// output or in the dead letters). Dead letters the dead-letter output
    /// refused are logged, counted and dropped.
    pub(super) fn reroute_refused(&mut self) -> Result<(), SinkError> {
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

    pub(super) fn publish_status(&self) {
        let mut parts = self.metrics.partitions.lock().expect("status lock");
        parts.retain(|k, _| self.owned.contains(k));
        for tp in &self.owned {
            let e = parts.entry(tp.clone()).or_default();
            e.checkpoint = self.checkpointed.get(tp).copied();
            e.last_message_ms = self.last_message_ms.get(tp).copied();
        }
        self.metrics
            .assigned_partitions
            .store(self.owned.len() as i64, Relaxed);
    }
}

/// Jobs keyed by id, so that a newer state of a job replaces an older one
/// when batches are checkpointed together.
fn by_id(jobs: Vec<StoredJob>) -> impl Iterator<Item = (u64, StoredJob)> {
    jobs.into_iter().map(|j| (j.id, j))
}
