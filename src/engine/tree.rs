//! Evaluating a candidate's flattened tree against the document's
//! occurrences (step 4 of the `engine` module doc): phrases by consecutive
//! positions, proximity by position windows, NOT by absence; leaf results
//! cached per document; every step counted against the work budget.

use super::compile::{CLeaf, CLeafKind, Compiled, FeatureId, NearNode, Node};
use super::doc_index::{DocIndex, Occ, Span};
use super::slop::SlopScratch;
use crate::query::{accepts_kind, Fields};
use crate::text::TokenKind;

pub(super) struct Eval<'a> {
    pub(super) c: &'a Compiled,
    pub(super) d: DocIndex<'a>,
    pub(super) leaf_memo: &'a mut [LeafMemo],
    pub(super) stamp: u32,
    pub(super) spans: &'a mut Vec<Span>,
    pub(super) spans2: &'a mut Vec<Span>,
    pub(super) slop: &'a mut SlopScratch,
    /// Work units spent so far on this document.
    pub(super) work: u64,
    /// Past this, every node evaluates to false at once and the caller
    /// reports the document as too expensive.
    pub(super) budget: u64,
}

impl Eval<'_> {
    /// Brings into cache the leaves of search `s` and what this document
    /// knows of them (its nodes should be in cache already:
    /// [`Compiled::prefetch_tree`]).
    pub(super) fn prefetch_leaves(&self, s: usize) {
        for node in &self.c.nodes[self.c.tree(s)] {
            if let Node::Leaf(l) = *node {
                super::prefetch(&self.c.leaves[l as usize]);
                super::prefetch(&self.leaf_memo[l as usize]);
            }
        }
    }

    fn over_budget(&self) -> bool {
        self.work > self.budget
    }

    pub(super) fn node(&mut self, n: u32) -> bool {
        match self.c.nodes[n as usize] {
            Node::Or { start, len } => {
                (start..start + len).any(|i| self.node(self.c.children[i as usize]))
            }
            Node::And { start, len } => {
                (start..start + len).all(|i| self.node(self.c.children[i as usize]))
            }
            Node::Not(ch) => !self.node(ch),
            Node::Leaf(l) => self.leaf(l),
            Node::Meta(m) => {
                let (field, value) = &self.c.metas[m as usize];
                self.d.doc.meta_matches(*field, value)
            }
            Node::Near(n) => {
                let NearNode {
                    left,
                    left_len,
                    right_len,
                    max_gap,
                    ordered,
                } = self.c.nears[n as usize];
                self.near(left, left_len, right_len, max_gap, ordered)
            }
        }
    }

    fn leaf(&mut self, l: u32) -> bool {
        if let Some(v) = self.leaf_memo[l as usize].value(self.stamp) {
            return v;
        }
        if self.over_budget() {
            return false;
        }
        let mut out = std::mem::take(self.spans);
        out.clear();
        self.leaf_spans(l, &mut out, 1);
        let v = !out.is_empty();
        *self.spans = out;
        self.leaf_memo[l as usize].set_value(self.stamp, v);
        v
    }

    /// `left NEAR/max_gap right`: the spans of both sides, then for each
    /// left span the nearest right span after it (and, unordered, before
    /// it) by binary search — O((|L| + |R|) log |R|), never |L| × |R|.
    fn near(
        &mut self,
        left: u32,
        left_len: u32,
        right_len: u32,
        max_gap: u32,
        ordered: bool,
    ) -> bool {
        if self.over_budget() {
            return false;
        }
        let mut a = std::mem::take(self.spans);
        let mut b = std::mem::take(self.spans2);
        a.clear();
        b.clear();
        for i in left..left + left_len {
            self.leaf_spans(self.c.children[i as usize], &mut a, usize::MAX);
        }
        let mut found = false;
        if !a.is_empty() {
            for i in left + left_len..left + left_len + right_len {
                self.leaf_spans(self.c.children[i as usize], &mut b, usize::MAX);
            }
        }
        if !b.is_empty() {
            self.work += (a.len() + b.len()) as u64;
            found = near_any(&a, &mut b, max_gap, ordered);
        }
        *self.spans = a;
        *self.spans2 = b;
        found
    }

    /// Appends the spans where leaf `l` matches, in (field, start) order,
    /// stopping after `limit` (and the spans that share the last one's
    /// position, so that the first `limit` by start are all there).
    pub(super) fn leaf_spans(&mut self, l: u32, out: &mut Vec<Span>, limit: usize) {
        let c = self.c;
        let leaf: &CLeaf = &c.leaves[l as usize];
        let base = out.len();
        let full = |out: &Vec<Span>, next: &Occ| full(out, base, limit, next);
        match leaf.kind {
            CLeafKind::Feature(f) => self.feature_spans(f, leaf.fields, None, out, limit),
            CLeafKind::Word { feature, kind, .. } => {
                // As a one-token `Tokens` leaf, without reading `ptoks`.
                self.feature_spans(feature, leaf.fields, Some(kind), out, limit);
            }
            CLeafKind::Tokens {
                start,
                len,
                slop: None,
            } => {
                let toks = &c.ptoks[start as usize..(start + len) as usize];
                let mut visited = 0;
                for o in self.d.occs_of(toks[0].feature) {
                    visited += len as u64;
                    if !leaf.fields.allows(o.field) || !self.d.accepts(&toks[0], o) {
                        continue;
                    }
                    let mut last = *o;
                    let all = toks[1..].iter().enumerate().all(|(i, p)| {
                        match self.d.token_accepts(p, o.field, o.pos + 1 + i as u32) {
                            Some(x) => {
                                last = x;
                                true
                            }
                            None => false,
                        }
                    });
                    if all {
                        if full(out, o) {
                            break;
                        }
                        out.push(Span::between(o, &last));
                    }
                }
                self.work += visited;
            }
            CLeafKind::Tokens {
                start,
                len,
                slop: Some(slop),
            } => {
                let toks = &c.ptoks[start as usize..(start + len) as usize];
                for field in 0..2u8 {
                    if !leaf.fields.allows(field) {
                        continue;
                    }
                    let want = limit.saturating_sub(out.len() - base);
                    if want == 0 {
                        return;
                    }
                    self.work += self.slop.spans(&self.d, toks, slop, field, out, want);
                }
            }
        }
    }

    /// The spans of a leaf of one feature `f` (a one-token word leaf
    /// asking for tokens of kind `want`, or a wildcard, CJK or regex
    /// leaf): its occurrences in `fields` (of a kind `want` accepts), as
    /// [`Eval::leaf_spans`] appends them.
    pub(super) fn feature_spans(
        &mut self,
        f: FeatureId,
        fields: Fields,
        want: Option<TokenKind>,
        out: &mut Vec<Span>,
        limit: usize,
    ) {
        let base = out.len();
        let mut visited = 0;
        for o in self.d.occs_of(f) {
            visited += 1;
            if !fields.allows(o.field) || want.is_some_and(|k| !accepts_kind(k, o.kind)) {
                continue;
            }
            if full(out, base, limit, o) {
                break;
            }
            // A word's occurrence is one token: its `pos_end` is its `pos`.
            out.push(Span::of(o));
        }
        self.work += visited;
    }
}

