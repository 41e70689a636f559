//! Matching one document: index its fields, collect candidates, evaluate.

use super::cost::{CostCounters, SearchCost};
use super::regexes::RegexScratch;

use super::compile::{Compiled, FeatureId};
use super::confirm::Confirmed;
use super::doc_index::{DocIndex, Occ, Span};
use super::slop::SlopScratch;
use super::term_table::Probe;
use super::tree::{Eval, LeafMemo, PositiveLeaf};
use super::{Highlight, TopicMatch, MAX_HIGHLIGHTS};
use crate::document::Document;
use crate::query::Fields;
use crate::searches::{SearchIdx, TopicIdx};
use crate::text::{FoldedField, TokenKind, Tokens};

/// Per-thread state for matching, sized for one matcher and reused for every
/// document, so that matching allocates nothing per search.
pub struct Scratch {
    pub(super) fields: [Tokens; 2],
    pub(super) folded: FoldedField,
    pub(super) occs: Vec<Occ>,
    /// Set while indexing when some occurrence is not one token's (a CJK
    /// term or a regex match, placed by its bytes) or a field has too many
    /// tokens for [`Occ::token_key`]: `occs` is then sorted by all its
    /// fields, not by that key.
    pub(super) occs_need_full_sort: bool,
    /// The occurrences' [`Occ::token_key`]s, while they are sorted.
    occ_keys: Vec<u64>,
    /// Bit `s` set when search `s` is already a candidate of this
    /// document (a bitset, not a stamp per search: at 100,000 searches it
    /// stays in cache, 12.5 KB against 400; cleared by its candidates).
    cand_seen: Vec<u64>,
    /// The number of searches (`cand_seen`'s bits).
    searches: usize,
    /// The document's features for the confirm branches: `feat_stamp[f]
    /// == stamp` when feature `f` occurs, and then `feat_kinds[f]` has bit
    /// `k` set when it occurs as a token of kind `k` (`confirm::Need`).
    feat_stamp: Vec<u32>,
    feat_kinds: Vec<u8>,
    /// The document's summary (`confirm::Summary`). The gates read it,
    /// and the confirm checks before `feat_stamp`, which at 100,000
    /// searches is not in the first-level cache (`confirm::Present`).
    summary: Box<super::confirm::Summary>,
    /// The slots of `summary` set for the last document.
    summary_set: Vec<u16>,
    /// Where feature `f`'s occurrences are in `occs` ([`DocIndex`]).
    feat_occs: Vec<(u32, u32)>,
    /// The last document's distinct features that anchor searches, in
    /// feature order.
    doc_features: Vec<FeatureId>,
    /// Posting entries the last document's features woke.
    woken: usize,
    /// Candidates that passed their confirm groups and were evaluated.
    evaluated: usize,
    /// Of those, the ones their exact branches decided (module `confirm`).
    decided: usize,
    /// Per leaf, what this document already knows of it (its value, its
    /// highlights): one 16-byte entry, so that a leaf costs one cache
    /// miss however many of these a search asks for.
    leaf_memo: Vec<LeafMemo>,
    pub(super) stamp: u32,
    candidates: Vec<u32>,
    /// The candidates that passed their confirm branches (the `only`
    /// mask too), in candidate order.
    confirmed: Vec<u32>,
    /// Per confirmed search, whether its exact branches said it matched.
    sure: Vec<bool>,
    matched: Vec<(TopicIdx, u32)>,
    spans: Vec<Span>,
    spans2: Vec<Span>,
    /// The highlights of each positive leaf of a matched search, sorted,
    /// computed once per document however many matched searches share the
    /// leaf: `highlight_spans[from..to]` of its [`LeafMemo`].
    highlight_spans: Vec<Span>,
    slop: SlopScratch,
    /// Per wildcard-fragment pattern: the (document stamp, field, token)
    /// last verified for it, packed by `occurrences::frag_key`; no reset per document.
    pub(super) frag_seen: Vec<u64>,
    /// Each token's term-table lookup of the field being indexed.
    pub(super) probes: Vec<Probe>,
    pub(super) regex: RegexScratch,
    results: Vec<TopicMatch>,
    n_results: usize,
    /// Work units each document may spend ([`DEFAULT_WORK_BUDGET`]).
    budget: u64,
    /// Work units the last document spent.
    pub(super) work: u64,
    /// The search being evaluated, while one is.
    current: Option<u32>,
    /// When set, (search, work) of each evaluated search (the probe).
    pub(crate) search_work: Option<Vec<(u32, u64)>>,
    /// When set, what each search cost ([`Scratch::count_costs`]).
    costs: Option<CostCounters>,
}

