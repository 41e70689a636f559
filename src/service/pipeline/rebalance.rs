//! The consumer context: assignment and revocation (module doc of the
//! pipeline), and backlogs found at assignment becoming drain jobs.

use super::*;
use std::sync::atomic::Ordering::Relaxed;

/// The consumer context: rebalances (see the module doc).
pub(crate) struct RebalanceContext {
    pub(super) shared: Arc<Mutex<LoopState>>,
}

impl ClientContext for RebalanceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka_client::log_client_error(&error, reason);
    }
}

impl ConsumerContext for RebalanceContext {
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
                            if let Err(e) =
                                s.store
                                    .commit_with_jobs(&[], std::slice::from_ref(&tp), &dropped)
                            {
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
                // A member of the group now, even with no partitions (more
                // members than partitions): ready (docs/operations.md §6).
                s.metrics.group_joined.store(1, Relaxed);
                s.publish_status();
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let mut s = lock(&self.shared);
                let deadline = s.drain_deadline;
                if let Err(e) = s.checkpoint(consumer, deadline, CommitMode::Sync) {
                    tracing::warn!(error = %e, "revocation: no checkpoint taken (output not drained in time, or the state store failed); the next owner re-reads from the last checkpoint");
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
                    s.last_message_ms.remove(tp);
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
                s.last_message_ms.clear();
                s.checkpointed.clear();
                s.group_committed.clear();
                s.publish_status();
            }
        }
    }
}

impl LoopState {
    /// Catch-up (docs/operations.md §5.3): every partition of `tpl` whose backlog from
    /// its start offset to the high watermark exceeds the threshold becomes
    /// a range of a new drain job, and its live lane starts at the head.
    /// The job and the new live offsets are stored in one WriteBatch before
    /// the assignment takes them.
    pub(super) fn split_backlogs(
        &mut self,
        consumer: &BaseConsumer<RebalanceContext>,
        tpl: &mut TopicPartitionList,
    ) {
        let mut ranges = Vec::new();
        // Positions below the log start, moved to it (reported here once,
        // not again when the consumer would fail to fetch them).
        let mut moved = Vec::new();
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
                    moved.push((tp.clone(), low));
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
        for (tp, low) in moved {
            if ranges.iter().any(|r| r.0 == tp) {
                continue; // the catch-up reads it from the log start
            }
            let _ = tpl.set_partition_offset(&tp.topic, tp.partition, Offset::Offset(low));
            if let Some(next) = self.processed.get_mut(&tp) {
                *next = low;
            }
        }
        if ranges.is_empty() {
            return;
        }
        let heads: Vec<(TopicPartition, i64)> = ranges
            .iter()
            .map(|(tp, _, high)| (tp.clone(), *high))
            .collect();
        let job = self
            .jobs
            .create(JobKind::CatchUp, ranges, None, None, None, self.live_docs);
        let id = job.id;
        if let Err(e) = self.store.commit_with_jobs(&heads, &[], &[job]) {
            tracing::error!(error = %e, "cannot store the catch-up job; consuming the backlog in order instead");
            self.jobs.discard_unstored(id);
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
    /// ([`LoopState::split_backlogs`]); returns their new live offsets (the
    /// heads) for the consumer to seek to.
    pub(super) fn split_after_outage(
        &mut self,
        consumer: &BaseConsumer<RebalanceContext>,
    ) -> Vec<(TopicPartition, i64)> {
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
}
