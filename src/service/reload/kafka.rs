//! The compacted searches topic: read from the beginning and tailed;
//! local changes published as the records that differ.

use super::digests::TopicDigests;
use super::{Candidate, ReloadError, SearchVersions, TopicSpec, Weak, WorkerTask};
use crate::kafka_client::{KafkaClients, LoggingContext, Role};
use crate::searches::SearchesFile;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What has been read from the topic.
#[derive(Default)]
struct State {
    topics: BTreeMap<String, Arc<TopicSpec>>,
    /// The digests of `topics` (module `digests`), kept record by record:
    /// a candidate's hash needs no pass over every topic's JSON.
    digests: TopicDigests,
    /// Per partition, one past the offset of the last record that
    /// changed `topics`.
    changed: BTreeMap<i32, i64>,
    /// The hash of the last candidate made, and the topic ids records
    /// changed since: the next candidate's change hint (a delta needs no
    /// comparison of every topic while that candidate is the active
    /// version).
    since_last: Option<(String, std::collections::BTreeSet<String>)>,
}

impl State {
    /// Applies one record. A record that cannot be used (no UTF-8 key, a
    /// value that is not a topic, a topic under another id) is ignored —
    /// the key's previous value stays — and `Err` says why, with its
    /// coordinates.
    fn apply(
        &mut self,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<(), String> {
        let Some(key) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
            return Err(format!(
                "searches record at partition {partition}, offset {offset} has no UTF-8 key (the topic id); ignored"
            ));
        };
        let changed = match value {
            None => match self.topics.remove(key) {
                Some(old) => {
                    self.digests.remove(&old);
                    true
                }
                None => false,
            },
            Some(v) => match serde_json::from_slice::<TopicSpec>(v) {
                Ok(t) if t.id == key => {
                    if self.topics.get(key).map(|k| &**k) == Some(&t) {
                        false
                    } else {
                        self.digests.add(&t);
                        if let Some(old) = self.topics.insert(key.to_string(), Arc::new(t)) {
                            self.digests.remove(&old);
                        }
                        true
                    }
                }
                Ok(t) => {
                    return Err(format!("searches record {key:?} (partition {partition}, offset {offset}) holds topic {:?}; the key must be the topic id; ignored, the previous value stays", t.id));
                }
                Err(e) => {
                    return Err(format!("searches record {key:?} (partition {partition}, offset {offset}) is not a valid topic: {e}; ignored, the previous value stays"));
                }
            },
        };
        if changed {
            self.changed.insert(partition, offset + 1);
            if let Some((_, ids)) = &mut self.since_last {
                ids.insert(key.to_string());
            }
        }
        Ok(())
    }

    /// The topics read so far as a candidate version: they share their
    /// topics with the state, and their hash comes from the digests kept
    /// record by record (no canonical document: built only if the version
    /// is stored whole).
    fn candidate(&mut self, topic: &str) -> Candidate {
        let digests = self.digests;
        let hash = digests.hash();
        let changed: Option<(String, Vec<String>)> = self
            .since_last
            .replace((hash.clone(), std::collections::BTreeSet::new()))
            .map(|(since, ids)| (since, ids.into_iter().collect()));
        let changed_topics = changed.as_ref().map(|(_, ids)| {
            ids.iter()
                .filter_map(|id| self.topics.get(id).cloned())
                .collect()
        });
        Candidate {
            source: format!("kafka:{topic}"),
            file: SearchesFile {
                topics: self.topics.values().cloned().collect(),
            },
            digests,
            hash,
            canonical: None,
            number: Some(self.changed.values().map(|o| *o as u64).sum()),
            problems: Vec::new(),
            changed,
            changed_topics,
        }
    }
}

pub(super) struct Source {
    topic: String,
    clients: KafkaClients,
    state: Arc<Mutex<State>>,
    consumer: Mutex<Option<BaseConsumer<LoggingContext>>>,
    /// The newest state read and not yet taken by the worker: a flood of
    /// records makes one compile of the newest state, not one per record.
    pending: Arc<Pending<Candidate>>,
    metrics: Arc<crate::service::metrics::Metrics>,
}

/// The newest value not yet taken: a flood of offers between two takes
/// leaves only the last one (one compile of the newest searches state, not
/// one per record).
pub(super) struct Pending<T>(Mutex<Option<T>>);

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Pending(Mutex::new(None))
    }
}

impl<T> Pending<T> {
    /// Replaces what is waiting with `v`; true when nothing was waiting
    /// (the taker must be woken), false when `v` replaced a value the taker
    /// has not taken yet (it is already awake for it).
    pub(super) fn offer(&self, v: T) -> bool {
        self.0.lock().expect("pending lock").replace(v).is_none()
    }

    /// The newest value offered since the last take.
    pub(super) fn take(&self) -> Option<T> {
        self.0.lock().expect("pending lock").take()
    }
}

