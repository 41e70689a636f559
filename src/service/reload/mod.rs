//! Hot reload of searches (docs/operations.md §5.6): numbered immutable versions in
//! RocksDB, sources (file, compacted Kafka topic, admin API), validation,
//! rollback, and the atomic swap.
//!
//! # Versions
//!
//! A version is a searches document in **canonical form**
//! ([`SearchesFile::canonical_json`]: topics sorted by id, fixed field
//! order), its hash, and a description ([`VersionMeta`]). The hash comes
//! from a sum of per-topic SHA-256 terms (module `digests`): a property
//! of the searches, not of the file's whitespace, the same on every
//! instance that holds the same topics, and updated for one changed topic
//! without looking at the others. Versions are stored with the active version's number in one
//! synced WriteBatch (`state_store`), whole or — a version made by the
//! delta path below — as a patch of the whole version its matcher was
//! compiled from (module `stored`); a rollback only moves the active
//! number.
//!
//! # Data flow
//!
//! ```text
//!  file watcher ─┐  (debounced)
//!  admin API ────┼─► jobs (channel) ─► worker thread: validate → guard → compile
//!  Kafka topic ──┘                         │ store version (RocksDB)
//!                                          ▼
//!                                   ArcSwap<Active> ──► pipeline loads it
//!                                                      between batches
//! ```
//!
//! One **worker thread** handles every change in order, so versions never
//! race, and compiles off the processing path: the pipeline keeps matching
//! with the old version until the new one is stored and swapped in. The
//! pipeline looks at the [`ArcSwap`] only between batches; every message
//! is matched by exactly one version, and its match records carry that
//! version's number.
//!
//! A change is **rejected as a whole** — the running version stays — when
//! the document is invalid (every error, docs/query-language.md §3.5, in the reply, the log
//! and `/status`), or when it would remove more than `max_shrink` of the
//! topics and was not forced (a truncated file is the usual cause).
//!
//! # Sources
//!
//! * **File only**: versions are numbered locally (highest + 1). The
//!   watcher reacts to changes of the file's bytes (editors that save by
//!   renaming are seen through the directory watch); touching the file, or
//!   a file left unchanged after a rollback, changes nothing. A change to
//!   content that an earlier version had re-activates that version.
//! * **Kafka topic** (`searches.kafka_topic`): the topic is the source of
//!   truth shared by the group — one record per topic id, the value the
//!   topic's JSON, a tombstone deletes it. Every instance reads it from the
//!   beginning and keeps tailing it; after each quiet moment the topics
//!   read so far become a candidate version whose **number derives from the
//!   log**: the sum over partitions of one past the offset of the last
//!   record that changed the topics. Instances that have read the same
//!   records therefore agree on number and hash. Local changes (the file,
//!   `PUT /searches`, rollback) are validated here, then *published* to the
//!   topic as the records that differ, and take effect when read back.
//!
//! # Start
//!
//! The active version from RocksDB is compiled first. A file whose
//! canonical content is a stored version keeps the active version (a
//! rollback survives restarts); new content becomes a new version, or, if
//! invalid, the service starts on the active version and reports the
//! file's errors. With no stored version, invalid searches stop the start.
//!
//! # Fast small changes
//!
//! A full rebuild of 100,000 searches takes 1.5–2 s even when unchanged
//! queries are reused (`Catalog::from_file_reusing`) instead of parsed. So
//! when at most 64 topics differ from the *base* version the main matcher
//! was compiled from, the change takes the **delta path**: the whole
//! file's ids are validated, only the topics that differ from the base
//! are parsed and compiled, into a small [`Delta`] matcher; the main
//! automaton keeps running with the searches of changed and removed
//! topics masked out (`match_document_only`), and the records of both are
//! emitted ([`Active::for_each_match`]). Matching the two is the same as
//! matching the whole version (a unit test compares them). Right after
//! answering, the worker starts a **merge** on a thread of its own (the
//! version compiled whole); when it is done and that version is still the
//! active one, the worker swaps it in under the same number (the same
//! searches: invisible to matching), else drops it and merges the newer
//! one. A change arriving while a merge compiles does not wait for it: it
//! is a delta against the same base (the earlier delta's topics and its
//! own, compiled together). A **one-topic change** (`PUT`/`DELETE
//! /searches/topics/{id}`) does no whole-document work: its topics share
//! the unchanged topics with the active version (one pass that also finds
//! the changed one), its hash and its counts of enabled topics and
//! searches are the active version's digests with one topic's share
//! replaced, and it is stored as a patch
//! of its base (a few kilobytes; the merge stores the version whole before
//! it becomes the next base). Replaced versions are freed on a separate
//! thread; the worker, the merge and that thread run at a lower priority
//! (nice 10), so compiling and freeing leave the cores to matching.
//! Figures: `bench --reload`, BENCHMARKS.md.

