//! The reference evaluator: every search's syntax tree evaluated on its own,
//! directly against the document's tokens, with no automaton, no term table
//! and no candidate selection.
//!
//! It defines what the compiled [`super::Matcher`] must return (docs/query-language.md §3.6):
//! the property tests compare the two on random searches and documents, and
//! the benchmarks use it as the baseline. It shares only the text model
//! (tokens and folding) and the metadata comparisons with the engine, and is
//! written for obviousness, not speed.

use std::collections::HashMap;

use regex_automata::meta::Regex;

use super::{Highlight, TopicMatch, MAX_HIGHLIGHTS};
use crate::document::Document;
use crate::query::{accepts_kind, Expr, Leaf, LeafKind, QueryToken, TokensLeaf};
use crate::searches::{Catalog, SearchIdx};
use crate::text::{self, FoldedField, Tokens};

/// An occurrence: field, first and last token position, byte range.
pub(super) type Occurrence = (u8, u32, u32, u32, u32);

/// Evaluates each search of a catalog separately.
pub struct Reference<'c> {
    catalog: &'c Catalog,
    regexes: HashMap<String, Regex>,
}

impl<'c> Reference<'c> {
    /// A reference evaluator over `catalog`.
    pub fn new(catalog: &'c Catalog) -> Reference<'c> {
        let mut regexes = HashMap::new();
        for s in &catalog.searches {
            s.query.expr.for_each_leaf(true, &mut |l, _| {
                if let LeafKind::Regex(p) = &l.kind {
                    regexes
                        .entry(p.clone())
                        .or_insert_with(|| Regex::new(p).expect("validated"));
                }
            });
        }
        Reference { catalog, regexes }
    }

    /// The catalog it evaluates.
    pub(super) fn catalog(&self) -> &Catalog {
        self.catalog
    }

    /// `doc`'s title and text, tokenized.
    pub(super) fn tokens(doc: &Document<'_>) -> [Tokens; 2] {
        let mut fields = [Tokens::new(), Tokens::new()];
        for (i, f) in fields.iter_mut().enumerate() {
            f.analyze(doc.field(i).unwrap_or(""));
        }
        fields
    }

    /// An evaluation context over `doc` and its `fields` ([`Reference::tokens`]).
    pub(super) fn context<'a>(&'a self, doc: &'a Document<'a>, fields: &'a [Tokens; 2]) -> Ctx<'a> {
        Ctx {
            doc,
            fields,
            regexes: &self.regexes,
        }
    }

    /// The matches of `doc`, in the engine's output form and order.
    pub fn match_document(&self, doc: &Document<'_>) -> Vec<TopicMatch> {
        let fields = Reference::tokens(doc);
        let ctx = self.context(doc, &fields);
        let mut out: Vec<TopicMatch> = Vec::new();
        let mut order: Vec<usize> = (0..self.catalog.searches.len()).collect();
        order.sort_by(|&a, &b| {
            let (sa, sb) = (&self.catalog.searches[a], &self.catalog.searches[b]);
            sa.topic.cmp(&sb.topic).then_with(|| sa.id.cmp(&sb.id))
        });
        for i in order {
            let s = &self.catalog.searches[i];
            if s.filters.as_ref().is_some_and(|f| !f.admits(doc)) {
                continue;
            }
            if !ctx.eval(&s.query.expr) {
                continue;
            }
            if out.last().is_none_or(|m| m.topic != s.topic) {
                out.push(TopicMatch {
                    topic: s.topic,
                    searches: Vec::new(),
                    highlights: Vec::new(),
                });
            }
            let m = out.last_mut().expect("pushed");
            m.searches.push(SearchIdx(i as u32));
            if m.highlights.len() < MAX_HIGHLIGHTS {
                s.query.expr.for_each_leaf(true, &mut |leaf, positive| {
                    if positive && !matches!(leaf.kind, LeafKind::Meta(..)) {
                        for (field, _, _, start, end) in ctx.occurrences(leaf) {
                            m.highlights.push(Highlight {
                                search: SearchIdx(i as u32),
                                field,
                                start,
                                end,
                            });
                        }
                    }
                });
                m.highlights.sort_unstable();
                m.highlights.dedup();
                m.highlights.truncate(MAX_HIGHLIGHTS);
            }
        }
        out
    }
}

pub(super) struct Ctx<'a> {
    doc: &'a Document<'a>,
    fields: &'a [Tokens; 2],
    regexes: &'a HashMap<String, Regex>,
}