/// Logs and counts a record that was ignored.
fn ignored(metrics: &crate::service::metrics::Metrics, why: &str) {
    tracing::error!("{why}");
    metrics
        .searches_records_ignored
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

fn kafka_err(e: impl std::fmt::Display) -> ReloadError {
    ReloadError::NoSource(format!("searches topic: {e}"))
}

impl Source {
    /// Connects and assigns every partition of `topic` from the start.
    pub(super) fn connect(
        clients: &KafkaClients,
        topic: &str,
        metrics: Arc<crate::service::metrics::Metrics>,
    ) -> Result<Source, ReloadError> {
        let consumer: BaseConsumer<LoggingContext> = clients
            .config(Role::Consumer, &[])
            .remove("group.instance.id")
            .set("group.id", "topic-matcher-searches-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create_with_context(LoggingContext)
            .map_err(kafka_err)?;
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(15))
            .map_err(kafka_err)?;
        let parts: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if parts.is_empty() {
            return Err(kafka_err(format!("topic {topic} does not exist")));
        }
        let mut tpl = TopicPartitionList::new();
        for p in &parts {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .map_err(kafka_err)?;
        }
        consumer.assign(&tpl).map_err(kafka_err)?;
        Ok(Source {
            topic: topic.to_string(),
            clients: clients.clone(),
            state: Arc::default(),
            consumer: Mutex::new(Some(consumer)),
            pending: Arc::default(),
            metrics,
        })
    }

    /// Reads up to the high watermarks as they are now.
    pub(super) fn initial_read(&self) -> Result<Candidate, ReloadError> {
        let guard = self.consumer.lock().expect("consumer lock");
        let consumer = guard.as_ref().expect("not tailing yet");
        let assignment = consumer.assignment().map_err(kafka_err)?;
        let mut want: BTreeMap<i32, i64> = BTreeMap::new();
        for e in assignment.elements() {
            let (_, high) = consumer
                .fetch_watermarks(&self.topic, e.partition(), Duration::from_secs(10))
                .map_err(kafka_err)?;
            if high > 0 {
                want.insert(e.partition(), high);
            }
        }
        let until = Instant::now() + Duration::from_secs(60);
        while !want.is_empty() {
            if Instant::now() > until {
                return Err(kafka_err("reading the searches topic timed out"));
            }
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let applied = self.state.lock().expect("state lock").apply(
                    m.partition(),
                    m.offset(),
                    m.key(),
                    m.payload(),
                );
                if let Err(why) = applied {
                    ignored(&self.metrics, &why);
                }
                if want
                    .get(&m.partition())
                    .is_some_and(|h| m.offset() + 1 >= *h)
                {
                    want.remove(&m.partition());
                }
            }
        }
        Ok(self
            .state
            .lock()
            .expect("state lock")
            .candidate(&self.topic))
    }

    /// The newest state read from the topic that the worker has not taken.
    pub(super) fn take_pending(&self) -> Option<Candidate> {
        self.pending.take()
    }

    /// Keeps reading on a thread; after each quiet moment with changes,
    /// leaves the newest candidate for the worker (coalescing).
    pub(super) fn tail(
        &self,
        searches: Weak<SearchVersions>,
        components: &Arc<crate::service::components::Components>,
    ) {
        let consumer = self.consumer.lock().expect("consumer lock").take();
        let Some(consumer) = consumer else { return };
        let state = self.state.clone();
        let topic = self.topic.clone();
        let pending = self.pending.clone();
        let metrics = self.metrics.clone();
        let started = crate::service::components::spawn(components, "searches-topic", move || {
            let mut dirty = false;
            loop {
                let msg = consumer.poll(Duration::from_millis(100));
                let Some(s) = searches.upgrade() else { return };
                match msg {
                    Some(Ok(m)) => {
                        let applied = state.lock().expect("state lock").apply(
                            m.partition(),
                            m.offset(),
                            m.key(),
                            m.payload(),
                        );
                        match applied {
                            Ok(()) => dirty = true,
                            Err(why) => ignored(&metrics, &why),
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "reading the searches topic");
                    }
                    None if dirty => {
                        dirty = false;
                        let c = state.lock().expect("state lock").candidate(&topic);
                        if pending.offer(c) {
                            s.send(WorkerTask::FromKafka);
                        }
                    }
                    None => {}
                }
            }
        });
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start reading the searches topic; changes from other instances are not seen");
        }
    }

    /// Writes the records that make the topic hold `topics`: changed or
    /// new topics, and tombstones for topics no longer there. Returns
    /// how many.
    pub(super) fn publish(&self, topics: &[Arc<TopicSpec>]) -> Result<usize, ReloadError> {
        let perr = |e: &dyn std::fmt::Display| ReloadError::Publish(e.to_string());
        let (upserts, deletes) = {
            let st = self.state.lock().expect("state lock");
            let upserts: Vec<&TopicSpec> = topics
                .iter()
                .filter(|t| st.topics.get(&t.id) != Some(*t))
                .map(|t| &**t)
                .collect();
            let keep: std::collections::BTreeSet<&str> =
                topics.iter().map(|t| t.id.as_str()).collect();
            let deletes: Vec<String> = st
                .topics
                .keys()
                .filter(|k| !keep.contains(k.as_str()))
                .cloned()
                .collect();
            (
                upserts
                    .into_iter()
                    .map(|t| {
                        (
                            t.id.clone(),
                            serde_json::to_vec(t).expect("topic serializes"),
                        )
                    })
                    .collect::<Vec<_>>(),
                deletes,
            )
        };
        let n = upserts.len() + deletes.len();
        if n == 0 {
            return Ok(0);
        }
        let producer: BaseProducer = self
            .clients
            .config(Role::Producer, &[])
            .set("enable.idempotence", "true")
            .create()
            .map_err(|e| perr(&e))?;
        for (id, value) in &upserts {
            producer
                .send(
                    BaseRecord::to(&self.topic)
                        .key(id.as_bytes())
                        .payload(value),
                )
                .map_err(|(e, _)| perr(&e))?;
        }
        for id in &deletes {
            producer
                .send(BaseRecord::<[u8], [u8]>::to(&self.topic).key(id.as_bytes()))
                .map_err(|(e, _)| perr(&e))?;
        }
        producer
            .flush(Duration::from_secs(15))
            .map_err(|e| perr(&e))?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(id: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"id": id, "searches": [{"id": format!("{id}-s"), "query": "alpha"}]})).unwrap()
    }

    #[test]
    fn an_undecodable_record_is_ignored_and_the_key_keeps_its_previous_value() {
        let mut st = State::default();
        st.apply(0, 0, Some(b"a"), Some(&topic("a"))).unwrap();
        // No UTF-8 key: reported with its coordinates, nothing changes.
        let why = st.apply(0, 1, Some(&[0xff, 0xfe]), Some(b"x")).unwrap_err();
        assert!(why.contains("partition 0, offset 1"), "{why}");
        // Not a topic: the previous value of `a` stays.
        let why = st.apply(0, 2, Some(b"a"), Some(b"{not json")).unwrap_err();
        assert!(why.contains("\"a\"") && why.contains("offset 2"), "{why}");
        // A topic under another id.
        assert!(st.apply(0, 3, Some(b"a"), Some(&topic("b"))).is_err());
        // Later records still make valid candidates.
        st.apply(0, 4, Some(b"c"), Some(&topic("c"))).unwrap();
        let c = st.candidate("searches");
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        let ids: Vec<&str> = c.file.topics.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, vec!["a", "c"]);
    }

    /// Each candidate names the topics records changed since the one
    /// before it, and that one's hash: the delta path then compares no
    /// topic (and falls back to comparing when another version is active).
    #[test]
    fn a_candidate_names_the_topics_changed_since_the_previous_one() {
        let mut st = State::default();
        st.apply(0, 0, Some(b"a"), Some(&topic("a"))).unwrap();
        st.apply(0, 1, Some(b"b"), Some(&topic("b"))).unwrap();
        let first = st.candidate("searches");
        assert!(first.changed.is_none(), "nothing to be relative to yet");
        // A topic set again unchanged is no change; a tombstone and a new
        // topic are.
        st.apply(0, 2, Some(b"a"), Some(&topic("a"))).unwrap();
        st.apply(0, 3, Some(b"b"), None).unwrap();
        st.apply(0, 4, Some(b"c"), Some(&topic("c"))).unwrap();
        let second = st.candidate("searches");
        let (since, ids) = second.changed.clone().expect("a hint");
        assert_eq!(since, first.hash);
        assert_eq!(ids, vec!["b".to_string(), "c".to_string()]);
        let third = st.candidate("searches");
        assert_eq!(third.changed.map(|(_, ids)| ids), Some(vec![]));
        // The hash kept record by record is the hash of the same topics
        // read as one whole document, and the document is built from them.
        let whole = Candidate::parse(
            "t",
            &SearchesFile::canonical_json(second.file.topics.iter().map(|t| &**t)),
        )
        .unwrap();
        assert_eq!(second.hash, whole.hash);
        assert!(second.canonical.is_none(), "no whole document built");
        assert_eq!(&*second.canonical(), whole.canonical.as_deref().unwrap());
    }

    #[test]
    fn a_flood_of_changes_leaves_one_pending_candidate_the_newest() {
        let mut st = State::default();
        let pending: Pending<Candidate> = Pending::default();
        let mut wakes = 0;
        // 500 records, each followed by a quiet moment, before the worker
        // takes anything: one wake, and only the newest state waits.
        for i in 0..500 {
            let id = format!("t{i}");
            st.apply(0, i, Some(id.as_bytes()), Some(&topic(&id)))
                .unwrap();
            if pending.offer(st.candidate("searches")) {
                wakes += 1;
            }
        }
        assert_eq!(wakes, 1, "the worker is woken once");
        let c = pending.take().expect("a candidate waits");
        assert_eq!(c.file.topics.len(), 500, "the newest state");
        assert!(pending.take().is_none(), "nothing else waits");
        // After the take, the next change wakes the worker again.
        st.apply(0, 500, Some(b"t0"), None).unwrap();
        assert!(pending.offer(st.candidate("searches")));
        assert_eq!(pending.take().unwrap().file.topics.len(), 499);
    }
}
