//! Compilation of a catalog into features, interned leaves, flattened trees,
//! anchors, posting lists and automata. See the module doc of `engine`.

use std::time::Instant;

use aho_corasick::{AhoCorasick, MatchKind};
use rustc_hash::FxHashMap;

use super::anchors::Costs;
use super::builder::{Builder, Flat};
use super::frequencies::TermFrequencies;
use super::prefixes::{PrefixHit, Prefixes};
use super::regexes::RegexLeaves;
use super::term_table::TermTable;
use super::tree::PositiveLeaf;
use super::CompileStats;
use crate::json_string::needs_escape;
use crate::query::{Fields, MetaField, Wildcard};
use crate::searches::{Catalog, Filters, TopicIdx};
use crate::text::TokenKind;

use super::flat::{Ids, PostEntry, Postings};

/// Why a catalog could not be compiled (it was valid search by search).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The regexes together exceed the size limit.
    #[error("the {count} regular expressions together do not compile: {message}")]
    Regex {
        /// How many regexes there are.
        count: usize,
        /// The compiler's message.
        message: String,
    },
    /// An automaton could not be built.
    #[error("the {what} automaton could not be built: {message}")]
    Automaton {
        /// Which automaton.
        what: &'static str,
        /// The builder's message.
        message: String,
    },
    /// More distinct leaves than a search's list of positive leaves can
    /// name (`tree::PositiveLeaf`: 2^31).
    #[error("the searches have {leaves} distinct leaves; at most 2147483648 can be compiled")]
    TooManyLeaves {
        /// How many distinct leaves there are.
        leaves: usize,
    },
    /// Topic or search ids longer together than [`Ids`] can hold (4 GiB).
    #[error("the topic or search ids together are longer than 4 GiB")]
    IdsTooLong,
}

/// Index of a feature: terms first, then wildcards, CJK strings, regexes.
pub(crate) type FeatureId = u32;

/// A node of a flattened search tree.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Node {
    /// Children are `children[start..start + len]`.
    Or {
        start: u32,
        len: u32,
    },
    And {
        start: u32,
        len: u32,
    },
    Not(u32),
    /// `nears[i]`: kept apart so that every node is 12 bytes (a million
    /// searches have seven million nodes; few of them are NEARs).
    Near(u32),
    Leaf(u32),
    Meta(u32),
}

/// A NEAR node: left leaves `children[left..left + left_len]`, right
/// leaves after.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NearNode {
    pub left: u32,
    pub left_len: u32,
    pub right_len: u32,
    pub max_gap: u32,
    pub ordered: bool,
}

/// One token of a compiled word or phrase.
#[derive(Clone, Debug)]
pub(crate) struct PTok {
    pub feature: FeatureId,
    pub kind: TokenKind,
    /// For case-sensitive leaves: the original body to compare with.
    pub raw: Option<Box<str>>,
}

/// A compiled, interned leaf.
#[derive(Clone, Debug)]
pub(crate) enum CLeafKind {
    /// Tokens `ptoks[start..start + len]`; one token is a word.
    Tokens {
        start: u32,
        len: u32,
        slop: Option<u32>,
    },
    /// One plain token (no slop, not case-sensitive), its feature and kind
    /// kept here so that evaluating it reads no `ptoks`; `ptoks[start]` is
    /// the same token, for the compiler.
    Word {
        start: u32,
        feature: FeatureId,
        kind: TokenKind,
    },
    /// A wildcard, CJK or regex feature: its occurrences are the leaf's.
    Feature(FeatureId),
}

