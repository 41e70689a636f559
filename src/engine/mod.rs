//! One automaton for every search: compile a [`Catalog`] into a [`Matcher`]
//! and match documents against all searches at once.
//!
//! # Design
//!
//! The work per document follows its tokens and hits, not the number of
//! searches:
//!
//! 1. **Features.** Every leaf of every search is reduced at compile time to
//!    *features* — the atoms a document can contain: a folded token body
//!    (`acme`, shared by `acme`, `#acme`, `{Acme}` and phrase words), a
//!    wildcard pattern, a CJK substring or a regex. Identical features of
//!    different searches are stored once.
//! 2. **Index of a document.** The document's fields are tokenized and folded
//!    once ([`crate::text`]). Each token body is looked up in one table of
//!    all term features (`term_table`: one probe per token, whatever the
//!    number of searches, a field's probes fetched ahead). Wildcards that
//!    start with a literal are found by looking each token's first bytes up
//!    in a hash table of those prefixes (`prefixes`; `lit*` needs nothing
//!    more), the others
//!    by one aho-corasick automaton over their longest literal runs, run
//!    over the NUL-separated folded token bodies and verified per hit
//!    token; CJK leaves by a second automaton over the
//!    folded field text (only when the field has CJK characters); regex
//!    leaves by one multi-pattern regex (regex-automata's meta engine) over
//!    the original text. The result is a short list of *occurrences*
//!    (feature, field, token positions, byte range), sorted by feature
//!    (`occurrences`).
//! 3. **Candidates.** Every search has an *anchor set*: features at least one
//!    of which occurs in every document the search matches (computed from
//!    the tree: an OR needs all its branches anchored, an AND picks its
//!    cheapest anchored child, NOT and metadata leaves never anchor — which
//!    is why docs/query-language.md §3.5 rejects searches where nothing positive must match).
//!    Within an AND the anchor is the feature used by the fewest searches, so
//!    generic words (`job`, `down`) rarely wake up searches. A posting list
//!    per feature names the searches it anchors. Searches whose anchors did
//!    not occur are never looked at.
//!
//!    **Confirm branches.** One anchor says the search *may* match; on
//!    real text, where customers AND together groups of ordinary words,
//!    most woken searches then fail on another conjunct, or on a phrase one
//!    word of which occurs. So a search keeps up to four *required groups*
//!    (cheapest first): every word of a phrase, every conjunct of an AND
//!    (its anchor set, or its own groups), both sides of a NEAR — each must
//!    have a feature in the document for the search to hold. A search whose
//!    root is an OR keeps such groups per branch: some branch must hold. A
//!    candidate none of whose branches can hold is dropped before evaluation — one
//!    stamp check per feature (the document's features are stamped while
//!    its candidates are gathered). This is Lucene Monitor's multi-pass
//!    presearcher idea without its extra passes: the groups are checked
//!    against the occurrences already at hand. On searches built from
//!    80,000 real posts' vocabulary (`bench --realistic`, 100,000 searches)
//!    it cuts the searches evaluated per post from 249 to 77 (26 match):
//!    1.74× faster with the conjunct groups, about 1.5× more with the
//!    phrase words; results are identical (the property test, the table
//!    cases). A group entry keeps the token kind its leaf asks for
//!    (`#health` needs the hashtag, not the word), and a branch keeps
//!    *vetoes*, the plain words under its AND's NOTs: with both, 31
//!    searches are evaluated per post for 26 that match, and 225 for
//!    221.5 at a million searches (`confirm`'s module doc).
//!
//!    **Gates.** Checking a woken search's branches reads the search's own
//!    data, a cache miss per woken search at 100,000 searches; on real
//!    posts ~125 searches wake per post for ~7 that match. So each
//!    posting entry carries its search's *gate* (`confirm::gate`): up to
//!    five slots of a 4 KiB *summary* of the document (a byte per hashed
//!    feature, and per feature-as-hashtag/mention/cashtag/emoji), one
//!    group of each confirm branch (not a root OR branch's anchor group,
//!    present whenever that branch woke the search). A search none of
//!    whose gate slots is set cannot hold a branch and is dropped while
//!    its posting list is read: five byte loads, no branch, no miss. On
//!    real posts at 100,000 searches 10.4 of the 125 woken searches per
//!    post pass their gates, and at a million 107 of 1,251 (BENCHMARKS.md).
//! 4. **Evaluation.** The candidates' confirm branches are checked in one
//!    pass (brought into cache a few candidates ahead); each candidate that
//!    passes is brought into cache as it passes, then, in a second pass,
//!    its per-search filters are checked and its flattened tree is
//!    evaluated against the occurrences: phrases by consecutive positions,
//!    proximity by position windows, NOT by absence. A leaf finds its
//!    feature's occurrences in one step (where they start and end is noted
//!    as the features are stamped). Leaf results are cached per document
//!    (leaves are interned, so a leaf shared by many searches is evaluated
//!    once) in one 16-byte memo per leaf (`tree::LeafMemo`: value and
//!    highlights, stamped with the document). At 100,000 searches each
//!    candidate's nodes, leaves and memos are cache misses, so they are
//!    fetched ahead: all confirmed candidates' nodes before evaluation, the
//!    next candidate's leaves and memos while one is evaluated. A one-token
//!    leaf (most of them) is a `Word`, read without its phrase tokens.
//!    A *flat* search (ANDs of ORs of one-token leaves in any field, and
//!    NOTs of those: most customers' searches) keeps *exact* confirm
//!    branches, which say all its tree says: confirmed by them it has
//!    matched, and its tree is neither fetched nor evaluated (on real
//!    posts at 100,000 searches, 5.19 of the 7.08 searches decided per post;
//!    1.19× the engine's speed, `confirm`'s module doc).
//!    A matched search's highlights are the spans of its positive leaves:
//!    one of a single feature in any field (most) is listed by that
//!    feature and read from the occurrences directly, the others through
//!    their memo (`tree::PositiveLeaf`).
//!
//! Matching allocates nothing per search: all per-document state lives in a
//! reusable [`Scratch`] whose arrays are sized once per matcher.
//!
//! **Size.** A million searches from real posts' vocabulary take 297 bytes
//! each compiled (12-byte nodes, NEARs apart, leaves interned by a compact
//! code in one walk over the trees: `builder`; the gates add 8 bytes per
//! posting entry, ~1.04 per search), and `check` of them peaks
//! at 1.48 GiB with the parsed catalog (915 bytes per search: leaves keep
//! a span of their query, not a copy; token bodies inline). Measured with
//! `examples/catalog_memory.rs`; figures in BENCHMARKS.md. Flat searches'
//! exact confirm branches added 5.5 MiB at 1M (the peak was 1.47 GiB).
//!
//! Correctness (docs/query-language.md §3.6) is checked against [`reference`], which evaluates
//! each syntax tree directly on the tokens, by a property test.

