//! The match record of docs/formats.md §2.3, written as one JSON line.

use serde::Serialize;

use crate::document::Document;
use crate::engine::{Matcher, TopicMatch};
use crate::json_string::{escape_into, string};
use crate::searches::SearchIdx;

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

/// The deterministic id of a (document, topic) match: a downstream consumer
/// drops duplicates by it.
pub fn match_id(doc_id: &str, topic_id: &str) -> String {
    let mut s = String::with_capacity(doc_id.len() + topic_id.len() + 1);
    s.push_str(doc_id);
    s.push('/');
    s.push_str(topic_id);
    s
}

/// Appends the JSON line (with `\n`) of one match record to `out`
/// ([`DocumentRecords`] for a document with several).
pub fn write_record(
    out: &mut Vec<u8>,
    matcher: &Matcher,
    doc: &Document<'_>,
    m: &TopicMatch,
    ctx: &RecordContext<'_>,
) {
    let mut parts = DocumentRecords::default();
    parts.begin(doc, ctx);
    parts.write(out, matcher, m);
}

/// What every match record of one document shares, escaped once: the
/// document's id and the fields after the highlights. Keep one and
/// [`DocumentRecords::begin`] it per document: its buffers are reused.
///
/// Records are written field by field rather than through a serialized
/// struct: at 100,000 searches a long post has hundreds of records, and
/// building each record's lists and match id on the heap, then
/// serializing it, was a fifth of `match`'s time (BENCHMARKS.md). The
/// bytes are those `serde_json` writes for the same record (tests check
/// the escapes against it).
#[derive(Clone, Debug, Default)]
pub struct DocumentRecords {
    /// `{"match_id":"` and the escaped document id, then `/`.
    head: Vec<u8>,
    /// From the `"` that ends the match id to the `"` that starts the
    /// topic id: `","doc_id":"`, the escaped document id, `","topic_id":"`.
    middle: Vec<u8>,
    /// From `,"source"` to the end of the line.
    tail: Vec<u8>,
}

/// What follows a highlight's search id up to its start offset, by field
/// (`FIELD_NAMES`; a test checks them against it).
const FIELD_KEYS: [&[u8]; 2] = [
    b",\"field\":\"title\",\"start\":",
    b",\"field\":\"text\",\"start\":",
];

impl DocumentRecords {
    /// Prepares the parts of `doc`'s records.
    pub fn begin(&mut self, doc: &Document<'_>, ctx: &RecordContext<'_>) {
        self.head.clear();
        self.head.extend_from_slice(b"{\"match_id\":\"");
        escape_into(&mut self.head, &doc.id);
        self.head.push(b'/');
        self.middle.clear();
        self.middle.extend_from_slice(b"\",\"doc_id\":\"");
        escape_into(&mut self.middle, &doc.id);
        self.middle.extend_from_slice(b"\",\"topic_id\":\"");
        let out = &mut self.tail;
        out.clear();
        let mut numbers = itoa::Buffer::new();
        optional(out, b",\"source\":", doc.source.as_deref());
        optional(out, b",\"class\":", ctx.class);
        optional(out, b",\"created_at\":", doc.created_at.as_deref());
        out.extend_from_slice(b",\"matched_at\":");
        string(out, ctx.matched_at);
        if let Some(v) = ctx.searches_version {
            number(out, &mut numbers, b",\"searches_version\":", v);
        }
        if let Some(input) = &ctx.input {
            out.extend_from_slice(b",\"input\":{\"topic\":");
            string(out, input.topic);
            number(out, &mut numbers, b",\"partition\":", input.partition);
            number(out, &mut numbers, b",\"offset\":", input.offset);
            out.push(b'}');
        }
        out.extend_from_slice(b"}\n");
    }

    /// Appends the JSON line (with `\n`) of match `m` of the document
    /// last begun. A highlight's search id is escaped once per search.
    pub fn write(&self, out: &mut Vec<u8>, matcher: &Matcher, m: &TopicMatch) {
        out.reserve(self.head.len() + self.middle.len() + self.tail.len() + 256);
        put(out, &self.head);
        // Ids are copied as they are when none in the catalog needs an
        // escape (the scan for one was a tenth of a record's instructions).
        let escaped = matcher.ids_need_escapes();
        let id = |out: &mut Vec<u8>, s: &str| {
            if escaped {
                escape_into(out, s);
            } else {
                put(out, s.as_bytes());
            }
        };
        let topic_from = out.len();
        id(out, matcher.topic_id(m.topic));
        let topic = topic_from..out.len();
        put(out, &self.middle);
        put_within(out, topic);
        out.extend_from_slice(b"\",\"searches\":[");
        // A search id is escaped once per record and then copied from
        // where it was last written: most records have one search, whose
        // highlights all copy it from the searches list.
        let mut last_search: Option<(SearchIdx, std::ops::Range<usize>)> = None;
        for (i, &s) in m.searches.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let from = out.len();
            out.push(b'"');
            id(out, matcher.search_id(s));
            out.push(b'"');
            last_search = Some((s, from..out.len()));
        }
        out.extend_from_slice(b"],\"highlights\":[");
        let mut numbers = itoa::Buffer::new();
        for (i, h) in m.highlights.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"search\":");
            match &last_search {
                Some((s, written)) if *s == h.search => put_within(out, written.clone()),
                _ => {
                    let from = out.len();
                    out.push(b'"');
                    id(out, matcher.search_id(h.search));
                    out.push(b'"');
                    last_search = Some((h.search, from..out.len()));
                }
            }
            number(out, &mut numbers, FIELD_KEYS[h.field as usize], h.start);
            number(out, &mut numbers, b",\"end\":", h.end);
            out.push(b'}');
        }
        out.push(b']');
        put(out, &self.tail);
    }
}

