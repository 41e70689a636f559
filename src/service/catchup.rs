//! Catch-up after an outage and replays (SPEC §5.2–§5.4): drain jobs.
//!
//! # Data flow
//!
//! A **job** is a set of offset ranges, one per input partition, drained
//! class by class, plus a cursor per (range, class): the next offset that
//! class still has to look at. Two kinds:
//!
//! * **catch-up** — made when a partition is assigned (at start, after a
//!   rebalance) or the output recovers from an outage, and its backlog,
//!   [checkpoint, high watermark now), exceeds
//!   `catch_up.threshold`. The live lane (the group consumer) jumps to the
//!   head at once — live data of all classes flows immediately — and the
//!   range becomes the job's. The new live offset and the job are written in
//!   **one** synced WriteBatch, so a crash cannot lose the range.
//! * **replay** — a time window (`replay --from --to`, `POST /replays`):
//!   offsets found by timestamp, optionally only some searches
//!   (`--searches`, backfill) and some classes.
//!
//! # Draining: reading again per class, never copying
//!
//! The backlog stays in Kafka. A job is drained by **lanes**: a lane is a
//! consumer outside the group (`assign`) reading the job's ranges for one
//! class from that class's cursors. It parses each message, classifies it
//! (SPEC §5.2) and matches and emits only the documents of its class; the
//! others are left for their own lane. Under `strict` one lane runs at a
//! time, the highest unfinished class; under `weighted` one lane per
//! unfinished class, and the pipeline serves the lane whose emitted
//! documents are furthest behind its weight (documents ÷ weight smallest),
//! so every class advances and none starves.
//!
//! **Choice per partition**: when every message of a partition's topic lands
//! in one class whatever its content (classes by input topic only,
//! [`Classes::static_class`]), that range is read once, by that class's
//! lane: the other classes' cursors start at the range end. A partition
//! carrying several classes is read once per class present: reading
//! (fetch + parse) is cheap next to matching and producing, which happen
//! once per document, and nothing is copied out of Kafka or held in memory.
//!
//! The pipeline thread interleaves the lanes with the live consumer: it
//! takes whatever live messages are waiting first, then a slice of at most
//! [`SLICE`] lane messages, so live data waits at most one slice.
//!
//! # What is checkpointed when
//!
//! Lane messages go through the same batches as live ones: when a batch is
//! closed, the jobs it touched are serialized into it, and when the output
//! has acknowledged the batch, its offsets **and** its job cursors are
//! written in one WriteBatch (`jobs` column family). A crash mid-drain
//! resumes every class at its checkpointed cursor: finished classes are not
//! re-emitted; duplicates are bounded by the unacknowledged batches. A
//! graceful stop keeps the jobs too (it drains the batches first, so its
//! restart emits nothing twice).
//!
//! The group's committed offset of a partition stays the **low-water mark**
//! of everything unfinished: min(live next offset, the cursors of every
//! unfinished class of its catch-up ranges). A rebalance therefore loses
//! nothing: the revoked partition's ranges are dropped here, and the next
//! owner, starting from the low-water mark, sees the backlog and catches up
//! itself (re-emitting what our finished classes already emitted — same
//! `match_id`s).
//!
//! # Visibility
//!
//! Per class: messages still to look at, drained share, rate (messages
//! looked at per second, last 10 s), estimated time to finish, documents
//! emitted, when it finished. Published every second to `/status`,
//! `/metrics` (label: class) and the log (every 5 s). When a job ends, a
//! **drain report** is written to `STATE_DIR/reports/drain-ID.json` and
//! `.html` (backlog per class over time, and when each class finished).
//! A class (and a job) is finished when the output has acknowledged the
//! batch holding its last records, not when its last message is read: the
//! batch being sealed carries the finishes read since the previous one
//! ([`Jobs::take_finishes`]), and its acknowledgement stamps them
//! ([`Jobs::stamp`]) in the same WriteBatch as its offsets.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::metrics::now_ms;
use crate::checkpoint::TopicPartition;
use crate::classes::{CatchUp, Classes, Policy};
use crate::record::{now_rfc3339, rfc3339_ms};

/// Lane messages handled per turn before live messages are looked at again.
pub const SLICE: usize = 256;

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
    fn is(&self, topic: &str, partition: i32) -> bool {
        self.partition == partition && self.topic == topic
    }

    /// Adds `[from, to)` to the deleted spans; returns how many offsets
    /// were not in them yet.
    fn add_deleted(&mut self, from: i64, to: i64) -> u64 {
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
    pub policy: String,
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
        if self.policy == "weighted" {
            open.collect()
        } else {
            open.take(1).collect()
        }
    }

    /// The lowest cursor of an unfinished class in `tp`'s range.
    fn low_water(&self, tp: &TopicPartition) -> Option<i64> {
        self.ranges
            .iter()
            .filter(|r| r.is(&tp.topic, tp.partition))
            .flat_map(|r| r.cursors.iter().filter(move |&&c| c < r.end))
            .min()
            .copied()
    }

    fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a job serializes")
    }
}

/// A job with what is only known while it runs.
struct Run {
    job: Job,
    dirty: bool,
    /// (seconds since created, remaining per class), one per second.
    samples: Vec<(f64, Vec<i64>)>,
    /// Recent (time, remaining per class) for rates.
    window: VecDeque<(Instant, Vec<i64>)>,
    /// Live documents processed when this run began (for the report).
    live_at_start: u64,
    began: Instant,
    began_ms: u64,
    /// Its drain report is written (or it ended before this process).
    reported: bool,
}

/// One class's progress, as `/status` and `/metrics` show it.
#[derive(Clone, Debug, Serialize)]
pub struct ClassProgress {
    /// Class name.
    pub class: String,
    /// Messages this class still has to look at.
    pub backlog_messages: i64,
    /// Time span of that backlog, seconds (oldest unread message to the
    /// end of the range), when known.
    pub backlog_span_seconds: Option<f64>,
    /// Share of its reading done, 0–1.
    pub drained: f64,
    /// Messages looked at per second, last 10 s.
    pub rate: f64,
    /// Seconds to finish at the current rate (waiting classes under
    /// `strict`: after the classes before them).
    pub eta_seconds: Option<f64>,
    /// Documents of this class matched.
    pub documents: u64,
    /// Seconds after the job began when it finished.
    pub finished_after_seconds: Option<f64>,
}

