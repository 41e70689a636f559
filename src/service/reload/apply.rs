//! Applying a change: validate, guard, compile and probe, store, swap in;
//! the fast path for a change of a few topics (delta) and its merge; stored
//! versions and rollback; publishing to the searches topic.

use super::*;

/// Changes of at most this many topics take the delta path.
const DELTA_MAX_TOPICS: usize = 64;

/// Compiles `catalog` and runs the engine's probe on it: a search that
/// panics or is too expensive on the built-in hostile documents refuses the
/// whole change (the running version stays).
pub(super) fn compile_probed(catalog: &Catalog, source: &str) -> Result<Matcher, ReloadError> {
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

/// `matcher`, a whole version's (a delta's is small), shared, with its
/// arrays moved to 2 MiB pages (`huge_pages`) on a thread of their own:
/// matching reads them at random, and the move takes the kernel a while
/// (0.6 s at a million searches here), which the change need not wait for.
/// Moving pages under readers is safe: the kernel swaps them whole.
fn in_huge_pages(matcher: Matcher) -> Arc<Matcher> {
    let matcher = Arc::new(matcher);
    let placed = matcher.clone();
    let spawned = std::thread::Builder::new()
        .name("huge-pages".into())
        .spawn(move || {
            let started = Instant::now();
            let backed = crate::huge_pages::back_with_huge_pages(&placed.hot_memory());
            tracing::info!(
                collapsed_mib = backed.collapsed >> 20,
                refused_mib = backed.refused >> 20,
                secs = format!("{:.3}", started.elapsed().as_secs_f64()),
                "searches' matcher moved to 2 MiB pages"
            );
        });
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "searches left in small pages: no thread");
    }
    matcher
}

