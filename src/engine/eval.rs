//! Matching one document: index its fields, collect candidates, evaluate.

use regex_automata::{Input, PatternSet};

use super::compile::{CLeaf, CLeafKind, Compiled, FeatureId, Node, PTok};
use super::{Highlight, TopicMatch, MAX_HIGHLIGHTS};
use crate::document::Document;
use crate::query::accepts_kind;
use crate::searches::{SearchIdx, TopicIdx};
use crate::text::{self, FoldedField, TokenKind, Tokens};

/// One occurrence of a feature in a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Occ {
    pub feature: FeatureId,
    pub field: u8,
    /// First and last token positions covered.
    pub pos: u32,
    pub pos_end: u32,
    /// Original byte range.
    pub start: u32,
    pub end: u32,
    pub kind: TokenKind,
}

/// A span a leaf matched: field, token positions, byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Span {
    pub field: u8,
    pub pos: u32,
    pub pos_end: u32,
    pub start: u32,
    pub end: u32,
}

impl Span {
    fn of(o: &Occ) -> Span {
        Span {
            field: o.field,
            pos: o.pos,
            pos_end: o.pos_end,
            start: o.start,
            end: o.end,
        }
    }
}

/// The indexed document: tokens of both fields and the sorted occurrences.
struct DocIndex<'d> {
    doc: &'d Document<'d>,
    fields: &'d [Tokens; 2],
    occs: &'d [Occ],
}

impl DocIndex<'_> {
    fn occs_of(&self, f: FeatureId) -> &[Occ] {
        let lo = self.occs.partition_point(|o| o.feature < f);
        let hi = lo + self.occs[lo..].partition_point(|o| o.feature == f);
        &self.occs[lo..hi]
    }

    /// Whether the document token under `o` satisfies the phrase token `p`.
    fn accepts(&self, p: &PTok, o: &Occ) -> bool {
        if !accepts_kind(p.kind, o.kind) {
            return false;
        }
        match &p.raw {
            None => true,
            Some(raw) => {
                let text = self.doc.field(o.field as usize).unwrap_or("");
                let t = &self.fields[o.field as usize].tokens[o.pos as usize];
                text[t.body_start as usize..t.end as usize] == **raw
            }
        }
    }

    /// Whether token `pos` of `field` satisfies `p`.
    fn token_accepts(&self, p: &PTok, field: u8, pos: u32) -> Option<Occ> {
        let occs = self.occs_of(p.feature);
        let i = occs.partition_point(|o| (o.field, o.pos) < (field, pos));
        occs.get(i)
            .filter(|o| o.field == field && o.pos == pos && self.accepts(p, o))
            .copied()
    }
}

/// Per-thread state for matching, sized for one matcher and reused for every
/// document, so that matching allocates nothing per search.
pub struct Scratch {
    fields: [Tokens; 2],
    folded: FoldedField,
    occs: Vec<Occ>,
    /// `cand_stamp[s] == stamp` when search `s` is already a candidate.
    cand_stamp: Vec<u32>,
    leaf_stamp: Vec<u32>,
    leaf_value: Vec<bool>,
    stamp: u32,
    candidates: Vec<u32>,
    matched: Vec<(TopicIdx, u32)>,
    spans: Vec<Span>,
    spans2: Vec<Span>,
    slop_positions: Vec<Vec<u32>>,
    slop_starts: Vec<u32>,
    slop_used: Vec<u32>,
    patterns: Option<PatternSet>,
    results: Vec<TopicMatch>,
    n_results: usize,
}

impl Scratch {
    pub(crate) fn new(c: &Compiled) -> Scratch {
        Scratch {
            fields: [Tokens::new(), Tokens::new()],
            folded: FoldedField::default(),
            occs: Vec::with_capacity(64),
            cand_stamp: vec![0; c.searches.len()],
            leaf_stamp: vec![0; c.leaves.len()],
            leaf_value: vec![false; c.leaves.len()],
            stamp: 0,
            candidates: Vec::new(),
            matched: Vec::new(),
            spans: Vec::new(),
            spans2: Vec::new(),
            slop_positions: Vec::new(),
            slop_starts: Vec::new(),
            slop_used: Vec::new(),
            patterns: c
                .regex_set
                .as_ref()
                .map(|r| PatternSet::new(r.pattern_len())),
            results: Vec::new(),
            n_results: 0,
        }
    }

