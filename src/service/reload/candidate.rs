//! A candidate version: the searches a change proposes, with their hash,
//! before validation. Made from a whole document (the file, `PUT
//! /searches`, a stored version, the searches topic's state) or from the
//! active version with one topic set or deleted (module doc of `reload`:
//! a one-topic change does no whole-document work).

use super::*;

/// A candidate version: its topics, their digests and hash (module
/// `digests`), and its canonical document when it was built.
pub(super) struct Candidate {
    pub(super) source: String,
    pub(super) file: SearchesFile,
    pub(super) digests: TopicDigests,
    /// The version hash of `digests`.
    pub(super) hash: String,
    /// The canonical document: built with the digests for a whole
    /// document; `None` for a one-topic change (stored as a patch, or
    /// built when stored whole).
    pub(super) canonical: Option<Vec<u8>>,
    /// A number fixed by the source (the Kafka log), else the next local.
    pub(super) number: Option<u64>,
    /// Problems found before validation (undecodable Kafka records).
    pub(super) problems: Vec<String>,
    /// The ids of the topics this candidate sets or deletes against the
    /// version whose hash it names (a one-topic change: the active one; a
    /// searches-topic candidate: the one before it); used only while that
    /// version is the active one. `None`: unknown, compare every topic.
    pub(super) changed: Option<(String, Vec<String>)>,
    /// This candidate's topics among the ids of `changed`, when the source
    /// knows them (a one-topic change, the searches topic's reader): the
    /// delta path then finds them without a pass over every topic.
    pub(super) changed_topics: Option<Vec<Arc<TopicSpec>>>,
}

impl Candidate {
    /// A whole document's candidate: digests and canonical document built.
    pub(super) fn whole(source: String, file: SearchesFile) -> Candidate {
        let (digests, canonical) = digests::canonical(file.topics.iter().map(|t| &**t));
        Candidate {
            source,
            file,
            hash: digests.hash(),
            digests,
            canonical: Some(canonical),
            number: None,
            problems: Vec::new(),
            changed: None,
            changed_topics: None,
        }
    }

    pub(super) fn parse(source: &str, bytes: &[u8]) -> Result<Candidate, ReloadError> {
        let file: SearchesFile = serde_json::from_slice(bytes).map_err(|e| {
            ReloadError::invalid(
                source,
                &CatalogError {
                    problems: vec![crate::searches::Problem::File(format!(
                        "not a valid searches file: {e}"
                    ))],
                },
            )
        })?;
        Ok(Candidate::whole(source.to_string(), file))
    }

    /// Its canonical document (built now if it was not).
    pub(super) fn canonical(&self) -> std::borrow::Cow<'_, [u8]> {
        match &self.canonical {
            Some(doc) => std::borrow::Cow::Borrowed(doc),
            None => {
                std::borrow::Cow::Owned(digests::canonical(self.file.topics.iter().map(|t| &**t)).1)
            }
        }
    }
}

impl SearchVersions {
    /// The active version's topics with one topic set or deleted; the
    /// other topics are shared with it, and its digests updated for that
    /// topic only (no canonical document).
    pub(super) fn topic_candidate(&self, change: TopicChange) -> Result<Candidate, ReloadError> {
        let active = self.current();
        // The other topics are shared in the same pass that finds the one
        // changed: at 500,000 topics each is a cache miss, and a copy then
        // a search read each twice.
        let (id, new) = match change {
            TopicChange::Set(topic) => (topic.id.clone(), Some(Arc::new(topic))),
            TopicChange::Delete(id) => (id, None),
        };
        let mut old: Option<Arc<TopicSpec>> = None;
        let mut topics = Vec::with_capacity(active.file.topics.len() + 1);
        for t in &active.file.topics {
            if old.is_none() && t.id == id {
                old = Some(t.clone());
                topics.extend(new.clone());
            } else {
                topics.push(t.clone());
            }
        }
        let digests = match (&old, &new) {
            (None, None) => return Err(ReloadError::UnknownTopic(id)),
            (None, Some(topic)) => {
                topics.push(topic.clone());
                active.digests.with_change(None, Some(topic))
            }
            (Some(old), new) => active.digests.with_change(Some(old), new.as_deref()),
        };
        let changed_topics: Vec<Arc<TopicSpec>> = new.into_iter().collect();
        Ok(Candidate {
            source: "api".into(),
            file: SearchesFile { topics },
            hash: digests.hash(),
            digests,
            canonical: None,
            number: None,
            problems: Vec::new(),
            changed: Some((active.meta.hash.clone(), vec![id])),
            changed_topics: Some(changed_topics),
        })
    }
}