impl Ctx<'_> {
    /// The document evaluated.
    pub(super) fn doc(&self) -> &Document<'_> {
        self.doc
    }

    pub(super) fn eval(&self, e: &Expr) -> bool {
        match e {
            Expr::Or(c) => c.iter().any(|e| self.eval(e)),
            Expr::And(c) => c.iter().all(|e| self.eval(e)),
            Expr::Not(c) => !self.eval(c),
            Expr::Leaf(l) => match &l.kind {
                LeafKind::Meta(field, value) => self.doc.meta_matches(*field, value),
                _ => !self.occurrences(l).is_empty(),
            },
            Expr::Near(n) => {
                let a: Vec<Occurrence> = n.left.iter().flat_map(|l| self.occurrences(l)).collect();
                let b: Vec<Occurrence> = n.right.iter().flat_map(|l| self.occurrences(l)).collect();
                a.iter().any(|x| {
                    b.iter().any(|y| {
                        if x.0 != y.0 {
                            return false;
                        }
                        // Tokens strictly between the two occurrences.
                        let between = |first: &Occurrence, second: &Occurrence| {
                            (first.2 < second.1).then(|| second.1 - first.2 - 1)
                        };
                        let forward = between(x, y).is_some_and(|g| g <= n.max_gap);
                        let backward = !n.ordered && between(y, x).is_some_and(|g| g <= n.max_gap);
                        forward || backward
                    })
                })
            }
        }
    }

    fn token_is(&self, field: u8, pos: usize, q: &QueryToken, case_sensitive: bool) -> bool {
        let f = &self.fields[field as usize];
        let Some(t) = f.tokens.get(pos) else {
            return false;
        };
        if !accepts_kind(q.kind, t.kind) || f.folded_body(pos) != q.folded {
            return false;
        }
        !case_sensitive || f.raw_body(self.doc.field(field as usize).unwrap_or(""), pos) == q.raw
    }

    pub(super) fn occurrences(&self, leaf: &Leaf) -> Vec<Occurrence> {
        let mut out = Vec::new();
        for field in 0..2u8 {
            if !leaf.fields.allows(field) {
                continue;
            }
            let Some(text) = self.doc.field(field as usize) else {
                continue;
            };
            let f = &self.fields[field as usize];
            let tok = |p: u32| f.tokens[p as usize];
            match &leaf.kind {
                LeafKind::Tokens(TokensLeaf {
                    tokens,
                    slop: None,
                    case_sensitive,
                }) => {
                    for p in 0..f.len() {
                        if (0..tokens.len())
                            .all(|i| self.token_is(field, p + i, &tokens[i], *case_sensitive))
                        {
                            let last = (p + tokens.len() - 1) as u32;
                            out.push((field, p as u32, last, tok(p as u32).start, tok(last).end));
                        }
                    }
                }
                LeafKind::Tokens(TokensLeaf {
                    tokens,
                    slop: Some(slop),
                    case_sensitive,
                }) => {
                    let width = tokens.len() + *slop as usize;
                    let fits = |p: usize| {
                        tokens
                            .iter()
                            .any(|q| self.token_is(field, p, q, *case_sensitive))
                    };
                    for s in (0..f.len()).filter(|&s| fits(s)) {
                        // The smallest window starting at `s` that holds every
                        // phrase token at a distinct position.
                        let end = (s + width).min(f.len());
                        if let Some(e) = (s..end).find(|&e| {
                            let mut used = vec![false; e - s + 1];
                            assign(tokens, s, &mut used, &|p, q| {
                                self.token_is(field, p, q, *case_sensitive)
                            })
                        }) {
                            out.push((
                                field,
                                s as u32,
                                e as u32,
                                tok(s as u32).start,
                                tok(e as u32).end,
                            ));
                        }
                    }
                }
                LeafKind::Wildcard(w) => {
                    for p in 0..f.len() {
                        if accepts_kind(w.kind, f.tokens[p].kind) && w.matches(f.folded_body(p)) {
                            out.push((
                                field,
                                p as u32,
                                p as u32,
                                tok(p as u32).start,
                                tok(p as u32).end,
                            ));
                        }
                    }
                }
                // A CJK term that folds to nothing (a lone halfwidth sound
                // mark, `ﾞ`) occurs nowhere, as in the engine.
                LeafKind::Cjk(needle) if needle.is_empty() => {}
                LeafKind::Cjk(needle) => {
                    let mut folded = FoldedField::default();
                    text::fold_with_offsets(text, &mut folded);
                    for (i, _) in folded.text.char_indices() {
                        if folded.text[i..].starts_with(needle.as_str()) {
                            let (start, end) = folded.original_range(i, i + needle.len());
                            let (p, q) = f.positions_of(start, end);
                            out.push((field, p, q, start, end));
                        }
                    }
                }
                LeafKind::Regex(pattern) => {
                    for m in self.regexes[pattern].find_iter(text) {
                        let (p, q) = f.positions_of(m.start() as u32, m.end() as u32);
                        out.push((field, p, q, m.start() as u32, m.end() as u32));
                    }
                }
                LeafKind::Meta(..) => {}
            }
        }
        out
    }
}

/// Whether every query token can have its own position of the window
/// starting at `s` (`used` has one slot per window position, all free):
/// a bipartite matching, found by augmenting paths (Kuhn's algorithm), so
/// it takes polynomial time even when it fails — a depth-first search
/// over assignments took hours on a repeated word.
fn assign(
    tokens: &[QueryToken],
    s: usize,
    used: &mut [bool],
    is: &dyn Fn(usize, &QueryToken) -> bool,
) -> bool {
    if tokens.len() > used.len() {
        return false;
    }
    // owner[k]: the query token holding window position k.
    let mut owner: Vec<Option<usize>> = vec![None; used.len()];
    fn augment(
        t: usize,
        tokens: &[QueryToken],
        s: usize,
        seen: &mut [bool],
        owner: &mut [Option<usize>],
        is: &dyn Fn(usize, &QueryToken) -> bool,
    ) -> bool {
        for k in 0..owner.len() {
            if seen[k] || !is(s + k, &tokens[t]) {
                continue;
            }
            seen[k] = true;
            let free = match owner[k] {
                None => true,
                Some(other) => augment(other, tokens, s, seen, owner, is),
            };
            if free {
                owner[k] = Some(t);
                return true;
            }
        }
        false
    }
    for t in 0..tokens.len() {
        used.fill(false);
        if !augment(t, tokens, s, used, &mut owner, is) {
            return false;
        }
    }
    true
}