/// The jobs of one service: stored, running, and their progress.
pub struct Jobs {
    runs: Vec<Run>,
    /// Bumped whenever what the lanes should read changes.
    pub generation: u64,
    next_id: u64,
    classes: Classes,
    catch_up: CatchUp,
    reports: PathBuf,
    /// Timestamp (ms) of the last message read per (job, range, class):
    /// the oldest backlog still unread by that class starts about there.
    unread_ts: BTreeMap<(u64, usize, usize), i64>,
    last_log: Instant,
    /// Classes (`Some`) and jobs (`None`) whose last message was read but
    /// whose records are not yet in a sealed batch (see [`Jobs::stamp`]).
    read_finishes: Vec<Finish>,
}

/// A class of a job (`Some(class)`) or the whole job (`None`) read to its
/// end; stamped as finished once the batch holding its records is
/// acknowledged.
pub type Finish = (u64, Option<usize>);

impl Jobs {
    /// The jobs stored in `store`, running ones resumed. Jobs made under
    /// other classes restart each range from its lowest cursor under the
    /// current classes (duplicates, nothing lost).
    pub fn load(
        stored: Vec<(u64, Vec<u8>)>,
        classes: Classes,
        catch_up: CatchUp,
        state_dir: &Path,
        live_docs: u64,
    ) -> Jobs {
        let mut jobs = Jobs {
            runs: Vec::new(),
            generation: 1,
            next_id: 1,
            classes,
            catch_up,
            reports: state_dir.join("reports"),
            unread_ts: BTreeMap::new(),
            last_log: Instant::now(),
            read_finishes: Vec::new(),
        };
        let names: Vec<String> = jobs.classes.names().iter().map(|s| s.to_string()).collect();
        for (id, bytes) in stored {
            jobs.next_id = jobs.next_id.max(id + 1);
            let Ok(mut job) = serde_json::from_slice::<Job>(&bytes) else {
                tracing::error!(job = id, "unreadable drain job in the store; ignored");
                continue;
            };
            if job.classes != names {
                tracing::warn!(job = id, was = ?job.classes, now = ?names,
                    "the classes changed since this job was made; its ranges restart from their lowest cursor");
                for r in &mut job.ranges {
                    let low = r.cursors.iter().copied().min().unwrap_or(r.start);
                    r.cursors = vec![low; names.len()];
                }
                job.emitted = vec![0; names.len()];
                job.class_finished_s = vec![None; names.len()];
                job.classes = names.clone();
                if job.weights.len() != names.len() {
                    job.weights = vec![1; names.len()];
                }
            }
            if job.state == JobState::Running {
                tracing::info!(job = id, kind = ?job.kind, remaining = (0..names.len()).map(|c| job.remaining(c)).sum::<i64>(), "resuming drain job");
            }
            jobs.push(job, live_docs);
        }
        jobs
    }

    fn push(&mut self, job: Job, live_docs: u64) {
        self.runs.push(Run {
            dirty: false,
            samples: Vec::new(),
            window: VecDeque::new(),
            live_at_start: live_docs,
            began: Instant::now(),
            began_ms: now_ms(),
            reported: job.state != JobState::Running,
            job,
        });
        self.generation += 1;
    }

    /// The class names.
    pub fn classes(&self) -> &Classes {
        &self.classes
    }

    /// The catch-up threshold.
    pub fn threshold(&self) -> i64 {
        self.catch_up.threshold
    }

    /// Whether a running catch-up job holds a range of `tp`.
    pub fn catching_up(&self, tp: &TopicPartition) -> bool {
        self.runs.iter().any(|r| {
            r.job.kind == JobKind::CatchUp
                && r.job.state == JobState::Running
                && r.job.ranges.iter().any(|g| g.is(&tp.topic, tp.partition))
        })
    }

    /// A new job over `ranges` ([start, end) per partition): every class
    /// starts at the range start, except where the partition's topic fixes
    /// the class (the other classes start at the end) or the class is not
    /// wanted. Returns its id and stored form; it runs from now on.
    pub fn create(
        &mut self,
        kind: JobKind,
        ranges: Vec<(TopicPartition, i64, i64)>,
        window: Option<(i64, i64)>,
        searches: Option<Vec<String>>,
        only_classes: Option<&[usize]>,
        live_docs: u64,
    ) -> (u64, Vec<u8>) {
        let id = self.next_id;
        self.next_id += 1;
        let n = self.classes.len();
        let ranges = ranges
            .into_iter()
            .map(|(tp, start, end)| {
                let cursors = (0..n)
                    .map(|c| {
                        let wanted = only_classes.is_none_or(|o| o.contains(&c));
                        if wanted && self.classes.reads(c, &tp.topic) {
                            start
                        } else {
                            end
                        }
                    })
                    .collect();
                Range {
                    topic: tp.topic,
                    partition: tp.partition,
                    start,
                    end,
                    cursors,
                    deleted: Vec::new(),
                }
            })
            .collect();
        let (policy, weights) = match &self.catch_up.policy {
            Policy::Strict => ("strict", vec![1; n]),
            Policy::Weighted(w) => ("weighted", w.clone()),
        };
        let now = now_ms();
        let mut job = Job {
            id,
            kind,
            state: JobState::Running,
            created_at: now_rfc3339(),
            created_ms: now,
            classes: self.classes.names().iter().map(|s| s.to_string()).collect(),
            policy: policy.into(),
            weights,
            from_ms: window.map(|w| w.0),
            to_ms: window.map(|w| w.1),
            searches,
            ranges,
            emitted: vec![0; n],
            class_finished_s: vec![None; n],
            finished_ms: None,
            deleted_messages: 0,
        };
        for c in 0..n {
            if job.class_done(c) {
                job.class_finished_s[c] = Some(0.0);
            }
        }
        if (0..n).all(|c| job.class_done(c)) {
            job.state = JobState::Done;
            job.finished_ms = Some(now);
        }
        let bytes = job.to_bytes();
        tracing::info!(job = id, kind = ?kind, messages = job.total(), partitions = job.ranges.len(), policy, "drain job created");
        self.push(job, live_docs);
        (id, bytes)
    }

