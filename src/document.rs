//! The input document of docs/formats.md §2.1 and what makes a message bad.

use std::borrow::Cow;

use serde::Deserialize;

use crate::query::MetaField;

/// One post, article or comment. Strings borrow from the input buffer when
/// they hold no JSON escapes.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Document<'a> {
    /// Required, unique id.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// `twitter`, `facebook`, `news`, …
    #[serde(borrow, default)]
    pub source: Option<Cow<'a, str>>,
    /// `mention`, `dm`, `comment`, …
    #[serde(borrow, default, rename = "type")]
    pub kind: Option<Cow<'a, str>>,
    /// Language code.
    #[serde(borrow, default)]
    pub lang: Option<Cow<'a, str>>,
    /// Country code.
    #[serde(borrow, default)]
    pub country: Option<Cow<'a, str>>,
    /// Author handle.
    #[serde(borrow, default)]
    pub author: Option<Cow<'a, str>>,
    /// Title, if any.
    #[serde(borrow, default)]
    pub title: Option<Cow<'a, str>>,
    /// Body text, if any.
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
    /// Permalink.
    #[serde(borrow, default)]
    pub url: Option<Cow<'a, str>>,
    /// Creation time as given (RFC 3339).
    #[serde(borrow, default)]
    pub created_at: Option<Cow<'a, str>>,
}

/// Why a message is a bad message (docs/formats.md §2.1).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadDocument {
    /// Bigger than the configured limit.
    #[error("message is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not UTF-8.
    #[error("not valid UTF-8 (at byte {at})")]
    NotUtf8 {
        /// Offset of the first invalid byte.
        at: usize,
    },
    /// Not a JSON object of the document form.
    #[error("not a valid document: {0}")]
    NotJson(String),
    /// No `id`.
    #[error("the document has no `id`")]
    MissingId,
    /// Neither `text` nor `title`.
    #[error("the document has neither `text` nor `title`")]
    NoText,
}

/// The two searchable fields, in position order.
pub const FIELD_NAMES: [&str; 2] = ["title", "text"];

impl<'a> Document<'a> {
    /// Parses and validates one message value.
    ///
    /// # Errors
    ///
    /// The reason the message is bad.
    pub fn parse(bytes: &'a [u8], max_bytes: usize) -> Result<Document<'a>, BadDocument> {
        if bytes.len() > max_bytes {
            return Err(BadDocument::TooLarge {
                size: bytes.len(),
                limit: max_bytes,
            });
        }
        let s = std::str::from_utf8(bytes).map_err(|e| BadDocument::NotUtf8 {
            at: e.valid_up_to(),
        })?;
        let doc: Document<'a> = serde_json::from_str(s).map_err(|e| {
            if e.to_string().starts_with("missing field `id`") {
                BadDocument::MissingId
            } else {
                BadDocument::NotJson(e.to_string())
            }
        })?;
        if doc.id.is_empty() {
            return Err(BadDocument::MissingId);
        }
        if doc.title.is_none() && doc.text.is_none() {
            return Err(BadDocument::NoText);
        }
        Ok(doc)
    }

    /// A document with only an id and a text, for tests and examples.
    pub fn with_text(id: &'a str, text: &'a str) -> Document<'a> {
        Document {
            id: Cow::Borrowed(id),
            text: Some(Cow::Borrowed(text)),
            ..Document::default()
        }
    }

    /// The searchable field number `i` (0 = title, 1 = text).
    pub fn field(&self, i: usize) -> Option<&str> {
        match i {
            0 => self.title.as_deref(),
            1 => self.text.as_deref(),
            _ => None,
        }
    }

    /// The metadata value compared by `lang:`, `source:`, … and the
    /// per-search filters.
    pub fn meta(&self, field: MetaField) -> Option<&str> {
        match field {
            MetaField::Author => self.author.as_deref(),
            MetaField::Site | MetaField::Url => self.url.as_deref(),
            MetaField::Lang => self.lang.as_deref(),
            MetaField::Country => self.country.as_deref(),
            MetaField::Source => self.source.as_deref(),
            MetaField::Type => self.kind.as_deref(),
        }
    }

    /// Whether a metadata leaf `field:value` (value already normalized by
    /// the parser: lower case, no leading `@` for authors) holds (docs/query-language.md §3.4).
    pub fn meta_matches(&self, field: MetaField, value: &str) -> bool {
        let Some(have) = self.meta(field) else {
            return false;
        };
        match field {
            MetaField::Author => eq_ignore_case(have.trim().trim_start_matches('@'), value),
            MetaField::Site => url_host(have).is_some_and(|host| {
                let host = host.trim_end_matches('.');
                eq_ignore_case(host, value)
                    || (host.len() > value.len()
                        && host.as_bytes()[host.len() - value.len() - 1] == b'.'
                        && eq_ignore_case(&host[host.len() - value.len()..], value))
            }),
            MetaField::Url => contains_ignore_case(have, value),
            _ => eq_ignore_case(have.trim(), value),
        }
    }

    /// Whether the document's value of `field` is one of `allowed` (already
    /// lower-cased).
    pub fn meta_in(&self, field: MetaField, allowed: &[String]) -> bool {
        self.meta(field)
            .is_some_and(|have| allowed.iter().any(|v| eq_ignore_case(have.trim(), v)))
    }
}