mod anchors;
mod builder;
mod compile;
mod confirm;
mod cost;
mod doc_index;
mod eval;
pub mod explain;
mod flat;
mod frequencies;
pub mod memory;
mod occurrences;
mod prefixes;
mod probe;
pub mod reference;
mod regexes;
mod slop;
mod term_table;
mod tree;

use std::time::Duration;

pub use compile::EngineError;
pub use cost::SearchCost;
pub use eval::{Scratch, TooExpensive, DEFAULT_SLOW_SEARCH_WORK, DEFAULT_WORK_BUDGET};
pub use frequencies::TermFrequencies;
pub use probe::{ProbeFailure, PROBE_SEARCH_BUDGET};

use crate::searches::{SearchIdx, TopicIdx};

/// All searches compiled into one matcher. Immutable and `Sync`: share one
/// across threads, each with its own [`Scratch`].
pub struct Matcher {
    pub(crate) c: compile::Compiled,
}

/// One match: a topic and which of its searches matched, with highlights.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicMatch {
    /// The topic.
    pub topic: TopicIdx,
    /// The matching searches, sorted by search id.
    pub searches: Vec<SearchIdx>,
    /// Occurrences of positive leaves of the matching searches (at most
    /// [`MAX_HIGHLIGHTS`]), in (search, field, start) order.
    pub highlights: Vec<Highlight>,
}

/// Most highlights kept per match record (docs/formats.md §2.3).
pub const MAX_HIGHLIGHTS: usize = 32;

/// Where a positive leaf matched: a byte range of the original field value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Highlight {
    /// The search whose leaf matched.
    pub search: SearchIdx,
    /// 0 = title, 1 = text.
    pub field: u8,
    /// Start byte.
    pub start: u32,
    /// End byte (exclusive).
    pub end: u32,
}

/// Sizes and timings of a compiled matcher, for `check` and `bench`.
#[derive(Clone, Debug, Default)]
pub struct CompileStats {
    /// Topics.
    pub topics: usize,
    /// Searches.
    pub searches: usize,
    /// Leaves before interning.
    pub leaves: usize,
    /// Distinct leaves after interning.
    pub distinct_leaves: usize,
    /// Distinct folded terms in the term table.
    pub terms: usize,
    /// Wildcard patterns (in the wildcard automaton as literal runs).
    pub wildcards: usize,
    /// CJK substring patterns.
    pub cjk: usize,
    /// Regex patterns.
    pub regexes: usize,
    /// Of those, the ones run only where one of their prefix literals
    /// occurs (the others scan every text).
    pub regexes_filtered: usize,
    /// Approximate heap bytes of the term table, automata and programs.
    pub heap_bytes: usize,
    /// Wall time of the compilation.
    pub compile_time: Duration,
}

