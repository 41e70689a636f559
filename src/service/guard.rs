//! Matching one document without letting it take the service down.
//!
//! # Data flow
//!
//! ```text
//! document ──► [guard: catch_unwind] ──► match (work budget) ──► records in a buffer
//!                     │                         │
//!                     │ panic                   │ budget spent
//!                     ▼                         ▼
//!             Outcome::Panicked         Outcome::TooExpensive
//! ```
//!
//! The pipeline thread calls [`match_document`] for every document. Inside
//! the guard the document is matched by every matcher of the active version
//! and *all* its match records are written to a buffer; only when that
//! completes does the caller send them. So a document is never half
//! emitted: it either has all its records or becomes one dead letter —
//! reason `too_expensive` when it spent the work budget (the search that
//! spent it is named), `internal_error` when matching panicked (a bug: the
//! message and the search being evaluated are logged). The scratch space
//! of a panicked match is rebuilt before the next document.
//!
//! A panic anywhere else still ends the process with a non-zero status.
//!
//! For the fault tests, the environment variable
//! `TOPIC_MATCHER_FAULT_PANIC_DOC_ID` names a document id whose matching
//! panics inside the guard (read once at start; unset in production).

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::reload::{Active, ActiveScratch, Masks, TooExpensive};
use crate::document::Document;
use crate::record::{match_id, DocumentRecords, RecordContext};

/// The environment variable of the fault tests (module doc).
pub const FAULT_PANIC_ENV: &str = "TOPIC_MATCHER_FAULT_PANIC_DOC_ID";

/// What matching one document gave.
#[derive(Debug)]
pub enum Outcome {
    /// Matched; its records (possibly none) are in [`DocRecords`].
    Matched,
    /// The document spent its work budget.
    TooExpensive(TooExpensive),
    /// Matching panicked.
    Panicked {
        /// The search being evaluated, if one was.
        search: Option<String>,
        /// The panic's message.
        message: String,
    },
}

/// The match records of one document: one buffer, a key and a range each.
#[derive(Default)]
pub struct DocRecords {
    /// The records' bytes, one after the other (each without its newline).
    pub buf: Vec<u8>,
    /// Each record's key (its match id) and range in `buf`.
    pub records: Vec<(String, Range<usize>)>,
    /// What the document's records share, its buffers kept between documents.
    parts: DocumentRecords,
}

impl DocRecords {
    /// The records as (key, value) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.records
            .iter()
            .map(|(k, r)| (k.as_str(), &self.buf[r.clone()]))
    }
}

/// Matches `doc` with `active` (restricted by `masks`) and writes its
/// records into `out`, under the guard of the module doc.
pub fn match_document(
    active: &Active,
    doc: &Document<'_>,
    scratch: &mut ActiveScratch,
    masks: Option<&Masks>,
    ctx: &RecordContext<'_>,
    out: &mut DocRecords,
    fault_panic_doc: Option<&str>,
) -> Outcome {
    out.buf.clear();
    out.records.clear();
    let run = catch_unwind(AssertUnwindSafe(|| {
        if fault_panic_doc.is_some_and(|id| id == doc.id) {
            panic!(
                "fault injection: {FAULT_PANIC_ENV} names document {}",
                doc.id
            );
        }
        // The parts its records share, escaped at its first match (most
        // documents have none).
        let mut begun = false;
        active.for_each_match_masked(doc, scratch, masks, |matcher, m| {
            if !begun {
                out.parts.begin(doc, ctx);
                begun = true;
            }
            let start = out.buf.len();
            let id = match_id(&doc.id, matcher.topic_id(m.topic));
            out.parts.write(&mut out.buf, matcher, m);
            if out.buf.last() == Some(&b'\n') {
                out.buf.pop();
            }
            out.records.push((id, start..out.buf.len()));
        })
    }));
    match run {
        Ok(Ok(())) => Outcome::Matched,
        Ok(Err(e)) => {
            out.records.clear();
            Outcome::TooExpensive(e)
        }
        Err(payload) => {
            out.records.clear();
            let search = active.current_search(scratch);
            active.reset_scratch(scratch);
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            Outcome::Panicked { search, message }
        }
    }
}

/// The fault-test document id from the environment, if set.
pub fn fault_panic_doc_from_env() -> Option<String> {
    std::env::var(FAULT_PANIC_ENV)
        .ok()
        .filter(|s| !s.is_empty())
}
