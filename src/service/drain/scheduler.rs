//! The jobs of one service and the scheduling of their classes.

use super::*;

/// A job with what is only known while it runs.
pub(super) struct Run {
    pub(super) job: Job,
    pub(super) dirty: bool,
    /// (seconds since created, remaining per class), one per second.
    pub(super) samples: Vec<(f64, Vec<i64>)>,
    /// Recent (time, remaining per class) for rates.
    pub(super) window: VecDeque<(Instant, Vec<i64>)>,
    /// Live documents processed when this run began (for the report).
    pub(super) live_at_start: u64,
    pub(super) began: Instant,
    pub(super) began_ms: u64,
    /// Its drain report is written (or it ended before this process).
    pub(super) reported: bool,
}

/// The jobs of one service: stored, running, and their progress.
pub struct Jobs {
    pub(super) runs: Vec<Run>,
    /// Bumped whenever what the lanes should read changes.
    pub generation: u64,
    pub(super) next_id: u64,
    pub(super) classes: Classes,
    pub(super) catch_up: CatchUp,
    pub(super) reports: PathBuf,
    /// Timestamp (ms) of the last message read per (job, range, class):
    /// the oldest backlog still unread by that class starts about there.
    pub(super) unread_ts: BTreeMap<(u64, usize, usize), i64>,
    pub(super) last_log: Instant,
    /// Classes (`Some`) and jobs (`None`) whose last message was read but
    /// whose records are not yet in a sealed batch (see [`Jobs::stamp`]).
    pub(super) read_finishes: Vec<Finish>,
}

/// A class of a job (`Some(class)`) or the whole job (`None`) read to its
/// end; stamped as finished once the batch holding its records is
/// acknowledged.
pub type Finish = (u64, Option<usize>);

/// A stored drain job that cannot be decoded. The service refuses to start
/// rather than drop the backlog the job still has to drain.
#[derive(Debug, thiserror::Error)]
#[error(
    "drain job {id} in the state store cannot be read ({reason}); its backlog would be lost. \
     Start the version that wrote it, or remove the job on purpose (docs/operations.md §5.3)"
)]
pub struct UnreadableJob {
    /// The job's id.
    pub id: u64,
    /// The decoder's message.
    pub reason: String,
}

/// Why a job was not cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelRefused {
    /// No running job has that id.
    NotRunning,
    /// It is a catch-up (running or not): its backlog is data the group
    /// has not matched yet, so only a replay may be cancelled.
    CatchUp,
}

