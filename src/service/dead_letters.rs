//! The dead-letter output: what could not be matched or delivered, with a
//! reason, a detail and its coordinates, so that nothing is dropped in
//! silence and an operator can replay it.
//!
//! | reason | what | the dead letter holds |
//! |---|---|---|
//! | `bad_message` | not UTF-8, not JSON, no `id`, too large, … | the input message |
//! | `too_expensive` | matching spent the work budget | the input message |
//! | `internal_error` | matching panicked | the input message |
//! | `record_too_large` | a match record over the output's limit | the input message |
//! | `output_refused` | the output broker refused a match record for good | that record |
//!
//! Kafka target: the original key and value, and headers `reason`,
//! `detail`, `topic`, `partition`, `offset`. JSONL target: one object per
//! dead letter with the bytes in base64.
//!
//! # Never too large itself
//!
//! A dead letter is sized against the dead-letter output's limit before it
//! is sent: one that would not fit is sent with its value cut to fit and the
//! headers `truncated: true` and `original_size`. A dead letter the broker
//! refuses all the same is logged with its coordinates and counted
//! (`dead_letters_dropped_total`); the pipeline goes on.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::metrics::Metrics;
use super::sink::{base64, Refused, Sink, SinkError};
use crate::record::now_rfc3339;

/// Where a dead letter came from.
#[derive(Clone, Copy, Debug)]
pub struct Coords<'a> {
    /// Input topic (or, for a refused record, the output topic).
    pub topic: &'a str,
    /// Partition (-1 when unknown).
    pub partition: i32,
    /// Offset (-1 when unknown).
    pub offset: i64,
}

/// Longest detail kept in a dead letter, in bytes.
const MAX_DETAIL: usize = 1024;
/// Longest key kept when a dead letter must be cut, in bytes.
const MAX_CUT_KEY: usize = 1024;

/// The dead-letter output.
pub struct DeadLetters {
    /// Where they go.
    pub sink: Box<dyn Sink>,
    /// JSONL target (else Kafka).
    json: bool,
    metrics: Arc<Metrics>,
}

impl DeadLetters {
    /// Dead letters written to `sink`, as JSON lines when `json`.
    pub fn new(sink: Box<dyn Sink>, json: bool, metrics: Arc<Metrics>) -> DeadLetters {
        DeadLetters {
            sink,
            json,
            metrics,
        }
    }

    /// Sends one dead letter of `key`/`value` with its reason and detail.
    ///
    /// # Errors
    ///
    /// I/O errors of a file target.
    pub fn send(
        &mut self,
        at: Coords<'_>,
        key: &[u8],
        value: &[u8],
        reason: &str,
        detail: &str,
    ) -> Result<(), SinkError> {
        let detail = cut_str(detail, MAX_DETAIL);
        self.metrics.dead_letters.fetch_add(1, Relaxed);
        if self.json {
            let line = serde_json::json!({
                "reason": reason,
                "detail": detail,
                "topic": at.topic,
                "partition": at.partition,
                "offset": at.offset,
                "key_base64": base64(key),
                "value_base64": base64(value),
                "value_preview": String::from_utf8_lossy(&value[..value.len().min(200)]),
                "failed_at": now_rfc3339(),
            });
            return self.sink.send(key, line.to_string().as_bytes(), &[]);
        }
        let partition = at.partition.to_string();
        let offset = at.offset.to_string();
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("reason", reason.as_bytes()),
            ("detail", detail.as_bytes()),
            ("topic", at.topic.as_bytes()),
            ("partition", partition.as_bytes()),
            ("offset", offset.as_bytes()),
        ];
        let header_bytes =
            |h: &[(&str, &[u8])]| h.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let limit = self.sink.max_record_bytes().unwrap_or(usize::MAX);
        let size = key.len() + value.len();
        let original_size = size.to_string();
        let (mut key, mut value) = (key, value);
        if size + header_bytes(&headers) > limit {
            headers.push(("truncated", b"true"));
            headers.push(("original_size", original_size.as_bytes()));
            key = &key[..key.len().min(MAX_CUT_KEY)];
            let room = limit.saturating_sub(key.len() + header_bytes(&headers));
            value = &value[..value.len().min(room)];
            tracing::warn!(
                topic = at.topic,
                partition = at.partition,
                offset = at.offset,
                size,
                limit,
                "dead letter larger than the dead-letter output takes: sent cut to fit"
            );
        }
        self.sink.send(key, value, &headers)
    }

    /// Dead-letters a match record that the output refused for good.
    ///
    /// # Errors
    ///
    /// I/O errors of a file target.
    pub fn send_refused(&mut self, output_topic: &str, r: &Refused) -> Result<(), SinkError> {
        tracing::error!(output = output_topic, match_id = %String::from_utf8_lossy(&r.key), error = %r.error, size = r.value.len(),
            "the output refused a match record for good: it goes to the dead letters");
        self.metrics.records_refused.fetch_add(1, Relaxed);
        let detail = format!("the output refused the match record: {}", r.error);
        let at = Coords {
            topic: output_topic,
            partition: -1,
            offset: -1,
        };
        self.send(at, &r.key, &r.value, "output_refused", &detail)
    }

    /// Logs and counts a dead letter the dead-letter output itself refused
    /// for good (nothing more can be done with it).
    pub fn dropped(&self, r: &Refused) {
        let header = |name: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        tracing::error!(topic = %header("topic"), partition = %header("partition"), offset = %header("offset"),
            reason = %header("reason"), error = %r.error, size = r.value.len(),
            "the dead-letter output refused a dead letter for good: dropped");
        self.metrics.dead_letters_dropped.fetch_add(1, Relaxed);
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(crate) fn cut_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_char_boundaries() {
        assert_eq!(cut_str("héllo", 2), "h");
        assert_eq!(cut_str("héllo", 3), "hé");
        assert_eq!(cut_str("abc", 10), "abc");
    }
}
