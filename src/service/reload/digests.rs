//! The hash that names a searches version, kept as a sum over its topics.
//!
//! Each topic contributes its *term*: the SHA-256 of its id's length (4
//! bytes, little-endian), its id and the SHA-256 of its canonical JSON
//! ([`TopicSpec`] serialized as in the canonical document), read as a
//! 256-bit number. A version's [`TopicDigests`] is the sum of its topics'
//! terms modulo 2^256 (a multiset hash), and its hash the hex SHA-256 of
//! that sum. It depends only on the topics, like the SHA-256 of the whole
//! canonical document it replaced, but a one-topic change updates it by
//! subtracting the old topic's term and adding the new one's: two topics
//! serialized and hashed, whatever the number of topics (hashing a sorted
//! list of per-topic digests instead still took 20 ms at 500,000 topics;
//! the whole document, 50–100 ms at 50,000). Finding two different sets
//! of topics with the same sum is as hard as a 256-bit generalized
//! birthday problem: out of reach for ids and queries written by people.
//!
//! The counts of enabled topics and searches a version reports are kept
//! beside the sum in the same way, topic by topic: counting them over the
//! whole file on every one-topic change took 60–80 ms at 500,000 topics
//! (a pointer chase per topic and per search), most of such a change's
//! time.

use sha2::{Digest, Sha256};

use crate::searches::TopicSpec;

/// The sum of a version's topic terms, and its counts of enabled topics
/// and searches (module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopicDigests {
    sum: [u64; 4],
    enabled: EnabledCounts,
}

/// Enabled topics, and enabled searches of enabled topics: what a version
/// compiles (its catalog's topics and searches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnabledCounts {
    pub topics: usize,
    pub searches: usize,
}

impl EnabledCounts {
    /// Topic `t`'s share.
    fn of(t: &TopicSpec) -> EnabledCounts {
        if !t.enabled {
            return EnabledCounts::default();
        }
        EnabledCounts {
            topics: 1,
            searches: t.searches.iter().filter(|s| s.enabled).count(),
        }
    }

    fn add(&mut self, t: &TopicSpec) {
        let c = EnabledCounts::of(t);
        self.topics += c.topics;
        self.searches += c.searches;
    }

    /// Removes `t`'s share (of a topic that was added; saturating, so
    /// that a caller's mistake skews a count rather than panics).
    fn remove(&mut self, t: &TopicSpec) {
        let c = EnabledCounts::of(t);
        self.topics = self.topics.saturating_sub(c.topics);
        self.searches = self.searches.saturating_sub(c.searches);
    }
}

fn topic_json(t: &TopicSpec) -> Vec<u8> {
    serde_json::to_vec(t).expect("a topic serializes")
}

/// A topic's term from its id and canonical JSON.
fn term(id: &str, json: &[u8]) -> [u64; 4] {
    let mut h = Sha256::new();
    h.update((id.len() as u32).to_le_bytes());
    h.update(id.as_bytes());
    h.update(Sha256::digest(json));
    let d = h.finalize();
    let mut limbs = [0u64; 4];
    for (limb, bytes) in limbs.iter_mut().zip(d.chunks_exact(8)) {
        *limb = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
    }
    limbs
}

impl TopicDigests {
    /// The digests of `topics` (any order), without the document.
    #[cfg(test)]
    pub fn of<'a>(topics: impl IntoIterator<Item = &'a TopicSpec>) -> TopicDigests {
        let mut d = TopicDigests::default();
        for t in topics {
            d.add(t);
        }
        d
    }

    fn add_term(&mut self, term: [u64; 4]) {
        let mut carry = false;
        for (s, t) in self.sum.iter_mut().zip(term) {
            let (v, c1) = s.overflowing_add(t);
            let (v, c2) = v.overflowing_add(u64::from(carry));
            *s = v;
            carry = c1 || c2;
        }
    }

    fn sub_term(&mut self, term: [u64; 4]) {
        let mut borrow = false;
        for (s, t) in self.sum.iter_mut().zip(term) {
            let (v, b1) = s.overflowing_sub(t);
            let (v, b2) = v.overflowing_sub(u64::from(borrow));
            *s = v;
            borrow = b1 || b2;
        }
    }

    /// Adds topic `t`.
    pub fn add(&mut self, t: &TopicSpec) {
        self.add_term(term(&t.id, &topic_json(t)));
        self.enabled.add(t);
    }

    /// Removes topic `t` (one that was added).
    pub fn remove(&mut self, t: &TopicSpec) {
        self.sub_term(term(&t.id, &topic_json(t)));
        self.enabled.remove(t);
    }

    /// The enabled topics and searches of the topics added.
    pub fn enabled(&self) -> EnabledCounts {
        self.enabled
    }

    /// These digests with topic `old` replaced by `new` (either absent).
    pub fn with_change(&self, old: Option<&TopicSpec>, new: Option<&TopicSpec>) -> TopicDigests {
        let mut d = *self;
        if let Some(t) = old {
            d.remove(t);
        }
        if let Some(t) = new {
            d.add(t);
        }
        d
    }

    /// The version hash (module doc), hex.
    pub fn hash(&self) -> String {
        let mut bytes = [0u8; 32];
        for (chunk, limb) in bytes.chunks_exact_mut(8).zip(self.sum) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        super::sha256_hex(&bytes)
    }
}

