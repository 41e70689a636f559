//! The text model of docs/query-language.md §3.1: folding, tokens with positions, and the
//! mapping from folded text back to byte offsets of the original.
//!
//! # Design
//!
//! A field is **tokenized first, then each token is folded**. Tokenizing the
//! original text keeps every token's byte range in the original field for
//! free, which is what highlights need; folding per token keeps the folded
//! form of a token independent of its neighbours. Query words go through the
//! very same two steps ([`tokenize_into`] then [`fold_into`]), so a query word
//! and a document word that look alike to a reader compare equal.
//!
//! Tokens are the UAX #29 word segments that contain a letter or a digit,
//! plus one token per emoji segment (a segment that starts with an
//! Extended_Pictographic character or a regional indicator). A word segment
//! directly preceded by `#`, `@` or `$` — where that sigil is itself at the
//! start of the field or after a character that is not a letter or digit —
//! becomes a hashtag, mention or cashtag token whose *body* is the word.
//!
//! Folding ([`fold_into`]) is, per character: compatibility decomposition
//! (NFKD), removal of combining marks, full Unicode case folding, then
//! decomposition and mark removal again. Folding per character is the same
//! as folding the whole string, because NFKD decomposes character by
//! character and the only reordering it does is among combining marks, which
//! are removed. The result is a canonical, decomposed form: two strings fold
//! to the same bytes exactly when they are equal under NFKC, case folding and
//! mark removal. ASCII takes a fast path (lower-casing).
//!
//! CJK leaves (docs/query-language.md §3.1) match substrings of the *folded field text*, which
//! [`fold_with_offsets`] produces together with a map back to the original.

mod ascii;
mod simple_chunk;

use ascii::{first_non_ascii, tokenize_ascii};
use simple_chunk::tokenize_simple_chunk;
use unicode_normalization::char::{decompose_compatible, is_combining_mark};
use unicode_segmentation::UnicodeSegmentation;

/// What a token is; `#acme`, `@acme` and `$acme` share the body `acme`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TokenKind {
    /// A plain word.
    Word,
    /// `#body`.
    Hashtag,
    /// `@body`.
    Mention,
    /// `$body`.
    Cashtag,
    /// One emoji (extended pictographic grapheme or flag).
    Emoji,
}

impl TokenKind {
    /// The sigil that introduces this kind of token, if any.
    pub fn sigil(self) -> Option<char> {
        match self {
            TokenKind::Hashtag => Some('#'),
            TokenKind::Mention => Some('@'),
            TokenKind::Cashtag => Some('$'),
            TokenKind::Word | TokenKind::Emoji => None,
        }
    }

    fn from_sigil(c: &str) -> Option<TokenKind> {
        match c {
            "#" => Some(TokenKind::Hashtag),
            "@" => Some(TokenKind::Mention),
            "$" => Some(TokenKind::Cashtag),
            _ => None,
        }
    }
}

/// One token of a field. All offsets are `u32`: fields are bounded by the
/// document size limit, far below 4 GiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    /// Kind of the token.
    pub kind: TokenKind,
    /// Byte offset in the original field where the token starts (at the
    /// sigil for hashtags, mentions and cashtags).
    pub start: u32,
    /// Byte offset in the original field where the body starts.
    pub body_start: u32,
    /// Byte offset in the original field one past the token's end.
    pub end: u32,
    /// Start of the folded body in [`Tokens::folded`].
    pub folded_start: u32,
    /// End of the folded body in [`Tokens::folded`].
    pub folded_end: u32,
}

/// The tokens of one field, with their folded bodies stored back to back in
/// one buffer (separated by a NUL byte, which never occurs inside a token,
/// so a substring search over [`Tokens::folded`] never spans two tokens).
///
/// Reuse one value across fields and documents: [`Tokens::analyze`] clears
/// it, and its buffers keep their capacity.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    /// The tokens in order; a token's index is its position.
    pub tokens: Vec<Token>,
    /// Folded bodies, NUL-separated.
    pub folded: String,
    /// Whether the field contains Han, Hiragana or Katakana characters.
    pub has_cjk: bool,
}

/// The separator between folded token bodies in [`Tokens::folded`].
pub const TOKEN_SEPARATOR: char = '\0';

