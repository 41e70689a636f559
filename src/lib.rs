//! topic-matcher matches social-media documents against every customer
//! topic's boolean keyword searches at once.
//!
//! All searches of all topics compile into one [`engine::Matcher`]; matching
//! a document costs work proportional to its tokens and to the searches its
//! words can wake up, not to the number of searches.
//!
//! ```
//! use topic_matcher::document::Document;
//! use topic_matcher::engine::Matcher;
//! use topic_matcher::query::Limits;
//! use topic_matcher::searches::Catalog;
//!
//! let searches = br#"{"topics": [{"id": "acme", "searches": [
//!     {"id": "acme-brand", "query": "(\"acme corp\" OR #acme) NOT (job OR hiring)"},
//!     {"id": "acme-outage", "query": "acme NEAR/3 (down OR outage OR \"not working\")"}]}]}"#;
//! let catalog = Catalog::from_json(searches, &Limits::default()).unwrap();
//! let matcher = Matcher::new(&catalog).unwrap();
//! let mut scratch = matcher.scratch();
//!
//! let doc = Document::with_text("tw:1", "#Acme app is not working again");
//! let matches = matcher.match_document(&doc, &mut scratch);
//! assert_eq!(matcher.topic_id(matches[0].topic), "acme");
//! let ids: Vec<&str> = matches[0].searches.iter().map(|&s| matcher.search_id(s)).collect();
//! assert_eq!(ids, ["acme-brand", "acme-outage"]);
//! ```
//!
//! # Layout
//!
//! The matching core is synchronous and knows nothing of Kafka, RocksDB or
//! async runtimes:
//!
//! * [`text`] — folding (NFKC, case folding, mark removal), UAX #29 tokens
//!   with positions, offsets back into the original text.
//! * [`query`] — the search language: lexer, parser, syntax tree, errors
//!   with 1-based columns.
//! * [`searches`] — the searches file, validated into a [`searches::Catalog`]
//!   with every error reported at once.
//! * [`engine`] — one matcher for all searches, and the
//!   [`engine::reference`] evaluator it is tested against.
//! * [`document`] — the input document and what makes a message bad.
//!
//! Around it:
//!
//! * [`record`] — the match record written per (document, topic).
//! * [`direct_output`] — `match --output`'s records file, written around
//!   the page cache by a writer thread (direct I/O).
//! * [`drop_behind`] — a long output file whose pages leave the page cache
//!   soon after they are written (`match` to standard output; the direct
//!   writer's fallback).
//! * [`huge_pages`] — the matcher's randomly read arrays moved to 2 MiB
//!   pages once built (`match`, `bench`, the service).
//! * [`config`] — the TOML configuration and command-line overrides,
//!   validated in two stages.
//! * [`kafka_client`] — the brokers, TLS/SASL properties and secrets every
//!   Kafka client shares, with per-role overrides.
//! * [`classes`] — priority classes and the catch-up policy.
//! * [`state_store`] — the RocksDB state: offsets, drain jobs, searches
//!   versions.
//! * [`service`] — the streaming service: Kafka in, records out, catch-up
//!   and replay, reloads, the admin API and metrics.
//! * [`demo`] — the service on an embedded Kafka cluster.
//! * [`commands`] — the other commands (`match`, `check`, `bench`,
//!   `replay`, `status`, `searches`).
//! * [`terminal`] — progress bars with log lines scrolling above them.
//! * [`workload`] — the deterministic benchmark workload.

pub mod classes;
pub mod commands;
pub mod config;
pub mod demo;
pub mod direct_output;
pub mod document;
pub mod drop_behind;
pub mod engine;
pub mod huge_pages;
mod json_string;
pub mod kafka_client;
pub mod produce;
pub mod query;
pub mod record;
pub mod searches;
pub mod service;
#[cfg(test)]
mod small_fs;
pub mod state_store;
pub mod terminal;
pub mod text;
pub mod workload;
