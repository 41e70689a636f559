//! Criterion benches of the matching core: compile and match at 1k, 10k and
//! 100k generated searches, on tweet-length and long-form documents, with
//! the reference evaluator (each search evaluated on its own) as the
//! baseline at the same search counts.
//!
//! Every bench checks its result count: the setup asserts that the engine
//! and the reference evaluator agree on a prefix of the documents, and each
//! measured iteration asserts the engine's match count, so a faster but
//! wrong change fails instead of reporting a better number.
//!
//! `adversarial_1mb` matches each hostile 1 MB document of
//! `workload::adversarial` against the search that used to be slow on it,
//! and a document of long tokens against a catalog with a wildcard prefix
//! of every length up to 4,000 bytes (`prefix lengths`).
//!
//! `match_real_posts` matches real posts against searches drawn from their
//! own vocabulary (`workload::realistic`): the bundled sample of 2,198
//! tweets always, and the corpus of `scripts/fetch-real-posts.py` (80,000
//! tweets, Reddit comments and news articles) when it is cached in
//! `~/.cache/topic-matcher/real-posts/posts.jsonl` (set `TM_REAL_POSTS` to
//! another path). Real text is far less kind than the generator: many
//! searches wake up per post.
//!
//! `tokenize` tokenizes and folds the text of the generator's tweets and of
//! the real posts (most of a post's own cost on the generator); each
//! iteration checks the token count against UAX #29 word segments counted
//! with `unicode-segmentation` directly, which is also the baseline
//! (segmenting alone with the crate the fast paths stand in for).
//!
//! `cargo bench --bench engine` runs all; `TM_BENCH_QUICK=1` limits it to
//! 1k and 10k searches.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use topic_matcher::document::Document;
use topic_matcher::engine::reference::Reference;
use topic_matcher::engine::Matcher;
use topic_matcher::query::Limits;
use topic_matcher::searches::Catalog;
use topic_matcher::workload;

const SEED: u64 = 1;

fn sizes() -> Vec<usize> {
    if std::env::var_os("TM_BENCH_QUICK").is_some() {
        vec![1_000, 10_000]
    } else {
        vec![1_000, 10_000, 100_000]
    }
}

struct Fixture {
    catalog: Catalog,
    tweets: Vec<String>,
    articles: Vec<String>,
}

fn fixture(n: usize) -> Fixture {
    let json = workload::searches_json(n, SEED);
    let groups = workload::brand_groups(&json);
    Fixture {
        catalog: Catalog::from_json(json.as_bytes(), &Limits::default())
            .expect("generated searches are valid"),
        tweets: workload::documents(10_000, groups, false, SEED),
        articles: workload::documents(300, groups, true, SEED),
    }
}

fn parse(lines: &[String]) -> Vec<Document<'_>> {
    lines
        .iter()
        .map(|l| Document::parse(l.as_bytes(), 1 << 24).expect("generated documents are valid"))
        .collect()
}

/// The engine's match count on `docs`, after checking it against the
/// reference evaluator on the first `check` documents.
fn checked_count(
    matcher: &Matcher,
    reference: &Reference<'_>,
    docs: &[Document<'_>],
    check: usize,
) -> usize {
    let mut scratch = matcher.scratch();
    for d in &docs[..check.min(docs.len())] {
        assert_eq!(
            matcher.match_document(d, &mut scratch),
            reference.match_document(d).as_slice(),
            "doc {}",
            d.id
        );
    }
    let count: usize = docs
        .iter()
        .map(|d| matcher.match_document(d, &mut scratch).len())
        .sum();
    assert!(count > 0, "the workload must produce matches");
    count
}

/// `group/engine/n`: the engine over `docs`, each iteration checking the
/// match count; with `with_costs` also `group/engine_costs/n`, the same
/// with per-search costs counted as the service counts them.
fn bench_matching(
    c: &mut Criterion,
    group: &str,
    n: usize,
    matcher: &Matcher,
    docs: &[Document<'_>],
    expected: usize,
    with_costs: bool,
) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(docs.len() as u64));
    g.sample_size(10);
    let mut scratch = matcher.scratch();
    g.bench_function(BenchmarkId::new("engine", n), |b| {
        b.iter(|| {
            let count: usize = docs
                .iter()
                .map(|d| matcher.match_document(black_box(d), &mut scratch).len())
                .sum();
            assert_eq!(count, expected);
        })
    });
    if with_costs {
        // As the service counts: every evaluation, one document in 64
        // timed, the counts taken once per pass (the service: once a
        // second).
        let mut scratch = matcher.scratch();
        scratch.count_costs(64);
        g.bench_function(BenchmarkId::new("engine_costs", n), |b| {
            b.iter(|| {
                let count: usize = docs
                    .iter()
                    .map(|d| matcher.match_document(black_box(d), &mut scratch).len())
                    .sum();
                let mut evaluated = 0u64;
                scratch.take_costs(|_, c| evaluated += c.evaluations);
                assert_eq!(count, expected);
                assert!(evaluated >= count as u64);
            })
        });
    }
    g.finish();
}