impl Tokens {
    /// An empty token list.
    pub fn new() -> Tokens {
        Tokens::default()
    }

    /// Tokenizes and folds `text`, replacing the previous contents.
    pub fn analyze(&mut self, text: &str) {
        self.tokens.clear();
        self.folded.clear();
        self.has_cjk = false;
        tokenize_into(text, &mut self.tokens, &mut self.folded, &mut self.has_cjk);
    }

    /// The folded body of token `i`.
    pub fn folded_body(&self, i: usize) -> &str {
        let t = &self.tokens[i];
        &self.folded[t.folded_start as usize..t.folded_end as usize]
    }

    /// The original (unfolded) body of token `i` within `text`, the field it
    /// was analyzed from.
    pub fn raw_body<'t>(&self, text: &'t str, i: usize) -> &'t str {
        let t = &self.tokens[i];
        &text[t.body_start as usize..t.end as usize]
    }

    /// The token positions covered by the original byte range
    /// `[start, end)` of the field, as an inclusive (first, last) pair: from
    /// the first token ending after `start` to the last token starting before
    /// `end`. A range that overlaps no token gets the empty span at the next
    /// token, `(next, next)`. Regex and CJK occurrences take their positions
    /// from this, for NEAR.
    pub fn positions_of(&self, start: u32, end: u32) -> (u32, u32) {
        let first = self.tokens.partition_point(|t| t.end <= start);
        let after = self.tokens.partition_point(|t| t.start < end);
        if after > first {
            (first as u32, (after - 1) as u32)
        } else {
            (first as u32, first as u32)
        }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Tokenizes `text` (docs/query-language.md §3.1), appending tokens to `out` and their folded
/// bodies to `folded` (each followed by [`TOKEN_SEPARATOR`]).
pub fn tokenize_into(text: &str, out: &mut Vec<Token>, folded: &mut String, has_cjk: &mut bool) {
    let b = text.as_bytes();
    // Mixed text is split at breaks: ASCII whitespace followed by an ASCII
    // character that is not whitespace. UAX #29 always breaks there (only
    // WB3d joins spaces, and WB4 joins a following Extend/Format/ZWJ
    // character, which is never ASCII), so tokenizing the text between two
    // breaks alone gives the segments of the whole. The ASCII stretches
    // between breaks take the fast path, the rest the full algorithm; the
    // scan looks for the next non-ASCII byte, and only around one for
    // breaks.
    let is_break =
        |p: usize| b[p - 1].is_ascii_whitespace() && b[p].is_ascii() && !b[p].is_ascii_whitespace();
    let mut from = 0;
    while from < b.len() {
        let Some(k) = first_non_ascii(&b[from..]) else {
            tokenize_ascii(text, from, b.len(), out, folded);
            return;
        };
        let non_ascii = from + k;
        // The last break at or before it ends the ASCII stretch …
        let mut ascii_end = non_ascii;
        while ascii_end > from && !is_break(ascii_end) {
            ascii_end -= 1;
        }
        tokenize_ascii(text, from, ascii_end, out, folded);
        // … and the first break after it ends the rest.
        let mut end = non_ascii + 1;
        while end < b.len() && !is_break(end) {
            end += 1;
        }
        if !tokenize_simple_chunk(text, ascii_end, end, out, folded) {
            tokenize_unicode(&text[ascii_end..end], ascii_end, out, folded, has_cjk);
        }
        from = end;
    }
}

/// The general path: UAX #29 segments from `unicode-segmentation`.
/// Tokenizes `text`, which starts at byte `base` of its field.
fn tokenize_unicode(
    text: &str,
    base: usize,
    out: &mut Vec<Token>,
    folded: &mut String,
    has_cjk: &mut bool,
) {
    // The previous segment, to recognise a sigil, and whether that sigil
    // stands at a word start.
    let mut prev_sigil: Option<(TokenKind, usize)> = None;
    let mut prev_end_char: Option<char> = None;
    let mut before_prev: Option<char> = None;
    for (start, seg) in text.split_word_bound_indices() {
        let start = start + base;
        let first = seg.chars().next().unwrap_or(' ');
        let is_word = seg.chars().any(char::is_alphanumeric);
        if !*has_cjk && seg.chars().any(is_cjk) {
            *has_cjk = true;
        }
        if is_word {
            let (kind, tok_start) = match prev_sigil {
                Some((kind, sigil_start))
                    if sigil_start + 1 == start
                        && !before_prev.is_some_and(char::is_alphanumeric) =>
                {
                    (kind, sigil_start)
                }
                _ => (TokenKind::Word, start),
            };
            push_token(kind, tok_start, start, start + seg.len(), seg, out, folded);
        } else if is_extended_pictographic(first) || is_regional_indicator(first) {
            push_token(
                TokenKind::Emoji,
                start,
                start,
                start + seg.len(),
                seg,
                out,
                folded,
            );
        }
        prev_sigil = TokenKind::from_sigil(seg).map(|k| (k, start));
        before_prev = prev_end_char;
        prev_end_char = seg.chars().next_back();
    }
}

fn push_token(
    kind: TokenKind,
    start: usize,
    body_start: usize,
    end: usize,
    body: &str,
    out: &mut Vec<Token>,
    folded: &mut String,
) {
    let folded_start = folded.len();
    fold_into(body, folded);
    let folded_end = folded.len();
    folded.push(TOKEN_SEPARATOR);
    out.push(Token {
        kind,
        start: start as u32,
        body_start: body_start as u32,
        end: end as u32,
        folded_start: folded_start as u32,
        folded_end: folded_end as u32,
    });
}

/// Appends the folded form of `s` to `out` (see the module doc).
pub fn fold_into(s: &str, out: &mut String) {
    if s.is_ascii() {
        out.extend(s.bytes().map(|b| b.to_ascii_lowercase() as char));
        return;
    }
    for c in s.chars() {
        fold_char(c, out);
    }
}

/// The folded form of `s` as a new string.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    fold_into(s, &mut out);
    out
}

