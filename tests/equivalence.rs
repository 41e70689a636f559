//! docs/query-language.md §3.6: the compiled matcher returns exactly what the reference
//! evaluator (each syntax tree evaluated on its own against the tokens)
//! returns — matches, searches and highlights — on random searches and
//! random documents built from a small vocabulary with accents, hashtags,
//! emoji, CJK and punctuation.

use std::borrow::Cow;

use proptest::prelude::*;
use topic_matcher::document::Document;
use topic_matcher::engine::reference::Reference;
use topic_matcher::engine::Matcher;
use topic_matcher::query::Limits;
use topic_matcher::searches::Catalog;

/// Query leaves: every row of docs/query-language.md §3.2 and §3.4 is represented.
const LEAVES: &[&str] = &[
    "\"go go go\"~2",
    "\"#acme acme\"~1",
    "\"acme #acme acme\"~2",
    "acme",
    "Acme",
    "café",
    "cafe",
    "strasse",
    "corp",
    "go",
    "job",
    "down",
    "love",
    "#acme",
    "@acme",
    "$acme",
    "#café",
    "e-mail",
    "u2-concert",
    "\"acme corp\"",
    "\"corp acme\"",
    "\"go go\"",
    "\"acme corp\"~2",
    "\"go go\"~1",
    "\"acme café corp\"~1",
    "lov*",
    "colo?r",
    "*ove",
    "#acm*",
    "caf*",
    "str*e",
    "{Acme}",
    "{café}",
    "{\"Acme Corp\"}",
    "😡",
    "❤",
    "東京",
    "京タ",
    "タワー",
    "/acme-?\\d/",
    "/(?i)caf./",
    "/[0-9]{2,}/",
    "title:acme",
    "text:corp",
    "title:(go OR love)",
    "lang:en",
    "source:twitter",
    "author:jdoe",
    "site:example.com",
    "url:status",
];

/// Document words and separators.
const WORDS: &[&str] = &[
    "acme",
    "Acme",
    "ACME",
    "acmé",
    "café",
    "CAFE",
    "Straße",
    "corp",
    "Corp",
    "go",
    "job",
    "down",
    "love",
    "loved",
    "glove",
    "colour",
    "color",
    "#acme",
    "#Acme",
    "@acme",
    "$ACME",
    "#café",
    "e-mail",
    "email",
    "u2",
    "concert",
    "😡",
    "❤️",
    "東京",
    "タワー",
    "ﾀﾜｰ",
    "acme-1",
    "acme2",
    "42",
    "2024",
    "naïve",
    "the",
    "a",
];
const SEPARATORS: &[&str] = &[" ", " ", " ", ", ", "-", "! ", "", "\n", " #", "…"];

fn leaf() -> impl Strategy<Value = String> {
    prop::sample::select(LEAVES).prop_map(str::to_string)
}

fn near_operand() -> impl Strategy<Value = String> {
    let text_leaf = prop::sample::select(&LEAVES[..42]).prop_map(str::to_string);
    prop_oneof![
        3 => text_leaf.clone(),
        1 => (text_leaf.clone(), text_leaf).prop_map(|(a, b)| format!("({a} OR {b})")),
    ]
}

fn expr() -> impl Strategy<Value = String> {
    let base = prop_oneof![
        4 => leaf(),
        1 => (near_operand(), near_operand(), 0u32..4, 0u8..3).prop_map(|(a, b, n, o)| match o {
            0 => format!("{a} NEAR/{n} {b}"),
            1 => format!("{a} NEAR/{n}f {b}"),
            _ => format!("{a} ONEAR/{n} {b}"),
        }),
    ];
    base.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} OR {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} AND {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} NOT {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} -({b})")),
            inner.clone().prop_map(|a| format!("({a})")),
            inner.prop_map(|a| format!("title:({a})")),
        ]
    })
}

fn field_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop::sample::select(WORDS),
            prop::sample::select(SEPARATORS),
        ),
        0..14,
    )
    .prop_map(|v| {
        let mut s = String::new();
        for (w, sep) in v {
            s.push_str(w);
            s.push_str(sep);
        }
        s
    })
}

#[derive(Debug, Clone)]
struct Doc {
    title: Option<String>,
    text: Option<String>,
    lang: Option<&'static str>,
    source: Option<&'static str>,
    author: Option<&'static str>,
    url: Option<&'static str>,
}

fn doc() -> impl Strategy<Value = Doc> {
    (
        prop::option::weighted(0.3, field_text()),
        prop::option::weighted(0.95, field_text()),
        prop::option::of(prop::sample::select(&["en", "EN", "nl"][..])),
        prop::option::of(prop::sample::select(&["twitter", "news"][..])),
        prop::option::of(prop::sample::select(&["@jdoe", "JDoe", "other"][..])),
        prop::option::of(prop::sample::select(
            &[
                "https://www.example.com/status/1",
                "http://badexample.com/",
                "x",
            ][..],
        )),
    )
        .prop_map(|(title, text, lang, source, author, url)| Doc {
            title,
            text,
            lang,
            source,
            author,
            url,
        })
}

