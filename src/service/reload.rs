//! Hot reload of searches (SPEC §5.6): numbered immutable versions in
//! RocksDB, sources (file, compacted Kafka topic, admin API), validation,
//! rollback, and the atomic swap.
//!
//! # Versions
//!
//! A version is a searches document in **canonical form**
//! ([`SearchesFile::canonical_json`]: topics sorted by id, fixed field
//! order), its SHA-256, and a description ([`VersionMeta`]). Canonical
//! bytes make the hash a property of the searches, not of the file's
//! whitespace, and let every instance that holds the same topics compute
//! the same hash. Versions are stored with the active version's number in
//! one synced WriteBatch (`checkpoint`); a rollback only moves the active
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
//! the document is invalid (every error, SPEC §3.5, in the reply, the log
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
//! when at most 64 topics differ from a *merged* version, the change takes
//! the **delta path**: the whole file's ids are validated, only the changed
//! topics' queries are parsed and compiled, into a small [`Delta`] matcher;
//! the main automaton keeps running with the searches of changed and
//! removed topics masked out (`match_document_only`), and the records of
//! both are emitted ([`Active::for_each_match`]). Matching the two is the
//! same as matching the whole version (a unit test compares them). Right
//! after answering, the worker compiles the version whole and swaps it in
//! under the same number; a change arriving meanwhile waits for that merge
//! and then takes the delta path again. Replaced versions are freed on a
//! separate thread, and the worker and that thread run at a lower priority
//! (nice 10), so compiling and freeing leave the cores to matching. Figures:
//! `bench --reload`, BENCHMARKS.md.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use super::metrics::Metrics;
use crate::checkpoint::{Checkpoints, StoreError, VersionMeta};
use crate::config::SearchesConfig;
use crate::engine::Matcher;
use crate::query::Limits;
use crate::record::now_rfc3339;
use crate::searches::{Catalog, CatalogError, SearchesFile, TopicSpec};

/// The version in use: its matcher, its parsed searches and description.
pub struct Active {
    /// The compiled searches (with a delta: those of the base version).
    pub matcher: Arc<Matcher>,
    /// The parsed searches of `matcher` (reused by the next compile).
    pub catalog: Arc<Catalog>,
    /// This version's searches as written.
    pub file: Arc<SearchesFile>,
    /// A small change on top of `matcher`, until merged.
    pub delta: Option<Delta>,
    /// Its description.
    pub meta: VersionMeta,
}

/// The topics a small change added or changed, compiled alone, and the
/// base searches still valid (those of untouched topics).
pub struct Delta {
    matcher: Matcher,
    base_only: Vec<bool>,
}

/// Which searches of an [`Active`] version may match (per matcher).
pub struct Masks {
    base: Vec<bool>,
    delta: Option<Vec<bool>>,
}

/// Working memory for matching with an [`Active`] version.
pub struct ActiveScratch {
    base: crate::engine::Scratch,
    delta: Option<crate::engine::Scratch>,
}

impl ActiveScratch {
    /// Sets the work budget of each later document.
    pub fn set_budget(&mut self, budget: u64) {
        self.base.set_budget(budget);
        if let Some(d) = &mut self.delta {
            d.set_budget(budget);
        }
    }

    /// The work budget of each document.
    pub fn budget(&self) -> u64 {
        self.base.budget()
    }
}

/// Changes of at most this many topics take the delta path.
const DELTA_MAX_TOPICS: usize = 64;

impl Active {
    /// Working memory for [`Active::for_each_match`].
    pub fn scratch(&self) -> ActiveScratch {
        ActiveScratch {
            base: self.matcher.scratch(),
            delta: self.delta.as_ref().map(|d| d.matcher.scratch()),
        }
    }

    /// Calls `f` with every topic match of `doc` and the matcher that
    /// names its topic and searches.
    ///
    /// # Errors
    ///
    /// When matching the document spends the work budget; `f` was not
    /// called then.
    pub fn for_each_match(
        &self,
        doc: &crate::document::Document<'_>,
        scratch: &mut ActiveScratch,
        f: impl FnMut(&Matcher, &crate::engine::TopicMatch),
    ) -> Result<(), TooExpensive> {
        self.for_each_match_masked(doc, scratch, None, f)
    }

    /// The masks that restrict matching to the searches `ids` (backfill).
    /// Ids this version does not know are ignored.
    pub fn masks(&self, ids: &[String]) -> Masks {
        let mask = |m: &Matcher, also: Option<&[bool]>| -> Vec<bool> {
            let mut v = vec![false; m.search_count()];
            for id in ids {
                if let Some(i) = m.search_index(id) {
                    let i = i.0 as usize;
                    v[i] = also.is_none_or(|a| a[i]);
                }
            }
            v
        };
        Masks {
            base: mask(&self.matcher, self.delta.as_ref().map(|d| &d.base_only[..])),
            delta: self.delta.as_ref().map(|d| mask(&d.matcher, None)),
        }
    }

    /// [`Active::for_each_match`], restricted by `masks` when given. Both
    /// matchers (base and delta) run before `f` sees any match, so a
    /// document is either matched whole or not at all.
    ///
    /// # Errors
    ///
    /// When matching the document spends the work budget.
    pub fn for_each_match_masked(
        &self,
        doc: &crate::document::Document<'_>,
        scratch: &mut ActiveScratch,
        masks: Option<&Masks>,
        mut f: impl FnMut(&Matcher, &crate::engine::TopicMatch),
    ) -> Result<(), TooExpensive> {
        let named = |m: &Matcher, e: crate::engine::TooExpensive| TooExpensive {
            search: e.search.map(|s| m.search_id(s).to_string()),
            budget: e.budget,
        };
        match (&self.delta, scratch.delta.as_mut()) {
            (Some(d), Some(ds)) => {
                let base = masks.map_or(&d.base_only[..], |m| &m.base[..]);
                let found_base = self
                    .matcher
                    .try_match_document(doc, Some(base), &mut scratch.base)
                    .map_err(|e| named(&self.matcher, e))?;
                let only = masks.and_then(|m| m.delta.as_deref());
                let found = d
                    .matcher
                    .try_match_document(doc, only, ds)
                    .map_err(|e| named(&d.matcher, e))?;
                for m in found_base {
                    f(&self.matcher, m);
                }
                for m in found {
                    f(&d.matcher, m);
                }
            }
            _ => {
                let only = masks.map(|m| &m.base[..]);
                let found = self
                    .matcher
                    .try_match_document(doc, only, &mut scratch.base)
                    .map_err(|e| named(&self.matcher, e))?;
                for m in found {
                    f(&self.matcher, m);
                }
            }
        }
        Ok(())
    }