/// Whether `next` may no longer be added to the spans `out[base..]` of a
/// leaf: `limit` are there, and `next` does not share the last one's
/// position (so that the first `limit` by start are all there).
fn full(out: &[Span], base: usize, limit: usize, next: &Occ) -> bool {
    out.len() - base >= limit
        && (limit == 1
            || out
                .last()
                .is_some_and(|p| (p.field, p.pos) != (next.field, next.pos)))
}

/// What a search's highlights read of one of its positive leaves (an
/// entry of `Compiled::positive`). Most are a word in any field, or a
/// wildcard, CJK or regex leaf in any field: the entry is then the feature
/// itself, whose spans are read straight from the document's occurrences
/// ([`Eval::feature_spans`]) — reading the leaf and its per-document memo
/// first were two cache misses per positive leaf at 100,000 searches,
/// most of them for leaves the document does not have (highlights were
/// 18% of the realistic engine's time, `bench` without them). The others
/// are their leaf, whose spans are kept per document in its memo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PositiveLeaf {
    /// Leaf `0`, read through its memo.
    Leaf(u32),
    /// The occurrences of a feature in any field (of a kind a word
    /// accepts, when `word`).
    Feature { feature: FeatureId, word: bool },
}

impl PositiveLeaf {
    const FEATURE: u32 = 1 << 31;
    const WORD: u32 = 1 << 30;
    /// Most leaves a catalog may have (compile refuses more), so that a
    /// leaf's entry never has the `FEATURE` bit.
    pub(crate) const MAX_LEAVES: usize = Self::FEATURE as usize;

    /// The entry of `leaf` (of `c`'s leaves, fewer than [`Self::MAX_LEAVES`]).
    pub(crate) fn entry(c: &Compiled, leaf: u32) -> u32 {
        let l = &c.leaves[leaf as usize];
        let fits = |f: FeatureId| f < Self::WORD && l.fields == Fields::BOTH;
        match l.kind {
            CLeafKind::Feature(f) if fits(f) => Self::FEATURE | f,
            CLeafKind::Word {
                feature,
                kind: TokenKind::Word,
                ..
            } if fits(feature) => Self::FEATURE | Self::WORD | feature,
            _ => leaf,
        }
    }

    /// What `entry` stands for.
    #[inline]
    pub(crate) fn of(entry: u32) -> PositiveLeaf {
        if entry & Self::FEATURE == 0 {
            return PositiveLeaf::Leaf(entry);
        }
        PositiveLeaf::Feature {
            feature: entry & (Self::WORD - 1),
            word: entry & Self::WORD != 0,
        }
    }
}