    fn next_stamp(&mut self) {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.cand_stamp.fill(0);
            self.leaf_stamp.fill(0);
            self.stamp = 1;
        }
    }

    /// How many candidate searches the last document woke up (searches
    /// whose anchors occurred), a measure of the work per document.
    pub fn last_candidates(&self) -> usize {
        self.candidates.len()
    }

    /// How many feature occurrences the last document had.
    pub fn last_occurrences(&self) -> usize {
        self.occs.len()
    }

    pub(crate) fn run(
        &mut self,
        c: &Compiled,
        doc: &Document<'_>,
        only: Option<&[bool]>,
    ) -> &[TopicMatch] {
        assert_eq!(
            self.cand_stamp.len(),
            c.searches.len(),
            "scratch made for another matcher"
        );
        self.next_stamp();
        self.n_results = 0;
        self.occs.clear();
        self.candidates.clear();
        self.index(c, doc);
        self.occs.sort_unstable();
        self.occs.dedup_by(|a, b| {
            (a.feature, a.field, a.pos, a.pos_end, a.start)
                == (b.feature, b.field, b.pos, b.pos_end, b.start)
        });

        // Candidates from the posting lists of the features present.
        self.candidates.clear();
        let mut last = u32::MAX;
        for o in &self.occs {
            if o.feature == last {
                continue;
            }
            last = o.feature;
            let f = o.feature as usize;
            for &s in &c.post[c.post_off[f] as usize..c.post_off[f + 1] as usize] {
                if self.cand_stamp[s as usize] != self.stamp {
                    self.cand_stamp[s as usize] = self.stamp;
                    self.candidates.push(s);
                }
            }
        }
        if self.candidates.is_empty() {
            return &[];
        }

        let mut e = Eval {
            c,
            d: DocIndex {
                doc,
                fields: &self.fields,
                occs: &self.occs,
            },
            leaf_stamp: &mut self.leaf_stamp,
            leaf_value: &mut self.leaf_value,
            stamp: self.stamp,
            spans: &mut self.spans,
            spans2: &mut self.spans2,
            slop_positions: &mut self.slop_positions,
            slop_starts: &mut self.slop_starts,
            slop_used: &mut self.slop_used,
        };
        self.matched.clear();
        for &s in &self.candidates {
            if only.is_some_and(|only| !only[s as usize]) {
                continue;
            }
            let search = &c.searches[s as usize];
            if search.filters.as_ref().is_some_and(|f| !f.admits(doc)) {
                continue;
            }
            if e.node(search.root) {
                self.matched.push((search.topic, s));
            }
        }
        if self.matched.is_empty() {
            return &[];
        }
        // Group by topic; searches sorted by id within a topic.
        self.matched.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| {
                c.searches[a.1 as usize]
                    .id
                    .cmp(&c.searches[b.1 as usize].id)
            })
        });
        let mut i = 0;
        while i < self.matched.len() {
            let topic = self.matched[i].0;
            if self.results.len() == self.n_results {
                self.results.push(TopicMatch::default());
            }
            let r = &mut self.results[self.n_results];
            self.n_results += 1;
            r.topic = topic;
            r.searches.clear();
            r.highlights.clear();
            while i < self.matched.len() && self.matched[i].0 == topic {
                let s = self.matched[i].1;
                r.searches.push(SearchIdx(s));
                if r.highlights.len() < MAX_HIGHLIGHTS {
                    for &leaf in c.positive.get(s as usize) {
                        e.spans.clear();
                        let mut out = std::mem::take(e.spans);
                        e.leaf_spans(leaf, &mut out, false);
                        out.sort_unstable();
                        for sp in &out {
                            r.highlights.push(Highlight {
                                search: SearchIdx(s),
                                field: sp.field,
                                start: sp.start,
                                end: sp.end,
                            });
                        }
                        *e.spans = out;
                    }
                    r.highlights.sort_unstable();
                    r.highlights.dedup();
                    r.highlights.truncate(MAX_HIGHLIGHTS);
                }
                i += 1;
            }
        }
        &self.results[..self.n_results]
    }

    /// Fills `occs` with every feature occurrence of the document.
    fn index(&mut self, c: &Compiled, doc: &Document<'_>) {
        for field in 0..2u8 {
            let tokens = &mut self.fields[field as usize];
            let Some(text) = doc.field(field as usize) else {
                tokens.analyze("");
                continue;
            };
            tokens.analyze(text);
            for (pos, t) in tokens.tokens.iter().enumerate() {
                let body = &tokens.folded[t.folded_start as usize..t.folded_end as usize];
                if let Some(&feature) = c.terms.get(body) {
                    self.occs.push(Occ {
                        feature,
                        field,
                        pos: pos as u32,
                        pos_end: pos as u32,
                        start: t.start,
                        end: t.end,
                        kind: t.kind,
                    });
                }
            }
            // A wildcard occurrence at token `pos`, if the pattern holds.
            let wild_at = |occs: &mut Vec<Occ>, w: u32, pos: usize| {
                let t = tokens.tokens[pos];
                let wc = &c.wildcards[w as usize];
                let body = &tokens.folded[t.folded_start as usize..t.folded_end as usize];
                if accepts_kind(wc.kind, t.kind) && wc.matches(body) {
                    occs.push(Occ {
                        feature: c.wild_base + w,
                        field,
                        pos: pos as u32,
                        pos_end: pos as u32,
                        start: t.start,
                        end: t.end,
                        kind: t.kind,
                    });
                }
            };
            if let Some(trie) = &c.prefix_trie {
                for (pos, t) in tokens.tokens.iter().enumerate() {
                    let body = &tokens.folded[t.folded_start as usize..t.folded_end as usize];
                    walk_prefixes(trie, body.as_bytes(), |prefix| {
                        for &w in c.prefix_wilds.get(prefix) {
                            wild_at(&mut self.occs, w, pos);
                        }
                    });
                }
            }
            if let Some(ac) = &c.wild_ac {
                for m in ac.find_overlapping_iter(tokens.folded.as_str()) {
                    let pos = tokens
                        .tokens
                        .partition_point(|t| t.folded_end as usize <= m.start());
                    for &w in c.frag_wilds.get(m.pattern().as_usize()) {
                        wild_at(&mut self.occs, w, pos);
                    }
                }
            }
            if let (Some(ac), true) = (&c.cjk_ac, tokens.has_cjk) {
                text::fold_with_offsets(text, &mut self.folded);
                for m in ac.find_overlapping_iter(self.folded.text.as_str()) {
                    let (start, end) = self.folded.original_range(m.start(), m.end());
                    let (pos, pos_end) = tokens.positions_of(start, end);
                    self.occs.push(Occ {
                        feature: c.cjk_base + m.pattern().as_u32(),
                        field,
                        pos,
                        pos_end,
                        start,
                        end,
                        kind: TokenKind::Word,
                    });
                }
            }
            if let (Some(set), Some(patterns)) = (&c.regex_set, &mut self.patterns) {
                patterns.clear();
                set.which_overlapping_matches(&Input::new(text), patterns);
                for p in patterns.iter() {
                    for m in c.regexes[p.as_usize()].find_iter(text) {
                        let (start, end) = (m.start() as u32, m.end() as u32);
                        let (pos, pos_end) = tokens.positions_of(start, end);
                        self.occs.push(Occ {
                            feature: c.regex_base + p.as_u32(),
                            field,
                            pos,
                            pos_end,
                            start,
                            end,
                            kind: TokenKind::Word,
                        });
                    }
                }
            }
        }
    }
}

