//! Searches built from real posts' own vocabulary (the realistic
//! benchmark, `bench --realistic FILE`).
//!
//! The generated workload of [`super::searches_json`] anchors every search
//! on a brand that few documents mention, which is kind to the matcher.
//! Customers write searches over ordinary words, and real text contains
//! them: here every term is drawn from the documents themselves.
//!
//! 1. **Vocabulary**: every document is tokenized as the matcher does
//!    ([`crate::text::Tokens`]); per folded word, hashtag and mention, the
//!    number of documents containing it (document frequency); adjacent word
//!    pairs for phrases.
//! 2. **Bands** by the share of documents a word occurs in: *rare* (brands,
//!    names: at least 2 documents, under 0.05% — or under 4 documents in a
//!    small corpus), *mid* (up to 1%), *common* (1–10%; words in more than
//!    10% are left out, as customers leave out "the"). Phrases are pairs of
//!    adjacent rare or mid words seen in at least 3 documents.
//! 3. **Shapes** customers write, each term drawn uniformly within its
//!    band:
//!    `(a OR b OR c) AND (d OR e) -f`, `stem* AND (x OR y)`,
//!    `"w1 w2" OR (w3 AND (w4 OR w5))`, `brand OR #tag OR @tag NOT (x OR y)`.
//!
//! The same documents and seed give the same searches.

use std::collections::HashMap;

use super::Rng;
use crate::document::Document;
use crate::text::{TokenKind, Tokens};

/// Words of the documents by band, and what phrases and sigils they offer.
#[derive(Debug, Default)]
pub struct Vocabulary {
    /// Documents read.
    pub documents: usize,
    /// Rare words (brands, names).
    pub rare: Vec<String>,
    /// Mid-frequency words.
    pub mid: Vec<String>,
    /// Common words (not the most common).
    pub common: Vec<String>,
    /// Hashtag bodies seen in at least 2 documents.
    pub hashtags: Vec<String>,
    /// Mention bodies seen in at least 2 documents.
    pub mentions: Vec<String>,
    /// Adjacent word pairs seen in at least 3 documents.
    pub bigrams: Vec<(String, String)>,
}

/// Words the query language reads as operators, and words too short to be
/// searched for.
fn usable(w: &str) -> bool {
    w.chars().count() >= 3
        && w.chars().all(char::is_alphabetic)
        && !matches!(w, "and" | "not" | "near" | "onear")
}

impl Vocabulary {
    /// Reads `docs` (documents that do not parse are skipped).
    #[must_use]
    pub fn of(docs: &[String]) -> Vocabulary {
        let mut words: HashMap<String, u32> = HashMap::new();
        let mut tags: HashMap<(TokenKind, String), u32> = HashMap::new();
        let mut pairs: HashMap<(String, String), u32> = HashMap::new();
        let mut tokens = Tokens::new();
        let mut seen_words: Vec<String> = Vec::new();
        let mut seen_pairs: Vec<(String, String)> = Vec::new();
        let mut n = 0;
        for line in docs {
            let Ok(doc) = Document::parse(line.as_bytes(), 1 << 20) else {
                continue;
            };
            n += 1;
            seen_words.clear();
            seen_pairs.clear();
            for field in 0..2 {
                let Some(text) = doc.field(field) else {
                    continue;
                };
                tokens.analyze(text);
                let mut prev: Option<String> = None;
                for (i, t) in tokens.tokens.iter().enumerate() {
                    let body = tokens.folded_body(i);
                    match t.kind {
                        TokenKind::Word if usable(body) => {
                            seen_words.push(body.to_string());
                            if let Some(p) = prev.take() {
                                seen_pairs.push((p, body.to_string()));
                            }
                            prev = Some(body.to_string());
                            continue;
                        }
                        TokenKind::Hashtag | TokenKind::Mention if usable(body) => {
                            *tags.entry((t.kind, body.to_string())).or_insert(0) += 1;
                        }
                        _ => {}
                    }
                    prev = None;
                }
            }
            seen_words.sort_unstable();
            seen_words.dedup();
            for w in seen_words.drain(..) {
                *words.entry(w).or_insert(0) += 1;
            }
            seen_pairs.sort_unstable();
            seen_pairs.dedup();
            for p in seen_pairs.drain(..) {
                *pairs.entry(p).or_insert(0) += 1;
            }
        }
        let mut v = Vocabulary {
            documents: n,
            ..Vocabulary::default()
        };
        let share = |df: u32| f64::from(df) / n.max(1) as f64;
        let rare_below = 0.0005f64.max(4.0 / n.max(1) as f64);
        let specific: std::collections::HashSet<&String> = words
            .iter()
            .filter(|(_, df)| share(**df) < 0.01)
            .map(|(w, _)| w)
            .collect();
        v.bigrams = pairs
            .into_iter()
            .filter(|((a, b), df)| *df >= 3 && specific.contains(a) && specific.contains(b))
            .map(|(p, _)| p)
            .collect();
        for (w, df) in words {
            let s = share(df);
            if df < 2 || s > 0.10 {
                continue;
            }
            if s < rare_below {
                v.rare.push(w);
            } else if s < 0.01 {
                v.mid.push(w);
            } else {
                v.common.push(w);
            }
        }
        for ((kind, body), df) in tags {
            if df >= 2 {
                match kind {
                    TokenKind::Hashtag => v.hashtags.push(body),
                    _ => v.mentions.push(body),
                }
            }
        }
        // Hash-map order is not deterministic: sort for the seed to decide.
        for list in [
            &mut v.rare,
            &mut v.mid,
            &mut v.common,
            &mut v.hashtags,
            &mut v.mentions,
        ] {
            list.sort_unstable();
        }
        v.bigrams.sort_unstable();
        v
    }