/// Work units one document may spend by default: about 100 ms of matching
/// on one core (BENCHMARKS.md), thousands of times what a post of normal
/// size needs against 100,000 searches.
pub const DEFAULT_WORK_BUDGET: u64 = 20_000_000;

/// Work units past which one evaluation of one search counts as slow (the
/// service's slow-search log): a twentieth of the document budget, about
/// 5 ms on one core.
pub const DEFAULT_SLOW_SEARCH_WORK: u64 = DEFAULT_WORK_BUDGET / 20;

/// A document whose matching spent its work budget.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("matching spent more than its budget of {budget} work units")]
pub struct TooExpensive {
    /// The search being evaluated when the budget ran out (`None`: while
    /// indexing the document, before any search).
    pub search: Option<SearchIdx>,
    /// The budget.
    pub budget: u64,
}

impl Scratch {
    /// The arrays kept per feature, search or leaf, read at random, as
    /// byte ranges (`engine::memory`).
    pub(crate) fn hot_arrays(&self, out: &mut Vec<super::memory::Bytes>) {
        use super::memory::bytes_of;
        out.extend([
            bytes_of(&self.cand_seen),
            bytes_of(&self.feat_stamp),
            bytes_of(&self.feat_kinds),
            bytes_of(&self.feat_occs),
            bytes_of(&self.leaf_memo),
            bytes_of(&self.frag_seen),
        ]);
    }

    pub(crate) fn new(c: &Compiled) -> Scratch {
        Scratch {
            fields: [Tokens::new(), Tokens::new()],
            folded: FoldedField::default(),
            occs: Vec::with_capacity(64),
            occs_need_full_sort: false,
            occ_keys: Vec::with_capacity(64),
            cand_seen: vec![0; c.searches.len().div_ceil(64)],
            searches: c.searches.len(),
            feat_stamp: vec![0; c.post_off.len().saturating_sub(1)],
            summary: Box::new([0; super::confirm::SUMMARY_SLOTS]),
            summary_set: Vec::with_capacity(128),
            feat_kinds: vec![0; c.post_off.len().saturating_sub(1)],
            feat_occs: vec![(0, 0); c.post_off.len().saturating_sub(1)],
            doc_features: Vec::with_capacity(64),
            woken: 0,
            evaluated: 0,
            decided: 0,
            leaf_memo: vec![LeafMemo::default(); c.leaves.len()],
            stamp: 0,
            candidates: Vec::new(),
            confirmed: Vec::new(),
            sure: Vec::new(),
            matched: Vec::new(),
            spans: Vec::new(),
            spans2: Vec::new(),
            highlight_spans: Vec::new(),
            slop: SlopScratch::default(),
            frag_seen: vec![0; c.frag_wilds.len()],
            probes: Vec::new(),
            regex: c.regexes.scratch(),
            results: Vec::new(),
            n_results: 0,
            budget: DEFAULT_WORK_BUDGET,
            work: 0,
            current: None,
            search_work: None,
            costs: None,
        }
    }

    /// Counts from now on what each search costs (module `cost`): its
    /// evaluations, matches and work units, and the wall time of every
    /// evaluation on one document in `sample_every`.
    pub fn count_costs(&mut self, sample_every: u32) {
        self.costs = Some(CostCounters::new(self.searches, sample_every));
    }

    /// Calls `f` with every search evaluated since the last call and what it
    /// cost, resets the counts, and returns how many documents were counted
    /// (0 when costs are not counted).
    pub fn take_costs(&mut self, f: impl FnMut(SearchIdx, &SearchCost)) -> u64 {
        self.costs.as_mut().map_or(0, |c| c.take(f))
    }

    /// Sets the work budget of each later document (`u64::MAX`: none).
    pub fn set_budget(&mut self, budget: u64) {
        self.budget = budget;
    }

    /// The work budget of each document.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Work units the last document spent: tokens, occurrences and spans
    /// visited, window steps. Near-linear in the document's size.
    pub fn last_work(&self) -> u64 {
        self.work
    }