    /// Drops the catch-up ranges of partitions this instance no longer
    /// owns (their next owner catches up from the group's low-water mark).
    /// Returns the jobs to store.
    pub fn drop_partitions(
        &mut self,
        keep: impl Fn(&TopicPartition) -> bool,
    ) -> Vec<(u64, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        for run in &mut self.runs {
            if run.job.kind != JobKind::CatchUp || run.job.state != JobState::Running {
                continue;
            }
            let before = run.job.ranges.len();
            run.job
                .ranges
                .retain(|r| keep(&TopicPartition::new(r.topic.clone(), r.partition)));
            if run.job.ranges.len() != before {
                tracing::info!(
                    job = run.job.id,
                    dropped = before - run.job.ranges.len(),
                    "catch-up ranges of partitions no longer assigned dropped; their next owner drains them"
                );
                if run.job.ranges.is_empty() {
                    run.job.state = JobState::Cancelled;
                    run.job.finished_ms = Some(now_ms());
                }
                out.push((run.job.id, Some(run.job.to_bytes())));
                run.dirty = false;
                self.generation += 1;
            }
        }
        out
    }

    /// Cancels a job. Returns its stored form, or `None` when no running
    /// job has that id.
    pub fn cancel(&mut self, id: u64) -> Option<(u64, Option<Vec<u8>>)> {
        let run = self
            .runs
            .iter_mut()
            .find(|r| r.job.id == id && r.job.state == JobState::Running)?;
        run.job.state = JobState::Cancelled;
        run.job.finished_ms = Some(now_ms());
        run.dirty = false;
        self.generation += 1;
        tracing::info!(job = id, "drain job cancelled");
        Some((id, Some(run.job.to_bytes())))
    }

    /// The stored forms of jobs changed since the last call.
    pub fn snapshot(&mut self) -> Vec<(u64, Option<Vec<u8>>)> {
        self.runs
            .iter_mut()
            .filter(|r| r.dirty)
            .map(|r| {
                r.dirty = false;
                (r.job.id, Some(r.job.to_bytes()))
            })
            .collect()
    }

    /// Per partition, the low-water mark of the running catch-up ranges.
    pub fn low_waters(&self) -> BTreeMap<TopicPartition, i64> {
        let mut out: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for run in &self.runs {
            if run.job.kind != JobKind::CatchUp || run.job.state != JobState::Running {
                continue;
            }
            for r in &run.job.ranges {
                let tp = TopicPartition::new(r.topic.clone(), r.partition);
                if let Some(low) = run.job.low_water(&tp) {
                    let e = out.entry(tp).or_insert(low);
                    *e = (*e).min(low);
                }
            }
        }
        out
    }

    /// What the lanes should read now: the oldest running job (catch-ups
    /// before replays) with, per current class, its ranges' (topic,
    /// partition, cursor) — only partitions `readable` allows.
    pub fn lanes(&self, readable: impl Fn(&Job, &TopicPartition) -> bool) -> Option<LanePlan> {
        let mut running: Vec<&Run> = self
            .runs
            .iter()
            .filter(|r| r.job.state == JobState::Running)
            .collect();
        running.sort_by_key(|r| (r.job.kind != JobKind::CatchUp, r.job.id));
        for run in running {
            let job = &run.job;
            let mut classes = Vec::new();
            for c in job.current_classes() {
                let parts: Vec<(TopicPartition, i64)> = job
                    .ranges
                    .iter()
                    .filter(|r| r.cursors[c] < r.end)
                    .map(|r| {
                        (
                            TopicPartition::new(r.topic.clone(), r.partition),
                            r.cursors[c],
                        )
                    })
                    .filter(|(tp, _)| readable(job, tp))
                    .collect();
                if !parts.is_empty() {
                    classes.push((c, parts));
                }
            }
            if !classes.is_empty() {
                return Some(LanePlan {
                    job: job.id,
                    classes,
                });
            }
        }
        None
    }

    /// The job (running) with this id.
    pub fn running(&self, id: u64) -> Option<&Job> {
        self.runs
            .iter()
            .map(|r| &r.job)
            .find(|j| j.id == id && j.state == JobState::Running)
    }

    /// The classes to serve, in order: the one with the fewest emitted
    /// documents per unit of weight first, then the others only while they
    /// are less than `lead` documents (scaled to their weight) ahead of it —
    /// so a class whose data is slow to arrive is waited for instead of
    /// losing its share.
    pub fn pick(&self, job: u64, classes: &[usize], lead: usize) -> Vec<usize> {
        let Some(j) = self.running(job) else {
            return Vec::new();
        };
        let total: f64 = classes
            .iter()
            .map(|&c| f64::from(j.weights[c].max(1)))
            .sum();
        let norm = |c: usize| j.emitted[c] as f64 / f64::from(j.weights[c].max(1));
        let mut order: Vec<usize> = classes.to_vec();
        order.sort_by(|&a, &b| norm(a).total_cmp(&norm(b)));
        let Some(&first) = order.first() else {
            return order;
        };
        let least = norm(first);
        order.retain(|&c| (norm(c) - least) * total <= lead as f64);
        order
    }

