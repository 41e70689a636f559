//! Searches are tried on a small built-in set of hostile documents before
//! they are activated, so that one that would panic or spend a document's
//! work budget is refused with its error (at `check`, `PUT /searches`, file
//! and searches-topic reloads) while the running version stays.
//!
//! # How
//!
//! The compiled matcher runs each probe document with the work of every
//! search recorded separately ([`Scratch`]'s per-search log), under
//! `catch_unwind`:
//!
//! * a panic names the search being evaluated ([`Scratch::current_search`]);
//! * a search whose own work on one probe exceeds [`PROBE_SEARCH_BUDGET`]
//!   is refused with the probe's name and its work.
//!
//! The probes are built to hit what made matching slow before: the same
//! word repeated thousands of times (slop phrases, NEAR), one huge token
//! (wildcards, regexes), long CJK and emoji runs, and ordinary text with
//! hashtags, mentions and URLs. Their words are the catalog's own terms, so
//! every search's leaves actually occur; each probe stays near 16 KB, and
//! the whole probe costs a few milliseconds per thousand searches.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{Matcher, Scratch, DEFAULT_WORK_BUDGET};
use crate::document::Document;
use crate::searches::{Catalog, CatalogError, Problem, SearchIdx};

/// Most work one search may spend on one probe document: a twentieth of a
/// whole document's budget, so that a few such searches on one real post
/// would not exhaust it.
pub const PROBE_SEARCH_BUDGET: u64 = DEFAULT_WORK_BUDGET / 20;

/// Bytes of text in each probe, about.
const PROBE_BYTES: usize = 16 * 1024;

/// A search the probe refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeFailure {
    /// The search.
    pub search: SearchIdx,
    /// What happened, for the user.
    pub message: String,
}

impl Matcher {
    /// Runs the built-in probe documents (module doc) and returns the
    /// searches that panicked or spent more than [`PROBE_SEARCH_BUDGET`].
    pub fn probe(&self) -> Vec<ProbeFailure> {
        self.probe_with_budget(PROBE_SEARCH_BUDGET)
    }

    /// [`Matcher::probe`] with another per-search budget.
    pub fn probe_with_budget(&self, budget: u64) -> Vec<ProbeFailure> {
        let mut failures: Vec<ProbeFailure> = Vec::new();
        let mut scratch = self.scratch();
        for (name, text) in probe_documents(self) {
            let doc = Document::with_text("probe", &text);
            scratch.log_search_work(true);
            let run = catch_unwind(AssertUnwindSafe(|| {
                self.try_match_document(&doc, None, &mut scratch)
                    .map(|_| ())
            }));
            if run.is_err() {
                if let Some(s) = scratch.current_search() {
                    failures.push(ProbeFailure {
                        search: s,
                        message: format!("matching the `{name}` probe document panicked"),
                    });
                }
                scratch = self.scratch();
                continue;
            }
            for &(s, work) in scratch.search_work() {
                if work > budget {
                    failures.push(ProbeFailure {
                        search: SearchIdx(s),
                        message: format!(
                            "too expensive: {work} work units on the `{name}` probe document (at most {budget})"
                        ),
                    });
                }
            }
        }
        failures.sort_by_key(|f| f.search);
        failures.dedup_by_key(|f| f.search);
        failures
    }
}

impl Matcher {
    /// [`Matcher::probe`] of this matcher compiled from `catalog`, as the
    /// catalog's problems (`None` when every search passes).
    pub fn probe_catalog(&self, catalog: &Catalog) -> Option<CatalogError> {
        let failures = self.probe();
        if failures.is_empty() {
            return None;
        }
        let problems = failures
            .into_iter()
            .map(|f| {
                let s = &catalog.searches[f.search.0 as usize];
                Problem::Refused {
                    topic: catalog.topics[s.topic.0 as usize].id.clone(),
                    search: s.id.clone(),
                    query: s.text.clone(),
                    message: f.message,
                }
            })
            .collect();
        Some(CatalogError { problems })
    }
}

/// The probe documents, named.
fn probe_documents(m: &Matcher) -> Vec<(&'static str, String)> {
    let mut terms: Vec<&str> = m.c.terms.iter().map(|(t, _)| t).collect();
    terms.sort_unstable();
    terms.truncate(2048);
    let repeat = |unit: &str| unit.repeat((PROBE_BYTES / unit.len().max(1)).max(1));
    let mut out = vec![
        ("repeated word", repeat("a ")),
        ("one huge token", "a".repeat(PROBE_BYTES)),
        ("cjk run", repeat("東京都")),
        ("emoji run", repeat("😀🔥 ")),
        (
            "ordinary text",
            repeat("Acme is down again #acme @acme https://acme.example/status 2024 — why? "),
        ),
    ];
    // Every term repeated, in turn, then each term many times: phrases,
    // slop phrases and NEAR see their words everywhere.
    if !terms.is_empty() {
        let all = terms.join(" ");
        out.push(("all terms", repeat(&format!("{all} "))));
        let mut each = String::with_capacity(PROBE_BYTES);
        let per = (PROBE_BYTES / terms.len() / 8).max(2);
        for t in &terms {
            for _ in 0..per {
                each.push_str(t);
                each.push(' ');
            }
            if each.len() > PROBE_BYTES * 2 {
                break;
            }
        }
        out.push(("each term repeated", each));
    }
    out
}

impl Scratch {
    /// Whether the next runs record each search's work
    /// ([`Scratch::search_work`]).
    pub(crate) fn log_search_work(&mut self, on: bool) {
        self.search_work = on.then(Vec::new);
    }

    /// (search, work units) of each search evaluated by the last run, when
    /// logging.
    pub(crate) fn search_work(&self) -> &[(u32, u64)] {
        self.search_work.as_deref().unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::Matcher;
    use crate::query::Limits;
    use crate::searches::Catalog;

    #[test]
    fn ordinary_searches_pass_the_probe() {
        let json = r#"{"topics": [{"id": "t", "searches": [
            {"id": "s1", "query": "(\"acme corp\" OR #acme) NOT job*"},
            {"id": "s2", "query": "acme NEAR/3 (down OR outage OR \"not working\")"},
            {"id": "s3", "query": "\"a a a a a a a a a a a a a a\"~1"},
            {"id": "s4", "query": "\"acme outage\"~3 OR /ac+me/ OR 東京 OR *cme"}]}]}"#;
        let catalog = Catalog::from_json(json.as_bytes(), &Limits::default()).unwrap();
        let m = Matcher::new(&catalog).unwrap();
        assert_eq!(m.probe(), vec![]);
        // The same searches against a tiny budget: each one that does any
        // work on a probe is named.
        let refused = m.probe_with_budget(5);
        assert!(!refused.is_empty());
        assert!(refused.iter().all(
            |f| f.message.starts_with("too expensive") && f.message.contains("probe document")
        ));
    }
}
