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
//! at a time into bit masks of its word bytes and its joiners (16-byte
//! compares on x86-64, a table elsewhere); a joiner that follows a word
//! byte is checked against its rule byte by byte and, when it holds, set
//! as a word bit; runs' starts and ends are then `run & !(run << 1)` and
//! `!run & (run << 1)`, taken a bit at a time ([`Runs`]). The scan costs a
//! few instructions per *token*, not per byte as the byte-by-byte loop it
//! replaced did (that loop was 15% of the `bench` generator's engine time,
//! `perf record`). Bodies are lower-cased into the folded buffer 16 bytes
//! at a time, and room for the most tokens and bodies a stretch can hold
//! is reserved once, so tokens are written with no per-token capacity
//! check or length update: a token costs under half what it did (8.0
//! against 16.7 ns over the generator's texts, one core).
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

/// Which bytes of a 64-byte block are word bytes (letters, digits, `_`)
/// and which are joiners (`:`, `.`, `'`, `,`, `;`): bit `i` for byte `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Masks {
    pub word: u64,
    pub joiner: u64,
}

/// The [`Masks`] of `block`.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(super) fn masks(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::*;
    let (mut word, mut joiner) = (0u64, 0u64);
    // SAFETY: SSE2 is part of x86-64; the loads read 16 bytes at offsets 0,
    // 16, 32 and 48 of a 64-byte array.
    unsafe {
        let (a, z) = (_mm_set1_epi8(b'a' as i8), _mm_set1_epi8(25));
        let (zero, nine) = (_mm_set1_epi8(b'0' as i8), _mm_set1_epi8(9));
        let (case, under) = (_mm_set1_epi8(0x20), _mm_set1_epi8(b'_' as i8));
        let joiners = [b':', b'.', b'\'', b',', b';'].map(|c| _mm_set1_epi8(c as i8));
        for k in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast());
            // `c | 0x20` is in a..=z exactly for ASCII letters; an unsigned
            // `x <= n` is `min(x, n) == x`.
            let l = _mm_sub_epi8(_mm_or_si128(v, case), a);
            let letter = _mm_cmpeq_epi8(_mm_min_epu8(l, z), l);
            let d = _mm_sub_epi8(v, zero);
            let digit = _mm_cmpeq_epi8(_mm_min_epu8(d, nine), d);
            let w = _mm_or_si128(_mm_or_si128(letter, digit), _mm_cmpeq_epi8(v, under));
            word |= (_mm_movemask_epi8(w) as u16 as u64) << (16 * k);
            let j = joiners.iter().fold(_mm_setzero_si128(), |acc, &c| {
                _mm_or_si128(acc, _mm_cmpeq_epi8(v, c))
            });
            joiner |= (_mm_movemask_epi8(j) as u16 as u64) << (16 * k);
        }
    }
    Masks { word, joiner }
}

/// The [`Masks`] of `block`.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub(super) fn masks(block: &[u8; 64]) -> Masks {
    masks_by_table(block)
}

/// [`masks`] a byte at a time: the portable path, and the tests' reference.
#[cfg(any(test, not(target_arch = "x86_64")))]
pub(super) fn masks_by_table(block: &[u8; 64]) -> Masks {
    let bit = |i: usize, on: bool| (on as u64) << i;
    block
        .iter()
        .enumerate()
        .fold(Masks { word: 0, joiner: 0 }, |m, (i, &c)| Masks {
            word: m.word | bit(i, WORD_BYTE[c as usize]),
            joiner: m.joiner | bit(i, matches!(c, b':' | b'.' | b'\'' | b',' | b';')),
        })
}

/// The [`Masks`] of the 64 bytes of `b` from `base`; bytes past its end
/// count as neither.
#[inline]
fn masks_at(b: &[u8], base: usize) -> Masks {
    match b.get(base..).and_then(<[u8]>::first_chunk::<64>) {
        Some(block) => masks(block),
        None => {
            let mut block = [0u8; 64];
            let rest = &b[base..];
            block[..rest.len()].copy_from_slice(rest);
            masks(&block)
        }
    }
}

/// The runs of word bytes of `b[from..]`, glued by the joiners whose rule
/// holds, in order, as (start, end): the tokens before the `_`-only check.
///
/// Block by block: a joiner after a word byte glues it to the next byte
/// when its rule holds (checked byte by byte; the next byte is then a
/// letter or digit, so a word byte), and runs are the stretches of word or
/// glue bits, found with bit operations, a few per token.
struct Runs<'b> {
    b: &'b [u8],
    /// Where the current block starts.
    base: usize,
    /// Run starts and ends (the first byte after a run) left in the block.
    starts: u64,
    ends: u64,
    /// Whether the block's last byte is in a run (then it goes on in the
    /// next block, from `open`).
    carry: u64,
    open: Option<usize>,
}

impl<'b> Runs<'b> {
    fn new(b: &'b [u8], from: usize) -> Runs<'b> {
        // The byte before `from`, if any, is whitespace: no run comes in.
        let mut runs = Runs {
            b,
            base: from,
            starts: 0,
            ends: 0,
            carry: 0,
            open: None,
        };
        if from < b.len() {
            runs.classify();
        }
        runs
    }

    /// Finds the runs of the block at `base`.
    #[inline(always)]
    fn classify(&mut self) {
        let (b, base) = (self.b, self.base);
        let m = masks_at(b, base);
        let mut glue = 0u64;
        let mut joiners = m.joiner & ((m.word << 1) | self.carry);
        while joiners != 0 {
            let at = base + joiners.trailing_zeros() as usize;
            joiners &= joiners - 1;
            if at + 1 < b.len() && joins(b[at - 1], b[at], b[at + 1]) {
                glue |= 1 << (at - base);
            }
        }
        let run = m.word | glue;
        self.starts = run & !((run << 1) | self.carry);
        self.ends = !run & ((run << 1) | self.carry);
        self.carry = run >> 63;
    }

    #[inline(always)]
    fn next(&mut self) -> Option<(usize, usize)> {
        let n = self.b.len();
        loop {
            if self.base >= n {
                return self.open.take().map(|start| (start, n));
            }
            let start = match self.open {
                Some(start) => start,
                None if self.starts != 0 => {
                    let s = self.base + self.starts.trailing_zeros() as usize;
                    self.starts &= self.starts - 1;
                    s
                }
                None => {
                    self.next_block();
                    continue;
                }
            };
            if self.ends == 0 {
                self.open = Some(start);
                self.next_block();
                continue;
            }
            let end = self.base + self.ends.trailing_zeros() as usize;
            self.ends &= self.ends - 1;
            self.open = None;
            return Some((start, end.min(n)));
        }
    }

    fn next_block(&mut self) {
        self.base += 64;
        if self.base < self.b.len() {
            self.classify();
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
    let mut runs = Runs::new(b, from);
    while let Some((start, end)) = runs.next() {
        // A run of `_` alone is no token (it has no letter or digit; a
        // glued run has its joiner).
        if b[start..end].iter().all(|&c| c == b'_') {
            continue;
        }
        let kind = match start.checked_sub(1).map(|p| b[p]) {
            Some(s @ (b'#' | b'@' | b'$'))
                if start < 2 || !b[start - 2].is_ascii_alphanumeric() =>
            {
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
            write_lowercase(whole, start, end, folded_at.add(n_folded));
            n_folded += end - start;
            *folded_at.add(n_folded) = TOKEN_SEPARATOR as u8;
            n_folded += 1;
            out_at.add(n_out).write(Token {
                kind,
                start: tok_start as u32,
                body_start: start as u32,
                end: end as u32,
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