    /// Records that class `class` of job `job` looked at the message at
    /// `offset` of (topic, partition), with timestamp `ts_ms`; `document`
    /// when it was one of this class's documents. Returns
    /// [`Advance::Stale`] for a message before the cursor (re-fetched) or
    /// outside the range, [`Advance::Take`] for one to handle.
    pub fn look(
        &mut self,
        job: u64,
        class: usize,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Advance {
        let Some(run) = self
            .runs
            .iter_mut()
            .find(|r| r.job.id == job && r.job.state == JobState::Running)
        else {
            return Advance::Stale;
        };
        let Some(r) = run.job.ranges.iter().position(|g| g.is(topic, partition)) else {
            return Advance::Stale;
        };
        let g = &run.job.ranges[r];
        if offset < g.cursors[class] {
            return Advance::Stale;
        }
        if offset >= g.end {
            // Past the range (a gap at its end): this class is done here.
            self.finish_range(job, r, class);
            return Advance::Stale;
        }
        Advance::Take(r)
    }

    /// After [`Jobs::look`] returned `Take(range)`: the message is handled.
    pub fn advance(
        &mut self,
        job: u64,
        range: usize,
        class: usize,
        offset: i64,
        ts_ms: Option<i64>,
        emitted: bool,
    ) {
        let Some(run) = self.runs.iter_mut().find(|r| r.job.id == job) else {
            return;
        };
        if emitted {
            run.job.emitted[class] += 1;
        }
        run.dirty = true;
        let g = &mut run.job.ranges[range];
        g.cursors[class] = offset + 1;
        if let Some(ts) = ts_ms {
            self.unread_ts.insert((job, range, class), ts);
        }
        if offset + 1 >= g.end {
            self.finish_range(job, range, class);
        }
    }

    /// The next offset `class` has to read in `topic`/`partition`.
    pub fn cursor(&self, job: u64, class: usize, topic: &str, partition: i32) -> Option<i64> {
        let run = self.runs.iter().find(|r| r.job.id == job)?;
        let g = run.job.ranges.iter().find(|g| g.is(topic, partition))?;
        Some(g.cursors[class])
    }

    /// Retention deleted the start of `class`'s part of a range before the
    /// class read it: the log of `topic`/`partition` now starts at
    /// `log_start`, past the class's cursor. The cursor moves there (the
    /// class goes on with what is left) and the job counts the loss.
    /// Returns the deleted offsets of this class, `[from, to)`, and how many
    /// of them no other class had reported yet; `None` when the cursor is
    /// not behind the log start.
    pub fn skip_deleted(
        &mut self,
        job: u64,
        class: usize,
        topic: &str,
        partition: i32,
        log_start: i64,
    ) -> Option<(i64, i64, u64)> {
        let run = self
            .runs
            .iter_mut()
            .find(|r| r.job.id == job && r.job.state == JobState::Running)?;
        let r = run.job.ranges.iter().position(|g| g.is(topic, partition))?;
        let g = &mut run.job.ranges[r];
        let from = g.cursors[class];
        if from >= log_start || from >= g.end {
            return None;
        }
        let to = log_start.min(g.end);
        let new = g.add_deleted(from, to);
        g.cursors[class] = to;
        run.job.deleted_messages += new;
        run.dirty = true;
        self.generation += 1;
        if to >= run.job.ranges[r].end {
            self.finish_range(job, r, class);
        }
        Some((from, to, new))
    }

    /// Class `class` reached the end of range `range`. A class (or job)
    /// read to its end is not stamped finished yet: its last records may
    /// still be on their way to the output ([`Jobs::take_finishes`],
    /// [`Jobs::stamp`]).
    fn finish_range(&mut self, job: u64, range: usize, class: usize) {
        let Some(run) = self.runs.iter_mut().find(|r| r.job.id == job) else {
            return;
        };
        let g = &mut run.job.ranges[range];
        g.cursors[class] = g.end;
        run.dirty = true;
        self.generation += 1;
        if run.job.class_done(class)
            && run.job.class_finished_s[class].is_none()
            && !self.read_finishes.contains(&(job, Some(class)))
        {
            self.read_finishes.push((job, Some(class)));
        }
        if run.job.state == JobState::Running
            && (0..run.job.classes.len()).all(|c| run.job.class_done(c))
        {
            // Done reading: no lane reads it any more.
            run.job.state = JobState::Done;
            self.read_finishes.push((job, None));
        }
    }

    /// Whether classes or jobs were read to their end since the last
    /// [`Jobs::take_finishes`].
    pub fn has_finishes(&self) -> bool {
        !self.read_finishes.is_empty()
    }

    /// The classes and jobs read to their end since the last call: they
    /// belong to the batch being sealed (or, with no batch open, to the
    /// newest sealed one).
    pub fn take_finishes(&mut self) -> Vec<Finish> {
        std::mem::take(&mut self.read_finishes)
    }

    /// The batch holding the last records of these classes and jobs is
    /// acknowledged: they are in. Stamps their finish times (the drain
    /// report's "by when was it in") and returns the jobs to store.
    pub fn stamp(&mut self, finishes: &[Finish]) -> Vec<(u64, Option<Vec<u8>>)> {
        let mut touched = BTreeSet::new();
        for &(job, class) in finishes {
            let Some(run) = self.runs.iter_mut().find(|r| r.job.id == job) else {
                continue;
            };
            let after = (now_ms().saturating_sub(run.job.created_ms)) as f64 / 1e3;
            match class {
                Some(c) if run.job.class_finished_s[c].is_none() => {
                    run.job.class_finished_s[c] = Some(after);
                    tracing::info!(job, class = %run.job.classes[c], after_seconds = after, documents = run.job.emitted[c], "class drained");
                }
                None if run.job.finished_ms.is_none() => {
                    run.job.finished_ms = Some(now_ms());
                    tracing::info!(job, kind = ?run.job.kind, messages = run.job.total(), seconds = after, "drain job finished");
                }
                _ => continue,
            }
            touched.insert(job);
        }
        self.runs
            .iter()
            .filter(|r| touched.contains(&r.job.id))
            .map(|r| (r.job.id, Some(r.job.to_bytes())))
            .collect()
    }

    /// Reports of jobs that just finished, written once; call regularly.
    /// Also samples progress (once a second) and logs it (every 5 s).
    pub fn tick(&mut self, live_docs: u64) -> Vec<ClassProgress> {
        let now = Instant::now();
        for run in &mut self.runs {
            if run.reported {
                continue;
            }
            let remaining: Vec<i64> = (0..run.job.classes.len())
                .map(|c| run.job.remaining(c))
                .collect();
            let t = run.began.elapsed().as_secs_f64();
            if run.samples.last().is_none_or(|s| t - s.0 >= 1.0)
                || run.job.state != JobState::Running
            {
                run.samples.push((t, remaining.clone()));
            }
            run.window.push_back((now, remaining));
            while run
                .window
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at).as_secs_f64() > 10.0)
            {
                run.window.pop_front();
            }
        }
        // Reports for jobs that ended while running here.
        let reports = self.reports.clone();
        for run in &mut self.runs {
            if run.job.state != JobState::Running && run.job.finished_ms.is_some() && !run.reported
            {
                match write_report(&reports, run, live_docs, &self.classes) {
                    Ok(path) => {
                        tracing::info!(job = run.job.id, report = %path.display(), "drain report written")
                    }
                    Err(e) => {
                        tracing::error!(job = run.job.id, error = %e, "cannot write the drain report")
                    }
                }
                run.reported = true;
            }
        }
        let progress = self.progress();
        if self.last_log.elapsed().as_secs() >= 5 && !progress.is_empty() {
            self.last_log = Instant::now();
            for p in &progress {
                if p.backlog_messages > 0 {
                    tracing::info!(class = %p.class, backlog = p.backlog_messages, drained = format!("{:.1}%", p.drained * 100.0), rate = p.rate.round(), eta_seconds = p.eta_seconds.map(f64::round), "catch-up progress");
                }
            }
        }
        // Forget finished jobs beyond the newest 20.
        let finished = self
            .runs
            .iter()
            .filter(|r| r.job.state != JobState::Running)
            .count();
        if finished > 20 {
            let mut drop = finished - 20;
            self.runs.retain(|r| {
                if drop > 0 && r.reported {
                    drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
        progress
    }

    /// Per class, over all running jobs.
    pub fn progress(&self) -> Vec<ClassProgress> {
        let n = self.classes.len();
        let mut out: Vec<ClassProgress> = self
            .classes
            .names()
            .iter()
            .map(|name| ClassProgress {
                class: name.to_string(),
                backlog_messages: 0,
                backlog_span_seconds: None,
                drained: 1.0,
                rate: 0.0,
                eta_seconds: Some(0.0),
                documents: 0,
                finished_after_seconds: None,
            })
            .collect();
        let mut total = vec![0i64; n];
        let now = now_ms() as i64;
        for run in &self.runs {
            let job = &run.job;
            if job.state != JobState::Running || job.classes.len() != n {
                continue;
            }
            for (c, p) in out.iter_mut().enumerate() {
                let rem = job.remaining(c);
                p.backlog_messages += rem;
                total[c] += job.to_read(c, &self.classes);
                p.documents += job.emitted[c];
                p.finished_after_seconds = job.class_finished_s[c];
                if let (Some((t0, r0)), Some((t1, r1))) = (run.window.front(), run.window.back()) {
                    let dt = t1.duration_since(*t0).as_secs_f64();
                    if dt > 0.5 {
                        p.rate += (r0[c] - r1[c]).max(0) as f64 / dt;
                    }
                }
                if rem > 0 {
                    let oldest = job
                        .ranges
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.cursors[c] < r.end)
                        .filter_map(|(i, _)| self.unread_ts.get(&(job.id, i, c)))
                        .min();
                    let span = match oldest {
                        Some(&ts) => (now - ts).max(0) as f64 / 1e3,
                        None => now.saturating_sub(job.created_ms as i64).max(0) as f64 / 1e3,
                    };
                    p.backlog_span_seconds = Some(p.backlog_span_seconds.unwrap_or(0.0).max(span));
                }
            }
        }
        // ETA: strict classes wait for the ones before them.
        let mut ahead = 0.0;
        for (c, p) in out.iter_mut().enumerate() {
            if total[c] > 0 {
                p.drained = 1.0 - p.backlog_messages as f64 / total[c] as f64;
            }
            if p.backlog_messages == 0 {
                p.eta_seconds = Some(0.0);
                continue;
            }
            p.eta_seconds = if p.rate > 0.0 {
                let own = p.backlog_messages as f64 / p.rate;
                Some(if self.strict() { ahead + own } else { own })
            } else {
                None
            };
            if let Some(e) = p.eta_seconds {
                ahead = e;
            }
        }
        out
    }

    fn strict(&self) -> bool {
        matches!(self.catch_up.policy, Policy::Strict)
    }

    /// Every known job (running first), for `/status`.
    pub fn status_json(&self) -> serde_json::Value {
        let jobs: Vec<serde_json::Value> = self
            .runs
            .iter()
            .rev()
            .map(|r| {
                let j = &r.job;
                serde_json::json!({
                    "id": j.id,
                    "kind": j.kind,
                    "state": j.state,
                    "created_at": j.created_at,
                    "policy": j.policy,
                    "messages": j.total(),
                    "partitions": j.ranges.len(),
                    "from_ms": j.from_ms,
                    "to_ms": j.to_ms,
                    "searches": j.searches,
                    "classes": j.classes.iter().enumerate().map(|(c, name)| serde_json::json!({
                        "class": name,
                        "remaining": j.remaining(c),
                        "documents": j.emitted[c],
                        "finished_after_seconds": j.class_finished_s[c],
                    })).collect::<Vec<_>>(),
                    "finished_ms": j.finished_ms,
                    "deleted_by_retention": j.deleted_messages,
                })
            })
            .collect();
        serde_json::Value::Array(jobs)
    }
}

/// The outcome of [`Jobs::look`].
#[derive(Debug, PartialEq, Eq)]
pub enum Advance {
    /// Skip the message.
    Stale,
    /// Handle it; it belongs to this range index.
    Take(usize),
}

/// What the lanes read: per class, (partition, cursor).
#[derive(Clone, Debug, PartialEq)]
pub struct LanePlan {
    /// The job.
    pub job: u64,
    /// Per class.
    pub classes: Vec<(usize, Vec<(TopicPartition, i64)>)>,
}

/// Writes `drain-ID.json` and `drain-ID.html` into `dir`.
fn write_report(
    dir: &Path,
    run: &Run,
    live_docs: u64,
    classes: &Classes,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let j = &run.job;
    // From when this process began the job (its creation, unless resumed
    // after a restart) to its end.
    let secs = j
        .finished_ms
        .map_or(run.began.elapsed().as_secs_f64(), |f| {
            f.saturating_sub(run.began_ms) as f64 / 1e3
        })
        .max(1e-3);
    let total = j.total();
    let live = live_docs.saturating_sub(run.live_at_start);
    let classes: Vec<serde_json::Value> = j
        .classes
        .iter()
        .enumerate()
        .map(|(c, name)| {
            serde_json::json!({
                "class": name,
                "documents": j.emitted[c],
                "messages_read": j.to_read(c, classes),
                "finished_after_seconds": j.class_finished_s[c],
                "finished_at": j.class_finished_s[c].map(|s| rfc3339_ms(j.created_ms + (s * 1e3) as u64)),
            })
        })
        .collect();
    let report = serde_json::json!({
        "job": j.id,
        "kind": j.kind,
        "policy": j.policy,
        "started_at": j.created_at,
        "finished_at": j.finished_ms.map(rfc3339_ms),
        "backlog_messages": total,
        "deleted_by_retention": j.deleted_messages,
        "partitions": j.ranges.len(),
        "drain_seconds": secs,
        "drain_rate_messages_per_second": total as f64 / secs,
        "live_documents_during_drain": live,
        "live_rate_documents_per_second": live as f64 / secs,
        "classes": classes,
        "samples": run.samples.iter().map(|(t, r)| serde_json::json!({"t": t, "remaining": r})).collect::<Vec<_>>(),
        "note": "samples are taken while this process ran the job; after a restart they begin at the restart",
    });
    let json_path = dir.join(format!("drain-{}.json", j.id));
    std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?)?;
    std::fs::write(
        dir.join(format!("drain-{}.html", j.id)),
        report_html(j, run, &report),
    )?;
    Ok(json_path)
}

/// A self-contained page: a table of classes and an SVG chart of the
/// backlog per class over time.
fn report_html(j: &Job, run: &Run, report: &serde_json::Value) -> String {
    const COLORS: [&str; 6] = [
        "#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b",
    ];
    let (w, h, pad) = (760.0, 320.0, 50.0);
    let t_max = run.samples.last().map_or(1.0, |s| s.0).max(1.0);
    let y_max = run
        .samples
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        svg,
        r#"<line x1="{pad}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{pad}" y1="10" x2="{pad}" y2="{}" stroke="black"/>"#,
        h - pad,
        w - 10.0,
        h - pad,
        h - pad
    );
    let _ = write!(
        svg,
        r#"<text x="{pad}" y="{}">0 s</text><text x="{}" y="{}" text-anchor="end">{t_max:.1} s</text><text x="5" y="15">{y_max}</text>"#,
        h - pad + 15.0,
        w - 10.0,
        h - pad + 15.0
    );
    for c in 0..j.classes.len() {
        let color = COLORS[c % COLORS.len()];
        let pts: Vec<String> = run
            .samples
            .iter()
            .map(|(t, r)| {
                let x = pad + (w - pad - 10.0) * t / t_max;
                let y = (h - pad) - (h - pad - 10.0) * r[c] as f64 / y_max;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        if let Some(s) = j.class_finished_s[c] {
            // Finish times count from the job's creation, samples from
            // when this process began running it.
            let offset = run.began_ms.saturating_sub(j.created_ms) as f64 / 1e3;
            let x = pad + (w - pad - 10.0) * (s - offset).clamp(0.0, t_max) / t_max;
            let _ = write!(
                svg,
                r#"<line x1="{x:.1}" y1="10" x2="{x:.1}" y2="{}" stroke="{color}" stroke-dasharray="4 3"/>"#,
                h - pad
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" fill="{color}">{}</text>"#,
            w - 150.0,
            20.0 + 15.0 * c as f64,
            html_escape(&j.classes[c])
        );
    }
    svg.push_str("</svg>");
    let mut rows = String::new();
    for (c, name) in j.classes.iter().enumerate() {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(name),
            j.emitted[c],
            j.class_finished_s[c].map_or("—".into(), |s| format!("{s:.1} s")),
            report["classes"][c]["finished_at"].as_str().unwrap_or("—"),
        );
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Drain report {id}</title>\
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd}}</style></head><body>\
<h1>Drain report — job {id} ({kind:?}, {policy})</h1>\
<p>Backlog: <b>{total}</b> messages in {parts} partitions; started {start}; drained in <b>{secs:.1} s</b> \
({rate:.0} messages/s) while {live} live documents were processed.</p>\
<table><tr><th>class</th><th>documents</th><th>finished after</th><th>finished at</th></tr>{rows}</table>\
<h2>Backlog per class over time (messages still to read)</h2>{svg}</body></html>",
        id = j.id,
        kind = j.kind,
        policy = j.policy,
        total = j.total(),
        parts = j.ranges.len(),
        start = j.created_at,
        secs = report["drain_seconds"].as_f64().unwrap_or(0.0),
        rate = report["drain_rate_messages_per_second"].as_f64().unwrap_or(0.0),
        live = report["live_documents_during_drain"],
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A replay to start: ranges found by time, and what to emit.
#[derive(Clone, Debug)]
pub struct ReplaySpec {
    /// [start, end) per partition.
    pub ranges: Vec<(TopicPartition, i64, i64)>,
    /// Window start, ms since the epoch (inclusive).
    pub from_ms: i64,
    /// Window end (exclusive).
    pub to_ms: i64,
    /// Only these search ids.
    pub searches: Option<Vec<String>>,
    /// Only these classes (indexes).
    pub classes: Option<Vec<usize>>,
    /// What the lookup found worth saying (a bound past the newest
    /// message, an empty window).
    pub notes: Vec<String>,
}

/// A request from the admin API to the pipeline.
pub enum Request {
    /// Register and start a replay; answers its id.
    Replay {
        /// What to replay.
        spec: ReplaySpec,
        /// The job id, or why it could not be stored.
        reply: std::sync::mpsc::Sender<Result<u64, String>>,
    },
    /// Cancel a running job; answers whether one was cancelled.
    Cancel {
        /// The job.
        id: u64,
        /// Whether it was running and is now cancelled.
        reply: std::sync::mpsc::Sender<bool>,
    },
}

/// Requests waiting for the pipeline (served once a second).
#[derive(Default)]
pub struct Inbox {
    /// Waiting requests.
    pub requests: std::sync::Mutex<Vec<Request>>,
}

/// Finds the offsets of the window [from, to) of every partition of
/// `topics` by message timestamp (Kafka's offsets for times). A bound after
/// the newest message means the high watermark, and a note says so (some
/// brokers answer 0 instead of "end" there: an answer at the log start is
/// checked against the first message's timestamp).
///
/// # Errors
///
/// Metadata or lookups failing, unknown topics.
pub fn replay_ranges(
    config: &crate::config::Config,
    from_ms: i64,
    to_ms: i64,
) -> Result<(Vec<(TopicPartition, i64, i64)>, Vec<String>), String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    use rdkafka::Message;
    use std::time::Duration;

    if to_ms <= from_ms {
        return Err("--to must be after --from".into());
    }
    let mut cfg = rdkafka::ClientConfig::new();
    for (k, v) in &config.consumer_overrides {
        cfg.set(k, v);
    }
    cfg.set("bootstrap.servers", &config.brokers)
        .set("group.id", format!("{}.replay", config.group_id))
        .remove("group.instance.id")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = cfg.create().map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(10);
    let mut notes = Vec::new();
    let mut ranges = Vec::new();
    for topic in &config.input_topics {
        let md = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| format!("metadata of {topic}: {e}"))?;
        let Some(t) = md.topics().first().filter(|t| !t.partitions().is_empty()) else {
            return Err(format!("input topic {topic} does not exist"));
        };
        for p in t.partitions() {
            let tp = TopicPartition::new(topic.clone(), p.id());
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), timeout)
                .map_err(|e| format!("watermarks of {tp}: {e}"))?;
            let mut bound = |ts: i64, name: &str| -> Result<i64, String> {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(ts))
                    .map_err(|e| e.to_string())?;
                let found = consumer
                    .offsets_for_times(tpl, timeout)
                    .map_err(|e| format!("offsets for times of {tp}: {e}"))?;
                let o = found
                    .find_partition(topic, p.id())
                    .map(|e| e.offset())
                    .unwrap_or(Offset::End);
                let at = match o {
                    Offset::Offset(o) if o > low => o.min(high),
                    Offset::Offset(_) if high > low => {
                        // At the log start: true only if the first message
                        // is at or after `ts`.
                        if first_timestamp(&consumer, topic, p.id(), low)
                            .is_some_and(|first| first >= ts)
                        {
                            low
                        } else {
                            high
                        }
                    }
                    _ => high,
                };
                if at == high && high > low {
                    notes.push(format!(
                        "{tp}: --{name} is after the newest message; using the high watermark {high}"
                    ));
                }
                Ok(at)
            };
            let start = bound(from_ms, "from")?;
            let end = bound(to_ms, "to")?;
            if end > start {
                ranges.push((tp, start, end));
            }
        }
    }
    if ranges.is_empty() {
        notes.push("no message falls inside the window".into());
    }
    return Ok((ranges, notes));

    fn first_timestamp(c: &BaseConsumer, topic: &str, partition: i32, low: i64) -> Option<i64> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(low))
            .ok()?;
        c.assign(&tpl).ok()?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                let ts = m.timestamp().to_millis();
                let _ = c.unassign();
                return ts;
            }
        }
        let _ = c.unassign();
        None
    }
}

