//! The syntax tree of one search (docs/query-language.md §3).

use std::fmt;

use compact_str::CompactString;

use crate::text::TokenKind;

/// A parsed, validated search query.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The root expression.
    pub expr: Expr,
    /// Readings the user may not expect (docs/query-language.md §3.3), never errors.
    pub warnings: Box<[super::QueryWarning]>,
}

impl Query {
    /// Number of leaves (text and metadata) in the query.
    pub fn leaf_count(&self) -> usize {
        self.expr.leaf_count()
    }
}

/// A boolean expression over leaves.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// Any child matches.
    Or(Vec<Expr>),
    /// Every child matches.
    And(Vec<Expr>),
    /// The child does not match.
    Not(Box<Expr>),
    /// Proximity of two leaf groups (boxed: NEARs are rare, and inline
    /// their two lists would make every node 8 bytes larger).
    Near(Box<Near>),
    /// A leaf.
    Leaf(Leaf),
}

impl Expr {
    /// Number of leaves below this node.
    pub fn leaf_count(&self) -> usize {
        match self {
            Expr::Or(c) | Expr::And(c) => c.iter().map(Expr::leaf_count).sum(),
            Expr::Not(c) => c.leaf_count(),
            Expr::Near(n) => n.left.len() + n.right.len(),
            Expr::Leaf(_) => 1,
        }
    }

    /// Whether every document this expression matches must contain some
    /// positive text leaf: the condition of docs/query-language.md §3.5 ("nothing positive
    /// must match" is rejected). It is also exactly the condition under which
    /// the engine can find an anchor for the search.
    pub fn requires_positive_text(&self) -> bool {
        match self {
            Expr::Or(c) => c.iter().all(Expr::requires_positive_text),
            Expr::And(c) => c.iter().any(Expr::requires_positive_text),
            Expr::Not(_) => false,
            Expr::Near(_) => true,
            Expr::Leaf(l) => !matches!(l.kind, LeafKind::Meta(..)),
        }
    }

    /// Frees the spare capacity of every list below this node: the parser
    /// grows them as it reads, and a catalog keeps a million of them.
    pub fn shrink_to_fit(&mut self) {
        match self {
            Expr::Or(c) | Expr::And(c) => {
                c.shrink_to_fit();
                c.iter_mut().for_each(Expr::shrink_to_fit);
            }
            Expr::Not(c) => c.shrink_to_fit(),
            Expr::Near(n) => {
                n.left.shrink_to_fit();
                n.right.shrink_to_fit();
                n.left
                    .iter_mut()
                    .chain(&mut n.right)
                    .for_each(Leaf::shrink_to_fit);
            }
            Expr::Leaf(l) => l.shrink_to_fit(),
        }
    }

    /// Visits every leaf with whether it is positive (not below a NOT).
    pub fn for_each_leaf<'a>(&'a self, positive: bool, f: &mut dyn FnMut(&'a Leaf, bool)) {
        match self {
            Expr::Or(c) | Expr::And(c) => c.iter().for_each(|e| e.for_each_leaf(positive, f)),
            Expr::Not(c) => c.for_each_leaf(!positive, f),
            Expr::Near(n) => n.left.iter().chain(&n.right).for_each(|l| f(l, positive)),
            Expr::Leaf(l) => f(l, positive),
        }
    }
}

/// `a NEAR/n b`: an occurrence of a left leaf and one of a right leaf in the
/// same field with at most `max_gap` tokens between them.
#[derive(Clone, Debug, PartialEq)]
pub struct Near {
    /// Alternatives on the left.
    pub left: Vec<Leaf>,
    /// Alternatives on the right.
    pub right: Vec<Leaf>,
    /// Most tokens allowed between the two occurrences.
    pub max_gap: u32,
    /// Whether the left occurrence must come first (`NEAR/nf`, `ONEAR/n`).
    pub ordered: bool,
}

/// Which text fields a leaf may match in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fields(pub u8);

impl Fields {
    /// Only `title`.
    pub const TITLE: Fields = Fields(1);
    /// Only `text`.
    pub const TEXT: Fields = Fields(2);
    /// Either field (the default).
    pub const BOTH: Fields = Fields(3);

    /// Whether field number `field` (0 = title, 1 = text) is allowed.
    pub fn allows(self, field: u8) -> bool {
        self.0 & (1 << field) != 0
    }
}

/// One leaf with where it came from in the query.
#[derive(Clone, Debug, PartialEq)]
pub struct Leaf {
    /// What it matches.
    pub kind: LeafKind,
    /// Fields it may match in.
    pub fields: Fields,
    /// Where the leaf is written in its query ([`Leaf::source`]): a
    /// million searches hold about five million leaves, so a leaf keeps
    /// two numbers rather than a copy of its text.
    pub span: Span,
}

