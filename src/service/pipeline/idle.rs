//! An instance without partitions while its group is stuck.
//!
//! An instance with no partitions is normal when the group has more members
//! than partitions. It is a fault when the group has lag and nobody makes
//! progress on it: a rebalance that never completed (seen after a broker
//! restart: the lone member revoked, the group never reassigned), every
//! partition held by a member that no longer consumes. The watch:
//!
//! 1. starts when the instance has had no partitions for [`IDLE_AFTER`];
//! 2. then, every [`CHECK_EVERY`], reads the group's committed offsets and
//!    the high watermarks of every input partition
//!    ([`GroupProgress`]);
//! 3. when the group has lag and its committed offsets did not move since
//!    the previous check, it is **stuck**: `/readyz` says so, the metric
//!    `stuck_without_partitions` is 1, one error is logged, and the
//!    consumer leaves and rejoins the group (unsubscribe, subscribe), which
//!    starts a new rebalance. It tries again after each further period,
//!    while stuck.
//!
//! Progress by another member (its commits moving) is never a fault, so an
//! idle member of a healthy group never forces a rebalance.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::Pipeline;

/// No partitions for this long before the group is looked at.
pub(super) const IDLE_AFTER: Duration = Duration::from_secs(30);
/// How often the group is looked at while idle.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(30);

/// The group's state on the input topics at one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct GroupProgress {
    /// Messages between the group's committed offsets and the high
    /// watermarks.
    pub lag: i64,
    /// Sum of the committed offsets (moves when anyone commits).
    pub committed: i64,
}

/// What to do after an observation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing to check now.
    Wait,
    /// Look at the group (then call [`IdleWatch::judge`]).
    Check,
}

/// The watch's state (module doc).
#[derive(Debug, Default)]
pub(super) struct IdleWatch {
    idle_since: Option<Instant>,
    last_check: Option<Instant>,
    previous: Option<GroupProgress>,
    stuck: bool,
}

impl IdleWatch {
    /// Called on every loop turn with whether the instance owns partitions.
    pub(super) fn observe(&mut self, now: Instant, owns_partitions: bool) -> Verdict {
        if owns_partitions {
            *self = IdleWatch::default();
            return Verdict::Wait;
        }
        let since = *self.idle_since.get_or_insert(now);
        if now.duration_since(since) < IDLE_AFTER {
            return Verdict::Wait;
        }
        if self
            .last_check
            .is_some_and(|t| now.duration_since(t) < CHECK_EVERY)
        {
            return Verdict::Wait;
        }
        self.last_check = Some(now);
        Verdict::Check
    }

    /// Judges a check: whether the group is stuck (lag, and no commit moved
    /// since the previous check). `None`: the group could not be read.
    pub(super) fn judge(&mut self, progress: Option<GroupProgress>) -> bool {
        let stuck = match (self.previous, progress) {
            (Some(before), Some(now)) => now.lag > 0 && now.committed == before.committed,
            _ => false,
        };
        if progress.is_some() {
            self.previous = progress;
        }
        self.stuck = stuck;
        stuck
    }

    /// Whether the last check found the group stuck.
    pub(super) fn is_stuck(&self) -> bool {
        self.stuck
    }
}

impl Pipeline {
    /// Looks at the group while this instance has no partitions
    /// (module doc): when the group has lag and nobody commits, says so and
    /// rejoins.
    pub(super) fn check_idle_group(&self, watch: &mut IdleWatch) {
        let was_stuck = watch.is_stuck();
        let progress = self.group_progress();
        let stuck = watch.judge(progress);
        self.metrics
            .stuck_without_partitions
            .store(u64::from(stuck), Relaxed);
        if stuck {
            let lag = progress.map_or(0, |p| p.lag);
            if !was_stuck {
                tracing::error!(lag, "no partitions while the group has lag and no member commits: rejoining the group");
            }
            self.consumer.unsubscribe();
            let topics: Vec<&str> = self
                .config
                .input_topics
                .iter()
                .map(String::as_str)
                .collect();
            if let Err(e) = self.consumer.subscribe(&topics) {
                tracing::error!(error = %e, "cannot subscribe again; retrying at the next check");
            }
        } else if was_stuck {
            tracing::info!("the group makes progress again");
        }
    }

    /// The group's lag and committed offsets over every input partition,
    /// or `None` when the broker cannot tell.
    fn group_progress(&self) -> Option<GroupProgress> {
        let timeout = Duration::from_secs(5);
        let mut tpl = TopicPartitionList::new();
        for topic in &self.config.input_topics {
            let md = self.consumer.fetch_metadata(Some(topic), timeout).ok()?;
            for t in md.topics() {
                for p in t.partitions() {
                    tpl.add_partition(topic, p.id());
                }
            }
        }
        let committed = self.consumer.committed_offsets(tpl, timeout).ok()?;
        let (mut lag, mut sum) = (0, 0);
        for e in committed.elements() {
            let (low, high) = self
                .consumer
                .fetch_watermarks(e.topic(), e.partition(), timeout)
                .ok()?;
            let at = match e.offset() {
                Offset::Offset(o) => o,
                _ => low,
            };
            lag += (high - at).max(0);
            sum += at;
        }
        Some(GroupProgress {
            lag,
            committed: sum,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn an_idle_member_of_a_progressing_group_is_left_alone() {
        let t0 = Instant::now();
        let mut w = IdleWatch::default();
        assert_eq!(w.observe(at(t0, 0), false), Verdict::Wait);
        assert_eq!(w.observe(at(t0, 29), false), Verdict::Wait);
        assert_eq!(w.observe(at(t0, 30), false), Verdict::Check);
        assert!(!w.judge(Some(GroupProgress {
            lag: 500,
            committed: 100
        })));
        assert_eq!(w.observe(at(t0, 45), false), Verdict::Wait);
        assert_eq!(w.observe(at(t0, 60), false), Verdict::Check);
        // Someone committed: progress, whatever the lag.
        assert!(!w.judge(Some(GroupProgress {
            lag: 400,
            committed: 200
        })));
        // No lag: nothing to do even if nothing moves.
        assert_eq!(w.observe(at(t0, 90), false), Verdict::Check);
        assert!(!w.judge(Some(GroupProgress {
            lag: 0,
            committed: 200
        })));
        assert!(!w.is_stuck());
    }

    #[test]
    fn lag_with_no_commit_moving_is_stuck_and_partitions_end_the_watch() {
        let t0 = Instant::now();
        let mut w = IdleWatch::default();
        w.observe(at(t0, 0), false);
        assert_eq!(w.observe(at(t0, 30), false), Verdict::Check);
        assert!(
            !w.judge(Some(GroupProgress {
                lag: 27_000,
                committed: 5
            })),
            "one look is not a trend"
        );
        assert_eq!(w.observe(at(t0, 60), false), Verdict::Check);
        assert!(w.judge(Some(GroupProgress {
            lag: 27_000,
            committed: 5
        })));
        assert!(w.is_stuck());
        // An unreadable group is not a verdict.
        assert_eq!(w.observe(at(t0, 90), false), Verdict::Check);
        assert!(!w.judge(None));
        // Partitions again: the watch starts over.
        assert_eq!(w.observe(at(t0, 95), true), Verdict::Wait);
        assert!(!w.is_stuck());
        assert_eq!(w.observe(at(t0, 100), false), Verdict::Wait);
    }
}
