//! The walk that turns the catalog's syntax trees into the matcher's flat
//! form: features interned ([`Features`]), leaves interned by a compact
//! code, trees flattened into nodes and children, and the number of
//! searches using each feature counted on the way (for anchor costs).
//!
//! One walk does it all: at a million searches the trees are a gigabyte
//! spread over the heap, and every extra walk (or a hash key that points
//! back into them) costs a cache miss per leaf.

use compact_str::CompactString;
use rustc_hash::FxHashMap;

use super::compile::{CLeaf, CLeafKind, FeatureId, NearNode, Node, PTok};
use crate::query::{Expr, Leaf, LeafKind, MetaField, Wildcard};

/// Every feature, numbered per kind in order of first use.
#[derive(Default)]
pub(super) struct Features {
    pub(super) terms: FxHashMap<CompactString, u32>,
    pub(super) wildcards: FxHashMap<Wildcard, u32>,
    pub(super) cjk: FxHashMap<String, u32>,
    pub(super) regexes: FxHashMap<String, u32>,
}

/// A feature before the bases are known.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub(super) enum Local {
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

/// The code of a leaf of one token, without slop or case, packed in a
/// word: its fields, its token's kind and its term. Such a leaf matches
/// exactly what another with the same three matches, as two leaves with
/// the same [`Builder::leaf_code`] do (the two codes never meet: they are
/// kept in different tables).
fn word_code(leaf: &Leaf, terms: &[FeatureId]) -> Option<u64> {
    match (&leaf.kind, terms) {
        (LeafKind::Tokens(t), &[term])
            if t.tokens.len() == 1 && t.slop.is_none() && !t.case_sensitive =>
        {
            Some(
                (u64::from(leaf.fields.0) << 40)
                    | ((t.tokens[0].kind as u64) << 32)
                    | u64::from(term),
            )
        }
        _ => None,
    }
}

impl Features {
    /// The term feature of a folded token body (a term's local id is its
    /// feature id).
    fn term(&mut self, folded: &str) -> FeatureId {
        if let Some(&i) = self.terms.get(folded) {
            return i;
        }
        intern(&mut self.terms, folded.into())
    }

    /// The features of a text leaf into `out`; for a token leaf also its
    /// tokens' terms into `terms`, in token order.
    fn of_leaf(&mut self, leaf: &Leaf, terms: &mut Vec<FeatureId>, out: &mut Vec<Local>) {
        match &leaf.kind {
            LeafKind::Tokens(t) => {
                for tok in &t.tokens {
                    let term = self.term(&tok.folded);
                    terms.push(term);
                    out.push(Local::Term(term));
                }
            }
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
    pub(super) fn global(&self, l: Local) -> FeatureId {
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
#[derive(Default)]
pub(super) struct Builder {
    f: Features,
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
    /// Interned one-word leaves (most leaves), by their code packed in a
    /// word ([`word_code`]): no key on the heap, so interning one is a
    /// lookup in one table (at a million searches the boxed codes were a
    /// third of compiling, a cache miss and an allocation per leaf).
    word_ids: FxHashMap<u64, u32>,
    /// Leaves whose feature is a wildcard, CJK or regex one.
    fixups: Vec<(u32, Local)>,
    /// Case-sensitive token bodies, numbered for the leaf codes.
    raws: FxHashMap<CompactString, u32>,
    ptoks: Vec<PTok>,
    metas: Vec<(MetaField, Box<str>)>,
    meta_ids: FxHashMap<(MetaField, String), u32>,
    /// The features of the leaf being built, and its tokens' terms.
    locals: Vec<Local>,
    terms: Vec<FeatureId>,
    code: Vec<u32>,
    /// The features of the search being built, and per kind of feature
    /// the number of searches using each.
    search_features: Vec<Local>,
    uses: [Vec<u32>; 4],
    leaves_total: usize,
}

/// What the walk built: the flat trees, the features, where each kind of
/// feature starts among the feature ids, and per feature the number of
/// searches using it.
pub(super) struct Flat {
    pub(super) nodes: Vec<Node>,
    pub(super) nears: Vec<NearNode>,
    pub(super) children: Vec<u32>,
    pub(super) leaves: Vec<CLeaf>,
    pub(super) ptoks: Vec<PTok>,
    pub(super) metas: Vec<(MetaField, Box<str>)>,
    pub(super) features: Features,
    pub(super) bases: Bases,
    pub(super) popularity: Vec<u32>,
    /// Leaves before interning.
    pub(super) leaves_total: usize,
}

impl Builder {
    /// The numbering of every feature, now that all are known.
    pub(super) fn finish(self) -> Flat {
        let f = self.f;
        let bases = Bases {
            wild: f.terms.len() as u32,
            cjk: (f.terms.len() + f.wildcards.len()) as u32,
            regex: (f.terms.len() + f.wildcards.len() + f.cjk.len()) as u32,
        };
        let mut leaves = self.leaves;
        for (leaf, l) in self.fixups {
            leaves[leaf as usize].kind = CLeafKind::Feature(bases.global(l));
        }
        let mut popularity = Vec::with_capacity(bases.regex as usize + f.regexes.len());
        for (counts, len) in self.uses.iter().zip([
            f.terms.len(),
            f.wildcards.len(),
            f.cjk.len(),
            f.regexes.len(),
        ]) {
            popularity.extend_from_slice(counts);
            popularity.resize(popularity.len() + len - counts.len(), 0);
        }
        Flat {
            nodes: self.nodes,
            nears: self.nears,
            children: self.children,
            leaves,
            ptoks: self.ptoks,
            metas: self.metas,
            features: f,
            bases,
            popularity,
            leaves_total: self.leaves_total,
        }
    }

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
                for (tok, &term) in t.tokens.iter().zip(&self.terms) {
                    code.extend([term, tok.kind as u32]);
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
        self.terms.clear();
        self.f.of_leaf(leaf, &mut self.terms, &mut self.locals);
        self.search_features.extend_from_slice(&self.locals);
        let word = word_code(leaf, &self.terms);
        let known = match word {
            Some(w) => self.word_ids.get(&w),
            None => {
                self.leaf_code(leaf);
                self.leaf_ids.get(&self.code[..])
            }
        };
        if let Some(&id) = known {
            return id;
        }
        let id = self.leaves.len() as u32;
        let kind = match &leaf.kind {
            LeafKind::Tokens(t) => {
                let start = self.ptoks.len() as u32;
                for (tok, &feature) in t.tokens.iter().zip(&self.terms) {
                    self.ptoks.push(PTok {
                        feature,
                        kind: tok.kind,
                        raw: t.case_sensitive.then(|| tok.raw.as_str().into()),
                    });
                }
                match (&self.ptoks[start as usize..], t.slop) {
                    ([tok], None) if tok.raw.is_none() => CLeafKind::Word {
                        start,
                        feature: tok.feature,
                        kind: tok.kind,
                    },
                    _ => CLeafKind::Tokens {
                        start,
                        len: t.tokens.len() as u32,
                        slop: t.slop,
                    },
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
        match word {
            Some(w) => self.word_ids.insert(w, id),
            None => self.leaf_ids.insert(self.code.as_slice().into(), id),
        };
        id
    }

    /// Builds the tree of one search and counts its distinct features;
    /// gives its root node.
    pub(super) fn search(&mut self, e: &Expr) -> u32 {
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