fn eq_ignore_case(a: &str, lower: &str) -> bool {
    if a.is_ascii() {
        a.eq_ignore_ascii_case(lower)
    } else {
        a.to_lowercase() == lower
    }
}

fn contains_ignore_case(hay: &str, lower: &str) -> bool {
    if hay.is_ascii() && lower.is_ascii() {
        hay.as_bytes()
            .windows(lower.len().max(1))
            .any(|w| w.eq_ignore_ascii_case(lower.as_bytes()))
    } else {
        hay.to_lowercase().contains(lower)
    }
}

/// The host of a URL (`scheme://[user@]host[:port]/…`); `None` when there
/// is none. Bare `example.com/path` counts as a host too.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.trim();
    let rest = match rest.find("://") {
        Some(i) => &rest[i + 3..],
        None => rest.strip_prefix("//").unwrap_or(rest),
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = if host.starts_with('[') {
        host.split(']').next().map(|h| &h[1..])?
    } else {
        host.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example() {
        let json = br#"{"id": "tw:1153883201", "source": "twitter", "type": "mention", "lang": "en",
 "country": "BE", "author": "@jdoe", "title": null,
 "text": "Can't upload images in #acme today\u2026", "url": "https://twitter.com/jdoe/status/1153883201",
 "created_at": "2019-07-24T09:31:07Z", "extra": {"ignored": [1, 2]}}"#;
        let d = Document::parse(json, 1 << 20).unwrap();
        assert_eq!(d.id, "tw:1153883201");
        assert_eq!(d.kind.as_deref(), Some("mention"));
        assert_eq!(
            d.text.as_deref(),
            Some("Can't upload images in #acme today…")
        );
        assert!(d.title.is_none());
    }

    #[test]
    fn bad_messages_have_reasons() {
        assert_eq!(
            Document::parse(b"{\"id\":\"x\",\"text\":\"a\"}", 5),
            Err(BadDocument::TooLarge { size: 21, limit: 5 })
        );
        assert_eq!(
            Document::parse(b"{\"id\":\"\xff\"}", 100),
            Err(BadDocument::NotUtf8 { at: 7 })
        );
        assert!(matches!(
            Document::parse(b"{nope", 100),
            Err(BadDocument::NotJson(_))
        ));
        assert!(matches!(
            Document::parse(b"[1]", 100),
            Err(BadDocument::NotJson(_))
        ));
        assert!(matches!(
            Document::parse(b"{\"id\": 5, \"text\": \"a\"}", 100),
            Err(BadDocument::NotJson(_))
        ));
        assert_eq!(
            Document::parse(b"{\"text\":\"a\"}", 100),
            Err(BadDocument::MissingId)
        );
        assert_eq!(
            Document::parse(b"{\"id\":\"a\"}", 100),
            Err(BadDocument::NoText)
        );
        assert_eq!(
            Document::parse(b"{\"id\":\"a\",\"text\":null,\"title\":null}", 100),
            Err(BadDocument::NoText)
        );
    }

    #[test]
    fn metadata_leaves() {
        let d = Document {
            author: Some("@JDoe".into()),
            url: Some("https://News.Example.com:443/a/B?x=1".into()),
            lang: Some("EN".into()),
            ..Document::with_text("1", "x")
        };
        assert!(d.meta_matches(MetaField::Author, "jdoe"));
        assert!(d.meta_matches(MetaField::Site, "example.com"));
        assert!(d.meta_matches(MetaField::Site, "news.example.com"));
        assert!(!d.meta_matches(MetaField::Site, "ample.com"));
        assert!(!d.meta_matches(MetaField::Site, "other.com"));
        assert!(d.meta_matches(MetaField::Url, "/a/b"));
        assert!(d.meta_matches(MetaField::Lang, "en"));
        assert!(!d.meta_matches(MetaField::Country, "be"));
    }
}