    /// Whether every band has words to draw from.
    #[must_use]
    pub fn is_usable(&self) -> bool {
        !(self.rare.is_empty()
            || self.mid.is_empty()
            || self.common.is_empty()
            || self.hashtags.is_empty()
            || self.mentions.is_empty()
            || self.bigrams.is_empty())
    }

    /// The searches file (docs/formats.md §2.2) with `n` searches, 1–3 per
    /// topic, as JSON.
    ///
    /// # Panics
    ///
    /// When a band is empty ([`Vocabulary::is_usable`]).
    #[must_use]
    pub fn searches_json(&self, n: usize, seed: u64) -> String {
        assert!(self.is_usable(), "too few documents for every band");
        let mut rng = Rng::new(seed ^ 0x5EA1);
        let mut topics = Vec::new();
        let mut made = 0;
        while made < n {
            let per_topic = (1 + rng.below(3)).min(n - made);
            let t = topics.len();
            let searches: Vec<serde_json::Value> = (0..per_topic)
                .map(|k| serde_json::json!({"id": format!("r{t}-{k}"), "query": self.query(&mut rng)}))
                .collect();
            topics.push(serde_json::json!({"id": format!("rt{t}"), "searches": searches}));
            made += per_topic;
        }
        serde_json::json!({ "topics": topics }).to_string()
    }

    fn query(&self, rng: &mut Rng) -> String {
        let pick = |rng: &mut Rng, v: &[String]| v[rng.below(v.len())].clone();
        // A term across the frequency range: brands, mid and common words.
        let any = |rng: &mut Rng| match rng.below(20) {
            0..=11 => pick(rng, &self.rare),
            12..=18 => pick(rng, &self.mid),
            _ => pick(rng, &self.common),
        };
        match rng.below(100) {
            0..=29 => format!(
                "({} OR {} OR {}) AND ({} OR {}) -{}",
                any(rng),
                any(rng),
                any(rng),
                pick(rng, &self.mid),
                any(rng),
                any(rng)
            ),
            30..=49 => {
                // Customers truncate a name to its first letters.
                let w = pick(rng, &self.rare);
                let cut = w.char_indices().nth(5).map_or(w.len(), |(i, _)| i);
                format!(
                    "{}* AND ({} OR {})",
                    &w[..cut],
                    any(rng),
                    pick(rng, &self.mid)
                )
            }
            50..=74 => {
                let (a, b) = &self.bigrams[rng.below(self.bigrams.len())];
                format!(
                    "\"{a} {b}\" OR ({} AND ({} OR {}))",
                    any(rng),
                    pick(rng, &self.mid),
                    pick(rng, &self.common)
                )
            }
            _ => format!(
                "{} OR #{} OR @{} NOT ({} OR {})",
                pick(rng, &self.rare),
                pick(rng, &self.hashtags),
                pick(rng, &self.mentions),
                pick(rng, &self.common),
                pick(rng, &self.common)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> Vec<String> {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/tweets.jsonl"))
                .unwrap();
        text.lines().map(String::from).collect()
    }

    #[test]
    fn searches_from_the_documents_own_words_are_valid_and_deterministic() {
        let docs = docs();
        let v = Vocabulary::of(&docs);
        assert_eq!(v.documents, docs.len());
        assert!(v.is_usable(), "{v:?}");
        let json = v.searches_json(300, 7);
        assert_eq!(json, v.searches_json(300, 7));
        let catalog =
            crate::searches::Catalog::from_json(json.as_bytes(), &Default::default()).unwrap();
        assert_eq!(catalog.searches.len(), 300);
        // And they match some of the documents they came from.
        let m = crate::engine::Matcher::new(&catalog).unwrap();
        let mut s = m.scratch();
        let matched = docs
            .iter()
            .filter_map(|l| Document::parse(l.as_bytes(), 1 << 20).ok())
            .filter(|d| !m.match_document(d, &mut s).is_empty())
            .count();
        assert!(matched > docs.len() / 20, "{matched} of {}", docs.len());
    }
}