    /// The id of the search that was being evaluated when matching with
    /// `scratch` stopped abnormally (a caught panic), if any.
    pub fn current_search(&self, scratch: &ActiveScratch) -> Option<String> {
        if let Some(s) = scratch.base.current_search() {
            return Some(self.matcher.search_id(s).to_string());
        }
        let (d, ds) = (self.delta.as_ref()?, scratch.delta.as_ref()?);
        ds.current_search()
            .map(|s| d.matcher.search_id(s).to_string())
    }

    /// The enabled topics' ids.
    pub fn topic_ids(&self) -> Vec<&str> {
        self.file
            .topics
            .iter()
            .filter(|t| t.enabled)
            .map(|t| t.id.as_str())
            .collect()
    }
}

/// A document whose matching spent the work budget (SPEC §2.1: it becomes
/// a dead letter with reason `too_expensive`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("matching spent its budget of {budget} work units{}", .search.as_ref().map(|s| format!(" in search `{s}`")).unwrap_or_default())]
pub struct TooExpensive {
    /// The search being evaluated when the budget ran out.
    pub search: Option<String>,
    /// The budget.
    pub budget: u64,
}

/// Why a change was not applied. The running version stays in every case.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// The document is invalid: every problem, rendered (SPEC §3.5).
    #[error("searches from {origin} rejected:\n{rendered}")]
    Invalid {
        /// Where the document came from.
        origin: String,
        /// Every problem, each rendered with its caret.
        problems: Vec<String>,
        /// All of them as `check` prints them.
        rendered: String,
    },
    /// Too many topics would disappear; `force` accepts it.
    #[error("searches from {origin} rejected: {from} topics would become {to} (more than {max_pct}% removed); repeat with force to accept")]
    Shrink {
        /// Where the document came from.
        origin: String,
        /// Topics now.
        from: usize,
        /// Topics after.
        to: usize,
        /// The configured guard, percent.
        max_pct: u32,
    },
    /// No such stored version.
    #[error("no searches version {0}")]
    UnknownVersion(u64),
    /// Rollback without an earlier version.
    #[error("no version before {0} to roll back to")]
    NoPrevious(u64),
    /// Nothing to reload from.
    #[error("{0}")]
    NoSource(String),
    /// The state store failed.
    #[error("state store: {0}")]
    Store(String),
    /// The engine could not build the searches.
    #[error("compile: {0}")]
    Compile(String),
    /// Publishing to the searches topic failed.
    #[error("publishing to the searches topic failed: {0}")]
    Publish(String),
    /// The reload worker has stopped.
    #[error("the service is shutting down")]
    Stopped,
}

/// Compiles `catalog` and runs the engine's probe on it: a search that
/// panics or is too expensive on the built-in hostile documents refuses the
/// whole change (the running version stays).
fn compile_probed(catalog: &Catalog, source: &str) -> Result<Matcher, ReloadError> {
    let matcher = Matcher::new(catalog).map_err(|e| ReloadError::Compile(e.to_string()))?;
    if let Some(e) = matcher.probe_catalog(catalog) {
        tracing::warn!(
            origin = source,
            refused = e.problems.len(),
            "searches refused by the probe"
        );
        return Err(ReloadError::invalid(source, &e));
    }
    Ok(matcher)
}

impl From<StoreError> for ReloadError {
    fn from(e: StoreError) -> ReloadError {
        ReloadError::Store(e.to_string())
    }
}

impl ReloadError {
    fn invalid(source: &str, e: &CatalogError) -> ReloadError {
        ReloadError::Invalid {
            origin: source.to_string(),
            problems: e.problems.iter().map(ToString::to_string).collect(),
            rendered: e.render(),
        }
    }

    /// The HTTP status the admin API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            ReloadError::Invalid { .. } => 422,
            ReloadError::Shrink { .. } | ReloadError::NoPrevious(_) => 409,
            ReloadError::UnknownVersion(_) | ReloadError::NoSource(_) => 404,
            ReloadError::Publish(_) => 502,
            ReloadError::Stopped => 503,
            ReloadError::Store(_) | ReloadError::Compile(_) => 500,
        }
    }

    /// The JSON body of an error reply and of `/status`'s `last_error`.
    pub fn to_json(&self) -> serde_json::Value {
        let kind = match self {
            ReloadError::Invalid { .. } => "invalid",
            ReloadError::Shrink { .. } => "shrink_guard",
            ReloadError::UnknownVersion(_) => "unknown_version",
            ReloadError::NoPrevious(_) => "no_previous_version",
            ReloadError::NoSource(_) => "no_source",
            ReloadError::Store(_) => "store",
            ReloadError::Compile(_) => "compile",
            ReloadError::Publish(_) => "publish",
            ReloadError::Stopped => "stopped",
        };
        let mut v = serde_json::json!({"error": kind, "message": self.to_string()});
        if let ReloadError::Invalid { problems, .. } = self {
            v["problems"] = serde_json::json!(problems);
        }
        v
    }
}

/// What a change did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Change {
    /// `activated`, `unchanged` or `published`.
    pub outcome: &'static str,
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

