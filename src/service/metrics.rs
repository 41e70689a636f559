//! Service metrics (docs/operations.md §6): counters and gauges in atomics, rendered in
//! the Prometheus text format. Names follow `topic_matcher_<what>_<unit>`;
//! no label takes unbounded values (no partitions, no search ids).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use super::process_metrics::escape_label;
use crate::record::now_ms;
use crate::state_store::TopicPartition;

/// Upper bounds of the batch latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Per-partition state shown by `/status` (not a metric label).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PartitionStatus {
    /// Next offset to process (checkpointed).
    pub checkpoint: Option<i64>,
    /// High watermark at the last lag check.
    pub high_watermark: Option<i64>,
    /// Messages between the checkpoint and the high watermark (`None`:
    /// unknown).
    pub lag: Option<i64>,
    /// Age of the last processed message when behind, seconds (`None`:
    /// unknown).
    pub lag_seconds: Option<f64>,
    /// Kafka timestamp of the last processed message, ms.
    pub last_message_ms: Option<i64>,
}

/// All metrics of one service.
#[derive(Default)]
pub struct Metrics {
    /// What each search cost (`/searches/cost`).
    pub costs: super::cost::CostBook,
    /// Messages read from the input.
    pub documents_in: AtomicU64,
    /// Bad messages sent to the dead letters.
    pub documents_bad: AtomicU64,
    /// Documents with at least one match.
    pub documents_matched: AtomicU64,
    /// Documents that spent the matching work budget (dead-lettered).
    pub documents_too_expensive: AtomicU64,
    /// Documents whose matching panicked (dead-lettered).
    pub documents_internal_error: AtomicU64,
    /// Dead letters sent, whatever the reason.
    pub dead_letters: AtomicU64,
    /// Match records the output cannot take (too large, refused for good),
    /// sent to the dead letters instead.
    pub records_refused: AtomicU64,
    /// Dead letters the dead-letter output refused for good (logged).
    pub dead_letters_dropped: AtomicU64,
    /// Match records written.
    pub records_out: AtomicU64,
    /// Output failures (timeouts, errors) seen while flushing.
    pub output_errors: AtomicU64,
    /// Messages lost to retention (checkpoint older than the log start).
    pub retention_lost: AtomicU64,
    /// Checkpoints written.
    pub checkpoints: AtomicU64,
    /// Unix time in ms of the last checkpoint.
    pub last_checkpoint_ms: AtomicU64,
    /// Whether the output is currently failing (1) or not (0).
    pub output_down: AtomicU64,
    /// Whether the last checkpoint write failed (1) or not (0).
    pub state_store_down: AtomicU64,
    /// Failed checkpoint writes.
    pub state_store_errors: AtomicU64,
    /// Assigned partitions.
    pub assigned_partitions: AtomicI64,
    /// 1 once the group gave this member an assignment, even an empty one.
    pub group_joined: AtomicU64,
    /// 1 while this instance has no partitions and its group has lag that
    /// nobody drains (the pipeline rejoins the group).
    pub stuck_without_partitions: AtomicU64,
    /// Total consumer lag over assigned partitions (valid while
    /// `lag_monitor_up` is 1).
    pub lag_total: AtomicI64,
    /// Largest lag in seconds over assigned partitions, in ms.
    pub lag_seconds_ms: AtomicU64,
    /// 1 while the lag monitor's last round read every partition.
    pub lag_monitor_up: AtomicU64,
    /// Liveness of the background components.
    pub components: std::sync::Arc<super::components::Components>,
    /// Compile time of the searches, ms.
    pub compile_ms: AtomicU64,
    /// Searches compiled.
    pub searches: AtomicU64,
    /// The searches version in use.
    pub searches_version: AtomicU64,
    /// Searches versions accepted (activated) since start.
    pub reloads_ok: AtomicU64,
    /// Searches changes rejected (invalid, shrink guard) since start.
    pub reloads_rejected: AtomicU64,
    /// Searches-topic records ignored (undecodable; the key's previous
    /// value stays).
    pub searches_records_ignored: AtomicU64,
    batch_buckets: [AtomicU64; BUCKETS.len()],
    batch_count: AtomicU64,
    batch_sum_us: AtomicU64,
    /// Per-partition status for `/status`.
    pub partitions: Mutex<BTreeMap<TopicPartition, PartitionStatus>>,
    /// Drain progress per class and the jobs (`/status`, `/metrics`).
    pub drain: Mutex<(Vec<super::drain::ClassProgress>, serde_json::Value)>,
}

