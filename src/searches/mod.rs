//! The searches file (docs/formats.md §2.2) and its validation into a [`Catalog`].
//!
//! Validation never stops at the first bad search: every search of every
//! topic is parsed, and all errors come back together in [`CatalogError`],
//! each naming its topic, search and column and rendered the way compilers
//! render errors (the query with a caret under the column).

use std::fmt;
use std::sync::Arc;

use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

use crate::query::{self, Limits, Query, QueryError, QueryWarning};

/// The searches file as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SearchesFile {
    /// Every topic (shared: a version made by changing one topic shares
    /// the others with the version before it).
    pub topics: Vec<Arc<TopicSpec>>,
}

/// One topic as written. Unknown keys are rejected: a misspelt `languages`
/// would otherwise silently widen a search.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// Unique topic id.
    pub id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `false` excludes the topic.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The topic's searches.
    #[serde(deserialize_with = "fitted")]
    pub searches: Vec<SearchSpec>,
}

/// A list without the spare capacity it grew while being read: most topics
/// have one to three searches, and a list grown by pushing holds four (a
/// file of 500,000 topics held 300 MB of spare room).
fn fitted<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    let mut v = Vec::<T>::deserialize(d)?;
    v.shrink_to_fit();
    Ok(v)
}

/// One search as written.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSpec {
    /// Unique (in the whole file) search id.
    pub id: String,
    /// The query (docs/query-language.md §3).
    pub query: String,
    /// Only documents in these languages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub languages: Option<Vec<String>>,
    /// Only documents from these sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<String>>,
    /// Only documents from these countries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countries: Option<Vec<String>>,
    /// Only documents of these types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    /// `false` excludes the search.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// Searches parsed together when a catalog is built (see
/// [`Catalog::from_file_reusing`]).
const PARSE_BATCH: usize = 65_536;

fn yes() -> bool {
    true
}

impl SearchesFile {
    /// Empty or repeated topic and search ids, in file order: the checks
    /// that span the whole file (queries are checked one by one).
    pub fn id_problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut topic_ids = FxHashSet::default();
        let mut search_ids = FxHashSet::default();
        for t in &self.topics {
            if t.id.trim().is_empty() {
                problems.push(Problem::File("a topic has an empty id".into()));
            } else if !topic_ids.insert(t.id.as_str()) {
                problems.push(Problem::File(format!(
                    "topic id {:?} appears more than once",
                    t.id
                )));
            }
            for s in &t.searches {
                if s.id.trim().is_empty() {
                    problems.push(Problem::File(format!(
                        "a search of topic {:?} has an empty id",
                        t.id
                    )));
                } else if !search_ids.insert(s.id.as_str()) {
                    problems.push(Problem::File(format!(
                        "search id {:?} (topic {:?}) appears more than once; search ids are unique in the whole file",
                        s.id, t.id
                    )));
                }
            }
        }
        problems
    }

    /// The canonical JSON of a set of topics: sorted by topic id, fields in
    /// a fixed order, defaults written out, no whitespace. Every instance
    /// that holds the same topics produces the same bytes, so the bytes'
    /// hash identifies a searches version across instances.
    pub fn canonical_json<'a>(topics: impl IntoIterator<Item = &'a TopicSpec>) -> Vec<u8> {
        let mut topics: Vec<&TopicSpec> = topics.into_iter().collect();
        topics.sort_by(|a, b| a.id.cmp(&b.id));
        #[derive(Serialize)]
        struct Canonical<'a> {
            topics: Vec<&'a TopicSpec>,
        }
        serde_json::to_vec(&Canonical { topics }).expect("searches serialize")
    }
}

/// Index of a topic in a [`Catalog`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicIdx(pub u32);

/// Index of a search in a [`Catalog`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SearchIdx(pub u32);

/// A validated topic.
#[derive(Clone, Debug)]
pub struct Topic {
    /// Its id.
    pub id: String,
    /// Its display name.
    pub name: Option<String>,
}