/// Calls `found` with the id of every pattern of the anchored `trie` that is
/// a prefix of `bytes`.
#[inline]
fn walk_prefixes(
    trie: &aho_corasick::nfa::contiguous::NFA,
    bytes: &[u8],
    mut found: impl FnMut(usize),
) {
    use aho_corasick::automaton::Automaton;
    use aho_corasick::Anchored;
    let Ok(mut sid) = trie.start_state(Anchored::Yes) else {
        return;
    };
    for (depth, &b) in bytes.iter().enumerate() {
        sid = trie.next_state(Anchored::Yes, sid, b);
        if trie.is_special(sid) {
            if trie.is_dead(sid) {
                return;
            }
            if trie.is_match(sid) {
                for i in 0..trie.match_len(sid) {
                    let pid = trie.match_pattern(sid, i);
                    // A match state also lists patterns that are suffixes of
                    // the path; only those that start at the token start
                    // count.
                    if trie.pattern_len(pid) == depth + 1 {
                        found(pid.as_usize());
                    }
                }
            }
        }
    }
}

struct Eval<'a> {
    c: &'a Compiled,
    d: DocIndex<'a>,
    leaf_stamp: &'a mut Vec<u32>,
    leaf_value: &'a mut Vec<bool>,
    stamp: u32,
    spans: &'a mut Vec<Span>,
    spans2: &'a mut Vec<Span>,
    slop_positions: &'a mut Vec<Vec<u32>>,
    slop_starts: &'a mut Vec<u32>,
    slop_used: &'a mut Vec<u32>,
}

