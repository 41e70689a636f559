//! Step 2 of the `engine` module doc, the index of a document: its
//! fields tokenized and folded, then every feature occurrence in
//! `Scratch::occs` — each token's term (`term_table`) and the literal
//! wildcard prefixes it starts with (`prefixes`), the other wildcards by
//! their fragments' automaton, CJK terms by theirs, regexes over the
//! original text. [`Scratch::run`] sorts them and reads them from there.

use super::compile::{Compiled, FeatureId};
use super::doc_index::Occ;
use super::eval::Scratch;
use crate::document::Document;
use crate::query::accepts_kind;
use crate::text::{self, TokenKind, Tokens};

impl Scratch {
    /// Fills `occs` with every feature occurrence of the document.
    pub(super) fn index(&mut self, c: &Compiled, doc: &Document<'_>) {
        self.occs_need_full_sort = false;
        for field in 0..2u8 {
            let tokens = &mut self.fields[field as usize];
            let Some(text) = doc.field(field as usize) else {
                tokens.analyze("");
                continue;
            };
            tokens.analyze(text);
            self.work += tokens.len() as u64;
            // `Occ::token_key` holds token numbers below 2^31.
            self.occs_need_full_sort |= tokens.len() > Occ::MAX_KEYED_TOKENS;
            // Every token's slot first (each fetched as it is found), then
            // the compares: the tokens' cache misses overlap.
            let body_of = |t: &text::Token| {
                &tokens.folded.as_bytes()[t.folded_start as usize..t.folded_end as usize]
            };
            self.probes.clear();
            self.probes
                .extend(tokens.tokens.iter().map(|t| c.terms.locate(body_of(t))));
            // A wildcard occurrence at token `pos`, if the pattern holds.
            let wild_at = |occs: &mut Vec<Occ>, w: u32, pos: usize| {
                let t = tokens.tokens[pos];
                let wc = &c.wildcards[w as usize];
                let body = &tokens.folded[t.folded_start as usize..t.folded_end as usize];
                if accepts_kind(wc.kind, t.kind) && wc.matches(body) {
                    occs.push(Occ::at_token(c.wild_base + w, field, pos, &t));
                }
            };
            // Each token's term, then the wildcard prefixes it starts with
            // (looked up only where a term's bit says some prefix may).
            for (pos, (t, &p)) in tokens.tokens.iter().zip(&self.probes).enumerate() {
                let feature = c.terms.find_at(body_of(t), p);
                if let Some(feature) = feature {
                    self.occs.push(Occ::at_token(feature, field, pos, t));
                }
                let Some(table) = &c.prefix_table else {
                    continue;
                };
                if feature.is_some_and(|f| !c.term_has_prefix(f)) {
                    continue;
                }
                table.each_prefix_of(body_of(t), |prefix| {
                    if let Some(alone) = c.prefix_hits[prefix].alone(t.kind) {
                        if let Some(w) = alone {
                            self.occs
                                .push(Occ::at_token(c.wild_base + w, field, pos, t));
                        }
                        return;
                    }
                    for &w in c.prefix_wilds.get(prefix) {
                        // `lit*` holds wherever its prefix starts a token.
                        if !c.prefix_only[w as usize] {
                            wild_at(&mut self.occs, w, pos);
                        } else if accepts_kind(c.wildcards[w as usize].kind, t.kind) {
                            self.occs
                                .push(Occ::at_token(c.wild_base + w, field, pos, t));
                        }
                    }
                });
            }
            if let Some(ac) = &c.wild_ac {
                // A fragment occurs many times in a long token ("aaaa…"):
                // each (fragment, token) is verified once.
                for m in ac.find_overlapping_iter(tokens.folded.as_str()) {
                    self.work += 1;
                    let pos = tokens
                        .tokens
                        .partition_point(|t| t.folded_end as usize <= m.start());
                    let p = m.pattern().as_usize();
                    let key = frag_key(self.stamp, field, pos);
                    if self.frag_seen[p] == key {
                        continue;
                    }
                    self.frag_seen[p] = key;
                    for &w in c.frag_wilds.get(p) {
                        wild_at(&mut self.occs, w, pos);
                    }
                }
            }
            if let (Some(ac), true) = (&c.cjk_ac, tokens.has_cjk) {
                text::fold_with_offsets(text, &mut self.folded);
                for m in ac.find_overlapping_iter(self.folded.text.as_str()) {
                    self.work += 1;
                    // A CJK term that folds to nothing (a lone halfwidth
                    // sound mark) is an empty pattern: it occurs nowhere.
                    if m.is_empty() {
                        continue;
                    }
                    let (start, end) = self.folded.original_range(m.start(), m.end());
                    let feature = c.cjk_base + m.pattern().as_u32();
                    self.occs.push(in_text(feature, field, tokens, start, end));
                    self.occs_need_full_sort = true;
                }
            }
            if !c.regexes.is_empty() {
                let (work, occs) = (&mut self.work, &mut self.occs);
                let full_sort = &mut self.occs_need_full_sort;
                c.regexes
                    .for_each_match(text, &mut self.regex, |r, start, end| {
                        *work += 1;
                        *full_sort = true;
                        let (start, end) = (start as u32, end as u32);
                        occs.push(in_text(c.regex_base + r, field, tokens, start, end));
                    });
            }
        }
    }
}

/// The `frag_seen` entry of token `pos` of `field` in the document of
/// `stamp` (never 0: stamps start at 1).
fn frag_key(stamp: u32, field: u8, pos: usize) -> u64 {
    (u64::from(stamp) << 32) | (u64::from(field) << 31) | (pos as u64 & 0x7fff_ffff)
}

/// An occurrence of `feature` at bytes `start..end` of `field`, over the
/// tokens it touches (a CJK term or a regex match: a word).
fn in_text(feature: FeatureId, field: u8, tokens: &Tokens, start: u32, end: u32) -> Occ {
    let (pos, pos_end) = tokens.positions_of(start, end);
    Occ {
        feature,
        field,
        pos,
        pos_end,
        start,
        end,
        kind: TokenKind::Word,
    }
}