/// Per-search metadata filters (docs/formats.md §2.2), lower-cased; `None` means any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// Allowed languages.
    pub languages: Option<Vec<String>>,
    /// Allowed sources.
    pub sources: Option<Vec<String>>,
    /// Allowed countries.
    pub countries: Option<Vec<String>>,
    /// Allowed types.
    pub types: Option<Vec<String>>,
}

impl Filters {
    fn from_spec(s: &SearchSpec) -> Filters {
        let lower = |v: &Option<Vec<String>>| {
            v.as_ref()
                .map(|v| v.iter().map(|s| s.trim().to_lowercase()).collect())
        };
        Filters {
            languages: lower(&s.languages),
            sources: lower(&s.sources),
            countries: lower(&s.countries),
            types: lower(&s.types),
        }
    }

    /// Whether there is no filter at all.
    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
    }

    /// Whether `doc` passes every filter (each is an AND-ed metadata
    /// equality, docs/formats.md §2.2).
    pub fn admits(&self, doc: &crate::document::Document<'_>) -> bool {
        use crate::query::MetaField;
        let ok = |field: MetaField, allowed: &Option<Vec<String>>| {
            allowed.as_ref().is_none_or(|a| doc.meta_in(field, a))
        };
        ok(MetaField::Lang, &self.languages)
            && ok(MetaField::Source, &self.sources)
            && ok(MetaField::Country, &self.countries)
            && ok(MetaField::Type, &self.types)
    }
}

/// A validated search.
#[derive(Clone, Debug)]
pub struct Search {
    /// Its id.
    pub id: String,
    /// Its topic.
    pub topic: TopicIdx,
    /// The query text as written.
    pub text: String,
    /// The parsed query.
    pub query: Query,
    /// Its metadata filters; `None` when it has none (most searches: the
    /// nearly 100 bytes of empty lists are not kept a million times).
    pub filters: Option<Box<Filters>>,
}

/// Every enabled topic and search, validated.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Topics, in file order.
    pub topics: Vec<Topic>,
    /// Searches, in file order.
    pub searches: Vec<Search>,
}

impl Catalog {
    /// Parses and validates a searches file.
    ///
    /// # Errors
    ///
    /// Every problem found: malformed JSON, duplicate or empty ids, and every
    /// invalid query.
    pub fn from_json(json: &[u8], limits: &Limits) -> Result<Catalog, CatalogError> {
        let file: SearchesFile = serde_json::from_slice(json).map_err(|e| CatalogError {
            problems: vec![Problem::File(format!("not a valid searches file: {e}"))],
        })?;
        Catalog::from_file(&file, limits)
    }

    /// Reads and validates a searches file; a file that cannot be read is a
    /// problem of the file like any other (invalid input).
    ///
    /// # Errors
    ///
    /// As [`Catalog::from_json`], plus the read error.
    pub fn from_path(path: &std::path::Path, limits: &Limits) -> Result<Catalog, CatalogError> {
        let bytes = std::fs::read(path).map_err(|e| CatalogError {
            problems: vec![Problem::File(format!(
                "cannot read the searches file {}: {e}",
                path.display()
            ))],
        })?;
        Catalog::from_json(&bytes, limits)
    }

    /// Validates a parsed searches file; see [`Catalog::from_json`].
    ///
    /// # Errors
    ///
    /// As [`Catalog::from_json`].
    pub fn from_file(file: &SearchesFile, limits: &Limits) -> Result<Catalog, CatalogError> {
        Catalog::from_file_reusing(file, limits, None)
    }