/// Appends the folded form of one character.
pub fn fold_char(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
        return;
    }
    decompose_compatible(c, |d| {
        if is_combining_mark(d) {
            return;
        }
        for f in caseless_fold(d) {
            decompose_compatible(f, |g| {
                if !is_combining_mark(g) {
                    out.push(g);
                }
            });
        }
    });
}

fn caseless_fold(c: char) -> impl Iterator<Item = char> {
    use caseless::Caseless;
    std::iter::once(c).default_case_fold()
}

/// The folded text of a whole field and, for every byte of it, the byte
/// range of the original character it came from.
#[derive(Clone, Debug, Default)]
pub struct FoldedField {
    /// The folded field text.
    pub text: String,
    /// `origin[i]` is the (start, end) byte range, in the original field, of
    /// the character that produced folded byte `i`.
    pub origin: Vec<(u32, u32)>,
}

impl FoldedField {
    /// Maps a byte range of the folded text back to the original field.
    pub fn original_range(&self, start: usize, end: usize) -> (u32, u32) {
        debug_assert!(start < end && end <= self.origin.len());
        (self.origin[start].0, self.origin[end - 1].1)
    }
}

/// Folds a whole field, keeping the map back to the original (used for CJK
/// substring leaves).
pub fn fold_with_offsets(text: &str, out: &mut FoldedField) {
    out.text.clear();
    out.origin.clear();
    for (i, c) in text.char_indices() {
        let before = out.text.len();
        fold_char(c, &mut out.text);
        let range = (i as u32, (i + c.len_utf8()) as u32);
        out.origin
            .extend(std::iter::repeat_n(range, out.text.len() - before));
    }
}

/// Whether `c` is a Han, Hiragana or Katakana character (including the
/// half-width katakana that NFKC maps to full width).
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3005..=0x3007 // ideographic iteration mark, closing mark, number zero
        | 0x3021..=0x3029 | 0x3038..=0x303B // Hangzhou numerals, Han marks
        | 0x3040..=0x309F // Hiragana
        | 0x30A0..=0x30FF // Katakana
        | 0x31F0..=0x31FF // Katakana phonetic extensions
        | 0x3400..=0x4DBF // CJK extension A
        | 0x4E00..=0x9FFF // CJK unified ideographs
        | 0xF900..=0xFAFF // compatibility ideographs
        | 0xFF66..=0xFF9F // half-width katakana
        | 0x1B000..=0x1B16F // kana supplement and extensions
        | 0x20000..=0x2FA1F // extensions B–F, compatibility supplement
        | 0x30000..=0x323AF) // extensions G–H
}

