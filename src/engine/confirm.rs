//! Confirm branches (step 3 of the `engine` module doc): what a woken
//! candidate must also have in the document to be worth evaluating — built
//! at compile time from the search's tree ([`Costs::confirm_branches`]) and
//! checked per candidate against the document's feature stamps
//! ([`confirmed`]).

use super::compile::{Compiled, Costs, FeatureId, Node};

impl Costs<'_> {
    /// Most confirm groups kept per search.
    const MAX_CONFIRM_GROUPS: usize = 3;

    /// The anchor sets of an AND's anchored children, cheapest first
    /// (stable: the first of equally cheap children is the one
    /// [`Costs::anchors`] chose).
    fn child_sets(&self, c: &Compiled, start: u32, len: u32) -> Vec<Vec<FeatureId>> {
        let mut sets: Vec<(f64, Vec<FeatureId>)> = c.children
            [start as usize..(start + len) as usize]
            .iter()
            .filter_map(|&child| {
                let mut set = Vec::new();
                let cost = self.anchors(c, child, &mut set)?;
                set.sort_unstable();
                set.dedup();
                Some((cost, set))
            })
            .collect();
        sets.sort_by(|a, b| a.0.total_cmp(&b.0));
        sets.into_iter().map(|(_, set)| set).collect()
    }

    /// The confirm branches of a search, encoded for `eval::confirmed`: per
    /// branch its number of groups, then each group as its length and its
    /// features. The search can match only if some branch has a feature of
    /// every one of its groups in the document; an empty encoding admits
    /// every document.
    ///
    /// * Root AND: one branch, the anchor sets of the children other than
    ///   the cheapest (whose set woke the search), at most
    ///   [`Costs::MAX_CONFIRM_GROUPS`]. Every child must match, and a child
    ///   that matches has a feature of its anchor set in the document.
    /// * Root OR: one branch per child — its anchor set (the search was
    ///   woken by the union of them, maybe by another child's), and when
    ///   the child is an AND its own confirm groups as above. Some child
    ///   must match.
    /// * Anything else: nothing to check beyond the anchor.
    pub(super) fn confirm_branches(&self, c: &Compiled, root: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let push_groups = |out: &mut Vec<u32>, groups: &[Vec<FeatureId>]| {
            out.push(groups.len() as u32);
            for g in groups {
                out.push(g.len() as u32);
                out.extend_from_slice(g);
            }
        };
        match c.nodes[root as usize] {
            Node::And { start, len } => {
                let sets = self.child_sets(c, start, len);
                let rest: Vec<Vec<FeatureId>> = sets
                    .into_iter()
                    .skip(1)
                    .take(Self::MAX_CONFIRM_GROUPS)
                    .collect();
                if !rest.is_empty() {
                    push_groups(&mut out, &rest);
                }
            }
            Node::Or { start, len } => {
                for &child in &c.children[start as usize..(start + len) as usize] {
                    let mut own = Vec::new();
                    if self.anchors(c, child, &mut own).is_none() {
                        // A branch that needs no text: nothing can be ruled out.
                        return Vec::new();
                    }
                    own.sort_unstable();
                    own.dedup();
                    let mut groups = vec![own];
                    if let Node::And { start, len } = c.nodes[child as usize] {
                        groups.extend(
                            self.child_sets(c, start, len)
                                .into_iter()
                                .skip(1)
                                .take(Self::MAX_CONFIRM_GROUPS),
                        );
                    }
                    push_groups(&mut out, &groups);
                }
            }
            _ => {}
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