//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | `mod.rs` | the [`SearchVersions`] facade: open, current version, requests to the worker, status |
//! | `active` | [`Active`] (matcher, delta, masks) and its scratch space |
//! | `candidate` | a candidate version: from a whole document, or the active one with one topic changed |
//! | `apply` | validate → guard → compile and probe → store → swap; delta, merge, rollback, publish |
//! | `digests` | the version hash, a sum of per-topic terms; the enabled counts beside it |
//! | `stored` | versions stored whole or as a patch of a whole one |
//! | `error` | [`ReloadError`] and its HTTP status |
//! | `worker` | the worker thread, the merge thread, the freeing of replaced versions |
//! | `watch` | the file watcher |
//! | `kafka` | the compacted searches topic: tail and publish |

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use super::metrics::Metrics;
use crate::config::SearchesConfig;
use crate::engine::Matcher;
use crate::query::Limits;
use crate::record::now_rfc3339;
use crate::searches::{Catalog, CatalogError, SearchesFile, TopicSpec};
use crate::state_store::{StateStore, StoreError, VersionMeta};
use digests::TopicDigests;

mod active;
mod apply;
mod candidate;
mod diff;
mod digests;
mod error;
mod kafka;
mod stored;
#[cfg(test)]
mod tests;
mod watch;
mod worker;

pub use active::{Active, ActiveScratch, Delta, Masks, TooExpensive};
use apply::empty_version;
use candidate::Candidate;
pub use error::ReloadError;
use watch::watch;
use worker::worker;

/// What a change did to the active version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOutcome {
    /// A new version is active.
    Activated,
    /// The searches are the ones already active: nothing to do.
    Unchanged,
    /// Written to the searches topic; every instance activates it when it
    /// reads the records back (the admin request answers 202).
    Published,
}

/// What a change did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Change {
    /// Activated, unchanged or published.
    pub outcome: ChangeOutcome,
    /// The version active afterwards (for `published`: still the old one
    /// until the records are read back).
    pub active: VersionMeta,
    /// The version active before.
    pub previous_version: u64,
    /// Records written to the searches topic (`published`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_records: Option<usize>,
    /// The hash the published searches will have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_hash: Option<String>,
}

type Reply = tokio::sync::oneshot::Sender<Result<Change, ReloadError>>;

enum WorkerTask {
    /// Re-read the file (explicit: even if its bytes did not change).
    Reload { force: bool, reply: Reply },
    /// The watcher saw the file change.
    FileChanged,
    /// A whole document from the API.
    Put {
        document: Vec<u8>,
        force: bool,
        reply: Reply,
    },
    /// One topic set or deleted, the others kept.
    Topic {
        change: TopicChange,
        force: bool,
        reply: Reply,
    },
    /// Back to an earlier version.
    Rollback { to: Option<u64>, reply: Reply },
    /// New searches-topic content waits in `kafka::Source::take_pending`
    /// (one task for any number of records read meanwhile).
    FromKafka,
}

/// A change to one topic (`PUT`/`DELETE /searches/topics/{id}`).
#[derive(Clone, Debug)]
pub enum TopicChange {
    /// Add the topic, or replace the one with its id.
    Set(TopicSpec),
    /// Remove the topic with this id.
    Delete(String),
}

/// A reported rejection, for `/status`.
#[derive(Clone, Debug, serde::Serialize)]
struct LastError {
    at: String,
    #[serde(flatten)]
    error: serde_json::Value,
}

