//! `POST /explain` on the admin API: why a document matches the running
//! searches, or why one search (or a draft query) does not
//! (`engine::explain`, docs/operations.md §6).
//!
//! Body: `{"document": {…}, "search": "ID"?, "query": "draft"?}`. Without
//! `search` and `query` it explains every search of the active version
//! that matches; with `search`, that search whatever its verdict; with
//! `query`, the draft query alone (its errors, with carets, answer 422).
//! Reading, not changing: it follows the admin read rules. The evaluation
//! runs on a blocking thread (a whole catalog is evaluated one search at a
//! time, up to about a second at 100,000 searches), bounded like every
//! admin request by the body limit and the connection limit; a document
//! over [`MAX_EXPLAIN_BYTES`] is refused (400).

use axum::response::Response;

use super::reload::Active;
use super::replies::{error, json as reply};
use crate::document::Document;
use crate::engine::explain::MAX_EXPLAIN_BYTES;
use crate::engine::reference::Reference;
use crate::query::Limits;
use crate::searches::{Catalog, SearchIdx};

/// The request body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    document: serde_json::Value,
    #[serde(default)]
    search: Option<String>,
    #[serde(default)]
    query: Option<String>,
}

/// Answers one request against `active` (blocking).
pub fn explain(active: &Active, body: &[u8]) -> Response {
    let req: ExplainRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                400,
                "bad_request",
                &format!("expected {{\"document\", \"search\"?, \"query\"?}}: {e}"),
            )
        }
    };
    let bytes = req.document.to_string();
    let doc = match Document::parse(bytes.as_bytes(), MAX_EXPLAIN_BYTES) {
        Ok(d) => d,
        Err(e) => return error(400, "bad_document", &e.to_string()),
    };
    let owned = match &req.query {
        Some(q) => {
            let draft = serde_json::json!({"topics": [{"id": "draft", "searches": [{"id": "draft", "query": q}]}]});
            match Catalog::from_json(draft.to_string().as_bytes(), &Limits::default()) {
                Ok(c) => Some(c),
                Err(e) => {
                    return reply(
                        422,
                        serde_json::json!({"error": "invalid", "message": e.render(),
                            "problems": e.problems.iter().map(ToString::to_string).collect::<Vec<_>>()}),
                    )
                }
            }
        }
        // With a delta the compiled catalog is the base's: read the
        // version's own searches then.
        None if active.delta.is_some() => {
            match Catalog::from_file(&active.file, &Limits::default()) {
                Ok(c) => Some(c),
                Err(e) => return error(500, "internal", &e.render()),
            }
        }
        None => None,
    };
    let version = if req.query.is_some() {
        serde_json::json!("draft")
    } else {
        serde_json::json!(active.meta.version)
    };
    let catalog: &Catalog = owned.as_ref().unwrap_or(&active.catalog);
    let reference = Reference::new(catalog);
    let chosen: Vec<SearchIdx> = match (&req.query, &req.search) {
        (None, Some(id)) => match catalog.searches.iter().position(|s| &s.id == id) {
            Some(i) => vec![SearchIdx(i as u32)],
            None => {
                return error(
                    404,
                    "unknown_search",
                    &format!("no search {id:?} in the active version"),
                )
            }
        },
        _ => (0..catalog.searches.len() as u32).map(SearchIdx).collect(),
    };
    let everything = req.query.is_some() || req.search.is_some();
    let explanations: Vec<_> = chosen
        .into_iter()
        .map(|s| reference.explain(&doc, s))
        .filter(|e| everything || e.matched)
        .collect();
    reply(
        200,
        serde_json::json!({"version": version, "explanations": explanations}),
    )
}