fn bench_engine(c: &mut Criterion) {
    for n in sizes() {
        let f = fixture(n);
        let matcher = Matcher::new(&f.catalog).unwrap();
        let reference = Reference::new(&f.catalog);
        let tweets = parse(&f.tweets);
        let articles = parse(&f.articles);
        let check = if n >= 100_000 { 20 } else { 200 };
        // The same catalog with a regex leaf in 1% of its searches.
        let with_regex = Catalog::from_json(
            workload::with_regex_leaves(&workload::searches_json(n, SEED), 1).as_bytes(),
            &Limits::default(),
        )
        .expect("generated searches are valid");
        let regex_matcher = Matcher::new(&with_regex).unwrap();
        let regex_count =
            checked_count(&regex_matcher, &Reference::new(&with_regex), &tweets, check);
        bench_matching(
            c,
            "match_tweets_regex_1pct",
            n,
            &regex_matcher,
            &tweets,
            regex_count,
            false,
        );
        let tweet_count = checked_count(&matcher, &reference, &tweets, check);
        let article_count = checked_count(&matcher, &reference, &articles, check / 10);

        let mut g = c.benchmark_group("compile");
        g.sample_size(10)
            .measurement_time(Duration::from_secs(if n >= 100_000 { 20 } else { 5 }));
        g.bench_with_input(BenchmarkId::from_parameter(n), &f.catalog, |b, catalog| {
            b.iter(|| {
                let m = Matcher::new(black_box(catalog)).unwrap();
                assert_eq!(m.search_count(), n);
                m
            })
        });
        g.finish();

        for (name, docs, expected) in [
            ("match_tweets", &tweets, tweet_count),
            ("match_articles", &articles, article_count),
        ] {
            bench_matching(c, name, n, &matcher, docs, expected, name == "match_tweets");
        }

        // The baseline: each search evaluated on its own, on a prefix of the
        // tweets small enough to finish (its count checked against the
        // engine's on the same prefix).
        let prefix = &tweets[..if n >= 100_000 { 20 } else { 200 }];
        let mut scratch = matcher.scratch();
        let expected: usize = prefix
            .iter()
            .map(|d| matcher.match_document(d, &mut scratch).len())
            .sum();
        let mut g = c.benchmark_group("match_tweets");
        g.throughput(Throughput::Elements(prefix.len() as u64));
        g.sample_size(10);
        g.bench_function(BenchmarkId::new("reference", n), |b| {
            b.iter(|| {
                let count: usize = prefix
                    .iter()
                    .map(|d| reference.match_document(black_box(d)).len())
                    .sum();
                assert_eq!(count, expected);
            })
        });
        g.finish();
    }
}

/// Hostile 1 MB documents (`workload::adversarial`), each against the
/// search that used to be exponential or quadratic on it, matched within
/// the default work budget; each iteration checks the match.
fn bench_adversarial(c: &mut Criterion) {
    let mut g = c.benchmark_group("adversarial_1mb");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for case in workload::adversarial(1 << 20) {
        let json = serde_json::json!({"topics": [{"id": "t", "searches": [{"id": "s", "query": case.query}]}]})
            .to_string();
        let catalog = Catalog::from_json(json.as_bytes(), &Limits::default()).unwrap();
        let matcher = Matcher::new(&catalog).unwrap();
        let doc = Document::with_text("d", &case.text);
        let mut scratch = matcher.scratch();
        g.throughput(Throughput::Bytes(case.text.len() as u64));
        g.bench_function(case.name, |b| {
            b.iter(|| {
                let found = matcher
                    .try_match_document(black_box(&doc), None, &mut scratch)
                    .expect("within the budget")
                    .len();
                assert_eq!(found == 1, case.matches);
            })
        });
    }
    g.finish();
}

