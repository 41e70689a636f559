//! The literal prefixes of wildcards that start with one (`lov*`,
//! `colo?r`), found at the start of each document token.
//!
//! # Design
//!
//! A token can only start with prefixes of the lengths the catalog has
//! (three to five bytes on the realistic workload, rarely more than a
//! dozen distinct lengths on any): for each such length `l` the token's
//! first `l` bytes are looked up in one hash table of all the prefixes.
//!
//! - Up to eight bytes, a prefix *is* its key: the bytes as a little-endian
//!   word. A token's first eight bytes are read into a word once, and each
//!   length's key is that word masked, so a probe is a mask, a multiply
//!   and a compare of two words, with no bytes read from the table's side.
//!   Longer prefixes are hashed a word at a time, each length's hash
//!   carried on from the last one's ([`Keys`]: a token costs its length in
//!   words, however many lengths the catalog has), and compared in full on
//!   a hit.
//! - A **filter** comes first: a bitset of 2^17 bits (16 KiB) with one bit
//!   set per prefix, at its hash. A probe whose bit is clear ends there;
//!   with 10,000 prefixes about one probe in twelve for bytes that are no
//!   prefix gets through to the table by chance. The table (16 bytes a
//!   slot, at most half full) is read only for a set bit. As in the term
//!   table, a build whose longest run of occupied slots passes 32 tries
//!   another seed, so no catalog makes a lookup long.
//! - Before any of that, a **gate**: a bitset of 2^16 bits (8 KiB) with a
//!   bit set per prefix at the hash of its first `shortest` bytes (the
//!   shortest prefix's length). A token whose first `shortest` bytes' bit
//!   is clear starts no prefix, and costs one probe of one small bitset
//!   whatever the number of lengths. The trie had the same gate (three
//!   bytes on both workloads): it turned away about 29 tokens in 30 on the
//!   generated workload and one in three on real posts. Without it the
//!   table cost 3% more instructions than the trie on the generated
//!   workload; with it, the same.
//!
//! This replaced an anchored trie (`aho-corasick`'s contiguous NFA) walked
//! byte by byte from each token's start: at 100,000 searches the trie is
//! larger than the first-level cache and every step of a walk was a
//! dependent load; the walks were about a quarter of `Scratch::run`
//! (`perf annotate`, realistic workload, BENCHMARKS.md). Probes for
//! different lengths do not depend on each other.
//!
//! On real posts most tokens that could start a prefix are terms of some
//! search. Whether a prefix starts a term is known when the matcher is
//! compiled (`Compiled::term_has_prefix`, this lookup run over every term
//! once), so a token that is a term is looked up only when one does.

use super::term_table::{seeds, LONGEST_RUN};
use crate::query::Wildcard;
use crate::text::TokenKind;

/// Bits of the filter (log2).
const FILTER_BITS_LOG2: u32 = 17;
/// Bits of the gate (log2).
const GATE_BITS_LOG2: u32 = 16;

/// A prefix in the table.
#[derive(Clone, Copy)]
struct Slot {
    /// The prefix's bytes as a word (up to 8 bytes), or their hash.
    key: u64,
    /// Its length in bytes (0: an empty slot).
    len: u32,
    /// Its index in the list it was built from.
    pattern: u32,
}

/// The prefixes, in a hash table by their bytes (module doc).
pub(crate) struct Prefixes {
    /// The distinct lengths of the prefixes, shortest first.
    lens: Box<[usize]>,
    /// Mixed into every hash: the first of the term table's seeds with
    /// which no run of occupied slots is longer than [`LONGEST_RUN`], so a
    /// lookup costs a bounded number of slots whatever the searches are.
    seed: u64,
    /// Bits of the hashes of every prefix's first `lens[0]` bytes.
    gate: Box<[u64]>,
    /// Bits of the hashes of the prefixes.
    filter: Box<[u64]>,
    slots: Box<[Slot]>,
    /// The prefixes longer than eight bytes, by pattern (compared on a
    /// hit; empty for the others).
    long: Box<[Box<[u8]>]>,
}

