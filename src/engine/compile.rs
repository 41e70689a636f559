//! Compilation of a catalog into features, interned leaves, flattened trees,
//! anchors, posting lists and automata. See the module doc of `engine`.

use std::time::Instant;

use aho_corasick::{AhoCorasick, MatchKind};
use compact_str::CompactString;
use rustc_hash::FxHashMap;

use super::anchors::Costs;
use super::frequencies::TermFrequencies;
use super::regexes::RegexLeaves;
use super::CompileStats;
use crate::query::{Expr, Fields, Leaf, LeafKind, MetaField, Wildcard};
use crate::searches::{Catalog, Filters, TopicIdx};
use crate::text::TokenKind;

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
    /// A wildcard, CJK or regex feature: its occurrences are the leaf's.
    Feature(FeatureId),
}

#[derive(Clone, Debug)]
pub(crate) struct CLeaf {
    pub kind: CLeafKind,
    pub fields: Fields,
}

pub(crate) struct CSearch {
    pub id: Box<str>,
    pub topic: TopicIdx,
    pub root: u32,
    pub filters: Option<Box<Filters>>,
}

pub(crate) struct Compiled {
    pub topics: Vec<Box<str>>,
    pub searches: Vec<CSearch>,
    pub nodes: Vec<Node>,
    pub nears: Vec<NearNode>,
    pub children: Vec<u32>,
    pub leaves: Vec<CLeaf>,
    pub ptoks: Vec<PTok>,
    pub metas: Vec<(MetaField, Box<str>)>,
    /// Folded token body → term feature.
    pub terms: FxHashMap<Box<str>, FeatureId>,
    pub wildcards: Vec<Wildcard>,
    /// Wildcards that start with a literal (`lov*`, `colo?r`): a trie of
    /// their literal prefixes, walked from the start of each token, so a
    /// token costs a few transitions until the walk dies.
    pub prefix_trie: Option<aho_corasick::nfa::contiguous::NFA>,
    pub prefix_wilds: Postings,
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
    pub post: Vec<u32>,
    /// Search → its distinct positive leaves, for highlights.
    pub positive: Postings,
    /// Search → its confirm branches (see `Costs::confirm_branches`): a
    /// candidate is evaluated only when some branch has a feature of each
    /// of its groups in the document (`engine`'s module doc, step 3).
    pub confirm: Postings,
    pub stats: CompileStats,
}

/// Lists of `u32` per key in one flat array (compressed sparse rows).
#[derive(Clone, Debug, Default)]
pub(crate) struct Postings {
    off: Vec<u32>,
    items: Vec<u32>,
}

impl Postings {
    fn from_lists(lists: &[Vec<u32>]) -> Postings {
        let mut p = Postings::with_capacity(lists.len(), 0);
        for l in lists {
            p.push(l);
        }
        p
    }

    /// Empty, with room for `keys` lists of `items` items in all.
    fn with_capacity(keys: usize, items: usize) -> Postings {
        let mut off = Vec::with_capacity(keys + 1);
        off.push(0);
        Postings {
            off,
            items: Vec::with_capacity(items),
        }
    }

    /// Appends the list of the next key.
    fn push(&mut self, list: &[u32]) {
        self.items.extend_from_slice(list);
        self.off.push(self.items.len() as u32);
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.off.len() - 1
    }

    /// The list of key `i`.
    #[inline]
    pub fn get(&self, i: usize) -> &[u32] {
        &self.items[self.off[i] as usize..self.off[i + 1] as usize]
    }

    fn heap_bytes(&self) -> usize {
        (self.off.len() + self.items.len()) * 4
    }
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

/// Feature tables being built.
#[derive(Default)]
struct Features {
    terms: FxHashMap<Box<str>, u32>,
    wildcards: FxHashMap<Wildcard, u32>,
    cjk: FxHashMap<String, u32>,
    regexes: FxHashMap<String, u32>,
}

/// A feature before the bases are known.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
enum Local {
    Term(u32),
    Wild(u32),
    Cjk(u32),
    Regex(u32),
}

fn intern<K: std::hash::Hash + Eq>(map: &mut FxHashMap<K, u32>, key: K) -> u32 {
    let next = map.len() as u32;
    *map.entry(key).or_insert(next)
}

/// [`intern`], cloning the key only when it is new (most leaves share
/// their features with other searches).
fn intern_cloned<K: std::hash::Hash + Eq + Clone>(map: &mut FxHashMap<K, u32>, key: &K) -> u32 {
    match map.get(key) {
        Some(&i) => i,
        None => intern(map, key.clone()),
    }
}

impl Features {
    fn term(&mut self, folded: &str) -> Local {
        if let Some(&i) = self.terms.get(folded) {
            return Local::Term(i);
        }
        Local::Term(intern(&mut self.terms, folded.into()))
    }