    /// As [`Catalog::from_file`], taking the parsed query of every search
    /// whose id and query text are unchanged from `previous` instead of
    /// parsing it again: a change of one search among 100,000 parses one.
    ///
    /// # Errors
    ///
    /// As [`Catalog::from_json`].
    pub fn from_file_reusing(
        file: &SearchesFile,
        limits: &Limits,
        previous: Option<&Catalog>,
    ) -> Result<Catalog, CatalogError> {
        let known: rustc_hash::FxHashMap<&str, &Search> = previous
            .map(|p| p.searches.iter().map(|s| (s.id.as_str(), s)).collect())
            .unwrap_or_default();
        let mut problems = file.id_problems();
        // Parse (or reuse) every enabled search's query, in file order, on
        // all cores: parsing is most of the cost of 100,000 searches.
        let enabled: Vec<&SearchSpec> = file
            .topics
            .iter()
            .filter(|t| t.enabled)
            .flat_map(|t| t.searches.iter().filter(|s| s.enabled))
            .collect();
        let parse_one = |s: &&SearchSpec| match known.get(s.id.as_str()) {
            Some(k) if k.text == s.query => Ok(k.query.clone()),
            _ => query::parse(&s.query, limits),
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(8);
        // Parsed a batch at a time, each batch shared by the threads, as the
        // catalog takes them: at a million searches, parsing every query
        // before taking any was a peak of 80 MB of its own.
        let parse_batch = |batch: &[&SearchSpec]| -> Vec<Result<Query, Vec<QueryError>>> {
            if threads < 2 || batch.len() < 4096 {
                return batch.iter().map(parse_one).collect();
            }
            let chunk = batch.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let parts: Vec<_> = batch
                    .chunks(chunk)
                    .map(|c| scope.spawn(move || c.iter().map(parse_one).collect::<Vec<_>>()))
                    .collect();
                parts
                    .into_iter()
                    .flat_map(|h| h.join().expect("query parsing panicked"))
                    .collect()
            })
        };
        let mut parsed = enabled.chunks(PARSE_BATCH).flat_map(parse_batch);
        let mut catalog = Catalog {
            topics: Vec::with_capacity(file.topics.iter().filter(|t| t.enabled).count()),
            searches: Vec::with_capacity(enabled.len()),
        };
        for t in &file.topics {
            if !t.enabled {
                continue;
            }
            let topic = TopicIdx(catalog.topics.len() as u32);
            catalog.topics.push(Topic {
                id: t.id.clone(),
                name: t.name.clone(),
            });
            for s in t.searches.iter().filter(|s| s.enabled) {
                let parsed = parsed.next().expect("one parse per enabled search");
                match parsed {
                    Ok(query) => catalog.searches.push(Search {
                        id: s.id.clone(),
                        topic,
                        text: s.query.clone(),
                        query,
                        filters: Some(Filters::from_spec(s))
                            .filter(|f| !f.is_empty())
                            .map(Box::new),
                    }),
                    Err(errors) => problems.extend(errors.into_iter().map(|error| {
                        Problem::Query(SearchError {
                            topic: t.id.clone(),
                            search: s.id.clone(),
                            query: s.query.clone(),
                            error,
                        })
                    })),
                }
            }
        }
        if problems.is_empty() {
            Ok(catalog)
        } else {
            Err(CatalogError { problems })
        }
    }

    /// Every warning of every search, with its topic and search.
    pub fn warnings(&self) -> impl Iterator<Item = (&Topic, &Search, &QueryWarning)> {
        self.searches.iter().flat_map(move |s| {
            s.query
                .warnings
                .iter()
                .map(move |w| (&self.topics[s.topic.0 as usize], s, w))
        })
    }

    /// Total leaves of all searches.
    pub fn leaf_count(&self) -> usize {
        self.searches.iter().map(|s| s.query.leaf_count()).sum()
    }
}

/// One invalid search query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchError {
    /// The topic id.
    pub topic: String,
    /// The search id.
    pub search: String,
    /// The query as written.
    pub query: String,
    /// What is wrong and where.
    pub error: QueryError,
}