/// A 1 MB document of 5,000-byte tokens of `a` against 3,998 searches
/// `aaa*`, `aaab*`, `aaaab*`, … (a prefix of every length up to 4,000
/// bytes): a token is looked up once per length, and the cost of a
/// lookup must not grow with the length (it once did, quadratically).
/// Only `aaa*` matches.
fn bench_prefix_lengths(c: &mut Criterion) {
    let mut topics =
        vec![serde_json::json!({"id": "t3", "searches": [{"id": "s3", "query": "aaa*"}]})];
    for n in 4..=4000 {
        let query = format!("{}b*", "a".repeat(n - 1));
        topics.push(serde_json::json!({"id": format!("t{n}"), "searches": [{"id": format!("s{n}"), "query": query}]}));
    }
    let json = serde_json::json!({ "topics": topics }).to_string();
    let catalog = Catalog::from_json(json.as_bytes(), &Limits::default()).unwrap();
    let matcher = Matcher::new(&catalog).unwrap();
    let token = "a".repeat(5000);
    let text = vec![token.as_str(); (1 << 20) / 5001].join(" ");
    let doc = Document::with_text("d", &text);
    let mut scratch = matcher.scratch();
    let mut g = c.benchmark_group("adversarial_1mb");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("prefix lengths", |b| {
        b.iter(|| {
            let found = matcher
                .try_match_document(black_box(&doc), None, &mut scratch)
                .expect("within the budget");
            assert_eq!(found.len(), 1);
            assert_eq!(matcher.topic_id(found[0].topic), "t3");
        })
    });
    g.finish();
}

/// The real-posts corpus: the fetched one when cached, else the bundled
/// sample.
fn real_posts() -> (String, Vec<String>) {
    let cached = std::env::var_os("TM_REAL_POSTS")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| {
                std::path::PathBuf::from(h).join(".cache/topic-matcher/real-posts/posts.jsonl")
            })
        });
    let (name, path) = match cached.filter(|p| p.exists()) {
        Some(p) => ("fetched", p),
        None => (
            "sample",
            std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/tweets.jsonl")),
        ),
    };
    let text = std::fs::read_to_string(&path).expect("the real posts");
    (name.to_string(), text.lines().map(String::from).collect())
}

fn bench_real_posts(c: &mut Criterion) {
    let (corpus, lines) = real_posts();
    let vocabulary = workload::realistic::Vocabulary::of(&lines);
    let docs: Vec<Document<'_>> = lines
        .iter()
        .filter_map(|l| Document::parse(l.as_bytes(), 1 << 24).ok())
        .collect();
    // At most 20,000 posts per iteration: tweets and comments first.
    let docs = &docs[..docs.len().min(20_000)];
    for n in sizes() {
        let catalog = Catalog::from_json(
            vocabulary.searches_json(n, SEED).as_bytes(),
            &Limits::default(),
        )
        .expect("generated searches are valid");
        let matcher = Matcher::new(&catalog).unwrap();
        let reference = Reference::new(&catalog);
        let expected = checked_count(
            &matcher,
            &reference,
            docs,
            if n >= 100_000 { 10 } else { 100 },
        );
        bench_matching(
            c,
            &format!("match_real_posts_{corpus}"),
            n,
            &matcher,
            docs,
            expected,
            true,
        );
    }
}

/// Tokens by UAX #29 itself: word segments with a letter or digit, and
/// segments that start with an emoji (docs/query-language.md §3.1).
fn uax29_token_count(texts: &[String]) -> usize {
    use unicode_segmentation::UnicodeSegmentation;
    texts
        .iter()
        .flat_map(|t| t.split_word_bounds())
        .filter(|seg| {
            seg.chars().any(char::is_alphanumeric)
                || seg.chars().next().is_some_and(|c| {
                    topic_matcher::text::is_extended_pictographic(c)
                        || ('\u{1F1E6}'..='\u{1F1FF}').contains(&c)
                })
        })
        .count()
}

fn bench_tokenize(c: &mut Criterion) {
    let texts_of = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| Document::parse(l.as_bytes(), 1 << 24).ok())
            .filter_map(|d| d.text.as_deref().map(String::from))
            .take(20_000)
            .collect()
    };
    let generated = texts_of(&fixture(1_000).tweets);
    let (corpus, lines) = real_posts();
    let real = texts_of(&lines);
    let mut g = c.benchmark_group("tokenize");
    for (name, texts) in [("generator".to_string(), generated), (corpus, real)] {
        let expected = uax29_token_count(&texts);
        let bytes: usize = texts.iter().map(String::len).sum();
        g.throughput(Throughput::Bytes(bytes as u64));
        // The baseline: segmenting with the crate alone (no folding, no
        // token records), which the fast paths must beat to be worth
        // their code.
        g.bench_function(format!("{name}/unicode-segmentation"), |b| {
            b.iter(|| assert_eq!(uax29_token_count(black_box(&texts)), expected))
        });
        let mut tokens = topic_matcher::text::Tokens::new();
        g.bench_function(format!("{name}/tokens"), |b| {
            b.iter(|| {
                let mut count = 0;
                for t in &texts {
                    tokens.analyze(black_box(t));
                    count += tokens.len();
                }
                assert_eq!(count, expected, "tokens against UAX #29 segments");
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_tokenize,
    bench_engine,
    bench_adversarial,
    bench_prefix_lengths,
    bench_real_posts
);
criterion_main!(benches);
