//! The lag monitor: how far behind each assigned partition is, in messages
//! and in seconds, every 5 s, on its own thread and client so that broker
//! round trips never stall the pipeline.
//!
//! # Unknown is not zero
//!
//! A round that cannot read every partition's high watermark (the broker
//! unreachable, a timeout) leaves the lag *unknown*: `lag_monitor_up` goes
//! to 0 and the lag gauges are left out of `/metrics` (an absent series
//! alerts as "no data", a 0 would say "all fine"), and `/status` shows
//! `null`. A panic in a round is caught and logged; the next round runs
//! (the monitor only reads, so starting over is always safe).
//!
//! # Lag in seconds
//!
//! Per partition with a lag, the age of the last message the pipeline
//! processed there (its Kafka timestamp): the next unprocessed message is
//! at most that old. `consumer_lag_seconds` is the largest over the assigned
//! partitions; 0 when nothing is behind.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::kafka_client::LoggingContext;

use super::metrics::Metrics;
use super::shutdown::Shutdown;
use crate::config::Config;
use crate::record::now_ms;
use crate::state_store::TopicPartition;

/// Component name in `/healthz` and `component_up`.
pub const COMPONENT: &str = "lag-monitor";
const ROUND: Duration = Duration::from_secs(5);

/// Starts the monitor.
///
/// # Errors
///
/// When its client or thread cannot be created.
pub fn spawn(config: &Config, metrics: Arc<Metrics>, shutdown: Shutdown) -> anyhow::Result<()> {
    let client: BaseConsumer<LoggingContext> = config
        .kafka
        .config(crate::kafka_client::Role::Consumer, &[])
        .remove("group.instance.id")
        .set("group.id", format!("{}-lag-monitor", config.group_id))
        .create_with_context(LoggingContext)
        .context("cannot create the lag monitor's client")?;
    let components = metrics.components.clone();
    super::components::spawn(&components, COMPONENT, move || {
        let mut next = Instant::now();
        let mut was_up = true;
        while !shutdown.is_requested() {
            std::thread::sleep(Duration::from_millis(200));
            if Instant::now() < next {
                continue;
            }
            next = Instant::now() + ROUND;
            let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                round(&client, &metrics)
            }));
            let up = match round {
                Ok(Ok(())) => true,
                Ok(Err(why)) => {
                    if was_up {
                        tracing::warn!(error = %why, "lag unknown: the lag monitor cannot read the high watermarks");
                    }
                    false
                }
                Err(_) => {
                    tracing::error!("a lag monitor round panicked; the next one starts over");
                    false
                }
            };
            if up && !was_up {
                tracing::info!("lag known again");
            }
            was_up = up;
            metrics.lag_monitor_up.store(u64::from(up), Relaxed);
        }
    })
    .context("cannot start the lag monitor")?;
    Ok(())
}

/// One round: every assigned partition's watermarks, or the first error.
fn round(client: &BaseConsumer<LoggingContext>, metrics: &Metrics) -> Result<(), String> {
    let parts: Vec<(TopicPartition, Option<i64>, Option<i64>)> = metrics
        .partitions
        .lock()
        .expect("status lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.checkpoint, v.last_message_ms))
        .collect();
    let mut total = 0;
    let mut seconds = 0.0f64;
    let mut failed = None;
    for (tp, checkpoint, last_message_ms) in parts {
        let watermarks = client.fetch_watermarks(&tp.topic, tp.partition, ROUND);
        let mut status = metrics.partitions.lock().expect("status lock");
        let Some(e) = status.get_mut(&tp) else {
            continue; // revoked meanwhile
        };
        match watermarks {
            Ok((low, high)) => {
                let lag = (high - checkpoint.unwrap_or(low)).max(0);
                total += lag;
                let age = match (lag, last_message_ms) {
                    (0, _) => Some(0.0),
                    (_, Some(ts)) => Some((now_ms() as i64 - ts).max(0) as f64 / 1e3),
                    (_, None) => None, // nothing processed yet: age unknown
                };
                if let Some(a) = age {
                    seconds = seconds.max(a);
                }
                e.high_watermark = Some(high);
                e.lag = Some(lag);
                e.lag_seconds = age;
            }
            Err(err) => {
                e.lag = None;
                e.lag_seconds = None;
                failed.get_or_insert(format!("{tp}: {err}"));
            }
        }
    }
    if let Some(why) = failed {
        return Err(why);
    }
    metrics.lag_total.store(total, Relaxed);
    metrics
        .lag_seconds_ms
        .store((seconds * 1e3) as u64, Relaxed);
    Ok(())
}
