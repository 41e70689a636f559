//! Anchors (step 3 of the `engine` module doc): what a feature costs as
//! an anchor — how often it wakes searches up — and the cheapest anchor
//! set of each node of a search's tree. `confirm` builds on the same costs.

use super::builder::Bases;
use super::compile::{CLeafKind, Compiled, FeatureId, Node};

/// Cost of anchoring on a feature: how many searches use it, weighted by how
/// expensive its hits are to confirm.
pub(super) struct Costs<'a> {
    pub(super) popularity: &'a [u32],
    pub(super) bases: &'a Bases,
    pub(super) term_len: &'a [u32],
    /// Per term: the share of documents holding it, when learnt.
    pub(super) term_share: Option<&'a [f64]>,
}

impl Costs<'_> {
    pub(super) fn cost(&self, f: FeatureId) -> f64 {
        let pop = f64::from(self.popularity[f as usize].max(1));
        if let Some(share) = self.term_share.filter(|_| f < self.bases.wild) {
            // Documents woken per thousand, the search count breaking ties:
            // a term in 0.1% of posts costs about what a feature of one
            // search costs without frequencies.
            return share[f as usize] * 1000.0 + pop * 1e-6;
        }
        let weight = if f < self.bases.wild {
            // Very short terms are frequent in text even when few searches
            // use them.
            if self.term_len[f as usize] <= 2 {
                4.0
            } else {
                1.0
            }
        } else if f < self.bases.cjk {
            4.0
        } else if f < self.bases.regex {
            2.0
        } else {
            16.0
        };
        pop * weight
    }

    /// The cheapest anchor set of a leaf: one feature.
    pub(super) fn leaf_anchor(&self, c: &Compiled, leaf: u32) -> (FeatureId, f64) {
        match &c.leaves[leaf as usize].kind {
            CLeafKind::Feature(f) => (*f, self.cost(*f)),
            tokens => c.ptoks[tokens.tokens().expect("a token leaf")]
                .iter()
                .map(|p| (p.feature, self.cost(p.feature)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .expect("a token leaf has tokens"),
        }
    }

    /// An anchor set of the node, with its cost; `None` when the node can
    /// match without any positive text.
    pub(super) fn anchors(&self, c: &Compiled, node: u32, out: &mut Vec<FeatureId>) -> Option<f64> {
        match c.nodes[node as usize] {
            Node::Leaf(l) => {
                let (f, cost) = self.leaf_anchor(c, l);
                out.push(f);
                Some(cost)
            }
            Node::Meta(_) | Node::Not(_) => None,
            Node::Or { start, len } => {
                let mut total = 0.0;
                for &child in &c.children[start as usize..(start + len) as usize] {
                    total += self.anchors(c, child, out)?;
                }
                Some(total)
            }
            Node::And { start, len } => {
                let mut best: Option<(f64, Vec<FeatureId>)> = None;
                for &child in &c.children[start as usize..(start + len) as usize] {
                    let mut set = Vec::new();
                    if let Some(cost) = self.anchors(c, child, &mut set) {
                        if best.as_ref().is_none_or(|(b, _)| cost < *b) {
                            best = Some((cost, set));
                        }
                    }
                }
                let (cost, set) = best?;
                out.extend(set);
                Some(cost)
            }
            Node::Near(n) => {
                let side = |leaves: &[u32]| {
                    let set: Vec<(FeatureId, f64)> =
                        leaves.iter().map(|&l| self.leaf_anchor(c, l)).collect();
                    let cost = set.iter().map(|x| x.1).sum::<f64>();
                    (cost, set)
                };
                let (left, right) = c.near_sides(n);
                let (lc, ls) = side(left);
                let (rc, rs) = side(right);
                let (cost, set) = if lc <= rc { (lc, ls) } else { (rc, rs) };
                out.extend(set.into_iter().map(|x| x.0));
                Some(cost)
            }
        }
    }
}
