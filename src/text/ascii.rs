//! The ASCII fast path of tokenizing (most of the text of social media).
//!
//! # Design
//!
//! The UAX #29 word rules restricted to ASCII: letters, digits and `_`
//! (ExtendNumLet) join; `:` (MidLetter) joins two letters; `.` and `'`
//! (MidNumLetQ) join two letters or two digits; `,` and `;` (MidNum) join
//! two digits. Every other byte is a segment of its own (runs of spaces are
//! one segment, which does not matter here). The property tests
//! `ascii_fast_path_equals_uax29` and `long_ascii_equals_uax29` check this
//! against the full algorithm.
//!
//! A token is a run of *word bytes* (letters, digits, `_`), possibly glued
//! to the next run by one of those joiners. The text is classified 64 bytes
//! at a time into a bit mask of its word bytes (four 16-byte compares on
//! x86-64, a table elsewhere); a token's start is the next set bit, its end
//! the next clear one, so the scan costs a few instructions per *token*, not
//! per byte as the byte-by-byte loop it replaced did (that loop was 15% of
//! the `bench` generator's engine time, `perf record`). Only the byte after
//! a run is looked at for a joiner. Bodies are lower-cased into the folded
//! buffer 16 bytes at a time, and room for the most tokens and bodies a
//! stretch can hold is reserved once, so tokens are written with no
//! per-token capacity check or length update: a token costs half what it
//! did (8.5 against 17.5 ns over the generator's texts).
//!
//! Written here rather than taken from a crate: the segmenters on crates.io
//! (`unicode-segmentation`, used for the rest of the text) walk characters
//! one by one, which is the cost this path exists to avoid.

use super::{Token, TokenKind, TOKEN_SEPARATOR};

/// Letters, digits and `_`: the bytes that join into an ASCII word.
#[cfg(any(test, not(target_arch = "x86_64")))]
static WORD_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_alphanumeric() || c == b'_' as usize;
        c += 1;
    }
    t
};

/// The index of the first byte of `b` that is not ASCII, eight bytes at a
/// time.
pub(super) fn first_non_ascii(b: &[u8]) -> Option<usize> {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let (words, rest) = b.as_chunks::<8>();
    for (i, w) in words.iter().enumerate() {
        let high = u64::from_le_bytes(*w) & HIGH;
        if high != 0 {
            return Some(i * 8 + high.trailing_zeros() as usize / 8);
        }
    }
    rest.iter()
        .position(|c| !c.is_ascii())
        .map(|k| words.len() * 8 + k)
}

/// Bit `i` is set when `block[i]` is a word byte.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(super) fn word_mask(block: &[u8; 64]) -> u64 {
    use std::arch::x86_64::*;
    let mut mask = 0u64;
    // SAFETY: SSE2 is part of x86-64; the loads read 16 bytes at offsets 0,
    // 16, 32 and 48 of a 64-byte array.
    unsafe {
        let (a, z) = (_mm_set1_epi8(b'a' as i8), _mm_set1_epi8(25));
        let (zero, nine) = (_mm_set1_epi8(b'0' as i8), _mm_set1_epi8(9));
        let (case, under) = (_mm_set1_epi8(0x20), _mm_set1_epi8(b'_' as i8));
        for k in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast());
            // `c | 0x20` is in a..=z exactly for ASCII letters; an unsigned
            // `x <= n` is `min(x, n) == x`.
            let l = _mm_sub_epi8(_mm_or_si128(v, case), a);
            let letter = _mm_cmpeq_epi8(_mm_min_epu8(l, z), l);
            let d = _mm_sub_epi8(v, zero);
            let digit = _mm_cmpeq_epi8(_mm_min_epu8(d, nine), d);
            let word = _mm_or_si128(_mm_or_si128(letter, digit), _mm_cmpeq_epi8(v, under));
            mask |= (_mm_movemask_epi8(word) as u16 as u64) << (16 * k);
        }
    }
    mask
}

/// Bit `i` is set when `block[i]` is a word byte.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub(super) fn word_mask(block: &[u8; 64]) -> u64 {
    word_mask_by_table(block)
}

/// [`word_mask`] a byte at a time: the portable path, and the tests'
/// reference.
#[cfg(any(test, not(target_arch = "x86_64")))]
pub(super) fn word_mask_by_table(block: &[u8; 64]) -> u64 {
    block
        .iter()
        .enumerate()
        .fold(0, |m, (i, &c)| m | (WORD_BYTE[c as usize] as u64) << i)
}

/// The word-byte masks of `b`, 64 bytes at a time from `from`; bytes past
/// the end count as non-word bytes.
struct WordBits<'b> {
    b: &'b [u8],
    /// Where the block in `mask` starts.
    base: usize,
    mask: u64,
}