impl Jobs {
    /// The jobs stored in `store`, running ones resumed. Jobs made under
    /// other classes restart each range from its lowest cursor under the
    /// current classes (duplicates, nothing lost).
    ///
    /// # Errors
    ///
    /// The first stored job that cannot be decoded.
    pub fn load(
        stored: Vec<(u64, Vec<u8>)>,
        classes: Classes,
        catch_up: CatchUp,
        state_dir: &Path,
        live_docs: u64,
    ) -> Result<Jobs, UnreadableJob> {
        let mut jobs = Jobs {
            runs: Vec::new(),
            generation: 1,
            next_id: 1,
            classes,
            catch_up,
            reports: super::reports_dir(state_dir),
            unread_ts: BTreeMap::new(),
            last_log: Instant::now(),
            read_finishes: Vec::new(),
        };
        let names: Vec<String> = jobs.classes.names().iter().map(|s| s.to_string()).collect();
        for (id, bytes) in stored {
            jobs.next_id = jobs.next_id.max(id + 1);
            let mut job = serde_json::from_slice::<Job>(&bytes).map_err(|e| UnreadableJob {
                id,
                reason: e.to_string(),
            })?;
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
        Ok(jobs)
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
    /// wanted. Returns its stored form (with its id); it runs from now on.
    pub fn create(
        &mut self,
        kind: JobKind,
        ranges: Vec<(TopicPartition, i64, i64)>,
        window: Option<(i64, i64)>,
        searches: Option<Vec<String>>,
        only_classes: Option<&[usize]>,
        live_docs: u64,
    ) -> StoredJob {
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
        let policy = self.catch_up.policy.name();
        let weights = match &self.catch_up.policy {
            Policy::Strict => vec![1; n],
            Policy::Weighted(w) => w.clone(),
        };
        let now = now_ms();
        let mut job = Job {
            id,
            kind,
            state: JobState::Running,
            created_at: now_rfc3339(),
            created_ms: now,
            classes: self.classes.names().iter().map(|s| s.to_string()).collect(),
            policy,
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
        let stored = job.stored();
        tracing::info!(job = id, kind = ?kind, messages = job.total(), partitions = job.ranges.len(), policy = policy.as_str(), "drain job created");
        self.push(job, live_docs);
        stored
    }

    /// Drops the catch-up ranges of partitions this instance no longer
    /// owns (their next owner catches up from the group's low-water mark).
    /// Returns the jobs to store.
    pub fn drop_partitions(&mut self, keep: impl Fn(&TopicPartition) -> bool) -> Vec<StoredJob> {
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
                out.push(run.job.stored());
                run.dirty = false;
                self.generation += 1;
            }
        }
        out
    }

    /// Drops a job that was created but could not be stored (its ranges
    /// are then read in order by the live consumer).
    pub fn discard_unstored(&mut self, id: u64) {
        self.runs.retain(|r| r.job.id != id);
        self.generation += 1;
    }

    /// Cancels a running replay. Returns its stored form.
    ///
    /// # Errors
    ///
    /// No such running job, or a catch-up (which may not be cancelled).
    pub fn cancel(&mut self, id: u64) -> Result<StoredJob, CancelRefused> {
        let run = self
            .runs
            .iter_mut()
            .find(|r| r.job.id == id)
            .ok_or(CancelRefused::NotRunning)?;
        if run.job.kind == JobKind::CatchUp {
            return Err(CancelRefused::CatchUp);
        }
        if run.job.state != JobState::Running {
            return Err(CancelRefused::NotRunning);
        }
        run.job.state = JobState::Cancelled;
        run.job.finished_ms = Some(now_ms());
        run.dirty = false;
        self.generation += 1;
        tracing::info!(job = id, "replay cancelled");
        Ok(run.job.stored())
    }

    /// The stored forms of jobs changed since the last call.
    pub fn snapshot(&mut self) -> Vec<StoredJob> {
        self.runs
            .iter_mut()
            .filter(|r| r.dirty)
            .map(|r| {
                r.dirty = false;
                r.job.stored()
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

    /// Where the message at `offset` of (topic, partition), read by the
    /// lane of class `class` of job `job`, belongs: [`Lookup::Stale`] for
    /// a message before the class's cursor (re-fetched) or outside every
    /// range (a range it ends is finished), [`Lookup::Take`] with the range
    /// to handle it in. Nothing moves until [`Jobs::handled`].
    pub fn look(
        &mut self,
        job: u64,
        class: usize,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Lookup {
        let Some(run) = self
            .runs
            .iter_mut()
            .find(|r| r.job.id == job && r.job.state == JobState::Running)
        else {
            return Lookup::Stale;
        };
        let Some(r) = run.job.ranges.iter().position(|g| g.is(topic, partition)) else {
            return Lookup::Stale;
        };
        let g = &run.job.ranges[r];
        if offset < g.cursors[class] {
            return Lookup::Stale;
        }
        if offset >= g.end {
            // Past the range (a gap at its end): this class is done here.
            self.finish_range(job, r, class);
            return Lookup::Stale;
        }
        Lookup::Take(r)
    }

    /// After [`Jobs::look`] returned `Take(range)`: the message is handled
    /// (`emitted`: it was one of this class's documents; `ts_ms`: its
    /// timestamp); moves the class's cursor past it.
    pub fn handled(
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
    pub fn stamp(&mut self, finishes: &[Finish]) -> Vec<StoredJob> {
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
            .map(|r| r.job.stored())
            .collect()
    }

    pub(super) fn strict(&self) -> bool {
        matches!(self.catch_up.policy, Policy::Strict)
    }

    /// Every known job (running first), for `/status`.
    pub fn status_json(&self) -> serde_json::Value {
        let jobs: Vec<serde_json::Value> = self
            .runs
            .iter()
            .rev()
            .map(|r| r.job.status_json())
            .collect();
        serde_json::Value::Array(jobs)
    }
}

/// Where [`Jobs::look`] puts a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
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
