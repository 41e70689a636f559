//! What a document is once indexed for matching: its occurrences of the
//! catalog's features, sorted by feature, and where each feature's are
//! (step 3 of the `engine` module doc). Made by `eval::Scratch` for each
//! document and read by evaluation (`tree`, `slop`).

use super::compile::{FeatureId, PTok};
use crate::document::Document;
use crate::query::accepts_kind;
use crate::text::{TokenKind, Tokens};

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

impl Occ {
    /// The most tokens a field may have for [`Occ::token_key`].
    pub(super) const MAX_KEYED_TOKENS: usize = 1 << 31;

    /// Feature, field and token in one word, in that order: for the
    /// occurrences of one token each ([`Occ::at_token`], tokens below
    /// [`Occ::MAX_KEYED_TOKENS`]) it orders them as the derived order
    /// does, and two are equal exactly when their keys are.
    #[inline]
    pub(super) fn token_key(&self) -> u64 {
        u64::from(self.feature) << 32 | u64::from(self.field) << 31 | u64::from(self.pos)
    }

    /// The feature, field and token of a [`Occ::token_key`].
    #[inline]
    pub(super) fn token_of_key(key: u64) -> (FeatureId, u8, usize) {
        (
            (key >> 32) as FeatureId,
            (key >> 31 & 1) as u8,
            (key & 0x7fff_ffff) as usize,
        )
    }

    /// The occurrence of `feature` that is token `pos` of `field`.
    #[inline]
    pub(super) fn at_token(
        feature: FeatureId,
        field: u8,
        pos: usize,
        t: &crate::text::Token,
    ) -> Occ {
        Occ {
            feature,
            field,
            pos: pos as u32,
            pos_end: pos as u32,
            start: t.start,
            end: t.end,
            kind: t.kind,
        }
    }
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
    pub(super) fn of(o: &Occ) -> Span {
        Span {
            field: o.field,
            pos: o.pos,
            pos_end: o.pos_end,
            start: o.start,
            end: o.end,
        }
    }

    /// From the first token of `first` to the last of `last` (one field).
    pub(super) fn between(first: &Occ, last: &Occ) -> Span {
        Span {
            field: first.field,
            pos: first.pos,
            pos_end: last.pos,
            start: first.start,
            end: last.end,
        }
    }
}

/// The indexed document: tokens of both fields, the occurrences sorted by
/// feature, and where each present feature's occurrences are.
pub(crate) struct DocIndex<'d> {
    pub(super) doc: &'d Document<'d>,
    pub fields: &'d [Tokens; 2],
    pub(super) occs: &'d [Occ],
    /// `occs[feat_occs[f].0..feat_occs[f].1]` are the occurrences of `f`
    /// when `feat_stamp[f] == stamp` (none otherwise): a leaf finds its
    /// occurrences in one step, not two binary searches over the document
    /// (which were most of a leaf's cost on long posts).
    pub(super) feat_stamp: &'d [u32],
    pub(super) feat_occs: &'d [(u32, u32)],
    pub(super) stamp: u32,
}

impl DocIndex<'_> {
    #[inline]
    pub fn occs_of(&self, f: FeatureId) -> &[Occ] {
        let f = f as usize;
        if self.feat_stamp.get(f) != Some(&self.stamp) {
            return &[];
        }
        let (lo, hi) = self.feat_occs[f];
        &self.occs[lo as usize..hi as usize]
    }

    /// Whether the document token under `o` satisfies the phrase token `p`.
    pub fn accepts(&self, p: &PTok, o: &Occ) -> bool {
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
    pub(super) fn token_accepts(&self, p: &PTok, field: u8, pos: u32) -> Option<Occ> {
        let occs = self.occs_of(p.feature);
        let i = occs.partition_point(|o| (o.field, o.pos) < (field, pos));
        occs.get(i)
            .filter(|o| o.field == field && o.pos == pos && self.accepts(p, o))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::Occ;
    use crate::text::{Token, TokenKind};
    use proptest::prelude::*;

    proptest! {
        /// Occurrences of one token each sort by their keys as by all
        /// their fields, and two have one key exactly when they are equal:
        /// `eval::Scratch::run` sorts and deduplicates them by key.
        #[test]
        fn token_keys_order_and_tell_apart_as_the_fields_do(
            found in proptest::collection::vec((0u32..50, 0u8..2, 0usize..30), 0..60),
        ) {
            // Token `pos` of field `f`: bytes and kind from its place alone,
            // as in a document.
            let token = |field: u8, pos: usize| {
                let start = (pos * 7 + usize::from(field)) as u32;
                Token {
                    kind: if pos.is_multiple_of(3) { TokenKind::Hashtag } else { TokenKind::Word },
                    start,
                    body_start: start,
                    end: start + 5,
                    folded_start: 0,
                    folded_end: 0,
                }
            };
            let occs: Vec<Occ> = found
                .iter()
                .map(|&(feature, field, pos)| Occ::at_token(feature, field, pos, &token(field, pos)))
                .collect();
            let mut by_fields = occs.clone();
            by_fields.sort_unstable();
            by_fields.dedup();
            let mut keys: Vec<u64> = occs.iter().map(Occ::token_key).collect();
            keys.sort_unstable();
            keys.dedup();
            let by_keys: Vec<Occ> = keys
                .iter()
                .map(|&k| {
                    let (feature, field, pos) = Occ::token_of_key(k);
                    Occ::at_token(feature, field, pos, &token(field, pos))
                })
                .collect();
            prop_assert_eq!(by_keys, by_fields);
        }
    }
}
