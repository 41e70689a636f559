//! The term table: a document token's folded body → its term feature.
//!
//! Every token of every document is looked up here once, and about half
//! of them are terms of some search, so on the kind workloads this probe
//! is a large share of a post's own indexing. A general hash map costs a
//! hash of the whole body, a control-byte group and then a key compare
//! that decodes a string representation, and gives no way to ask for a
//! slot's cache line before it is needed. This table is built once per
//! compile and never changes, so it can be simpler:
//!
//! - **Slots** of 16 bytes, a power of two of them, at most half full
//!   (linear probing ends at the first empty slot within a few steps):
//!   `head` (up to 8 of the term's bytes, see [`head`]), `len`, `feature`.
//!   A term of at most 8 bytes is equal to a token exactly when head and
//!   length are; a longer one is compared in full against the term bytes
//!   kept by feature (`text`), only when head and length already agree.
//! - **Hash**: the head and the body's further 8-byte words, multiplied
//!   and mixed; the slot is the product's top bits. The seed is fixed, so
//!   the table is the same from run to run; the build checks the longest
//!   probe run and re-seeds (a few times at most) if searches happen to
//!   cluster, so a lookup costs a bounded number of slots whatever the
//!   searches are. Documents cannot lengthen a probe: the table holds
//!   only the searches' terms.
//! - **Two passes per field** ([`TermTable::locate`], then
//!   [`TermTable::find_at`]): the slots of the tokens a few positions
//!   ahead are brought into cache while the current one is compared, so
//!   the cache misses of a field's tokens overlap instead of following
//!   one another.

use super::prefetch;

/// A slot; `feature == EMPTY` marks a free one.
#[derive(Clone, Copy)]
#[repr(C)]
struct Slot {
    head: u64,
    len: u32,
    feature: u32,
}

const EMPTY: u32 = u32::MAX;
const FREE: Slot = Slot {
    head: 0,
    len: 0,
    feature: EMPTY,
};
const K: u64 = 0x9E37_79B9_7F4A_7C15;
/// Probe runs longer than this make the build try another seed (here
/// and in the wildcard prefix table).
pub(super) const LONGEST_RUN: usize = 32;

/// The seeds a table build tries in turn, until no probe run is longer
/// than [`LONGEST_RUN`] (the last is kept whatever its runs).
pub(super) fn seeds() -> impl Iterator<Item = u64> {
    (0..8u64).map(|attempt| attempt.wrapping_mul(0xA076_1D64_78BD_642F))
}

/// Where a token's lookup starts: its head and its first slot.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Probe {
    head: u64,
    slot: u32,
}

/// Folded term → feature id (features `0..len()`, dense).
pub(crate) struct TermTable {
    slots: Box<[Slot]>,
    /// `64 - log2(slots.len())`: a hash's top bits are its slot.
    shift: u32,
    seed: u64,
    /// Term `f` is `text[off[f]..off[f + 1]]`.
    text: String,
    off: Vec<usize>,
}

/// Up to 8 bytes of `b` in one word, injective for bodies of one length:
/// bodies of 4–8 bytes as their first four and last four bytes, shorter
/// ones as their first, middle and last byte, longer ones as their first
/// eight.
#[inline]
fn head(b: &[u8]) -> u64 {
    let n = b.len();
    let u32_at = |i: usize| u64::from(u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]));
    if n >= 8 {
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    } else if n >= 4 {
        u32_at(0) | (u32_at(n - 4) << 32)
    } else if n > 0 {
        u64::from(b[0]) | (u64::from(b[n / 2]) << 8) | (u64::from(b[n - 1]) << 16)
    } else {
        0
    }
}

#[inline]
fn hash(b: &[u8], head: u64, seed: u64) -> u64 {
    let mut h = head ^ seed;
    if b.len() > 8 {
        let mut i = 8;
        loop {
            // The last word overlaps the one before it: every byte counts.
            let at = i.min(b.len() - 8);
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            let w = u64::from_le_bytes(w);
            h = h.wrapping_mul(K).rotate_left(29) ^ w;
            i += 8;
            if at + 8 == b.len() {
                break;
            }
        }
    }
    (h ^ (b.len() as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)).wrapping_mul(K)
}

impl TermTable {
    /// The table of `terms` (`terms[f]` is feature `f`'s folded body).
    #[must_use]
    pub(crate) fn new(terms: &[&str]) -> TermTable {
        let mut text = String::with_capacity(terms.iter().map(|t| t.len()).sum());
        let mut off = Vec::with_capacity(terms.len() + 1);
        off.push(0);
        for t in terms {
            text.push_str(t);
            off.push(text.len());
        }
        let n_slots = (terms.len() * 2).next_power_of_two().max(16);
        let mut table = TermTable {
            slots: vec![FREE; n_slots].into_boxed_slice(),
            shift: 64 - n_slots.trailing_zeros(),
            seed: 0,
            text,
            off,
        };
        for seed in seeds() {
            table.seed = seed;
            table.slots.fill(FREE);
            let mut longest = 0;
            for (f, t) in terms.iter().enumerate() {
                longest = longest.max(table.insert(t.as_bytes(), f as u32));
            }
            if longest <= LONGEST_RUN {
                break;
            }
        }
        table
    }