impl CLeafKind {
    /// Where the leaf's tokens are in `ptoks` (`None` for a feature leaf).
    pub(crate) fn tokens(&self) -> Option<std::ops::Range<usize>> {
        match *self {
            CLeafKind::Tokens { start, len, .. } => Some(start as usize..(start + len) as usize),
            CLeafKind::Word { start, .. } => Some(start as usize..start as usize + 1),
            CLeafKind::Feature(_) => None,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct CLeaf {
    pub kind: CLeafKind,
    pub fields: Fields,
}

pub(crate) struct CSearch {
    pub topic: TopicIdx,
    pub root: u32,
    pub filters: Option<Box<Filters>>,
}

pub(crate) struct Compiled {
    /// Topic `t`'s id is `topics.get(t)`, search `s`'s `search_ids.get(s)`.
    pub topics: Ids,
    pub search_ids: Ids,
    pub searches: Vec<CSearch>,
    /// Whether some topic or search id has a byte a JSON string escapes
    /// (`json_string`): records copy the ids as they are when none does.
    pub ids_need_escapes: bool,
    /// Every search's flattened tree, in post order, search after search:
    /// search `s` has `nodes[self.tree(s)]`, its root last.
    pub nodes: Vec<Node>,
    pub nears: Vec<NearNode>,
    pub children: Vec<u32>,
    pub leaves: Vec<CLeaf>,
    pub ptoks: Vec<PTok>,
    pub metas: Vec<(MetaField, Box<str>)>,
    /// Folded token body → term feature ([`TermTable`]: one probe per
    /// document token, the slots of the next tokens fetched ahead).
    pub terms: TermTable,
    pub wildcards: Vec<Wildcard>,
    /// Wildcards that start with a literal (`lov*`, `colo?r`): a hash
    /// table of their literal prefixes, looked up with each token's first
    /// bytes for each length the prefixes have ([`Prefixes`]).
    pub prefix_table: Option<Prefixes>,
    pub prefix_wilds: Postings,
    /// A bit per term: whether some prefix of `prefix_table` starts it. A
    /// document token that is a term without this bit is not looked up in
    /// the table: its result is known at compile time. On real posts at
    /// 100,000 searches most tokens are terms (and the lookups, then a
    /// trie walk, were a fifth of `Scratch::run`, `perf annotate`).
    pub term_has_prefix: Vec<u64>,
    /// Per wildcard: whether it is a literal and one trailing `*`
    /// (`embez*`), so that its prefix found at a token's start is the
    /// whole match and the pattern need not be checked again (the check
    /// was 7% of the matching's instructions on real posts, `callgrind`).
    pub prefix_only: Vec<bool>,
    /// Per prefix of `prefix_table`: what a token it starts holds, read in
    /// one place ([`PrefixHit`]).
    pub prefix_hits: Vec<PrefixHit>,
    /// Wildcards that start with `*` or `?`: an automaton over their longest
    /// literal run, run over the NUL-separated folded token bodies.
    pub wild_ac: Option<AhoCorasick>,
    pub frag_wilds: Postings,
    pub cjk_ac: Option<AhoCorasick>,
    pub regexes: RegexLeaves,
    pub wild_base: FeatureId,
    pub cjk_base: FeatureId,
    pub regex_base: FeatureId,
    /// Feature → anchored searches `post[post_off[f]..post_off[f + 1]]`.
    pub post_off: Vec<u32>,
    pub post: Vec<PostEntry>,
    /// Search → its distinct positive leaves, for highlights, each as
    /// a [`PositiveLeaf`] entry.
    pub positive: Postings,
    /// Search → its confirm branches (see `Costs::confirm_branches`): a
    /// candidate is evaluated only when some branch has a feature of each
    /// of its groups in the document (`engine`'s module doc, step 3); a
    /// flat search's are exact (`Costs::exact_branches`), and decide it.
    pub confirm: Postings,
    pub stats: CompileStats,
}

/// A bit per term of `terms`: whether a prefix of `table` starts it.
fn term_has_prefix(terms: &TermTable, table: Option<&Prefixes>) -> Vec<u64> {
    let Some(table) = table else {
        return Vec::new();
    };
    let mut bits = vec![0u64; terms.len().div_ceil(64)];
    for f in 0..terms.len() {
        let mut starts = false;
        table.each_prefix_of(terms.term(f as u32).as_bytes(), |_| starts = true);
        if starts {
            bits[f / 64] |= 1 << (f % 64);
        }
    }
    bits
}

/// Groups wildcards by a literal key (`key` of each), giving the distinct
/// keys in id order and the wildcards of each.
fn group_wildcards<'w>(
    wildcards: impl Iterator<Item = (u32, &'w str)>,
) -> (Vec<&'w str>, Postings) {
    let mut ids: FxHashMap<&str, u32> = FxHashMap::default();
    let mut members: Vec<Vec<u32>> = Vec::new();
    let mut keys = Vec::new();
    for (w, key) in wildcards {
        let next = ids.len() as u32;
        let id = *ids.entry(key).or_insert(next);
        if id == next {
            members.push(Vec::new());
            keys.push(key);
        }
        members[id as usize].push(w);
    }
    (keys, Postings::from_lists(&members))
}

impl Compiled {
    /// The arrays a document's matching reads at random (module doc of
    /// `engine::memory`), as byte ranges.
    pub(crate) fn hot_arrays(&self, out: &mut Vec<super::memory::Bytes>) {
        use super::memory::bytes_of;
        out.extend([
            bytes_of(&self.searches),
            bytes_of(&self.nodes),
            bytes_of(&self.nears),
            bytes_of(&self.children),
            bytes_of(&self.leaves),
            bytes_of(&self.ptoks),
            bytes_of(&self.wildcards),
            bytes_of(&self.term_has_prefix),
            bytes_of(&self.prefix_only),
            bytes_of(&self.prefix_hits),
            bytes_of(&self.post_off),
            bytes_of(&self.post),
        ]);
        for p in [
            &self.prefix_wilds,
            &self.frag_wilds,
            &self.positive,
            &self.confirm,
        ] {
            p.hot_arrays(out);
        }
        self.topics.hot_arrays(out);
        self.search_ids.hot_arrays(out);
        self.terms.hot_arrays(out);
        if let Some(t) = &self.prefix_table {
            t.hot_arrays(out);
        }
    }

    /// Where search `s`'s nodes are in `nodes` (its root last).
    #[inline]
    pub(crate) fn tree(&self, s: usize) -> std::ops::RangeInclusive<usize> {
        let first = match s.checked_sub(1) {
            Some(before) => self.searches[before].root as usize + 1,
            None => 0,
        };
        first..=self.searches[s].root as usize
    }

    /// Whether some wildcard prefix starts term `f` (`term_has_prefix`).
    #[inline]
    pub(crate) fn term_has_prefix(&self, f: FeatureId) -> bool {
        self.term_has_prefix
            .get(f as usize / 64)
            .is_some_and(|w| w & (1 << (f % 64)) != 0)
    }

    /// Brings search `s`'s nodes into cache.
    #[inline]
    pub(crate) fn prefetch_tree(&self, s: usize) {
        let tree = self.tree(s);
        super::prefetch(&self.nodes[*tree.start()]);
        super::prefetch(&self.nodes[*tree.end()]);
    }

    pub(crate) fn new(catalog: &Catalog) -> Result<Compiled, EngineError> {
        Compiled::build(catalog, None)
    }

    /// Compiles, choosing anchors by document frequency where `frequencies`
    /// knows the term (`engine::frequencies`).
    pub(crate) fn build(
        catalog: &Catalog,
        frequencies: Option<&TermFrequencies>,
    ) -> Result<Compiled, EngineError> {
        let started = Instant::now();
        // One walk: flattened trees over interned leaves, every feature,
        // and how many searches use each.
        let mut b = Builder::default();
        let mut searches = Vec::with_capacity(catalog.searches.len());
        for s in &catalog.searches {
            let root = b.search(&s.query.expr);
            searches.push(CSearch {
                topic: s.topic,
                root,
                filters: s.filters.clone(),
            });
        }
        let Flat {
            nodes,
            nears,
            children,
            leaves,
            ptoks,
            metas,
            features: f,
            bases,
            popularity,
            leaves_total,
        } = b.finish();
        let n_features = popularity.len();

        let mut by_feature = vec![""; f.terms.len()];
        for (t, &i) in &f.terms {
            by_feature[i as usize] = t.as_str();
        }
        let terms = TermTable::new(&by_feature);
        drop(by_feature);
        let mut wildcards = vec![None; f.wildcards.len()];
        for (w, i) in f.wildcards {
            wildcards[i as usize] = Some(w);
        }
        let wildcards: Vec<Wildcard> = wildcards
            .into_iter()
            .map(|w| w.expect("dense ids"))
            .collect();
        let mut cjk = vec![String::new(); f.cjk.len()];
        for (s, i) in f.cjk {
            cjk[i as usize] = s;
        }
        let mut regex_patterns = vec![String::new(); f.regexes.len()];
        for (s, i) in f.regexes {
            regex_patterns[i as usize] = s;
        }
        let mut term_len = vec![0u32; terms.len()];
        let mut term_share = frequencies.map(|_| vec![0f64; terms.len()]);
        for (t, i) in terms.iter() {
            term_len[i as usize] = t.chars().count() as u32;
            if let (Some(share), Some(fr)) = (&mut term_share, frequencies) {
                share[i as usize] = fr.share(t).unwrap_or(1.0);
            }
        }

        // Wildcards starting with a literal go into the prefix table, the
        // others into the infix automaton over their longest literal run.
        let starts_literal = |w: &Wildcard| !w.pattern.starts_with(['*', '?']);
        let (prefixes, prefix_wilds) = group_wildcards(
            wildcards
                .iter()
                .enumerate()
                .filter(|(_, w)| starts_literal(w))
                .map(|(i, w)| (i as u32, w.pattern.split(['*', '?']).next().unwrap_or(""))),
        );
        let prefix_only: Vec<bool> = wildcards
            .iter()
            .map(|w| {
                starts_literal(w)
                    && w.pattern.ends_with('*')
                    && w.pattern.matches(['*', '?']).count() == 1
            })
            .collect();
        let prefix_hits = (0..prefixes.len())
            .map(|p| PrefixHit::of(prefix_wilds.get(p), &prefix_only, &wildcards))
            .collect();
        let (frags, frag_wilds) = group_wildcards(
            wildcards
                .iter()
                .enumerate()
                .filter(|(_, w)| !starts_literal(w))
                .map(|(i, w)| (i as u32, w.longest_literal())),
        );
        let build_ac =
            |what: &'static str, pats: &[&str]| -> Result<Option<AhoCorasick>, EngineError> {
                if pats.is_empty() {
                    return Ok(None);
                }
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(pats)
                    .map(Some)
                    .map_err(|e| EngineError::Automaton {
                        what,
                        message: e.to_string(),
                    })
            };
        let prefix_table = if prefixes.is_empty() {
            None
        } else {
            Some(Prefixes::build(&prefixes))
        };
        let term_has_prefix = term_has_prefix(&terms, prefix_table.as_ref());
        let wild_ac = build_ac("wildcard", &frags)?;
        let cjk_refs: Vec<&str> = cjk.iter().map(String::as_str).collect();
        let cjk_ac = build_ac("CJK", &cjk_refs)?;

        let regexes = RegexLeaves::build(&regex_patterns)?;

        let mut c = Compiled {
            topics: Ids::of(catalog.topics.iter().map(|t| t.id.as_str()))
                .ok_or(EngineError::IdsTooLong)?,
            search_ids: Ids::of(catalog.searches.iter().map(|s| s.id.as_str()))
                .ok_or(EngineError::IdsTooLong)?,
            ids_need_escapes: catalog.topics.iter().any(|t| needs_escape(t.id.as_bytes()))
                || catalog
                    .searches
                    .iter()
                    .any(|s| needs_escape(s.id.as_bytes())),
            searches,
            nodes,
            nears,
            children,
            leaves,
            ptoks,
            metas,
            terms,
            wildcards,
            prefix_table,
            prefix_wilds,
            term_has_prefix,
            prefix_only,
            prefix_hits,
            wild_ac,
            frag_wilds,
            cjk_ac,
            regexes,
            wild_base: bases.wild,
            cjk_base: bases.cjk,
            regex_base: bases.regex,
            post_off: Vec::new(),
            post: Vec::new(),
            positive: Postings::default(),
            confirm: Postings::default(),
            stats: CompileStats::default(),
        };

        // Anchors and posting lists.
        let costs = Costs {
            popularity: &popularity,
            bases: &bases,
            term_len: &term_len,
            term_share: term_share.as_deref(),
        };
        if c.leaves.len() > PositiveLeaf::MAX_LEAVES {
            return Err(EngineError::TooManyLeaves {
                leaves: c.leaves.len(),
            });
        }
        // Each search's anchors, positive leaves and confirm branches depend
        // on it alone: a large catalog is shared among the cores.
        let n = c.searches.len();
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(8);
        let parts: Vec<PerSearch> = if threads > 1 && n >= 50_000 {
            let chunk = n.div_ceil(threads);
            let (c, costs) = (&c, &costs);
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..n)
                    .step_by(chunk)
                    .map(|from| {
                        scope.spawn(move || per_search(c, costs, from..(from + chunk).min(n)))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("compiling searches panicked"))
                    .collect()
            })
        } else {
            vec![per_search(&c, &costs, 0..n)]
        };
        let mut pairs: Vec<(FeatureId, u32)> = Vec::new();
        let mut positive = Postings::with_capacity(n, leaves_total);
        let mut confirm = Postings::with_capacity(n, 0);
        let mut gates = Vec::with_capacity(n);
        for part in parts {
            pairs.extend(part.pairs);
            positive.append(&part.positive);
            confirm.append(&part.confirm);
            gates.extend(part.gates);
        }
        pairs.sort_unstable();
        let mut post_off = vec![0u32; n_features + 1];
        for &(f, _) in &pairs {
            post_off[f as usize + 1] += 1;
        }
        for i in 0..n_features {
            post_off[i + 1] += post_off[i];
        }
        c.post = pairs
            .into_iter()
            .map(|(_, s)| PostEntry {
                gate: gates[s as usize],
                search: s,
                confirm_at: confirm.start(s as usize),
            })
            .collect();
        c.post_off = post_off;
        c.positive = positive;
        c.confirm = confirm;

        c.stats = CompileStats {
            topics: c.topics.len(),
            searches: c.searches.len(),
            leaves: leaves_total,
            distinct_leaves: c.leaves.len(),
            terms: c.terms.len(),
            wildcards: c.wildcards.len(),
            cjk: cjk.len(),
            regexes: c.regexes.len(),
            regexes_filtered: c.regexes.filtered(),
            heap_bytes: c.heap_bytes(),
            compile_time: started.elapsed(),
        };
        Ok(c)
    }

