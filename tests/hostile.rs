//! Hostile input (the analyst's queries and the public's posts): no query
//! string makes the parser panic or overflow a 2 MiB stack, no document
//! makes matching exponential or quadratic, and a document that is both
//! huge and hit by many searches is stopped by the work budget.
//!
//! Costs are asserted in *work units* (tokens, occurrences and spans
//! visited, window steps — counted by the engine), never in seconds; the
//! times are in the criterion bench `engine/adversarial` and BENCHMARKS.md.

use std::borrow::Cow;

use proptest::prelude::*;
use topic_matcher::document::Document;
use topic_matcher::engine::reference::Reference;
use topic_matcher::engine::{Matcher, DEFAULT_WORK_BUDGET};
use topic_matcher::query::{parse, Limits, QueryErrorKind, MAX_DEPTH};
use topic_matcher::searches::Catalog;

/// Runs `f` on a thread with the 2 MiB stack of the reload worker and the
/// parse threads, and returns its result (a panic fails the test).
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .expect("no panic on a 2 MiB stack")
}

fn catalog(queries: &[&str]) -> Catalog {
    let searches: Vec<serde_json::Value> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| serde_json::json!({"id": format!("s{i}"), "query": q}))
        .collect();
    let json = serde_json::json!({"topics": [{"id": "t", "searches": searches}]}).to_string();
    Catalog::from_json(json.as_bytes(), &Limits::default()).expect("valid searches")
}

#[test]
fn negated_near_operands_are_errors_with_a_column() {
    for (q, col) in [
        ("acme NEAR/2 NOT outage", 13),
        ("acme NEAR/2 -outage", 13),
        ("acme ONEAR/2 NOT outage", 14),
        ("\"acme corp\" NEAR/2 NOT outage", 20),
        ("acme NEAR/2f -(a OR b)", 14),
        ("(a OR b) NEAR/1 NOT c", 17),
    ] {
        let e = parse(q, &Limits::default()).expect_err(q);
        assert!(
            matches!(e[0].kind, QueryErrorKind::NegatedNearOperand { .. }),
            "{q}: {e:?}"
        );
        assert_eq!(e[0].column, col, "{q}: {e:?}");
        assert!(!e[0].help().is_empty());
    }
    // NOT outside the NEAR is the way to say it.
    parse("(acme NEAR/2 outage) NOT resolved", &Limits::default()).unwrap();
}

#[test]
fn deep_nesting_is_an_error_on_a_small_stack() {
    on_small_stack(|| {
        let limits = Limits::default();
        for depth in [MAX_DEPTH + 1, 500, 2000] {
            let parens = format!("{}a{}", "(".repeat(depth), ")".repeat(depth));
            let nots = format!("b {}a", "NOT ".repeat(depth));
            let minus = format!("b {}a{}", "-(".repeat(depth), ")".repeat(depth));
            let fields = format!("{}a", "title:".repeat(depth));
            for q in [parens, nots, minus, fields] {
                let q: String = q.chars().take(limits.max_query_chars).collect();
                // Never a panic; an error unless the cut made it shallow.
                if let Err(e) = parse(&q, &limits) {
                    assert!(!e.is_empty());
                }
            }
            let q = format!("{}a{}", "(".repeat(depth), ")".repeat(depth));
            if q.chars().count() <= limits.max_query_chars {
                let e = parse(&q, &limits).unwrap_err();
                assert!(matches!(e[0].kind, QueryErrorKind::TooDeep { .. }), "{e:?}");
            }
        }
        // At the limit it parses, compiles and matches on this stack.
        let q = format!("{}acme{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        let c = catalog(&[&q]);
        let m = Matcher::new(&c).unwrap();
        let mut s = m.scratch();
        assert_eq!(
            m.match_document(&Document::with_text("d", "acme"), &mut s)
                .len(),
            1
        );
        let nots = format!("acme {}b", "NOT ".repeat(MAX_DEPTH));
        let c = catalog(&[&nots]);
        Matcher::new(&c).unwrap();
    });
}

/// Every lexeme of the language, so that random sequences put every
/// operator next to every other.
const LEXEMES: &[&str] = &[
    "(",
    ")",
    "OR",
    "AND",
    "NOT",
    "-",
    "-a",
    "-(",
    "NEAR/2",
    "NEAR/0f",
    "ONEAR/3",
    "NEAR/101",
    "NEAR/x",
    "title:",
    "text:",
    "title:a",
    "lang:en",
    "author:",
    "\"",
    "\"a b\"",
    "\"a a a\"~1",
    "\"a\"~200",
    "{",
    "}",
    "{Acme}",
    "/",
    "/a+/",
    "/(/",
    "/a*/",
    "a",
    "acme",
    "b",
    "c*",
    "ac*",
    "#acme",
    "@a",
    "$a",
    "東京",
    "😀",
    "!!!",
    "~",
    "*",
    "?",
    "\\",
    ":",
    "é",
];

fn lexeme_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop::sample::select(LEXEMES),
            prop::sample::select(&[" ", "", "  "][..]),
        ),
        0..24,
    )
    .prop_map(|v| v.into_iter().map(|(l, s)| format!("{l}{s}")).collect())
}