/// The first (up to) eight bytes of `bytes` as a little-endian word, zero
/// past its end.
#[inline]
fn first_word(bytes: &[u8]) -> u64 {
    // Shorter than a word: two loads that overlap (the bytes they share
    // are ORed onto themselves), not a copy of variable length, which was
    // the lookup's hottest line on the generated workload (`perf annotate`).
    let n = bytes.len();
    if let Some(w) = bytes.first_chunk::<8>() {
        u64::from_le_bytes(*w)
    } else if n >= 4 {
        let at = |i: usize| {
            u64::from(u32::from_le_bytes([
                bytes[i],
                bytes[i + 1],
                bytes[i + 2],
                bytes[i + 3],
            ]))
        };
        at(0) | (at(n - 4) << (8 * (n - 4)))
    } else if n > 0 {
        let at = |i: usize| u64::from(bytes[i]) << (8 * i);
        at(0) | at(n / 2) | at(n - 1)
    } else {
        0
    }
}

/// The keys of the first bytes of one token (or prefix), asked for by
/// growing length. Up to eight bytes a key is the masked first word; past
/// that, a hash of the first word and each further word, the last one
/// zero-padded. The words are mixed in once, from one length to the next,
/// so a token costs its length in words whatever the number of lengths:
/// hashing each length from the start would cost a long token of a catalog
/// with prefixes of every length up to thousands of bytes the square of it.
struct Keys<'b> {
    bytes: &'b [u8],
    word: u64,
    /// The hash of `bytes[..end]`, whole words only (`end` ≥ 8).
    mixed: u64,
    end: usize,
}

