//! Document frequencies of the catalog's terms, for choosing anchors.
//!
//! A search is woken up by its anchor: one feature of each of its anchor
//! sets. Without knowing the text, the compiler takes the feature used by
//! the fewest *searches*, which on real posts often picks a word half the
//! stream contains (a group of ordinary words ANDed together). Given how
//! often each term occurs in *documents*, it takes the rarest one instead,
//! and orders the confirm groups rarest first, so a search is evaluated
//! only when it is likely to match. Results are the same either way: the
//! anchors only decide which searches are looked at, and every anchor set
//! is still one a match must hit.
//!
//! Data flow: compile without frequencies → [`Matcher::learn_frequencies`]
//! over a sample of documents (the occurrences the matcher finds anyway,
//! one count per distinct term per document) → [`Matcher::with_frequencies`]
//! compiles the same or a later catalog with them. Keys are folded term
//! texts, so a table learnt on one version serves the next; a term it
//! does not know falls back to the search count.

use rustc_hash::FxHashMap;

use super::{EngineError, Matcher};
use crate::document::Document;

/// In how many of `documents` each term occurred.
#[derive(Clone, Debug, Default)]
pub struct TermFrequencies {
    documents: u64,
    counts: FxHashMap<Box<str>, u32>,
}

impl TermFrequencies {
    /// Documents counted.
    pub fn documents(&self) -> u64 {
        self.documents
    }

    /// Distinct terms seen.
    pub fn terms(&self) -> usize {
        self.counts.len()
    }

    /// The share of documents holding the folded `term` (smoothed: a term
    /// never seen counts as half a document); `None` before any document.
    pub fn share(&self, term: &str) -> Option<f64> {
        (self.documents > 0).then(|| {
            let n = self.counts.get(term).map_or(0.5, |&c| f64::from(c));
            n / self.documents as f64
        })
    }
}

impl Matcher {
    /// Counts in how many of `docs` each of this matcher's terms occurs.
    pub fn learn_frequencies<'a, 'd: 'a>(
        &self,
        docs: impl IntoIterator<Item = &'a Document<'d>>,
    ) -> TermFrequencies {
        let c = &self.c;
        let n_terms = c.wild_base as usize;
        let mut per_feature = vec![0u32; n_terms];
        let mut scratch = self.scratch();
        let none = vec![false; c.searches.len()];
        let mut documents = 0;
        for doc in docs {
            // Matching indexes the document; its occurrences are sorted by
            // feature, so each distinct term is counted once.
            let _ = self.match_unbudgeted(doc, Some(&none), &mut scratch);
            let mut last = None;
            for f in scratch.occurrence_features() {
                if (f as usize) < n_terms && last != Some(f) {
                    per_feature[f as usize] += 1;
                }
                last = Some(f);
            }
            documents += 1;
        }
        let counts = c
            .terms
            .iter()
            .filter(|&(_, f)| per_feature[f as usize] > 0)
            .map(|(t, f)| (t.into(), per_feature[f as usize]))
            .collect();
        TermFrequencies { documents, counts }
    }

    /// Compiles `catalog` choosing anchors by `frequencies` (module doc).
    ///
    /// # Errors
    ///
    /// As [`Matcher::new`].
    pub fn with_frequencies(
        catalog: &crate::searches::Catalog,
        frequencies: &TermFrequencies,
    ) -> Result<Matcher, EngineError> {
        Ok(Matcher {
            c: super::compile::Compiled::build(catalog, Some(frequencies))?,
        })
    }
}
