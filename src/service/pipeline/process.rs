//! One message: parse, match under the guard, hand the records to the
//! output or the document to the dead letters.

use super::parallel::Ready;
use super::*;
use crate::document::BadDocument;

/// A message's document if it was parsed already (step A of `parallel`);
/// `None`: the message is parsed here if it needs to be.
pub(super) type Parsed<'p, 'm> = Option<&'p Result<Document<'m>, BadDocument>>;

/// What matching a message needs besides the message: the searches version
/// in use, its scratch space, a buffer for records, the `matched_at` of
/// records, the size limit of documents, and the message's records if they
/// were matched ahead (`parallel`).
pub(super) struct MatchInput<'a> {
    pub(super) active: &'a Active,
    pub(super) scratch: &'a mut ActiveScratch,
    pub(super) buf: &'a mut Vec<u8>,
    pub(super) matched_at: &'a str,
    pub(super) max_bytes: usize,
    pub(super) ready: Option<Ready>,
}

/// What the records of `msg`, matched with `active` as `class`, say
/// besides the match: when, where from, which version, which class.
pub(super) fn record_context<'a>(
    msg: &'a BorrowedMessage<'_>,
    matched_at: &'a str,
    active: &Active,
    classes: &'a crate::classes::Classes,
    class: usize,
) -> RecordContext<'a> {
    RecordContext {
        matched_at,
        input: Some(InputCoords {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
        }),
        searches_version: Some(active.meta.version),
        class: classes.named().then(|| classes.name(class)),
    }
}

/// `parsed`, or `msg` parsed into `slot`.
fn parsed_or<'p, 'm>(
    parsed: Parsed<'p, 'm>,
    msg: &'m BorrowedMessage<'_>,
    max_bytes: usize,
    slot: &'p mut Option<Result<Document<'m>, BadDocument>>,
) -> &'p Result<Document<'m>, BadDocument> {
    match parsed {
        Some(p) => p,
        None => slot.insert(Document::parse(
            msg.payload().unwrap_or_default(),
            max_bytes,
        )),
    }
}

impl LoopState {
    /// A live message: skipped when fetched before a revocation or before
    /// the live lane moved to the head; else matched or dead-lettered.
    pub(super) fn process(
        &mut self,
        msg: &BorrowedMessage<'_>,
        parsed: Parsed<'_, '_>,
        m: &mut MatchInput<'_>,
    ) -> Result<(), SinkError> {
        let tp = TopicPartition::new(msg.topic(), msg.partition());
        if !self.owned.contains(&tp) {
            return Ok(()); // fetched before a revocation; the next owner reads it
        }
        self.batch_open = true;
        if self
            .processed
            .get(&tp)
            .is_some_and(|&next| msg.offset() < next)
        {
            return Ok(()); // fetched before the live lane moved to the head
        }
        self.metrics.documents_in.fetch_add(1, Relaxed);
        self.live_docs += 1;
        let mut slot = None;
        match parsed_or(parsed, msg, m.max_bytes, &mut slot) {
            Ok(doc) => {
                let class = self.jobs.classes().classify(msg.topic(), doc);
                self.emit(msg, doc, class, None, m)?;
            }
            Err(reason) => self.bad(msg, &reason.to_string())?,
        }
        if let Some(ts) = msg.timestamp().to_millis() {
            match self.last_message_ms.get_mut(&tp) {
                Some(last) => *last = ts,
                None => {
                    self.last_message_ms.insert(tp.clone(), ts);
                }
            }
        }
        self.processed.insert(tp, msg.offset() + 1);
        Ok(())
    }

    /// A message read by the lane of `class` of drain job `job`: emitted if
    /// its document is of that class (and, for a replay, inside the window,
    /// restricted to `masks`); bad messages go to the dead letters once, by
    /// the lane of the last class that reads the topic, in a catch-up. Returns whether a document of
    /// the lane's class was matched.
    pub(super) fn process_backlog(
        &mut self,
        msg: &BorrowedMessage<'_>,
        job: u64,
        class: usize,
        masks: Option<&Masks>,
        parsed: Parsed<'_, '_>,
        m: &mut MatchInput<'_>,
    ) -> Result<bool, SinkError> {
        self.batch_open = true;
        let (topic, partition, offset) = (msg.topic(), msg.partition(), msg.offset());
        let Lookup::Take(range) = self.jobs.look(job, class, topic, partition, offset) else {
            return Ok(false);
        };
        let Some(j) = self.jobs.running(job) else {
            return Ok(false);
        };
        let catch_up = j.kind == JobKind::CatchUp;
        if catch_up && !self.owned.contains(&TopicPartition::new(topic, partition)) {
            return Ok(false); // revoked meanwhile; the range is dropped
        }
        let ts = msg.timestamp().to_millis();
        let in_window = in_window(j.from_ms, j.to_ms, ts);
        let dead_letters = class == self.jobs.classes().last_reader(topic);
        let mut emitted = false;
        let mut slot = None;
        match parsed_or(parsed, msg, m.max_bytes, &mut slot) {
            Ok(doc) => {
                if in_window && self.jobs.classes().classify(topic, doc) == class {
                    self.metrics.documents_in.fetch_add(1, Relaxed);
                    self.emit(msg, doc, class, masks, m)?;
                    emitted = true;
                }
            }
            Err(reason) if catch_up && dead_letters => {
                self.metrics.documents_in.fetch_add(1, Relaxed);
                self.bad(msg, &reason.to_string())?;
            }
            Err(_) => {}
        }
        self.jobs.handled(job, range, class, offset, ts, emitted);
        Ok(emitted)
    }