    /// Places feature `f`; how many slots it stepped over.
    fn insert(&mut self, b: &[u8], f: u32) -> usize {
        let p = self.locate(b);
        let mask = self.slots.len() - 1;
        let mut i = p.slot as usize;
        let mut run = 0;
        while self.slots[i].feature != EMPTY {
            i = (i + 1) & mask;
            run += 1;
        }
        self.slots[i] = Slot {
            head: p.head,
            len: b.len() as u32,
            feature: f,
        };
        run
    }

    /// Its arrays, as byte ranges (`engine::memory`).
    pub(crate) fn hot_arrays(&self, out: &mut Vec<super::memory::Bytes>) {
        use super::memory::bytes_of;
        out.extend([
            bytes_of(&self.slots),
            bytes_of(self.text.as_bytes()),
            bytes_of(&self.off),
        ]);
    }

    /// Where `body`'s lookup starts; brings that slot into cache.
    #[inline]
    pub(crate) fn locate(&self, body: &[u8]) -> Probe {
        let head = head(body);
        let slot = (hash(body, head, self.seed) >> self.shift) as u32;
        prefetch(&self.slots[slot as usize]);
        Probe { head, slot }
    }

    /// `body`'s feature, from its [`TermTable::locate`].
    #[inline]
    pub(crate) fn find_at(&self, body: &[u8], p: Probe) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut i = p.slot as usize;
        loop {
            let s = self.slots[i];
            if s.feature == EMPTY {
                return None;
            }
            if s.head == p.head
                && s.len as usize == body.len()
                && (body.len() <= 8 || self.term(s.feature).as_bytes() == body)
            {
                return Some(s.feature);
            }
            i = (i + 1) & mask;
        }
    }

    /// `body`'s feature.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn get(&self, body: &str) -> Option<u32> {
        self.find_at(body.as_bytes(), self.locate(body.as_bytes()))
    }

    /// Feature `f`'s term.
    #[must_use]
    pub(crate) fn term(&self, f: u32) -> &str {
        &self.text[self.off[f as usize]..self.off[f as usize + 1]]
    }

    /// Every (term, feature), in feature order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        (0..self.len() as u32).map(|f| (self.term(f), f))
    }

    /// How many terms.
    #[must_use]
    pub(crate) fn len(&self) -> usize {
        self.off.len() - 1
    }

    /// Bytes on the heap.
    #[must_use]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>()
            + self.text.len()
            + self.off.len() * std::mem::size_of::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn heads_tell_bodies_of_one_length_apart() {
        let bodies = [
            "", "a", "ab", "ba", "abc", "acb", "abcd", "abcde", "abdce", "abcdefgh",
        ];
        for a in bodies {
            for b in bodies {
                if a.len() == b.len() && a != b {
                    assert_ne!(head(a.as_bytes()), head(b.as_bytes()), "{a} {b}");
                }
            }
        }
    }

    #[test]
    fn long_terms_are_compared_whole() {
        let t = TermTable::new(&["abcdefghij", "abcdefghik", "x"]);
        assert_eq!(t.get("abcdefghij"), Some(0));
        assert_eq!(t.get("abcdefghik"), Some(1));
        assert_eq!(t.get("abcdefghil"), None);
        assert_eq!(t.get("abcdefgh"), None);
        assert_eq!(t.get("x"), Some(2));
        assert_eq!(t.get(""), None);
        assert_eq!(t.term(1), "abcdefghik");
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn an_empty_table_finds_nothing() {
        let t = TermTable::new(&[]);
        assert_eq!(t.get("acme"), None);
        assert_eq!(t.iter().count(), 0);
    }

    proptest! {
        /// The table agrees with a hash map on terms and on other bodies
        /// (short, long, sharing heads and lengths with the terms).
        #[test]
        fn agrees_with_a_hash_map(
            terms in proptest::collection::hash_set("[a-d\u{e9}]{0,12}", 0..200),
            probes in proptest::collection::vec("[a-d\u{e9}]{0,12}", 0..200),
        ) {
            let terms: Vec<String> = terms.into_iter().collect();
            let refs: Vec<&str> = terms.iter().map(String::as_str).collect();
            let t = TermTable::new(&refs);
            let map: std::collections::HashMap<&str, u32> =
                refs.iter().enumerate().map(|(i, s)| (*s, i as u32)).collect();
            for s in refs.iter().copied().chain(probes.iter().map(String::as_str)) {
                prop_assert_eq!(t.get(s), map.get(s).copied(), "{}", s);
            }
            prop_assert_eq!(t.iter().count(), terms.len());
        }
    }
}