impl Matcher {
    /// Compiles every search of `catalog`.
    ///
    /// # Errors
    ///
    /// When the automata cannot be built (the regexes together exceed the
    /// size limit).
    pub fn new(catalog: &crate::searches::Catalog) -> Result<Matcher, EngineError> {
        Ok(Matcher {
            c: compile::Compiled::new(catalog)?,
        })
    }

    /// Per-thread scratch space for [`Matcher::match_document`].
    pub fn scratch(&self) -> Scratch {
        Scratch::new(&self.c)
    }

    /// Matches one document against every search, with no work budget; the
    /// matches live in `scratch` until the next call. For trusted input
    /// (tests, benchmarks); the service and the commands use
    /// [`Matcher::try_match_document`].
    pub fn match_document<'s>(
        &self,
        doc: &crate::document::Document<'_>,
        scratch: &'s mut Scratch,
    ) -> &'s [TopicMatch] {
        self.match_unbudgeted(doc, None, scratch)
    }

    /// Like [`Matcher::match_document`], restricted to the searches for which
    /// `only[search]` is true (backfill of chosen searches).
    pub fn match_document_only<'s>(
        &self,
        doc: &crate::document::Document<'_>,
        only: &[bool],
        scratch: &'s mut Scratch,
    ) -> &'s [TopicMatch] {
        self.match_unbudgeted(doc, Some(only), scratch)
    }

    fn match_unbudgeted<'s>(
        &self,
        doc: &crate::document::Document<'_>,
        only: Option<&[bool]>,
        scratch: &'s mut Scratch,
    ) -> &'s [TopicMatch] {
        // Without a budget the run cannot stop early.
        match scratch.run(&self.c, doc, only, u64::MAX) {
            Ok(()) => scratch.results(),
            Err(_) => &[],
        }
    }

    /// Matches one document within the scratch's work budget
    /// ([`Scratch::set_budget`], [`DEFAULT_WORK_BUDGET`] unless changed),
    /// restricted to `only` when given. The work is near-linear in the
    /// document's size for every operator; the budget is the safety net
    /// for documents that are both huge and hit by many searches.
    ///
    /// # Errors
    ///
    /// [`TooExpensive`] naming the search being evaluated when the budget
    /// ran out; `scratch` then holds no matches.
    pub fn try_match_document<'s>(
        &self,
        doc: &crate::document::Document<'_>,
        only: Option<&[bool]>,
        scratch: &'s mut Scratch,
    ) -> Result<&'s [TopicMatch], TooExpensive> {
        scratch.run(&self.c, doc, only, scratch.budget())?;
        Ok(scratch.results())
    }

    /// The id of a topic.
    pub fn topic_id(&self, t: TopicIdx) -> &str {
        self.c.topics.get(t.0 as usize)
    }

    /// The id of a search.
    pub fn search_id(&self, s: SearchIdx) -> &str {
        self.c.search_ids.get(s.0 as usize)
    }

    /// Whether some topic or search id has a byte a JSON string escapes
    /// (checked once per compile; records copy ids as they are otherwise).
    pub fn ids_need_escapes(&self) -> bool {
        self.c.ids_need_escapes
    }

    /// The topic a search belongs to.
    pub fn search_topic(&self, s: SearchIdx) -> TopicIdx {
        self.c.searches[s.0 as usize].topic
    }

    /// The index of the search with that id.
    pub fn search_index(&self, id: &str) -> Option<SearchIdx> {
        (0..self.c.search_ids.len())
            .position(|s| self.c.search_ids.get(s) == id)
            .map(|i| SearchIdx(i as u32))
    }

    /// Number of searches.
    pub fn search_count(&self) -> usize {
        self.c.searches.len()
    }

    /// Sizes and compile time.
    pub fn stats(&self) -> &CompileStats {
        &self.c.stats
    }
}

/// Asks the CPU to bring `x` into cache (a hint; nothing elsewhere than
/// x86-64): for per-search data read at random among 100,000 searches or
/// more, whose cache misses are most of a candidate's cost.
#[inline]
pub(crate) fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it reads nothing and cannot fault,
    // whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (x as *const T).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

#[cfg(test)]
mod tests;