/// Whether `s` contains a CJK character (see [`is_cjk`]).
pub fn contains_cjk(s: &str) -> bool {
    !s.is_ascii() && s.chars().any(is_cjk)
}

fn is_regional_indicator(c: char) -> bool {
    ('\u{1F1E6}'..='\u{1F1FF}').contains(&c)
}

/// Whether `c` has the Unicode property Extended_Pictographic (emoji-data
/// 15.1), which is what makes a segment an emoji token.
pub fn is_extended_pictographic(c: char) -> bool {
    let c = c as u32;
    if c < 0xA9 {
        return false;
    }
    // Sorted, inclusive ranges from emoji-data.txt.
    const RANGES: &[(u32, u32)] = &[
        (0x00A9, 0x00A9),
        (0x00AE, 0x00AE),
        (0x203C, 0x203C),
        (0x2049, 0x2049),
        (0x2122, 0x2122),
        (0x2139, 0x2139),
        (0x2194, 0x2199),
        (0x21A9, 0x21AA),
        (0x231A, 0x231B),
        (0x2328, 0x2328),
        (0x2388, 0x2388),
        (0x23CF, 0x23CF),
        (0x23E9, 0x23F3),
        (0x23F8, 0x23FA),
        (0x24C2, 0x24C2),
        (0x25AA, 0x25AB),
        (0x25B6, 0x25B6),
        (0x25C0, 0x25C0),
        (0x25FB, 0x25FE),
        (0x2600, 0x2605),
        (0x2607, 0x2612),
        (0x2614, 0x2685),
        (0x2690, 0x2705),
        (0x2708, 0x2712),
        (0x2714, 0x2714),
        (0x2716, 0x2716),
        (0x271D, 0x271D),
        (0x2721, 0x2721),
        (0x2728, 0x2728),
        (0x2733, 0x2734),
        (0x2744, 0x2744),
        (0x2747, 0x2747),
        (0x274C, 0x274C),
        (0x274E, 0x274E),
        (0x2753, 0x2755),
        (0x2757, 0x2757),
        (0x2763, 0x2767),
        (0x2795, 0x2797),
        (0x27A1, 0x27A1),
        (0x27B0, 0x27B0),
        (0x27BF, 0x27BF),
        (0x2934, 0x2935),
        (0x2B05, 0x2B07),
        (0x2B1B, 0x2B1C),
        (0x2B50, 0x2B50),
        (0x2B55, 0x2B55),
        (0x3030, 0x3030),
        (0x303D, 0x303D),
        (0x3297, 0x3297),
        (0x3299, 0x3299),
        (0x1F000, 0x1F0FF),
        (0x1F10D, 0x1F10F),
        (0x1F12F, 0x1F12F),
        (0x1F16C, 0x1F171),
        (0x1F17E, 0x1F17F),
        (0x1F18E, 0x1F18E),
        (0x1F191, 0x1F19A),
        (0x1F1AD, 0x1F1E5),
        (0x1F201, 0x1F20F),
        (0x1F21A, 0x1F21A),
        (0x1F22F, 0x1F22F),
        (0x1F232, 0x1F23A),
        (0x1F23C, 0x1F23F),
        (0x1F249, 0x1F3FA),
        (0x1F400, 0x1F53D),
        (0x1F546, 0x1F64F),
        (0x1F680, 0x1F6FF),
        (0x1F774, 0x1F77F),
        (0x1F7D5, 0x1F7FF),
        (0x1F80C, 0x1F80F),
        (0x1F848, 0x1F84F),
        (0x1F85A, 0x1F85F),
        (0x1F888, 0x1F88F),
        (0x1F8AE, 0x1F8FF),
        (0x1F90C, 0x1F93A),
        (0x1F93C, 0x1F945),
        (0x1F947, 0x1FAFF),
        (0x1FC00, 0x1FFFD),
    ];
    RANGES
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

#[cfg(test)]
mod tests;