    /// The features of a text leaf, in token order for token leaves.
    fn of_leaf(&mut self, leaf: &Leaf, out: &mut Vec<Local>) {
        match &leaf.kind {
            LeafKind::Tokens(t) => out.extend(t.tokens.iter().map(|tok| self.term(&tok.folded))),
            LeafKind::Wildcard(w) => out.push(Local::Wild(intern_cloned(&mut self.wildcards, w))),
            LeafKind::Cjk(s) => out.push(Local::Cjk(intern_cloned(&mut self.cjk, s))),
            LeafKind::Regex(r) => out.push(Local::Regex(intern_cloned(&mut self.regexes, r))),
            LeafKind::Meta(..) => {}
        }
    }
}

/// A local feature as (kind: 0 term, 1 wildcard, 2 CJK, 3 regex; id).
fn local_parts(l: Local) -> (u32, u32) {
    match l {
        Local::Term(i) => (0, i),
        Local::Wild(i) => (1, i),
        Local::Cjk(i) => (2, i),
        Local::Regex(i) => (3, i),
    }
}

/// Where each kind of feature starts among the feature ids.
pub(super) struct Bases {
    pub(super) wild: u32,
    pub(super) cjk: u32,
    pub(super) regex: u32,
}

impl Bases {
    fn global(&self, l: Local) -> FeatureId {
        match l {
            Local::Term(i) => i,
            Local::Wild(i) => self.wild + i,
            Local::Cjk(i) => self.cjk + i,
            Local::Regex(i) => self.regex + i,
        }
    }
}

/// Builds nodes and interned leaves in one walk over the catalog's trees,
/// counting how many searches use each feature on the way. Term features
/// are numbered from 0, so a term's local id is already its feature id;
/// the other kinds get theirs once every term is known (`fixups`).
struct Builder<'a> {
    f: &'a mut Features,
    nodes: Vec<Node>,
    nears: Vec<NearNode>,
    children: Vec<u32>,
    /// Children of the nodes being built, innermost last: a node's ids
    /// are moved to `children` once all of them are built.
    pending: Vec<u32>,
    leaves: Vec<CLeaf>,
    /// Interned leaves by their code ([`Builder::leaf_code`]): a few words
    /// per leaf, compared without reaching back into the catalog's trees
    /// (keys that pointed into a million trees made interning a cache
    /// miss per leaf).
    leaf_ids: FxHashMap<Box<[u32]>, u32>,
    /// Leaves whose feature is a wildcard, CJK or regex one.
    fixups: Vec<(u32, Local)>,
    /// Case-sensitive token bodies, numbered for the leaf codes.
    raws: FxHashMap<CompactString, u32>,
    ptoks: Vec<PTok>,
    metas: Vec<(MetaField, Box<str>)>,
    meta_ids: FxHashMap<(MetaField, String), u32>,
    locals: Vec<Local>,
    code: Vec<u32>,
    /// The features of the search being built, and per kind of feature
    /// the number of searches using each.
    search_features: Vec<Local>,
    uses: [Vec<u32>; 4],
    leaves_total: usize,
}