/// Queries from the grammar, including what the equivalence test never
/// generates: NOT and `-` after NEAR, NOT chains, deep groups, field
/// prefixes on groups with NOT inside.
fn grammar() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(
        &[
            "acme",
            "corp",
            "go",
            "#acme",
            "\"acme corp\"",
            "\"go go go\"~2",
            "\"#acme acme\"~1",
            "lov*",
            "*ove",
            "東京",
            "/ac+me/",
            "{Acme}",
            "lang:en",
        ][..],
    )
    .prop_map(str::to_string);
    leaf.prop_recursive(6, 40, 3, |inner| {
        prop_oneof![
            3 => (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} OR {b}")),
            3 => (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} {b}")),
            3 => (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} NOT {b}")),
            1 => (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} NEAR/1 NOT {b}")),
            1 => (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} ONEAR/2 -{b}")),
            2 => (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} NEAR/2 {b}")),
            2 => inner.clone().prop_map(|a| format!("NOT NOT {a}")),
            2 => inner.clone().prop_map(|a| format!("(({a}))")),
            2 => inner.clone().prop_map(|a| format!("-({a}) acme")),
            2 => inner.prop_map(|a| format!("title:(NOT {a} corp)")),
        ]
    })
}

const DOC_WORDS: &[&str] = &[
    "acme", "Acme", "corp", "go", "#acme", "love", "glove", "東京", "😀", "job", "the",
];

fn small_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(DOC_WORDS), 0..16).prop_map(|v| v.join(" "))
}

/// Parses `q` on a small stack; when accepted, compiles it and checks the
/// matcher against the reference evaluator on `texts`.
fn parse_and_compare(q: String, texts: Vec<String>) -> Result<(), TestCaseError> {
    let outcome = on_small_stack(move || {
        let json =
            serde_json::json!({"topics": [{"id": "t", "searches": [{"id": "s", "query": q}]}]})
                .to_string();
        let c = match Catalog::from_json(json.as_bytes(), &Limits::default()) {
            Ok(c) => c,
            Err(e) => {
                // Every error renders with its column and a caret.
                let text = e.render();
                if !(text.contains("column") && text.contains('^')) {
                    return Err(format!("{q:?}: {text}"));
                }
                return Ok(());
            }
        };
        let m = Matcher::new(&c).unwrap();
        let r = Reference::new(&c);
        let mut s = m.scratch();
        for t in &texts {
            let doc = Document {
                id: "d".into(),
                text: Some(Cow::Borrowed(t)),
                lang: Some(Cow::Borrowed("en")),
                ..Document::default()
            };
            let got = m.try_match_document(&doc, None, &mut s).unwrap().to_vec();
            if got != r.match_document(&doc) {
                return Err(format!("{q:?} on {t:?}: {got:?}"));
            }
        }
        Ok(())
    });
    outcome.map_err(TestCaseError::fail)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000) / 4,
        ..ProptestConfig::default()
    })]

    /// Arbitrary strings: an error with a caret or a query, never a panic.
    #[test]
    fn any_string_parses_or_errs(q in any::<String>()) {
        parse_and_compare(q, vec!["acme corp".into()])?;
    }

    /// Operator soup: every lexeme next to every other.
    #[test]
    fn operator_soup_parses_or_errs_and_agrees(q in lexeme_soup(), texts in prop::collection::vec(small_text(), 1..4)) {
        parse_and_compare(q, texts)?;
    }

    /// The grammar with negated NEAR operands and deep nesting: rejected
    /// with an error, or accepted and equal to the reference.
    #[test]
    fn grammar_parses_or_errs_and_agrees(q in grammar(), texts in prop::collection::vec(small_text(), 1..4)) {
        parse_and_compare(q, texts)?;
    }

    /// Random searches against random long documents that repeat their
    /// words: never a panic, and the work stays within the budget and
    /// linear in the document (or the document is reported too expensive).
    #[test]
    fn matching_work_is_bounded(
        queries in prop::collection::vec(grammar(), 1..6),
        unit in small_text(),
        repeats in 1usize..400,
    ) {
        let valid: Vec<&str> = queries
            .iter()
            .map(String::as_str)
            .filter(|q| parse(q, &Limits::default()).is_ok())
            .collect();
        prop_assume!(!valid.is_empty());
        let c = catalog(&valid);
        let m = Matcher::new(&c).unwrap();
        let mut s = m.scratch();
        let text = format!("{unit} ").repeat(repeats);
        let doc = Document::with_text("d", &text);
        match m.try_match_document(&doc, None, &mut s) {
            Ok(_) => {
                // Per search: a bounded number of passes over the document.
                let tokens = text.split_whitespace().count() as u64 + 1;
                let bound = 64 * tokens * (valid.len() as u64 + 1) + 10_000;
                prop_assert!(s.last_work() <= bound, "work {} > {}", s.last_work(), bound);
            }
            Err(e) => prop_assert!(e.budget == DEFAULT_WORK_BUDGET),
        }
    }
}

