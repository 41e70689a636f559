//! Proximity phrases `"a b c"~slop` in time near-linear in the document.
//!
//! A proximity phrase matches a window of at most `tokens + slop` positions
//! in which every phrase token gets a distinct position whose document
//! token it accepts (docs/query-language.md §3.2). For each position `s` holding a token that
//! some phrase token accepts, the span is the smallest window `[s, e]` that
//! can be so assigned.
//!
//! # Algorithm
//!
//! 1. **Types.** Phrase tokens that accept the same document tokens (same
//!    folded body, kind and case-sensitive text) form one *type* with a
//!    multiplicity: `"a a a"~1` is one type needing three positions.
//! 2. **Entries.** Every position some type accepts, with the bit mask of
//!    the types accepting it, sorted by position (one pass over each type's
//!    occurrences, then a sort).
//! 3. **Two pointers.** The smallest end `e(s)` never decreases as `s`
//!    grows (a window that can be assigned stays so when it grows on the
//!    left), so one sweep moves the end forward until the window can be
//!    assigned or is too wide, emits the span, and drops `s` from the
//!    window. Each entry enters and leaves the window once.
//! 4. **Can the window be assigned?** When every position is accepted by
//!    one type only (all phrases without a case-sensitive or a hashtag and
//!    a plain word of the same body), it can iff every type has at least its
//!    multiplicity of positions: a counter of types short of it, updated in
//!    O(1) per step. Otherwise the window's positions are grouped by mask
//!    and a small max-flow from types to masks decides (phrases hold at most
//!    [`crate::query::MAX_SLOP_TOKENS`] tokens); its cost is charged to the
//!    document's work budget.
//!
//! The earlier backtracking assignment was exponential in repeated words
//! (`"a a a a a a a a a a a a a a"~1` ran for minutes on a 26-byte post) and
//! quadratic in the window count; the reference evaluator keeps the naive
//! definition and the property test compares the two.

use super::compile::PTok;
use super::doc_index::{DocIndex, Span};

/// Reusable memory for [`SlopScratch::spans`].
#[derive(Default)]
pub(crate) struct SlopScratch {
    /// Index of the first phrase token of each type.
    reps: Vec<usize>,
    /// Phrase tokens of each type.
    mult: Vec<u32>,
    /// (position, mask of the types accepting it), sorted by position.
    entries: Vec<(u32, u64)>,
    /// Fast path: positions in the window per type.
    count: Vec<u32>,
    /// General path: distinct masks in the window with their counts.
    masks: Vec<(u64, u32)>,
    /// General path: flow from type `t` to mask `j` at `t * masks + j`.
    flow: Vec<u32>,
    seen_types: Vec<bool>,
    seen_masks: Vec<bool>,
}

/// The window's state: what it holds and whether it can be assigned.
struct Window<'s> {
    s: &'s mut SlopScratch,
    /// Every entry has one type: the counting test decides.
    single: bool,
    /// Types with fewer positions than their multiplicity (fast path).
    short: usize,
    /// Positions in the window.
    len: u32,
    /// Phrase tokens.
    tokens: u32,
    work: u64,
}