/// A byte range of a query's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// Length in bytes.
    pub len: u32,
}

impl Leaf {
    /// The leaf's text as written in `query`, the query it was parsed
    /// from.
    pub fn source<'q>(&self, query: &'q str) -> &'q str {
        let start = self.span.start as usize;
        query
            .get(start..start + self.span.len as usize)
            .unwrap_or_default()
    }

    fn shrink_to_fit(&mut self) {
        if let LeafKind::Tokens(t) = &mut self.kind {
            t.tokens.shrink_to_fit();
        }
    }
}

/// What a leaf matches.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeafKind {
    /// A word, phrase or proximity phrase of tokens.
    Tokens(TokensLeaf),
    /// A wildcard within one token.
    Wildcard(Wildcard),
    /// A CJK leaf: the folded string, matched as a substring of the folded
    /// field text.
    Cjk(String),
    /// A regular expression over the original field text.
    Regex(String),
    /// A metadata comparison (never positive).
    Meta(MetaField, String),
}

/// A word (one token), a phrase (consecutive tokens) or, with `slop`, all
/// tokens in any order within a window of `tokens + slop` positions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokensLeaf {
    /// The tokens, in order.
    pub tokens: Vec<QueryToken>,
    /// `"…"~n`.
    pub slop: Option<u32>,
    /// `{…}`: compared with the original, unfolded token text.
    pub case_sensitive: bool,
}

/// One token of a query word or phrase.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryToken {
    /// `Word` matches a word and the body of a hashtag, mention or cashtag;
    /// the other kinds match only their own kind.
    pub kind: TokenKind,
    /// The folded body (inline up to 24 bytes, as `raw`).
    pub folded: CompactString,
    /// The body as written (for case-sensitive leaves).
    pub raw: CompactString,
}

impl QueryToken {
    /// Whether a document token of kind `kind` can satisfy this query token.
    pub fn accepts(&self, kind: TokenKind) -> bool {
        accepts_kind(self.kind, kind)
    }
}

/// Whether a leaf asking for `want` accepts a document token of kind `got`.
pub fn accepts_kind(want: TokenKind, got: TokenKind) -> bool {
    match want {
        TokenKind::Word => got != TokenKind::Emoji,
        _ => want == got,
    }
}

/// A wildcard pattern over one folded token body: `*` is any run of
/// characters, `?` exactly one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Wildcard {
    /// The kind of token asked for (`#lov*` asks for hashtags).
    pub kind: TokenKind,
    /// The folded pattern, with `*` and `?` kept.
    pub pattern: String,
}

impl Wildcard {
    /// Whether the folded token body `s` matches the pattern.
    pub fn matches(&self, s: &str) -> bool {
        glob_match(&self.pattern, s)
    }

    /// The longest run of literal characters, which every matching token
    /// contains (the engine indexes it).
    pub fn longest_literal(&self) -> &str {
        self.pattern
            .split(['*', '?'])
            .max_by_key(|s| s.len())
            .unwrap_or("")
    }
}

/// Glob matching with `*` and `?` over characters, without allocating and
/// in time linear in `s` for literal segments (O(|s| × segment) for
/// segments with `?`): the pattern is split at `*`; the first segment must
/// match at the start, the last at the end, and each middle one at its
/// leftmost place after the previous one — leftmost is always best, as it
/// leaves the most room to the rest. (The backtracking matcher this
/// replaced was quadratic on a long token.)
fn glob_match(pattern: &str, s: &str) -> bool {
    let stars = pattern.matches('*').count();
    let mut segs = pattern.split('*');
    let first = segs.next().unwrap_or("");
    if stars == 0 {
        return match_prefix(first, s) == Some(s.len());
    }
    let Some(mut pos) = match_prefix(first, s) else {
        return false;
    };
    let last = pattern.rsplit('*').next().unwrap_or("");
    let Some(tail) = match_suffix(last, &s[pos..]) else {
        return false;
    };
    let end = pos + tail;
    for seg in segs.take(stars - 1).filter(|g| !g.is_empty()) {
        match find_segment(seg, &s[pos..end]) {
            Some(after) => pos += after,
            None => return false,
        }
    }
    true
}

/// Bytes of `s` that `seg` (literals and `?`) matches at its start.
fn match_prefix(seg: &str, s: &str) -> Option<usize> {
    let mut chars = s.char_indices();
    for p in seg.chars() {
        let (_, c) = chars.next()?;
        if p != '?' && p != c {
            return None;
        }
    }
    Some(chars.next().map_or(s.len(), |(i, _)| i))
}

/// Byte offset in `s` where `seg` matches at its end.
fn match_suffix(seg: &str, s: &str) -> Option<usize> {
    let mut chars = s.char_indices().rev();
    let mut at = s.len();
    for p in seg.chars().rev() {
        let (i, c) = chars.next()?;
        if p != '?' && p != c {
            return None;
        }
        at = i;
    }
    Some(at)
}

