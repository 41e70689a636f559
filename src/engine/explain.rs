//! Why a search matches a document, or why not: the query's tree evaluated
//! part by part with the reference evaluator, each part saying whether it
//! holds, where its text was found, and why.
//!
//! Built on [`Reference`] on purpose: it evaluates each syntax tree
//! directly on the tokens, so the explanation is the definition of a match
//! (docs/query-language.md §3), and its verdict is the matcher's (the
//! property test compares them). It is for one document at a time — an
//! analyst's question — not for the stream.

use serde::Serialize;

use super::reference::{Occurrence, Reference};
use crate::document::Document;
use crate::query::{Expr, LeafKind, MetaField};
use crate::searches::{Filters, SearchIdx};

/// Where a part's text was found: field and byte range in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Found {
    /// `title` or `text`.
    pub field: &'static str,
    /// Byte range in that field.
    pub start: u32,
    pub end: u32,
}

/// One part of a query, evaluated.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// The part as the query language writes it.
    pub part: String,
    /// Whether it holds for the document.
    pub holds: bool,
    /// Why, in words.
    pub why: String,
    /// Where its text occurs (text leaves, NEAR sides).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub found: Vec<Found>,
    /// Its parts (AND, OR, NOT).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Step>,
}

/// One search against one document.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub topic: String,
    pub search: String,
    pub query: String,
    /// The verdict: the matcher's.
    pub matched: bool,
    /// The search's metadata filter that excluded the document, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded_by: Option<String>,
    /// The query's tree, evaluated.
    pub tree: Step,
}

const FIELDS: [&str; 2] = ["title", "text"];

/// Largest document explained, in bytes. The explanation evaluates each
/// query directly on the tokens (no work budget; NEAR compares every pair
/// of occurrences), which is instant on a post and must not become a
/// stall on a megabyte of one repeated word.
pub const MAX_EXPLAIN_BYTES: usize = 32 * 1024;

fn found(occs: &[Occurrence]) -> Vec<Found> {
    occs.iter()
        .map(|&(field, _, _, start, end)| Found {
            field: FIELDS[field as usize],
            start,
            end,
        })
        .collect()
}

fn times(n: usize) -> String {
    if n == 1 {
        "found once".into()
    } else {
        format!("found {n} times")
    }
}

impl Reference<'_> {
    /// Explains search `s` on `doc`.
    pub fn explain(&self, doc: &Document<'_>, s: SearchIdx) -> Explanation {
        let search = &self.catalog().searches[s.0 as usize];
        let fields = Reference::tokens(doc);
        let ctx = self.context(doc, &fields);
        let none = Filters::default();
        let f = search.filters.as_deref().unwrap_or(&none);
        let filters = [
            ("languages", MetaField::Lang, &f.languages),
            ("sources", MetaField::Source, &f.sources),
            ("countries", MetaField::Country, &f.countries),
            ("types", MetaField::Type, &f.types),
        ];
        let excluded_by = filters.iter().find_map(|(name, field, allowed)| {
            let allowed = allowed.as_ref()?;
            (!doc.meta_in(*field, allowed)).then(|| {
                format!(
                    "{name} {allowed:?}: the document's {} is {}",
                    field.name(),
                    doc.meta(*field)
                        .map_or("missing".to_string(), |v| format!("{v:?}"))
                )
            })
        });
        let tree = step(&ctx, &search.text, &search.query.expr);
        Explanation {
            topic: self.catalog().topics[search.topic.0 as usize].id.clone(),
            search: search.id.clone(),
            query: search.text.clone(),
            matched: excluded_by.is_none() && tree.holds,
            excluded_by,
            tree,
        }
    }
}

