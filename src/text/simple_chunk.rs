//! A fast path for the non-ASCII chunks most posts have: words in the
//! letters of two-byte scripts (`Straße`, `crème`, `ñandú`, Greek,
//! Cyrillic) and emoji standing alone between spaces.
//!
//! # Design
//!
//! `tokenize_into` hands every chunk around a non-ASCII character (from the
//! break before it to the break after it) to the full UAX #29 algorithm of
//! `unicode-segmentation`, which walks and classifies every character: with
//! folding, ~2,600 instructions for a chunk like `they 😀 ` (`callgrind`),
//! 12% of matching on the `bench` generator, where most posts have one.
//!
//! A chunk whose non-ASCII characters are all either
//! - a **plain letter**: a two-byte character (U+0080–U+07FF) that the word
//!   rules treat exactly as two ASCII letters, or
//! - an **emoji island**: one Extended_Pictographic character, optionally
//!   followed by U+FE0F, with ASCII whitespace (or the chunk's edge, which
//!   is a break) on both sides — UAX #29 makes it a segment of its own
//!   (WB3d/WB4 need whitespace or Extend around it, WB3c a ZWJ before it),
//!
//! is tokenized instead as its *shadow*: the chunk with every plain letter
//! replaced by `aa` (the same number of bytes) and every island by spaces,
//! through the ASCII fast path. The tokens' byte ranges are then those of
//! the original; islands become emoji tokens; and each body is folded from
//! the original text, plain letters through a table of their folded forms.
//!
//! Which characters are plain letters is not written down by hand: the
//! first time it is seen, each alphabetic, non-mark two-byte character is put through the
//! full algorithm in the contexts that tell the word-break classes apart
//! (next to letters, digits, `.`, `'`, `"`, `:`, `,`, `_`, spaces and a
//! combining mark) and kept only if every context segments exactly as with
//! `aa` in its place (~1,700 characters; Hebrew letters, whose quotes rules
//! differ, fall out this way). The test `simple_chunks_equal_uax29`
//! compares the whole path with the full algorithm.

use std::sync::OnceLock;

use unicode_normalization::char::is_combining_mark;
use unicode_segmentation::UnicodeSegmentation;

use super::{fold_char, is_extended_pictographic, tokenize_ascii, Token, TokenKind};

/// The first character past the two-byte range.
const TWO_BYTE_END: u32 = 0x800;

/// The folded form of two-byte character `u` if it is a plain letter.
/// Each character is classified the first time it is seen (a few
/// microseconds), not all at once (30 ms for the range, ~100 M
/// instructions).
fn plain_letter(u: u32) -> Option<&'static str> {
    static TABLE: [OnceLock<Option<Box<str>>>; (TWO_BYTE_END - 0x80) as usize] =
        [const { OnceLock::new() }; (TWO_BYTE_END - 0x80) as usize];
    let slot = TABLE.get(u.checked_sub(0x80)? as usize)?;
    slot.get_or_init(|| {
        let c = char::from_u32(u)?;
        if !c.is_alphabetic() || is_combining_mark(c) || !segments_as_two_letters(c) {
            return None;
        }
        let mut folded = String::new();
        fold_char(c, &mut folded);
        Some(folded.into_boxed_str())
    })
    .as_deref()
}