    /// The search that was being evaluated when matching stopped abnormally
    /// (a panic caught by the caller), if any.
    pub fn current_search(&self) -> Option<SearchIdx> {
        self.current.map(SearchIdx)
    }

    /// Forgets the last document's candidates.
    fn clear_candidates(&mut self) {
        for &s in &self.candidates {
            self.cand_seen[s as usize / 64] = 0;
        }
        self.candidates.clear();
    }

    fn next_stamp(&mut self) {
        self.stamp += 1;
        if self.stamp > LeafMemo::MAX_STAMP {
            self.feat_stamp.fill(0);
            self.leaf_memo.fill(LeafMemo::default());
            self.frag_seen.fill(0);
            self.stamp = 1;
        }
    }

    /// How many searches the last document woke up: the posting entries
    /// of its features (a search anchored by two of them counts twice), a
    /// measure of the work per document.
    pub fn last_candidates(&self) -> usize {
        self.woken
    }

    /// How many of the searches the last document woke up passed their
    /// gates (`confirm::gate`) and had their confirm branches checked.
    pub fn last_gated(&self) -> usize {
        self.candidates.len()
    }

    /// How many of the last document's candidates had a feature of every
    /// confirm group and were evaluated.
    pub fn last_evaluated(&self) -> usize {
        self.evaluated
    }

    /// How many of those [`Scratch::last_evaluated`] counts were decided by
    /// their exact branches, their trees not evaluated (module `confirm`).
    pub fn last_decided(&self) -> usize {
        self.decided
    }

