//! Confirm branches (step 3 of the `engine` module doc): what a woken
//! candidate must also have in the document to be worth evaluating — built
//! at compile time from the search's tree ([`Costs::confirm_branches`]) and
//! checked per candidate against the document's feature stamps
//! ([`confirmed`]). Before that, each posting entry's [`gate`] (a few
//! slots of the branches' groups, kept beside the entry) is tested against
//! the document's [`Summary`], so most woken searches are dropped without
//! reading their branches.
//!
//! A branch also keeps its *vetoes*: the words of its AND's `NOT` children
//! (`-f`, `NOT (x OR y)`) whose presence alone makes the NOT fail — a
//! plain word leaf (one token, kind word, any field, not case-sensitive)
//! holds whenever a non-emoji token with its body occurs. A branch with a
//! veto in the document cannot hold, so customers' `… -jobs` searches are
//! no longer evaluated on every post that mentions jobs. Exact, not a
//! guess: the results are those of the full evaluation (property test).
//!
//! Group entries and vetoes are [`Need`]s: a feature and the kind of token
//! it must occur as. `#health` needs the feature `health` as a hashtag:
//! customers' `brand OR #tag OR @tag` searches are no longer evaluated on
//! every post that has the tag's word in plain text.
//!
//! **Exact branches.** Most customers' searches are flat: `(a OR b) AND (c
//! OR d) -e`, `brand OR #tag OR (@tag NOT (x OR y))`, `stem* AND (x OR y)`
//! — ANDs of ORs of one-token leaves in any field, and NOTs of such ORs.
//! For these the branches can say everything the tree says: each leaf is
//! a [`Need`] that holds exactly when the leaf does (a word as the token
//! kinds it accepts, a wildcard, CJK or regex leaf as its feature), every
//! conjunct is a group (the one that woke the search too), every negated
//! leaf a veto. Such branches are marked [`EXACT`] ([`Costs::exact_branches`]),
//! and a search they confirm has matched: its tree is neither fetched nor
//! evaluated. Its gate is still made from the ordinary branches. On real
//! posts at 100,000 searches they decide 5.19 of the 7.08 searches
//! evaluated per post, and the engine runs 1.19× faster (side by side;
//! skipping every tree, wrongly, gave 1.18×: the trees were what was left
//! to save). BENCHMARKS.md.

use super::anchors::Costs;
use super::compile::{CLeafKind, Compiled, FeatureId, Node};
use crate::query::Fields;
use crate::text::TokenKind;

/// A confirm group entry or veto: a feature in the low bits, and in the
/// top three the kind of token it must occur as — 0 for any occurrence,
/// `k + 1` for a token that a leaf asking for kind `k` accepts
/// ([`crate::query::accepts_kind`]). A feature id too large to share its
/// word with a kind (never at real sizes) keeps 0: a weaker condition,
/// still a necessary one for groups; vetoes are then not kept.
pub(super) type Need = u32;

const KIND_SHIFT: u32 = 29;
const FEATURE_MASK: u32 = (1 << KIND_SHIFT) - 1;

/// Set in the first word of branches that decide the search: confirmed by
/// them, it matches ([`confirmed`] says [`Confirmed::Matched`]).
const EXACT: u32 = 1 << 31;

/// Per kind asked for, the token kinds that satisfy it, as bits of
/// `1 << kind` (Word, Hashtag, Mention, Cashtag, Emoji): a word accepts
/// every kind but emoji, the others only themselves (checked against
/// `accepts_kind` by a test).
const ACCEPTED: [u8; 5] = [0b01111, 0b00010, 0b00100, 0b01000, 0b10000];

/// The token kinds a leaf asking for `want` accepts, as bits of
/// `1 << kind` ([`ACCEPTED`]).
pub(super) fn accepted_kinds(want: TokenKind) -> u8 {
    ACCEPTED[want as usize]
}

/// `f`, to occur as a token `kind` accepts (any occurrence for `None`);
/// `None` when `f` is too large to carry a kind and one was asked for.
fn need(f: FeatureId, kind: Option<TokenKind>) -> Option<Need> {
    match kind {
        None => Some(f),
        Some(k) => (f <= FEATURE_MASK).then(|| f | ((k as u32 + 1) << KIND_SHIFT)),
    }
}