impl SearchVersions {
    /// Validates `c`, guards, compiles, stores and swaps in (module doc).
    pub(super) fn apply(&self, c: Candidate, force: bool) -> Result<Change, ReloadError> {
        let started = Instant::now();
        let previous = self.current();
        let hash = c.hash.clone();
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
                let matcher = in_huge_pages(compile_probed(&catalog, &c.source)?);
                let (t, n) = (catalog.topics.len(), catalog.searches.len());
                (matcher, Arc::new(catalog), None, t, n)
            };
        let built = started.elapsed();
        let version = c
            .number
            .unwrap_or_else(|| stored.iter().map(|m| m.version).max().unwrap_or(0) + 1);
        let meta = VersionMeta {
            version,
            hash,
            created_at: now_rfc3339(),
            source: c.source.clone(),
            compile_ms: started.elapsed().as_millis() as u64,
            topics,
            searches,
        };
        // A delta version is stored as a patch of its base (module
        // `stored`), when that base is stored whole.
        match &delta {
            Some(d) if stored::is_whole(&self.store, d.base_version)? => {
                let patch = stored::patch_json(&d.topics, &d.changed);
                self.store
                    .add_version_patch(&meta, d.base_version, &patch)?;
            }
            _ => self.store.add_version(&meta, &c.canonical())?,
        }
        self.prune_versions(&stored, version, previous.meta.version);
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
                digests: c.digests,
                delta,
                meta,
            },
            &previous,
        ))
    }

    /// The fast path for a small change (module doc): when at most
    /// [`DELTA_MAX_TOPICS`] topics differ from the base version the
    /// matcher was compiled from (`previous` itself, or the base of its
    /// unmerged delta), validates the whole file's ids and those topics'
    /// queries, and compiles only those topics. Returns the delta and the version's topic and search
    /// counts, or `None` for the full path.
    pub(super) fn try_delta(
        &self,
        c: &Candidate,
        force: bool,
        previous: &Active,
    ) -> Result<Option<(Delta, usize, usize)>, ReloadError> {
        if previous.meta.version == 0 {
            return Ok(None);
        }
        // Compared with the base the matcher was compiled from: a change
        // on top of an unmerged delta is a delta of both.
        let (base_file, base_version) = previous.delta.as_ref().map_or_else(
            || (previous.file.clone(), previous.meta.version),
            |d| (d.base_file.clone(), d.base_version),
        );
        // The ids of the topics that differ from the base: for a one-topic
        // change, the earlier delta's and this one's, no comparison needed;
        // else found by comparing every topic. Then the id rules: over the
        // whole file, or, for a one-topic change, the changed topics'
        // search ids against the base's index.
        let hint = c
            .changed
            .as_ref()
            .filter(|(since, _)| *since == previous.meta.hash)
            .map(|(_, ids)| ids);
        let (ids, whole_file_problems) = match hint {
            Some(hint) => {
                let mut ids = previous
                    .delta
                    .as_ref()
                    .map_or_else(Vec::new, |d| d.changed.clone());
                for id in hint {
                    if !ids.contains(id) {
                        ids.push(id.clone());
                    }
                }
                (ids, None)
            }
            None => {
                let before: rustc_hash::FxHashMap<&str, &TopicSpec> = base_file
                    .topics
                    .iter()
                    .map(|t| (t.id.as_str(), &**t))
                    .collect();
                let mut ids = Vec::new();
                for t in &c.file.topics {
                    if before.get(t.id.as_str()) != Some(&&**t) {
                        if ids.len() == DELTA_MAX_TOPICS {
                            return Ok(None);
                        }
                        ids.push(t.id.clone());
                    }
                }
                let now: rustc_hash::FxHashSet<&str> =
                    c.file.topics.iter().map(|t| t.id.as_str()).collect();
                ids.extend(
                    before
                        .keys()
                        .filter(|k| !now.contains(*k))
                        .map(|k| k.to_string()),
                );
                (ids, Some(c.file.id_problems()))
            }
        };
        if ids.len() > DELTA_MAX_TOPICS {
            return Ok(None);
        }
        let stale: rustc_hash::FxHashSet<&str> = ids.iter().map(String::as_str).collect();
        // This version's topics among those ids: with a trusted hint whose
        // topics the source gave, the earlier delta's (those this change
        // did not touch) and the hint's; else found in the whole file.
        let delta_file = SearchesFile {
            topics: match (hint, &c.changed_topics) {
                (Some(hint), Some(given)) => previous
                    .delta
                    .iter()
                    .flat_map(|d| d.topics.iter())
                    .filter(|t| !hint.contains(&t.id))
                    .chain(given)
                    .cloned()
                    .collect(),
                _ => c
                    .file
                    .topics
                    .iter()
                    .filter(|t| stale.contains(t.id.as_str()))
                    .cloned()
                    .collect(),
            },
        };
        // The changed queries are parsed below (the others were valid in
        // `previous`, under the same limits).
        let mut problems = match whole_file_problems {
            Some(p) => p,
            None => self.changed_id_problems(&base_file, &previous.catalog, &delta_file, &stale),
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
        // Kept with the digests, change by change (module `digests`).
        let enabled = c.digests.enabled();
        let (topics, searches) = (enabled.topics, enabled.searches);
        self.guard(&c.source, previous.meta.topics, topics, force)?;
        let base_only = self
            .base_ids(&base_file, &previous.catalog)
            .base_only(&previous.catalog, &ids);
        let matcher = compile_probed(&catalog, &c.source)?;
        Ok(Some((
            Delta {
                matcher,
                base_only,
                base_file: base_file.clone(),
                base_version,
                changed: ids.clone(),
                topics: delta_file.topics,
            },
            topics,
            searches,
        )))
    }

    /// The id problems of a one-topic change: those within the changed
    /// topics (`delta_file`), and their search ids that a topic of the
    /// base other than the changed ones (`changed`) already has.
    fn changed_id_problems(
        &self,
        base_file: &Arc<SearchesFile>,
        base_catalog: &Catalog,
        delta_file: &SearchesFile,
        changed: &rustc_hash::FxHashSet<&str>,
    ) -> Vec<crate::searches::Problem> {
        let mut problems = delta_file.id_problems();
        let index = self.base_ids(base_file, base_catalog);
        for t in &delta_file.topics {
            for s in &t.searches {
                let Some(&owner) = index.search_topic.get(s.id.as_str()) else {
                    continue;
                };
                if !changed.contains(base_file.topics[owner as usize].id.as_str()) {
                    problems.push(crate::searches::Problem::File(format!(
                        "search id {:?} (topic {:?}) appears more than once; search ids are unique in the whole file",
                        s.id, t.id
                    )));
                }
            }
        }
        problems
    }

    /// The search-id index of `base_file`: the cached one, or built (and
    /// cached) now.
    fn base_ids(&self, base_file: &Arc<SearchesFile>, base_catalog: &Catalog) -> Arc<BaseIds> {
        let mut cached = self.base_ids.lock().expect("base ids lock");
        if let Some(b) = cached.as_ref().filter(|b| b.is_of(base_file)) {
            return b.clone();
        }
        let built = Arc::new(BaseIds::of(base_file, base_catalog));
        // The replaced index (a million ids at 1M searches) is freed off
        // the worker.
        worker::free_later(cached.replace(built.clone()));
        built
    }

    /// Swaps in `merged`, the whole compile of `of` (a version with a
    /// delta), under the same number — invisible to matching: same
    /// searches — unless another version replaced `of` meanwhile (then
    /// `merged` is dropped; the newer version is merged next).
    pub(super) fn finish_merge(
        &self,
        of: &Arc<Active>,
        (merged, ids): (Active, BaseIds),
        took: Duration,
    ) {
        // Only the worker thread swaps versions: `of` cannot be replaced
        // between this check and the swap.
        if !Arc::ptr_eq(&self.current(), of) {
            tracing::debug!(
                version = of.meta.version,
                "searches delta merge dropped: a newer version is active"
            );
            return;
        }
        // The index first: the merged version is the base of the next
        // change, which may arrive as soon as the swap is seen. The
        // replaced index is freed off the worker (freeing a million ids
        // took 0.6 s at 1M searches, and the next change waited for it).
        let replaced = self
            .base_ids
            .lock()
            .expect("base ids lock")
            .replace(Arc::new(ids));
        worker::free_later(replaced);
        let old = self.current.swap(Arc::new(merged));
        self.retired.lock().expect("retired lock").push(old);
        tracing::debug!(
            version = of.meta.version,
            ms = took.as_millis() as u64,
            "searches delta merged"
        );
    }

    pub(super) fn guard(
        &self,
        source: &str,
        from: usize,
        to: usize,
        force: bool,
    ) -> Result<(), ReloadError> {
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
    pub(super) fn validate(
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

    pub(super) fn swap(&self, next: Active, previous: &Active) -> Change {
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
            outcome: ChangeOutcome::Activated,
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

    pub(super) fn publish_metrics(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let a = self.current();
        self.metrics.searches_version.store(a.meta.version, Relaxed);
        self.metrics.searches.store(a.meta.searches as u64, Relaxed);
        self.metrics.compile_ms.store(a.meta.compile_ms, Relaxed);
    }

    pub(super) fn build_stored(
        store: &StateStore,
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
        let doc = stored::document(store, version)?;
        let source = format!("stored version {version}");
        let c = Candidate::parse(&source, &doc)?;
        // Compiled whole, it may become the base of patches.
        stored::make_whole_if_patch(store, version, || doc);
        let catalog = Catalog::from_file_reusing(&c.file, limits, previous)
            .map_err(|e| ReloadError::invalid(&source, &e))?;
        let matcher = Matcher::new(&catalog).map_err(|e| ReloadError::Compile(e.to_string()))?;
        let matcher = in_huge_pages(matcher);
        tracing::info!(
            version,
            ms = started.elapsed().as_millis() as u64,
            "stored searches version compiled"
        );
        Ok(Active {
            matcher,
            catalog: Arc::new(catalog),
            file: Arc::new(c.file),
            digests: c.digests,
            delta: None,
            meta,
        })
    }

    pub(super) fn activate_stored(&self, version: u64) -> Result<Change, ReloadError> {
        let previous = self.current();
        if previous.meta.version == version {
            return Ok(unchanged(&previous));
        }
        let next = SearchVersions::build_stored(
            &self.store,
            &self.limits,
            version,
            Some(&previous.catalog),
        )?;
        self.store.set_active_version(version)?;
        Ok(self.swap(next, &previous))
    }

    /// Deletes the oldest stored versions beyond `searches.keep_versions`,
    /// never `active` nor `rollback_target`. A failure is logged: the
    /// versions stay and the next change tries again.
    fn prune_versions(&self, stored: &[VersionMeta], active: u64, rollback_target: u64) {
        let keep = self.config.keep_versions;
        let mut all: Vec<u64> = stored.iter().map(|m| m.version).collect();
        all.push(active);
        all.sort_unstable();
        all.dedup();
        let excess = all.len().saturating_sub(keep);
        let mut doomed: Vec<u64> = all
            .iter()
            .copied()
            .filter(|&v| v != active && v != rollback_target)
            .take(excess)
            .collect();
        // The bases of the patch versions kept are kept too.
        let kept: Vec<u64> = all.into_iter().filter(|v| !doomed.contains(v)).collect();
        let bases = stored::bases_of(&self.store, &kept);
        doomed.retain(|v| !bases.contains(v));
        if doomed.is_empty() {
            return;
        }
        match self.store.delete_versions(&doomed) {
            Ok(()) => tracing::info!(
                pruned = doomed.len(),
                oldest_kept = doomed.last().map_or(0, |v| v + 1),
                keep,
                "old searches versions pruned"
            ),
            Err(e) => tracing::warn!(error = %e, "pruning old searches versions failed; they stay"),
        }
    }

    pub(super) fn rollback_now(&self, to: Option<u64>) -> Result<Change, ReloadError> {
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
            let doc = stored::document(&self.store, target)?;
            let c = Candidate::parse(&format!("rollback to version {target}"), &doc)?;
            return self.publish(c, true);
        }
        self.activate_stored(target)
    }

    /// Kafka source: validates `c` and writes the records that differ.
    pub(super) fn publish(&self, c: Candidate, force: bool) -> Result<Change, ReloadError> {
        let k = self.kafka.as_ref().expect("publish needs the Kafka source");
        let previous = self.current();
        let hash = c.hash.clone();
        self.validate(&c, force, &previous)?;
        let n = k.publish(&c.file.topics)?;
        tracing::info!(records = n, source = %c.source, "searches change published to the searches topic");
        Ok(Change {
            outcome: if n == 0 && previous.meta.hash == hash {
                ChangeOutcome::Unchanged
            } else {
                ChangeOutcome::Published
            },
            active: previous.meta.clone(),
            previous_version: previous.meta.version,
            published_records: Some(n),
            expected_hash: Some(hash),
        })
    }
}

pub(super) fn unchanged(a: &Active) -> Change {
    Change {
        outcome: ChangeOutcome::Unchanged,
        active: a.meta.clone(),
        previous_version: a.meta.version,
        published_records: None,
        expected_hash: None,
    }
}

/// Version 0: no searches yet (nothing matches).
pub(super) fn empty_version() -> Active {
    let catalog = Catalog::default();
    Active {
        matcher: Arc::new(Matcher::new(&catalog).expect("the empty catalog compiles")),
        catalog: Arc::new(catalog),
        file: Arc::new(SearchesFile { topics: Vec::new() }),
        digests: TopicDigests::default(),
        delta: None,
        meta: VersionMeta {
            version: 0,
            hash: TopicDigests::default().hash(),
            created_at: now_rfc3339(),
            source: "none".into(),
            compile_ms: 0,
            topics: 0,
            searches: 0,
        },
    }
}

/// Where each search id of a searches file is: the index one-topic
/// changes are validated against, built once per base version (by the
/// merge that makes it the base, else by the first change on it).
pub(super) struct BaseIds {
    /// The file indexed (compared by address; the weak reference keeps
    /// the address from being reused).
    file: std::sync::Weak<SearchesFile>,
    /// Search id → position of its topic in the file.
    search_topic: rustc_hash::FxHashMap<Box<str>, u32>,
    /// Topic id → its searches in the base catalog (a topic's searches
    /// are consecutive there), to mask them out without a pass over every
    /// search; `None` if a catalog ever breaks that order.
    topic_searches: Option<rustc_hash::FxHashMap<Box<str>, std::ops::Range<u32>>>,
}

impl BaseIds {
    fn of(file: &Arc<SearchesFile>, catalog: &Catalog) -> BaseIds {
        let mut search_topic = rustc_hash::FxHashMap::default();
        for (i, t) in file.topics.iter().enumerate() {
            for s in &t.searches {
                search_topic.insert(s.id.as_str().into(), i as u32);
            }
        }
        let mut ranges = vec![u32::MAX..u32::MAX; catalog.topics.len()];
        let mut consecutive = true;
        for (i, s) in catalog.searches.iter().enumerate() {
            let r = &mut ranges[s.topic.0 as usize];
            let i = i as u32;
            if r.start == u32::MAX {
                *r = i..i + 1;
            } else if r.end == i {
                r.end += 1;
            } else {
                consecutive = false;
            }
        }
        let topic_searches = consecutive.then(|| {
            catalog
                .topics
                .iter()
                .zip(ranges)
                .map(|(t, r)| (t.id.as_str().into(), r))
                .collect()
        });
        BaseIds {
            file: Arc::downgrade(file),
            search_topic,
            topic_searches,
        }
    }

    /// Which searches of the base `catalog` (the one this index was built
    /// with) stay valid when the topics `changed` differ: all but theirs.
    fn base_only(&self, catalog: &Catalog, changed: &[String]) -> Vec<bool> {
        let Some(ranges) = &self.topic_searches else {
            let stale: rustc_hash::FxHashSet<&str> = changed.iter().map(String::as_str).collect();
            return catalog
                .searches
                .iter()
                .map(|s| !stale.contains(catalog.topics[s.topic.0 as usize].id.as_str()))
                .collect();
        };
        let mut keep = vec![true; catalog.searches.len()];
        for id in changed {
            if let Some(r) = ranges.get(id.as_str()).filter(|r| r.start != u32::MAX) {
                keep[r.start as usize..r.end as usize].fill(false);
            }
        }
        keep
    }

    fn is_of(&self, file: &Arc<SearchesFile>) -> bool {
        std::ptr::eq(self.file.as_ptr(), Arc::as_ptr(file))
    }
}

/// `cur` (a version with a delta) compiled whole, reusing its base's
/// parsed searches, with its search-id index; `None` (logged) when it
/// cannot be.
pub(super) fn merged(
    cur: &Active,
    limits: &Limits,
    store: &StateStore,
) -> Option<(Active, BaseIds)> {
    let catalog = match Catalog::from_file_reusing(&cur.file, limits, Some(&cur.catalog)) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("merging the searches delta: {}", e.render());
            return None;
        }
    };
    let matcher = match Matcher::new(&catalog) {
        Ok(m) => in_huge_pages(m),
        Err(e) => {
            tracing::error!(error = %e, "merging the searches delta");
            return None;
        }
    };
    // The merged version becomes the base of the next changes: stored
    // whole first (module `stored`).
    stored::make_whole_if_patch(store, cur.meta.version, || {
        digests::canonical(cur.file.topics.iter().map(|t| &**t)).1
    });
    let ids = BaseIds::of(&cur.file, &catalog);
    Some((
        Active {
            matcher,
            catalog: Arc::new(catalog),
            file: cur.file.clone(),
            digests: cur.digests,
            delta: None,
            meta: cur.meta.clone(),
        },
        ids,
    ))
}
