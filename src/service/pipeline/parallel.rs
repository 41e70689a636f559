//! Matching on every core: the documents of a *run* of messages are
//! matched ahead, in parallel, and then handled one by one in order.
//!
//! # Data flow
//!
//! ```text
//! poll: a run of messages already fetched (the first poll may wait, the rest do not)
//!   │
//!   ├─► A  pipeline thread, in order, no side effects: parse each message that
//!   │      would be handled; classify it; note its record context
//!   ├─► B  `threads` threads (this one included): match those documents, each
//!   │      under the guard (`guard`), into its own record buffer (`Ready`)
//!   └─► C  pipeline thread, in order: the unchanged per-message logic
//!          (`process`, `process_backlog`): owned? already processed? in the
//!          drain's range? — then the records matched in B are sent, or the
//!          dead letter written, and `processed` / the drain cursor advance
//! ```
//!
//! Step C is the code that ran before there was a step B, so every
//! decision (skip, dead letter, which class, which window) is taken where it
//! was, in message order; B only moves the matching, the costly part, ahead
//! and onto every core. A document B matched that C then does not take
//! (rare: a revocation inside the run's polls) is wasted work, never an
//! emission; a document C takes that B did not match is matched in C.
//!
//! # What stays as it was
//!
//! - **Order.** C sends in poll order, so the records of a partition keep
//!   the order of its messages (records of different partitions keep the
//!   order in which they were polled, which is more than Kafka promises).
//! - **Checkpoints.** Nothing of the run is marked processed before C hands
//!   its records to the output, and no poll (where a rebalance checkpoints)
//!   happens between A and C. A revocation during the run's polls
//!   checkpoints what was processed before the run; C then skips the
//!   revoked partition's messages (not owned), as the one-at-a-time loop
//!   skipped messages fetched before a revocation.
//! - **Hostile input.** Each document is matched under the guard with the
//!   work budget on whichever thread takes it: a panic or a spent budget
//!   is that document's outcome, handled in C as before.
//!
//! # Threads
//!
//! The helpers are scoped threads spawned per run (a run holds borrowed
//! messages, which a long-lived pool could not take), each with scratch
//! space kept here between runs; documents are taken in chunks of
//! [`CHUNK`] from a shared cursor, because one document may cost a thousand
//! times another. Runs shorter than [`MIN_PARALLEL`] are matched on this
//! thread alone: at low rates a run is one message, and a spawn would cost
//! more than it saves. The helpers' per-search costs go to the same book
//! as this thread's (`take_costs`).

use std::sync::Mutex;

use super::super::guard::{self, DocRecords, Outcome};
use super::super::reload::{Active, ActiveScratch, Masks};
use crate::document::Document;
use crate::record::RecordContext;

/// Most messages in one run (and so in flight between A and C).
pub(super) const RUN_MAX: usize = 256;

/// Documents one thread takes at a time.
const CHUNK: usize = 4;

/// Shortest run matched on several threads.
const MIN_PARALLEL: usize = 16;

/// A document matched in step B: its class, how matching went, its records.
pub(super) struct Ready {
    /// The class it was matched as (C uses it only for the same class).
    pub(super) class: usize,
    pub(super) outcome: Outcome,
    pub(super) records: DocRecords,
}

/// One document for step B.
pub(super) struct ToMatch<'d> {
    pub(super) doc: &'d Document<'d>,
    pub(super) class: usize,
    pub(super) ctx: RecordContext<'d>,
    pub(super) masks: Option<&'d Masks>,
}

/// The helper threads' scratch space and the run's results.
pub(super) struct Parallel {
    threads: usize,
    /// The work budget of each document.
    budget: u64,
    /// Scratch space of the helpers, for the version in use (made on first
    /// use, dropped by [`Parallel::retire`]).
    helpers: Vec<ActiveScratch>,
}

impl Parallel {
    /// Matching on `threads` threads (at least 1: this one), each document
    /// with the work budget `budget`.
    pub(super) fn new(threads: usize, budget: u64) -> Parallel {
        Parallel {
            threads: threads.max(1),
            budget,
            helpers: Vec::new(),
        }
    }

    /// Threads that match.
    pub(super) fn threads(&self) -> usize {
        self.threads
    }

    /// Scratch space for matching with `active`: the work budget set,
    /// costs counted (`service::cost`).
    pub(super) fn scratch_for(&self, active: &Active) -> ActiveScratch {
        let mut scratch = active.scratch();
        scratch.set_budget(self.budget);
        scratch.count_costs(crate::service::cost::SAMPLE_EVERY);
        scratch
    }

    /// Hands each helper's scratch space to `f` (to take its costs).
    pub(super) fn each_scratch(&mut self, f: impl FnMut(&mut ActiveScratch)) {
        self.helpers.iter_mut().for_each(f);
    }

    /// Before another searches version: the helpers' scratch space (made
    /// for the old version; its costs taken first) is dropped.
    pub(super) fn retire(&mut self) {
        self.helpers.clear();
    }