/// The searches of a running service: the active version, the sources and
/// the worker that applies changes. See the module doc.
pub struct SearchVersions {
    current: ArcSwap<Active>,
    store: Arc<StateStore>,
    config: SearchesConfig,
    limits: Limits,
    tasks: Mutex<mpsc::Sender<WorkerTask>>,
    last_error: Mutex<Option<LastError>>,
    /// SHA-256 of the file's bytes when last read: the watcher acts on
    /// changes of content only.
    file_fingerprint: Mutex<Option<String>>,
    kafka: Option<kafka::Source>,
    metrics: Arc<Metrics>,
    /// Keeps the file watcher alive.
    _watcher: Mutex<Option<notify::RecommendedWatcher>>,
    /// Replaced versions, freed by the worker once nobody else holds them:
    /// freeing 100,000 compiled searches takes a while, and must not
    /// happen on the pipeline thread when it lets go of its reference.
    retired: Mutex<Vec<Arc<Active>>>,
    /// The search ids of the base catalog in use, for validating one-topic
    /// changes without a pass over every id (`apply::BaseIds`).
    base_ids: Mutex<Option<Arc<apply::BaseIds>>>,
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in d {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl SearchVersions {
    /// Opens the searches of a service: compiles the active stored version,
    /// applies the sources (see the module doc), and starts the worker, the
    /// file watcher and the Kafka reader.
    ///
    /// # Errors
    ///
    /// [`ReloadError::Invalid`] when there is no stored version to fall
    /// back on and the sources are invalid; store and Kafka failures.
    pub fn open(
        config: SearchesConfig,
        kafka_clients: &crate::kafka_client::KafkaClients,
        store: Arc<StateStore>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<SearchVersions>, ReloadError> {
        let limits = Limits::default();
        let current = match store.active_version()? {
            Some(n) => SearchVersions::build_stored(&store, &limits, n, None)?,
            None => empty_version(),
        };
        let kafka = match &config.kafka_topic {
            Some(topic) => Some(kafka::Source::connect(
                kafka_clients,
                topic,
                metrics.clone(),
            )?),
            None => None,
        };
        let (tx, rx) = mpsc::channel();
        let searches = Arc::new(SearchVersions {
            current: ArcSwap::from_pointee(current),
            store,
            config,
            limits,
            tasks: Mutex::new(tx),
            last_error: Mutex::new(None),
            file_fingerprint: Mutex::new(None),
            kafka,
            metrics,
            _watcher: Mutex::new(None),
            retired: Mutex::new(Vec::new()),
            base_ids: Mutex::new(None),
        });
        searches.publish_metrics();
        if let Some(k) = &searches.kafka {
            // The topic first: it is the shared truth; then the file (if
            // any) publishes its differences.
            let initial = k.initial_read()?;
            if let Err(e) = searches.apply(initial, true) {
                tracing::error!("{e}\nthe searches topic holds invalid searches; matching with the active version");
                searches.record_error(&e);
            }
            if searches.config.file.is_some() {
                if let Err(e) = searches
                    .read_file()
                    .and_then(|c| searches.publish(c, false))
                {
                    tracing::error!(error = %e, "the searches file was not published");
                    searches.record_error(&e);
                }
            }
        } else if searches.config.file.is_some() {
            searches.start_from_file()?;
        }
        let weak = Arc::downgrade(&searches);
        super::components::spawn(&searches.metrics.components, "searches-worker", move || {
            worker(&weak, &rx)
        })
        .map_err(|e| ReloadError::Store(format!("cannot start the reload thread: {e}")))?;
        if let Some(k) = &searches.kafka {
            k.tail(Arc::downgrade(&searches), &searches.metrics.components);
        }
        if searches.config.watch {
            if let Some(file) = searches.config.file.clone() {
                match watch(
                    &file,
                    searches.config.debounce,
                    Arc::downgrade(&searches),
                    &searches.metrics.components,
                ) {
                    Ok(w) => *searches._watcher.lock().expect("watcher lock") = Some(w),
                    Err(e) => {
                        tracing::warn!(file = %file.display(), error = %e, "cannot watch the searches file; use `searches reload`");
                    }
                }
            }
        }
        Ok(searches)
    }

    fn start_from_file(&self) -> Result<(), ReloadError> {
        let stored = self.current().meta.version != 0;
        let candidate = match self.read_file() {
            Ok(c) => c,
            Err(e) if stored => {
                self.report_start_fallback(&e);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if stored {
            let hash = &candidate.hash;
            if let Some(known) = self.store.versions()?.into_iter().find(|m| m.hash == *hash) {
                if known.version != self.current().meta.version {
                    tracing::info!(
                        file_version = known.version,
                        active = self.current().meta.version,
                        "the searches file holds a stored version; the active version is kept"
                    );
                }
                return Ok(());
            }
        }
        match self.apply(candidate, false) {
            Ok(_) => Ok(()),
            Err(e) if stored => {
                self.report_start_fallback(&e);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn report_start_fallback(&self, e: &ReloadError) {
        tracing::error!(
            version = self.current().meta.version,
            "{e}\nstarting on the last good searches version"
        );
        self.record_error(e);
    }

    /// The version in use.
    pub fn current(&self) -> Arc<Active> {
        self.current.load_full()
    }

    /// Whether `active` is still the version in use (cheap; the pipeline
    /// asks between batches).
    pub fn is_current(&self, active: &Arc<Active>) -> bool {
        Arc::ptr_eq(&self.current.load(), active)
    }

    /// Every stored version, oldest first.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn history(&self) -> Result<Vec<VersionMeta>, ReloadError> {
        Ok(self.store.versions()?)
    }

    /// The document of the active version (canonical JSON).
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn document(&self) -> Result<Vec<u8>, ReloadError> {
        self.version_document(self.current().meta.version)
    }

    /// The document of version `n` (canonical JSON; version 0 holds no
    /// topics).
    ///
    /// # Errors
    ///
    /// Unknown versions (never stored, or no longer kept) and store errors.
    pub fn version_document(&self, n: u64) -> Result<Vec<u8>, ReloadError> {
        stored::document(&self.store, n)
    }

    /// `/status`'s view: the active version, its sources and the last
    /// rejection.
    pub fn status_json(&self) -> serde_json::Value {
        let a = self.current();
        serde_json::json!({
            "version": a.meta.version,
            "hash": a.meta.hash,
            "topics": a.meta.topics,
            "searches": a.meta.searches,
            "source": a.meta.source,
            "created_at": a.meta.created_at,
            "compile_ms": a.meta.compile_ms,
            "file": self.config.file.as_ref().map(|f| f.display().to_string()),
            "kafka_topic": self.config.kafka_topic,
            "last_error": *self.last_error.lock().expect("error lock"),
        })
    }

    /// Re-reads the sources (`POST /searches/reload`).
    pub async fn reload(&self, force: bool) -> Result<Change, ReloadError> {
        self.submit(|reply| WorkerTask::Reload { force, reply })
            .await
    }

    /// Applies a whole uploaded document (`PUT /searches`).
    pub async fn put(&self, document: Vec<u8>, force: bool) -> Result<Change, ReloadError> {
        self.submit(|reply| WorkerTask::Put {
            document,
            force,
            reply,
        })
        .await
    }

    /// Sets one topic (`PUT /searches/topics/{id}`): `body` is the topic's
    /// JSON as in the searches file, and its `id` must be `id`.
    ///
    /// # Errors
    ///
    /// [`ReloadError::Invalid`] for a body that is not such a topic, and
    /// every error of a change.
    pub async fn set_topic(
        &self,
        id: &str,
        body: &[u8],
        force: bool,
    ) -> Result<Change, ReloadError> {
        let problem = |message: String| {
            ReloadError::invalid(
                "api",
                &CatalogError {
                    problems: vec![crate::searches::Problem::File(message)],
                },
            )
        };
        let topic: TopicSpec =
            serde_json::from_slice(body).map_err(|e| problem(format!("not a valid topic: {e}")))?;
        if topic.id != id {
            return Err(problem(format!(
                "the topic's id {:?} is not the id {id:?} of the address",
                topic.id
            )));
        }
        self.submit(|reply| WorkerTask::Topic {
            change: TopicChange::Set(topic),
            force,
            reply,
        })
        .await
    }

    /// Deletes one topic (`DELETE /searches/topics/{id}`).
    ///
    /// # Errors
    ///
    /// [`ReloadError::UnknownTopic`], and every error of a change.
    pub async fn delete_topic(&self, id: &str, force: bool) -> Result<Change, ReloadError> {
        self.submit(|reply| WorkerTask::Topic {
            change: TopicChange::Delete(id.to_string()),
            force,
            reply,
        })
        .await
    }

    /// Returns to the previous version, or to version `to`.
    pub async fn rollback(&self, to: Option<u64>) -> Result<Change, ReloadError> {
        self.submit(|reply| WorkerTask::Rollback { to, reply })
            .await
    }

    async fn submit(&self, job: impl FnOnce(Reply) -> WorkerTask) -> Result<Change, ReloadError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(job(tx));
        let change = rx.await.map_err(|_| ReloadError::Stopped)??;
        if change.outcome != ChangeOutcome::Published {
            return Ok(change);
        }
        // Published to the searches topic: wait (bounded) until the tail
        // reader has read it back and the worker has activated it.
        let want = change.expected_hash.clone().unwrap_or_default();
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            let a = self.current();
            if a.meta.hash == want {
                return Ok(Change {
                    outcome: ChangeOutcome::Activated,
                    active: a.meta.clone(),
                    ..change
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(change)
    }

    fn send(&self, job: WorkerTask) {
        // A send fails only when the worker is gone (shutdown); the reply
        // channel then reports `Stopped`.
        let _ = self.tasks.lock().expect("tasks lock").send(job);
    }

    fn handle(&self, job: WorkerTask) {
        match job {
            WorkerTask::Reload { force, reply } => {
                let r = if self.config.file.is_none() {
                    let a = self.current();
                    Ok(Change {
                        outcome: ChangeOutcome::Unchanged,
                        active: a.meta.clone(),
                        previous_version: a.meta.version,
                        published_records: None,
                        expected_hash: None,
                    })
                } else {
                    self.read_file().and_then(|c| self.change(c, force))
                };
                self.finish(r, Some(reply));
            }
            WorkerTask::FileChanged => match self.read_file_if_changed() {
                Ok(None) => {} // bytes unchanged
                Ok(Some(c)) => {
                    let r = self.change(c, false);
                    self.finish(r, None);
                }
                Err(e) => self.finish(Err(e), None),
            },
            WorkerTask::Put {
                document,
                force,
                reply,
            } => {
                let t = Instant::now();
                let c = Candidate::parse("api", &document);
                tracing::debug!(
                    ms = t.elapsed().as_millis() as u64,
                    "uploaded searches parsed"
                );
                let r = c.and_then(|c| self.change(c, force));
                self.finish(r, Some(reply));
            }
            WorkerTask::Topic {
                change,
                force,
                reply,
            } => {
                let started = Instant::now();
                let r = self.topic_candidate(change).and_then(|c| {
                    tracing::debug!(
                        ms = started.elapsed().as_millis() as u64,
                        "one-topic change: next document built"
                    );
                    self.change(c, force)
                });
                self.finish(r, Some(reply));
            }
            WorkerTask::Rollback { to, reply } => {
                let r = self.rollback_now(to);
                self.finish(r, Some(reply));
            }
            WorkerTask::FromKafka => {
                // The newest state only: records read meanwhile replaced
                // older candidates.
                if let Some(c) = self.kafka.as_ref().and_then(|k| k.take_pending()) {
                    let r = self.apply(c, true);
                    self.finish(r, None);
                }
            }
        }
    }

    fn finish(&self, r: Result<Change, ReloadError>, reply: Option<Reply>) {
        if let Err(e) = &r {
            tracing::error!("{e}");
            self.record_error(e);
        }
        if let Some(reply) = reply {
            let _ = reply.send(r);
        }
    }

    fn record_error(&self, e: &ReloadError) {
        self.metrics
            .reloads_rejected
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *self.last_error.lock().expect("error lock") = Some(LastError {
            at: now_rfc3339(),
            error: e.to_json(),
        });
    }

    /// The configured file's source name and bytes.
    fn file_bytes(&self) -> Result<(String, Vec<u8>), ReloadError> {
        let Some(path) = &self.config.file else {
            return Err(ReloadError::NoSource(
                "no searches file is configured".into(),
            ));
        };
        let source = format!("file:{}", path.display());
        let bytes = std::fs::read(path).map_err(|e| {
            ReloadError::invalid(
                &source,
                &CatalogError {
                    problems: vec![crate::searches::Problem::File(format!(
                        "cannot read the searches file {}: {e}",
                        path.display()
                    ))],
                },
            )
        })?;
        Ok((source, bytes))
    }

    /// Reads the file into a candidate.
    fn read_file(&self) -> Result<Candidate, ReloadError> {
        let (source, bytes) = self.file_bytes()?;
        *self.file_fingerprint.lock().expect("fingerprint lock") = Some(sha256_hex(&bytes));
        Candidate::parse(&source, &bytes)
    }

    /// Reads the file into a candidate unless its bytes are the ones read
    /// last (`None`: nothing to do).
    fn read_file_if_changed(&self) -> Result<Option<Candidate>, ReloadError> {
        let (source, bytes) = self.file_bytes()?;
        let fp = sha256_hex(&bytes);
        let mut last = self.file_fingerprint.lock().expect("fingerprint lock");
        if last.as_deref() == Some(&fp) {
            return Ok(None);
        }
        *last = Some(fp);
        drop(last);
        Candidate::parse(&source, &bytes).map(Some)
    }

    /// A local change: applied here, or published to the searches topic.
    fn change(&self, c: Candidate, force: bool) -> Result<Change, ReloadError> {
        if self.kafka.is_some() {
            self.publish(c, force)
        } else {
            self.apply(c, force)
        }
    }
}
