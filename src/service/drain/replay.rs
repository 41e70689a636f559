//! Replays: a time window turned into offset ranges, and the admin inbox.

use super::*;

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
    /// Cancel a running replay.
    Cancel {
        /// The job.
        id: u64,
        /// Cancelled and stored, or why not.
        reply: std::sync::mpsc::Sender<Result<(), CancelError>>,
    },
}

/// Why `DELETE /replays/{id}` did not cancel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelError {
    /// Refused by the scheduler (not running, or a catch-up).
    Refused(CancelRefused),
    /// Cancelled in memory but not stored; it resumes after a restart.
    NotStored(String),
}

/// Requests waiting for the pipeline (served once a second).
#[derive(Default)]
pub struct Inbox {
    /// Waiting requests.
    pub requests: std::sync::Mutex<Vec<Request>>,
}

/// The partition ranges `(partition, from offset, to offset)` a replay
/// reads, and notes on what the lookup found.
pub type ReplayRanges = (Vec<(TopicPartition, i64, i64)>, Vec<String>);

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
) -> Result<ReplayRanges, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    use rdkafka::Message;
    use std::time::Duration;

    if to_ms <= from_ms {
        return Err("--to must be after --from".into());
    }
    let mut cfg = config
        .kafka
        .config(crate::kafka_client::Role::Consumer, &[]);
    cfg.set("group.id", format!("{}.replay", config.group_id))
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
