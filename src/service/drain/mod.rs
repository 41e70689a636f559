//! Catch-up after an outage and replays (docs/operations.md §5.2–§5.4): drain jobs.
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
//! (docs/operations.md §5.2) and matches and emits only the documents of its class; the
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

//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | `job` | the stored job model: [`Job`], its ranges, kinds and states |
//! | `scheduler` | [`Jobs`]: creating, resuming and cancelling jobs, which class reads next, cursors, finishes |
//! | `progress` | backlog, rate and ETA per class ([`ClassProgress`]), sampled once a second |
//! | `report` | the drain report written when a job ends (JSON and HTML with its chart) |
//! | `replay` | replay requests and planning: time window → offset ranges; the admin inbox |

mod job;
mod progress;
mod replay;
mod report;
mod scheduler;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::classes::{CatchUp, Classes, Policy, PolicyName};
use crate::record::{now_ms, now_rfc3339, rfc3339_ms};
use crate::state_store::{StoredJob, TopicPartition};

pub use job::{Job, JobKind, JobState, Range};
pub use progress::ClassProgress;
pub use replay::*;
pub use report::reports_dir;
use report::write_report;
use scheduler::Run;
pub use scheduler::{CancelRefused, Finish, Jobs, LanePlan, Lookup, UnreadableJob};

/// Lane messages handled per turn before live messages are looked at again.
pub const SLICE: usize = 256;
