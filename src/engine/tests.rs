//! Table-driven cases (`testdata/cases.toml`) run through both the compiled
//! matcher and the reference evaluator.

use std::borrow::Cow;

use serde::Deserialize;

use super::reference::Reference;
use super::Matcher;
use crate::document::Document;
use crate::query::Limits;
use crate::searches::Catalog;

#[derive(Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    query: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    country: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(rename = "match")]
    expected: bool,
    #[serde(default)]
    highlights: Option<Vec<String>>,
}

fn o(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(Cow::Borrowed)
}

fn one_search(query: &str) -> Catalog {
    let json =
        serde_json::json!({"topics": [{"id": "t", "searches": [{"id": "s", "query": query}]}]});
    Catalog::from_json(json.to_string().as_bytes(), &Limits::default()).unwrap_or_else(|e| {
        panic!(
            "{query}: {}",
            e.problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

#[test]
fn table_cases_agree_with_expectations() {
    let cases: Cases =
        toml::from_str(include_str!("../../testdata/cases.toml")).expect("cases.toml parses");
    assert!(cases.case.len() > 80);
    let mut failures = Vec::new();
    for c in &cases.case {
        let catalog = one_search(&c.query);
        let matcher = Matcher::new(&catalog).unwrap();
        let reference = Reference::new(&catalog);
        let doc = Document {
            id: "d".into(),
            title: o(&c.title),
            text: o(&c.text),
            lang: o(&c.lang),
            source: o(&c.source),
            country: o(&c.country),
            kind: o(&c.kind),
            author: o(&c.author),
            url: o(&c.url),
            created_at: None,
        };
        let mut scratch = matcher.scratch();
        let got = matcher.match_document(&doc, &mut scratch).to_vec();
        let want = reference.match_document(&doc);
        if got != want {
            failures.push(format!(
                "{:?} on {:?}: engine {got:?} vs reference {want:?}",
                c.query, c.text
            ));
        }
        if got.is_empty() == c.expected {
            failures.push(format!(
                "{:?} on {:?}/{:?}: expected match={}",
                c.query, c.title, c.text, c.expected
            ));
        }
        if let (Some(h), Some(m)) = (&c.highlights, got.first()) {
            let text = c.text.as_deref().unwrap_or("");
            let shown: Vec<&str> = m
                .highlights
                .iter()
                .filter(|h| h.field == 1)
                .map(|h| &text[h.start as usize..h.end as usize])
                .collect();
            if &shown != h {
                failures.push(format!(
                    "{:?} on {:?}: highlights {shown:?}, expected {h:?}",
                    c.query, c.text
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn matches_group_by_topic_with_sorted_search_ids() {
    let json = br#"{"topics": [
        {"id": "a", "searches": [{"id": "z", "query": "acme"}, {"id": "b", "query": "corp"}, {"id": "n", "query": "nope"}]},
        {"id": "b", "searches": [{"id": "c", "query": "\"acme corp\""}]},
        {"id": "c", "searches": [{"id": "d", "query": "acme", "languages": ["nl"]}]}]}"#;
    let catalog = Catalog::from_json(json, &Limits::default()).unwrap();
    let m = Matcher::new(&catalog).unwrap();
    let mut scratch = m.scratch();
    let doc = Document {
        lang: Some("en".into()),
        ..Document::with_text("1", "Acme Corp")
    };
    let got = m.match_document(&doc, &mut scratch);
    let ids: Vec<(&str, Vec<&str>)> = got
        .iter()
        .map(|t| {
            (
                m.topic_id(t.topic),
                t.searches.iter().map(|&s| m.search_id(s)).collect(),
            )
        })
        .collect();
    assert_eq!(ids, vec![("a", vec!["b", "z"]), ("b", vec!["c"])]);
    // The scratch is reused: a second document gives only its own matches.
    let doc = Document::with_text("2", "nothing here");
    assert!(m.match_document(&doc, &mut scratch).is_empty());
}

#[test]
fn leaves_that_differ_only_in_case_slop_field_or_kind_stay_apart() {
    // Leaves are interned by their code (fields, kind, features, token
    // kinds, slop, case-sensitive bodies): each pair below shares its
    // features and must still match on its own terms.
    let queries = [
        ("cs-upper", "{ACME}"),
        ("cs-mixed", "{Acme}"),
        ("plain", "acme"),
        ("tag", "#acme"),
        ("title", "title:acme"),
        ("phrase", "\"acme corp\""),
        ("sloppy", "\"acme corp\"~3"),
        ("phrase-cs", "{Acme Corp}"),
    ];
    let searches: Vec<serde_json::Value> = queries
        .iter()
        .map(|(id, q)| serde_json::json!({"id": id, "query": q}))
        .collect();
    let json = serde_json::json!({"topics": [{"id": "t", "searches": searches}]}).to_string();
    let catalog = Catalog::from_json(json.as_bytes(), &Limits::default()).unwrap();
    let m = Matcher::new(&catalog).unwrap();
    let mut scratch = m.scratch();
    let matched = |m: &Matcher, scratch: &mut super::Scratch, title: &str, text: &str| {
        let doc = Document {
            title: Some(title.into()),
            ..Document::with_text("1", text)
        };
        let mut ids: Vec<&str> = m
            .match_document(&doc, scratch)
            .iter()
            .flat_map(|t| t.searches.iter().map(|&s| m.search_id(s).to_string()))
            .map(|s| queries.iter().find(|q| q.0 == s).expect("known id").0)
            .collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(
        matched(&m, &mut scratch, "", "Acme Corp news"),
        ["cs-mixed", "phrase", "phrase-cs", "plain", "sloppy"]
    );
    assert_eq!(
        matched(&m, &mut scratch, "", "ACME said: corp x y #acme"),
        ["cs-upper", "plain", "sloppy", "tag"]
    );
    assert_eq!(
        matched(&m, &mut scratch, "acme", "nothing"),
        ["plain", "title"]
    );
    // Eight leaves, all distinct.
    assert_eq!((m.stats().leaves, m.stats().distinct_leaves), (8, 8));
}

/// The ids of the topics a document of `text` matches, in match order.
fn topic_ids(m: &Matcher, scratch: &mut super::Scratch, text: &str) -> Vec<String> {
    let doc = Document::with_text("1", text);
    m.match_document(&doc, scratch)
        .iter()
        .map(|t| m.topic_id(t.topic).to_string())
        .collect()
}

#[test]
fn equal_leaves_are_interned_once() {
    // One-word leaves (kept by a packed code) and the others (by their
    // full code) are each shared by the searches that have them.
    let json = br##"{"topics": [
        {"id": "a", "searches": [{"id": "a", "query": "acme OR #acme OR \"acme corp\""}]},
        {"id": "b", "searches": [{"id": "b", "query": "acme AND title:acme"}]},
        {"id": "c", "searches": [{"id": "c", "query": "#acme OR \"acme corp\" OR title:acme"}]}]}"##;
    let catalog = Catalog::from_json(json, &Limits::default()).unwrap();
    let m = Matcher::new(&catalog).unwrap();
    // acme, #acme, "acme corp", title:acme.
    assert_eq!((m.stats().leaves, m.stats().distinct_leaves), (8, 4));
    let mut scratch = m.scratch();
    let topics = |text: &str, scratch: &mut super::Scratch| topic_ids(&m, scratch, text);
    assert_eq!(topics("#acme only", &mut scratch), ["a", "c"]);
    assert_eq!(topics("acme plain", &mut scratch), ["a"]);
}

#[test]
fn anchors_skip_searches_whose_words_are_absent() {
    // `job` is shared by many searches; it must not be their anchor.
    let mut topics = Vec::new();
    for i in 0..50 {
        topics.push(serde_json::json!({"id": format!("t{i}"), "searches": [
            {"id": format!("s{i}"), "query": format!("brand{i} NOT job")}]}));
    }
    let json = serde_json::json!({ "topics": topics }).to_string();
    let catalog = Catalog::from_json(json.as_bytes(), &Limits::default()).unwrap();
    let m = Matcher::new(&catalog).unwrap();
    let job = m.c.terms.get("job").unwrap();
    assert_eq!(
        m.c.post_off[job as usize + 1] - m.c.post_off[job as usize],
        0
    );
    let mut scratch = m.scratch();
    let got = m.match_document(&Document::with_text("1", "brand7 news"), &mut scratch);
    assert_eq!(got.len(), 1);
    assert_eq!(m.search_id(got[0].searches[0]), "s7");
}

#[test]
fn restricted_matching_only_uses_the_chosen_searches() {
    let json = br#"{"topics": [{"id": "a", "searches": [{"id": "x", "query": "acme"}, {"id": "y", "query": "corp"}]}]}"#;
    let catalog = Catalog::from_json(json, &Limits::default()).unwrap();
    let m = Matcher::new(&catalog).unwrap();
    let mut scratch = m.scratch();
    let only = vec![false, true];
    let got = m.match_document_only(&Document::with_text("1", "acme corp"), &only, &mut scratch);
    assert_eq!(
        got[0]
            .searches
            .iter()
            .map(|&s| m.search_id(s))
            .collect::<Vec<_>>(),
        vec!["y"]
    );
}

/// Confirm groups (compile's `confirm_groups`): a search woken by one
/// conjunct's anchor is evaluated only when every other conjunct has a
/// feature in the document, and the result is the same as without them.
#[test]
fn conjuncts_without_a_feature_in_the_document_skip_the_evaluation() {
    assert_evaluations(
        "(acme OR zentrix) AND (outage OR down*) AND NOT job",
        &[
            // Woken by one conjunct, the other absent: not evaluated.
            ("acme zentrix news", 0, false),
            ("outage everywhere", 0, false),
            // Both present: evaluated, and matched.
            ("acme outage today", 1, true),
            ("zentrix downtime", 1, true),
            // The NOT's plain word present: vetoed before evaluation.
            ("acme outage job", 0, false),
        ],
    );
}

/// Confirm entries keep their token kind (module `confirm`): `#health`
/// is evaluated only where the document has the hashtag, not the plain
/// word, and a word is satisfied by any token of it.
#[test]
fn tags_confirm_only_as_their_kind() {
    assert_evaluations(
        "acme AND #health",
        &[
            ("acme health news", 0, false),
            ("acme #health", 1, true),
            ("acme @health", 0, false),
        ],
    );
    assert_evaluations(
        "acme AND health",
        &[("acme #health", 1, true), ("acme health", 1, true)],
    );
    assert_evaluations(
        "brand OR #tag OR @tag NOT (x OR y)",
        &[
            ("a tag in plain text", 0, false),
            ("a #tag", 1, true),
            ("@tag says x", 0, false),
            ("@tag says z", 1, true),
            ("$tag", 0, false),
        ],
    );
}

/// Vetoes (module `confirm`): a plain word under an AND's NOT rules the
/// search out before evaluation when it occurs as any non-emoji token;
/// a NOT of anything narrower (one field, a case-sensitive word, a phrase;
/// a hashtag unless the search is flat) is left to the evaluation.
#[test]
fn plain_words_under_not_veto_the_evaluation() {
    type Cases<'a> = &'a [(&'a str, usize, bool)];
    let cases: &[(&str, Cases)] = &[
        (
            "acme -job",
            &[
                ("acme news", 1, true),
                ("acme job", 0, false),
                // A plain word also holds on a hashtag of it.
                ("acme #job", 0, false),
            ],
        ),
        (
            "acme NOT (job OR hiring)",
            &[("acme hiring", 0, false), ("acme jobs", 1, true)],
        ),
        // `#job` is not a plain word, but a flat search's exact branches
        // (module `confirm`) veto it as a hashtag.
        (
            "acme NOT #job",
            &[("acme job", 1, true), ("acme #job", 0, false)],
        ),
        ("acme NOT title:job", &[("acme job", 1, true)]),
        (
            "acme NOT {Job}",
            &[("acme job", 1, true), ("acme Job", 1, false)],
        ),
        (
            "acme NOT \"job offer\"",
            &[("acme job", 1, true), ("acme job offer", 1, false)],
        ),
        // Root OR: each branch has its own vetoes.
        (
            "zentrix OR (acme AND NOT job)",
            &[("acme job", 0, false), ("zentrix acme job", 1, true)],
        ),
    ];
    for (query, cases) in cases {
        assert_evaluations(query, cases);
    }
}

/// Confirm branches of an OR root: each branch is checked on its own (every
/// word of a phrase, every conjunct of an AND), and the search is evaluated
/// when some branch could hold.
#[test]
fn or_branches_without_their_conjuncts_skip_the_evaluation() {
    assert_evaluations(
        "\"acme corp\" OR (zentrix AND (outage OR down))",
        &[
            // The AND branch woke it, its other conjunct is absent, and the
            // phrase branch has no word here: not evaluated.
            ("zentrix news", 0, false),
            // The phrase branch needs both of its words: one is not enough.
            ("zentrix acme news", 0, false),
            // Both words, apart: evaluated, no match.
            ("corp news about acme", 1, false),
            ("acme corp news", 1, true),
            ("zentrix is down", 1, true),
        ],
    );
}

/// Anchors by document frequency: a word most documents hold stops
/// waking the search once the frequencies say so; results do not change.
#[test]
fn anchors_follow_document_frequencies_with_the_same_results() {
    let json = r#"{"topics": [
        {"id": "a", "searches": [{"id": "a1", "query": "news AND zentrix"}]},
        {"id": "b", "searches": [{"id": "b1", "query": "zentrix OR acme"},
                                 {"id": "b2", "query": "zentrix NEAR/2 outage"}]}
    ]}"#;
    let catalog = Catalog::from_json(json.as_bytes(), &Limits::default()).unwrap();
    let texts = [
        "news today",
        "more news here",
        "news about zentrix",
        "weather news",
        "acme news",
        "zentrix outage news",
    ];
    let ids: Vec<String> = (0..texts.len()).map(|i| format!("d{i}")).collect();
    let docs: Vec<Document<'_>> = ids
        .iter()
        .zip(texts)
        .map(|(id, t)| Document::with_text(id, t))
        .collect();
    let plain = Matcher::new(&catalog).unwrap();
    let frequencies = plain.learn_frequencies(&docs);
    assert_eq!(frequencies.documents(), 6);
    assert_eq!(frequencies.share("news"), Some(1.0));
    assert_eq!(frequencies.share("zentrix"), Some(2.0 / 6.0));
    assert_eq!(frequencies.share("never"), Some(0.5 / 6.0), "smoothed");
    let learnt = Matcher::with_frequencies(&catalog, &frequencies).unwrap();
    let (mut s1, mut s2) = (plain.scratch(), learnt.scratch());
    // Fewest searches use `news`: without frequencies it anchors a1.
    plain.match_document(&docs[0], &mut s1);
    assert_eq!(s1.last_candidates(), 1);
    learnt.match_document(&docs[0], &mut s2);
    assert_eq!(s2.last_candidates(), 0, "every document has news");
    let reference = Reference::new(&catalog);
    for d in &docs {
        let want = reference.match_document(d);
        assert_eq!(
            plain.match_document(d, &mut s1),
            want.as_slice(),
            "{}",
            d.id
        );
        assert_eq!(
            learnt.match_document(d, &mut s2),
            want.as_slice(),
            "{}",
            d.id
        );
    }
}

/// A phrase (alone or in a NEAR) is evaluated only when all its words occur.
#[test]
fn phrases_are_evaluated_only_when_every_word_occurs() {
    let phrase = "\"acme corp\"";
    assert_evaluations(
        phrase,
        &[
            ("acme news", 0, false),
            ("corp of acme", 1, false),
            ("acme corp news", 1, true),
        ],
    );
    assert_evaluations(
        "\"acme big corp\"~2 AND -job",
        &[("big acme corp", 1, true), ("acme corp", 0, false)],
    );
    assert_evaluations(
        "acme NEAR/2 (outage OR down)",
        &[("acme news", 0, false), ("acme is down", 1, true)],
    );
}

/// Matches each `(text, evaluated, matches)` against the one search
/// `query`: how many searches were evaluated, whether it matched, and that
/// the result is the reference's.
fn assert_evaluations(query: &str, cases: &[(&str, usize, bool)]) {
    let catalog = one_search(query);
    let m = Matcher::new(&catalog).unwrap();
    let reference = Reference::new(&catalog);
    let mut s = m.scratch();
    for &(text, evaluated, matches) in cases {
        let doc = Document::with_text("d", text);
        let got = m.match_document(&doc, &mut s).to_vec();
        assert_eq!(s.last_evaluated(), evaluated, "{query} on {text}");
        assert_eq!(!got.is_empty(), matches, "{query} on {text}");
        assert_eq!(got, reference.match_document(&doc), "{query} on {text}");
    }
}

/// Exact branches (module `confirm`): a flat search that its branches
/// confirm has matched, its tree not evaluated; one with a phrase, a
/// case-sensitive word or a NEAR is still evaluated. Results are the
/// reference's either way.
#[test]
fn flat_searches_are_decided_by_their_exact_branches() {
    let flat = "(acme OR zentrix) AND (outage OR down) -job";
    let tags = "acme OR #zentrix OR (@corp NOT (job OR hiring))";
    let cases: &[(&str, &str, usize, bool)] = &[
        (flat, "zentrix is down", 1, true),
        (flat, "zentrix is down, #job", 0, false),
        (flat, "zentrix is up", 0, false),
        (tags, "news of #zentrix", 1, true),
        (tags, "news of zentrix", 0, false),
        (tags, "@corp is hiring", 0, false),
        (tags, "@corp is growing", 1, true),
        ("lov* AND (acme OR corp)", "loving acme", 1, true),
        ("acme AND 😡", "acme 😡", 1, true),
        ("\"acme corp\" AND down", "acme corp down", 0, true),
        ("acme AND {Down}", "acme Down", 0, true),
        ("acme NEAR/2 down", "acme is down", 0, true),
    ];
    for &(query, text, decided, matches) in cases {
        let catalog = one_search(query);
        let m = Matcher::new(&catalog).unwrap();
        let reference = Reference::new(&catalog);
        let mut s = m.scratch();
        let doc = Document::with_text("d", text);
        let got = m.match_document(&doc, &mut s).to_vec();
        assert_eq!(s.last_decided(), decided, "{query} on {text}");
        assert_eq!(!got.is_empty(), matches, "{query} on {text}");
        assert_eq!(got, reference.match_document(&doc), "{query} on {text}");
    }
}

/// `explain`'s verdict is the matcher's, search by search, on the sample
/// tweets and searches.
#[test]
fn explain_agrees_with_the_matcher_on_every_sample() {
    let root = env!("CARGO_MANIFEST_DIR");
    let catalog = Catalog::from_path(
        &std::path::Path::new(root).join("samples/searches.json"),
        &Limits::default(),
    )
    .unwrap();
    let m = Matcher::new(&catalog).unwrap();
    let reference = Reference::new(&catalog);
    let mut s = m.scratch();
    let tweets = std::fs::read_to_string(format!("{root}/samples/tweets.jsonl")).unwrap();
    let mut matched = 0;
    for line in tweets.lines().take(600) {
        let doc = Document::parse(line.as_bytes(), 1 << 20).unwrap();
        let want: std::collections::BTreeSet<u32> = m
            .match_document(&doc, &mut s)
            .iter()
            .flat_map(|t| t.searches.iter().map(|x| x.0))
            .collect();
        let got: std::collections::BTreeSet<u32> = (0..catalog.searches.len() as u32)
            .filter(|&i| {
                reference
                    .explain(&doc, crate::searches::SearchIdx(i))
                    .matched
            })
            .collect();
        assert_eq!(got, want, "{}", doc.id);
        matched += want.len();
    }
    assert!(matched > 20, "the samples must match sometimes: {matched}");
}

/// The why of each operator.
#[test]
fn explain_says_why_each_operator_holds_or_fails() {
    for (query, text, matched, whys) in [
        (
            "acme -job*",
            "acme jobs",
            false,
            vec!["fails on NOT job*", "vetoed: job* occurs", "found once"],
        ),
        (
            "acme NEAR/1 outage",
            "acme had a big outage",
            false,
            vec!["closest 3 tokens apart, more than the 1 allowed"],
        ),
        (
            "acme ONEAR/5 outage",
            "outage at acme",
            false,
            vec!["never acme before outage"],
        ),
        (
            "acme OR zentrix",
            "zentrix news",
            true,
            vec!["holds by zentrix", "not in the document"],
        ),
        (
            "\"acme corp\"",
            "corp acme",
            false,
            vec!["not in the document"],
        ),
    ] {
        let catalog = one_search(query);
        let r = Reference::new(&catalog);
        let e = r.explain(
            &Document::with_text("d", text),
            crate::searches::SearchIdx(0),
        );
        assert_eq!(e.matched, matched, "{query}");
        let all = serde_json::to_string(&e).unwrap();
        for why in whys {
            assert!(all.contains(why), "{query} on {text}: {why} not in {all}");
        }
    }
}

/// A long sloppy phrase of one repeated word on a run of that word: the
/// reference (and so `explain`) decides it by matching, not by trying
/// every assignment (which took hours).
#[test]
fn a_sloppy_phrase_of_one_repeated_word_is_decided_quickly() {
    let phrase = vec!["acme"; 16].join(" ");
    let catalog = one_search(&format!("\"{phrase}\"~40"));
    let r = Reference::new(&catalog);
    let text = vec!["acme"; 400].join(" ");
    let e = r.explain(
        &Document::with_text("d", &text),
        crate::searches::SearchIdx(0),
    );
    assert!(e.matched);
    let short = vec!["acme"; 15].join(" ");
    let e = r.explain(
        &Document::with_text("d", &short),
        crate::searches::SearchIdx(0),
    );
    assert!(!e.matched, "15 words cannot hold 16");
}

/// Costs (module `cost`): each evaluated search's evaluations, matches and
/// work; searches never evaluated are not listed; taking resets.
#[test]
fn costs_count_each_searchs_evaluations_matches_and_work() {
    let json = br#"{"topics": [{"id": "t", "searches": [{"id": "a", "query": "acme AND outage"}, {"id": "b", "query": "acme"}, {"id": "c", "query": "zebra"}]}, {"id": "u", "searches": [{"id": "d", "query": "acme NOT fine"}]}]}"#;
    let catalog = Catalog::from_json(json, &Limits::default()).unwrap();
    let m = Matcher::new(&catalog).unwrap();
    let mut scratch = m.scratch();
    scratch.count_costs(1);
    for text in ["acme outage today", "acme is fine", "nothing here"] {
        m.match_document(&Document::with_text("1", text), &mut scratch);
    }
    let mut got = std::collections::BTreeMap::new();
    let documents = scratch.take_costs(|s, c| {
        got.insert(
            (
                m.topic_id(m.search_topic(s)).to_string(),
                m.search_id(s).to_string(),
            ),
            *c,
        );
    });
    assert_eq!(documents, 3);
    let cost = |t: &str, s: &str| got[&(t.to_string(), s.to_string())];
    // `a` is evaluated only where both words occur (its confirm groups).
    assert_eq!((cost("t", "a").evaluations, cost("t", "a").matches), (1, 1));
    assert_eq!((cost("t", "b").evaluations, cost("t", "b").matches), (2, 2));
    // `d` is vetoed where `fine` occurs (its NOT's plain word).
    assert_eq!((cost("u", "d").evaluations, cost("u", "d").matches), (1, 1));
    assert!(
        !got.keys().any(|(_, s)| s == "c"),
        "never evaluated: {got:?}"
    );
    for c in got.values() {
        assert!(c.work >= c.evaluations && c.max_work > 0, "{c:?}");
        // Sampling every document: every evaluation timed.
        assert_eq!(c.timed_evaluations, c.evaluations);
    }
    assert_eq!(
        scratch.take_costs(|s, c| panic!("{s:?} {c:?} after a take")),
        0
    );
    // Without counting, nothing is counted.
    let mut plain = m.scratch();
    m.match_document(&Document::with_text("1", "acme"), &mut plain);
    assert_eq!(plain.take_costs(|_, _| panic!("not counted")), 0);
}

/// A catalog large enough to be compiled on several threads (50,000
/// searches and more: anchors, positive leaves and confirm branches are
/// derived per range of searches and merged) matches as the reference.
#[test]
fn a_catalog_compiled_on_several_threads_matches_as_the_reference() {
    let shapes = [
        "w{i} AND (common OR other)",
        "\"w{i} common\" OR #t{i}",
        "(w{i} OR other) -rare",
        "w{i} NEAR/2 common",
    ];
    let topics: Vec<serde_json::Value> = (0..60_000)
        .map(|i| {
            let query = shapes[i % shapes.len()].replace("{i}", &(i % 997).to_string());
            serde_json::json!({"id": format!("t{i}"), "searches": [{"id": format!("s{i}"), "query": query}]})
        })
        .collect();
    let json = serde_json::json!({ "topics": topics }).to_string();
    let catalog = Catalog::from_json(json.as_bytes(), &Limits::default()).unwrap();
    let m = Matcher::new(&catalog).unwrap();
    let reference = Reference::new(&catalog);
    let mut scratch = m.scratch();
    for text in [
        "w5 common news",
        "w996 other #t996 rare",
        "w7 x common and w12",
        "nothing",
    ] {
        let doc = Document::with_text("d", text);
        let got = m.match_document(&doc, &mut scratch).to_vec();
        assert_eq!(got, reference.match_document(&doc), "{text}");
        if text != "nothing" {
            assert!(!got.is_empty(), "{text}");
        }
    }
}

#[test]
fn a_term_is_looked_up_in_the_prefix_table_only_when_a_prefix_starts_it() {
    let json = br##"{"topics": [
        {"id": "exact", "searches": [{"id": "e", "query": "embezzle OR cat"}]},
        {"id": "stem", "searches": [{"id": "s", "query": "embez*"}]},
        {"id": "tag", "searches": [{"id": "t", "query": "#cat*"}]}]}"##;
    let catalog = Catalog::from_json(json, &Limits::default()).unwrap();
    let m = Matcher::new(&catalog).unwrap();
    let c = &m.c;
    let feature = |term: &str| {
        let body = term.as_bytes();
        c.terms.find_at(body, c.terms.locate(body)).unwrap()
    };
    assert!(c.term_has_prefix(feature("embezzle")));
    assert!(c.term_has_prefix(feature("cat")));
    let mut scratch = m.scratch();
    let topics = |text: &str, scratch: &mut super::Scratch| topic_ids(&m, scratch, text);
    // A term a prefix starts is still looked up: both of its topics match.
    assert_eq!(topics("they embezzle", &mut scratch), ["exact", "stem"]);
    // A token that is no term is looked up as before.
    assert_eq!(
        topics("embezzlement #catalog", &mut scratch),
        ["stem", "tag"]
    );
    // `cat` as a plain word is a term; `#cat*` asks for a hashtag.
    assert_eq!(topics("a cat", &mut scratch), ["exact"]);
    assert_eq!(topics("#cat", &mut scratch), ["exact", "tag"]);
}

#[test]
fn a_term_no_prefix_starts_is_not_marked() {
    let json = br#"{"topics": [
        {"id": "a", "searches": [{"id": "a", "query": "dog AND embez*"}]}]}"#;
    let catalog = Catalog::from_json(json, &Limits::default()).unwrap();
    let m = Matcher::new(&catalog).unwrap();
    let c = &m.c;
    let body = b"dog";
    let dog = c.terms.find_at(body, c.terms.locate(body)).unwrap();
    assert!(!c.term_has_prefix(dog));
    let mut scratch = m.scratch();
    let doc = Document::with_text("1", "dog embezzled");
    assert_eq!(m.match_document(&doc, &mut scratch).len(), 1);
}
