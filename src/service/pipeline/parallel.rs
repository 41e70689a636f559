//! Matching on every core: the documents of a *run* of messages are
//! matched on every thread while the pipeline thread handles the run's
//! messages one by one, in order.
//!
//! # Data flow
//!
//! ```text
//! poll: a run of messages already fetched (the first poll may wait, the rest do not)
//!   │
//!   ├─► A  pipeline thread, in order, no side effects (`run`): parse each
//!   │      message that would be handled; classify it; note its record context
//!   ├─► B  `threads` threads (this one included): match those documents in
//!   │      chunks, each under the guard (`guard`), into its own record
//!   │      buffer (`Ready`)
//!   └─► C  pipeline thread, in order, as soon as a message's records are
//!          ready: the unchanged per-message logic (`process`,
//!          `process_backlog`): owned? already processed? in the drain's
//!          range? — then the records matched in B are sent, or the dead
//!          letter written, and `processed` / the drain cursor advance
//! ```
//!
//! Step C is the code that ran before there was a step B, so every
//! decision (skip, dead letter, which class, which window) is taken where it
//! was, in message order; B only moves the matching, the costly part, onto
//! every core. A document B matched that C then does not take (rare: a
//! revocation inside the run's polls) is wasted work, never an emission; a
//! document C takes that B did not match is matched in C.
//!
//! B and C overlap: every thread takes the next chunk nobody has taken.
//! The pipeline thread handles messages in order; when the next message's
//! records are not ready, it matches the next untaken chunk instead of
//! waiting (and waits only when every chunk is taken). So sending records
//! (the serial part) runs while the helpers match, the threads balance by
//! themselves, and the pipeline thread never waits on a helper that is not
//! there.
//!
//! # What stays as it was
//!
//! - **Order.** C handles in poll order, so the records of a partition
//!   keep the order of its messages (records of different partitions keep
//!   the order in which they were polled, which is more than Kafka
//!   promises).
//! - **Checkpoints.** Nothing of the run is marked processed before C hands
//!   its records to the output, and no poll (where a rebalance checkpoints)
//!   happens between A and the end of C. A revocation during the run's
//!   polls checkpoints what was processed before the run; C then skips the
//!   revoked partition's messages (not owned), as the one-at-a-time loop
//!   skipped messages fetched before a revocation.
//! - **Hostile input.** Each document is matched under the guard with the
//!   work budget on whichever thread takes it: a panic or a spent budget is
//!   that document's outcome, handled in C as before.
//!
//! # Threads
//!
//! The helpers are scoped threads spawned per run (a run holds borrowed
//! messages, which a long-lived pool could not take), each with scratch
//! space kept here between runs; documents are taken in chunks of
//! [`CHUNK`], because one document may cost a thousand times another.
//! Runs with fewer than [`MIN_PARALLEL`] documents are matched on this
//! thread alone: at low rates a run is one message, and a spawn would cost
//! more than it saves. The helpers' per-search costs go to the same book as
//! this thread's (`take_costs`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize};
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

    /// Steps B and C: matches the document of each item that has one, on
    /// every thread, and calls `handle(i, records, scratch)` for every item
    /// `i` in order, on this thread, as soon as item `i`'s records are
    /// ready (`None`: the item had nothing to match). `main` is this
    /// thread's scratch space, lent to `handle` for what it matches itself.
    ///
    /// Every thread takes the next chunk nobody has taken; this thread
    /// handles items in order and, while the next item's records are not
    /// ready, matches the next untaken chunk, so handling overlaps the
    /// helpers' matching and nothing waits on a thread that is not there.
    /// An error from `handle` stops the helpers after their chunk and is
    /// returned.
    pub(super) fn match_in_order<E>(
        &mut self,
        active: &Active,
        main: &mut ActiveScratch,
        items: &[Option<ToMatch<'_>>],
        fault_panic_doc: Option<&str>,
        mut handle: impl FnMut(usize, Option<Ready>, &mut ActiveScratch) -> Result<(), E>,
    ) -> Result<(), E> {
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
            Ready {
                class: w.class,
                outcome,
                records,
            }
        };
        let to_match = items.iter().filter(|w| w.is_some()).count();
        if self.threads == 1 || to_match < MIN_PARALLEL {
            for (i, w) in items.iter().enumerate() {
                let ready = w.as_ref().map(|w| one(main, w));
                handle(i, ready, main)?;
            }
            return Ok(());
        }
        while self.helpers.len() < self.threads - 1 {
            let scratch = self.scratch_for(active);
            self.helpers.push(scratch);
        }
        let slots: Vec<Mutex<Option<Ready>>> = items.iter().map(|_| Mutex::new(None)).collect();
        let chunks = items.len().div_ceil(CHUNK);
        // The next chunk nobody has taken.
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let fill = |scratch: &mut ActiveScratch, c: usize| {
            let end = ((c + 1) * CHUNK).min(items.len());
            for i in c * CHUNK..end {
                if let Some(w) = &items[i] {
                    let ready = one(scratch, w);
                    *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(ready);
                }
            }
        };
        let this = std::thread::current();
        std::thread::scope(|scope| {
            for helper in &mut self.helpers {
                let (fill, next, stop, this) = (&fill, &next, &stop, &this);
                let spawned = std::thread::Builder::new()
                    .name("matching".into())
                    .spawn_scoped(scope, move || {
                        while !stop.load(Relaxed) {
                            let c = next.fetch_add(1, Relaxed);
                            if c >= chunks {
                                break;
                            }
                            fill(helper, c);
                            this.unpark();
                        }
                    });
                if let Err(e) = spawned {
                    // This thread matches what the helper would have.
                    tracing::warn!(error = %e, "cannot start a matching thread");
                }
            }
            let result = (|| {
                for (i, w) in items.iter().enumerate() {
                    let ready = w.as_ref().map(|_| loop {
                        if let Some(r) = slots[i].lock().unwrap_or_else(|p| p.into_inner()).take() {
                            break r;
                        }
                        // While a helper is on this item's chunk, match
                        // the next chunk no one has taken (this item's own,
                        // if it is that one).
                        let taken = next.load(Relaxed);
                        if taken < chunks {
                            if next
                                .compare_exchange(taken, taken + 1, Relaxed, Relaxed)
                                .is_ok()
                            {
                                fill(main, taken);
                            }
                            continue;
                        }
                        std::thread::park_timeout(std::time::Duration::from_millis(10));
                    });
                    handle(i, ready, main)?;
                }
                Ok(())
            })();
            stop.store(true, Relaxed);
            result
        })
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
        json[40] = serde_json::json!({"id": "panic-me", "text": "acme outage"}).to_string();
        let docs: Vec<Document<'_>> = json
            .iter()
            .map(|j| Document::parse(j.as_bytes(), 1 << 20).unwrap())
            .collect();
        // Every seventh item has nothing to match.
        let items: Vec<Option<ToMatch<'_>>> = docs
            .iter()
            .enumerate()
            .map(|(i, doc)| {
                (i % 7 != 6).then_some(ToMatch {
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
            })
            .collect();
        // What `handle` was given, item by item, in the order it was called.
        let run = |threads: usize, items: &[Option<ToMatch<'_>>]| -> Vec<String> {
            let mut p = Parallel::new(threads, 20_000);
            let mut main = p.scratch_for(&active);
            let mut seen = Vec::new();
            p.match_in_order(
                &active,
                &mut main,
                items,
                Some("panic-me"),
                |i, ready, _| {
                    seen.push(format!(
                        "{i}: {}",
                        ready.as_ref().map_or("none".into(), summary)
                    ));
                    Ok::<(), ()>(())
                },
            )
            .unwrap();
            seen
        };
        let one = run(1, &items);
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
        assert!(one[14].starts_with("14: "), "{}", one[14]);
        assert!(one[33].contains("too expensive"), "{}", one[33]);
        assert!(one[40].contains("panicked: fault injection"), "{}", one[40]);
        // Each record names its own document and offset.
        assert!(
            one[5].contains("d5/") && one[5].contains("\"offset\":5"),
            "{}",
            one[5]
        );
        for threads in [2, 3, 8] {
            assert_eq!(run(threads, &items), one, "{threads} threads");
            // A run too short to be shared gives the same too.
            assert_eq!(
                run(threads, &items[..5]),
                one[..5],
                "{threads} threads, short run"
            );
        }
    }
}