impl SlopScratch {
    /// Appends to `out` the spans of the proximity phrase `toks`~`slop` in
    /// `field`, at most `limit`, in position order. Returns the work spent.
    pub(crate) fn spans(
        &mut self,
        d: &DocIndex<'_>,
        toks: &[PTok],
        slop: u32,
        field: u8,
        out: &mut Vec<Span>,
        limit: usize,
    ) -> u64 {
        debug_assert!(toks.len() <= 64, "the parser bounds proximity phrases");
        self.reps.clear();
        self.mult.clear();
        for (i, p) in toks.iter().enumerate() {
            let same = self.reps.iter().position(|&r| {
                toks[r].feature == p.feature && toks[r].kind == p.kind && toks[r].raw == p.raw
            });
            match same {
                Some(t) => self.mult[t] += 1,
                None => {
                    self.reps.push(i);
                    self.mult.push(1);
                }
            }
        }
        let mut work = toks.len() as u64;
        self.entries.clear();
        for (t, &r) in self.reps.iter().enumerate() {
            let p = &toks[r];
            let before = self.entries.len();
            for o in d.occs_of(p.feature) {
                work += 1;
                if o.field == field && d.accepts(p, o) {
                    self.entries.push((o.pos, 1u64 << t));
                }
            }
            if self.entries.len() == before {
                return work; // a phrase token occurs nowhere
            }
        }
        self.entries.sort_unstable_by_key(|e| e.0);
        // One entry per position with the union of its types.
        let mut w = 0;
        for i in 0..self.entries.len() {
            if w > 0 && self.entries[w - 1].0 == self.entries[i].0 {
                self.entries[w - 1].1 |= self.entries[i].1;
            } else {
                self.entries[w] = self.entries[i];
                w += 1;
            }
        }
        self.entries.truncate(w);
        work += w as u64;

        let width = toks.len() as u32 + slop;
        let tokens_of_field = &d.fields[field as usize].tokens;
        let single = self.entries.iter().all(|e| e.1.count_ones() == 1);
        let entries = std::mem::take(&mut self.entries);
        self.count.clear();
        self.count.resize(self.reps.len(), 0);
        self.masks.clear();
        let short = self.reps.len();
        let mut win = Window {
            s: self,
            single,
            short,
            len: 0,
            tokens: toks.len() as u32,
            work: 0,
        };
        let mut j = 0;
        let mut emitted = 0;
        for i in 0..entries.len() {
            let s = entries[i].0;
            if j <= i {
                j = i; // the window is empty
            }
            while !win.assignable() && j < entries.len() && entries[j].0 - s < width {
                win.add(entries[j].1);
                j += 1;
            }
            if win.assignable() {
                let e = entries[j - 1].0;
                out.push(Span {
                    field,
                    pos: s,
                    pos_end: e,
                    start: tokens_of_field[s as usize].start,
                    end: tokens_of_field[e as usize].end,
                });
                emitted += 1;
                if emitted >= limit {
                    break;
                }
            } else if j == entries.len() {
                break; // no later start can be assigned either
            }
            if j > i {
                win.remove(entries[i].1);
            }
        }
        work += win.work + entries.len() as u64;
        self.entries = entries;
        work
    }
}

impl Window<'_> {
    fn add(&mut self, mask: u64) {
        self.len += 1;
        self.work += 1;
        if self.single {
            let t = mask.trailing_zeros() as usize;
            self.s.count[t] += 1;
            if self.s.count[t] == self.s.mult[t] {
                self.short -= 1;
            }
        } else {
            match self.s.masks.iter_mut().find(|m| m.0 == mask) {
                Some(m) => m.1 += 1,
                None => self.s.masks.push((mask, 1)),
            }
        }
    }

    fn remove(&mut self, mask: u64) {
        self.len -= 1;
        self.work += 1;
        if self.single {
            let t = mask.trailing_zeros() as usize;
            if self.s.count[t] == self.s.mult[t] {
                self.short += 1;
            }
            self.s.count[t] -= 1;
        } else if let Some(i) = self.s.masks.iter().position(|m| m.0 == mask) {
            self.s.masks[i].1 -= 1;
            if self.s.masks[i].1 == 0 {
                self.s.masks.swap_remove(i);
            }
        }
    }

    /// Whether every phrase token can get a distinct position of the window.
    fn assignable(&mut self) -> bool {
        if self.len < self.tokens {
            return false;
        }
        if self.single {
            return self.short == 0;
        }
        let (types, masks) = (self.s.reps.len(), self.s.masks.len());
        self.work += (types * masks) as u64 * u64::from(self.tokens);
        self.s.flow.clear();
        self.s.flow.resize(types * masks, 0);
        for t in 0..types {
            for _ in 0..self.s.mult[t] {
                self.s.seen_types.clear();
                self.s.seen_types.resize(types, false);
                self.s.seen_masks.clear();
                self.s.seen_masks.resize(masks, false);
                if !augment(self.s, t) {
                    return false;
                }
            }
        }
        true
    }
}

/// Finds room for one more position of type `t`, moving other types'
/// positions to other masks if needed (an augmenting path).
fn augment(s: &mut SlopScratch, t: usize) -> bool {
    s.seen_types[t] = true;
    let masks = s.masks.len();
    for j in 0..masks {
        if s.masks[j].0 & (1 << t) == 0 || s.seen_masks[j] {
            continue;
        }
        s.seen_masks[j] = true;
        let used: u32 = (0..s.reps.len()).map(|u| s.flow[u * masks + j]).sum();
        if used < s.masks[j].1 {
            s.flow[t * masks + j] += 1;
            return true;
        }
        // Full: let a type holding a position of this mask move elsewhere.
        for u in 0..s.reps.len() {
            if s.flow[u * masks + j] > 0 && !s.seen_types[u] && augment(s, u) {
                s.flow[u * masks + j] -= 1;
                s.flow[t * masks + j] += 1;
                return true;
            }
        }
    }
    false
}