/// One more word into a long key's hash.
#[inline]
fn mix(k: u64, word: u64) -> u64 {
    (k.rotate_left(23) ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl<'b> Keys<'b> {
    #[inline]
    fn new(bytes: &'b [u8]) -> Keys<'b> {
        let word = first_word(bytes);
        Keys {
            bytes,
            word,
            mixed: word,
            end: 8,
        }
    }

    /// The key of `bytes[..len]`; `len` no shorter than the last asked.
    #[inline]
    fn key(&mut self, len: usize) -> u64 {
        if len <= 8 {
            return self.word & (u64::MAX >> (64 - 8 * len));
        }
        debug_assert!(len >= self.end, "lengths asked out of order");
        while self.end + 8 <= len {
            self.mixed = mix(self.mixed, first_word(&self.bytes[self.end..self.end + 8]));
            self.end += 8;
        }
        if self.end == len {
            self.mixed
        } else {
            mix(self.mixed, first_word(&self.bytes[self.end..len]))
        }
    }
}

/// The hash of a key of `len` bytes: the filter's bit from its top bits,
/// the table's slot from the bits below them, the gate's bit from bits
/// 32 to 47 (a bitset apart from the filter, so they may share bits).
#[inline]
fn hash(key: u64, len: usize, seed: u64) -> u64 {
    (key ^ seed ^ (len as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The gate's bit for hash `h` (of a token's first `shortest` bytes).
#[inline]
fn gate_bit(h: u64) -> usize {
    (h >> (48 - GATE_BITS_LOG2)) as usize & ((1 << GATE_BITS_LOG2) - 1)
}

impl Prefixes {
    /// The table of `prefixes` (pattern `i` is `prefixes[i]`; none empty,
    /// none twice).
    pub(crate) fn build(prefixes: &[&str]) -> Prefixes {
        let mut lens: Vec<usize> = prefixes.iter().map(|p| p.len()).collect();
        lens.sort_unstable();
        lens.dedup();
        let shortest = lens.first().copied().unwrap_or(1);
        let keys: Vec<(u64, u64)> = prefixes
            .iter()
            .map(|p| {
                let b = p.as_bytes();
                assert!(!b.is_empty(), "an empty prefix");
                let mut keys = Keys::new(b);
                (keys.key(shortest), keys.key(b.len()))
            })
            .collect();
        let cap = (prefixes.len() * 2).next_power_of_two().max(16);
        let empty = Slot {
            key: 0,
            len: 0,
            pattern: 0,
        };
        let mut slots = vec![empty; cap].into_boxed_slice();
        // Prefixes that happen (or are written) to crowd one run of slots
        // make another seed be tried, as the term table does.
        let mut seed = 0;
        for next in seeds() {
            seed = next;
            slots.fill(empty);
            let mut longest = 0;
            for (i, (p, &(_, key))) in prefixes.iter().zip(&keys).enumerate() {
                let mut at = Self::slot_of(hash(key, p.len(), seed), cap);
                let mut run = 0;
                while slots[at].len != 0 {
                    at = (at + 1) & (cap - 1);
                    run += 1;
                }
                longest = longest.max(run);
                slots[at] = Slot {
                    key,
                    len: p.len() as u32,
                    pattern: i as u32,
                };
            }
            if longest <= LONGEST_RUN {
                break;
            }
        }
        let mut filter = vec![0u64; (1 << FILTER_BITS_LOG2) / 64].into_boxed_slice();
        let mut gate = vec![0u64; (1 << GATE_BITS_LOG2) / 64].into_boxed_slice();
        for (p, &(start, key)) in prefixes.iter().zip(&keys) {
            let bit = (hash(key, p.len(), seed) >> (64 - FILTER_BITS_LOG2)) as usize;
            filter[bit / 64] |= 1 << (bit % 64);
            let bit = gate_bit(hash(start, shortest, seed));
            gate[bit / 64] |= 1 << (bit % 64);
        }
        let long = prefixes
            .iter()
            .map(|p| {
                if p.len() > 8 {
                    p.as_bytes().into()
                } else {
                    Box::default()
                }
            })
            .collect();
        Prefixes {
            lens: lens.into_boxed_slice(),
            seed,
            gate,
            filter,
            slots,
            long,
        }
    }

    #[inline]
    fn slot_of(h: u64, cap: usize) -> usize {
        (h >> (64 - FILTER_BITS_LOG2 - cap.trailing_zeros())) as usize & (cap - 1)
    }

    /// Heap bytes held.
    pub(crate) fn memory_usage(&self) -> usize {
        self.lens.len() * 8
            + (self.gate.len() + self.filter.len()) * 8
            + self.slots.len() * std::mem::size_of::<Slot>()
            + self.long.iter().map(|b| b.len() + 16).sum::<usize>()
    }

    /// Its arrays, as byte ranges (`engine::memory`).
    pub(crate) fn hot_arrays(&self, out: &mut Vec<super::memory::Bytes>) {
        use super::memory::bytes_of;
        out.extend([
            bytes_of(&self.gate),
            bytes_of(&self.filter),
            bytes_of(&self.slots),
        ]);
    }

    /// Calls `found` with every pattern that is a prefix of `token`,
    /// shortest first.
    #[inline]
    pub(crate) fn each_prefix_of(&self, token: &[u8], mut found: impl FnMut(usize)) {
        let Some(&shortest) = self.lens.first() else {
            return;
        };
        if token.len() < shortest {
            return;
        }
        let mut keys = Keys::new(token);
        let bit = gate_bit(hash(keys.key(shortest), shortest, self.seed));
        if self.gate[bit / 64] & (1 << (bit % 64)) == 0 {
            return;
        }
        for &len in self.lens.iter() {
            if len > token.len() {
                return;
            }
            let key = keys.key(len);
            let h = hash(key, len, self.seed);
            let bit = (h >> (64 - FILTER_BITS_LOG2)) as usize;
            if self.filter[bit / 64] & (1 << (bit % 64)) == 0 {
                continue;
            }
            let cap = self.slots.len();
            let mut at = Self::slot_of(h, cap);
            loop {
                let slot = self.slots[at];
                if slot.len == 0 {
                    break;
                }
                if slot.key == key
                    && slot.len as usize == len
                    && (len <= 8 || *self.long[slot.pattern as usize] == token[..len])
                {
                    found(slot.pattern as usize);
                    break;
                }
                at = (at + 1) & (cap - 1);
            }
        }
    }
}

/// What a prefix found at a token's start means, in one word: on real
/// posts most prefixes belong to one wildcard `lit*` alone, whose
/// occurrence is then the token whatever its body, if the token's kind
/// suits. Reading that from the prefix's wildcard list, the wildcard's
/// flag and its kind was three dependent reads, each a cache miss at
/// 100,000 searches (`perf annotate`: the prefix lookups were a fifth of
/// `Scratch::run` on real posts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PrefixHit(u32);

impl PrefixHit {
    /// Set when the prefix is one `lit*` wildcard's alone.
    const ALONE: u32 = 1 << 31;
    /// Bits 24..29: the token kinds its wildcard accepts, by kind number.
    const KINDS_SHIFT: u32 = 24;
    /// Bits 0..24: the wildcard.
    const WILDCARD_MASK: u32 = (1 << 24) - 1;

    pub(crate) fn of(wilds: &[u32], prefix_only: &[bool], wildcards: &[Wildcard]) -> PrefixHit {
        let &[w] = wilds else {
            return PrefixHit(0);
        };
        if !prefix_only[w as usize] || w > Self::WILDCARD_MASK {
            return PrefixHit(0);
        }
        let kinds = u32::from(super::confirm::accepted_kinds(wildcards[w as usize].kind));
        PrefixHit(Self::ALONE | kinds << Self::KINDS_SHIFT | w)
    }

    /// The wildcard whose occurrence a token of `kind` is, when the prefix
    /// is one `lit*` wildcard's alone (`Some(None)`: not for this kind);
    /// `None` when the prefix's list must be read.
    #[inline]
    pub(crate) fn alone(self, kind: TokenKind) -> Option<Option<u32>> {
        if self.0 & Self::ALONE == 0 {
            return None;
        }
        let accepts = self.0 >> (Self::KINDS_SHIFT + kind as u32) & 1 != 0;
        Some(accepts.then_some(self.0 & Self::WILDCARD_MASK))
    }
}

#[cfg(test)]
mod tests {
    use super::{PrefixHit, Prefixes};
    use crate::query::Wildcard;
    use crate::text::TokenKind;

    #[test]
    fn a_prefix_of_one_trailing_star_wildcard_is_its_occurrence_by_itself() {
        let w = |kind, pattern: &str| Wildcard {
            kind,
            pattern: pattern.into(),
        };
        let wildcards = [
            w(TokenKind::Word, "lov*"),
            w(TokenKind::Hashtag, "lov*"),
            w(TokenKind::Word, "col?r"),
            w(TokenKind::Word, "lovel*"),
        ];
        let only = [true, true, false, true];
        let word = PrefixHit::of(&[0], &only, &wildcards);
        assert_eq!(word.alone(TokenKind::Word), Some(Some(0)));
        assert_eq!(
            word.alone(TokenKind::Hashtag),
            Some(Some(0)),
            "a word wildcard takes tags"
        );
        assert_eq!(word.alone(TokenKind::Emoji), Some(None));
        let tag = PrefixHit::of(&[1], &only, &wildcards);
        assert_eq!(tag.alone(TokenKind::Hashtag), Some(Some(1)));
        assert_eq!(tag.alone(TokenKind::Word), Some(None));
        // Patterns to check, or several wildcards: the list is read.
        assert_eq!(
            PrefixHit::of(&[2], &only, &wildcards).alone(TokenKind::Word),
            None
        );
        assert_eq!(
            PrefixHit::of(&[0, 1], &only, &wildcards).alone(TokenKind::Word),
            None
        );
        assert_eq!(
            PrefixHit::of(&[3], &only, &wildcards).alone(TokenKind::Word),
            Some(Some(3))
        );
    }

    fn found(p: &Prefixes, token: &str) -> Vec<usize> {
        let mut out = Vec::new();
        p.each_prefix_of(token.as_bytes(), |i| out.push(i));
        out.sort_unstable();
        out
    }

    #[test]
    fn every_prefix_of_a_token_is_found_and_nothing_else() {
        let p = Prefixes::build(&["lov", "love", "colo", "ab", "straß"]);
        assert_eq!(found(&p, "lovely"), vec![0, 1]);
        assert_eq!(found(&p, "lov"), vec![0]);
        assert_eq!(found(&p, "colour"), vec![2]);
        assert_eq!(found(&p, "abc"), vec![3]);
        assert_eq!(found(&p, "straße"), vec![4]);
        // A pattern inside the token, not at its start, does not count.
        assert_eq!(found(&p, "glove"), Vec::<usize>::new());
        assert_eq!(found(&p, "a"), Vec::<usize>::new());
        assert_eq!(found(&p, ""), Vec::<usize>::new());
    }

    #[test]
    fn a_one_byte_prefix_lets_every_token_it_starts_through() {
        let p = Prefixes::build(&["x", "xyz"]);
        assert_eq!(found(&p, "x"), vec![0]);
        assert_eq!(found(&p, "xy"), vec![0]);
        assert_eq!(found(&p, "xyzzy"), vec![0, 1]);
        assert_eq!(found(&p, "yx"), Vec::<usize>::new());
    }

    #[test]
    fn a_word_holds_the_first_bytes_and_zeros_after_them() {
        let bytes = b"abcdefghij";
        for n in 0..=bytes.len() {
            let mut want = [0u8; 8];
            let k = n.min(8);
            want[..k].copy_from_slice(&bytes[..k]);
            assert_eq!(
                super::first_word(&bytes[..n]),
                u64::from_le_bytes(want),
                "{n} bytes"
            );
        }
    }

    #[test]
    fn prefixes_of_every_length_are_each_found_once() {
        // A catalog with a prefix of every length (the keys of long ones
        // are mixed a word at a time, across word boundaries), and tokens
        // longer and shorter than all of them.
        let long: String = "abcdefghijklmnopqrstuvwxyz".repeat(4);
        let pats: Vec<&str> = (1..=long.len()).map(|n| &long[..n]).collect();
        let p = Prefixes::build(&pats);
        for n in [1, 7, 8, 9, 15, 16, 17, 50, long.len()] {
            assert_eq!(
                found(&p, &long[..n]),
                (0..n).collect::<Vec<_>>(),
                "{n} bytes"
            );
        }
        let longer = format!("{long}xyz");
        assert_eq!(found(&p, &longer).len(), long.len());
        // One byte off at 20: only the 19 shorter prefixes.
        let off = format!("{}X{}", &long[..19], &long[20..]);
        assert_eq!(found(&p, &off), (0..19).collect::<Vec<_>>());
    }

    #[test]
    fn prefixes_that_crowd_one_slot_make_the_build_reseed() {
        // 64 prefixes that all start at slot 0 of a 128-slot table with
        // the first seed: a run of 64, so another seed is taken.
        let cap = 128;
        let crowd: Vec<String> = (0..100_000)
            .map(|i| format!("k{i:05}"))
            .filter(|p| {
                let key = super::Keys::new(p.as_bytes()).key(p.len());
                Prefixes::slot_of(super::hash(key, p.len(), 0), cap) == 0
            })
            .take(64)
            .collect();
        assert_eq!(crowd.len(), 64);
        let refs: Vec<&str> = crowd.iter().map(String::as_str).collect();
        let p = Prefixes::build(&refs);
        assert_eq!(p.slots.len(), cap);
        assert_ne!(p.seed, 0, "the first seed was kept");
        for (i, c) in crowd.iter().enumerate() {
            assert_eq!(found(&p, &format!("{c}zz")), vec![i]);
        }
    }

    #[test]
    fn every_length_is_found_as_a_plain_scan_finds_it() {
        // Many prefixes (table collisions), some longer than a word and
        // than two, some sharing their first eight bytes, some not ASCII;
        // checked against `starts_with` over every prefix.
        let mut pats: Vec<String> = (0..3000).map(|i| format!("p{i:03}q")).collect();
        pats.extend((0..200).map(|i| format!("internation{i}")));
        pats.extend(
            [
                "internationalisation",
                "internationa",
                "straßenbahn",
                "é",
                "ab",
            ]
            .map(String::from),
        );
        let refs: Vec<&str> = pats.iter().map(String::as_str).collect();
        let p = Prefixes::build(&refs);
        let mut hits = 0;
        for i in 0..20_000u32 {
            let token = format!(
                "{}{i}",
                [
                    "p",
                    "q",
                    "pq",
                    "zz",
                    "internation",
                    "internationalisations",
                    "straßenbahnen",
                    "é",
                    "ab"
                ][i as usize % 9]
            );
            let scan: Vec<usize> = (0..refs.len())
                .filter(|&k| token.starts_with(refs[k]))
                .collect();
            hits += usize::from(!scan.is_empty());
            assert_eq!(found(&p, &token), scan, "{token}");
        }
        assert!(
            hits > 5_000,
            "the tokens start too few prefixes to test: {hits}"
        );
    }
}