/// `key` (up to the colon) and then `n`.
fn number(out: &mut Vec<u8>, numbers: &mut itoa::Buffer, key: &[u8], n: impl itoa::Integer) {
    put(out, key);
    put(out, numbers.format(n).as_bytes());
}

/// Appends `src` to `out` like `extend_from_slice`, but a piece of up to
/// 32 bytes (most of a record's: ids, numbers, keys) is copied by two
/// overlapping word moves instead of a call to the C library's `memcpy`:
/// a record is some twenty such pieces, and the calls' size dispatch
/// was a tenth of the matching's mispredicted branches at 100,000
/// searches (3.44 M → 3.12 M with this; BENCHMARKS.md, eighth session).
#[inline(always)]
fn put(out: &mut Vec<u8>, src: &[u8]) {
    out.reserve(src.len());
    let len = out.len();
    // SAFETY: `reserve` made room for `src.len()` bytes after `len`; `src`
    // is a shared borrow, so it cannot be inside `out`'s buffer.
    unsafe {
        copy_small(src.as_ptr(), out.as_mut_ptr().add(len), src.len());
        out.set_len(len + src.len());
    }
}

/// Appends `out[range]` to `out` like `extend_from_within`, copied as
/// [`put`] copies.
#[inline(always)]
fn put_within(out: &mut Vec<u8>, range: std::ops::Range<usize>) {
    assert!(range.start <= range.end && range.end <= out.len());
    let n = range.end - range.start;
    out.reserve(n);
    let len = out.len();
    // SAFETY: the range is inside the initialized bytes (asserted) and
    // the destination is the reserved room after them: no overlap.
    unsafe {
        let base = out.as_mut_ptr();
        copy_small(base.add(range.start), base.add(len), n);
        out.set_len(len + n);
    }
}

/// Copies `n` bytes from `src` to `dst`.
///
/// # Safety
///
/// As for `ptr::copy_nonoverlapping`.
#[inline(always)]
unsafe fn copy_small(src: *const u8, dst: *mut u8, n: usize) {
    use std::ptr::{read_unaligned as get, write_unaligned as set};
    // SAFETY (every arm): each move reads and writes inside the first `n`
    // bytes of `src` and `dst`, as the arm's bounds on `n` show.
    unsafe {
        if n >= 16 {
            if n > 32 {
                std::ptr::copy_nonoverlapping(src, dst, n);
                return;
            }
            let (a, b) = (get(src as *const u128), get(src.add(n - 16) as *const u128));
            set(dst as *mut u128, a);
            set(dst.add(n - 16) as *mut u128, b);
        } else if n >= 8 {
            let (a, b) = (get(src as *const u64), get(src.add(n - 8) as *const u64));
            set(dst as *mut u64, a);
            set(dst.add(n - 8) as *mut u64, b);
        } else if n >= 4 {
            let (a, b) = (get(src as *const u32), get(src.add(n - 4) as *const u32));
            set(dst as *mut u32, a);
            set(dst.add(n - 4) as *mut u32, b);
        } else if n > 0 {
            // 1 to 3 bytes: the first, the middle and the last.
            *dst = *src;
            *dst.add(n / 2) = *src.add(n / 2);
            *dst.add(n - 1) = *src.add(n - 1);
        }
    }
}