impl fmt::Display for SearchError {
    /// Renders like a compiler diagnostic: message, location, the query with
    /// a caret under the column, and what to do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.error;
        writeln!(f, "error: {}", e.kind)?;
        writeln!(
            f,
            "  --> topic {:?}, search {:?}, column {}",
            self.topic, self.search, e.column
        )?;
        // Show at most 100 characters around the column, so a 4,096-character
        // query still renders readably.
        let chars: Vec<char> = self
            .query
            .chars()
            .map(|c| if c == '\n' || c == '\t' { ' ' } else { c })
            .collect();
        let from = e.column.saturating_sub(50).min(chars.len());
        let to = (from + 100).min(chars.len());
        let shown: String = chars[from..to].iter().collect();
        let prefix = if from > 0 { "…" } else { "" };
        let pad = e.column - 1 - from + prefix.chars().count();
        let width = e.width.min(to.saturating_sub(e.column - 1)).max(1);
        writeln!(f, "   |")?;
        writeln!(
            f,
            "   | {prefix}{shown}{}",
            if to < chars.len() { "…" } else { "" }
        )?;
        writeln!(f, "   | {}{}", " ".repeat(pad), "^".repeat(width))?;
        write!(f, "   = help: {}", e.help())
    }
}

/// One problem of a searches file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A problem of the file as a whole (JSON, ids).
    File(String),
    /// An invalid query.
    Query(SearchError),
    /// A valid search that failed the engine's probe (it panicked or was
    /// too expensive on the built-in hostile documents).
    Refused {
        /// Its topic's id.
        topic: String,
        /// Its id.
        search: String,
        /// Its query as written.
        query: String,
        /// What happened.
        message: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::File(m) => write!(f, "error: {m}"),
            Problem::Query(e) => e.fmt(f),
            Problem::Refused {
                topic,
                search,
                query,
                message,
            } => write!(
                f,
                "error: the search cannot be activated: {message}\n  --> topic {topic:?}, search {search:?}\n   | {query}\n   = help: simplify the search (fewer repeated words in proximity phrases, fewer or narrower wildcards and regexes)"
            ),
        }
    }
}

/// Why a searches file was rejected: every problem found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} problem(s) in the searches", problems.len())]
pub struct CatalogError {
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl CatalogError {
    /// Every problem rendered, then a summary line.
    pub fn render(&self) -> String {
        let mut out: String = self.problems.iter().map(|p| format!("{p}\n\n")).collect();
        out.push_str(&format!(
            "error: the searches were rejected: {} problem(s)",
            self.problems.len()
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_search_is_reported() {
        let json = br#"{"topics": [
            {"id": "a", "searches": [{"id": "a1", "query": "acme OR"}, {"id": "a2", "query": "ok"}]},
            {"id": "b", "searches": [{"id": "b1", "query": "NOT x"}, {"id": "a2", "query": "x"}]}]}"#;
        let err = Catalog::from_json(json, &Limits::default()).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err:?}");
        let rendered: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
        assert!(rendered
            .iter()
            .any(|r| r.contains("\"a2\"") && r.contains("more than once")));
        let first = rendered.iter().find(|r| r.contains("a1")).unwrap();
        assert!(first.contains("column 6"), "{first}");
        assert!(first.contains("   | acme OR\n   |      ^^"), "{first}");
    }

    #[test]
    fn disabled_topics_and_searches_are_left_out() {
        let json = br#"{"topics": [
            {"id": "a", "enabled": false, "searches": [{"id": "a1", "query": "x"}]},
            {"id": "b", "searches": [{"id": "b1", "query": "y", "enabled": false}, {"id": "b2", "query": "z"}]}]}"#;
        let c = Catalog::from_json(json, &Limits::default()).unwrap();
        assert_eq!(c.topics.len(), 1);
        assert_eq!(c.searches.len(), 1);
        assert_eq!(c.searches[0].id, "b2");
    }

    #[test]
    fn unknown_keys_and_bad_json_are_errors() {
        let err = Catalog::from_json(
            br#"{"topics": [{"id": "a", "searches": [], "langauges": []}]}"#,
            &Limits::default(),
        )
        .unwrap_err();
        assert!(err.problems[0].to_string().contains("langauges"));
        let err = Catalog::from_json(b"{\"topics\": [", &Limits::default()).unwrap_err();
        assert!(err.problems[0].to_string().contains("line 1"));
    }
}