    /// The left and the right leaves of NEAR node `nears[n]`.
    pub(super) fn near_sides(&self, n: u32) -> (&[u32], &[u32]) {
        let NearNode {
            left,
            left_len,
            right_len,
            ..
        } = self.nears[n as usize];
        let (l, r) = (left as usize, (left + left_len) as usize);
        (
            &self.children[l..r],
            &self.children[r..r + right_len as usize],
        )
    }

    fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.terms.heap_bytes()
            + self.nodes.len() * size_of::<Node>()
            + self.nears.len() * size_of::<NearNode>()
            + self.children.len() * 4
            + self.leaves.len() * size_of::<CLeaf>()
            + self.ptoks.len() * size_of::<PTok>()
            + self.searches.len() * size_of::<CSearch>()
            + self.topics.heap_bytes()
            + self.search_ids.heap_bytes()
            + self.post.len() * size_of::<PostEntry>()
            + self.post_off.len() * 4
            + self.wild_ac.as_ref().map_or(0, AhoCorasick::memory_usage)
            + self.prefix_table.as_ref().map_or(0, Prefixes::memory_usage)
            + self.prefix_wilds.heap_bytes()
            + self.term_has_prefix.len() * 8
            + self.prefix_only.len()
            + self.prefix_hits.len() * 4
            + self.frag_wilds.heap_bytes()
            + self.positive.heap_bytes()
            + self.confirm.heap_bytes()
            + self.cjk_ac.as_ref().map_or(0, AhoCorasick::memory_usage)
            + self.regexes.memory_usage()
    }
}