fn check(queries: &[String], docs: &[Doc], filters: bool) -> Result<(), TestCaseError> {
    let topics: Vec<serde_json::Value> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let mut s = serde_json::json!({"id": format!("s{i}"), "query": q});
            if filters && i % 3 == 0 {
                s["languages"] = serde_json::json!(["en"]);
            }
            // Two searches per topic on average, to exercise grouping.
            serde_json::json!({"id": format!("t{}", i / 2), "searches": [s]})
        })
        .collect();
    // Merge searches of the same topic id.
    let mut merged: Vec<serde_json::Value> = Vec::new();
    for t in topics {
        match merged.last_mut() {
            Some(last) if last["id"] == t["id"] => {
                let s = t["searches"][0].clone();
                last["searches"].as_array_mut().unwrap().push(s);
            }
            _ => merged.push(t),
        }
    }
    // Keep only the searches that are valid on their own.
    for t in &mut merged {
        let searches = t["searches"].as_array_mut().unwrap();
        searches.retain(|s| {
            topic_matcher::query::parse(s["query"].as_str().unwrap(), &Limits::default()).is_ok()
        });
    }
    let json = serde_json::json!({ "topics": merged }).to_string();
    let catalog =
        Catalog::from_json(json.as_bytes(), &Limits::default()).expect("valid searches only");
    if catalog.searches.is_empty() {
        return Ok(());
    }
    let docs: Vec<Document<'_>> = docs
        .iter()
        .filter(|d| d.title.is_some() || d.text.is_some())
        .map(|d| Document {
            id: "d".into(),
            title: d.title.as_deref().map(Cow::Borrowed),
            text: d.text.as_deref().map(Cow::Borrowed),
            lang: d.lang.map(Cow::Borrowed),
            source: d.source.map(Cow::Borrowed),
            author: d.author.map(Cow::Borrowed),
            url: d.url.map(Cow::Borrowed),
            ..Document::default()
        })
        .collect();
    let matcher = Matcher::new(&catalog).unwrap();
    // Anchors chosen by the documents' own term frequencies must not
    // change a result either.
    let frequencies = matcher.learn_frequencies(&docs);
    let by_frequency = Matcher::with_frequencies(&catalog, &frequencies).unwrap();
    let reference = Reference::new(&catalog);
    let (mut scratch, mut scratch2) = (matcher.scratch(), by_frequency.scratch());
    for doc in &docs {
        let want = reference.match_document(doc);
        let got = matcher.match_document(doc, &mut scratch).to_vec();
        prop_assert_eq!(&got, &want, "searches {:?}\ndoc {:?}", queries, doc);
        let got = by_frequency.match_document(doc, &mut scratch2).to_vec();
        prop_assert_eq!(
            &got,
            &want,
            "by frequency: searches {:?}\ndoc {:?}",
            queries,
            doc
        );
        // `explain`'s verdict, search by search, is the matcher's.
        let matched: std::collections::BTreeSet<u32> = want
            .iter()
            .flat_map(|t| t.searches.iter().map(|s| s.0))
            .collect();
        for s in 0..catalog.searches.len() as u32 {
            let e = reference.explain(doc, topic_matcher::searches::SearchIdx(s));
            prop_assert_eq!(
                e.matched,
                matched.contains(&s),
                "explain of {:?} on {:?}",
                catalog.searches[s as usize].text,
                doc
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(4000),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    /// Several searches compiled together against several documents.
    #[test]
    fn compiled_matcher_equals_reference(
        queries in prop::collection::vec(expr(), 1..8),
        docs in prop::collection::vec(doc(), 1..6),
        filters in any::<bool>(),
    ) {
        check(&queries, &docs, filters)?;
    }
}

/// Regressions found by the property test, kept as plain cases.
#[test]
fn regressions() {
    let cases: &[(&[&str], &str)] = &[
        (&["acme NEAR/0 acme"], "acme acme"),
        (&["\"go go\"~1 NEAR/1 go"], "go go go"),
        (&["/[0-9]{2,}/ NEAR/0 acme"], "42 acme"),
        (&["東京 NEAR/0 タワー"], "東京タワー"),
    ];
    for (queries, text) in cases {
        let queries: Vec<String> = queries.iter().map(|q| q.to_string()).collect();
        let d = Doc {
            title: None,
            text: Some(text.to_string()),
            lang: None,
            source: None,
            author: None,
            url: None,
        };
        check(&queries, &[d], false).unwrap();
    }
}

/// The comparison above only means something if random searches do match
/// random documents often: check that the generators produce both outcomes.
#[test]
fn generators_produce_matches_and_non_matches() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut matched, mut total) = (0, 0);
    for _ in 0..400 {
        let q = expr().new_tree(&mut runner).unwrap().current();
        let d = doc().new_tree(&mut runner).unwrap().current();
        let Ok(_) = topic_matcher::query::parse(&q, &Limits::default()) else {
            continue;
        };
        let json =
            serde_json::json!({"topics": [{"id": "t", "searches": [{"id": "s", "query": q}]}]})
                .to_string();
        let catalog = Catalog::from_json(json.as_bytes(), &Limits::default()).unwrap();
        let m = Matcher::new(&catalog).unwrap();
        let mut scratch = m.scratch();
        let doc = Document {
            title: d.title.as_deref().map(Cow::Borrowed),
            text: d.text.as_deref().map(Cow::Borrowed),
            lang: d.lang.map(Cow::Borrowed),
            ..Document::with_text("d", "")
        };
        total += 1;
        if !m.match_document(&doc, &mut scratch).is_empty() {
            matched += 1;
        }
    }
    assert!(total > 200, "too few valid queries: {total}");
    let share = matched as f64 / total as f64;
    eprintln!("{matched} of {total} random (search, document) pairs match");
    assert!(
        (0.1..0.9).contains(&share),
        "share of matching pairs {share:.2} ({matched}/{total})"
    );
}