impl Eval<'_> {
    fn node(&mut self, n: u32) -> bool {
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
            Node::Near {
                left,
                left_len,
                right_len,
                max_gap,
                ordered,
            } => self.near(left, left_len, right_len, max_gap, ordered),
        }
    }

    fn leaf(&mut self, l: u32) -> bool {
        if self.leaf_stamp[l as usize] == self.stamp {
            return self.leaf_value[l as usize];
        }
        let mut out = std::mem::take(self.spans);
        out.clear();
        self.leaf_spans(l, &mut out, true);
        let v = !out.is_empty();
        *self.spans = out;
        self.leaf_stamp[l as usize] = self.stamp;
        self.leaf_value[l as usize] = v;
        v
    }

    fn near(
        &mut self,
        left: u32,
        left_len: u32,
        right_len: u32,
        max_gap: u32,
        ordered: bool,
    ) -> bool {
        let mut a = std::mem::take(self.spans);
        let mut b = std::mem::take(self.spans2);
        a.clear();
        b.clear();
        for i in left..left + left_len {
            self.leaf_spans(self.c.children[i as usize], &mut a, false);
        }
        let mut found = false;
        if !a.is_empty() {
            for i in left + left_len..left + left_len + right_len {
                self.leaf_spans(self.c.children[i as usize], &mut b, false);
            }
            found = a
                .iter()
                .any(|x| b.iter().any(|y| spans_near(x, y, max_gap, ordered)));
        }
        *self.spans = a;
        *self.spans2 = b;
        found
    }

    /// Appends the spans where leaf `l` matches; with `first_only`, stops
    /// after the first.
    fn leaf_spans(&mut self, l: u32, out: &mut Vec<Span>, first_only: bool) {
        let c = self.c;
        let leaf: &CLeaf = &c.leaves[l as usize];
        match leaf.kind {
            CLeafKind::Feature(f) => {
                for o in self.d.occs_of(f) {
                    if leaf.fields.allows(o.field) {
                        out.push(Span::of(o));
                        if first_only {
                            return;
                        }
                    }
                }
            }
            CLeafKind::Tokens {
                start,
                len,
                slop: None,
            } => {
                let toks = &c.ptoks[start as usize..(start + len) as usize];
                for o in self.d.occs_of(toks[0].feature) {
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
                        out.push(Span {
                            field: o.field,
                            pos: o.pos,
                            pos_end: last.pos,
                            start: o.start,
                            end: last.end,
                        });
                        if first_only {
                            return;
                        }
                    }
                }
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
                    self.slop_spans(toks, slop, field, out, first_only);
                    if first_only && !out.is_empty() {
                        return;
                    }
                }
            }
        }
    }

    /// Spans of `"a b c"~slop` in one field: for every position holding a
    /// token that one of the phrase's tokens accepts, the smallest window
    /// starting there (at most `len + slop` positions) in which every phrase
    /// token gets a distinct position.
    fn slop_spans(
        &mut self,
        toks: &[PTok],
        slop: u32,
        field: u8,
        out: &mut Vec<Span>,
        first_only: bool,
    ) {
        let width = toks.len() as u32 + slop;
        while self.slop_positions.len() < toks.len() {
            self.slop_positions.push(Vec::new());
        }
        let mut starts = std::mem::take(self.slop_starts);
        starts.clear();
        for (i, p) in toks.iter().enumerate() {
            let list = &mut self.slop_positions[i];
            list.clear();
            for o in self.d.occs_of(p.feature) {
                if o.field == field && self.d.accepts(p, o) {
                    list.push(o.pos);
                    starts.push(o.pos);
                }
            }
            if list.is_empty() {
                *self.slop_starts = starts;
                return;
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let n_tokens = self.d.fields[field as usize].len() as u32;
        let lists = &self.slop_positions[..toks.len()];
        let mut used = std::mem::take(self.slop_used);
        'starts: for &s in starts.iter() {
            let last = (s + width - 1).min(n_tokens.saturating_sub(1));
            for e in s..=last {
                if assignable(lists, s, e, &mut used) {
                    let t = &self.d.fields[field as usize].tokens;
                    out.push(Span {
                        field,
                        pos: s,
                        pos_end: e,
                        start: t[s as usize].start,
                        end: t[e as usize].end,
                    });
                    if first_only {
                        break 'starts;
                    }
                    break;
                }
            }
        }
        *self.slop_used = used;
        *self.slop_starts = starts;
    }
}

/// Whether every list can be given a distinct position within `[s, e]`
/// (backtracking; phrases are short).
pub(crate) fn assignable(lists: &[Vec<u32>], s: u32, e: u32, used: &mut Vec<u32>) -> bool {
    fn go(lists: &[Vec<u32>], i: usize, s: u32, e: u32, used: &mut Vec<u32>) -> bool {
        if i == lists.len() {
            return true;
        }
        for &p in &lists[i] {
            if p < s || p > e || used.contains(&p) {
                continue;
            }
            used.push(p);
            if go(lists, i + 1, s, e, used) {
                return true;
            }
            used.pop();
        }
        false
    }
    used.clear();
    go(lists, 0, s, e, used)
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
