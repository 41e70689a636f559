//! What the broker benchmarks share: topic creation, the bare-consumer
//! baselines they are measured against, and the timing of the service from
//! its first message to the checkpoint that covers its last.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::kafka_client::{KafkaClients, Role};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// Creates `names` with `partitions` partitions each (an existing topic is
/// fine).
pub(super) fn create_topics(
    kafka: &KafkaClients,
    names: &[&str],
    partitions: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = kafka.config(Role::Admin, &[]).create()?;
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = rt.block_on(admin.create_topics(
        &topics,
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ))?;
    for r in results {
        if let Err((name, code)) = r {
            anyhow::ensure!(
                code == rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                "creating topic {name}: {code}"
            );
        }
    }
    Ok(())
}

/// Reads the `n` messages of `topics` (3 partitions each) from the start
/// with a bare consumer; the seconds from the first message to the last.
pub(super) fn bare_read(
    kafka: &KafkaClients,
    topics: &[&str],
    n: usize,
    tag: &str,
) -> anyhow::Result<f64> {
    let bare: BaseConsumer = kafka
        .config(Role::Consumer, &[])
        .set("group.id", format!("bench-bare-{tag}"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        for p in 0..3 {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
    }
    bare.assign(&tpl)?;
    let mut read = 0usize;
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while read < n && Instant::now() < deadline {
        if let Some(Ok(_)) = bare.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            read += 1;
        }
    }
    anyhow::ensure!(read == n, "the bare consumer read {read} of {n} messages");
    Ok(first.map_or(0.0, |t| t.elapsed().as_secs_f64()))
}

/// Reads the `n` messages of `topics` (3 partitions each) from the start
/// with one bare consumer per partition, all at once (as the drain lanes
/// read); the seconds from the first message to the last.
pub(super) fn bare_read_per_partition(
    kafka: &KafkaClients,
    topics: &[&str],
    n: usize,
) -> anyhow::Result<f64> {
    let read = std::sync::atomic::AtomicUsize::new(0);
    let spans = std::thread::scope(|scope| {
        let mut readers = Vec::new();
        for topic in topics {
            for p in 0..3 {
                let read = &read;
                readers.push(
                    scope.spawn(move || -> anyhow::Result<Option<(Instant, Instant)>> {
                        let c: BaseConsumer = kafka
                            .config(Role::Consumer, &[])
                            .set("group.id", "bench-bare-per-partition")
                            .set("enable.auto.commit", "false")
                            .set("enable.partition.eof", "true")
                            .create()?;
                        let mut tpl = TopicPartitionList::new();
                        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
                        c.assign(&tpl)?;
                        let (mut first, mut last) = (None, None);
                        let deadline = Instant::now() + Duration::from_secs(600);
                        while Instant::now() < deadline {
                            match c.poll(Duration::from_millis(100)) {
                                Some(Ok(_)) => {
                                    first.get_or_insert_with(Instant::now);
                                    last = Some(Instant::now());
                                    read.fetch_add(1, Relaxed);
                                }
                                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                                _ => {}
                            }
                        }
                        Ok(first.zip(last))
                    }),
                );
            }
        }
        readers
            .into_iter()
            .map(|r| r.join().expect("reader thread"))
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let read = read.into_inner();
    anyhow::ensure!(read == n, "the bare consumers read {read} of {n} messages");
    let first = spans.iter().flatten().map(|s| s.0).min();
    let last = spans.iter().flatten().map(|s| s.1).max();
    Ok(first.zip(last).map_or(0.0, |(f, l)| (l - f).as_secs_f64()))
}

/// Seconds from the service's first message to the checkpoint covering
/// its `n`-th (group join and set-up are outside).
pub(super) fn time_service(m: &crate::service::metrics::Metrics, n: u64, limit: Duration) -> f64 {
    let deadline = Instant::now() + limit;
    while m.documents_in.load(Relaxed) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let first = Instant::now();
    // Done when every message is read and a checkpoint after that covers it.
    while m.documents_in.load(Relaxed) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let read_all_at = crate::record::now_ms();
    while m.last_checkpoint_ms.load(Relaxed) < read_all_at && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    first.elapsed().as_secs_f64()
}
