//! A run of messages: step A (parse, decide what to match) here, steps B
//! and C (match on every thread, handle in order) through `parallel`.
//! The one-message logic of step C is `process`.

use super::parallel::{Parallel, ToMatch};
use super::process::{in_window, record_context, MatchInput, Parsed};
use super::*;
use crate::classes::Classes;
use crate::document::BadDocument;

/// What a run needs besides its messages: the searches version in use,
/// this thread's scratch space, the matching threads, a buffer for records,
/// the `matched_at` of records, the size limit of documents and the
/// classes (their names go into records).
pub(super) struct RunInput<'a> {
    pub(super) active: &'a Active,
    pub(super) scratch: &'a mut ActiveScratch,
    pub(super) parallel: &'a mut Parallel,
    pub(super) buf: &'a mut Vec<u8>,
    pub(super) matched_at: &'a str,
    pub(super) max_bytes: usize,
    pub(super) classes: &'a Classes,
}

type ParsedDoc<'m> = Option<Result<Document<'m>, BadDocument>>;

impl LoopState {
    /// A run of live messages: each message `process` would match (owned,
    /// not processed yet) is parsed and matched ahead; then every message
    /// goes through `process` in order.
    pub(super) fn process_run(
        &mut self,
        run: &[BorrowedMessage<'_>],
        r: &mut RunInput<'_>,
    ) -> Result<(), SinkError> {
        let (max_bytes, classes) = (r.max_bytes, r.classes);
        let parsed: Vec<ParsedDoc<'_>> = run
            .iter()
            .map(|msg| {
                let tp = TopicPartition::new(msg.topic(), msg.partition());
                let handled = self.owned.contains(&tp)
                    && self
                        .processed
                        .get(&tp)
                        .is_none_or(|&next| msg.offset() >= next);
                handled.then(|| Document::parse(msg.payload().unwrap_or_default(), max_bytes))
            })
            .collect();
        let class_of = |msg: &BorrowedMessage<'_>, doc: &Document<'_>| {
            Some(classes.classify(msg.topic(), doc))
        };
        self.match_and_handle(run, &parsed, class_of, None, r, |s, msg, parsed, m| {
            s.process(msg, parsed, m)
        })
    }

    /// A run of one drain lane's messages (job `job`, class `class`): each
    /// message in the job's window is parsed, and matched ahead if it is of
    /// the lane's class; then every message goes through `process_backlog`
    /// in order. Returns how many documents of the class were matched.
    pub(super) fn process_backlog_run(
        &mut self,
        run: &[BorrowedMessage<'_>],
        job: u64,
        class: usize,
        masks: Option<&Masks>,
        r: &mut RunInput<'_>,
    ) -> Result<usize, SinkError> {
        let (max_bytes, classes) = (r.max_bytes, r.classes);
        let window = self.jobs.running(job).map(|j| (j.from_ms, j.to_ms));
        let parsed: Vec<ParsedDoc<'_>> = run
            .iter()
            .map(|msg| {
                let (from, to) = window?;
                in_window(from, to, msg.timestamp().to_millis())
                    .then(|| Document::parse(msg.payload().unwrap_or_default(), max_bytes))
            })
            .collect();
        let class_of = |msg: &BorrowedMessage<'_>, doc: &Document<'_>| {
            (classes.classify(msg.topic(), doc) == class).then_some(class)
        };
        let mut emitted = 0;
        self.match_and_handle(run, &parsed, class_of, masks, r, |s, msg, parsed, m| {
            emitted += usize::from(s.process_backlog(msg, job, class, masks, parsed, m)?);
            Ok(())
        })?;
        Ok(emitted)
    }

    /// Steps B and C for a run whose step A gave `parsed`: each parsed
    /// document to which `class_of` gives a class is matched as that class
    /// (restricted by `masks`) on every thread, and `handle` gets every
    /// message of the run in order, with its records when they are ready.
    fn match_and_handle(
        &mut self,
        run: &[BorrowedMessage<'_>],
        parsed: &[ParsedDoc<'_>],
        class_of: impl Fn(&BorrowedMessage<'_>, &Document<'_>) -> Option<usize>,
        masks: Option<&Masks>,
        r: &mut RunInput<'_>,
        mut handle: impl FnMut(
            &mut Self,
            &BorrowedMessage<'_>,
            Parsed<'_, '_>,
            &mut MatchInput<'_>,
        ) -> Result<(), SinkError>,
    ) -> Result<(), SinkError> {
        let (active, matched_at, max_bytes, classes) =
            (r.active, r.matched_at, r.max_bytes, r.classes);
        let items: Vec<Option<ToMatch<'_>>> = run
            .iter()
            .zip(parsed)
            .map(|(msg, p)| {
                let Some(Ok(doc)) = p else { return None };
                let class = class_of(msg, doc)?;
                Some(ToMatch {
                    doc,
                    class,
                    ctx: record_context(msg, matched_at, active, classes, class),
                    masks,
                })
            })
            .collect();
        let fault = self.fault_panic_doc.clone();
        let buf = &mut *r.buf;
        r.parallel.match_in_order(
            active,
            r.scratch,
            &items,
            fault.as_deref(),
            |i, ready, scratch| {
                let mut m = MatchInput {
                    active,
                    scratch,
                    buf: &mut *buf,
                    matched_at,
                    max_bytes,
                    ready,
                };
                handle(self, &run[i], parsed[i].as_ref(), &mut m)
            },
        )
    }
}