/// Slots of the document summary ([`Summary`]): a document of a few
/// dozen features leaves almost all of them clear.
pub(super) const SUMMARY_SLOTS: usize = 1 << 12;
// The slots a document set are listed as `u16`s to be cleared.
const _: () = assert!(SUMMARY_SLOTS <= 1 << 16);

/// The document's *summary*: slot `f % SUMMARY_SLOTS` set (non-zero) for every
/// feature `f` of the document, a slot of `f` as a kind for each hashtag,
/// mention, cashtag and emoji ([`summary_slots`]), and slot 0 always (a
/// search without a gate points at it). A byte per slot, not a bit: a gate
/// reads five slots per woken search, and a byte is one load where a bit
/// is a load, a shift and a mask (4 KiB, in the first-level cache).
pub(super) type Summary = [u8; SUMMARY_SLOTS];

/// The document's features as the confirm check reads them (the fields of
/// `eval::Scratch`). Most needs checked are of features absent from the
/// document, and at 100,000 searches `stamp_of` (4 bytes per feature) does
/// not stay in the first-level cache: on real posts its reads were 40% of
/// the matching's first-level cache misses (`valgrind --tool=callgrind
/// --cache-sim=yes`). The summary answers "absent" for most of them.
pub(super) struct Present<'a> {
    /// The document's summary.
    pub summary: &'a Summary,
    /// `stamp_of[f] == stamp` when feature `f` occurs in the document.
    pub stamp_of: &'a [u32],
    /// Then `kinds[f]` has bit `k` set when it occurs as a token of kind `k`.
    pub kinds: &'a [u8],
    pub stamp: u32,
}

impl Present<'_> {
    /// Whether `need` holds in the document.
    #[inline]
    fn holds(&self, need: Need) -> bool {
        let f = (need & FEATURE_MASK) as usize;
        if self.summary[f % SUMMARY_SLOTS] == 0 || self.stamp_of[f] != self.stamp {
            return false;
        }
        match need >> KIND_SHIFT {
            0 => true,
            code => self.kinds[f] & ACCEPTED[code as usize - 1] != 0,
        }
    }
}

/// The feature of `node` when it is a plain word leaf, which holds exactly
/// when a non-emoji token of that feature occurs anywhere.
fn plain_word(c: &Compiled, node: u32) -> Option<FeatureId> {
    let Node::Leaf(l) = c.nodes[node as usize] else {
        return None;
    };
    let leaf = &c.leaves[l as usize];
    let CLeafKind::Word { start, .. } = leaf.kind else {
        return None;
    };
    let tok = &c.ptoks[start as usize];
    (leaf.fields == Fields::BOTH && tok.kind == TokenKind::Word && tok.raw.is_none())
        .then_some(tok.feature)
}

/// What makes `node` (an AND, or a branch of a root OR) fail by its
/// presence: for each `NOT x` child, the plain words among `x` and its OR
/// branches, as non-emoji tokens.
fn vetoes(c: &Compiled, node: u32, out: &mut Vec<Need>) {
    fn negated(c: &Compiled, node: u32, out: &mut Vec<Need>) {
        if let Some(f) = plain_word(c, node).and_then(|f| need(f, Some(TokenKind::Word))) {
            out.push(f);
        } else if let Node::Or { start, len } = c.nodes[node as usize] {
            for &child in &c.children[start as usize..(start + len) as usize] {
                negated(c, child, out);
            }
        }
    }
    match c.nodes[node as usize] {
        Node::And { start, len } => {
            for &child in &c.children[start as usize..(start + len) as usize] {
                if let Node::Not(x) = c.nodes[child as usize] {
                    negated(c, x, out);
                }
            }
        }
        Node::Not(x) => negated(c, x, out),
        _ => {}
    }
    out.sort_unstable();
    out.dedup();
}