/// The step of `e`, part of the query `query`.
fn step(ctx: &super::reference::Ctx<'_>, query: &str, e: &Expr) -> Step {
    let part = e.reading(query).to_string();
    match e {
        Expr::Leaf(l) => {
            if let LeafKind::Meta(field, value) = &l.kind {
                let holds = ctx.doc().meta_matches(*field, value);
                let actual = ctx
                    .doc()
                    .meta(*field)
                    .map_or("missing".to_string(), |v| format!("{v:?}"));
                return Step {
                    part,
                    holds,
                    why: format!("the document's {} is {actual}", field.name()),
                    found: Vec::new(),
                    parts: Vec::new(),
                };
            }
            let occs = ctx.occurrences(l);
            Step {
                part,
                holds: !occs.is_empty(),
                why: if occs.is_empty() {
                    "not in the document".into()
                } else {
                    times(occs.len())
                },
                found: found(&occs),
                parts: Vec::new(),
            }
        }
        Expr::And(children) | Expr::Or(children) => {
            let parts: Vec<Step> = children.iter().map(|c| step(ctx, query, c)).collect();
            let and = matches!(e, Expr::And(_));
            let holds = if and {
                parts.iter().all(|p| p.holds)
            } else {
                parts.iter().any(|p| p.holds)
            };
            let why = match (and, holds) {
                (true, true) => "every part holds".to_string(),
                (true, false) => {
                    let failing: Vec<&str> = parts
                        .iter()
                        .filter(|p| !p.holds)
                        .map(|p| p.part.as_str())
                        .collect();
                    format!("fails on {}", failing.join(", "))
                }
                (false, true) => {
                    let by: Vec<&str> = parts
                        .iter()
                        .filter(|p| p.holds)
                        .map(|p| p.part.as_str())
                        .collect();
                    format!("holds by {}", by.join(", "))
                }
                (false, false) => "no alternative holds".to_string(),
            };
            Step {
                part,
                holds,
                why,
                found: Vec::new(),
                parts,
            }
        }
        Expr::Not(child) => {
            let inner = step(ctx, query, child);
            Step {
                part,
                holds: !inner.holds,
                why: if inner.holds {
                    format!("vetoed: {} occurs", inner.part)
                } else {
                    format!("{} is absent", inner.part)
                },
                found: Vec::new(),
                parts: vec![inner],
            }
        }
        Expr::Near(n) => {
            let side = |leaves: &[crate::query::Leaf]| -> Vec<Occurrence> {
                leaves.iter().flat_map(|l| ctx.occurrences(l)).collect()
            };
            let (a, b) = (side(&n.left), side(&n.right));
            let holds = ctx.eval(e);
            let name = |leaves: &[crate::query::Leaf]| {
                leaves
                    .iter()
                    .map(|l| l.source(query))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            };
            // Tokens between the closest pair in one field (in order
            // when the operator is ordered).
            let closest = a
                .iter()
                .flat_map(|x| b.iter().map(move |y| (x, y)))
                .filter(|(x, y)| x.0 == y.0)
                .filter_map(|(x, y)| {
                    let forward = (x.2 < y.1).then(|| y.1 - x.2 - 1);
                    let backward = (!n.ordered && y.2 < x.1).then(|| x.1 - y.2 - 1);
                    forward.into_iter().chain(backward).min()
                })
                .min();
            let why = if a.is_empty() {
                format!("{} is not in the document", name(&n.left))
            } else if b.is_empty() {
                format!("{} is not in the document", name(&n.right))
            } else if holds {
                format!(
                    "{} tokens apart (at most {} allowed)",
                    closest.unwrap_or(0),
                    n.max_gap
                )
            } else {
                match closest {
                    Some(g) => format!(
                        "closest {g} tokens apart, more than the {} allowed",
                        n.max_gap
                    ),
                    None if n.ordered => format!(
                        "both occur, but never {} before {} in one field",
                        name(&n.left),
                        name(&n.right)
                    ),
                    None => "both occur, but never in one field".into(),
                }
            };
            let mut all = a;
            all.extend(b);
            all.sort_unstable();
            Step {
                part,
                holds,
                why,
                found: found(&all),
                parts: Vec::new(),
            }
        }
    }
}
