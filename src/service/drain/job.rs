//! The stored job model: what a drain job reads and how far it got.

use super::*;

/// What a job is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// The backlog after an outage.
    CatchUp,
    /// A time window read again.
    Replay,
}

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Being drained.
    Running,
    /// Every class drained.
    Done,
    /// Stopped by request.
    Cancelled,
}

/// One partition's range of a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Range {
    /// Input topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset.
    pub start: i64,
    /// One past the last offset.
    pub end: i64,
    /// Per class, the next offset it has to look at (`end` when done).
    pub cursors: Vec<i64>,
    /// Offsets deleted by retention before some class read them, as
    /// sorted disjoint `[from, to)` spans (see [`Jobs::skip_deleted`]).
    #[serde(default)]
    pub deleted: Vec<(i64, i64)>,
}

impl Range {
    pub(super) fn is(&self, topic: &str, partition: i32) -> bool {
        self.partition == partition && self.topic == topic
    }

    /// Adds `[from, to)` to the deleted spans; returns how many offsets
    /// were not in them yet.
    pub(super) fn add_deleted(&mut self, from: i64, to: i64) -> u64 {
        let size = |d: &[(i64, i64)]| d.iter().map(|(a, b)| b - a).sum::<i64>();
        let before = size(&self.deleted);
        self.deleted.push((from, to));
        self.deleted.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(self.deleted.len());
        for &(a, b) in &self.deleted {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.deleted = merged;
        (size(&self.deleted) - before).max(0) as u64
    }
}

/// A drain job, as stored in RocksDB.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Its number.
    pub id: u64,
    /// Catch-up or replay.
    pub kind: JobKind,
    /// Running, done or cancelled.
    pub state: JobState,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// The same, ms since the epoch.
    pub created_ms: u64,
    /// The class names, highest first, when it was made.
    pub classes: Vec<String>,
    /// `strict` or `weighted`.
    pub policy: PolicyName,
    /// Weights per class (`weighted`).
    pub weights: Vec<u32>,
    /// Replay window start, ms since the epoch (message timestamps).
    #[serde(default)]
    pub from_ms: Option<i64>,
    /// Replay window end (exclusive).
    #[serde(default)]
    pub to_ms: Option<i64>,
    /// Only these search ids (backfill).
    #[serde(default)]
    pub searches: Option<Vec<String>>,
    /// The ranges.
    pub ranges: Vec<Range>,
    /// Documents of each class matched so far.
    pub emitted: Vec<u64>,
    /// Per class, seconds after `created_ms` when it finished.
    pub class_finished_s: Vec<Option<f64>>,
    /// When the job ended (ms since the epoch).
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// Messages of its ranges deleted by retention before every class had
    /// read them (each offset counted once).
    #[serde(default)]
    pub deleted_messages: u64,
}

impl Job {
    /// Messages in all ranges.
    pub fn total(&self) -> i64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }

    /// Messages class `c` still has to look at.
    pub fn remaining(&self, c: usize) -> i64 {
        self.ranges
            .iter()
            .map(|r| (r.end - r.cursors[c]).max(0))
            .sum()
    }

    /// Messages class `c` has to look at in all (its share of the reading):
    /// the ranges of topics it may take whose class is not fixed to
    /// another.
    pub fn to_read(&self, c: usize, classes: &Classes) -> i64 {
        self.ranges
            .iter()
            .filter(|r| classes.reads(c, &r.topic))
            .map(|r| r.end - r.start)
            .sum()
    }

    /// Whether class `c` is drained.
    pub fn class_done(&self, c: usize) -> bool {
        self.ranges.iter().all(|r| r.cursors[c] >= r.end)
    }

    /// The classes being drained now: under `strict` the highest unfinished
    /// one, under `weighted` every unfinished one.
    pub fn current_classes(&self) -> Vec<usize> {
        let open = (0..self.classes.len()).filter(|&c| !self.class_done(c));
        if self.policy == PolicyName::Weighted {
            open.collect()
        } else {
            open.take(1).collect()
        }
    }

    /// The lowest cursor of an unfinished class in `tp`'s range.
    pub(super) fn low_water(&self, tp: &TopicPartition) -> Option<i64> {
        self.ranges
            .iter()
            .filter(|r| r.is(&tp.topic, tp.partition))
            .flat_map(|r| r.cursors.iter().filter(move |&&c| c < r.end))
            .min()
            .copied()
    }

    /// What `/status` and `status --json` show of it.
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "created_at": self.created_at,
            "policy": self.policy,
            "messages": self.total(),
            "partitions": self.ranges.len(),
            "from_ms": self.from_ms,
            "to_ms": self.to_ms,
            "searches": self.searches,
            "classes": self.classes.iter().enumerate().map(|(c, name)| serde_json::json!({
                "class": name,
                "remaining": self.remaining(c),
                "documents": self.emitted[c],
                "finished_after_seconds": self.class_finished_s[c],
            })).collect::<Vec<_>>(),
            "finished_ms": self.finished_ms,
            "deleted_by_retention": self.deleted_messages,
        })
    }

    /// Its stored form (JSON, keyed by id).
    pub(super) fn stored(&self) -> StoredJob {
        StoredJob {
            id: self.id,
            bytes: serde_json::to_vec(self).expect("a job serializes"),
        }
    }
}