impl Builder<'_> {
    /// Writes `leaf`'s code to `self.code`: its fields, its kind and its
    /// features (with each token's kind, slop and case-sensitive bodies),
    /// which together decide what it matches.
    fn leaf_code(&mut self, leaf: &Leaf) {
        let code = &mut self.code;
        code.clear();
        code.push(u32::from(leaf.fields.0));
        match &leaf.kind {
            LeafKind::Tokens(t) => {
                code.extend([
                    0,
                    u32::from(t.slop.is_some()),
                    t.slop.unwrap_or(0),
                    u32::from(t.case_sensitive),
                ]);
                for (tok, l) in t.tokens.iter().zip(&self.locals) {
                    let Local::Term(term) = l else {
                        unreachable!("token leaves have term features")
                    };
                    code.extend([*term, tok.kind as u32]);
                    if t.case_sensitive {
                        code.push(intern_cloned(&mut self.raws, &tok.raw));
                    }
                }
            }
            _ => {
                let (kind, i) = local_parts(self.locals[0]);
                code.extend([1 + kind, i]);
            }
        }
    }

    fn leaf(&mut self, leaf: &Leaf) -> u32 {
        self.leaves_total += 1;
        self.locals.clear();
        self.f.of_leaf(leaf, &mut self.locals);
        self.search_features.extend_from_slice(&self.locals);
        self.leaf_code(leaf);
        if let Some(&id) = self.leaf_ids.get(&self.code[..]) {
            return id;
        }
        let id = self.leaves.len() as u32;
        let kind = match &leaf.kind {
            LeafKind::Tokens(t) => {
                let start = self.ptoks.len() as u32;
                for (tok, &l) in t.tokens.iter().zip(&self.locals) {
                    let Local::Term(feature) = l else {
                        unreachable!("token leaves have term features")
                    };
                    self.ptoks.push(PTok {
                        feature,
                        kind: tok.kind,
                        raw: t.case_sensitive.then(|| tok.raw.as_str().into()),
                    });
                }
                CLeafKind::Tokens {
                    start,
                    len: t.tokens.len() as u32,
                    slop: t.slop,
                }
            }
            _ => {
                self.fixups.push((id, self.locals[0]));
                CLeafKind::Feature(FeatureId::MAX)
            }
        };
        self.leaves.push(CLeaf {
            kind,
            fields: leaf.fields,
        });
        self.leaf_ids.insert(self.code.as_slice().into(), id);
        id
    }

    /// Builds the tree of one search and counts its distinct features.
    fn search(&mut self, e: &Expr) -> u32 {
        self.search_features.clear();
        let root = self.node(e);
        self.search_features.sort_unstable();
        self.search_features.dedup();
        for &l in &self.search_features {
            let (kind, i) = local_parts(l);
            let counts = &mut self.uses[kind as usize];
            if counts.len() <= i as usize {
                counts.resize(i as usize + 1, 0);
            }
            counts[i as usize] += 1;
        }
        root
    }

    /// Moves the last `len` pending ids to `children`, giving their start.
    fn close_children(&mut self, len: usize) -> u32 {
        let start = self.children.len() as u32;
        let from = self.pending.len() - len;
        self.children.extend(self.pending.drain(from..));
        start
    }

    fn node(&mut self, e: &Expr) -> u32 {
        let node = match e {
            Expr::Or(c) | Expr::And(c) => {
                for e in c {
                    let id = self.node(e);
                    self.pending.push(id);
                }
                let start = self.close_children(c.len());
                let len = c.len() as u32;
                if matches!(e, Expr::Or(_)) {
                    Node::Or { start, len }
                } else {
                    Node::And { start, len }
                }
            }
            Expr::Not(c) => Node::Not(self.node(c)),
            Expr::Near(n) => {
                for l in n.left.iter().chain(&n.right) {
                    let id = self.leaf(l);
                    self.pending.push(id);
                }
                let left = self.close_children(n.left.len() + n.right.len());
                self.nears.push(NearNode {
                    left,
                    left_len: n.left.len() as u32,
                    right_len: n.right.len() as u32,
                    max_gap: n.max_gap,
                    ordered: n.ordered,
                });
                Node::Near(self.nears.len() as u32 - 1)
            }
            Expr::Leaf(l) => match &l.kind {
                LeafKind::Meta(field, value) => {
                    let next = self.metas.len() as u32;
                    let id = *self.meta_ids.entry((*field, value.clone())).or_insert(next);
                    if id == next {
                        self.metas.push((*field, value.as_str().into()));
                    }
                    Node::Meta(id)
                }
                _ => Node::Leaf(self.leaf(l)),
            },
        };
        self.nodes.push(node);
        (self.nodes.len() - 1) as u32
    }
}

impl Compiled {
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
        let mut f = Features::default();
        let mut b = Builder {
            f: &mut f,
            nodes: Vec::new(),
            nears: Vec::new(),
            children: Vec::new(),
            pending: Vec::new(),
            leaves: Vec::new(),
            leaf_ids: FxHashMap::default(),
            fixups: Vec::new(),
            raws: FxHashMap::default(),
            ptoks: Vec::new(),
            metas: Vec::new(),
            meta_ids: FxHashMap::default(),
            locals: Vec::new(),
            code: Vec::new(),
            search_features: Vec::new(),
            uses: Default::default(),
            leaves_total: 0,
        };
        let mut searches = Vec::with_capacity(catalog.searches.len());
        for s in &catalog.searches {
            let root = b.search(&s.query.expr);
            searches.push(CSearch {
                id: s.id.as_str().into(),
                topic: s.topic,
                root,
                filters: s.filters.clone(),
            });
        }
        let Builder {
            nodes,
            nears,
            children,
            mut leaves,
            fixups,
            ptoks,
            metas,
            uses,
            leaves_total,
            ..
        } = b;
        let bases = Bases {
            wild: f.terms.len() as u32,
            cjk: (f.terms.len() + f.wildcards.len()) as u32,
            regex: (f.terms.len() + f.wildcards.len() + f.cjk.len()) as u32,
        };
        for (leaf, l) in fixups {
            leaves[leaf as usize].kind = CLeafKind::Feature(bases.global(l));
        }
        let n_features = bases.regex as usize + f.regexes.len();
        let mut popularity = Vec::with_capacity(n_features);
        for (counts, len) in uses.iter().zip([
            f.terms.len(),
            f.wildcards.len(),
            f.cjk.len(),
            f.regexes.len(),
        ]) {
            popularity.extend_from_slice(counts);
            popularity.resize(popularity.len() + len - counts.len(), 0);
        }

