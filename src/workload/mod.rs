//! A deterministic, realistic workload for benchmarks: searches shaped like
//! those of social-listening customers and tweet-length (or long-form)
//! documents that mention the searched brands at realistic rates.
//!
//! Everything derives from a seed, so the `bench` command, the criterion
//! benches and their checked result counts see the same input on every
//! machine.
//!
//! * **Brands** are invented names built from syllables (`zentrix`,
//!   `novalux`), one per search group, so 100,000 searches have tens of
//!   thousands of distinct brand terms — the shape of a real catalog.
//! * **Searches** follow the templates customers write: brand OR hashtag
//!   with NOT clauses, outage proximity (`NEAR/3`), product phrases, prefix
//!   wildcards, case-sensitive names, language filters, sloppy phrases.
//!   Generic words (`job`, `down`, `price`) recur across many searches.
//! * **Documents** draw ordinary words from a Zipf distribution over a
//!   common-English vocabulary, mention 0–2 brands (themselves Zipf
//!   distributed, so a few brands are hot), and carry hashtags, mentions,
//!   emoji, URLs and some accented words.

pub mod realistic;

/// A small deterministic generator (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// Zipf-like rank in `0..n`: rank r has weight about 1/(r+1).
    pub fn zipf(&mut self, n: usize) -> usize {
        // Inverse transform of the continuous 1/x density on [1, n+1).
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let r = ((n as f64 + 1.0).ln() * u).exp() - 1.0;
        (r as usize).min(n - 1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Common English words, most frequent first (ranks drive the Zipf draw).
const COMMON: &[&str] = &[
    "the", "to", "and", "a", "i", "of", "is", "in", "it", "you", "for", "that", "my", "on", "this",
    "with", "be", "me", "so", "have", "just", "but", "are", "not", "at", "was", "all", "your",
    "can", "we", "like", "get", "do", "what", "out", "if", "up", "now", "from", "will", "no",
    "love", "one", "new", "they", "good", "day", "know", "about", "how", "time", "when", "people",
    "go", "today", "more", "he", "there", "got", "an", "by", "see", "great", "really", "back",
    "think", "want", "who", "still", "been", "need", "make", "our", "only", "much", "some",
    "going", "why", "them", "then", "last", "her", "here", "first", "best", "right", "work",
    "again", "night", "never", "way", "thanks", "over", "off", "his", "she", "happy", "would",
    "better", "year", "well", "life", "week", "world", "morning", "always", "even", "too", "could",
    "look", "after", "come", "home", "free", "long", "little", "every", "thank", "things",
    "tomorrow", "watch", "game", "since", "weekend", "please", "next", "amazing", "show", "feel",
    "thing", "nice", "little", "music", "help", "live", "try", "tonight", "everyone", "someone",
    "check", "friends", "video", "wait", "morning", "stop", "hope", "tell", "before", "school",
    "should", "bad", "start", "find", "follow", "news", "team", "use", "real", "read", "phone",
    "family", "because", "coffee", "money", "call", "cool", "sure", "pretty", "story", "hard",
    "play", "via", "order", "shop", "online", "open", "city", "food", "car", "friend", "lol",
    "yes", "ever", "wow", "top", "big", "old", "man", "keep",
];

/// Product and service words; some searches use them in phrases.
const PRODUCT: &[&str] = &[
    "app", "phone", "store", "service", "support", "delivery", "price", "update", "account",
    "card", "laptop", "coffee", "shoes", "car", "bank", "airline", "flight", "hotel", "pizza",
    "game", "tv",
];

/// Complaint words that outage searches look for near a brand.
const ISSUES: &[&str] = &[
    "down",
    "outage",
    "broken",
    "crash",
    "slow",
    "error",
    "refund",
    "cancelled",
    "late",
];

/// Recruiting words that searches exclude.
const JOBS: &[&str] = &["job", "jobs", "hiring", "career", "intern", "vacancy"];

const SYLLABLES: &[&str] = &[
    "zen", "tri", "nova", "lux", "kor", "vex", "ta", "mi", "ra", "lo", "quin", "dar", "bel", "sol",
    "ix", "ka", "fen", "dro", "vi", "ga", "pol", "ster", "mon", "ory", "tek", "wu", "nu", "zo",
    "plex", "cy",
];

/// Closing syllables; with `SYLLABLES` they form a prefix-free code, so
/// every brand name decodes to one syllable sequence and names are unique.
const ENDINGS: &[&str] = &["ax", "on", "um", "en", "ia", "ox", "ar"];

const EMOJI: &[&str] = &["😡", "😀", "🔥", "❤️", "👍", "😂", "🙏", "🚀"];
const ACCENTED: &[&str] = &[
    "café", "naïve", "résumé", "Straße", "crème", "señor", "über", "déjà",
];

/// The brand name of group `i`: unique per `i`, 2–4 syllables.
pub fn brand(i: usize) -> String {
    let mut x = i as u64 + 1;
    let mut s = String::new();
    let n = SYLLABLES.len() as u64;
    // Bijective base-n numbering gives each index its own syllable sequence;
    // a closing syllable marks the end.
    while x > 0 {
        x -= 1;
        s.push_str(SYLLABLES[(x % n) as usize]);
        x /= n;
    }
    s.push_str(ENDINGS[(i * 7 + 3) % ENDINGS.len()]);
    s
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The searches file (docs/formats.md §2.2) for `n` searches, as JSON.
pub fn searches_json(n: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut topics = Vec::new();
    let mut made = 0;
    let mut group = 0;
    while made < n {
        // A topic has 1–3 searches about one brand.
        let b = brand(group);
        let per_topic = (1 + rng.below(3)).min(n - made);
        let mut searches = Vec::new();
        for k in 0..per_topic {
            let query = search_query(&mut rng, &b);
            let mut s = serde_json::json!({"id": format!("s{}-{k}", group), "query": query});
            if rng.chance(0.1) {
                s["languages"] = serde_json::json!(["en"]);
            }
            searches.push(s);
        }
        topics.push(serde_json::json!({"id": format!("t{group}"), "name": capitalize(&b), "searches": searches}));
        made += per_topic;
        group += 1;
    }
    serde_json::json!({ "topics": topics }).to_string()
}

/// `json` (a searches file) with a regex leaf added to `percent` of its
/// searches (every search whose index is a multiple of `100 / percent`):
/// `(query) OR /brand-?[0-9]{2,4}/`, the model numbers customers catch with
/// a regex, built from the topic's name. Everything else stays, so the
/// catalog with and without them compare one to one.
pub fn with_regex_leaves(json: &str, percent: u32) -> String {
    if percent == 0 {
        return json.to_string();
    }
    let mut v: serde_json::Value = serde_json::from_str(json).expect("a generated searches file");
    let every = (100 / percent.min(100)) as usize;
    let mut i = 0usize;
    for t in v["topics"].as_array_mut().into_iter().flatten() {
        let name = t["name"].as_str().unwrap_or("x").to_lowercase();
        for s in t["searches"].as_array_mut().into_iter().flatten() {
            if i.is_multiple_of(every) {
                let q = s["query"].as_str().unwrap_or_default().to_string();
                s["query"] = format!("({q}) OR /{name}-?[0-9]{{2,4}}/").into();
            }
            i += 1;
        }
    }
    v.to_string()
}

fn search_query(rng: &mut Rng, b: &str) -> String {
    let product = rng.pick(PRODUCT);
    let common = |rng: &mut Rng| COMMON[20 + rng.below(COMMON.len() - 20)];
    match rng.below(100) {
        0..=29 => format!(
            "({b} OR #{b} OR \"{b} {product}\") NOT ({} OR {})",
            rng.pick(JOBS),
            rng.pick(JOBS)
        ),
        30..=44 => format!(
            "{b} NEAR/3 ({} OR {} OR \"not working\")",
            rng.pick(ISSUES),
            rng.pick(ISSUES)
        ),
        45..=54 => format!("\"{b} {product}\" ({} OR {})", common(rng), common(rng)),
        55..=64 => {
            // Customers truncate a name to catch its inflections.
            let cut = b.len() - 1 - rng.below(2).min(b.len().saturating_sub(5));
            format!("{}* ({} OR {})", &b[..cut], common(rng), rng.pick(ISSUES))
        }
        65..=74 => format!("{{{}}} OR ${}", capitalize(b), b.to_uppercase()),
        75..=84 => format!("{b} (lang:en OR source:twitter) -{}", rng.pick(JOBS)),
        85..=94 => format!(
            "{b} AND ({} OR {} OR {})",
            common(rng),
            common(rng),
            rng.pick(PRODUCT)
        ),
        _ => format!("\"{b} {product}\"~2 OR @{b}"),
    }
}

/// `n` documents (docs/formats.md §2.1) as JSON lines; `brands` is the number of brand
/// groups to mention (match it to the searches' group count).
pub fn documents(n: usize, brands: usize, long_form: bool, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed ^ 0xD0C5);
    (0..n)
        .map(|i| {
            let words = if long_form { 350 + rng.below(150) } else { 20 + rng.below(20) };
            let text = body(&mut rng, words, brands, long_form);
            let title = long_form.then(|| body(&mut rng, 8, brands, false));
            let (source, lang) = match rng.below(10) {
                0..=5 => ("twitter", "en"),
                6 => ("facebook", "en"),
                7 => ("instagram", "nl"),
                8 => ("news", "en"),
                _ => ("forum", "de"),
            };
            serde_json::json!({
                "id": format!("gen:{seed}:{i}"),
                "source": source,
                "type": if rng.chance(0.2) { "mention" } else { "post" },
                "lang": lang,
                "author": format!("@user{}", rng.below(50_000)),
                "title": title,
                "text": text,
                "url": format!("https://example.com/{source}/{i}"),
                "created_at": format!("2019-07-24T{:02}:{:02}:{:02}Z", (i / 3600) % 24, (i / 60) % 60, i % 60),
            })
            .to_string()
        })
        .collect()
}

fn body(rng: &mut Rng, words: usize, brands: usize, long_form: bool) -> String {
    let mut s = String::with_capacity(words * 7);
    // Tweets mention a brand about a third of the time; articles several.
    let mentions = if long_form {
        1 + rng.below(5)
    } else {
        usize::from(rng.chance(0.35)) + usize::from(rng.chance(0.05))
    };
    let mention_at: Vec<usize> = (0..mentions).map(|_| rng.below(words)).collect();
    for w in 0..words {
        if w > 0 {
            s.push(if rng.chance(0.06) { ',' } else { ' ' });
            if s.ends_with(',') {
                s.push(' ');
            }
        }
        if mention_at.contains(&w) && brands > 0 {
            let b = brand(rng.zipf(brands));
            match rng.below(10) {
                0..=4 => s.push_str(&b),
                5..=6 => s.push_str(&capitalize(&b)),
                7 => {
                    s.push('#');
                    s.push_str(&b);
                }
                8 => {
                    s.push('@');
                    s.push_str(&b);
                }
                _ => {
                    s.push_str(&b);
                    s.push(' ');
                    s.push_str(rng.pick(PRODUCT));
                }
            }
            continue;
        }
        match rng.below(100) {
            0..=79 => s.push_str(COMMON[rng.zipf(COMMON.len())]),
            80..=86 => s.push_str(rng.pick(PRODUCT)),
            87..=90 => s.push_str(rng.pick(ISSUES)),
            91 => s.push_str(rng.pick(JOBS)),
            92..=93 => s.push_str(rng.pick(EMOJI)),
            94..=95 => {
                s.push('#');
                s.push_str(COMMON[rng.zipf(COMMON.len())]);
            }
            96 => s.push_str(rng.pick(ACCENTED)),
            97 => s.push_str("https://t.co/Xy12Ab"),
            _ => s.push_str(&capitalize(COMMON[rng.zipf(COMMON.len())])),
        }
    }
    s
}

/// Number of brand groups that `searches_json(n, _)` creates, so documents
/// can mention exactly those brands.
pub fn brand_groups(searches_json: &str) -> usize {
    serde_json::from_str::<serde_json::Value>(searches_json)
        .ok()
        .and_then(|v| v["topics"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// One hostile document with the search it used to be slow against.
#[derive(Clone, Debug)]
pub struct Adversarial {
    /// What it exercises.
    pub name: &'static str,
    /// The search.
    pub query: &'static str,
    /// The document text, about `bytes` long.
    pub text: String,
    /// Whether the search matches the text.
    pub matches: bool,
}

/// The hostile documents of the tests and benches: for every operator that
/// used to be exponential or quadratic (slop phrases with repeated words,
/// NEAR/ONEAR over many occurrences, wildcards and regexes on one huge
/// token, CJK and emoji runs, emoji between accented letters), a document
/// of about `bytes` bytes.
pub fn adversarial(bytes: usize) -> Vec<Adversarial> {
    let fill = |unit: &str| unit.repeat((bytes / unit.len()).max(1));
    let case = |name, query, text, matches| Adversarial {
        name,
        query,
        text,
        matches,
    };
    vec![
        case(
            "slop repeated word",
            "\"a a a a a a a a a a a a a a\"~1",
            fill("a "),
            true,
        ),
        case(
            "slop one word everywhere",
            "\"acme outage\"~3",
            fill("acme "),
            false,
        ),
        case(
            "slop both words everywhere",
            "\"acme outage\"~3",
            fill("acme outage "),
            true,
        ),
        case(
            "slop hashtag and word",
            "\"#acme acme\"~2 NEAR/3 corp",
            fill("#acme acme "),
            false,
        ),
        case(
            "near one side everywhere",
            "acme NEAR/5 outage",
            fill("acme "),
            false,
        ),
        case(
            "near both sides far apart",
            "acme NEAR/5 outage",
            fill("acme x x x x x x x outage x x x x x x x "),
            false,
        ),
        case(
            "onear wrong order",
            "acme ONEAR/5 outage",
            fill("outage x x x acme x x x x x x "),
            false,
        ),
        case(
            "wildcards on one huge token",
            "*aaab*aaac OR aaa*b",
            "a".repeat(bytes),
            false,
        ),
        case(
            "wildcards on long tokens",
            "*ove OR lov* OR *cme*",
            fill("lovelovelove "),
            true,
        ),
        case(
            "regex on one huge token",
            "/a+b/ OR /(a|aa)+c/",
            "a".repeat(bytes),
            false,
        ),
        case(
            "cjk run",
            "東京 OR 京都 OR \"東京 タワー\"",
            fill("東京"),
            true,
        ),
        case("emoji run", "😀 NEAR/1 🔥", fill("😀"), false),
        // One chunk of the tokenizer's shadow path (no ASCII letter after a
        // space ends it): its emoji were once inserted one by one.
        case(
            "emoji and letters alternating",
            "😀 NEAR/1 é",
            fill("😀 é "),
            true,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Limits;
    use crate::searches::Catalog;

    #[test]
    fn brands_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..200_000 {
            assert!(seen.insert(brand(i)), "{}", brand(i));
        }
    }

    #[test]
    fn generated_searches_are_valid_and_deterministic() {
        let json = searches_json(3000, 7);
        assert_eq!(json, searches_json(3000, 7));
        let catalog = Catalog::from_json(json.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(catalog.searches.len(), 3000);
    }

    #[test]
    fn generated_documents_are_valid() {
        for line in documents(200, 100, false, 1)
            .iter()
            .chain(&documents(5, 100, true, 1))
        {
            crate::document::Document::parse(line.as_bytes(), 1 << 20).unwrap();
        }
    }
}
