//! The literal prefixes of wildcards that start with one (`lov*`,
//! `colo?r`), found at the start of each document token.
//!
//! # Design
//!
//! An anchored trie of the prefixes (the contiguous NFA of `aho-corasick`)
//! is walked from the first byte of a token until the walk dies. At
//! 100,000 searches the trie is too large for the cache, and every token
//! walked cost a cache miss or two per byte (a fifth of the matching time
//! on the generated workload, `perf annotate` of `Scratch::run`), while
//! fewer than one token in two hundred has a prefix there.
//!
//! So a **gate** comes first: a bitset of 2^16 bits (8 KiB, in the first
//! level cache) with one bit set per hash of the first `gate_len` bytes of
//! each prefix, where `gate_len` is the shortest prefix's length capped at
//! three bytes. A token whose first bytes' bit is clear has no prefix in
//! the trie and is not walked; a token shorter than `gate_len` cannot have
//! one either. On the generated workload the gate lets about one token in
//! thirty through (one in ten with two bytes, hence three).
//!
//! On real posts the gate lets two tokens in three through, and most of
//! those are terms of some search. Whether a prefix starts a term is
//! known when the matcher is compiled (`Compiled::term_has_prefix`, this
//! trie run over every term once), so a token that is a term is walked
//! only when one does: about half the walks on real posts.

use aho_corasick::automaton::Automaton;
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::{Anchored, MatchKind};

/// Bytes of a token the gate looks at, at most.
const GATE_BYTES: usize = 3;
/// Bits in the gate.
const GATE_BITS: usize = 1 << 16;

/// The prefixes, as a trie behind a gate (module doc).
pub(crate) struct Prefixes {
    trie: NFA,
    gate_len: usize,
    gate: Box<[u64]>,
}

/// The gate's bit for the first `len` bytes of `bytes`.
#[inline]
fn gate_bit(bytes: &[u8], len: usize) -> usize {
    let mut key = 0u32;
    for &b in &bytes[..len] {
        key = (key << 8) | u32::from(b);
    }
    (key.wrapping_mul(0x9E37_79B1) >> 16) as usize
}

impl Prefixes {
    /// The trie of `prefixes` (pattern `i` is `prefixes[i]`; none empty).
    pub(crate) fn build(prefixes: &[&str]) -> Result<Prefixes, aho_corasick::BuildError> {
        let trie = NFA::builder()
            .match_kind(MatchKind::Standard)
            .build(prefixes)?;
        let gate_len = prefixes
            .iter()
            .map(|p| p.len())
            .min()
            .unwrap_or(0)
            .clamp(1, GATE_BYTES);
        let mut gate = vec![0u64; GATE_BITS / 64].into_boxed_slice();
        for p in prefixes.iter().filter(|p| p.len() >= gate_len) {
            let bit = gate_bit(p.as_bytes(), gate_len);
            gate[bit / 64] |= 1 << (bit % 64);
        }
        Ok(Prefixes {
            trie,
            gate_len,
            gate,
        })
    }

    /// Heap bytes held.
    pub(crate) fn memory_usage(&self) -> usize {
        self.trie.memory_usage() + self.gate.len() * 8
    }

    /// Calls `found` with every pattern that is a prefix of `token`.
    #[inline]
    pub(crate) fn each_prefix_of(&self, token: &[u8], found: impl FnMut(usize)) {
        if token.len() < self.gate_len {
            return;
        }
        let bit = gate_bit(token, self.gate_len);
        if self.gate[bit / 64] & (1 << (bit % 64)) == 0 {
            return;
        }
        self.walk(token, found);
    }

    fn walk(&self, bytes: &[u8], mut found: impl FnMut(usize)) {
        let trie = &self.trie;
        let Ok(mut sid) = trie.start_state(Anchored::Yes) else {
            return;
        };
        for (depth, &b) in bytes.iter().enumerate() {
            sid = trie.next_state(Anchored::Yes, sid, b);
            if trie.is_special(sid) {
                if trie.is_dead(sid) {
                    return;
                }
                if trie.is_match(sid) {
                    for i in 0..trie.match_len(sid) {
                        let pid = trie.match_pattern(sid, i);
                        // A match state also lists patterns that are
                        // suffixes of the path; only those that start at
                        // the token start count.
                        if trie.pattern_len(pid) == depth + 1 {
                            found(pid.as_usize());
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Prefixes;

    fn found(p: &Prefixes, token: &str) -> Vec<usize> {
        let mut out = Vec::new();
        p.each_prefix_of(token.as_bytes(), |i| out.push(i));
        out.sort_unstable();
        out
    }

    #[test]
    fn every_prefix_of_a_token_is_found_and_nothing_else() {
        let p = Prefixes::build(&["lov", "love", "colo", "ab", "straß"]).unwrap();
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
        let p = Prefixes::build(&["x", "xyz"]).unwrap();
        assert_eq!(found(&p, "x"), vec![0]);
        assert_eq!(found(&p, "xy"), vec![0]);
        assert_eq!(found(&p, "xyzzy"), vec![0, 1]);
        assert_eq!(found(&p, "yx"), Vec::<usize>::new());
    }

    #[test]
    fn the_gate_turns_away_tokens_that_start_no_prefix() {
        // Compared with the walk alone over many tokens: the gate only
        // ever skips tokens the walk finds nothing in.
        let pats: Vec<String> = (0..500).map(|i| format!("p{i:03}q")).collect();
        let refs: Vec<&str> = pats.iter().map(String::as_str).collect();
        let p = Prefixes::build(&refs).unwrap();
        let mut let_through = 0;
        for i in 0..20_000u32 {
            let token = format!("{}{i}", ["p", "q", "pq", "zz"][i as usize % 4]);
            let mut walked = Vec::new();
            p.walk(token.as_bytes(), |x| walked.push(x));
            walked.sort_unstable();
            assert_eq!(found(&p, &token), walked, "{token}");
            let bit = super::gate_bit(token.as_bytes(), p.gate_len.min(token.len()));
            let_through += usize::from(p.gate[bit / 64] & (1 << (bit % 64)) != 0);
        }
        assert!(let_through < 20_000, "the gate let every token through");
    }
}