/// Parses a time of `replay --from/--to` or `POST /replays`: RFC 3339
/// (`2026-11-25T10:00:00Z`, a date-time without zone is UTC) or Unix
/// milliseconds.
///
/// # Errors
///
/// Neither form.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("`{s}` is not an RFC 3339 time or Unix milliseconds: {e}"))?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| format!("`{s}` is before 1970"))
}

/// Validates a replay request against the configuration and the running
/// searches and finds its offsets.
///
/// # Errors
///
/// Bad times, unknown classes or search ids, lookups failing.
pub fn plan_replay(
    config: &crate::config::Config,
    known_search: impl Fn(&str) -> bool,
    from: &str,
    to: &str,
    searches: Option<Vec<String>>,
    classes: Option<Vec<String>>,
) -> Result<ReplaySpec, String> {
    let from_ms = parse_time(from).map_err(|e| format!("--from: {e}"))?;
    let to_ms = parse_time(to).map_err(|e| format!("--to: {e}"))?;
    if to_ms <= from_ms {
        return Err("--to must be after --from".into());
    }
    if let Some(ids) = &searches {
        let unknown: Vec<&str> = ids
            .iter()
            .map(String::as_str)
            .filter(|id| !known_search(id))
            .collect();
        if ids.is_empty() || !unknown.is_empty() {
            return Err(format!(
                "--searches: unknown search ids in the running version: {}",
                unknown.join(", ")
            ));
        }
    }
    let classes = match classes {
        None => None,
        Some(names) => Some(
            names
                .iter()
                .map(|n| {
                    config.classes.index(n).ok_or_else(|| {
                        format!(
                            "--classes: `{n}` is not a class (classes: {})",
                            config.classes.names().join(", ")
                        )
                    })
                })
                .collect::<Result<Vec<usize>, String>>()?,
        ),
    };
    let (ranges, notes) = replay_ranges(config, from_ms, to_ms)?;
    Ok(ReplaySpec {
        ranges,
        from_ms,
        to_ms,
        searches,
        classes,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Classes {
        Classes::new(vec![
            ("owned".into(), vec!["owned".into()], vec![]),
            (
                "dm".into(),
                vec![],
                vec![("type".into(), vec!["dm".into()])],
            ),
            ("rest".into(), vec![], vec![]),
        ])
        .unwrap()
    }

    fn jobs(policy: Policy) -> Jobs {
        let dir = std::env::temp_dir().join(format!("tm-jobs-{}", std::process::id()));
        Jobs::load(
            Vec::new(),
            classes(),
            CatchUp {
                policy,
                threshold: 10,
            },
            &dir,
            0,
        )
    }

    /// A catch-up job over `ranges`; its id.
    fn catch_up(j: &mut Jobs, ranges: Vec<(TopicPartition, i64, i64)>) -> u64 {
        j.create(JobKind::CatchUp, ranges, None, None, None, 0).0
    }

    #[test]
    fn a_topic_that_fixes_the_class_is_read_by_that_class_only() {
        let mut j = jobs(Policy::Strict);
        let id = catch_up(
            &mut j,
            vec![
                (TopicPartition::new("owned", 0), 100, 200),
                (TopicPartition::new("social", 0), 50, 80),
            ],
        );
        let job = j.running(id).unwrap();
        assert_eq!(job.ranges[0].cursors, vec![100, 200, 200]);
        assert_eq!(job.ranges[1].cursors, vec![80, 50, 50]);
        assert_eq!(job.current_classes(), vec![0]);
        // Strict: only the first class has lanes.
        let plan = j.lanes(|_, _| true).unwrap();
        assert_eq!(plan.classes.len(), 1);
        assert_eq!(
            plan.classes[0].1,
            vec![(TopicPartition::new("owned", 0), 100)]
        );
        // The group may only commit the lowest unfinished cursor.
        let lows = j.low_waters();
        assert_eq!(lows[&TopicPartition::new("owned", 0)], 100);
        assert_eq!(lows[&TopicPartition::new("social", 0)], 50);
    }

    #[test]
    fn cursors_advance_classes_finish_in_turn_and_the_job_ends() {
        let mut j = jobs(Policy::Strict);
        let id = catch_up(&mut j, vec![(TopicPartition::new("social", 1), 0, 3)]);
        // Class 0 has nothing in this topic: done at once.
        assert!(j.running(id).unwrap().class_done(0));
        for class in [1, 2] {
            assert_eq!(j.running(id).unwrap().current_classes(), vec![class]);
            for offset in 0..3 {
                let Advance::Take(r) = j.look(id, class, "social", 1, offset) else {
                    panic!("offset {offset} not taken");
                };
                j.advance(id, r, class, offset, Some(1_000), offset == 1);
            }
            // A re-fetched message before the cursor is skipped.
            assert_eq!(j.look(id, class, "social", 1, 0), Advance::Stale);
        }
        assert!(j.running(id).is_none(), "the job ended");
        // Read to the end, but in only once the output acknowledged it.
        assert!(j.status_json()[0]["finished_ms"].is_null());
        assert!(j.status_json()[0]["classes"][1]["finished_after_seconds"].is_null());
        let finishes = j.take_finishes();
        assert_eq!(finishes, vec![(id, Some(1)), (id, Some(2)), (id, None)]);
        assert!(!j.has_finishes());
        let stored = j.stamp(&finishes);
        assert_eq!(stored.len(), 1, "the stamped job, once");
        assert!(j.stamp(&finishes).is_empty(), "stamped once");
        let stored = j.status_json();
        assert!(stored[0]["finished_ms"].is_u64());
        assert!(stored[0]["classes"][2]["finished_after_seconds"].is_f64());
        assert_eq!(stored[0]["state"], "done");
        assert_eq!(stored[0]["classes"][1]["documents"], 1);
        assert!(j.low_waters().is_empty());
    }

    #[test]
    fn weighted_serves_the_class_furthest_behind_its_weight() {
        let mut j = jobs(Policy::Weighted(vec![60, 30, 10]));
        let (id, _) = j.create(
            JobKind::Replay,
            vec![(TopicPartition::new("social", 0), 0, 1000)],
            Some((0, 1)),
            None,
            None,
            0,
        );
        for (class, n) in [(1, 30), (2, 5)] {
            for offset in 0..n {
                let Advance::Take(r) = j.look(id, class, "social", 0, offset) else {
                    panic!()
                };
                j.advance(id, r, class, offset, None, true);
            }
        }
        // emitted / weight: dm 30/30 = 1, rest 5/10 = 0.5 → rest first;
        // dm is 0.5 × 40 = 20 weighted documents ahead.
        assert_eq!(j.pick(id, &[1, 2], 64), vec![2, 1]);
        assert_eq!(
            j.pick(id, &[1, 2], 10),
            vec![2],
            "dm waits until rest catches up"
        );
    }

    #[test]
    fn messages_deleted_before_a_class_read_them_are_skipped_and_counted_once() {
        let mut j = jobs(Policy::Strict);
        let id = catch_up(&mut j, vec![(TopicPartition::new("social", 0), 100, 200)]);
        // dm read up to 130, then the log start moved to 150.
        for offset in 100..130 {
            let Advance::Take(r) = j.look(id, 1, "social", 0, offset) else {
                panic!("offset {offset} not taken");
            };
            j.advance(id, r, 1, offset, None, false);
        }
        assert_eq!(
            j.skip_deleted(id, 1, "social", 0, 150),
            Some((130, 150, 20))
        );
        assert_eq!(j.cursor(id, 1, "social", 0), Some(150));
        // Not behind the log start: nothing to skip.
        assert_eq!(j.skip_deleted(id, 1, "social", 0, 140), None);
        // The next class missed [100, 160): 40 of them not counted yet.
        assert_eq!(
            j.skip_deleted(id, 2, "social", 0, 160),
            Some((100, 160, 40))
        );
        assert_eq!(j.status_json()[0]["deleted_by_retention"], 60);
        assert_eq!(j.low_waters()[&TopicPartition::new("social", 0)], 150);
        // A log start past the range's end finishes the class there.
        assert_eq!(
            j.skip_deleted(id, 1, "social", 0, 500),
            Some((150, 200, 40))
        );
        assert!(j.running(id).unwrap().class_done(1));
        assert_eq!(j.status_json()[0]["deleted_by_retention"], 100);
    }

    #[test]
    fn ranges_of_revoked_partitions_are_dropped() {
        let mut j = jobs(Policy::Strict);
        let id = catch_up(
            &mut j,
            vec![
                (TopicPartition::new("social", 0), 0, 100),
                (TopicPartition::new("social", 1), 0, 100),
            ],
        );
        let kept = TopicPartition::new("social", 1);
        let stored = j.drop_partitions(|tp| *tp == kept);
        assert_eq!(stored.len(), 1);
        assert_eq!(j.running(id).unwrap().ranges.len(), 1);
        assert!(j.catching_up(&kept));
        assert!(!j.catching_up(&TopicPartition::new("social", 0)));
        j.drop_partitions(|_| false);
        assert!(j.running(id).is_none(), "a job without ranges is cancelled");
    }
}