impl Costs<'_> {
    /// Most confirm groups kept per branch.
    const MAX_CONFIRM_GROUPS: usize = 4;

    /// Groups of features of which `node` needs one each to match, with
    /// their costs: every word of a phrase, the groups of every child of an
    /// AND, both sides of a NEAR, the anchor set of an OR; nothing for NOT
    /// and metadata.
    fn required(&self, c: &Compiled, node: u32, out: &mut Vec<(f64, Vec<FeatureId>)>) {
        match c.nodes[node as usize] {
            Node::Leaf(l) => match &c.leaves[l as usize].kind {
                CLeafKind::Feature(f) => out.push((self.cost(*f), vec![*f])),
                tokens => {
                    for p in &c.ptoks[tokens.tokens().expect("a token leaf")] {
                        // A word is taken as any occurrence (it accepts
                        // all but emoji tokens: a weaker condition, and
                        // the feature that woke the search stays out of
                        // the groups); `#tag`, `@name`, `$tick` as their kind.
                        let kind = (p.kind != TokenKind::Word).then_some(p.kind);
                        let entry = need(p.feature, kind).unwrap_or(p.feature);
                        out.push((self.cost(p.feature), vec![entry]));
                    }
                }
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
                let (left, right) = c.near_sides(n);
                for leaves in [left, right] {
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
    /// features, then its number of vetoes and the vetoes. The search can
    /// match only if some branch has a feature of every one of its groups
    /// in the document and none of its vetoes; an empty encoding admits
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
        let mut vetoed = Vec::new();
        let mut push_branch = |out: &mut Vec<u32>, groups: &[Vec<FeatureId>], node: u32| {
            out.push(groups.len() as u32);
            for g in groups {
                out.push(g.len() as u32);
                out.extend_from_slice(g);
            }
            vetoed.clear();
            vetoes(c, node, &mut vetoed);
            out.push(vetoed.len() as u32);
            out.extend_from_slice(&vetoed);
        };
        if let Node::Or { start, len } = c.nodes[root as usize] {
            for &child in &c.children[start as usize..(start + len) as usize] {
                let groups = self.confirm_groups(c, child, &[]);
                if groups.is_empty() {
                    // A branch that needs no text: nothing can be ruled out.
                    return Vec::new();
                }
                push_branch(&mut out, &groups, child);
            }
        } else {
            let mut woken_by = Vec::new();
            self.anchors(c, root, &mut woken_by);
            woken_by.sort_unstable();
            woken_by.dedup();
            let groups = self.confirm_groups(c, root, &woken_by);
            push_branch(&mut out, &groups, root);
            if out == [0, 0] {
                // No group and no veto: every woken document is evaluated.
                out.clear();
            }
        }
        out
    }

    /// The exact branches of a flat search (module doc), encoded as
    /// [`Costs::confirm_branches`] encodes branches, its first word marked
    /// [`EXACT`]; `None` for any other search. A root OR has a branch per
    /// child, any other root one branch; a branch is a leaf, an OR of
    /// leaves or an AND of those and of NOTs of them, and has at least one
    /// group. Groups are ordered cheapest first, where a branch most often
    /// fails.
    pub(super) fn exact_branches(&self, c: &Compiled, root: u32) -> Option<Vec<u32>> {
        let mut out = Vec::new();
        let (mut groups, mut vetoes) = (Vec::new(), Vec::new());
        let one_branch = [root];
        let branches: &[u32] = match c.nodes[root as usize] {
            Node::Or { start, len } => &c.children[start as usize..(start + len) as usize],
            _ => &one_branch,
        };
        for &branch in branches {
            groups.clear();
            vetoes.clear();
            if !exact_conjuncts(c, branch, &mut groups, &mut vetoes) || groups.is_empty() {
                return None;
            }
            let cost =
                |g: &Vec<Need>| -> f64 { g.iter().map(|&n| self.cost(n & FEATURE_MASK)).sum() };
            groups.sort_by(|a, b| cost(a).total_cmp(&cost(b)));
            out.push(groups.len() as u32);
            for g in &groups {
                out.push(g.len() as u32);
                out.extend_from_slice(g);
            }
            vetoes.sort_unstable();
            vetoes.dedup();
            out.push(vetoes.len() as u32);
            out.extend_from_slice(&vetoes);
        }
        out[0] |= EXACT;
        Some(out)
    }
}

/// The need that holds exactly when leaf node `node` does: a one-token
/// leaf in any field, not case-sensitive (a word as the kinds it
/// accepts), or a wildcard, CJK or regex feature in any field.
fn exact_need(c: &Compiled, node: u32) -> Option<Need> {
    let Node::Leaf(l) = c.nodes[node as usize] else {
        return None;
    };
    let leaf = &c.leaves[l as usize];
    if leaf.fields != Fields::BOTH {
        return None;
    }
    match leaf.kind {
        CLeafKind::Word {
            start,
            feature,
            kind,
        } => c.ptoks[start as usize]
            .raw
            .is_none()
            .then(|| need(feature, Some(kind)))
            .flatten(),
        CLeafKind::Feature(f) => (f <= FEATURE_MASK).then_some(f),
        CLeafKind::Tokens { .. } => None,
    }
}

/// The needs of `node` when it is an exact leaf or an OR of such (ORs
/// within ORs too): one of them holds exactly when `node` does.
fn exact_any(c: &Compiled, node: u32, out: &mut Vec<Need>) -> bool {
    if let Node::Or { start, len } = c.nodes[node as usize] {
        return c.children[start as usize..(start + len) as usize]
            .iter()
            .all(|&child| exact_any(c, child, out));
    }
    exact_need(c, node).map(|n| out.push(n)).is_some()
}

/// A branch's groups (one per positive conjunct) and vetoes (the needs of
/// its NOTs), when `node` is exactly "every group has a need that holds
/// and no veto holds".
fn exact_conjuncts(
    c: &Compiled,
    node: u32,
    groups: &mut Vec<Vec<Need>>,
    vetoes: &mut Vec<Need>,
) -> bool {
    match c.nodes[node as usize] {
        Node::And { start, len } => c.children[start as usize..(start + len) as usize]
            .iter()
            .all(|&child| exact_conjuncts(c, child, groups, vetoes)),
        Node::Not(x) => exact_any(c, x, vetoes),
        _ => {
            let mut group = Vec::new();
            if !exact_any(c, node, &mut group) {
                return false;
            }
            group.sort_unstable();
            group.dedup();
            groups.push(group);
            true
        }
    }
}

/// The slot of the document summary ([`Summary`]) that stands for
/// `need`: feature `f`'s own slot `f % SUMMARY_SLOTS` when any occurrence (or
/// any but an emoji) will do, else a slot of `f` and the one kind asked for
/// (`#tag`, `@name`, `$tick`, an emoji), which the document sets for each
/// such token ([`summary_slots`]).
fn summary_slot(need: Need) -> usize {
    let f = need & FEATURE_MASK;
    match need >> KIND_SHIFT {
        0 | 1 => f as usize % SUMMARY_SLOTS,
        code => kind_slot(f, code),
    }
}

/// The slot of feature `f` occurring as the token kind of need code `code`.
fn kind_slot(f: FeatureId, code: u32) -> usize {
    ((f ^ (code << 26)).wrapping_mul(0x9E37_79B1) >> (32 - SUMMARY_SLOTS.trailing_zeros())) as usize
}

/// The slots an occurrence of feature `f` as a token of `kind` sets in the
/// document summary: `f`'s own, and for a kind other than a word the slot
/// of `f` as that kind.
#[inline]
pub(super) fn summary_slots(f: FeatureId, kind: TokenKind) -> (usize, Option<usize>) {
    let own = f as usize % SUMMARY_SLOTS;
    match kind {
        TokenKind::Word => (own, None),
        // Need code `k + 1` asks for kind `k` (`need`).
        k => (own, Some(kind_slot(f, k as u32 + 1))),
    }
}

/// Most summary slots a gate holds.
const GATE_SLOTS: usize = 5;
/// Width of one summary slot index in a gate.
const GATE_INDEX: u32 = SUMMARY_SLOTS.trailing_zeros();

/// A search's *gate*, kept beside each of its posting entries: up to
/// [`GATE_SLOTS`] slots of the document summary, one of which must be set
/// for the search to be worth a look (places left over repeat the first;
/// a search without a gate is all zeros, slot 0, which is always set). It is read from the
/// posting list the search was found in, so most woken searches are
/// dropped without touching their own data: at 100,000 searches from real
/// posts' words, the confirm check's first read of a search was a cache
/// miss per woken search, and there are ~125 per post for ~7 that match.
///
/// The slots are, per confirm branch, the entries of one of its groups
/// (the cheapest that fits, past the first for a branch of a root OR): a
/// branch that holds has one of them present, so a document none of whose
/// gate slots is set holds no branch. A slot is shared by a few features,
/// so a set slot is only a first answer; the confirm check that follows
/// is exact.
pub(super) fn gate(branches: &[u32]) -> u64 {
    // Each branch's groups, cheapest first.
    let mut groups_of: Vec<Vec<&[u32]>> = Vec::new();
    let mut rest = branches;
    while let Some((&groups, tail)) = rest.split_first() {
        rest = tail;
        let mut groups_here = Vec::new();
        for _ in 0..groups {
            let Some((&len, tail)) = rest.split_first() else {
                return 0;
            };
            let (group, next) = tail.split_at((len as usize).min(tail.len()));
            groups_here.push(group);
            rest = next;
        }
        let Some((&len, tail)) = rest.split_first() else {
            return 0;
        };
        rest = &tail[(len as usize).min(tail.len())..];
        groups_of.push(groups_here);
    }
    // A branch of a root OR is woken by its anchor set, which is its
    // cheapest group: that group is then present, so another one is
    // preferred. (A single branch has had the set that wakes it taken out
    // of its groups already.)
    let skip = usize::from(groups_of.len() > 1);
    let mut slots: Vec<usize> = Vec::new();
    for groups in &groups_of {
        let fits = |g: &&&[u32]| !g.is_empty() && slots.len() + g.len() <= GATE_SLOTS;
        let Some(group) = groups
            .iter()
            .skip(skip)
            .find(fits)
            .or_else(|| groups.iter().find(fits))
        else {
            // A branch without a group that fits: no gate.
            return 0;
        };
        slots.extend(group.iter().map(|&n| summary_slot(n)));
    }
    slots.sort_unstable();
    slots.dedup();
    let Some(&first) = slots.first() else {
        return 0; // no branches: no gate
    };
    // Places left over repeat the first slot.
    (0..GATE_SLOTS)
        .map(|i| slots.get(i).unwrap_or(&first))
        .enumerate()
        .fold(0, |g, (i, &b)| g | (b as u64) << (GATE_INDEX as usize * i))
}

/// Whether a search with `gate` may match a document whose summary is
/// `summary`: five loads, no branch.
#[inline]
pub(super) fn gate_open(gate: u64, summary: &Summary) -> bool {
    let slot = |i: usize| summary[(gate >> (GATE_INDEX as usize * i)) as usize % SUMMARY_SLOTS];
    (slot(0) | slot(1) | slot(2) | slot(3) | slot(4)) != 0
}

/// What a search's confirm branches say of a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Confirmed {
    /// It cannot match.
    No,
    /// It may match: its tree is evaluated.
    Maybe,
    /// It matches (exact branches).
    Matched,
}

/// Whether the search can match by its confirm branches (compile's
/// `confirm_branches`: per branch its number of groups, then each group's
/// length and features, then its vetoes): some branch has, for each of its
/// groups, an entry that occurs in the document, and none of its vetoes.
/// No branches: maybe. Exact branches that hold: it matched.
#[inline]
pub(super) fn confirmed(branches: &[u32], doc: &Present<'_>) -> Confirmed {
    let present = |n: Need| doc.holds(n);
    let Some(&first) = branches.first() else {
        return Confirmed::Maybe;
    };
    let yes = if first & EXACT != 0 {
        Confirmed::Matched
    } else {
        Confirmed::Maybe
    };
    let mut rest = branches;
    while let Some((&groups, tail)) = rest.split_first() {
        let groups = groups & !EXACT;
        rest = tail;
        let mut all = true;
        for _ in 0..groups {
            let Some((&len, tail)) = rest.split_first() else {
                return Confirmed::Maybe;
            };
            let (group, next) = tail.split_at((len as usize).min(tail.len()));
            all = all && group.iter().any(|&n| present(n));
            rest = next;
        }
        let Some((&len, tail)) = rest.split_first() else {
            return Confirmed::Maybe;
        };
        let (vetoes, next) = tail.split_at((len as usize).min(tail.len()));
        rest = next;
        if all && !vetoes.iter().any(|&n| present(n)) {
            return yes;
        }
    }
    Confirmed::No
}

#[cfg(test)]
mod tests {
    use super::{gate, gate_open, need, summary_slots, Present, Summary, ACCEPTED, SUMMARY_SLOTS};
    use crate::query::accepts_kind;
    use crate::text::TokenKind;

    #[test]
    fn the_kinds_table_is_accepts_kind() {
        let kinds = [
            TokenKind::Word,
            TokenKind::Hashtag,
            TokenKind::Mention,
            TokenKind::Cashtag,
            TokenKind::Emoji,
        ];
        for want in kinds {
            for got in kinds {
                assert_eq!(
                    ACCEPTED[want as usize] & (1 << got as u8) != 0,
                    accepts_kind(want, got),
                    "{want:?} accepting {got:?}"
                );
            }
        }
    }

    /// A feature that shares its summary slot with one of the document's
    /// is still absent, and the filter never hides a present one.
    #[test]
    fn the_summary_slot_is_only_a_first_answer() {
        let (present, twin, other) = (7u32, 7 + SUMMARY_SLOTS as u32, 8u32);
        let mut summary = [0u8; SUMMARY_SLOTS];
        summary[present as usize] = 1;
        let mut stamp_of = vec![0u32; SUMMARY_SLOTS * 2];
        let mut kinds = vec![0u8; SUMMARY_SLOTS * 2];
        stamp_of[present as usize] = 3;
        kinds[present as usize] = 1 << TokenKind::Hashtag as u8;
        // A stale stamp of an earlier document behind a clear slot.
        stamp_of[other as usize] = 2;
        let doc = Present {
            summary: &summary,
            stamp_of: &stamp_of,
            kinds: &kinds,
            stamp: 3,
        };
        assert!(doc.holds(need(present, None).unwrap()));
        assert!(doc.holds(need(present, Some(TokenKind::Hashtag)).unwrap()));
        assert!(!doc.holds(need(present, Some(TokenKind::Mention)).unwrap()));
        assert!(!doc.holds(need(twin, None).unwrap()));
        assert!(!doc.holds(need(other, None).unwrap()));
    }

    /// A document summary with the slots of `occurrences`.
    fn summary(occurrences: &[(u32, TokenKind)]) -> Summary {
        let mut slots = [0u8; SUMMARY_SLOTS];
        slots[0] = 1;
        for &(f, kind) in occurrences {
            let (own, as_kind) = summary_slots(f, kind);
            for b in std::iter::once(own).chain(as_kind) {
                slots[b] = 1;
            }
        }
        slots
    }

    /// A gate opens on a feature of the chosen group of every branch, as
    /// the kind its entry asks for, and stays closed without one.
    #[test]
    fn a_gate_opens_only_on_its_groups() {
        let tag = need(40, Some(TokenKind::Hashtag)).unwrap();
        // One branch: groups {7, 9} and {tag}; no vetoes.
        let one = gate(&[2, 2, 7, 9, 1, tag, 0]);
        assert!(!gate_open(one, &summary(&[])));
        assert!(gate_open(one, &summary(&[(9, TokenKind::Word)])));
        assert!(
            !gate_open(one, &summary(&[(40, TokenKind::Hashtag)])),
            "the first group was chosen"
        );
        // Two branches of a root OR: {7} and {tag}.
        let two = gate(&[1, 1, 7, 0, 1, 1, tag, 0]);
        assert!(gate_open(two, &summary(&[(7, TokenKind::Mention)])));
        assert!(gate_open(two, &summary(&[(40, TokenKind::Hashtag)])));
        assert!(
            !gate_open(two, &summary(&[(40, TokenKind::Word)])),
            "#tag needs the hashtag"
        );
        assert!(!gate_open(two, &summary(&[(40, TokenKind::Mention)])));
        // A root OR `"w1 w2" OR (w3 AND w4)`, anchored on w1 and w3 (its
        // branches' first groups): the gate is w2 or w4, so a document
        // with the anchors alone does not open it.
        let phrase_or_and = gate(&[2, 1, 1, 1, 2, 0, 2, 1, 3, 1, 4, 0]);
        assert!(!gate_open(
            phrase_or_and,
            &summary(&[(1, TokenKind::Word), (3, TokenKind::Word)])
        ));
        assert!(gate_open(
            phrase_or_and,
            &summary(&[(1, TokenKind::Word), (2, TokenKind::Word)])
        ));
        assert!(gate_open(phrase_or_and, &summary(&[(4, TokenKind::Word)])));
    }

    /// A search that cannot be gated gets the gate that is always open.
    #[test]
    fn no_gate_without_a_group_per_branch() {
        let empty = summary(&[]);
        // No branches at all.
        assert!(gate_open(gate(&[]), &empty));
        // A branch with only a veto.
        assert!(gate_open(gate(&[0, 1, 5]), &empty));
        // Groups too large for the gate.
        assert!(gate_open(gate(&[1, 6, 1, 2, 3, 4, 5, 6, 0]), &empty));
        // Root OR whose branches together need more than five slots.
        assert!(gate_open(
            gate(&[1, 3, 1, 2, 3, 0, 1, 3, 4, 5, 6, 0]),
            &empty
        ));
    }
}