/// The end (in bytes) of the leftmost match of `seg` in `s`.
fn find_segment(seg: &str, s: &str) -> Option<usize> {
    if !seg.contains('?') {
        return s.find(seg).map(|i| i + seg.len());
    }
    s.char_indices()
        .find_map(|(i, _)| match_prefix(seg, &s[i..]).map(|n| i + n))
}

/// The metadata a leaf may compare (docs/query-language.md §3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetaField {
    /// `author:` — case-insensitive, leading `@` ignored.
    Author,
    /// `site:` — the URL's host is the domain or a subdomain of it.
    Site,
    /// `url:` — the URL contains the fragment, case-insensitive.
    Url,
    /// `lang:`
    Lang,
    /// `country:`
    Country,
    /// `source:`
    Source,
    /// `type:`
    Type,
}

impl MetaField {
    /// The field's name in the query language.
    pub fn name(self) -> &'static str {
        match self {
            MetaField::Author => "author",
            MetaField::Site => "site",
            MetaField::Url => "url",
            MetaField::Lang => "lang",
            MetaField::Country => "country",
            MetaField::Source => "source",
            MetaField::Type => "type",
        }
    }

    /// The field with that name.
    pub fn from_name(name: &str) -> Option<MetaField> {
        Some(match name {
            "author" => MetaField::Author,
            "site" => MetaField::Site,
            "url" => MetaField::Url,
            "lang" => MetaField::Lang,
            "country" => MetaField::Country,
            "source" => MetaField::Source,
            "type" => MetaField::Type,
            _ => return None,
        })
    }
}

impl Expr {
    /// The expression with every grouping explicit (the reading the
    /// matcher uses), its leaves as written in `query`, the query it was
    /// parsed from.
    pub fn reading<'a>(&'a self, query: &'a str) -> Reading<'a> {
        Reading { expr: self, query }
    }
}

/// An expression printed as [`Expr::reading`].
pub struct Reading<'a> {
    expr: &'a Expr,
    query: &'a str,
}

impl fmt::Display for Reading<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let query = self.query;
        let child = |f: &mut fmt::Formatter<'_>, e: &Expr| match e {
            Expr::Or(_) | Expr::And(_) => write!(f, "({})", e.reading(query)),
            _ => write!(f, "{}", e.reading(query)),
        };
        let group = |f: &mut fmt::Formatter<'_>, leaves: &[Leaf]| {
            if leaves.len() == 1 {
                return write!(f, "{}", leaves[0].source(query));
            }
            let parts: Vec<&str> = leaves.iter().map(|l| l.source(query)).collect();
            write!(f, "({})", parts.join(" OR "))
        };
        match self.expr {
            Expr::Or(c) | Expr::And(c) => {
                let op = if matches!(self.expr, Expr::Or(_)) {
                    " OR "
                } else {
                    " AND "
                };
                for (i, e) in c.iter().enumerate() {
                    if i > 0 {
                        f.write_str(op)?;
                    }
                    child(f, e)?;
                }
                Ok(())
            }
            Expr::Not(c) => {
                f.write_str("NOT ")?;
                child(f, c)
            }
            Expr::Near(n) => {
                group(f, &n.left)?;
                if n.ordered {
                    write!(f, " ONEAR/{} ", n.max_gap)?;
                } else {
                    write!(f, " NEAR/{} ", n.max_gap)?;
                }
                group(f, &n.right)
            }
            Expr::Leaf(l) => f.write_str(l.source(query)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_the_spec() {
        let w = |p: &str| Wildcard {
            kind: TokenKind::Word,
            pattern: p.into(),
        };
        assert!(w("lov*").matches("love"));
        assert!(w("lov*").matches("lov"));
        assert!(w("lov*").matches("lovely"));
        assert!(!w("lov*").matches("glove"));
        assert!(w("colo?r").matches("colour"));
        assert!(!w("colo?r").matches("color"));
        assert!(w("*versicherung").matches("krankenversicherung"));
        assert!(w("a*b*c").matches("axxbyyc"));
        assert!(!w("a*b*c").matches("axxbyy"));
        assert!(w("caf?").matches("café"));
        assert_eq!(w("ab*cdef?g").longest_literal(), "cdef");
        assert!(w("*").matches(""));
        assert!(w("a*a").matches("aa"));
        assert!(!w("a*a").matches("a"));
        assert!(w("?*?").matches("ab"));
        assert!(!w("?*?").matches("a"));
        assert!(w("a?c*x?z").matches("abcQQxyz"));
        assert!(!w("a?c*x?z").matches("abcQQxy"));
        assert!(w("*ab?d*").matches("xxabcabed"));
        assert!(!w("*ab?d*").matches("xxabcabe"));
    }
}
