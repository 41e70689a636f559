//! Regex leaves: which regexes run over a field's text, and their matches.
//!
//! Running every regex of a catalog over every document is what made a
//! catalog with regexes slow: a multi-pattern scan of the whole regex set
//! costs the same whether or not a document could match any of them. Most
//! regexes customers write start with a literal (`/acme-?\d{3}/`,
//! `/(iphone|ipad) ?1[0-9]/`), and a match must begin with one of a
//! regex's **prefix literals** (regex-syntax's literal extractor). So:
//!
//! 1. At compile time each regex's prefix literals are extracted. When the
//!    set is finite, small (≤ [`MAX_LITERALS`]) and every literal has at
//!    least [`MIN_LITERAL_BYTES`] bytes, the regex is *filtered*: its
//!    literals go into one Aho-Corasick automaton. The others (`/\d{5}/`,
//!    `/.*x/`) stay in one multi-pattern regex set, scanned as before.
//! 2. Per field, the automaton runs over the text (one pass, overlapping
//!    matches); each regex whose literal occurs becomes a candidate, once.
//! 3. Only the candidates run (`find_iter`), then the unfiltered set as
//!    before. A regex whose literals do not occur cannot match, so the
//!    occurrences are exactly those of running every regex.
//!
//! Figures (`bench --regex-percent 1`, criterion `match_tweets_regex_1pct`):
//! BENCHMARKS.md.

use aho_corasick::AhoCorasick;
use regex_automata::meta::Regex;
use regex_automata::{Input, PatternSet};

use super::EngineError;

/// Prefix literals are cut to this many bytes where they are longer.
pub const PREFIX_BYTES: usize = 4;
/// A regex with more prefix literals than this is not filtered.
pub const MAX_LITERALS: usize = 64;
/// A regex with a shorter prefix literal is not filtered (one byte occurs
/// in nearly every text: the filter would cost more than it saves).
pub const MIN_LITERAL_BYTES: usize = 2;

/// The compiled regex leaves of a catalog.
#[derive(Default)]
pub struct RegexLeaves {
    /// Every regex, by regex index.
    each: Vec<Regex>,
    /// The filtered regexes' prefix literals, and per literal its regex.
    prefilter: Option<(AhoCorasick, Vec<u32>)>,
    /// The unfiltered regexes as one set, and per set pattern its regex.
    unfiltered: Option<(Regex, Vec<u32>)>,
}

/// Working memory of [`RegexLeaves::for_each_match`].
#[derive(Default)]
pub struct RegexScratch {
    patterns: Option<PatternSet>,
    /// Per regex: the field (stamp) in which it last became a candidate.
    seen: Vec<u32>,
    stamp: u32,
    candidates: Vec<u32>,
}

/// A regex's prefix literals, when they are a usable filter. The extractor
/// expands small classes (`acme-?[0-9]` gives `acme-0` … `acme9`); the
/// literals are cut to their first bytes (still prefixes of every match):
/// to [`PREFIX_BYTES`], or longer while that adds no literal (`zentrix`
/// from `zentrix-?[0-9]`: brand names share their first syllables), so the
/// automaton holds few patterns that are as selective as the regex allows.
fn prefix_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let seq = regex_syntax::hir::literal::Extractor::new().extract(&hir);
    let longest = seq.max_literal_len()?;
    let cut_to = |keep: usize| {
        let mut cut = seq.clone();
        cut.keep_first_bytes(keep);
        cut.dedup();
        cut
    };
    // The longest cut that has no more literals than the shortest: as
    // selective as the regex's literal part allows, still few patterns.
    let mut keep = PREFIX_BYTES.min(longest);
    let mut best = cut_to(keep);
    let fewest = best.len()?;
    while keep < longest {
        let longer = cut_to(keep + 1);
        if longer.len() != Some(fewest) {
            break;
        }
        (keep, best) = (keep + 1, longer);
    }
    let literals = best.literals()?;
    let usable = !literals.is_empty()
        && literals.len() <= MAX_LITERALS
        && literals
            .iter()
            .all(|l| l.as_bytes().len() >= MIN_LITERAL_BYTES);
    usable.then(|| literals.iter().map(|l| l.as_bytes().to_vec()).collect())
}