impl Metrics {
    /// Records one batch's latency (poll to checkpoint).
    pub fn observe_batch(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.batch_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.batch_count.fetch_add(1, Relaxed);
        self.batch_sum_us.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// Seconds since the last checkpoint (0 before the first).
    pub fn checkpoint_age_secs(&self) -> f64 {
        let last = self.last_checkpoint_ms.load(Relaxed);
        if last == 0 {
            return 0.0;
        }
        now_ms().saturating_sub(last) as f64 / 1e3
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP topic_matcher_{name} {help}\n# TYPE topic_matcher_{name} counter\ntopic_matcher_{name} {v}");
        };
        counter(
            "documents_in_total",
            "Messages read from the input topics.",
            self.documents_in.load(Relaxed),
        );
        counter(
            "documents_bad_total",
            "Bad messages written to the dead letters.",
            self.documents_bad.load(Relaxed),
        );
        counter(
            "documents_matched_total",
            "Documents with at least one match.",
            self.documents_matched.load(Relaxed),
        );
        counter(
            "documents_too_expensive_total",
            "Documents that spent the matching work budget, sent to the dead letters (the search is in the log).",
            self.documents_too_expensive.load(Relaxed),
        );
        counter(
            "documents_internal_error_total",
            "Documents whose matching panicked, sent to the dead letters.",
            self.documents_internal_error.load(Relaxed),
        );
        counter(
            "dead_letters_total",
            "Dead letters sent, whatever the reason.",
            self.dead_letters.load(Relaxed),
        );
        counter(
            "records_refused_total",
            "Match records the output cannot take, sent to the dead letters instead.",
            self.records_refused.load(Relaxed),
        );
        counter(
            "dead_letters_dropped_total",
            "Dead letters the dead-letter output refused for good (each logged with its coordinates).",
            self.dead_letters_dropped.load(Relaxed),
        );
        counter(
            "match_records_out_total",
            "Match records written to the output.",
            self.records_out.load(Relaxed),
        );
        counter(
            "state_store_errors_total",
            "Failed checkpoint writes to the state store.",
            self.state_store_errors.load(Relaxed),
        );
        counter(
            "output_errors_total",
            "Output flushes that failed or timed out.",
            self.output_errors.load(Relaxed),
        );
        counter(
            "retention_lost_messages_total",
            "Messages deleted by retention before they were processed.",
            self.retention_lost.load(Relaxed),
        );
        counter(
            "checkpoints_total",
            "StateStore written to RocksDB.",
            self.checkpoints.load(Relaxed),
        );
        counter(
            "searches_reloads_total",
            "Searches versions activated since start (reloads and rollbacks).",
            self.reloads_ok.load(Relaxed),
        );
        counter(
            "searches_rejected_total",
            "Searches changes rejected (invalid or refused by the shrink guard).",
            self.reloads_rejected.load(Relaxed),
        );
        counter(
            "searches_records_ignored_total",
            "Searches-topic records that could not be used (no UTF-8 key, not a topic); the key's previous value stays.",
            self.searches_records_ignored.load(Relaxed),
        );
        let mut gauge = |name: &str, help: &str, v: String| {
            let _ = writeln!(o, "# HELP topic_matcher_{name} {help}\n# TYPE topic_matcher_{name} gauge\ntopic_matcher_{name} {v}");
        };
        let lag_known = self.lag_monitor_up.load(Relaxed) == 1;
        gauge(
            "lag_monitor_up",
            "1 while the lag is known (the last round read every partition's high watermark); the lag gauges are absent otherwise.",
            self.lag_monitor_up.load(Relaxed).to_string(),
        );
        if lag_known {
            gauge(
                "consumer_lag_messages",
                "Messages between checkpoints and high watermarks, all assigned partitions.",
                self.lag_total.load(Relaxed).to_string(),
            );
            gauge(
                "consumer_lag_seconds",
                "Age of the oldest unprocessed message, largest over the assigned partitions (0 when none is behind).",
                format!("{:.3}", self.lag_seconds_ms.load(Relaxed) as f64 / 1e3),
            );
        }
        gauge(
            "assigned_partitions",
            "Input partitions assigned to this instance.",
            self.assigned_partitions.load(Relaxed).to_string(),
        );
        gauge(
            "output_down",
            "1 while the output fails to acknowledge.",
            self.output_down.load(Relaxed).to_string(),
        );
        gauge(
            "stuck_without_partitions",
            "1 while this instance has no partitions and its group has lag nobody commits (it rejoins the group).",
            self.stuck_without_partitions.load(Relaxed).to_string(),
        );
        gauge(
            "state_store_down",
            "1 while checkpoint writes fail (input paused, not ready).",
            self.state_store_down.load(Relaxed).to_string(),
        );
        gauge(
            "checkpoint_age_seconds",
            "Seconds since the last checkpoint.",
            format!("{:.3}", self.checkpoint_age_secs()),
        );
        gauge(
            "searches",
            "Searches in the running version.",
            self.searches.load(Relaxed).to_string(),
        );
        gauge(
            "searches_version",
            "The searches version in use (match records carry it).",
            self.searches_version.load(Relaxed).to_string(),
        );
        gauge(
            "searches_compile_seconds",
            "Compile time of the running searches.",
            format!("{:.3}", self.compile_ms.load(Relaxed) as f64 / 1e3),
        );
        let progress = self.drain.lock().expect("drain lock").0.clone();
        let mut per_class =
            |name: &str, help: &str, v: &dyn Fn(&super::drain::ClassProgress) -> Option<f64>| {
                let _ = writeln!(
                    o,
                    "# HELP topic_matcher_{name} {help}\n# TYPE topic_matcher_{name} gauge"
                );
                for p in &progress {
                    if let Some(x) = v(p) {
                        let _ = writeln!(
                            o,
                            "topic_matcher_{name}{{class=\"{}\"}} {x}",
                            escape_label(&p.class)
                        );
                    }
                }
            };
        per_class(
            "backlog_messages",
            "Backlog messages each class still has to read (catch-ups and replays).",
            &|p| Some(p.backlog_messages as f64),
        );
        per_class(
            "backlog_span_seconds",
            "Age of the oldest unread backlog message per class.",
            &|p| p.backlog_span_seconds,
        );
        per_class(
            "backlog_drained_ratio",
            "Share of each class's backlog read, 0-1.",
            &|p| Some(p.drained),
        );
        per_class(
            "drain_rate_messages_per_second",
            "Backlog messages read per second per class, last 10 s.",
            &|p| Some(p.rate),
        );
        per_class(
            "drain_eta_seconds",
            "Estimated seconds until each class's backlog is drained.",
            &|p| p.eta_seconds,
        );
        per_class(
            "backlog_documents",
            "Backlog documents of each class matched by running jobs (a gauge: it restarts with each job).",
            &|p| Some(p.documents as f64),
        );
        let _ = writeln!(
            o,
            "# HELP topic_matcher_component_up 1 while a background component runs (0: see /healthz for why).\n# TYPE topic_matcher_component_up gauge"
        );
        for (name, down) in self.components.snapshot() {
            let _ = writeln!(
                o,
                "topic_matcher_component_up{{component=\"{}\"}} {}",
                escape_label(name),
                u8::from(down.is_none())
            );
        }
        let _ = writeln!(o, "# HELP topic_matcher_batch_latency_seconds Time from a batch's first message to its checkpoint.");
        let _ = writeln!(o, "# TYPE topic_matcher_batch_latency_seconds histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                o,
                "topic_matcher_batch_latency_seconds_bucket{{le=\"{b}\"}} {}",
                self.batch_buckets[i].load(Relaxed)
            );
        }
        let count = self.batch_count.load(Relaxed);
        let _ = writeln!(
            o,
            "topic_matcher_batch_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            o,
            "topic_matcher_batch_latency_seconds_sum {:.6}",
            self.batch_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(o, "topic_matcher_batch_latency_seconds_count {count}");
        super::process_metrics::render(&mut o);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.documents_in.fetch_add(3, Relaxed);
        m.observe_batch(Duration::from_millis(3));
        let t = m.render();
        assert!(t.contains("topic_matcher_documents_in_total 3\n"));
        assert!(t.contains("topic_matcher_batch_latency_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(t.contains("topic_matcher_batch_latency_seconds_bucket{le=\"0.0025\"} 0\n"));
        assert!(t.contains("topic_matcher_batch_latency_seconds_count 1\n"));
    }

    #[test]
    fn renders_drain_progress_per_class() {
        let m = Metrics::default();
        m.drain.lock().unwrap().0 = vec![super::super::drain::ClassProgress {
            class: "critical".into(),
            backlog_messages: 1200,
            backlog_span_seconds: Some(3600.0),
            drained: 0.25,
            rate: 400.0,
            eta_seconds: Some(3.0),
            documents: 90,
            finished_after_seconds: None,
        }];
        let t = m.render();
        for line in [
            "topic_matcher_backlog_messages{class=\"critical\"} 1200\n",
            "topic_matcher_backlog_span_seconds{class=\"critical\"} 3600\n",
            "topic_matcher_backlog_drained_ratio{class=\"critical\"} 0.25\n",
            "topic_matcher_drain_rate_messages_per_second{class=\"critical\"} 400\n",
            "topic_matcher_drain_eta_seconds{class=\"critical\"} 3\n",
        ] {
            assert!(t.contains(line), "{line} missing in:\n{t}");
        }
    }
}
