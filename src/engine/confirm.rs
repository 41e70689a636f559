//! Confirm branches (step 3 of the `engine` module doc): what a woken
//! candidate must also have in the document to be worth evaluating — built
//! at compile time from the search's tree ([`Costs::confirm_branches`]) and
//! checked per candidate against the document's feature stamps
//! ([`confirmed`]).

use super::anchors::Costs;
use super::compile::{CLeafKind, Compiled, FeatureId, NearNode, Node};

impl Costs<'_> {
    /// Most confirm groups kept per branch.
    const MAX_CONFIRM_GROUPS: usize = 4;

    /// Groups of features of which `node` needs one each to match, with
    /// their costs: every word of a phrase, the groups of every child of an
    /// AND, both sides of a NEAR, the anchor set of an OR; nothing for NOT
    /// and metadata.
    fn required(&self, c: &Compiled, node: u32, out: &mut Vec<(f64, Vec<FeatureId>)>) {
        match c.nodes[node as usize] {
            Node::Leaf(l) => match c.leaves[l as usize].kind {
                CLeafKind::Tokens { start, len, .. } => {
                    for p in &c.ptoks[start as usize..(start + len) as usize] {
                        out.push((self.cost(p.feature), vec![p.feature]));
                    }
                }
                CLeafKind::Feature(f) => out.push((self.cost(f), vec![f])),
            },
            Node::Meta(_) | Node::Not(_) => {}
            Node::And { start, len } => {
                for &child in &c.children[start as usize..(start + len) as usize] {
                    self.required(c, child, out);
                }
            }
            Node::Or { .. } => {
                let mut set = Vec::new();
                if let Some(cost) = self.anchors(c, node, &mut set) {
                    out.push((cost, set));
                }
            }
            Node::Near(n) => {
                let NearNode {
                    left,
                    left_len,
                    right_len,
                    ..
                } = c.nears[n as usize];
                for (from, n) in [(left, left_len), (left + left_len, right_len)] {
                    let leaves = &c.children[from as usize..(from + n) as usize];
                    let (mut cost, mut set) = (0.0, Vec::new());
                    for &l in leaves {
                        let (f, fc) = self.leaf_anchor(c, l);
                        cost += fc;
                        set.push(f);
                    }
                    out.push((cost, set));
                }
            }
        }
    }

    /// The cheapest [`Costs::MAX_CONFIRM_GROUPS`] required groups of
    /// `node`, without `woken_by` (the set that woke the search holds).
    fn confirm_groups(
        &self,
        c: &Compiled,
        node: u32,
        woken_by: &[FeatureId],
    ) -> Vec<Vec<FeatureId>> {
        let mut groups = Vec::new();
        self.required(c, node, &mut groups);
        for g in &mut groups {
            g.1.sort_unstable();
            g.1.dedup();
        }
        groups.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        groups.dedup_by(|a, b| a.1 == b.1);
        groups
            .into_iter()
            .map(|(_, g)| g)
            .filter(|g| g.as_slice() != woken_by)
            .take(Self::MAX_CONFIRM_GROUPS)
            .collect()
    }

    /// The confirm branches of a search, encoded for `eval::confirmed`: per
    /// branch its number of groups, then each group as its length and its
    /// features. The search can match only if some branch has a feature of
    /// every one of its groups in the document; an empty encoding admits
    /// every document.
    ///
    /// * Root OR: one branch per child, with the child's required groups
    ///   ([`Costs::required`]: every word of a phrase, every conjunct of an
    ///   AND, both sides of a NEAR), the cheapest first. Some child must
    ///   match. A child that needs no text rules nothing out.
    /// * Any other root: one branch, its required groups but the anchor
    ///   set that woke the search. A phrase search (`"w1 w2"`, anchored on
    ///   its rarer word) is then evaluated only when every word occurs.
    pub(super) fn confirm_branches(&self, c: &Compiled, root: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let push_groups = |out: &mut Vec<u32>, groups: &[Vec<FeatureId>]| {
            out.push(groups.len() as u32);
            for g in groups {
                out.push(g.len() as u32);
                out.extend_from_slice(g);
            }
        };
        if let Node::Or { start, len } = c.nodes[root as usize] {
            for &child in &c.children[start as usize..(start + len) as usize] {
                let groups = self.confirm_groups(c, child, &[]);
                if groups.is_empty() {
                    // A branch that needs no text: nothing can be ruled out.
                    return Vec::new();
                }
                push_groups(&mut out, &groups);
            }
        } else {
            let mut woken_by = Vec::new();
            self.anchors(c, root, &mut woken_by);
            woken_by.sort_unstable();
            woken_by.dedup();
            let groups = self.confirm_groups(c, root, &woken_by);
            if !groups.is_empty() {
                push_groups(&mut out, &groups);
            }
        }
        out
    }
}

/// Whether the search can match by its confirm branches (compile's
/// `confirm_branches`: per branch its number of groups, then each group's
/// length and features): some branch has, for each of its groups, a
/// feature that occurs in the document. No branches: yes.
#[inline]
pub(super) fn confirmed(branches: &[u32], feat_stamp: &[u32], stamp: u32) -> bool {
    if branches.is_empty() {
        return true;
    }
    let mut rest = branches;
    while let Some((&groups, tail)) = rest.split_first() {
        rest = tail;
        let mut all = true;
        for _ in 0..groups {
            let Some((&len, tail)) = rest.split_first() else {
                return true;
            };
            let (group, next) = tail.split_at((len as usize).min(tail.len()));
            all = all && group.iter().any(|&f| feat_stamp[f as usize] == stamp);
            rest = next;
        }
        if all {
            return true;
        }
    }
    false
}