/// `"key":"value"` after the previous field, when there is a value.
fn optional(out: &mut Vec<u8>, key: &[u8], value: Option<&str>) {
    if let Some(v) = value {
        out.extend_from_slice(key);
        string(out, v);
    }
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

    #[test]
    fn small_copies_append_every_length_whole() {
        let src: Vec<u8> = (0..100u8).collect();
        for n in 0..=src.len() {
            for prefix in [0usize, 1, 7, 31] {
                let mut out = vec![0xAA; prefix];
                put(&mut out, &src[..n]);
                assert_eq!(out.len(), prefix + n);
                assert!(out[..prefix].iter().all(|&b| b == 0xAA));
                assert_eq!(&out[prefix..], &src[..n], "length {n} after {prefix}");
                let before = out.clone();
                put_within(&mut out, prefix..prefix + n);
                assert_eq!(&out[..before.len()], &before[..]);
                assert_eq!(&out[before.len()..], &src[..n], "within, length {n}");
            }
        }
    }

    #[test]
    fn field_keys_name_the_fields() {
        for (field, name) in crate::document::FIELD_NAMES.iter().enumerate() {
            let key = format!(",\"field\":\"{name}\",\"start\":");
            assert_eq!(FIELD_KEYS[field], key.as_bytes(), "field {field}");
        }
        assert_eq!(FIELD_KEYS.len(), crate::document::FIELD_NAMES.len());
    }

    #[test]
    fn ids_that_need_escapes_come_back_whole() {
        let json = br#"{"topics": [{"id": "a\\b\"c", "searches": [
            {"id": "s\t1", "query": "acme"}]}]}"#;
        let catalog = Catalog::from_json(json, &Limits::default()).unwrap();
        let m = Matcher::new(&catalog).unwrap();
        let doc =
            Document::parse(br#"{"id": "x\"y\u0001", "text": "acme, acme"}"#, 1 << 20).unwrap();
        let mut scratch = m.scratch();
        let matches = m.match_document(&doc, &mut scratch);
        let mut out = Vec::new();
        let ctx = RecordContext {
            matched_at: "2019-07-24T14:16:02.113Z",
            ..RecordContext::default()
        };
        write_record(&mut out, &m, &doc, &matches[0], &ctx);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"match_id": "x\"y\u{1}/a\\b\"c", "doc_id": "x\"y\u{1}",
                "topic_id": "a\\b\"c", "searches": ["s\t1"],
                "highlights": [{"search": "s\t1", "field": "text", "start": 0, "end": 4},
                    {"search": "s\t1", "field": "text", "start": 6, "end": 10}],
                "matched_at": "2019-07-24T14:16:02.113Z"})
        );
    }

    /// A document's parts begun over another's leave nothing of it: each
    /// record is what a fresh writer writes.
    #[test]
    fn reused_parts_write_each_document_alone() {
        let json = br#"{"topics": [{"id": "t", "searches": [{"id": "s", "query": "acme"}]}]}"#;
        let catalog = Catalog::from_json(json, &Limits::default()).unwrap();
        let m = Matcher::new(&catalog).unwrap();
        let docs = [
            &br#"{"id": "a-long-first-id", "source": "reddit", "created_at": "2019-07-24T09:31:07Z", "text": "acme"}"#[..],
            br#"{"id": "b", "text": "so acme"}"#,
        ];
        let mut scratch = m.scratch();
        let mut parts = DocumentRecords::default();
        let with_class = RecordContext {
            matched_at: "2019-07-24T14:16:02.113Z",
            class: Some("high"),
            ..RecordContext::default()
        };
        let without = RecordContext {
            class: None,
            ..with_class
        };
        for (json, ctx) in docs.iter().zip([&with_class, &without]) {
            let doc = Document::parse(json, 1 << 20).unwrap();
            let matches = m.match_document(&doc, &mut scratch);
            parts.begin(&doc, ctx);
            let (mut reused, mut fresh) = (Vec::new(), Vec::new());
            parts.write(&mut reused, &m, &matches[0]);
            write_record(&mut fresh, &m, &doc, &matches[0], ctx);
            assert_eq!(
                String::from_utf8(reused).unwrap(),
                String::from_utf8(fresh).unwrap()
            );
        }
        let doc = Document::parse(docs[1], 1 << 20).unwrap();
        let matches = m.match_document(&doc, &mut scratch);
        let mut out = Vec::new();
        parts.write(&mut out, &m, &matches[0]);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["match_id"], "b/t");
        assert!(v.get("source").is_none() && v.get("class").is_none(), "{v}");
    }

    #[test]
    fn ids_need_escapes_when_any_topic_or_search_id_has_such_a_byte() {
        let needs = |topic: &str, search: &str| {
            let json = serde_json::json!({"topics": [
                {"id": "plain", "searches": [{"id": "p", "query": "acme"}]},
                {"id": topic, "searches": [{"id": search, "query": "acme"}]}]});
            let catalog =
                Catalog::from_json(json.to_string().as_bytes(), &Limits::default()).unwrap();
            Matcher::new(&catalog).unwrap().ids_need_escapes()
        };
        assert!(!needs("t", "s-1 ünïcode 😀"));
        assert!(needs("t\"q", "s"), "a quote in a topic id");
        assert!(needs("t", "s\\1"), "a backslash in a search id");
        assert!(needs("t", "s\t1"), "a control character in a search id");
    }
}