    /// Step B: matches every document of `work` with `active` and returns
    /// one [`Ready`] per document, in `work`'s order. `main` is this
    /// thread's scratch space.
    pub(super) fn match_all(
        &mut self,
        active: &Active,
        main: &mut ActiveScratch,
        work: &[ToMatch<'_>],
        fault_panic_doc: Option<&str>,
    ) -> Vec<Option<Ready>> {
        let mut out: Vec<Option<Ready>> = work.iter().map(|_| None).collect();
        let one = |scratch: &mut ActiveScratch, w: &ToMatch<'_>| {
            let mut records = DocRecords::default();
            let outcome = guard::match_document(
                active,
                w.doc,
                scratch,
                w.masks,
                &w.ctx,
                &mut records,
                fault_panic_doc,
            );
            Some(Ready {
                class: w.class,
                outcome,
                records,
            })
        };
        if self.threads == 1 || work.len() < MIN_PARALLEL {
            for (w, slot) in work.iter().zip(&mut out) {
                *slot = one(main, w);
            }
            return out;
        }
        while self.helpers.len() < self.threads - 1 {
            let scratch = self.scratch_for(active);
            self.helpers.push(scratch);
        }
        let chunks = Mutex::new(work.chunks(CHUNK).zip(out.chunks_mut(CHUNK)));
        let drain = |scratch: &mut ActiveScratch| loop {
            let next = chunks.lock().unwrap_or_else(|p| p.into_inner()).next();
            let Some((ws, slots)) = next else { break };
            for (w, slot) in ws.iter().zip(slots) {
                *slot = one(scratch, w);
            }
        };
        std::thread::scope(|scope| {
            for helper in &mut self.helpers {
                let drain = &drain;
                let spawned = std::thread::Builder::new()
                    .name("matching".into())
                    .spawn_scoped(scope, move || drain(helper));
                if let Err(e) = spawned {
                    // This thread matches what the helper would have.
                    tracing::warn!(error = %e, "cannot start a matching thread");
                }
            }
            drain(main);
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::InputCoords;
    use crate::searches::SearchesFile;

    /// What a document's matching gave, comparable across runs.
    fn summary(r: &Ready) -> String {
        let outcome = match &r.outcome {
            Outcome::Matched => "matched".to_string(),
            Outcome::TooExpensive(e) => format!("too expensive in {:?}", e.search),
            Outcome::Panicked { message, .. } => format!("panicked: {message}"),
        };
        let records: Vec<String> = r
            .records
            .iter()
            .map(|(k, v)| format!("{k} {}", String::from_utf8_lossy(v)))
            .collect();
        format!("{} {outcome} [{}]", r.class, records.join(" | "))
    }

    #[test]
    fn every_thread_count_gives_each_document_its_own_outcome_in_order() {
        let file: SearchesFile = serde_json::from_str(
            r#"{"topics": [
                {"id": "acme", "searches": [{"id": "acme-down", "query": "acme AND (outage OR down)"}]},
                {"id": "beta", "searches": [{"id": "beta-any", "query": "beta OR \"beta test\""}]}]}"#,
        )
        .unwrap();
        let active = Active::for_tests(file);
        // 70 documents: matching one topic, both, none; one that spends
        // the work budget; one whose matching panics (fault injection).
        let mut json: Vec<String> = (0..70)
            .map(|i| {
                let text = match i % 4 {
                    0 => format!("acme outage number {i}"),
                    1 => format!("beta test {i} and acme is down"),
                    2 => format!("nothing here {i}"),
                    _ => format!("beta {i}"),
                };
                serde_json::json!({"id": format!("d{i}"), "text": text}).to_string()
            })
            .collect();
        json[33] =
            serde_json::json!({"id": "expensive", "text": "acme ".repeat(50_000)}).to_string();
        json[41] = serde_json::json!({"id": "panic-me", "text": "acme outage"}).to_string();
        let docs: Vec<Document<'_>> = json
            .iter()
            .map(|j| Document::parse(j.as_bytes(), 1 << 20).unwrap())
            .collect();
        let work: Vec<ToMatch<'_>> = docs
            .iter()
            .enumerate()
            .map(|(i, doc)| ToMatch {
                doc,
                class: i % 3,
                ctx: RecordContext {
                    matched_at: "2026-12-01T00:00:00.000Z",
                    input: Some(InputCoords {
                        topic: "in",
                        partition: 0,
                        offset: i as i64,
                    }),
                    searches_version: Some(1),
                    class: None,
                },
                masks: None,
            })
            .collect();
        let run = |threads: usize, work: &[ToMatch<'_>]| -> Vec<String> {
            let mut p = Parallel::new(threads, 20_000);
            let mut main = p.scratch_for(&active);
            let out = p.match_all(&active, &mut main, work, Some("panic-me"));
            assert_eq!(out.len(), work.len());
            out.iter().map(|r| summary(r.as_ref().unwrap())).collect()
        };
        let one = run(1, &work);
        assert!(
            one[0].contains("matched") && one[0].contains("acme-down"),
            "{}",
            one[0]
        );
        assert!(
            one[1].contains("acme-down") && one[1].contains("beta-any"),
            "{}",
            one[1]
        );
        assert!(one[2].ends_with("matched []"), "{}", one[2]);
        assert!(one[33].contains("too expensive"), "{}", one[33]);
        assert!(one[41].contains("panicked: fault injection"), "{}", one[41]);
        // Each record names its own document and offset.
        assert!(
            one[5].contains("d5/") && one[5].contains("\"offset\":5"),
            "{}",
            one[5]
        );
        for threads in [2, 3, 8] {
            assert_eq!(run(threads, &work), one, "{threads} threads");
            // A run too short to be shared gives the same too.
            assert_eq!(
                run(threads, &work[..5]),
                one[..5],
                "{threads} threads, short run"
            );
        }
    }
}