/// The digests of `topics` and their canonical document (the bytes
/// `SearchesFile::canonical_json` writes), in one pass.
pub fn canonical<'a>(topics: impl IntoIterator<Item = &'a TopicSpec>) -> (TopicDigests, Vec<u8>) {
    let mut enabled = EnabledCounts::default();
    let mut pieces: Vec<(&str, Vec<u8>)> = topics
        .into_iter()
        .map(|t| {
            enabled.add(t);
            (t.id.as_str(), topic_json(t))
        })
        .collect();
    pieces.sort_by(|a, b| a.0.cmp(b.0));
    let total: usize = pieces.iter().map(|p| p.1.len() + 1).sum();
    let mut doc = Vec::with_capacity(total + 16);
    doc.extend_from_slice(br#"{"topics":["#);
    let mut digests = TopicDigests {
        enabled,
        ..TopicDigests::default()
    };
    for (i, (id, json)) in pieces.iter().enumerate() {
        if i > 0 {
            doc.push(b',');
        }
        doc.extend_from_slice(json);
        digests.add_term(term(id, json));
    }
    doc.extend_from_slice(b"]}");
    (digests, doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::searches::SearchesFile;

    fn topics(json: &str) -> Vec<TopicSpec> {
        serde_json::from_str::<SearchesFile>(json)
            .unwrap()
            .topics
            .into_iter()
            .map(|t| (*t).clone())
            .collect()
    }

    const FILE: &str = r#"{"topics":[
        {"id":"b","searches":[{"id":"b1","query":"beta"}]},
        {"id":"a","name":"A","searches":[{"id":"a1","query":"alpha","languages":["en"]}]}
    ]}"#;

    #[test]
    fn canonical_document_is_the_searches_files_canonical_json() {
        let t = topics(FILE);
        let (digests, doc) = canonical(&t);
        assert_eq!(doc, SearchesFile::canonical_json(&t));
        assert_eq!(digests, TopicDigests::of(&t));
    }

    #[test]
    fn hash_depends_on_the_topics_not_their_order() {
        let t = topics(FILE);
        let mut reversed = t.clone();
        reversed.reverse();
        assert_eq!(
            TopicDigests::of(&t).hash(),
            TopicDigests::of(&reversed).hash()
        );
        let mut edited = t.clone();
        edited[0].searches[0].query = "gamma".into();
        assert_ne!(
            TopicDigests::of(&t).hash(),
            TopicDigests::of(&edited).hash()
        );
        assert_ne!(
            TopicDigests::of(&t).hash(),
            TopicDigests::of(&t[..1]).hash()
        );
    }

    #[test]
    fn a_change_gives_the_hash_of_the_changed_topics() {
        let t = topics(FILE);
        let base = TopicDigests::of(&t);
        // Replace b.
        let mut edited = t.clone();
        edited[0].searches[0].query = "gamma".into();
        assert_eq!(
            base.with_change(Some(&t[0]), Some(&edited[0])).hash(),
            TopicDigests::of(&edited).hash()
        );
        // Add c, then delete it again.
        let mut c = t[0].clone();
        c.id = "c".into();
        let mut added = t.clone();
        added.push(c.clone());
        let with_c = base.with_change(None, Some(&c));
        assert_eq!(with_c.hash(), TopicDigests::of(&added).hash());
        assert_eq!(with_c.with_change(Some(&c), None).hash(), base.hash());
        // The same topic under another id is another term.
        let mut renamed = t.clone();
        renamed[0].id = "z".into();
        assert_ne!(TopicDigests::of(&renamed).hash(), base.hash());
        // The enabled counts follow the changes: b and c have one search
        // each; a disabled topic, or a disabled search, counts for nothing.
        assert_eq!(
            base.enabled(),
            EnabledCounts {
                topics: 2,
                searches: 2
            }
        );
        assert_eq!(
            with_c.enabled(),
            EnabledCounts {
                topics: 3,
                searches: 3
            }
        );
        let mut off = c.clone();
        off.enabled = false;
        assert_eq!(
            with_c.with_change(Some(&c), Some(&off)).enabled(),
            EnabledCounts {
                topics: 2,
                searches: 2
            }
        );
        let mut one_off = edited[0].clone();
        one_off.searches[0].enabled = false;
        assert_eq!(
            base.with_change(Some(&t[0]), Some(&one_off)).enabled(),
            EnabledCounts {
                topics: 2,
                searches: 1
            }
        );
        assert_eq!(canonical(&added).0.enabled(), with_c.enabled());
        // The empty set has a fixed hash.
        assert_eq!(TopicDigests::default().hash(), TopicDigests::of(&[]).hash());
    }
}