enum Job {
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
    /// Back to an earlier version.
    Rollback { to: Option<u64>, reply: Reply },
    /// The searches topic's content after a quiet moment.
    FromKafka(Candidate),
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
pub struct Searches {
    current: ArcSwap<Active>,
    store: Arc<Checkpoints>,
    config: SearchesConfig,
    limits: Limits,
    jobs: Mutex<mpsc::Sender<Job>>,
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

/// A candidate document in canonical form, with its parsed topics.
struct Candidate {
    source: String,
    file: SearchesFile,
    canonical: Vec<u8>,
    /// A number fixed by the source (the Kafka log), else the next local.
    number: Option<u64>,
    /// Problems found before validation (undecodable Kafka records).
    problems: Vec<String>,
}

impl Candidate {
    fn parse(source: &str, bytes: &[u8]) -> Result<Candidate, ReloadError> {
        let file: SearchesFile = serde_json::from_slice(bytes).map_err(|e| {
            ReloadError::invalid(
                source,
                &CatalogError {
                    problems: vec![crate::searches::Problem::File(format!(
                        "not a valid searches file: {e}"
                    ))],
                },
            )
        })?;
        let canonical = SearchesFile::canonical_json(&file.topics);
        Ok(Candidate {
            source: source.to_string(),
            file,
            canonical,
            number: None,
            problems: Vec::new(),
        })
    }
}

impl Searches {
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
        brokers: &str,
        store: Arc<Checkpoints>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Searches>, ReloadError> {
        let limits = Limits::default();
        let current = match store.active_version()? {
            Some(n) => Searches::build_stored(&store, &limits, n, None)?,
            None => empty_version(),
        };
        let kafka = match &config.kafka_topic {
            Some(topic) => Some(kafka::Source::connect(brokers, topic)?),
            None => None,
        };
        let (tx, rx) = mpsc::channel();
        let searches = Arc::new(Searches {
            current: ArcSwap::from_pointee(current),
            store,
            config,
            limits,
            jobs: Mutex::new(tx),
            last_error: Mutex::new(None),
            file_fingerprint: Mutex::new(None),
            kafka,
            metrics,
            _watcher: Mutex::new(None),
            retired: Mutex::new(Vec::new()),
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
                    .read_file(true)
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
        std::thread::Builder::new()
            .name("searches".into())
            .spawn(move || worker(&weak, &rx))
            .map_err(|e| ReloadError::Store(format!("cannot start the reload thread: {e}")))?;
        if let Some(k) = &searches.kafka {
            k.tail(Arc::downgrade(&searches));
        }
        if searches.config.watch {
            if let Some(file) = searches.config.file.clone() {
                match watch(&file, searches.config.debounce, Arc::downgrade(&searches)) {
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
        let candidate = match self.read_file(true) {
            Ok(c) => c,
            Err(e) if stored => {
                self.report_start_fallback(&e);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let hash = sha256_hex(&candidate.canonical);
        if stored {
            if let Some(known) = self.store.versions()?.into_iter().find(|m| m.hash == hash) {
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
        let n = self.current().meta.version;
        if n == 0 {
            return Ok(SearchesFile::canonical_json([]));
        }
        self.store
            .version_document(n)?
            .ok_or(ReloadError::UnknownVersion(n))
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
        self.submit(|reply| Job::Reload { force, reply }).await
    }

    /// Applies a whole uploaded document (`PUT /searches`).
    pub async fn put(&self, document: Vec<u8>, force: bool) -> Result<Change, ReloadError> {
        self.submit(|reply| Job::Put {
            document,
            force,
            reply,
        })
        .await
    }

    /// Returns to the previous version, or to version `to`.
    pub async fn rollback(&self, to: Option<u64>) -> Result<Change, ReloadError> {
        self.submit(|reply| Job::Rollback { to, reply }).await
    }

    async fn submit(&self, job: impl FnOnce(Reply) -> Job) -> Result<Change, ReloadError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(job(tx));
        let change = rx.await.map_err(|_| ReloadError::Stopped)??;
        if change.outcome != "published" {
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
                    outcome: "activated",
                    active: a.meta.clone(),
                    ..change
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(change)
    }

    fn send(&self, job: Job) {
        // A send fails only when the worker is gone (shutdown); the reply
        // channel then reports `Stopped`.
        let _ = self.jobs.lock().expect("jobs lock").send(job);
    }

    fn handle(&self, job: Job) {
        match job {
            Job::Reload { force, reply } => {
                let r = if self.config.file.is_none() {
                    let a = self.current();
                    Ok(Change {
                        outcome: "unchanged",
                        active: a.meta.clone(),
                        previous_version: a.meta.version,
                        published_records: None,
                        expected_hash: None,
                    })
                } else {
                    self.read_file(true).and_then(|c| self.change(c, force))
                };
                self.finish(r, Some(reply));
            }
            Job::FileChanged => match self.read_file(false) {
                Ok(c) if c.canonical.is_empty() => {} // bytes unchanged
                Ok(c) => {
                    let r = self.change(c, false);
                    self.finish(r, None);
                }
                Err(e) => self.finish(Err(e), None),
            },
            Job::Put {
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
            Job::Rollback { to, reply } => {
                let r = self.rollback_now(to);
                self.finish(r, Some(reply));
            }
            Job::FromKafka(c) => {
                let r = self.apply(c, true);
                self.finish(r, None);
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

    /// Reads the file into a candidate. With `always == false` an unchanged
    /// file gives a candidate with empty `canonical` (nothing to do).
    fn read_file(&self, always: bool) -> Result<Candidate, ReloadError> {
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
        let fp = sha256_hex(&bytes);
        let mut last = self.file_fingerprint.lock().expect("fingerprint lock");
        if !always && last.as_deref() == Some(&fp) {
            return Ok(Candidate {
                source,
                file: SearchesFile { topics: Vec::new() },
                canonical: Vec::new(),
                number: None,
                problems: Vec::new(),
            });
        }
        *last = Some(fp);
        drop(last);
        Candidate::parse(&source, &bytes)
    }

    /// A local change: applied here, or published to the searches topic.
    fn change(&self, c: Candidate, force: bool) -> Result<Change, ReloadError> {
        if self.kafka.is_some() {
            self.publish(c, force)
        } else {
            self.apply(c, force)
        }
    }

    /// Validates `c`, guards, compiles, stores and swaps in (module doc).
    fn apply(&self, c: Candidate, force: bool) -> Result<Change, ReloadError> {
        let started = Instant::now();
        let previous = self.current();
        let hash = sha256_hex(&c.canonical);
        if !c.problems.is_empty() {
            return Err(ReloadError::Invalid {
                rendered: c.problems.join("\n"),
                problems: c.problems,
                origin: c.source,
            });
        }
        if previous.meta.hash == hash {
            return Ok(unchanged(&previous));
        }
        let stored = self.store.versions()?;
        if c.number.is_none() {
            if let Some(known) = stored.iter().rev().find(|m| m.hash == hash) {
                return self.activate_stored(known.version);
            }
        }
        let (matcher, catalog, delta, topics, searches) =
            if let Some((delta, topics, searches)) = self.try_delta(&c, force, &previous)? {
                (
                    previous.matcher.clone(),
                    previous.catalog.clone(),
                    Some(delta),
                    topics,
                    searches,
                )
            } else {
                let catalog = self.validate(&c, force, &previous)?;
                let matcher = compile_probed(&catalog, &c.source)?;
                let (t, n) = (catalog.topics.len(), catalog.searches.len());
                (Arc::new(matcher), Arc::new(catalog), None, t, n)
            };
        let built = started.elapsed();
        let version = c
            .number
            .unwrap_or_else(|| stored.iter().map(|m| m.version).max().unwrap_or(0) + 1);
        let meta = VersionMeta {
            version,
            hash,
            created_at: now_rfc3339(),
            source: c.source,
            compile_ms: started.elapsed().as_millis() as u64,
            topics,
            searches,
        };
        self.store.add_version(&meta, &c.canonical)?;
        tracing::debug!(
            delta = delta.is_some(),
            built_ms = built.as_millis() as u64,
            stored_ms = started.elapsed().as_millis() as u64,
            "searches version built"
        );
        Ok(self.swap(
            Active {
                matcher,
                catalog,
                file: Arc::new(c.file),
                delta,
                meta,
            },
            &previous,
        ))
    }

    /// The fast path for a small change (module doc): when `previous` is
    /// merged and at most [`DELTA_MAX_TOPICS`] topics differ, validates the
    /// whole file's ids and the changed topics' queries, and compiles only
    /// those topics. Returns the delta and the version's topic and search
    /// counts, or `None` for the full path.
    fn try_delta(
        &self,
        c: &Candidate,
        force: bool,
        previous: &Active,
    ) -> Result<Option<(Delta, usize, usize)>, ReloadError> {
        if previous.delta.is_some() || previous.meta.version == 0 {
            return Ok(None);
        }
        let before: rustc_hash::FxHashMap<&str, &TopicSpec> = previous
            .file
            .topics
            .iter()
            .map(|t| (t.id.as_str(), t))
            .collect();
        let mut changed = Vec::new();
        for t in &c.file.topics {
            if before.get(t.id.as_str()) != Some(&t) {
                if changed.len() == DELTA_MAX_TOPICS {
                    return Ok(None);
                }
                changed.push(t);
            }
        }
        let now: rustc_hash::FxHashSet<&str> =
            c.file.topics.iter().map(|t| t.id.as_str()).collect();
        let mut stale: rustc_hash::FxHashSet<&str> = before
            .keys()
            .copied()
            .filter(|k| !now.contains(k))
            .collect();
        if stale.len() + changed.len() > DELTA_MAX_TOPICS {
            return Ok(None);
        }
        stale.extend(changed.iter().map(|t| t.id.as_str()));
        // Whole-file rules first, then the changed queries (the others
        // were valid in `previous`, under the same limits).
        let mut problems = c.file.id_problems();
        let delta_file = SearchesFile {
            topics: changed.into_iter().cloned().collect(),
        };
        let catalog = match Catalog::from_file(&delta_file, &self.limits) {
            Ok(catalog) => Some(catalog),
            Err(e) => {
                problems.extend(
                    e.problems
                        .into_iter()
                        .filter(|p| matches!(p, crate::searches::Problem::Query(_))),
                );
                None
            }
        };
        let catalog = match catalog {
            Some(catalog) if problems.is_empty() => catalog,
            _ => return Err(ReloadError::invalid(&c.source, &CatalogError { problems })),
        };
        let enabled = c.file.topics.iter().filter(|t| t.enabled);
        let topics = enabled.clone().count();
        let searches = enabled
            .map(|t| t.searches.iter().filter(|s| s.enabled).count())
            .sum();
        self.guard(&c.source, previous.meta.topics, topics, force)?;
        let base = &previous.catalog;
        let base_only = base
            .searches
            .iter()
            .map(|s| !stale.contains(base.topics[s.topic.0 as usize].id.as_str()))
            .collect();
        let matcher = compile_probed(&catalog, &c.source)?;
        Ok(Some((Delta { matcher, base_only }, topics, searches)))
    }

    /// Compiles a delta version whole and swaps it in under the same
    /// number (invisible to matching: same searches).
    fn merge_delta(&self) {
        let cur = self.current();
        if cur.delta.is_none() {
            return;
        }
        let started = Instant::now();
        let catalog = match Catalog::from_file_reusing(&cur.file, &self.limits, Some(&cur.catalog))
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("merging the searches delta: {}", e.render());
                return;
            }
        };
        let matcher = match Matcher::new(&catalog) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "merging the searches delta");
                return;
            }
        };
        let merged = Arc::new(Active {
            matcher: Arc::new(matcher),
            catalog: Arc::new(catalog),
            file: cur.file.clone(),
            delta: None,
            meta: cur.meta.clone(),
        });
        // Only this thread swaps versions, so `cur` is still current.
        let old = self.current.swap(merged);
        self.retired.lock().expect("retired lock").push(old);
        tracing::debug!(
            version = cur.meta.version,
            ms = started.elapsed().as_millis() as u64,
            "searches delta merged"
        );
    }

    fn guard(&self, source: &str, from: usize, to: usize, force: bool) -> Result<(), ReloadError> {
        let removed = from.saturating_sub(to) as f64;
        if !force && from > 0 && removed / from as f64 > self.config.max_shrink {
            return Err(ReloadError::Shrink {
                origin: source.to_string(),
                from,
                to,
                max_pct: (self.config.max_shrink * 100.0).round() as u32,
            });
        }
        Ok(())
    }

    /// Parses `c` against the limits and applies the shrink guard.
    fn validate(
        &self,
        c: &Candidate,
        force: bool,
        previous: &Active,
    ) -> Result<Catalog, ReloadError> {
        let catalog = Catalog::from_file_reusing(&c.file, &self.limits, Some(&previous.catalog))
            .map_err(|e| ReloadError::invalid(&c.source, &e))?;
        self.guard(&c.source, previous.meta.topics, catalog.topics.len(), force)?;
        Ok(catalog)
    }

    fn swap(&self, next: Active, previous: &Active) -> Change {
        tracing::info!(
            version = next.meta.version,
            previous = previous.meta.version,
            topics = next.meta.topics,
            searches = next.meta.searches,
            compile_ms = next.meta.compile_ms,
            source = %next.meta.source,
            "searches version activated"
        );
        let change = Change {
            outcome: "activated",
            active: next.meta.clone(),
            previous_version: previous.meta.version,
            published_records: None,
            expected_hash: None,
        };
        let old = self.current.swap(Arc::new(next));
        self.retired.lock().expect("retired lock").push(old);
        *self.last_error.lock().expect("error lock") = None;
        self.metrics
            .reloads_ok
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.publish_metrics();
        change
    }

    fn publish_metrics(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let a = self.current();
        self.metrics.searches_version.store(a.meta.version, Relaxed);
        self.metrics.searches.store(a.meta.searches as u64, Relaxed);
        self.metrics.compile_ms.store(a.meta.compile_ms, Relaxed);
    }

    fn build_stored(
        store: &Checkpoints,
        limits: &Limits,
        version: u64,
        previous: Option<&Catalog>,
    ) -> Result<Active, ReloadError> {
        let started = Instant::now();
        let meta = store
            .versions()?
            .into_iter()
            .find(|m| m.version == version)
            .ok_or(ReloadError::UnknownVersion(version))?;
        let doc = store
            .version_document(version)?
            .ok_or(ReloadError::UnknownVersion(version))?;
        let source = format!("stored version {version}");
        let c = Candidate::parse(&source, &doc)?;
        let catalog = Catalog::from_file_reusing(&c.file, limits, previous)
            .map_err(|e| ReloadError::invalid(&source, &e))?;
        let matcher = Matcher::new(&catalog).map_err(|e| ReloadError::Compile(e.to_string()))?;
        tracing::info!(
            version,
            ms = started.elapsed().as_millis() as u64,
            "stored searches version compiled"
        );
        Ok(Active {
            matcher: Arc::new(matcher),
            catalog: Arc::new(catalog),
            file: Arc::new(c.file),
            delta: None,
            meta,
        })
    }

    fn activate_stored(&self, version: u64) -> Result<Change, ReloadError> {
        let previous = self.current();
        if previous.meta.version == version {
            return Ok(unchanged(&previous));
        }
        let next =
            Searches::build_stored(&self.store, &self.limits, version, Some(&previous.catalog))?;
        self.store.set_active_version(version)?;
        Ok(self.swap(next, &previous))
    }

    fn rollback_now(&self, to: Option<u64>) -> Result<Change, ReloadError> {
        let current = self.current().meta.version;
        let versions = self.store.versions()?;
        let target = match to {
            Some(n) => {
                versions
                    .iter()
                    .find(|m| m.version == n)
                    .ok_or(ReloadError::UnknownVersion(n))?
                    .version
            }
            None => versions
                .iter()
                .filter(|m| m.version < current)
                .map(|m| m.version)
                .max()
                .ok_or(ReloadError::NoPrevious(current))?,
        };
        if self.kafka.is_some() {
            let doc = self
                .store
                .version_document(target)?
                .ok_or(ReloadError::UnknownVersion(target))?;
            let c = Candidate::parse(&format!("rollback to version {target}"), &doc)?;
            return self.publish(c, true);
        }
        self.activate_stored(target)
    }

    /// Kafka source: validates `c` and writes the records that differ.
    fn publish(&self, c: Candidate, force: bool) -> Result<Change, ReloadError> {
        let k = self.kafka.as_ref().expect("publish needs the Kafka source");
        let previous = self.current();
        let hash = sha256_hex(&c.canonical);
        self.validate(&c, force, &previous)?;
        let n = k.publish(&c.file.topics)?;
        tracing::info!(records = n, source = %c.source, "searches change published to the searches topic");
        Ok(Change {
            outcome: if n == 0 && previous.meta.hash == hash {
                "unchanged"
            } else {
                "published"
            },
            active: previous.meta.clone(),
            previous_version: previous.meta.version,
            published_records: Some(n),
            expected_hash: Some(hash),
        })
    }
}

fn unchanged(a: &Active) -> Change {
    Change {
        outcome: "unchanged",
        active: a.meta.clone(),
        previous_version: a.meta.version,
        published_records: None,
        expected_hash: None,
    }
}

/// Version 0: no searches yet (nothing matches).
fn empty_version() -> Active {
    let catalog = Catalog::default();
    Active {
        matcher: Arc::new(Matcher::new(&catalog).expect("the empty catalog compiles")),
        catalog: Arc::new(catalog),
        file: Arc::new(SearchesFile { topics: Vec::new() }),
        delta: None,
        meta: VersionMeta {
            version: 0,
            hash: sha256_hex(&SearchesFile::canonical_json([])),
            created_at: now_rfc3339(),
            source: "none".into(),
            compile_ms: 0,
            topics: 0,
            searches: 0,
        },
    }
}

/// Lowers the calling thread's scheduling priority (nice 10): compiling
/// and freeing searches yield the cores to the pipeline, so matching
/// latency holds while a version is built.
fn yield_to_matching() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority on the calling thread only change its
    // scheduling priority; no memory is touched.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

fn worker(searches: &Weak<Searches>, jobs: &mpsc::Receiver<Job>) {
    yield_to_matching();
    loop {
        let job = match jobs.recv_timeout(Duration::from_millis(500)) {
            Ok(job) => Some(job),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let Some(s) = searches.upgrade() else { return };
        if let Some(job) = job {
            s.handle(job);
        }
        s.merge_delta();
        // Free replaced versions that only this list still holds.
        let mut done = Vec::new();
        s.retired.lock().expect("retired lock").retain(|a| {
            if Arc::strong_count(a) == 1 {
                done.push(a.clone());
                false
            } else {
                true
            }
        });
        if !done.is_empty() {
            // Freeing is slow too; keep the worker free for the next change.
            let _ = std::thread::Builder::new()
                .name("searches-free".into())
                .spawn(move || {
                    yield_to_matching();
                    drop(done);
                });
        }
    }
}

/// Watches the file's directory (an editor's rename replaces the file's
/// inode, so watching the file alone would miss it) and, once changes
/// have been quiet for `debounce`, asks the worker to look at the file.
fn watch(
    file: &std::path::Path,
    debounce: Duration,
    searches: Weak<Searches>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let name = file.file_name().map(ToOwned::to_owned);
    let dir: PathBuf = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (tx, rx) = mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if ev.paths.iter().any(|p| p.file_name() == name.as_deref()) {
                let _ = tx.send(());
            }
        }
    })?;
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    std::thread::Builder::new()
        .name("searches-watch".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                // Wait for quiet: editors write in several steps.
                loop {
                    match rx.recv_timeout(debounce) {
                        Ok(()) => {}
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                let Some(s) = searches.upgrade() else { return };
                s.send(Job::FileChanged);
            }
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(watcher)
}

mod kafka {
    //! The compacted searches topic: read from the beginning and tailed;
    //! local changes published as the records that differ.

    use super::{Candidate, Job, ReloadError, Searches, TopicSpec, Weak};
    use crate::searches::SearchesFile;
    use rdkafka::config::ClientConfig;
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
        topics: BTreeMap<String, TopicSpec>,
        /// Undecodable records by key; the version is invalid while any
        /// stands.
        bad: BTreeMap<String, String>,
        /// Per partition, one past the offset of the last record that
        /// changed `topics`.
        changed: BTreeMap<i32, i64>,
    }

    impl State {
        fn apply(&mut self, partition: i32, offset: i64, key: Option<&[u8]>, value: Option<&[u8]>) {
            let Some(key) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
                self.bad.insert(
                    format!("offset {offset} of partition {partition}"),
                    "error: a searches record without a UTF-8 key (the topic id)".into(),
                );
                return;
            };
            let changed = match value {
                None => {
                    self.bad.remove(key);
                    self.topics.remove(key).is_some()
                }
                Some(v) => match serde_json::from_slice::<TopicSpec>(v) {
                    Ok(t) if t.id == key => {
                        self.bad.remove(key);
                        if self.topics.get(key) == Some(&t) {
                            false
                        } else {
                            self.topics.insert(key.to_string(), t);
                            true
                        }
                    }
                    Ok(t) => {
                        self.bad.insert(key.to_string(), format!("error: searches record {key:?} (partition {partition}, offset {offset}) holds topic {:?}; the key must be the topic id", t.id));
                        false
                    }
                    Err(e) => {
                        self.bad.insert(key.to_string(), format!("error: searches record {key:?} (partition {partition}, offset {offset}) is not a valid topic: {e}"));
                        false
                    }
                },
            };
            if changed {
                self.changed.insert(partition, offset + 1);
            }
        }

        fn candidate(&self, topic: &str) -> Candidate {
            Candidate {
                source: format!("kafka:{topic}"),
                file: SearchesFile {
                    topics: self.topics.values().cloned().collect(),
                },
                canonical: SearchesFile::canonical_json(self.topics.values()),
                number: Some(self.changed.values().map(|o| *o as u64).sum()),
                problems: self.bad.values().cloned().collect(),
            }
        }
    }

    pub(super) struct Source {
        topic: String,
        brokers: String,
        state: Arc<Mutex<State>>,
        consumer: Mutex<Option<BaseConsumer>>,
    }

    fn kafka_err(e: impl std::fmt::Display) -> ReloadError {
        ReloadError::NoSource(format!("searches topic: {e}"))
    }

    impl Source {
        /// Connects and assigns every partition of `topic` from the start.
        pub(super) fn connect(brokers: &str, topic: &str) -> Result<Source, ReloadError> {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .set("group.id", "topic-matcher-searches-reader")
                .set("enable.auto.commit", "false")
                .set("enable.partition.eof", "false")
                .create()
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
                brokers: brokers.to_string(),
                state: Arc::default(),
                consumer: Mutex::new(Some(consumer)),
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
                    self.state.lock().expect("state lock").apply(
                        m.partition(),
                        m.offset(),
                        m.key(),
                        m.payload(),
                    );
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

        /// Keeps reading on a thread; after each quiet moment with changes,
        /// hands the worker a candidate.
        pub(super) fn tail(&self, searches: Weak<Searches>) {
            let consumer = self.consumer.lock().expect("consumer lock").take();
            let Some(consumer) = consumer else { return };
            let state = self.state.clone();
            let topic = self.topic.clone();
            let _ = std::thread::Builder::new()
                .name("searches-kafka".into())
                .spawn(move || {
                    let mut dirty = false;
                    loop {
                        let msg = consumer.poll(Duration::from_millis(100));
                        let Some(s) = searches.upgrade() else { return };
                        match msg {
                            Some(Ok(m)) => {
                                state.lock().expect("state lock").apply(
                                    m.partition(),
                                    m.offset(),
                                    m.key(),
                                    m.payload(),
                                );
                                dirty = true;
                            }
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "reading the searches topic");
                            }
                            None if dirty => {
                                dirty = false;
                                let c = state.lock().expect("state lock").candidate(&topic);
                                s.send(Job::FromKafka(c));
                            }
                            None => {}
                        }
                    }
                });
        }

        /// Writes the records that make the topic hold `topics`: changed or
        /// new topics, and tombstones for topics no longer there. Returns
        /// how many.
        pub(super) fn publish(&self, topics: &[TopicSpec]) -> Result<usize, ReloadError> {
            let perr = |e: &dyn std::fmt::Display| ReloadError::Publish(e.to_string());
            let (upserts, deletes) = {
                let st = self.state.lock().expect("state lock");
                let upserts: Vec<&TopicSpec> = topics
                    .iter()
                    .filter(|t| st.topics.get(&t.id) != Some(t))
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
            let producer: BaseProducer = ClientConfig::new()
                .set("bootstrap.servers", &self.brokers)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn doc(topics: &[(&str, &str)]) -> String {
        let t: Vec<serde_json::Value> = topics
            .iter()
            .map(|(id, q)| {
                serde_json::json!({"id": id, "searches": [{"id": format!("{id}-s"), "query": q}]})
            })
            .collect();
        serde_json::json!({ "topics": t }).to_string()
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tm-reload-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn open(d: &Path, watch: bool) -> Result<Arc<Searches>, ReloadError> {
        // A dropped instance's worker may still hold the store for the
        // length of a merge.
        let until = Instant::now() + Duration::from_secs(10);
        let store = loop {
            match Checkpoints::open(&d.join("state")) {
                Ok(s) => break Arc::new(s),
                Err(e) if Instant::now() > until => panic!("{e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let mut config = SearchesConfig::file(d.join("searches.json"));
        config.watch = watch;
        config.debounce = Duration::from_millis(50);
        Searches::open(config, "", store, Arc::default())
    }

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn topics_of(s: &Searches) -> Vec<String> {
        s.current()
            .catalog
            .topics
            .iter()
            .map(|t| t.id.clone())
            .collect()
    }

    #[test]
    fn a_broken_file_is_rejected_with_its_errors_and_the_running_version_stays() {
        let d = dir("broken");
        std::fs::write(
            d.join("searches.json"),
            doc(&[("a", "alpha"), ("b", "beta")]),
        )
        .unwrap();
        let s = open(&d, false).unwrap();
        assert_eq!(s.current().meta.version, 1);
        std::fs::write(
            d.join("searches.json"),
            doc(&[("a", "alpha AND"), ("b", "beta")]),
        )
        .unwrap();
        let err = block(s.reload(false)).unwrap_err();
        let ReloadError::Invalid { problems, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("column"), "{}", problems[0]);
        assert_eq!(s.current().meta.version, 1);
        assert_eq!(err.http_status(), 422);
        let status = s.status_json();
        assert_eq!(status["version"], 1);
        assert_eq!(status["last_error"]["error"], "invalid");
        // Fixed: a new version, the error cleared.
        std::fs::write(
            d.join("searches.json"),
            doc(&[("a", "alpha OR gamma"), ("b", "beta")]),
        )
        .unwrap();
        let c = block(s.reload(false)).unwrap();
        assert_eq!(
            (c.outcome, c.active.version, c.previous_version),
            ("activated", 2, 1)
        );
        assert!(s.status_json()["last_error"].is_null());
        // Reformatting the file is not a new version: the canonical form is.
        let pretty: serde_json::Value =
            serde_json::from_str(&doc(&[("b", "beta"), ("a", "alpha OR gamma")])).unwrap();
        std::fs::write(
            d.join("searches.json"),
            serde_json::to_string_pretty(&pretty).unwrap(),
        )
        .unwrap();
        assert_eq!(block(s.reload(false)).unwrap().outcome, "unchanged");
        drop(s);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_query_that_used_to_panic_is_refused_by_put_and_the_worker_goes_on() {
        let d = dir("negated-near");
        std::fs::write(d.join("searches.json"), doc(&[("a", "alpha")])).unwrap();
        let s = open(&d, false).unwrap();
        for q in [
            "acme NEAR/2 NOT outage",
            "acme ONEAR/2 -outage",
            &"(".repeat(2000),
        ] {
            let err =
                block(s.put(doc(&[("a", "alpha"), ("b", q)]).into_bytes(), false)).unwrap_err();
            assert_eq!(err.http_status(), 422, "{q}: {err:?}");
            assert_eq!(s.current().meta.version, 1);
        }
        // The reload worker is alive: the next change is applied.
        let c = block(s.put(doc(&[("a", "alpha"), ("b", "beta")]).into_bytes(), false)).unwrap();
        assert_eq!((c.outcome, c.active.version), ("activated", 2));
        drop(s);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_restart_uses_the_last_good_version_when_the_file_is_broken() {
        let d = dir("restart");
        std::fs::write(d.join("searches.json"), doc(&[("a", "alpha")])).unwrap();
        drop(open(&d, false).unwrap());
        std::fs::write(d.join("searches.json"), "{\"topics\": [").unwrap();
        let s = open(&d, false).unwrap();
        assert_eq!(s.current().meta.version, 1);
        assert_eq!(topics_of(&s), vec!["a"]);
        assert_eq!(s.status_json()["last_error"]["error"], "invalid");
        drop(s);
        // With no stored version to fall back on, invalid searches stop the start.
        let e = dir("restart-fresh");
        std::fs::write(e.join("searches.json"), doc(&[("a", "alpha NEAR/x beta")])).unwrap();
        assert!(matches!(open(&e, false), Err(ReloadError::Invalid { .. })));
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&e);
    }

    #[test]
    fn rollback_returns_to_the_previous_version_and_survives_a_restart() {
        let d = dir("rollback");
        std::fs::write(d.join("searches.json"), doc(&[("a", "alpha")])).unwrap();
        let s = open(&d, false).unwrap();
        let v2 = block(s.put(doc(&[("a", "alpha"), ("b", "beta")]).into_bytes(), false)).unwrap();
        assert_eq!(v2.active.version, 2);
        assert_eq!(v2.active.source, "api");
        let back = block(s.rollback(None)).unwrap();
        assert_eq!((back.active.version, back.previous_version), (1, 2));
        assert_eq!(topics_of(&s), vec!["a"]);
        assert!(matches!(
            block(s.rollback(None)),
            Err(ReloadError::NoPrevious(1))
        ));
        assert!(matches!(
            block(s.rollback(Some(9))),
            Err(ReloadError::UnknownVersion(9))
        ));
        let h: Vec<u64> = s.history().unwrap().iter().map(|m| m.version).collect();
        assert_eq!(h, vec![1, 2]);
        drop(s);
        let s = open(&d, false).unwrap();
        assert_eq!(
            s.current().meta.version,
            1,
            "the rollback survives a restart"
        );
        // Forward again by number.
        assert_eq!(block(s.rollback(Some(2))).unwrap().active.version, 2);
        assert_eq!(topics_of(&s), vec!["a", "b"]);
        drop(s);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_drastic_shrink_needs_force() {
        let d = dir("shrink");
        let all: Vec<(String, &str)> = (0..10).map(|i| (format!("t{i}"), "alpha")).collect();
        let all: Vec<(&str, &str)> = all.iter().map(|(a, b)| (a.as_str(), *b)).collect();
        std::fs::write(d.join("searches.json"), doc(&all)).unwrap();
        let s = open(&d, false).unwrap();
        let truncated = doc(&all[..3]).into_bytes();
        let e = block(s.put(truncated.clone(), false)).unwrap_err();
        assert!(
            matches!(
                e,
                ReloadError::Shrink {
                    from: 10,
                    to: 3,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.http_status(), 409);
        assert_eq!(s.current().meta.topics, 10);
        // Half may go without force; more needs it.
        assert_eq!(
            block(s.put(doc(&all[..5]).into_bytes(), false))
                .unwrap()
                .active
                .topics,
            5
        );
        assert_eq!(block(s.put(truncated, true)).unwrap().active.topics, 3);
        drop(s);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_small_change_matches_as_a_full_compile_would() {
        let d = dir("delta");
        std::fs::write(
            d.join("searches.json"),
            doc(&[("a", "alpha"), ("b", "beta"), ("c", "gamma")]),
        )
        .unwrap();
        let s = open(&d, false).unwrap();
        let prev = s.current();
        // b changed, c removed, d added; a untouched.
        let next = doc(&[("a", "alpha"), ("b", "beta OR kappa"), ("d", "delta")]);
        let c = Candidate::parse("api", next.as_bytes()).unwrap();
        let (delta, topics, searches) = s.try_delta(&c, true, &prev).unwrap().expect("delta path");
        assert_eq!((topics, searches), (3, 3));
        let active = Active {
            matcher: prev.matcher.clone(),
            catalog: prev.catalog.clone(),
            file: Arc::new(c.file),
            delta: Some(delta),
            meta: prev.meta.clone(),
        };
        let full =
            Matcher::new(&Catalog::from_file(&active.file, &Limits::default()).unwrap()).unwrap();
        let mut scratch = active.scratch();
        let mut full_scratch = full.scratch();
        for text in [
            "alpha beta gamma delta kappa",
            "gamma",
            "kappa",
            "beta",
            "alpha delta",
            "nothing",
        ] {
            let json = format!("{{\"id\":\"x\",\"text\":\"{text}\"}}");
            let docu = crate::document::Document::parse(json.as_bytes(), 1 << 20).unwrap();
            let mut got = Vec::new();
            active
                .for_each_match(&docu, &mut scratch, |m, t| {
                    let ids: Vec<&str> = t.searches.iter().map(|x| m.search_id(*x)).collect();
                    got.push(format!("{}:{}", m.topic_id(t.topic), ids.join(",")));
                })
                .unwrap();
            let mut want: Vec<String> = full
                .match_document(&docu, &mut full_scratch)
                .iter()
                .map(|t| {
                    let ids: Vec<&str> = t.searches.iter().map(|x| full.search_id(*x)).collect();
                    format!("{}:{}", full.topic_id(t.topic), ids.join(","))
                })
                .collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{text}");
        }
        // A small change is validated like a whole one: its queries, and
        // ids across the whole file.
        let bad = doc(&[("a", "alpha"), ("b", "beta AND"), ("c", "gamma")]);
        let c = Candidate::parse("api", bad.as_bytes()).unwrap();
        assert!(matches!(
            s.try_delta(&c, true, &prev),
            Err(ReloadError::Invalid { .. })
        ));
        let mut dup: serde_json::Value = serde_json::from_str(&doc(&[
            ("a", "alpha"),
            ("b", "beta"),
            ("c", "gamma"),
            ("e", "eps"),
        ]))
        .unwrap();
        dup["topics"][3]["searches"][0]["id"] = "a-s".into();
        let c = Candidate::parse("api", dup.to_string().as_bytes()).unwrap();
        let Err(ReloadError::Invalid { problems, .. }) = s.try_delta(&c, true, &prev) else {
            panic!("a repeated search id was accepted")
        };
        assert!(problems[0].contains("\"a-s\""), "{problems:?}");
        drop(s);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_watcher_sees_a_file_replaced_by_rename() {
        let d = dir("watch");
        let path = d.join("searches.json");
        std::fs::write(&path, doc(&[("a", "alpha")])).unwrap();
        let s = open(&d, true).unwrap();
        // An editor's save: write a temporary file, rename it over.
        let tmp = d.join(".searches.json.swp");
        std::fs::write(&tmp, doc(&[("a", "alpha"), ("c", "gamma")])).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while s.current().meta.version != 2 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(s.current().meta.version, 2);
        assert_eq!(s.current().meta.source, format!("file:{}", path.display()));
        // A broken save is reported and changes nothing.
        std::fs::write(&path, doc(&[("a", "(alpha")])).unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while s.status_json()["last_error"].is_null() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(s.status_json()["last_error"]["error"], "invalid");
        assert_eq!(s.current().meta.version, 2);
        drop(s);
        let _ = std::fs::remove_dir_all(&d);
    }
}