        let terms = f.terms;
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
        for (t, &i) in &terms {
            term_len[i as usize] = t.chars().count() as u32;
            if let (Some(share), Some(fr)) = (&mut term_share, frequencies) {
                share[i as usize] = fr.share(t).unwrap_or(1.0);
            }
        }

        // Wildcards starting with a literal go into the prefix trie, the
        // others into the infix automaton over their longest literal run.
        let starts_literal = |w: &Wildcard| !w.pattern.starts_with(['*', '?']);
        let (prefixes, prefix_wilds) = group_wildcards(
            wildcards
                .iter()
                .enumerate()
                .filter(|(_, w)| starts_literal(w))
                .map(|(i, w)| (i as u32, w.pattern.split(['*', '?']).next().unwrap_or(""))),
        );
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
        let prefix_trie = if prefixes.is_empty() {
            None
        } else {
            Some(
                aho_corasick::nfa::contiguous::NFA::builder()
                    .match_kind(MatchKind::Standard)
                    .build(&prefixes)
                    .map_err(|e| EngineError::Automaton {
                        what: "wildcard prefix",
                        message: e.to_string(),
                    })?,
            )
        };
        let wild_ac = build_ac("wildcard", &frags)?;
        let cjk_refs: Vec<&str> = cjk.iter().map(String::as_str).collect();
        let cjk_ac = build_ac("CJK", &cjk_refs)?;

        let regexes = RegexLeaves::build(&regex_patterns)?;

        let mut c = Compiled {
            topics: catalog
                .topics
                .iter()
                .map(|t| t.id.as_str().into())
                .collect(),
            searches,
            nodes,
            nears,
            children,
            leaves,
            ptoks,
            metas,
            terms,
            wildcards,
            prefix_trie,
            prefix_wilds,
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
        let mut pairs: Vec<(FeatureId, u32)> = Vec::new();
        let mut set = Vec::new();
        for (i, s) in c.searches.iter().enumerate() {
            set.clear();
            let anchored = costs.anchors(&c, s.root, &mut set);
            debug_assert!(
                anchored.is_some(),
                "the parser rejects unanchorable searches"
            );
            set.sort_unstable();
            set.dedup();
            pairs.extend(set.iter().map(|&f| (f, i as u32)));
        }
        pairs.sort_unstable();
        let mut post_off = vec![0u32; n_features + 1];
        for &(f, _) in &pairs {
            post_off[f as usize + 1] += 1;
        }
        for i in 0..n_features {
            post_off[i + 1] += post_off[i];
        }
        c.post = pairs.into_iter().map(|(_, s)| s).collect();
        c.post_off = post_off;
        let mut positive = Postings::with_capacity(c.searches.len(), leaves_total);
        let mut leaves = Vec::new();
        for s in &c.searches {
            leaves.clear();
            positive_leaves(&c, s.root, true, &mut leaves);
            leaves.sort_unstable();
            leaves.dedup();
            positive.push(&leaves);
        }
        c.positive = positive;
        let mut confirm = Postings::with_capacity(c.searches.len(), 0);
        for s in &c.searches {
            confirm.push(&costs.confirm_branches(&c, s.root));
        }
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

    fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let terms: usize = self
            .terms
            .keys()
            .map(|k| k.len() + size_of::<(Box<str>, u32)>() + 1)
            .sum();
        terms
            + self.nodes.len() * size_of::<Node>()
            + self.nears.len() * size_of::<NearNode>()
            + self.children.len() * 4
            + self.leaves.len() * size_of::<CLeaf>()
            + self.ptoks.len() * size_of::<PTok>()
            + self.searches.len() * (size_of::<CSearch>() + 16)
            + self.post.len() * 4
            + self.post_off.len() * 4
            + self.wild_ac.as_ref().map_or(0, AhoCorasick::memory_usage)
            + self
                .prefix_trie
                .as_ref()
                .map_or(0, aho_corasick::automaton::Automaton::memory_usage)
            + self.prefix_wilds.heap_bytes()
            + self.frag_wilds.heap_bytes()
            + self.positive.heap_bytes()
            + self.confirm.heap_bytes()
            + self.cjk_ac.as_ref().map_or(0, AhoCorasick::memory_usage)
            + self.regexes.memory_usage()
    }
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
            let NearNode {
                left,
                left_len,
                right_len,
                ..
            } = c.nears[n as usize];
            if positive {
                out.extend_from_slice(
                    &c.children[left as usize..(left + left_len + right_len) as usize],
                );
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
