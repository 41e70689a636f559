//! Evaluating a candidate's flattened tree against the document's
//! occurrences (step 4 of the `engine` module doc): phrases by consecutive
//! positions, proximity by position windows, NOT by absence; leaf results
//! cached per document; every step counted against the work budget.

use super::compile::{CLeaf, CLeafKind, Compiled, NearNode, Node};
use super::doc_index::{DocIndex, Occ, Span};
use super::slop::SlopScratch;

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
        // Whether `next` may still be added after the limit was reached.
        let full = |out: &Vec<Span>, next: &Occ| {
            out.len() - base >= limit
                && (limit == 1
                    || out
                        .last()
                        .is_some_and(|p| (p.field, p.pos) != (next.field, next.pos)))
        };
        match leaf.kind {
            CLeafKind::Feature(f) => {
                let occs = self.d.occs_of(f);
                let mut visited = 0;
                for o in occs {
                    visited += 1;
                    if leaf.fields.allows(o.field) {
                        if full(out, o) {
                            break;
                        }
                        out.push(Span::of(o));
                    }
                }
                self.work += visited;
            }
            CLeafKind::Word { feature, kind, .. } => {
                // As a one-token `Tokens` leaf, without reading `ptoks`.
                let mut visited = 0;
                for o in self.d.occs_of(feature) {
                    visited += 1;
                    if !leaf.fields.allows(o.field) || !crate::query::accepts_kind(kind, o.kind) {
                        continue;
                    }
                    if full(out, o) {
                        break;
                    }
                    out.push(Span::between(o, o));
                }
                self.work += visited;
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
    use super::LeafMemo;

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
}
