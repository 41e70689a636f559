//! The console (docs/operations.md §6.2): one self-contained page on the
//! admin port, and the drain reports it shows.
//!
//! # Design
//!
//! `GET /` serves `console.html`, built into the binary (no CDN, no
//! external asset: it works offline and behind any firewall). The page
//! holds no data: it reads the admin API with `fetch`, every two seconds
//! for the live views, sending the token the user typed (kept in the
//! browser tab's session storage, never in the page or a cookie), so the
//! API's token rules apply to the page as to any client. Its views:
//!
//! | view | reads | writes |
//! |---|---|---|
//! | live | `/status`, `/metrics` rates computed in the page | — |
//! | catch-up | `/status` (`classes`, `jobs`), `/reports`, `/reports/{id}` | — |
//! | searches | `/searches/history`, `/searches/diff` | `POST /searches/rollback?to=N` |
//! | playground | `POST /explain` (the running version, or a draft query) | — |
//! | cost | `/searches/cost` | — |
//!
//! The playground can be opened pre-filled: `/#playground` with `text=`,
//! `query=` and `search=` parameters after the hash (a link an analyst
//! can send to a colleague).
//!
//! Drain reports are the files the drain writes under
//! `<state.dir>/reports` (`drain-<id>.json` and `.html`); `/reports` lists
//! the newest [`MAX_REPORTS`] of them, `/reports/{id}` serves one (HTML, or
//! JSON with `?format=json`). Ids are numbers: no path comes from the
//! request.

use std::path::PathBuf;

use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::replies::error;

/// The page.
const PAGE: &str = include_str!("console.html");

/// Most reports `/reports` lists (the newest).
pub const MAX_REPORTS: usize = 50;

/// `GET /`: the console page.
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            // The page runs only its own script and talks only to this
            // server.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-src 'self' about:; base-uri 'none'; form-action 'none'",
            ),
        ],
        PAGE,
    )
        .into_response()
}

/// `GET /reports`: the newest drain reports in `dir`, newest first, each
/// without its samples.
pub async fn reports(dir: PathBuf) -> Response {
    let listed = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<serde_json::Value>> {
        let mut ids: Vec<u64> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| {
                    let name = e.ok()?.file_name().into_string().ok()?;
                    name.strip_prefix("drain-")?
                        .strip_suffix(".json")?
                        .parse()
                        .ok()
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.truncate(MAX_REPORTS);
        Ok(ids
            .into_iter()
            .filter_map(|id| {
                let bytes = std::fs::read(dir.join(format!("drain-{id}.json"))).ok()?;
                let mut v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
                v.as_object_mut()?.remove("samples");
                Some(v)
            })
            .collect())
    })
    .await;
    match listed {
        Ok(Ok(list)) => axum::Json(serde_json::json!({ "reports": list })).into_response(),
        Ok(Err(e)) => error(500, "io", &format!("cannot read the reports: {e}")),
        Err(e) => error(500, "internal", &e.to_string()),
    }
}

/// `GET /reports/{id}[?format=json]`: one drain report of `dir`, HTML
/// (default) or JSON.
pub async fn report(dir: PathBuf, id: &str, format: Option<&str>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return error(400, "bad_request", "a report id is a number");
    };
    let json = match format {
        None | Some("html") => false,
        Some("json") => true,
        Some(other) => {
            return error(
                400,
                "bad_request",
                &format!("unknown format {other:?}: html or json"),
            )
        }
    };
    let path = dir.join(format!("drain-{id}.{}", if json { "json" } else { "html" }));
    let read = tokio::task::spawn_blocking(move || std::fs::read(path)).await;
    match read.unwrap_or_else(|e| Err(std::io::Error::other(e.to_string()))) {
        Ok(bytes) => (
            [(
                header::CONTENT_TYPE,
                if json {
                    "application/json"
                } else {
                    "text/html; charset=utf-8"
                },
            )],
            bytes,
        )
            .into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            error(404, "not_found", &format!("no report {id}"))
        }
        Err(e) => error(500, "io", &format!("cannot read report {id}: {e}")),
    }
}