/// What [`Compiled::build`] derives per search, for a range of searches.
struct PerSearch {
    /// (anchor feature, search) of every search.
    pairs: Vec<(FeatureId, u32)>,
    /// Per search its distinct positive leaves.
    positive: Postings,
    /// Per search its confirm branches.
    confirm: Postings,
    /// Per search its gate.
    gates: Vec<u64>,
}

fn per_search(c: &Compiled, costs: &Costs<'_>, searches: std::ops::Range<usize>) -> PerSearch {
    let mut out = PerSearch {
        pairs: Vec::new(),
        positive: Postings::with_capacity(searches.len(), 0),
        confirm: Postings::with_capacity(searches.len(), 0),
        gates: Vec::with_capacity(searches.len()),
    };
    let (mut set, mut leaves) = (Vec::new(), Vec::new());
    for i in searches {
        let root = c.searches[i].root;
        set.clear();
        let anchored = costs.anchors(c, root, &mut set);
        debug_assert!(
            anchored.is_some(),
            "the parser rejects unanchorable searches"
        );
        set.sort_unstable();
        set.dedup();
        out.pairs.extend(set.iter().map(|&f| (f, i as u32)));
        leaves.clear();
        positive_leaves(c, root, true, &mut leaves);
        leaves.sort_unstable();
        leaves.dedup();
        for leaf in &mut leaves {
            *leaf = PositiveLeaf::entry(c, *leaf);
        }
        out.positive.push(&leaves);
        // The gate from the ordinary branches (the exact ones also hold
        // the group that woke the search, which a gate cannot use).
        let branches = costs.confirm_branches(c, root);
        out.gates.push(super::confirm::gate(&branches));
        out.confirm
            .push(&costs.exact_branches(c, root).unwrap_or(branches));
    }
    out
}

/// Leaves of the tree below `node` that are positive (not under a NOT).
fn positive_leaves(c: &Compiled, node: u32, positive: bool, out: &mut Vec<u32>) {
    match c.nodes[node as usize] {
        Node::Or { start, len } | Node::And { start, len } => {
            for &ch in &c.children[start as usize..(start + len) as usize] {
                positive_leaves(c, ch, positive, out);
            }
        }
        Node::Not(ch) => positive_leaves(c, ch, !positive, out),
        Node::Near(n) => {
            if positive {
                let (left, right) = c.near_sides(n);
                out.extend_from_slice(left);
                out.extend_from_slice(right);
            }
        }
        Node::Leaf(l) => {
            if positive {
                out.push(l);
            }
        }
        Node::Meta(_) => {}
    }
}