impl RegexLeaves {
    /// Compiles `patterns` (regex index = position).
    ///
    /// # Errors
    ///
    /// A pattern that does not compile, or a set over the size limit.
    pub fn build(patterns: &[String]) -> Result<RegexLeaves, EngineError> {
        let err = |message: String| EngineError::Regex {
            count: patterns.len(),
            message,
        };
        let each = patterns
            .iter()
            .map(|p| Regex::new(p).map_err(|e| err(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let (mut literals, mut literal_regex) = (Vec::new(), Vec::new());
        let (mut rest, mut rest_regex) = (Vec::new(), Vec::new());
        for (i, p) in patterns.iter().enumerate() {
            match prefix_literals(p) {
                Some(ls) => {
                    literal_regex.extend(std::iter::repeat_n(i as u32, ls.len()));
                    literals.extend(ls);
                }
                None => {
                    rest.push(p.as_str());
                    rest_regex.push(i as u32);
                }
            }
        }
        let prefilter = if literals.is_empty() {
            None
        } else {
            // A DFA: the overlapping search walks one transition per byte
            // (the default NFA is several times slower here, measured).
            let ac = aho_corasick::AhoCorasickBuilder::new()
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .build(&literals)
                .or_else(|_| AhoCorasick::new(&literals))
                .map_err(|e| err(e.to_string()))?;
            Some((ac, literal_regex))
        };
        let unfiltered = if rest.is_empty() {
            None
        } else {
            let set = Regex::builder()
                .configure(
                    Regex::config()
                        .match_kind(regex_automata::MatchKind::All)
                        .nfa_size_limit(Some(256 << 20)),
                )
                .build_many(&rest)
                .map_err(|e| err(e.to_string()))?;
            Some((set, rest_regex))
        };
        Ok(RegexLeaves {
            each,
            prefilter,
            unfiltered,
        })
    }

    /// How many regexes.
    pub fn len(&self) -> usize {
        self.each.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.each.is_empty()
    }

    /// How many run only where one of their prefix literals occurs.
    pub fn filtered(&self) -> usize {
        self.len() - self.unfiltered.as_ref().map_or(0, |(_, r)| r.len())
    }

    /// Working memory for matching.
    pub fn scratch(&self) -> RegexScratch {
        RegexScratch {
            patterns: self
                .unfiltered
                .as_ref()
                .map(|(set, _)| PatternSet::new(set.pattern_len())),
            seen: vec![0; self.each.len()],
            stamp: 0,
            candidates: Vec::new(),
        }
    }

    /// Calls `found(regex, start, end)` for every match of every regex in
    /// `text`: the candidates of the literal filter in regex order, then
    /// the unfiltered ones.
    pub fn for_each_match(
        &self,
        text: &str,
        s: &mut RegexScratch,
        mut found: impl FnMut(u32, usize, usize),
    ) {
        if let Some((ac, literal_regex)) = &self.prefilter {
            s.stamp = s.stamp.wrapping_add(1);
            if s.stamp == 0 {
                s.seen.fill(0);
                s.stamp = 1;
            }
            s.candidates.clear();
            for m in ac.find_overlapping_iter(text) {
                let r = literal_regex[m.pattern().as_usize()];
                if s.seen[r as usize] != s.stamp {
                    s.seen[r as usize] = s.stamp;
                    s.candidates.push(r);
                }
            }
            s.candidates.sort_unstable();
            for &r in &s.candidates {
                for m in self.each[r as usize].find_iter(text) {
                    found(r, m.start(), m.end());
                }
            }
        }
        if let (Some((set, regex_of)), Some(patterns)) = (&self.unfiltered, &mut s.patterns) {
            patterns.clear();
            set.which_overlapping_matches(&Input::new(text), patterns);
            for p in patterns.iter() {
                let r = regex_of[p.as_usize()];
                for m in self.each[r as usize].find_iter(text) {
                    found(r, m.start(), m.end());
                }
            }
        }
    }

    /// Heap bytes of the automata.
    pub fn memory_usage(&self) -> usize {
        self.each.iter().map(Regex::memory_usage).sum::<usize>()
            + self
                .prefilter
                .as_ref()
                .map_or(0, |(ac, r)| ac.memory_usage() + r.len() * 4)
            + self
                .unfiltered
                .as_ref()
                .map_or(0, |(set, r)| set.memory_usage() + r.len() * 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(leaves: &RegexLeaves, text: &str) -> Vec<(u32, usize, usize)> {
        let mut s = leaves.scratch();
        let mut out = Vec::new();
        leaves.for_each_match(text, &mut s, |r, a, b| out.push((r, a, b)));
        out.sort_unstable();
        out
    }

    #[test]
    fn literal_prefixes_filter_only_where_they_are_sound() {
        let some = |p: &str| {
            prefix_literals(p).map(|mut l| {
                l.sort();
                l.into_iter()
                    .map(|b| String::from_utf8(b).unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(some("acme-?[0-9]{3}"), Some(vec!["acme".into()]));
        // Alternatives give one literal each, cut to four bytes.
        assert_eq!(
            some("(iphone|ipad) ?1[0-9]"),
            Some(vec!["ipad".into(), "ipho".into()])
        );
        // Could match anywhere or the empty string: not filtered.
        assert_eq!(some(r"\d{5}"), None);
        assert_eq!(some("x*acme"), None);
        assert_eq!(some(".*acme"), None);
        assert_eq!(some("a?"), None);
        // One byte is too common to filter on.
        assert_eq!(some("a.+"), None);
        assert_eq!(some("a[0-9]+").map(|l| l.len()), Some(10), "a0 … a9");
        assert_eq!(some("[a-z]{3}"), None, "too many");
    }

    #[test]
    fn filtered_and_unfiltered_regexes_find_what_each_regex_finds_alone() {
        let patterns: Vec<String> = [
            "acme-?[0-9]{3}",
            r"\d{5}",
            "(?i)zentrix[0-9]+",
            "(iphone|ipad) ?1[0-9]",
            "ip",
            "é+t",
        ]
        .iter()
        .map(|p| p.to_string())
        .collect();
        let leaves = RegexLeaves::build(&patterns).unwrap();
        assert!(leaves.filtered() >= 4, "{}", leaves.filtered());
        let each: Vec<Regex> = patterns.iter().map(|p| Regex::new(p).unwrap()).collect();
        for text in [
            "acme-123 and acme999, ZENTRIX7 zentrix88, iphone 12 ipad13, 12345 6789012 éét",
            "nothing to see",
            "",
            "ipipip acmeacme-000",
        ] {
            let mut want: Vec<(u32, usize, usize)> = each
                .iter()
                .enumerate()
                .flat_map(|(i, r)| {
                    r.find_iter(text)
                        .map(move |m| (i as u32, m.start(), m.end()))
                })
                .collect();
            want.sort_unstable();
            assert_eq!(matches(&leaves, text), want, "{text}");
        }
        // The scratch is reused across texts without stale candidates.
        let mut s = leaves.scratch();
        let mut n = 0;
        leaves.for_each_match("acme-123", &mut s, |_, _, _| n += 1);
        leaves.for_each_match("no match here", &mut s, |_, _, _| n += 1);
        assert_eq!(n, 1);
    }
}
