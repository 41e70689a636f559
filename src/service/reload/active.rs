//! The version in use as the pipeline sees it: its matcher, a small change
//! compiled beside it (delta) until merged, the masks of a backfill, and
//! the scratch space to match with both.

use super::*;

/// The version in use: its matcher, its parsed searches and description.
pub struct Active {
    /// The compiled searches (with a delta: those of the base version).
    pub matcher: Arc<Matcher>,
    /// The parsed searches of `matcher` (reused by the next compile).
    pub catalog: Arc<Catalog>,
    /// This version's searches as written.
    pub file: Arc<SearchesFile>,
    /// Their digests, for the hash of the next one-topic change.
    pub(super) digests: TopicDigests,
    /// A small change on top of `matcher`, until merged.
    pub delta: Option<Delta>,
    /// Its description.
    pub meta: VersionMeta,
}

/// The topics a small change added or changed, compiled alone, and the
/// base searches still valid (those of untouched topics).
pub struct Delta {
    pub(super) matcher: Matcher,
    pub(super) base_only: Vec<bool>,
    /// The searches the base matcher was compiled from: the next small
    /// change is a delta against them too.
    pub(super) base_file: Arc<SearchesFile>,
    /// The number of the version `base_file` is (stored whole: this
    /// version is stored as a patch of it).
    pub(super) base_version: u64,
    /// The ids of the topics that differ from the base (set, changed or
    /// deleted): what the next small change adds to.
    pub(super) changed: Vec<String>,
    /// This version's topics among `changed` (a deleted one has none):
    /// what the delta compiled, and the version's patch.
    pub(super) topics: Vec<Arc<TopicSpec>>,
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
    /// Set when costs are counted: one document in this many is timed.
    cost_sample: Option<u32>,
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

    /// Counts what each search costs from now on (engine `count_costs`).
    pub fn count_costs(&mut self, sample_every: u32) {
        self.cost_sample = Some(sample_every);
        self.base.count_costs(sample_every);
        if let Some(d) = &mut self.delta {
            d.count_costs(sample_every);
        }
    }
}

impl Active {
    /// `file` compiled whole as version 1, outside any store (for tests of
    /// the code that matches with a version).
    #[cfg(test)]
    pub(crate) fn for_tests(file: SearchesFile) -> Active {
        let catalog = Catalog::from_file(&file, &crate::query::Limits::default())
            .expect("a valid test catalog");
        let matcher = Matcher::new(&catalog).expect("a test catalog compiles");
        let digests = TopicDigests::of(file.topics.iter().map(|t| &**t));
        Active {
            meta: VersionMeta {
                version: 1,
                hash: digests.hash(),
                created_at: String::new(),
                source: "test".into(),
                compile_ms: 0,
                topics: file.topics.len(),
                searches: catalog.searches.len(),
            },
            matcher: Arc::new(matcher),
            catalog: Arc::new(catalog),
            file: Arc::new(file),
            digests,
            delta: None,
        }
    }

    /// Working memory for [`Active::for_each_match`].
    pub fn scratch(&self) -> ActiveScratch {
        ActiveScratch {
            base: self.matcher.scratch(),
            delta: self.delta.as_ref().map(|d| d.matcher.scratch()),
            cost_sample: None,
        }
    }

    /// Replaces `scratch` (left in an unknown state by a caught panic) with
    /// a fresh one of the same budget and cost counting; the counts it
    /// held are lost.
    pub fn reset_scratch(&self, scratch: &mut ActiveScratch) {
        let (budget, sample) = (scratch.budget(), scratch.cost_sample);
        *scratch = self.scratch();
        scratch.set_budget(budget);
        if let Some(every) = sample {
            scratch.count_costs(every);
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

    /// Calls `f` with (search id, topic id, cost) of every search `scratch`
    /// evaluated since the last call, resets the counts, and returns the
    /// documents counted. `scratch` must be this version's.
    pub fn take_costs(
        &self,
        scratch: &mut ActiveScratch,
        mut f: impl FnMut(&str, &str, &crate::engine::SearchCost),
    ) -> u64 {
        let m = &self.matcher;
        let documents = scratch
            .base
            .take_costs(|s, c| f(m.search_id(s), m.topic_id(m.search_topic(s)), c));
        if let (Some(d), Some(ds)) = (&self.delta, scratch.delta.as_mut()) {
            let m = &d.matcher;
            ds.take_costs(|s, c| f(m.search_id(s), m.topic_id(m.search_topic(s)), c));
        }
        documents
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

/// A document whose matching spent the work budget (docs/formats.md §2.1: it becomes
/// a dead letter with reason `too_expensive`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("matching spent its budget of {budget} work units{}", .search.as_ref().map(|s| format!(" in search `{s}`")).unwrap_or_default())]
pub struct TooExpensive {
    /// The search being evaluated when the budget ran out.
    pub search: Option<String>,
    /// The budget.
    pub budget: u64,
}