/// Whether some span of `a` is within `max_gap` tokens of some span of `b`
/// (in the same field, not overlapping; with `ordered`, `a` first). Sorts
/// `b`.
fn near_any(a: &[Span], b: &mut [Span], max_gap: u32, ordered: bool) -> bool {
    // After: the first right span starting past the left one's end.
    b.sort_unstable_by_key(|y| (y.field, y.pos));
    let after = a.iter().any(|x| {
        let i = b.partition_point(|y| (y.field, y.pos) <= (x.field, x.pos_end));
        b.get(i).is_some_and(|y| spans_near(x, y, max_gap, true))
    });
    if after || ordered {
        return after;
    }
    // Before: the last right span ending before the left one's start.
    b.sort_unstable_by_key(|y| (y.field, y.pos_end));
    a.iter().any(|x| {
        let i = b.partition_point(|y| (y.field, y.pos_end) < (x.field, x.pos));
        i > 0 && spans_near(x, &b[i - 1], max_gap, false)
    })
}

/// NEAR between two spans: same field, not overlapping, at most `max_gap`
/// tokens between them; with `ordered`, `a` first.
pub(crate) fn spans_near(a: &Span, b: &Span, max_gap: u32, ordered: bool) -> bool {
    if a.field != b.field {
        return false;
    }
    if a.pos_end < b.pos {
        return b.pos - a.pos_end - 1 <= max_gap;
    }
    if !ordered && b.pos_end < a.pos {
        return a.pos - b.pos_end - 1 <= max_gap;
    }
    false
}

/// What one document knows of one leaf. Stamps are the document's
/// (`Scratch::stamp`, never 0, at most [`LeafMemo::MAX_STAMP`]).
#[derive(Clone, Copy, Default)]
pub(super) struct LeafMemo {
    /// The document's stamp once the leaf is evaluated, with its value in
    /// the top bit.
    value: u32,
    /// The document's stamp once the leaf's highlights are
    /// `highlight_spans[from..to]`.
    pub(super) highlights: u32,
    pub(super) from: u32,
    pub(super) to: u32,
}

impl LeafMemo {
    /// Past this stamp every stamp is reset (the top bit of `value` is the
    /// leaf's value).
    pub(super) const MAX_STAMP: u32 = u32::MAX >> 1;

    /// The leaf's value when the document of `stamp` has evaluated it.
    pub(super) fn value(&self, stamp: u32) -> Option<bool> {
        (self.value & Self::MAX_STAMP == stamp).then_some(self.value > Self::MAX_STAMP)
    }

    pub(super) fn set_value(&mut self, stamp: u32, value: bool) {
        self.value = stamp | (u32::from(value) << 31);
    }
}

#[cfg(test)]
mod tests {
    use super::{LeafMemo, PositiveLeaf};
    use crate::document::Document;
    use crate::engine::Matcher;
    use crate::query::Limits;
    use crate::searches::Catalog;

    #[test]
    fn a_leaf_memo_holds_its_value_only_for_its_document() {
        let mut memo = LeafMemo::default();
        assert_eq!(memo.value(1), None);
        memo.set_value(LeafMemo::MAX_STAMP, true);
        assert_eq!(memo.value(LeafMemo::MAX_STAMP), Some(true));
        assert_eq!(memo.value(1), None);
        memo.set_value(7, false);
        assert_eq!(memo.value(7), Some(false));
        assert_eq!(memo.value(LeafMemo::MAX_STAMP), None);
    }

    #[test]
    fn positive_leaves_of_one_feature_in_any_field_are_read_as_features() {
        let json = br#"{"topics": [{"id": "t", "searches": [{"id": "s",
            "query": "(acme OR lov* OR #tag OR title:brand OR \"big deal\") AND NOT gone"}]}]}"#;
        let catalog = Catalog::from_json(json, &Limits::default()).unwrap();
        let m = Matcher::new(&catalog).unwrap();
        let c = &m.c;
        let (mut features, mut leaves) = (0, 0);
        for &entry in c.positive.get(0) {
            match PositiveLeaf::of(entry) {
                PositiveLeaf::Feature { feature, word } => {
                    features += 1;
                    // `acme` is a word; `lov*` a wildcard, whose kind is
                    // checked when its occurrences are found.
                    assert_eq!(word, (feature as usize) < c.terms.len(), "{feature}");
                }
                PositiveLeaf::Leaf(l) => {
                    leaves += 1;
                    assert!((l as usize) < c.leaves.len());
                }
            }
        }
        // `#tag` (a kind), `title:brand` (a field) and the phrase keep their
        // leaf; `gone` is under NOT.
        assert_eq!((features, leaves), (2, 3));
        let mut scratch = m.scratch();
        let doc = Document::with_text("1", "Acme, lovely #tag: a big deal. acme");
        let got = m.match_document(&doc, &mut scratch);
        let spans: Vec<_> = got[0].highlights.iter().map(|h| (h.start, h.end)).collect();
        assert_eq!(spans, [(0, 4), (6, 12), (13, 17), (21, 29), (31, 35)]);
    }
}