impl<'b> WordBits<'b> {
    fn new(b: &'b [u8], from: usize) -> WordBits<'b> {
        let mut bits = WordBits { b, base: from, mask: 0 };
        bits.load(from);
        bits
    }

    fn load(&mut self, base: usize) {
        self.base = base;
        self.mask = match self.b.get(base..base + 64) {
            Some(block) => word_mask(block.try_into().expect("64 bytes")),
            None => {
                let mut block = [0u8; 64];
                let rest = self.b.get(base..).unwrap_or(&[]);
                block[..rest.len()].copy_from_slice(rest);
                word_mask(&block)
            }
        };
    }

    /// The first position at or after `i` whose byte is (`want`) or is not
    /// (`!want`) a word byte; `b.len()` if there is none. Never moves back
    /// to an earlier block: `i` is at or after the current block's start.
    #[inline(always)]
    fn next(&mut self, mut i: usize, want: bool) -> usize {
        let n = self.b.len();
        loop {
            if i >= n {
                return n;
            }
            if i >= self.base + 64 {
                self.load(i);
            }
            let off = i - self.base;
            let bits = if want { self.mask } else { !self.mask } >> off;
            if bits != 0 {
                return (i + bits.trailing_zeros() as usize).min(n);
            }
            i = self.base + 64;
        }
    }
}

/// Whether the joiner `c` between `prev` and `next` glues them into one
/// token.
#[inline]
fn joins(prev: u8, c: u8, next: u8) -> bool {
    match c {
        b':' => prev.is_ascii_alphabetic() && next.is_ascii_alphabetic(),
        b'.' | b'\'' => {
            (prev.is_ascii_alphabetic() && next.is_ascii_alphabetic())
                || (prev.is_ascii_digit() && next.is_ascii_digit())
        }
        b',' | b';' => prev.is_ascii_digit() && next.is_ascii_digit(),
        _ => false,
    }
}

/// Writes `b[start..end]` lower-cased at `out`, and may write up to 15
/// bytes after it.
///
/// # Safety
/// `out` must be valid for `end - start + 16` bytes of writes, and
/// `start <= end <= b.len()`.
#[inline(always)]
unsafe fn write_lowercase(b: &[u8], start: usize, end: usize, out: *mut u8) {
    let mut k = start;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86-64; each load reads 16 bytes inside
        // `b` (`k + 16 <= b.len()`), each store writes 16 bytes that the
        // caller vouches for (at most 15 past `end - start`).
        unsafe {
            let (upper_a, z) = (_mm_set1_epi8(b'A' as i8), _mm_set1_epi8(25));
            let case = _mm_set1_epi8(0x20);
            while k < end && k + 16 <= b.len() {
                let v = _mm_loadu_si128(b.as_ptr().add(k).cast());
                let u = _mm_sub_epi8(v, upper_a);
                let upper = _mm_cmpeq_epi8(_mm_min_epu8(u, z), u);
                let lower = _mm_or_si128(v, _mm_and_si128(upper, case));
                _mm_storeu_si128(out.add(k - start).cast(), lower);
                k += 16;
            }
        }
    }
    // The last bytes of the text, and every byte elsewhere.
    while k < end {
        // SAFETY: `k - start < end - start`, inside what the caller vouches for.
        unsafe { *out.add(k - start) = b[k].to_ascii_lowercase() };
        k += 1;
    }
}

/// Tokenizes the ASCII bytes `text[from..to]`; the byte before `from`, if
/// any, is whitespace (so it cannot glue to the chunk).
pub(super) fn tokenize_ascii(
    text: &str,
    from: usize,
    to: usize,
    out: &mut Vec<Token>,
    folded: &mut String,
) {
    // Room for the most tokens `to - from` bytes can hold (one byte and a
    // separator each) and their bodies, reserved once: tokens and bodies
    // are then written with no per-token capacity check or length update
    // (those, through memory, were most of the cost per token).
    let max_tokens = (to - from).div_ceil(2);
    out.reserve(max_tokens);
    // SAFETY: only ASCII bytes and the NUL separator are written, so
    // `folded` stays UTF-8.
    let folded = unsafe { folded.as_mut_vec() };
    folded.reserve(to - from + max_tokens + 16);
    let (mut n_out, mut n_folded) = (out.len(), folded.len());
    let (out_at, folded_at) = (out.as_mut_ptr(), folded.as_mut_ptr());
    let whole = text.as_bytes();
    // Cut at `to`, so that the scan's bounds are the slice's own.
    let b = &whole[..to];
    let n = b.len();
    let mut bits = WordBits::new(b, from);
    let mut i = from;
    loop {
        let start = bits.next(i, true);
        if start >= n {
            break;
        }
        let mut j = bits.next(start, false);
        let mut joined = false;
        // A joiner glues this run to the next when the rule for it holds
        // (the next byte is then a letter or digit, so a word byte).
        while j + 1 < n && joins(b[j - 1], b[j], b[j + 1]) {
            joined = true;
            j = bits.next(j + 1, false);
        }
        i = j;
        // A run of `_` alone is no token (it has no letter or digit).
        if !joined && b[start..j].iter().all(|&c| c == b'_') {
            continue;
        }
        let kind = match start.checked_sub(1).map(|p| b[p]) {
            Some(s @ (b'#' | b'@' | b'$')) if start < 2 || !b[start - 2].is_ascii_alphanumeric() => {
                match s {
                    b'#' => TokenKind::Hashtag,
                    b'@' => TokenKind::Mention,
                    _ => TokenKind::Cashtag,
                }
            }
            _ => TokenKind::Word,
        };
        let tok_start = if kind == TokenKind::Word {
            start
        } else {
            start - 1
        };
        let folded_start = n_folded;
        // SAFETY: tokens are disjoint runs of `b[from..to]` separated by at
        // least one byte, so there are at most `max_tokens` of them and
        // their bodies and separators take at most `to - from + max_tokens`
        // bytes: every write below is inside the capacity reserved above
        // (the lower-casing's 15 bytes of slack included). The lengths are
        // set once the writes are done.
        unsafe {
            write_lowercase(whole, start, j, folded_at.add(n_folded));
            n_folded += j - start;
            *folded_at.add(n_folded) = TOKEN_SEPARATOR as u8;
            n_folded += 1;
            out_at.add(n_out).write(Token {
                kind,
                start: tok_start as u32,
                body_start: start as u32,
                end: j as u32,
                folded_start: folded_start as u32,
                folded_end: (n_folded - 1) as u32,
            });
            n_out += 1;
        }
    }
    // SAFETY: the first `n_out` tokens and `n_folded` bytes are written.
    unsafe {
        out.set_len(n_out);
        folded.set_len(n_folded);
    }
}