    /// Matches a document and hands its records to the output; a document
    /// that spends the work budget or makes matching panic becomes a dead
    /// letter instead (see `guard`), and a record the output cannot take
    /// for good sends the document to the dead letters too.
    pub(super) fn emit(
        &mut self,
        msg: &BorrowedMessage<'_>,
        doc: &Document<'_>,
        class: usize,
        masks: Option<&Masks>,
        m: &mut MatchInput<'_>,
    ) -> Result<(), SinkError> {
        // Matched ahead (`parallel`) as this class, or matched here.
        let (outcome, records, own) = match m.ready.take().filter(|r| r.class == class) {
            Some(r) => (r.outcome, r.records, false),
            None => {
                let ctx = record_context(msg, m.matched_at, m.active, self.jobs.classes(), class);
                let mut records = std::mem::take(&mut self.doc_records);
                std::mem::swap(&mut records.buf, m.buf);
                let outcome = guard::match_document(
                    m.active,
                    doc,
                    m.scratch,
                    masks,
                    &ctx,
                    &mut records,
                    self.fault_panic_doc.as_deref(),
                );
                (outcome, records, true)
            }
        };
        let sent = match outcome {
            Outcome::Matched => self.send_records(msg, &records),
            Outcome::TooExpensive(e) => {
                tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(),
                    doc_id = %doc.id, search = e.search.as_deref().unwrap_or("(indexing)"), budget = e.budget,
                    "document too expensive to match: sent to the dead letters");
                self.metrics.documents_too_expensive.fetch_add(1, Relaxed);
                self.dead_letter(msg, "too_expensive", &e.to_string())
            }
            Outcome::Panicked { search, message } => {
                tracing::error!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(),
                    doc_id = %doc.id, search = search.as_deref().unwrap_or("(none)"), panic = %message,
                    "matching panicked: document sent to the dead letters, the pipeline goes on");
                self.metrics.documents_internal_error.fetch_add(1, Relaxed);
                let detail = match &search {
                    Some(s) => format!("matching panicked in search `{s}`: {message}"),
                    None => format!("matching panicked: {message}"),
                };
                self.dead_letter(msg, "internal_error", &detail)
            }
        };
        if own {
            let mut records = records;
            std::mem::swap(&mut records.buf, m.buf);
            self.doc_records = records;
        }
        sent
    }

    /// Sends a matched document's records. A record larger than the
    /// output takes is not sent: the document goes to the dead letters with
    /// reason `record_too_large` (its other records are still sent).
    pub(super) fn send_records(
        &mut self,
        msg: &BorrowedMessage<'_>,
        records: &DocRecords,
    ) -> Result<(), SinkError> {
        if records.records.is_empty() {
            return Ok(());
        }
        self.metrics.documents_matched.fetch_add(1, Relaxed);
        let limit = self.output.max_record_bytes();
        let mut too_large = None;
        for (key, value) in records.iter() {
            let size = key.len() + value.len();
            if limit.is_some_and(|l| size > l) {
                // A key can be most of the record: keep its start.
                let mut shown = crate::service::dead_letters::cut_str(key, 80).to_string();
                if shown.len() < key.len() {
                    shown.push('…');
                }
                too_large.get_or_insert((shown, size));
                self.metrics.records_refused.fetch_add(1, Relaxed);
                continue;
            }
            self.output.send(key.as_bytes(), value, &[])?;
            self.metrics.records_out.fetch_add(1, Relaxed);
        }
        if let Some((key, size)) = too_large {
            let limit = limit.unwrap_or_default();
            tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), match_id = %key, size, limit,
                "match record larger than the output takes: the document is sent to the dead letters");
            let detail = format!(
                "a match record of {size} bytes (match id `{key}`); the output takes at most {limit}"
            );
            self.dead_letter(msg, "record_too_large", &detail)?;
        }
        Ok(())
    }

    /// A bad message: counted, logged once, sent to the dead letters.
    pub(super) fn bad(&mut self, msg: &BorrowedMessage<'_>, reason: &str) -> Result<(), SinkError> {
        tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), %reason, "bad message sent to the dead letters");
        self.metrics.documents_bad.fetch_add(1, Relaxed);
        self.dead_letter(msg, "bad_message", reason)
    }

    /// Sends the input message `msg` to the dead letters.
    pub(super) fn dead_letter(
        &mut self,
        msg: &BorrowedMessage<'_>,
        reason: &str,
        detail: &str,
    ) -> Result<(), SinkError> {
        let at = Coords {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
        };
        let (key, value) = (
            msg.key().unwrap_or_default(),
            msg.payload().unwrap_or_default(),
        );
        self.dead.send(at, key, value, reason, detail)
    }
}

/// Whether a message with timestamp `ts` is inside a replay's window
/// `[from, to)` (every message is, without a window).
pub(super) fn in_window(from: Option<i64>, to: Option<i64>, ts: Option<i64>) -> bool {
    match (from, to) {
        (Some(from), Some(to)) => ts.is_some_and(|t| t >= from && t < to),
        _ => true,
    }
}