    /// The features of the last document's occurrences, in feature order
    /// (a feature once per occurrence).
    pub(super) fn occurrence_features(&self) -> impl Iterator<Item = FeatureId> + '_ {
        self.occs.iter().map(|o| o.feature)
    }

    /// How many feature occurrences the last document had.
    pub fn last_occurrences(&self) -> usize {
        self.occs.len()
    }

    /// The matches of the last document that [`Scratch::run`] completed.
    pub(crate) fn results(&self) -> &[TopicMatch] {
        &self.results[..self.n_results]
    }

    /// Matches `doc`; the matches are then in [`Scratch::results`].
    ///
    /// # Errors
    ///
    /// When the document spends more than the budget; no results then.
    pub(crate) fn run(
        &mut self,
        c: &Compiled,
        doc: &Document<'_>,
        only: Option<&[bool]>,
        budget: u64,
    ) -> Result<(), TooExpensive> {
        assert_eq!(
            self.searches,
            c.searches.len(),
            "scratch made for another matcher"
        );
        self.next_stamp();
        self.n_results = 0;
        self.work = 0;
        self.current = None;
        if let Some(log) = &mut self.search_work {
            log.clear();
        }
        self.occs.clear();
        self.clear_candidates();
        self.woken = 0;
        self.evaluated = 0;
        self.decided = 0;
        if let Some(costs) = &mut self.costs {
            costs.begin_document();
        }
        self.index(c, doc);
        self.work += self.occs.len() as u64;
        if self.work > budget {
            return Err(TooExpensive {
                search: None,
                budget,
            });
        }
        // What the loop below reads and writes per feature, at random in
        // arrays of every feature (cache misses at 100,000 searches):
        // fetched now, while the occurrences are sorted.
        for o in &self.occs {
            let f = o.feature as usize;
            super::prefetch(&c.post_off[f]);
            super::prefetch(&self.feat_stamp[f]);
            super::prefetch(&self.feat_occs[f]);
        }
        if self.occs_need_full_sort {
            self.occs.sort_unstable();
            self.occs.dedup_by(|a, b| {
                (a.feature, a.field, a.pos, a.pos_end, a.start)
                    == (b.feature, b.field, b.pos, b.pos_end, b.start)
            });
        } else {
            // Every occurrence is one token's: its feature, field and
            // token say all the rest, so their keys are sorted as bare
            // words (no branch per field compared) and the occurrences
            // rebuilt from their tokens. The field-by-field sort was
            // ~6.5% of the matching threads' samples at 100,000 searches
            // on real posts; this made `match` 0.965x (BENCHMARKS.md,
            // thirteenth session).
            self.occ_keys.clear();
            self.occ_keys.extend(self.occs.iter().map(Occ::token_key));
            self.occ_keys.sort_unstable();
            self.occ_keys.dedup();
            self.occs.clear();
            for &key in &self.occ_keys {
                let (feature, field, pos) = Occ::token_of_key(key);
                let token = &self.fields[field as usize].tokens[pos];
                self.occs.push(Occ::at_token(feature, field, pos, token));
            }
        }

        // The document's features: stamps, kinds, where their occurrences
        // are; and those that wake searches, with how many.
        self.doc_features.clear();
        let mut last = u32::MAX;
        for (i, o) in self.occs.iter().enumerate() {
            let f = o.feature as usize;
            if o.feature == last {
                self.feat_kinds[f] |= 1 << o.kind as u8;
                self.feat_occs[f].1 = i as u32 + 1;
                continue;
            }
            last = o.feature;
            self.feat_stamp[f] = self.stamp;
            self.feat_kinds[f] = 1 << o.kind as u8;
            self.feat_occs[f] = (i as u32, i as u32 + 1);
            let anchored = (c.post_off[f + 1] - c.post_off[f]) as usize;
            if anchored > 0 {
                self.woken += anchored;
                self.doc_features.push(o.feature);
                // The list's start is a cache miss: fetched now, read once
                // the summary is made.
                let at = c.post_off[f] as usize;
                super::prefetch(&c.post[at]);
            }
        }
        if self.woken == 0 {
            return Ok(());
        }

        // The summary the gates and confirm checks read first, made only
        // for a document that wakes searches (on the generator most do
        // not). Only the slots the last one set are cleared.
        for &b in &self.summary_set {
            self.summary[b as usize] = 0;
        }
        self.summary_set.clear();
        self.summary[0] = 1;
        for o in &self.occs {
            let (own, as_kind) = super::confirm::summary_slots(o.feature, o.kind);
            self.summary[own] = 1;
            self.summary_set.push(own as u16);
            if let Some(b) = as_kind {
                self.summary[b] = 1;
                self.summary_set.push(b as u16);
            }
        }

        // Candidates from the posting lists of the features present, each
        // through its gate (read beside it in the posting list).
        for &f in &self.doc_features {
            let range = c.post_off[f as usize] as usize..c.post_off[f as usize + 1] as usize;
            for entry in &c.post[range] {
                if !super::confirm::gate_open(entry.gate, &self.summary) {
                    continue;
                }
                let s = entry.search;
                let (word, bit) = (s as usize / 64, 1u64 << (s % 64));
                if self.cand_seen[word] & bit == 0 {
                    self.cand_seen[word] |= bit;
                    self.candidates.push(s);
                    // Its confirm branches and where they are, read
                    // first in the confirm loop below: two cache misses
                    // less there.
                    c.confirm.prefetch_key(s as usize);
                    c.confirm.prefetch_at(entry.confirm_at);
                }
            }
        }
        if self.candidates.is_empty() {
            return Ok(());
        }

        // Most candidates are ruled out by their confirm branches, so those
        // are checked first, over all candidates, brought into cache a few
        // candidates ahead (at 100,000 searches and more they are cache
        // misses otherwise, and were most of a candidate's cost); the
        // search itself is read only for the candidates that pass, and
        // brought into cache as each passes, well before it is evaluated.
        const AHEAD: usize = 8;
        self.confirmed.clear();
        self.sure.clear();
        for (i, &s) in self.candidates.iter().enumerate() {
            if let Some(&next) = self.candidates.get(i + AHEAD) {
                c.confirm.prefetch_key(next as usize);
            }
            if let Some(&next) = self.candidates.get(i + AHEAD / 2) {
                c.confirm.prefetch_list(next as usize);
            }
            if only.is_some_and(|only| !only[s as usize]) {
                continue;
            }
            let verdict = super::confirm::confirmed(
                c.confirm.get(s as usize),
                &super::confirm::Present {
                    summary: &self.summary,
                    stamp_of: &self.feat_stamp,
                    kinds: &self.feat_kinds,
                    stamp: self.stamp,
                },
            );
            if verdict == Confirmed::No {
                continue;
            }
            self.confirmed.push(s);
            self.sure.push(verdict == Confirmed::Matched);
            super::prefetch(&c.searches[s as usize]);
        }
        let mut e = Eval {
            c,
            d: DocIndex {
                doc,
                fields: &self.fields,
                occs: &self.occs,
                feat_stamp: &self.feat_stamp,
                feat_occs: &self.feat_occs,
                stamp: self.stamp,
            },
            leaf_memo: &mut self.leaf_memo,
            stamp: self.stamp,
            spans: &mut self.spans,
            spans2: &mut self.spans2,
            slop: &mut self.slop,
            work: self.work,
            budget,
        };
        self.matched.clear();
        self.highlight_spans.clear();
        // A search's evaluation is a chain of dependent reads (its nodes,
        // then its leaves and what this document knows of them), each a
        // cache miss at 100,000 searches; so every confirmed search's
        // nodes are fetched now, and the leaves of the next one while one
        // is evaluated. A search its exact branches confirmed has matched:
        // its tree is neither fetched nor evaluated (module `confirm`).
        for (&s, &sure) in self.confirmed.iter().zip(&self.sure) {
            if !sure {
                c.prefetch_tree(s as usize);
            }
        }
        let to_evaluate = |i: usize| match self.sure.get(i) {
            Some(false) => Some(self.confirmed[i] as usize),
            _ => None,
        };
        if let Some(first) = to_evaluate(0) {
            e.prefetch_leaves(first);
        }
        for (i, &s) in self.confirmed.iter().enumerate() {
            if let Some(next) = to_evaluate(i + 1) {
                e.prefetch_leaves(next);
            }
            let search = &c.searches[s as usize];
            if search.filters.as_ref().is_some_and(|f| !f.admits(doc)) {
                continue;
            }
            self.evaluated += 1;
            self.current = Some(s);
            e.work += 1;
            let before = e.work;
            let started = self.costs.as_ref().and_then(|c| c.start(s));
            self.decided += usize::from(self.sure[i]);
            let matched = self.sure[i] || e.node(search.root);
            if let Some(costs) = &mut self.costs {
                // Its evaluation's unit counts too (leaves another search
                // already evaluated on this document cost nothing more).
                costs.record(s, e.work - before + 1, matched, started);
            }
            if let Some(log) = &mut self.search_work {
                log.push((s, e.work - before));
            }
            if e.work > e.budget {
                self.work = e.work;
                return Err(TooExpensive {
                    search: Some(SearchIdx(s)),
                    budget,
                });
            }
            if matched {
                self.matched.push((search.topic, s));
                // What its highlights and its record read next: where
                // its positive leaves' list, its id and its topic's are
                // (the lists and ids themselves before the sort below).
                c.positive.prefetch_key(s as usize);
                c.search_ids.prefetch_key(s as usize);
                c.topics.prefetch_key(search.topic.0 as usize);
            }
        }
        self.current = None;
        if self.matched.is_empty() {
            self.work = e.work;
            return Ok(());
        }
        // Group by topic; searches sorted by id within a topic. Ids are
        // compared only inside a topic's group, mostly of one search: a
        // long post matches hundreds of topics, and comparing their
        // searches' ids while sorting them all was a cache miss per step.
        // The sort and the records read each match's topic id and search
        // id, and its highlights its positive leaves: fetched before the
        // sort. (Unfetched, reading the two ids was most of the time
        // spent writing records at 100,000 searches: `perf annotate`,
        // BENCHMARKS.md, eleventh session.)
        for &(topic, s) in &self.matched {
            c.positive.prefetch_list(s as usize);
            c.topics.prefetch(topic.0 as usize);
            c.search_ids.prefetch(s as usize);
        }
        self.matched.sort_unstable();
        for group in self.matched.chunk_by_mut(|a, b| a.0 == b.0) {
            if group.len() > 1 {
                group.sort_unstable_by(|a, b| {
                    c.search_ids
                        .get(a.1 as usize)
                        .cmp(c.search_ids.get(b.1 as usize))
                });
            }
        }
        let mut i = 0;
        while i < self.matched.len() {
            let topic = self.matched[i].0;
            if self.results.len() == self.n_results {
                self.results.push(TopicMatch::default());
            }
            let r = &mut self.results[self.n_results];
            self.n_results += 1;
            r.topic = topic;
            r.searches.clear();
            r.highlights.clear();
            while i < self.matched.len() && self.matched[i].0 == topic {
                let s = self.matched[i].1;
                // The positive leaves of the searches a few matches ahead,
                // again: on a long article with hundreds of matches those
                // fetched before the sort are gone by now (without this,
                // 0.90x on all realistic documents, paired runs).
                if let Some(&(_, next)) = self.matched.get(i + AHEAD) {
                    c.positive.prefetch_key(next as usize);
                }
                if let Some(&(_, next)) = self.matched.get(i + AHEAD / 2) {
                    c.positive.prefetch_list(next as usize);
                }
                // And, their list now in cache, the leaves a few matches
                // ahead and what this document knows of them: a search
                // its exact branches decided was not evaluated, so
                // neither is in cache yet.
                if let Some(&(_, next)) = self.matched.get(i + AHEAD / 4) {
                    for &entry in c.positive.get(next as usize) {
                        if let PositiveLeaf::Leaf(leaf) = PositiveLeaf::of(entry) {
                            super::prefetch(&c.leaves[leaf as usize]);
                            super::prefetch(&e.leaf_memo[leaf as usize]);
                        }
                    }
                }
                r.searches.push(SearchIdx(s));
                if r.highlights.len() < MAX_HIGHLIGHTS {
                    for &entry in c.positive.get(s as usize) {
                        // The leaf's spans: `highlight_spans[from..to]`,
                        // dropped after use unless kept in its memo.
                        let (from, to, kept) = match PositiveLeaf::of(entry) {
                            PositiveLeaf::Feature { feature, word } => {
                                // Read from the occurrences, in order.
                                let from = self.highlight_spans.len();
                                let want = word.then_some(TokenKind::Word);
                                let spans = &mut self.highlight_spans;
                                e.feature_spans(feature, Fields::BOTH, want, spans, MAX_HIGHLIGHTS);
                                (from, self.highlight_spans.len(), false)
                            }
                            PositiveLeaf::Leaf(leaf) => {
                                let l = leaf as usize;
                                if e.leaf_memo[l].highlights != self.stamp {
                                    // The first spans in (field, start)
                                    // order are the only ones a record can
                                    // keep.
                                    let from = self.highlight_spans.len();
                                    e.leaf_spans(leaf, &mut self.highlight_spans, MAX_HIGHLIGHTS);
                                    self.highlight_spans[from..].sort_unstable();
                                    let memo = &mut e.leaf_memo[l];
                                    memo.highlights = self.stamp;
                                    memo.from = from as u32;
                                    memo.to = self.highlight_spans.len() as u32;
                                }
                                let memo = &e.leaf_memo[l];
                                (memo.from as usize, memo.to as usize, true)
                            }
                        };
                        for sp in &self.highlight_spans[from..to] {
                            r.highlights.push(Highlight {
                                search: SearchIdx(s),
                                field: sp.field,
                                start: sp.start,
                                end: sp.end,
                            });
                        }
                        if !kept {
                            self.highlight_spans.truncate(from);
                        }
                    }
                    r.highlights.sort_unstable();
                    r.highlights.dedup();
                    r.highlights.truncate(MAX_HIGHLIGHTS);
                }
                if e.work > e.budget {
                    self.work = e.work;
                    return Err(TooExpensive {
                        search: Some(SearchIdx(s)),
                        budget,
                    });
                }
                i += 1;
            }
        }
        self.work = e.work;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::document::Document;
    use crate::engine::tree::LeafMemo;
    use crate::engine::Matcher;
    use crate::query::Limits;
    use crate::searches::Catalog;

    #[test]
    fn leaf_values_and_highlights_survive_the_stamp_reset() {
        let json = br#"{"topics": [
            {"id": "a", "searches": [{"id": "s", "query": "acme AND (corp OR inc)"}]},
            {"id": "b", "searches": [{"id": "t", "query": "acme NOT widget"}]}]}"#;
        let catalog = Catalog::from_json(json, &Limits::default()).unwrap();
        let m = Matcher::new(&catalog).unwrap();
        let docs = [
            Document::with_text("1", "Acme Corp and acme inc"),
            Document::with_text("2", "acme widget"),
            Document::with_text("3", "nothing here"),
        ];
        let mut fresh = m.scratch();
        let want: Vec<_> = docs
            .iter()
            .map(|d| m.match_document(d, &mut fresh).to_vec())
            .collect();
        assert_eq!(want[0].len(), 2, "both topics match the first post");
        let mut old = m.scratch();
        old.stamp = LeafMemo::MAX_STAMP - 2;
        for round in 0..3 {
            for (d, w) in docs.iter().zip(&want) {
                assert_eq!(&m.match_document(d, &mut old).to_vec(), w, "round {round}");
            }
        }
        assert!(old.stamp < 20, "the stamps were reset: {}", old.stamp);
    }
}