/// One adversarial document of about 1 MB per operator family, against the
/// searches that used to be exponential or quadratic on it: each is matched
/// with work linear in its size, and matches as the reference says on a
/// small copy.
#[test]
fn adversarial_megabyte_documents_cost_linear_work() {
    for case in topic_matcher::workload::adversarial(1 << 20) {
        let c = catalog(&[case.query]);
        let m = Matcher::new(&c).unwrap();
        let mut s = m.scratch();
        let doc = Document::with_text("d", &case.text);
        let res = m.try_match_document(&doc, None, &mut s);
        let found = res
            .as_ref()
            .map(|r| r.len())
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(found == 1, case.matches, "{}", case.name);
        // Linear: a few units per byte, never |L| × |R|.
        let bound = 8 * case.text.len() as u64 + 10_000;
        assert!(
            s.last_work() <= bound,
            "{}: work {} exceeds {bound}",
            case.name,
            s.last_work()
        );
    }
    // On small copies the reference evaluator agrees (except on the
    // repeated-word phrase, where its backtracking is exponential).
    for case in topic_matcher::workload::adversarial(64)
        .into_iter()
        .filter(|c| c.name != "slop repeated word")
    {
        let c = catalog(&[case.query]);
        let m = Matcher::new(&c).unwrap();
        let mut s = m.scratch();
        let doc = Document::with_text("d", &case.text);
        let want = Reference::new(&c).match_document(&doc);
        assert_eq!(
            m.match_document(&doc, &mut s),
            want.as_slice(),
            "{}",
            case.name
        );
    }
}

/// The budget is a safety net that names the search: many searches that
/// all hit a huge document exhaust it, and the document is refused whole.
#[test]
fn the_budget_stops_a_document_and_names_the_search() {
    let queries: Vec<String> = (0..200)
        .map(|i| format!("acme NEAR/{} x1", i % 50))
        .collect();
    let queries: Vec<&str> = queries.iter().map(String::as_str).collect();
    let c = catalog(&queries);
    let m = Matcher::new(&c).unwrap();
    let mut s = m.scratch();
    s.set_budget(1_000_000);
    let text = "acme x1 ".repeat(100_000);
    let doc = Document::with_text("d", &text);
    let e = m.try_match_document(&doc, None, &mut s).unwrap_err();
    let search = e.search.expect("a search was being evaluated");
    assert!(m.search_id(search).starts_with('s'));
    assert_eq!(e.budget, 1_000_000);
    // A small document is matched by the same scratch afterwards.
    let small = Document::with_text("d2", "acme x1");
    assert_eq!(m.try_match_document(&small, None, &mut s).unwrap().len(), 1);
}

/// The property tests above mean something only if the generators give
/// both accepted and rejected queries, and accepted ones that match.
#[test]
fn generators_give_accepted_rejected_and_matching_queries() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut accepted, mut rejected, mut matching) = (0, 0, 0);
    for _ in 0..300 {
        for q in [
            grammar().new_tree(&mut runner).unwrap().current(),
            lexeme_soup().new_tree(&mut runner).unwrap().current(),
        ] {
            match parse(&q, &Limits::default()) {
                Ok(_) => {
                    accepted += 1;
                    let c = catalog(&[&q]);
                    let m = Matcher::new(&c).unwrap();
                    let mut s = m.scratch();
                    let doc =
                        Document::with_text("d", "acme corp go go go #acme acme love 東京 Acme");
                    if !m.match_document(&doc, &mut s).is_empty() {
                        matching += 1;
                    }
                }
                Err(_) => rejected += 1,
            }
        }
    }
    eprintln!("{accepted} accepted ({matching} matching), {rejected} rejected");
    assert!(
        accepted >= 100 && rejected >= 100 && matching >= 30,
        "{accepted} {rejected} {matching}"
    );
}

/// Found by `any_string_parses_or_errs`: a CJK term that folds to nothing
/// (a lone halfwidth voiced sound mark) is accepted and matches nothing, in
/// the engine and in the reference evaluator alike (which used to panic).
#[test]
fn a_term_that_folds_to_nothing_matches_nothing() {
    parse_and_compare("\u{ff9e}".into(), vec!["acme corp".into(), "ﾞ ｶﾞ".into()]).unwrap();
    // And one that folds to a space (`゛`, U+309B) occurs nowhere either.
    parse_and_compare(
        "\u{309b}".into(),
        vec!["acme corp".into(), "゛ 東京 ｶﾞ".into()],
    )
    .unwrap();
}
