//! The match record of docs/formats.md §2.3, written as one JSON line.

use serde::Serialize;

use crate::document::{Document, FIELD_NAMES};
use crate::engine::{Matcher, TopicMatch};

/// Where a document came from in Kafka (absent offline).
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct InputCoords<'a> {
    /// Input topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Context of a record that is not in the document or the match.
#[derive(Clone, Copy, Debug, Default)]
pub struct RecordContext<'a> {
    /// The priority class of the document, if classes are configured.
    pub class: Option<&'a str>,
    /// The searches version that produced the match (absent offline).
    pub searches_version: Option<u64>,
    /// Kafka coordinates (absent offline).
    pub input: Option<InputCoords<'a>>,
    /// RFC 3339 time of matching, with milliseconds.
    pub matched_at: &'a str,
}

#[derive(Serialize)]
struct HighlightOut<'a> {
    search: &'a str,
    field: &'a str,
    start: u32,
    end: u32,
}

#[derive(Serialize)]
struct Record<'a> {
    match_id: &'a str,
    doc_id: &'a str,
    topic_id: &'a str,
    searches: Vec<&'a str>,
    highlights: Vec<HighlightOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<&'a str>,
    matched_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    searches_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<InputCoords<'a>>,
}

/// The deterministic id of a (document, topic) match: a downstream consumer
/// drops duplicates by it.
pub fn match_id(doc_id: &str, topic_id: &str) -> String {
    let mut s = String::with_capacity(doc_id.len() + topic_id.len() + 1);
    s.push_str(doc_id);
    s.push('/');
    s.push_str(topic_id);
    s
}

/// Appends the JSON line (with `\n`) of one match record to `out`; returns
/// the match id.
pub fn write_record(
    out: &mut Vec<u8>,
    matcher: &Matcher,
    doc: &Document<'_>,
    m: &TopicMatch,
    ctx: &RecordContext<'_>,
) -> String {
    let topic_id = matcher.topic_id(m.topic);
    let id = match_id(&doc.id, topic_id);
    let record = Record {
        match_id: &id,
        doc_id: &doc.id,
        topic_id,
        searches: m.searches.iter().map(|&s| matcher.search_id(s)).collect(),
        highlights: m
            .highlights
            .iter()
            .map(|h| HighlightOut {
                search: matcher.search_id(h.search),
                field: FIELD_NAMES[h.field as usize],
                start: h.start,
                end: h.end,
            })
            .collect(),
        source: doc.source.as_deref(),
        class: ctx.class,
        created_at: doc.created_at.as_deref(),
        matched_at: ctx.matched_at,
        searches_version: ctx.searches_version,
        input: ctx.input,
    };
    serde_json::to_writer(&mut *out, &record).expect("writing JSON to a Vec cannot fail");
    out.push(b'\n');
    id
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The current time as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// A time in ms since the epoch as RFC 3339 with milliseconds.
pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Limits;
    use crate::searches::Catalog;

    #[test]
    fn record_has_the_spec_shape() {
        let json = br#"{"topics": [{"id": "acme", "searches": [
            {"id": "acme-brand", "query": "(\"acme corp\" OR #acme) NOT (job OR hiring)"}]}]}"#;
        let catalog = Catalog::from_json(json, &Limits::default()).unwrap();
        let m = Matcher::new(&catalog).unwrap();
        let doc = Document::parse(
            br#"{"id": "tw:1153883201", "source": "twitter", "text": "Can't upload images in #acme today", "created_at": "2019-07-24T09:31:07Z"}"#,
            1 << 20,
        )
        .unwrap();
        let mut scratch = m.scratch();
        let matches = m.match_document(&doc, &mut scratch);
        let mut out = Vec::new();
        let ctx = RecordContext {
            matched_at: "2019-07-24T14:16:02.113Z",
            searches_version: Some(17),
            input: Some(InputCoords {
                topic: "social.twitter",
                partition: 3,
                offset: 1182211,
            }),
            class: Some("high"),
        };
        write_record(&mut out, &m, &doc, &matches[0], &ctx);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"match_id": "tw:1153883201/acme", "doc_id": "tw:1153883201", "topic_id": "acme",
                "searches": ["acme-brand"],
                "highlights": [{"search": "acme-brand", "field": "text", "start": 23, "end": 28}],
                "source": "twitter", "class": "high", "created_at": "2019-07-24T09:31:07Z",
                "matched_at": "2019-07-24T14:16:02.113Z", "searches_version": 17,
                "input": {"topic": "social.twitter", "partition": 3, "offset": 1182211}})
        );
    }
}