/// Whether the word rules put breaks around `c` exactly where they put
/// them around `aa`, in every context that tells word-break classes apart.
fn segments_as_two_letters(c: char) -> bool {
    const CONTEXTS: &[&str] = &[
        "X",
        "aX",
        "Xa",
        "1X",
        "X1",
        " X",
        "X ",
        "a.X",
        "X.a",
        "1.X",
        "X.1",
        "X'",
        "X'a",
        "a'X",
        "X\"a",
        "X\"",
        "a:X",
        "X:a",
        "X,1",
        "1,X",
        "_X",
        "X_",
        "X\u{301}",
        "#X",
        "X\u{200d}",
    ];
    let breaks = |s: &str| {
        s.split_word_bound_indices()
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    let mut buf = [0u8; 4];
    let as_str = c.encode_utf8(&mut buf);
    CONTEXTS
        .iter()
        .all(|ctx| breaks(&ctx.replace('X', as_str)) == breaks(&ctx.replace('X', "aa")))
}

/// Tokenizes `text[from..to]`, a chunk between two breaks, if its
/// non-ASCII characters are all plain letters or emoji islands (see the
/// module doc); returns `false`, having written nothing, otherwise.
pub(super) fn tokenize_simple_chunk(
    text: &str,
    from: usize,
    to: usize,
    out: &mut Vec<Token>,
    folded: &mut String,
) -> bool {
    let chunk = &text.as_bytes()[from..to];
    // The shadow has the chunk's length; short ones (nearly all) on the
    // stack.
    let (mut on_stack, mut on_heap) = ([0u8; 256], Vec::new());
    let shadow: &mut [u8] = if chunk.len() <= on_stack.len() {
        &mut on_stack[..chunk.len()]
    } else {
        on_heap.resize(chunk.len(), 0);
        &mut on_heap
    };
    let (mut i, mut islands) = (0, false);
    while i < chunk.len() {
        let c = chunk[i];
        if c.is_ascii() {
            shadow[i] = c;
            i += 1;
            continue;
        }
        // `i` is at a character's start (it moves by whole characters
        // from the chunk's, a break), inside the chunk.
        let Some(ch) = text[from + i..].chars().next() else {
            return false;
        };
        let len = ch.len_utf8();
        if plain_letter(ch as u32).is_some() {
            shadow[i..i + 2].copy_from_slice(b"aa");
            i += len;
            continue;
        }
        if !is_extended_pictographic(ch) || (i > 0 && !chunk[i - 1].is_ascii_whitespace()) {
            return false;
        }
        let mut end = i + len;
        if chunk[end..].starts_with("\u{fe0f}".as_bytes()) {
            end += 3;
        }
        if end < chunk.len() && !chunk[end].is_ascii_whitespace() {
            return false;
        }
        shadow[i..end].fill(b' ');
        islands = true;
        i = end;
    }
    // SAFETY: the shadow is ASCII.
    let shadow = unsafe { std::str::from_utf8_unchecked(shadow) };
    let (first, folded_from) = (out.len(), folded.len());
    tokenize_ascii(shadow, 0, shadow.len(), out, folded);
    // The islands, the runs of non-ASCII bytes the shadow blanked, merged
    // with the words in one pass (inserting each would move every token
    // after it: quadratic in a long chunk of alternating emoji and letters).
    if islands {
        let mut words = out.split_off(first).into_iter().peekable();
        let mut k = 0;
        while k < chunk.len() {
            if chunk[k].is_ascii() || shadow.as_bytes()[k] != b' ' {
                k += 1;
                continue;
            }
            let start = k;
            while k < chunk.len() && !chunk[k].is_ascii() {
                k += 1;
            }
            while let Some(w) = words.next_if(|w| (w.start as usize) < start) {
                out.push(w);
            }
            out.push(Token {
                kind: TokenKind::Emoji,
                start: start as u32,
                body_start: start as u32,
                end: k as u32,
                folded_start: 0,
                folded_end: 0,
            });
        }
        out.extend(words);
    }
    // Offsets into the field, and the bodies folded from the original text
    // in token order.
    folded.truncate(folded_from);
    for t in &mut out[first..] {
        t.start += from as u32;
        t.body_start += from as u32;
        t.end += from as u32;
        t.folded_start = folded.len() as u32;
        for ch in text[t.body_start as usize..t.end as usize].chars() {
            let u = ch as u32;
            if ch.is_ascii() {
                folded.push(ch.to_ascii_lowercase());
            } else if let Some(f) = plain_letter(u) {
                folded.push_str(f);
            } else {
                fold_char(ch, folded);
            }
        }
        t.folded_end = folded.len() as u32;
        folded.push(super::TOKEN_SEPARATOR);
    }
    true
}
