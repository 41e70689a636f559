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
//!    number of documents containing it (document frequency; a word's
//!    counts its hashtags and mentions too, since a searched word matches
//!    them); adjacent word pairs for phrases.
//! 2. **Bands** by the share of documents a word occurs in: *rare* (brands,
//!    names: at least 2 documents, under 0.05% — or under 4 documents in a
//!    small corpus), *mid* (up to 1%), *common* (1–10%; words in more than
//!    10% are left out, as customers leave out "the"). Phrases are pairs of
//!    adjacent rare or mid words seen in at least 3 documents. Hashtags and
//!    mentions are kept in the rare band only: a brand's own tag and
//!    handle are as rare as its name, while the busiest accounts' tags
//!    (a health outlet's handle in 1% of the posts) are nobody's brand.
//! 3. **Shapes** customers write, each term drawn uniformly within its
//!    band and distinct from the search's other terms:
//!    `(a OR b OR c) AND (d OR e) -f`, `stem* AND (x OR y)`,
//!    `"w1 w2" OR (w3 AND (w4 OR w5))`, `brand OR #tag OR @tag NOT (x OR y)`.
//!
//! Until 2026-12-02 tags were drawn from every tag seen in two documents,
//! a word's frequency left out its hashtags and mentions (so `getfit`, a
//! rare word but a busy hashtag, counted as a brand), and a search could
//! repeat a word (`could AND (clearly OR could)`): the
//! tag shape then gave 80% of all records (26 matches per search against
//! 1–5 for the other shapes), 10.5 records per post where the issue's
//! searches gave 2.7 (BENCHMARKS.md, "Short posts and long articles
//! apart"). Figures measured before that date are on the old workload.
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
    /// Hashtag bodies of the rare band.
    pub hashtags: Vec<String>,
    /// Mention bodies of the rare band.
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
        let mut seen_tags: Vec<(TokenKind, String)> = Vec::new();
        let mut n = 0;
        for line in docs {
            let Ok(doc) = Document::parse(line.as_bytes(), 1 << 20) else {
                continue;
            };
            n += 1;
            seen_words.clear();
            seen_pairs.clear();
            seen_tags.clear();
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
                            // A searched word matches it too (`acme` finds
                            // `#acme`): it counts for the word as well.
                            seen_words.push(body.to_string());
                            seen_tags.push((t.kind, body.to_string()));
                        }
                        TokenKind::Cashtag if usable(body) => {
                            seen_words.push(body.to_string());
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
            seen_tags.sort_unstable();
            seen_tags.dedup();
            for t in seen_tags.drain(..) {
                *tags.entry(t).or_insert(0) += 1;
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
            if df >= 2 && share(df) < rare_below {
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
        let mut d = Draw {
            rng,
            used: Vec::new(),
        };
        // A term across the frequency range: brands, mid and common words.
        let any = |d: &mut Draw<'_>| {
            let band = match d.rng.below(20) {
                0..=11 => &self.rare,
                12..=18 => &self.mid,
                _ => &self.common,
            };
            d.pick(band)
        };
        match d.rng.below(100) {
            0..=29 => {
                let (a, b, c) = (any(&mut d), any(&mut d), any(&mut d));
                let m = d.pick(&self.mid);
                let (e, f) = (any(&mut d), any(&mut d));
                format!("({a} OR {b} OR {c}) AND ({m} OR {e}) -{f}")
            }
            30..=49 => {
                // Customers truncate a name to its first letters.
                let w = d.pick(&self.rare);
                let cut = w.char_indices().nth(5).map_or(w.len(), |(i, _)| i);
                let x = any(&mut d);
                let y = d.pick(&self.mid);
                format!("{}* AND ({x} OR {y})", &w[..cut])
            }
            50..=74 => {
                let (a, b) = &self.bigrams[d.rng.below(self.bigrams.len())];
                d.used.extend([a.clone(), b.clone()]);
                let w3 = any(&mut d);
                let w4 = d.pick(&self.mid);
                let w5 = d.pick(&self.common);
                format!("\"{a} {b}\" OR ({w3} AND ({w4} OR {w5}))")
            }
            _ => {
                let brand = d.pick(&self.rare);
                let tag = d.pick(&self.hashtags);
                let handle = d.pick(&self.mentions);
                let x = d.pick(&self.common);
                let y = d.pick(&self.common);
                format!("{brand} OR #{tag} OR @{handle} NOT ({x} OR {y})")
            }
        }
    }
}

/// Draws one search's terms, each distinct from those already drawn: a
/// customer does not write a word twice in one search.
struct Draw<'r> {
    rng: &'r mut Rng,
    /// Terms of this search so far.
    used: Vec<String>,
}

impl Draw<'_> {
    /// A term of `band` not yet used (given up after 8 tries in a band
    /// that small).
    fn pick(&mut self, band: &[String]) -> String {
        let mut w = &band[self.rng.below(band.len())];
        for _ in 0..8 {
            if !self.used.contains(w) {
                break;
            }
            w = &band[self.rng.below(band.len())];
        }
        self.used.push(w.clone());
        w.clone()
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
        // No search names a word twice.
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        for topic in parsed["topics"].as_array().unwrap() {
            for search in topic["searches"].as_array().unwrap() {
                let query = search["query"].as_str().unwrap();
                let mut words: Vec<&str> = query
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty() && !matches!(*w, "OR" | "AND" | "NOT"))
                    .collect();
                let n = words.len();
                words.sort_unstable();
                words.dedup();
                assert_eq!(words.len(), n, "{query}");
            }
        }
        // Tags and handles are as rare as brands: in this sample of 2,198
        // posts, fewer than 4 documents.
        let mut df: HashMap<(TokenKind, String), usize> = HashMap::new();
        let mut tokens = Tokens::new();
        for line in &docs {
            let doc = Document::parse(line.as_bytes(), 1 << 20).unwrap();
            let mut seen = Vec::new();
            for field in 0..2 {
                if let Some(text) = doc.field(field) {
                    tokens.analyze(text);
                    for (i, t) in tokens.tokens.iter().enumerate() {
                        seen.push((t.kind, tokens.folded_body(i).to_string()));
                    }
                }
            }
            seen.sort_unstable();
            seen.dedup();
            for k in seen {
                *df.entry(k).or_insert(0) += 1;
            }
        }
        for (kind, list) in [
            (TokenKind::Hashtag, &v.hashtags),
            (TokenKind::Mention, &v.mentions),
        ] {
            assert!(!list.is_empty());
            for body in list {
                let n = df[&(kind, body.clone())];
                assert!((2..4).contains(&n), "{kind:?} {body}: {n}");
            }
        }
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
